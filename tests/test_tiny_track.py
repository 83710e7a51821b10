"""samedge-tiny-track: the shipped memory model loads, keeps the graph contract, and tracks.

The shipped-model checks need no torch (ONNX Runtime only); the PyTorch ones
(architecture, training smoke run) skip without the ``export`` extra.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
import pytest

from samedge import memory_model as mm
from samedge.graph_names import LOW_RES_MASKS
from samedge.masks import mask_iou
from samedge.model_dir import read_model_dir
from samedge.models import get_model_spec
from samedge.predictor import resolve_model
from samedge.scenes import MovingScene

ROOT = Path(__file__).resolve().parents[1]
# SAMEDGE_TINY_TRACK_DIR points these checks at a candidate export before it ships.
TRACK_DIR = Path(
    os.environ.get("SAMEDGE_TINY_TRACK_DIR") or ROOT / "samedge" / "assets" / "samedge_tiny_track"
)
WEIGHTS = ROOT / "training" / "samedge_tiny_track.pt"
# A held-out scene (seeds >= 900000 are never trained on), 240x320 like the eval set.
SCENE = {"seed": 900_500, "size": (240, 320), "num_objects": 3, "fps": 12.0}
FRAMES = 16


def _clip() -> list:
    return list(MovingScene(**SCENE).frames(FRAMES))


def _track(predictor: object, scenes: list) -> tuple[dict[int, list[float]], list[set[int]]]:
    """Box-prompt every first-frame object, then step; per-object IoU and the ids seen."""
    from samedge.masks import mask_box
    from samedge.stream.memory import MemoryTracker

    tracker = MemoryTracker()
    first = scenes[0]
    for k, oid in enumerate(first.ids):
        tracker.add(box=np.array(mask_box(first.masks[k]), np.float64), object_id=int(oid))
    ious: dict[int, list[float]] = {int(i): [] for i in first.ids}
    seen = []
    for t, scene in enumerate(scenes):
        predictor.set_image(scene.image)  # type: ignore[attr-defined]
        objects = tracker.step(predictor)
        seen.append(set(objects))
        if t == 0:
            continue
        for oid in ious:
            gt = _gt(scene, oid)
            mask = objects[oid].mask
            pred = mask if mask is not None else np.zeros_like(gt)
            ious[oid].append(mask_iou(pred, gt))
    return ious, seen


def _gt(scene: object, oid: int) -> np.ndarray:
    ids = list(scene.ids)  # type: ignore[attr-defined]
    if oid in ids:
        return np.asarray(scene.masks[ids.index(oid)])  # type: ignore[attr-defined]
    return np.zeros(scene.image.shape[:2], bool)  # type: ignore[attr-defined]


@pytest.fixture(scope="module")
def predictor():  # type: ignore[no-untyped-def]
    from samedge.memory_predictor import MemoryPredictor

    with MemoryPredictor(TRACK_DIR, backend="onnxruntime") as p:
        yield p


def test_builtin_resolves_to_a_sam2_family_model_dir() -> None:
    shipped = ROOT / "samedge" / "assets" / "samedge_tiny_track"
    assert resolve_model("samedge_tiny_track").resolve() == shipped.resolve()
    card = read_model_dir(TRACK_DIR)
    spec = get_model_spec("samedge_tiny_track")
    assert card.family == mm.FAMILY_SAM2 == spec.family
    assert card.image_size == spec.image_size == 256
    settings = mm.MemorySettings.from_dict(card.memory or {})
    assert (settings.hidden_dim, settings.memory_dim, settings.memory_tokens) == (128, 64, 256)
    # "Tiny" is a promise: the four graphs stay small package data.
    total = sum(f.stat().st_size for f in TRACK_DIR.glob("*.onnx"))
    assert total < 16 * 2**20


def test_shipped_graphs_keep_the_contract() -> None:
    import onnxruntime as ort

    card = read_model_dir(TRACK_DIR)
    graphs = {
        str(card.encoder): (mm.ENCODER_INPUTS, mm.ENCODER_OUTPUTS),
        mm.MEMORY_ATTENTION_NAME: (mm.MEMORY_ATTENTION_INPUTS, mm.MEMORY_ATTENTION_OUTPUTS),
        str(card.decoder): (mm.DECODER_INPUTS, mm.DECODER_OUTPUTS),
        mm.MEMORY_ENCODER_NAME: (mm.MEMORY_ENCODER_INPUTS, mm.MEMORY_ENCODER_OUTPUTS),
    }
    for name, (inputs, outputs) in graphs.items():
        session = ort.InferenceSession(str(TRACK_DIR / name), providers=["CPUExecutionProvider"])
        assert [i.name for i in session.get_inputs()] == list(inputs), name
        assert [o.name for o in session.get_outputs()] == list(outputs), name
    session = ort.InferenceSession(
        str(TRACK_DIR / str(card.encoder)), providers=["CPUExecutionProvider"]
    )
    shapes = {o.name: o.shape for o in session.get_outputs()}
    # Real stride-4 / stride-8 features, projected to C/8 and C/4 channels.
    assert shapes[mm.HIGH_RES_FEATURES_0] == [1, 16, 64, 64]
    assert shapes[mm.HIGH_RES_FEATURES_1] == [1, 32, 32, 32]


def test_shipped_graphs_come_from_the_shipped_weights() -> None:
    if not WEIGHTS.exists():
        pytest.skip("training/samedge_tiny_track.pt is not in this checkout")
    card = read_model_dir(TRACK_DIR)
    assert card.checkpoint_sha256 == hashlib.sha256(WEIGHTS.read_bytes()).hexdigest()


def test_tracks_a_held_out_clip_with_stable_ids(predictor) -> None:  # type: ignore[no-untyped-def]
    scenes = _clip()
    ious, seen = _track(predictor, scenes)
    prompted = set(ious)
    assert len(prompted) >= 2
    assert all(ids == prompted for ids in seen), "an id appeared or vanished"
    mean = float(np.mean([v for values in ious.values() for v in values]))
    assert mean > 0.5, f"memory tracking mean IoU {mean:.3f} over {FRAMES - 1} frames"


def test_memory_is_what_finds_the_objects(predictor) -> None:  # type: ignore[no-untyped-def]
    """Without memory the tracked-frame decoder has no prompt and nothing to go on."""
    scenes = _clip()
    with_memory, _ = _track(predictor, scenes)
    ids = sorted(with_memory)
    without: list[float] = []
    for scene in scenes[1:]:
        predictor.set_image(scene.image)
        b = len(ids)
        features = predictor.features[mm.NO_MEMORY_FEATURES]
        out = predictor.decode(
            np.repeat(features, b, 0),
            np.zeros((b, 2, 2), np.float32),
            np.full((b, 2), -1.0, np.float32),
            np.zeros((b, 1, predictor.mask_size, predictor.mask_size), np.float32),
            np.zeros(b, np.float32),
        )
        for i, oid in enumerate(ids):
            best = 1 + int(np.argmax(out["iou_predictions"][i, 1:]))
            mask = predictor.upsample(out[LOW_RES_MASKS][i, best]) > 0
            without.append(mask_iou(mask, _gt(scene, oid)))
    memory = float(np.mean([v for values in with_memory.values() for v in values]))
    assert memory > float(np.mean(without)) + 0.2, (memory, float(np.mean(without)))


def test_registered_spec_matches_the_architecture() -> None:
    torch = pytest.importorskip("torch")
    pytest.importorskip("sam2")
    from samedge.exporters.tiny_track_model import build_samedge_tiny_track

    spec = get_model_spec("samedge_tiny_track")
    model = build_samedge_tiny_track(None)
    with torch.no_grad():
        out = model.forward_image(torch.zeros(1, 3, spec.image_size, spec.image_size))
    shapes = [tuple(f.shape) for f in out["backbone_fpn"]]
    assert shapes == [(1, 16, 64, 64), (1, 32, 32, 32), (1, *spec.embedding_shape)]
    assert sum(p.numel() for p in model.parameters()) < 3_000_000


def test_init_from_samedge_tiny_reuses_its_weights() -> None:
    torch = pytest.importorskip("torch")
    pytest.importorskip("sam2")
    from samedge.exporters.tiny_model import build_samedge_tiny
    from samedge.exporters.tiny_track_model import init_from_samedge_tiny, tiny_track_model

    sam = build_samedge_tiny(None, seed=3)
    model = tiny_track_model()
    copied = init_from_samedge_tiny(model, sam)
    state = model.state_dict()
    ref = sam.state_dict()
    assert torch.equal(
        state["sam_mask_decoder.transformer.layers.0.mlp.layers.0.weight"],
        ref["mask_decoder.transformer.layers.0.mlp.lin1.weight"],
    )
    assert torch.equal(
        state["image_encoder.trunk.stem.0.weight"], ref["image_encoder.stem.0.weight"]
    )
    assert "sam_mask_decoder.obj_score_token.weight" not in copied
    assert not state["sam_mask_decoder.conv_s0.weight"].any()
    assert not state["no_mem_embed"].any()


def test_training_script_smoke_run_and_resume(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    pytest.importorskip("sam2")
    pytest.importorskip("tqdm")
    pytest.importorskip("matplotlib")
    pytest.importorskip("skimage")
    import importlib.util

    path = ROOT / "training" / "train_samedge_tiny_track.py"
    init = ROOT / "training" / "samedge_tiny.pt"
    if not init.exists():
        pytest.skip("training/samedge_tiny.pt is not in this checkout")
    spec = importlib.util.spec_from_file_location("train_samedge_tiny_track", path)
    assert spec is not None
    assert spec.loader is not None
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    args = [
        "--out", str(tmp_path), "--init", str(init), "--bank", "1", "--seq-frames", "6",
        "--frames", "3", "--clips", "1", "--objects", "2", "--val-sequences", "1",
        "--val-frames", "4", "--minutes", "30",
    ]  # fmt: skip
    assert script.main([*args, "--max-steps", "1"]) == 0
    for name in ("samedge_tiny_track.pt", "samedge_tiny_track_loss.png",
                 "samedge_tiny_track_history.json", "samedge_tiny_track_last.pt"):  # fmt: skip
        assert (tmp_path / name).stat().st_size > 0, name
    assert script.main([*args, "--max-steps", "2"]) == 0  # resumes at step 1
    log = (tmp_path / "samedge_tiny_track_train.log").read_text()
    assert "resumed from" in log
    assert "at step 1" in log
