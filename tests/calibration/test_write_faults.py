"""A full disk while writing a converted graph is reported as what it is.

Before, ONNX Runtime's failed write of an optimized copy read as "cannot
load" the *source* model, and ``save_model`` let a raw OSError out. Real
full disk: a small tmpfs (root only; skipped elsewhere).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from samedge.calibration._onnx import load_model, optimize_basic, save_model
from samedge.errors import OutputWriteError
from samedge.predictor import resolve_model
from tests._faults import fill, tmpfs


@pytest.fixture
def encoder() -> Path:
    return resolve_model("samedge_tiny") / "encoder.onnx"


def test_full_disk_while_optimizing_blames_the_disk(tmp_path: Path, encoder: Path) -> None:
    with tmpfs(tmp_path / "disk", size="3m") as disk:
        fill(disk, leave=100_000)
        with pytest.raises(OutputWriteError, match="could not write the graph") as info:
            optimize_basic(encoder, disk / "basic.onnx")
        assert "source model is fine" in str(info.value)
        assert "MiB free there" in str(info.value)
        assert sorted(p.name for p in disk.iterdir()) == [".filler"]


def test_full_disk_while_saving_is_an_output_write_error(tmp_path: Path, encoder: Path) -> None:
    model = load_model(encoder)
    with tmpfs(tmp_path / "disk", size="3m") as disk:
        fill(disk, leave=100_000)
        with pytest.raises(OutputWriteError, match=r"No space left on device"):
            save_model(model, disk / "int8.onnx")
        assert sorted(p.name for p in disk.iterdir()) == [".filler"]
