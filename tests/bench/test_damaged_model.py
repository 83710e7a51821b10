"""``samedge bench`` on a damaged model directory fails up front with one line.

Before, the decoder rows ran, the encoder rows failed, a results file was
written and the command exited 0.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from samedge.predictor import resolve_model


def test_bench_refuses_a_damaged_model_directory(tmp_path: Path) -> None:
    model = tmp_path / "damaged"
    shutil.copytree(resolve_model("samedge_tiny"), model)
    encoder = model / "encoder.onnx"
    encoder.write_bytes(encoder.read_bytes()[:1000])  # truncated, as by a full disk
    out = tmp_path / "results"
    done = subprocess.run(
        [sys.executable, "-m", "samedge", "bench", str(model), "--runs", "1", "--output", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 1, done.stderr[-2000:]
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("samedge bench: error: model")
    assert "encoder.onnx is damaged" in last
    assert "Traceback" not in done.stderr
    assert not out.exists()
