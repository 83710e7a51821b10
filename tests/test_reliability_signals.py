"""Ctrl-C inside an SDK's import interrupts; it is not "the SDK is not installed".

Real signals to real subprocesses. The SDK whose native init turns a SIGINT
into ``ImportError`` (what OpenVINO 2026.4's import did) is stood in for by
a package named ``openvino`` on ``PYTHONPATH`` that does exactly that, so the
real backend selection code runs against it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from samedge._signals import import_module

_FAKE_SDK = """
import sys, time
print("importing", flush=True)
try:
    time.sleep(60)
except KeyboardInterrupt:
    # What a native extension's init does when a signal check fails inside it.
    raise ImportError("initialization failed") from None
"""


def _fake_openvino(root: Path) -> Path:
    package = root / "openvino"
    package.mkdir()
    (package / "__init__.py").write_text(_FAKE_SDK)
    return root


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _run_and_interrupt(code: str, pythonpath: Path, sig: int = signal.SIGINT) -> tuple[int, str]:
    env = {**os.environ, "PYTHONPATH": str(pythonpath), "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        # A shell's background job inherits SIGINT ignored (and Python then keeps
        # it so): give the child Python's normal Ctrl-C, whatever ran the tests.
        preexec_fn=_default_sigint,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.strip() == "importing", line + proc.stderr.read() if proc.stderr else ""
        time.sleep(0.2)
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return proc.returncode, out + err


@pytest.mark.parametrize(
    "code",
    [
        # backend selection: before the fix the interrupted import read as
        # "OpenVINO is not installed" and auto fell back to ONNX Runtime.
        """
        from samedge.runtimes import select
        select.cpu_info.cache_clear()
        choice = select.select_backend("auto")
        print("CHOSE", choice.name)
        """,
        # the backend's own import
        """
        from samedge.runtimes.ov import import_openvino
        import_openvino()
        print("IMPORTED")
        """,
    ],
    ids=["select_backend", "import_openvino"],
)
def test_ctrl_c_during_sdk_import_interrupts(tmp_path: Path, code: str) -> None:
    rc, output = _run_and_interrupt(code, _fake_openvino(tmp_path))
    assert "CHOSE" not in output, output
    assert "IMPORTED" not in output, output
    # An uncaught KeyboardInterrupt ends Python by SIGINT (rc -2) after its traceback.
    assert rc in (-signal.SIGINT, 128 + signal.SIGINT, 1), (rc, output)
    assert "KeyboardInterrupt" in output, output


def test_import_module_passes_real_import_errors(tmp_path: Path) -> None:
    with pytest.raises(ImportError):
        import_module("samedge_no_such_module_here")
    assert import_module("json").__name__ == "json"
