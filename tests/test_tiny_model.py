"""samedge-tiny: the PyTorch model builds, loads, runs, and the shipped model segments."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from samedge.models import get_model_spec

ASSETS = Path(__file__).resolve().parents[1] / "samedge" / "assets" / "samedge_tiny"


def test_registered_spec_matches_the_architecture() -> None:
    torch = pytest.importorskip("torch")
    from samedge.exporters.tiny_model import build_samedge_tiny

    spec = get_model_spec("samedge_tiny")
    sam = build_samedge_tiny(None)
    assert sam.image_encoder.img_size == spec.image_size == 256
    with torch.no_grad():
        emb = sam.image_encoder(torch.zeros(1, 3, spec.image_size, spec.image_size))
    assert tuple(emb.shape) == (1, *spec.embedding_shape)
    assert spec.builder == "samedge.exporters.tiny_model:build_samedge_tiny"
    # "Tiny" is a promise: the exported FP32 graphs must stay small.
    assert sum(p.numel() for p in sam.parameters()) < 2_500_000


def test_forward_through_sam_predictor_and_checkpoint_roundtrip(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    from segment_anything import SamPredictor

    from samedge.exporters.tiny_model import build_samedge_tiny
    from samedge.scenes import make_scene

    sam = build_samedge_tiny(None, seed=1)
    ckpt = tmp_path / "tiny.pt"
    torch.save(sam.state_dict(), ckpt)
    loaded = build_samedge_tiny(ckpt)
    for (name, a), b in zip(sam.state_dict().items(), loaded.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
    assert not loaded.training

    scene = make_scene(np.random.default_rng(0), (200, 300), num_objects=3)
    predictor = SamPredictor(loaded)
    predictor.set_image(scene.image)
    masks, scores, low = predictor.predict(
        point_coords=np.array([[150, 100]]), point_labels=np.array([1]), multimask_output=True
    )
    assert masks.shape == (3, 200, 300)
    assert scores.shape == (3,)
    assert low.shape == (3, 64, 64)
    assert np.isfinite(scores).all()


def test_wrong_checkpoint_is_a_checkpoint_error(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    from samedge.errors import CheckpointError
    from samedge.exporters.tiny_model import build_samedge_tiny

    state = build_samedge_tiny(None).state_dict()
    state.pop("mask_decoder.iou_token.weight")
    bad = tmp_path / "bad.pt"
    torch.save(state, bad)
    with pytest.raises(CheckpointError, match="samedge_tiny"):
        build_samedge_tiny(bad)


def test_shipped_model_directory_is_complete_and_small() -> None:
    from samedge.model_dir import read_model_dir

    card = read_model_dir(ASSETS)
    assert card.model == "samedge_tiny"
    assert card.image_size == 256
    total = sum(f.stat().st_size for f in ASSETS.iterdir())
    assert total <= 10 * 1024 * 1024, f"shipped samedge_tiny is {total / 2**20:.1f} MiB"


def test_shipped_model_segments_held_out_scenes() -> None:
    """A real accuracy check: box prompts on held-out scenes (no torch needed)."""
    from samedge.evaluate import EvalConfig, heldout_scenes
    from samedge.predictor import Predictor
    from samedge.prompts import ObjectPrompt

    scenes, _ = heldout_scenes(EvalConfig(scenes=4, photos=False))
    ious = []
    with Predictor("samedge_tiny", backend="onnxruntime") as predictor:
        for scene in scenes:
            predictor.set_image(scene.image)
            boxes = []
            for m in scene.masks:
                ys, xs = np.nonzero(m)
                boxes.append(np.array([xs.min(), ys.min(), xs.max(), ys.max()], float))
            masks, _, _ = predictor.predict_batch(
                [ObjectPrompt(box=b) for b in boxes], multimask_output=False
            )
            for pred, gt in zip(masks[:, 0], scene.masks, strict=True):
                ious.append((pred & gt).sum() / max((pred | gt).sum(), 1))
    assert len(ious) >= 8
    assert float(np.mean(ious)) > 0.5, ious
