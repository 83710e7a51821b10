"""Type-check the TensorRT backend against NVIDIA's API (``tensorrt-stubs``, TensorRT 10.13).

TensorRT cannot be installed on CPU-only CI machines, so this test is how CI
proves the backend calls TensorRT's API correctly: mypy checks
``runtimes/trt.py``, ``runtimes/_trt_plan.py``, ``runtimes/_trt_build.py`` and
``runtimes/cuda_mem.py`` strictly against the stubs,
and a misspelled method or a wrong argument fails it. It never skips: a
missing ``tensorrt-stubs`` or mypy is a failure with the command that fixes it.

Three things stand between mypy and the stubs, and this test handles each:

* ``tensorrt-stubs`` puts ``tensorrt/__init__.pyi`` in site-packages without a
  ``py.typed`` marker, so mypy skips it as "installed but untyped", and with
  the project's ``ignore_missing_imports`` every TensorRT name would silently
  become ``Any``. The stubs are copied into a folder on ``MYPYPATH`` instead.
* The generated stub file has a few lines that are not valid Python (plugin
  methods with a parameter named ``in``; a required parameter after defaulted
  ones); they are repaired mechanically, in methods samedge never calls.
* ``samedge.runtimes`` is mapped onto ``runtimes/`` by an editable-install
  import hook, which mypy cannot follow; a link farm recreates the installed
  layout.

A canary file with deliberate mistakes is checked in the same run: if mypy
does not report them, the stubs are not in effect and the test fails.
"""

from __future__ import annotations

import ast
import importlib.metadata
import keyword
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
CHECKED = (
    "runtimes/trt.py",
    "runtimes/_trt_plan.py",
    "runtimes/_trt_build.py",
    "runtimes/cuda_mem.py",
)
STUB_FILES = (
    "tensorrt/__init__.pyi",
    "tensorrt_bindings/__init__.pyi",
    "tensorrt_bindings/tensorrt.pyi",
)
INSTALL = "pip install --no-deps tensorrt-stubs==10.13.0.35.1"

# Deliberate mistakes; each must be reported, on its line, with its error code.
CANARY = """\
from __future__ import annotations

import tensorrt as trt


def misuse(logger: trt.ILogger, network: trt.INetworkDefinition) -> None:
    builder = trt.Builder(logger)
    config = builder.create_builder_config()
    builder.build_serialized_netwrk(network, config)  # CANARY attr-defined
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE)  # CANARY call-arg
    runtime = trt.Runtime(logger)
    engine = runtime.deserialize_cuda_engine(b"")
    engine.get_tensor_name("image")  # CANARY arg-type
"""

MYPY_INI = """\
[mypy]
python_version = 3.10
strict = True
warn_unused_ignores = True
show_error_codes = True

# Only the TensorRT backend is under test here; the modules it imports are
# analysed (their types matter) but checked by their own owners.
[mypy-samedge.*]
ignore_errors = True

[mypy-samedge.runtimes.trt,samedge.runtimes._trt_plan,samedge.runtimes._trt_build,samedge.runtimes.cuda_mem]
ignore_errors = False

# NVIDIA's generated stubs are third-party code: analyse them, do not report on them.
[mypy-tensorrt,tensorrt.*,tensorrt_bindings,tensorrt_bindings.*]
ignore_errors = True

# Compiled or untyped packages without stubs: cuda-python (cuda-bindings ships no
# .pyi), pycuda, the libraries NVIDIA's stubs import, and the other backends' SDKs.
# cuda-python's calls are not checkable here; tests/runtimes/test_cuda_mem.py
# checks that the names samedge uses exist in the installed cuda-bindings.
[mypy-cuda,cuda.*,pycuda,pycuda.*,tensorrt_libs,tensorrt_libs.*,onnxruntime,onnxruntime.*,openvino,openvino.*]
ignore_missing_imports = True
"""


def _stub_sources() -> dict[str, Path]:
    try:
        dist = importlib.metadata.distribution("tensorrt-stubs")
    except importlib.metadata.PackageNotFoundError:
        pytest.fail(f"tensorrt-stubs is not installed; run `{INSTALL}` (CI does)")
    found = {str(f): Path(str(dist.locate_file(f))) for f in dist.files or ()}
    missing = [name for name in STUB_FILES if name not in found]
    if missing:
        pytest.fail(f"tensorrt-stubs {dist.version} lacks {missing}; run `{INSTALL}`")
    return {name: found[name] for name in STUB_FILES}


_KEYWORD_PARAM = re.compile(r"(?<=[(,\s])(" + "|".join(keyword.kwlist) + r")(?=\s*:)")


