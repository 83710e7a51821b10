"""Full-size SAM ViT-B export + parity (random weights; minutes and ~10 GB of RAM)."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("torch")

from samedge.model_dir import read_model_dir
from tests._factories import export_report


@pytest.mark.slow
def test_sam_vit_b_export_and_parity(tmp_path: Path) -> None:
    exported, report = export_report("sam_vit_b", tmp_path / "sam_vit_b")
    card = read_model_dir(exported.dir)
    assert report.verified
    assert card.model == "sam_vit_b"
    assert card.embedding_shape == (256, 64, 64)
    assert card.details["parity"]["passed"] is True
    assert report.parity is not None
    assert report.parity.worst_mask_iou >= 0.99
    assert report.files["encoder.onnx"] > 300e6  # 91M float32 weights, inline
    assert not (exported.dir / "encoder.onnx.data").exists()
