"""Segment everything on SAM 2-family models, and on every registered model's kind.

The reduced SAM 2.1 (Meta's classes at 256 px, random weights) is exported
twice: with its object-score head biased so that every click finds an object
(then the exported decoder's masks are exactly SAM2ImagePredictor's, and the
generator must agree with Meta's ``SAM2AutomaticMaskGenerator``), and biased
the other way (every click "no object": the exported decoder blanks those
masks, as SAM 2's video predictor does, so nothing is generated).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from samedge import memory_model as mm
from samedge._image_prompter import Sam2Prompter, SamPrompter, open_prompter
from samedge.cli import main
from samedge.generator import GeneratorConfig, MaskGenerator
from samedge.masks import mask_iou, rle_to_mask
from samedge.model_dir import ModelCard, write_model_card
from samedge.models import MODELS
from samedge.scenes import make_scene
from samedge.segment import SEGMENTS_FILE
from tests.test_generator import assert_same_masks

# Random weights: near-zero logits and image-sized boxes (as for MobileSAM).
RELAXED: dict[str, Any] = {
    "pred_iou_thresh": 0.0,
    "stability_score_offset": 0.05,
    "stability_score_thresh": 0.5,
    "box_nms_thresh": 1.0,
}


def _export_biased(root: Path, name: str, bias: float) -> tuple[Path, Path]:
    torch = pytest.importorskip("torch")
    pytest.importorskip("sam2", reason="the export extra (edgetam-dimos) is not installed")
    from samedge.exporters import export_model
    from samedge.exporters._sam2_build import build_sam2_reduced
    from samedge.exporters.export import ExportConfig

    model = build_sam2_reduced(None)
    head = model.sam_mask_decoder.pred_obj_score_head
    last = head.layers[-1] if hasattr(head, "layers") else head
    with torch.no_grad():
        last.bias += bias
    checkpoint = root / f"{name}.pt"
    torch.save(model.state_dict(), checkpoint)
    out = root / name
    export_model("sam2_reduced", checkpoint, out, config=ExportConfig(progress=False))
    return out, checkpoint


@pytest.fixture(scope="module")
def present(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The reduced SAM 2.1 whose every click finds an object: (model dir, checkpoint)."""
    return _export_biased(tmp_path_factory.mktemp("sam2"), "present", 10.0)


