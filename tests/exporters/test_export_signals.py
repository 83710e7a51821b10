"""An export stopped by a signal leaves nothing behind, now or at the next export.

Real signals to a real export in a child process: SIGTERM unwinds (the
staging folder is removed on the way out), and what SIGKILL leaves (which
no process can clean up after itself) is swept by the next export of the
same output.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

from samedge.exporters import ExportConfig, export_model
from tests._factories import reduced_sam_spec

_CHILD = """
import sys
from pathlib import Path
from samedge.cli._common import Terminated, sigterm_unwinds
from samedge.exporters import ExportConfig, export_model
from samedge.exporters import export as export_module
from tests._factories import reduced_sam_spec

real = export_module._write_decoder

def announce(*args, **kwargs):
    # The encoder is in the staging folder now; say so and go on.
    print("writing decoder", flush=True)
    return real(*args, **kwargs)

export_module._write_decoder = announce
try:
    with sigterm_unwinds():
        export_model(reduced_sam_spec(), None, Path(sys.argv[1]),
                     config=ExportConfig(progress=False, verify=False))
except Terminated:
    sys.exit(143)
print("finished", flush=True)
"""


def _export_and_signal(out: Path, sig: int) -> int:
    root = Path(__file__).resolve().parents[2]
    proc = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(_CHILD), str(out)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(root)},
        cwd=root,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.strip() == "writing decoder", line + (proc.stderr.read() if proc.stderr else "")
        proc.send_signal(sig)
        proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return proc.returncode


def _beside(out: Path) -> list[str]:
    return sorted(p.name for p in out.parent.iterdir())


def test_sigterm_during_export_leaves_no_staging(tmp_path: Path) -> None:
    out = tmp_path / "model"
    assert _export_and_signal(out, signal.SIGTERM) == 143
    assert _beside(out) == []


def test_staging_of_a_killed_export_is_swept_by_the_next(tmp_path: Path) -> None:
    out = tmp_path / "model"
    assert _export_and_signal(out, signal.SIGKILL) == -signal.SIGKILL
    left = _beside(out)
    assert any(name.startswith(".model.") and name.endswith(".partial") for name in left), left
    export_model(reduced_sam_spec(), None, out, config=ExportConfig(progress=False, verify=False))
    assert _beside(out) == ["model"]
