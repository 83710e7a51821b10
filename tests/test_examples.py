"""Every script in examples/ runs (with small arguments) and exits 0.

A script declares the arguments of its smoke run in a comment line::

    # test-args: --frames 3 --model {model} --output {tmp}/out.mp4

``{model}`` is a model directory (samedge_tiny once it ships, else the reduced
random-weight SAM) and ``{tmp}`` a fresh temporary directory. A script that
cannot run here (it needs a camera, ROS 2, ...) says so instead::

    # test-args: skip (needs a ROS 2 installation)
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = sorted((ROOT / "examples").glob("*.py"))
TINY = ROOT / "samedge" / "assets" / "samedge_tiny"
_ARGS = re.compile(r"^# test-args:\s*(.*)$", re.MULTILINE)


def test_there_are_examples():
    assert EXAMPLES, f"no scripts in {ROOT / 'examples'}"


@pytest.mark.parametrize("script", EXAMPLES, ids=lambda p: p.name)
def test_example_runs(script: Path, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    match = _ARGS.search(script.read_text(encoding="utf-8"))
    if match is None:
        pytest.fail(f"{script.name}: add a '# test-args: ...' line (see {Path(__file__).name})")
    spec = match.group(1).strip()
    if spec.startswith("skip"):
        pytest.skip(f"{script.name}: {spec}")
    if "{model}" in spec:
        if (TINY / "samedge.json").is_file():
            model = TINY
        else:
            model = request.getfixturevalue("reduced_sam_dir").dir
        spec = spec.replace("{model}", str(model))
    args = shlex.split(spec.replace("{tmp}", str(tmp_path)))
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.run(
        [sys.executable, str(script), *args],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, (
        f"{script.name} {' '.join(args)} exited {proc.returncode}\n"
        f"--- stdout\n{proc.stdout[-3000:]}\n--- stderr\n{proc.stderr[-3000:]}"
    )