def _meta_generator(checkpoint: Path, image: np.ndarray, **params: Any) -> list[dict[str, Any]]:
    import torch
    from sam2.automatic_mask_generator import SAM2AutomaticMaskGenerator

    from samedge.exporters._sam2_build import build_sam2_reduced

    model = build_sam2_reduced(checkpoint)
    generator = SAM2AutomaticMaskGenerator(model, **params)
    # SAM2ImagePredictor hard-codes the feature sizes of a 1024-px model.
    S = model.image_size
    generator.predictor._bb_feat_sizes = [(S // 4, S // 4), (S // 8, S // 8), (S // 16, S // 16)]
    with torch.no_grad():
        return generator.generate(image)  # type: ignore[no-any-return]


def _scene(seed: int, size: tuple[int, int]) -> np.ndarray:
    return make_scene(np.random.default_rng(seed), size, num_objects=5).image


def test_agrees_with_sam2_automatic_mask_generator(present: tuple[Path, Path]) -> None:
    model_dir, checkpoint = present
    # A 256x256 image is the encoder's own square: no resize on either side.
    image = _scene(1, (256, 256))
    params = {"points_per_side": 6, **RELAXED}
    ref = _meta_generator(checkpoint, image, **params)
    with open_prompter(model_dir, backend="onnxruntime") as prompter:
        assert isinstance(prompter, Sam2Prompter)
        ours = MaskGenerator(prompter, GeneratorConfig(**params)).generate(image)
    assert len(ref) >= 10
    assert_same_masks(ours, ref)


def test_agrees_on_a_resized_image(present: tuple[Path, Path]) -> None:
    model_dir, checkpoint = present
    # 240x320 is squashed to 256x256 (OpenCV here, torchvision there): each
    # mask has its match at IoU >= 0.95 with a score within 1e-2. (Crop layers
    # are SAM's code, checked against segment_anything; Meta's SAM 2 generator
    # fails on a crop that keeps no mask, which random weights make likely.)
    image = _scene(5, (240, 320))
    params = {"points_per_side": 6, **RELAXED}
    ref = _meta_generator(checkpoint, image, **params)
    with open_prompter(model_dir, backend="onnxruntime") as prompter:
        ours = MaskGenerator(prompter, GeneratorConfig(**params)).generate(image)
    assert len(ref) >= 10
    assert abs(len(ours) - len(ref)) <= max(1, len(ref) // 10)
    unmatched = []
    for r in ref:
        ious = [mask_iou(o["segmentation"], r["segmentation"]) for o in ours]
        close = [
            i
            for i, o in enumerate(ours)
            if ious[i] >= 0.95 and abs(o["predicted_iou"] - r["predicted_iou"]) < 1e-2
        ]
        if not close:
            unmatched.append(r["point_coords"])
    # A mask whose stability sits at the threshold may fall either side of it.
    assert len(unmatched) <= max(1, len(ref) // 10), unmatched


def test_segment_cli_on_a_folder_with_a_sam2_model(
    present: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model_dir, _ = present
    folder = tmp_path / "images"
    folder.mkdir()
    for i in range(2):
        rgb = _scene(10 + i, (120, 160))
        cv2.imwrite(str(folder / f"scene{i}.png"), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    (folder / "broken.png").write_bytes(b"not a PNG")
    out = tmp_path / "out"
    flags = ["--points-per-side", "4", "--pred-iou-thresh", "0", "--stability-score-thresh", "0.5"]
    flags += ["--stability-score-offset", "0.05", "--box-nms-thresh", "1"]
    argv = ["segment", str(folder), "--everything", "-o", str(out), "--model", str(model_dir)]
    assert main([*argv, "--backend", "onnxruntime", *flags]) == 0
    text = capsys.readouterr().out
    assert "segmented 2 images" in text
    assert "1 skipped" in text
    coco = json.loads((out / SEGMENTS_FILE).read_text())
    assert coco["info"]["model"] == str(model_dir)
    assert len(coco["images"]) == 2
    assert coco["annotations"]
    for ann in coco["annotations"]:
        image = coco["images"][ann["image_id"] - 1]
        mask = rle_to_mask(ann["segmentation"])
        assert mask.shape == (image["height"], image["width"])
        assert ann["area"] == int(mask.sum()) > 0
    for image in coco["images"]:
        assert (out / image["overlay"]).is_file()


def test_no_object_clicks_give_no_mask(tmp_path_factory: pytest.TempPathFactory) -> None:
    model_dir, checkpoint = _export_biased(tmp_path_factory.mktemp("sam2"), "absent", -10.0)
    image = _scene(1, (256, 256))
    params = {"points_per_side": 3, **RELAXED}
    # Meta's image predictor ignores the object score and returns masks ...
    assert _meta_generator(checkpoint, image, **params)
    # ... the exported decoder (SAM 2's video semantics) blanks them: none survive.
    with open_prompter(model_dir, backend="onnxruntime") as prompter:
        prompter.set_image(image)
        scores, low = prompter.decode_points(np.array([[128.0, 128.0], [20.0, 200.0]]))
        assert scores.shape == (2, 3)
        assert low.shape == (2, 3, 64, 64)
        assert (low == mm.NO_OBJ_SCORE).all()
        assert MaskGenerator(prompter, GeneratorConfig(**params)).generate(image) == []


# -- every registered model reaches segment -------------------------------------------------


@pytest.mark.parametrize("name", sorted(MODELS))
def test_every_registered_model_opens_for_segment(name: str, tmp_path: Path) -> None:
    """The card an export of ``name`` writes opens as the right prompter (engines load lazily)."""
    spec = MODELS[name]
    extra: dict[str, Any] = {}
    files = ["encoder.onnx", "decoder.onnx"]
    if spec.family == mm.FAMILY_SAM2:
        extra = {
            "memory_attention": mm.MEMORY_ATTENTION_NAME,
            "memory_encoder": mm.MEMORY_ENCODER_NAME,
            "memory": mm.MemorySettings(image_size=spec.image_size).to_dict(),
        }
        files += [mm.MEMORY_ATTENTION_NAME, mm.MEMORY_ENCODER_NAME]
    write_model_card(tmp_path, ModelCard.from_spec(spec, **extra))
    for f in files:
        (tmp_path / f).write_bytes(b"")  # never loaded: opening a predictor is lazy
    with open_prompter(tmp_path, backend="onnxruntime") as prompter:
        expected = Sam2Prompter if spec.family == mm.FAMILY_SAM2 else SamPrompter
        assert type(prompter) is expected
        generator = MaskGenerator(prompter)
        # SAM-size (64x64) embeddings get the memory-capped chunk, small ones the backend's.
        sam_size = spec.embedding_shape[1:] == (64, 64)
        assert generator.points_per_batch == (16 if sam_size else 64)
