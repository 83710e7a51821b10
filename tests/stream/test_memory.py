"""MemoryTracker logic on a fake predictor: SAM 2's bank rules, occlusion, bad input.

The graphs themselves are checked against Meta's code in tests/exporters/test_sam2.py.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from samedge.errors import InputError, ProfileLimitError, PromptError
from samedge.memory_model import (
    HIGH_RES_FEATURES_0,
    HIGH_RES_FEATURES_1,
    NO_MEMORY_FEATURES,
    NO_OBJ_SCORE,
    VISION_FEATURES,
    MemorySettings,
)
from samedge.stream.memory import (
    MemoryTracker,
    MemoryTrackerConfig,
    _choose,
    _Memory,
    _Object,
    _select,
)
from samedge.stream.tracking import TrackState

SETTINGS = MemorySettings(memory_tokens=4, memory_dim=2, hidden_dim=4, image_size=64)


class FakePredictor:
    """The MemoryPredictor interface with tiny shapes; records what the tracker asks."""

    settings = SETTINGS
    mask_size = 16
    image_size = 64

    def __init__(self, present: dict[int, bool] | None = None) -> None:
        self.original_size = (32, 48)
        self.present = present or {}
        self.calls: list[tuple[str, int]] = []
        self.banks: list[tuple[int, int]] = []
        self.features = {
            VISION_FEATURES: np.zeros((1, 4, 4, 4), np.float32),
            NO_MEMORY_FEATURES: np.ones((1, 4, 4, 4), np.float32),
            HIGH_RES_FEATURES_0: np.zeros((1, 32, 16, 16), np.float32),
            HIGH_RES_FEATURES_1: np.zeros((1, 64, 8, 8), np.float32),
        }
        self.score = 1.0

    def attend(self, bank: Any, tpos: Any, ptrs: Any, offsets: Any) -> np.ndarray:
        self.calls.append(("attend", len(bank)))
        self.banks.append((bank.shape[1], ptrs.shape[1]))
        return np.zeros((len(bank), 4, 4, 4), np.float32)

    def decode(self, emb: Any, coords: Any, labels: Any, mask: Any, has: Any) -> dict[str, Any]:
        b = len(emb)
        self.calls.append(("decode", b))
        masks = np.full((b, 4, 16, 16), -5.0, np.float32)
        masks[:, :, 4:12, 4:12] = 5.0
        score = np.full((b, 1), self.score, np.float32)
        masks[score[:, 0] <= 0] = NO_OBJ_SCORE
        return {
            "low_res_masks": masks,
            "iou_predictions": np.tile(np.array([0.5, 0.6, 0.9, 0.7], np.float32), (b, 1)),
            "object_pointers": np.ones((b, 4, 4), np.float32),
            "object_score_logits": score,
        }

    def encode_memory(self, masks: Any, prompted: Any, scores: Any) -> np.ndarray:
        self.calls.append(("encode_memory", len(masks)))
        return np.zeros((len(masks), 4, 2), np.float32)

    def to_model_coords(self, coords: Any) -> np.ndarray:
        return np.asarray(coords, np.float64)

    def upsample(self, low: np.ndarray) -> np.ndarray:
        import cv2

        return cv2.resize(low, (48, 32), interpolation=cv2.INTER_LINEAR)  # type: ignore[no-any-return]


def test_objects_are_batched_one_call_per_graph_per_frame() -> None:
    tracker, predictor = MemoryTracker(), FakePredictor()
    for x in (5, 15, 25):
        tracker.add(point_coords=[[x, 10]], point_labels=[1])
    objects = tracker.step(predictor)
    assert [c[0] for c in predictor.calls] == ["decode", "encode_memory"]  # no memory yet
    assert all(o.state is TrackState.TRACKING and o.mask is not None for o in objects.values())
    predictor.calls.clear()
    tracker.step(predictor)
    assert predictor.calls == [("attend", 3), ("decode", 3), ("encode_memory", 3)]


def test_memory_is_bounded_and_follows_sam2_slots() -> None:
    tracker, predictor = MemoryTracker(), FakePredictor()
    tracker.add(box=[2, 2, 20, 20])
    for _ in range(30):
        tracker.step(predictor)
    # A conditioning frame + 6 recent spatial memories; pointers of 1 + 15 frames.
    assert predictor.banks[-1] == (7, 16)
    (report,) = tracker.memory_report()
    assert (report.conditioning_frames, report.recent_frames, report.pointers) == (1, 6, 16)
    assert report.nbytes <= SETTINGS.memory_bytes_per_object()


def test_select_orders_the_bank_as_sam2() -> None:
    obj = _Object(1, None)
    obj.cond[0] = _Memory(np.full((4, 2), 0.0, np.float32), np.zeros(4, np.float32))
    for f in range(1, 10):
        feats = np.full((4, 2), float(f), np.float32) if f >= 4 else None
        obj.recent[f] = _Memory(feats, np.full(4, float(f), np.float32))
    bank, slots, ptrs, offsets = _select(obj, 10, SETTINGS, 4)
    # Slot t_pos holds frame t - (7 - t_pos): frames 4..9 in slots 1..6.
    assert slots.tolist() == [0, 1, 2, 3, 4, 5, 6]
    assert bank[:, 0, 0].tolist() == [0, 4, 5, 6, 7, 8, 9]
    # Pointers: the conditioning frame (distance 10), then frames 9, 8, ... 1.
    assert offsets.tolist() == [10, 1, 2, 3, 4, 5, 6, 7, 8, 9]
    assert ptrs[1:, 0].tolist() == [9, 8, 7, 6, 5, 4, 3, 2, 1]


def test_choose_falls_back_to_multimask_when_unstable() -> None:
    iou = np.array([0.9, 0.1, 0.8, 0.2], np.float32)
    stable = np.full((4, 8, 8), -10.0, np.float32)
    stable[:, 2:6, 2:6] = 10.0
    assert _choose(stable, iou, False, SETTINGS) == 0
    assert _choose(stable, iou, True, SETTINGS) == 2
    shaky = stable.copy()
    shaky[0, 0:2, :] = 0.01  # between -delta and +delta: unstable single mask
    assert _choose(shaky, iou, False, SETTINGS) == 2


def test_occluded_object_keeps_its_id_and_comes_back() -> None:
    tracker, predictor = MemoryTracker(), FakePredictor()
    oid = tracker.add(point_coords=[[10, 10]], point_labels=[1])
    tracker.step(predictor)
    predictor.score = -3.0
    state = tracker.step(predictor)[oid]
    assert state.state is TrackState.OCCLUDED
    assert state.mask is None
    assert "score" in (state.lost_reason or "")
    assert state.object_score == -3.0  # the presence logit is handed out with the state
    predictor.score = 2.0
    state = tracker.step(predictor)[oid]
    assert state.state is TrackState.TRACKING
    assert state.mask is not None
    assert state.object_id == oid
    assert state.object_score == 2.0
    logits = state.low_res_logits
    assert logits is not None
    assert logits.ndim == 2
    assert not logits.flags.writeable
    assert (state.mask.any()) == bool((logits > 0).any())


def test_correction_runs_the_tracked_decode_then_the_click() -> None:
    tracker, predictor = MemoryTracker(), FakePredictor()
    oid = tracker.add(point_coords=[[10, 10]], point_labels=[1])
    tracker.step(predictor)
    tracker.add(point_coords=[[12, 12]], point_labels=[1], object_id=oid)
    predictor.calls.clear()
    tracker.step(predictor)
    assert predictor.calls == [("attend", 1), ("decode", 1), ("decode", 1), ("encode_memory", 1)]
    assert tracker.objects[oid].age == 1


def test_remove_and_new_object_mid_stream() -> None:
    tracker, predictor = MemoryTracker(), FakePredictor()
    a = tracker.add(point_coords=[[10, 10]], point_labels=[1])
    tracker.step(predictor)
    b = tracker.add(box=[1, 1, 9, 9])
    predictor.calls.clear()
    tracker.step(predictor)
    # a tracks through memory, b is decoded from its prompt (another token count).
    assert ("attend", 1) in predictor.calls
    assert predictor.calls.count(("decode", 1)) == 2
    tracker.remove(a)
    assert sorted(tracker.step(predictor)) == [b]
    with pytest.raises(InputError, match="no such object"):
        tracker.remove(a)


def test_prompting_an_object_twice_before_a_frame_is_refused() -> None:
    tracker = MemoryTracker()
    oid = tracker.add(point_coords=[[10, 10]], point_labels=[1])
    with pytest.raises(PromptError, match="already has a prompt waiting"):
        tracker.add(point_coords=[[11, 10]], point_labels=[1], object_id=oid)


def test_more_objects_than_the_batch_limit() -> None:
    tracker = MemoryTracker(MemoryTrackerConfig(max_objects=2))
    tracker.add(box=[1, 1, 5, 5])
    tracker.add(box=[1, 1, 6, 6])
    with pytest.raises(ProfileLimitError, match=r"limit is 2 \(MemoryTrackerConfig.max_objects"):
        tracker.add(box=[1, 1, 7, 7])


def test_memory_length_over_the_exported_maximum() -> None:
    tracker = MemoryTracker(MemoryTrackerConfig(max_conditioning_frames=9))
    tracker.add(box=[1, 1, 5, 5])
    with pytest.raises(ProfileLimitError, match=r"exported for at most 4.*max_conditioning_frames"):
        tracker.step(FakePredictor())


def test_prompt_outside_the_frame_is_dropped_with_an_error() -> None:
    tracker = MemoryTracker()
    tracker.add(point_coords=[[100, 10]], point_labels=[1])
    with pytest.raises(PromptError, match="outside"):
        tracker.step(FakePredictor())
    assert len(tracker) == 0


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({"max_objects": 0}, "max_objects"), ({"max_conditioning_frames": 1}, ">= 2")],
)
def test_config_is_validated(kwargs: dict[str, int], match: str) -> None:
    with pytest.raises(InputError, match=match):
        MemoryTrackerConfig(**kwargs)


def test_more_objects_on_a_frame_than_the_engine_takes() -> None:
    tracker, predictor = MemoryTracker(), FakePredictor()
    predictor.max_objects_per_call = 2  # type: ignore[attr-defined]
    for x in (5, 15, 25):
        tracker.add(point_coords=[[x, 10]], point_labels=[1])
    with pytest.raises(ProfileLimitError, match=r"at most 2 per call \(TensorRTConfig.max_objects"):
        tracker.step(predictor)


def test_memory_predictor_refuses_a_sam1_model() -> None:
    from samedge.errors import ModelDirError
    from samedge.memory_predictor import MemoryPredictor

    with pytest.raises(ModelDirError, match=r"no memory graphs.*re-prompt tracker"):
        MemoryPredictor("samedge_tiny", backend="onnxruntime")


def test_a_sam2_card_needs_its_memory_section() -> None:
    from samedge.errors import ModelDirError
    from samedge.model_dir import ModelCard

    card = {
        "model": "sam2.1_hiera_tiny",
        "image_size": 1024,
        "pixel_mean": [1, 2, 3],
        "pixel_std": [1, 2, 3],
        "embedding_shape": [256, 64, 64],
        "family": "sam2",
    }
    with pytest.raises(ModelDirError, match="needs memory_attention, memory_encoder and memory"):
        ModelCard.from_mapping(card, "samedge.json")
    settings = MemorySettings().to_dict()
    full = {**card, "memory_attention": "a.onnx", "memory_encoder": "b.onnx", "memory": settings}
    parsed = ModelCard.from_mapping(full, "samedge.json")
    assert MemorySettings.from_dict(parsed.memory or {}) == MemorySettings()