def _parses(line: str) -> bool:
    try:
        ast.parse(line.strip() + " ...")
    except SyntaxError:
        return False
    return True


def repair_stub(text: str) -> str:
    """Make NVIDIA's generated stub valid Python by fixing its broken ``def`` lines.

    A parameter named after a keyword gets a trailing underscore; a signature
    with a required parameter after defaulted ones loses the defaults. Only
    ``def`` lines that do not parse on their own are touched.
    """
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if not line.lstrip().startswith("def ") or _parses(line):
            continue
        fixed = _KEYWORD_PARAM.sub(r"\1_", line)
        if not _parses(fixed):
            fixed = re.sub(r"\s*=\s*(None|\.\.\.|-?\d+|True|False)(?=[,)])", "", fixed)
        lines[i] = fixed
    return "\n".join(lines) + "\n"


def _link_farm(root: Path) -> Path:
    """``root/samedge`` laid out like the installed package, by symlinks into the repo."""
    pkg = root / "samedge"
    pkg.mkdir()
    for entry in (REPO / "samedge").iterdir():
        if entry.name != "__pycache__":
            (pkg / entry.name).symlink_to(entry)
    for sub in ("runtimes", "exporters", "calibration"):
        if (REPO / sub).is_dir():
            (pkg / sub).symlink_to(REPO / sub)
    return pkg


def _run_mypy(tmp_path: Path) -> tuple[int, str, Path]:
    if importlib.util.find_spec("mypy") is None:
        pytest.fail("mypy is not installed; `pip install -e .[dev]` brings it")
    stubs = tmp_path / "stubs"
    for name, source in _stub_sources().items():
        target = stubs / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(repair_stub(source.read_text(encoding="utf-8")), encoding="utf-8")
    for name in STUB_FILES:
        try:
            ast.parse((stubs / name).read_text(encoding="utf-8"))
        except SyntaxError as e:
            pytest.fail(f"{name} from tensorrt-stubs is still not valid Python after repair: {e}")
    src = tmp_path / "src"
    src.mkdir()
    _link_farm(src)
    canary = src / "trt_canary.py"
    canary.write_text(CANARY, encoding="utf-8")
    ini = tmp_path / "mypy.ini"
    ini.write_text(MYPY_INI, encoding="utf-8")
    files = [f"samedge/{name}" for name in CHECKED] + [canary.name]
    env = {**os.environ, "MYPYPATH": str(stubs)}
    proc = subprocess.run(
        [sys.executable, "-m", "mypy", "--config-file", str(ini), "--no-incremental", *files],
        cwd=src,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    return proc.returncode, proc.stdout + proc.stderr, canary


def test_repair_stub_fixes_only_broken_lines() -> None:
    text = (
        "class P:\n"
        "    def get(self, in: list[int], out: list[int]) -> int:\n"
        "    def add(self, a: int, b: int = None, c: int) -> int:\n"
        "    def fine(self, x: int = 3) -> int:\n"
    )
    fixed = repair_stub(text).splitlines()
    assert fixed[1] == "    def get(self, in_: list[int], out: list[int]) -> int:"
    assert fixed[2] == "    def add(self, a: int, b: int, c: int) -> int:"
    assert fixed[3] == "    def fine(self, x: int = 3) -> int:"


def test_trt_backend_type_checks_against_tensorrt_stubs(tmp_path: Path) -> None:
    code, output, canary = _run_mypy(tmp_path)
    lines = output.splitlines()
    ours = [ln for ln in lines if ln.startswith("samedge/") and ": error:" in ln]
    assert not ours, "mypy found errors in the TensorRT backend:\n" + output

    # The canary proves the stubs were in effect: each deliberate mistake is reported.
    canary_lines = canary.read_text(encoding="utf-8").splitlines()
    for number, source in enumerate(canary_lines, start=1):
        if "# CANARY" not in source:
            continue
        code_name = source.rsplit("# CANARY", 1)[1].strip()
        hits = [
            ln
            for ln in lines
            if ln.startswith(f"{canary.name}:{number}:") and f"[{code_name}]" in ln
        ]
        assert hits, (
            f"mypy did not report the deliberate {code_name} mistake on canary line {number} "
            f"({source.strip()!r}): TensorRT's stubs are not in effect.\n{output}"
        )
    others = [ln for ln in lines if ": error:" in ln and not ln.startswith(canary.name)]
    assert not others, "unexpected mypy errors:\n" + output
    assert code == 1, f"mypy exit code {code} (expected 1: canary errors only)\n{output}"
