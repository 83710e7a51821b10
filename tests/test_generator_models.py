"""MaskGenerator on the image models whose predictors differ from SAM's.

EfficientViT-SAM L encodes 512 px but upsamples masks in its 1024-px prompt
frame: the generator must upsample as its own predictor does, and agree with
the package's ``EfficientViTSamAutomaticMaskGenerator`` on the same weights.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pytest

from samedge import GeneratorConfig, MaskGenerator, Predictor
from samedge.scenes import make_scene
from tests.test_generator import assert_same_masks

if TYPE_CHECKING:
    from tests._factories import ExportedModel

# Random weights: near-zero logits and image-sized boxes (as for MobileSAM).
RELAXED: dict[str, Any] = {
    "pred_iou_thresh": 0.0,
    "stability_score_offset": 0.05,
    "stability_score_thresh": 0.5,
    "box_nms_thresh": 1.0,
}


@pytest.fixture(scope="module")
def l0(tmp_path_factory: pytest.TempPathFactory) -> ExportedModel:
    pytest.importorskip("torch")
    pytest.importorskip("efficientsam", reason="the export extra (efficientsam) is not installed")
    from tests._factories import export_random

    return export_random("efficientvit_sam_l0", tmp_path_factory.mktemp("evit") / "l0")


def test_efficientvit_sam_l0_agrees_with_its_own_generator(l0: ExportedModel) -> None:
    import torch
    from efficientsam.models.efficientvit.sam import EfficientViTSamAutomaticMaskGenerator

    from samedge.exporters.efficientvit_sam import build_efficientvit_sam_l0

    image = make_scene(np.random.default_rng(1), (240, 320), num_objects=5).image
    params = {"points_per_side": 5, **RELAXED}
    with torch.no_grad():
        ref = EfficientViTSamAutomaticMaskGenerator(
            build_efficientvit_sam_l0(l0.checkpoint), **params
        ).generate(image)
    with Predictor(Path(l0.dir), backend="onnxruntime") as predictor:
        assert predictor.card.mask_upsample_size == 1024
        assert predictor.image_size == 512
        ours = MaskGenerator(predictor, GeneratorConfig(**params)).generate(image)
    assert len(ref) >= 10
    assert_same_masks(ours, ref)
