"""Tracker logic against a deterministic fake predictor (no model, no timing)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pytest

from samedge.errors import InputError, PromptError
from samedge.prompts import ObjectPrompt
from samedge.stream.tracking import (
    Tracker,
    TrackerConfig,
    TrackState,
    deep_point,
    drop_fragments,
    expand_box,
    mask_box,
)

H, W, L = 60, 80, 16


class FakePredictor:
    """Segments whatever labelled region the prompt's first positive point (or box
    centre) falls on in ``label_map``; scores are set per label."""

    def __init__(self, label_map: np.ndarray) -> None:
        self.label_map = label_map
        self.scores: dict[int, float] = {}
        self.calls: list[tuple[list[ObjectPrompt], bool]] = []
        self.on_call = None

    @property
    def original_size(self) -> tuple[int, int]:
        return self.label_map.shape  # type: ignore[return-value]

    def _label(self, p: ObjectPrompt) -> int:
        if p.point_coords is not None:
            x, y = p.point_coords[int(np.argmax(p.point_labels))]
        else:
            assert p.box is not None
            x, y = (p.box[0] + p.box[2]) / 2, (p.box[1] + p.box[3]) / 2
        return int(self.label_map[int(y), int(x)])

    def predict_batch(
        self,
        prompts: Sequence[ObjectPrompt],
        multimask_output: bool = True,
        return_logits: bool = False,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        self.calls.append((list(prompts), multimask_output))
        if self.on_call is not None:
            self.on_call()
        C = 3 if multimask_output else 1
        masks = np.zeros((len(prompts), C, H, W), bool)
        scores = np.zeros((len(prompts), C), np.float32)
        low = np.zeros((len(prompts), C, L, L), np.float32)
        for i, p in enumerate(prompts):
            k = self._label(p)
            mask = self.label_map == k if k > 0 else np.zeros((H, W), bool)
            score = self.scores.get(k, 0.9)
            # The best-scored candidate is the right one; the others are decoys.
            best = C // 2
            for c in range(C):
                masks[i, c] = mask if c == best else np.zeros((H, W), bool)
                scores[i, c] = score if c == best else score - 0.5
                low[i, c] = float(k)
        return masks, scores, low


def scene(*rects: tuple[int, int, int, int]) -> np.ndarray:
    """Label map with rectangle k+1 at (x0, y0, x1, y1) inclusive."""
    labels = np.zeros((H, W), np.int32)
    for k, (x0, y0, x1, y1) in enumerate(rects):
        labels[y0 : y1 + 1, x0 : x1 + 1] = k + 1
    return labels


def test_clicks_are_decoded_in_one_multimask_call_and_boxes_come_from_masks():
    fake = FakePredictor(scene((5, 5, 24, 19), (40, 30, 69, 49)))
    tracker = Tracker()
    a = tracker.add(point_coords=[[10, 10]])
    b = tracker.add(point_coords=[[50, 40]], point_labels=[1])
    assert (a, b) == (1, 2)
    objects = tracker.step(fake)
    assert len(fake.calls) == 1
    prompts, multimask = fake.calls[0]
    assert multimask is True  # a lone click is ambiguous
    assert [p.num_points for p in prompts] == [1, 1]
    assert objects[a].state is TrackState.TRACKING
    assert objects[a].box == (5.0, 5.0, 24.0, 19.0)
    assert objects[b].box == (40.0, 30.0, 69.0, 49.0)
    assert objects[a].area == 20 * 15
    assert objects[a].score == pytest.approx(0.9)
    assert objects[a].age == 1
    assert not objects[a].mask.flags.writeable
    logits = objects[a].low_res_logits  # the chosen mask's decoder logits
    assert logits is not None
    assert logits.ndim == 2
    assert not logits.flags.writeable
    assert objects[a].object_score is None  # presence is the memory tracker's


def test_reprompt_uses_box_deep_point_and_previous_logits():
    fake = FakePredictor(scene((5, 5, 24, 19)))
    tracker = Tracker(TrackerConfig(box_margin=0.1))
    oid = tracker.add(point_coords=[[6, 6]])
    tracker.step(fake)
    objects = tracker.step(fake)
    prompts, multimask = fake.calls[1]
    assert multimask is False
    (p,) = prompts
    # Deep inside the 20×15 rectangle, not at the clicked corner.
    x, y = p.point_coords[0]
    assert 12 <= x <= 17
    assert 10 <= y <= 14
    assert p.point_labels.tolist() == [1.0]
    # Box widened by 10% of each side (at least 2 px), clipped to the frame.
    np.testing.assert_allclose(p.box, [3.0, 3.0, 26.0, 21.0])
    assert p.mask_input is not None
    assert p.mask_input.shape == (1, L, L)
    assert float(p.mask_input.max()) == 1.0  # the logits the fake returned for label 1
    assert objects[oid].age == 2


@pytest.mark.parametrize(
    ("config", "has_point", "has_box", "has_mask"),
    [
        (TrackerConfig(use_point=False), False, True, True),
        (TrackerConfig(use_box=False), True, False, True),
        (TrackerConfig(use_mask_input=False), True, True, False),
    ],
)
def test_reprompt_parts_follow_config(config, has_point, has_box, has_mask):
    fake = FakePredictor(scene((5, 5, 24, 19)))
    tracker = Tracker(config)
    tracker.add(point_coords=[[10, 10]])
    tracker.step(fake)
    tracker.step(fake)
    (p,) = fake.calls[1][0]
    assert (p.point_coords is not None, p.box is not None) == (has_point, has_box)
    assert (p.mask_input is not None) == has_mask


def test_moving_object_is_followed_with_a_stable_id():
    fake = FakePredictor(scene((5, 5, 24, 19)))
    tracker = Tracker()
    oid = tracker.add(point_coords=[[10, 10]])
    for dx in range(0, 30, 3):
        fake.label_map = scene((5 + dx, 5, 24 + dx, 19))
        objects = tracker.step(fake)
        assert list(objects) == [oid]
        assert objects[oid].state is TrackState.TRACKING
        assert objects[oid].box == (5.0 + dx, 5.0, 24.0 + dx, 19.0)


def test_score_collapse_marks_lost_and_stops_decoding():
    fake = FakePredictor(scene((5, 5, 24, 19), (40, 30, 69, 49)))
    tracker = Tracker(TrackerConfig(min_score=0.5))
    a = tracker.add(point_coords=[[10, 10]])
    b = tracker.add(point_coords=[[50, 40]])
    tracker.step(fake)
    fake.scores[1] = 0.3
    objects = tracker.step(fake)
    assert objects[a].state is TrackState.LOST
    assert "score 0.30 < 0.50" in objects[a].lost_reason
    assert objects[a].mask is None
    assert objects[a].box == (5.0, 5.0, 24.0, 19.0)  # last known place
    assert objects[b].state is TrackState.TRACKING
    tracker.step(fake)
    assert len(fake.calls[2][0]) == 1  # only b is decoded now
    tracker.remove(b)
    calls = len(fake.calls)
    objects = tracker.step(fake)
    assert len(fake.calls) == calls  # nothing active: no decoder call at all
    assert objects[a].state is TrackState.LOST


def test_fresh_prompt_is_not_judged_by_score():
    fake = FakePredictor(scene((5, 5, 24, 19)))
    fake.scores[1] = 0.1
    tracker = Tracker(TrackerConfig(min_score=0.5))
    oid = tracker.add(point_coords=[[10, 10]])
    assert tracker.step(fake)[oid].state is TrackState.TRACKING
    assert tracker.step(fake)[oid].state is TrackState.LOST


@pytest.mark.parametrize("grow", [True, False])
def test_area_jump_marks_lost(grow):
    small, big = (34, 24, 45, 35), (2, 2, 77, 57)  # both hold the other's deep point
    fake = FakePredictor(scene(small if grow else big))
    tracker = Tracker(TrackerConfig(max_area_change=2.5))
    oid = tracker.add(point_coords=[[40, 30]])
    tracker.step(fake)
    fake.label_map = scene(big if grow else small)
    obj = tracker.step(fake)[oid]
    assert obj.state is TrackState.LOST
    assert "area jumped" in obj.lost_reason


def test_area_change_within_factor_keeps_tracking():
    fake = FakePredictor(scene((30, 20, 39, 29)))
    tracker = Tracker(TrackerConfig(max_area_change=2.5))
    oid = tracker.add(point_coords=[[35, 25]])
    tracker.step(fake)
    fake.label_map = scene((28, 18, 41, 31))  # 100 -> 196 px, x1.96
    assert tracker.step(fake)[oid].state is TrackState.TRACKING


def test_vanished_mask_marks_lost():
    fake = FakePredictor(scene((5, 5, 24, 19)))
    tracker = Tracker(TrackerConfig(min_score=-1.0, max_area_change=math.inf))
    oid = tracker.add(point_coords=[[10, 10]])
    tracker.step(fake)
    fake.label_map = scene()
    obj = tracker.step(fake)[oid]
    assert obj.state is TrackState.LOST
    assert "vanished" in obj.lost_reason


def test_lost_object_is_reacquired_by_a_new_prompt_for_its_id():
    fake = FakePredictor(scene((5, 5, 24, 19), (40, 30, 69, 49)))
    tracker = Tracker()
    a = tracker.add(point_coords=[[10, 10]])
    b = tracker.add(point_coords=[[50, 40]])
    tracker.step(fake)
    fake.scores[1] = 0.1
    assert tracker.step(fake)[a].state is TrackState.LOST
    fake.scores[1] = 0.95
    assert tracker.add(box=[4, 4, 25, 20], object_id=a) == a
    objects = tracker.step(fake)
    assert objects[a].state is TrackState.TRACKING
    assert objects[a].lost_reason is None
    assert objects[a].age == 1
    assert sorted(objects) == [a, b]
    prompts, multimask = fake.calls[-1]
    assert prompts[0].box is not None
    assert multimask is False
    assert tracker.add(point_coords=[[60, 40]]) == 3  # ids are never reused


def test_explicit_new_id_and_limits():
    tracker = Tracker(TrackerConfig(max_objects=2))
    assert tracker.add(point_coords=[[1, 1]], object_id=7) == 7
    assert tracker.add(point_coords=[[1, 1]]) == 8
    with pytest.raises(PromptError, match="limit is 2"):
        tracker.add(point_coords=[[1, 1]])
    tracker.remove(7)
    assert 7 not in tracker
    assert len(tracker) == 1
    with pytest.raises(InputError, match="no such object"):
        tracker.remove(7)
    with pytest.raises(InputError, match="object_id"):
        tracker.add(point_coords=[[1, 1]], object_id=0)
    tracker.clear()
    assert tracker.objects == {}


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({}, "no points and no box"),
        ({"point_coords": [[1, 2, 3]]}, "expected \\(N, 2\\)"),
        ({"point_coords": [[1, 2]], "point_labels": [2]}, "expected 0 \\(background\\) or 1"),
        ({"box": [10, 10, 5, 20]}, "x1 < x0"),
    ],
)
def test_bad_prompts_are_refused_at_add(kwargs, match):
    with pytest.raises(PromptError, match=match):
        Tracker().add(**kwargs)


def test_prompt_outside_the_frame_is_dropped_and_tracking_goes_on():
    fake = FakePredictor(scene((5, 5, 24, 19)))
    tracker = Tracker()
    good = tracker.add(point_coords=[[10, 10]])
    bad = tracker.add(point_coords=[[500, 10]])
    with pytest.raises(PromptError, match=f"object {bad}"):
        tracker.step(fake)
    assert bad not in tracker
    assert tracker.step(fake)[good].state is TrackState.TRACKING


def test_decode_racing_a_new_prompt_is_discarded():
    fake = FakePredictor(scene((5, 5, 24, 19), (40, 30, 69, 49)))
    tracker = Tracker()
    oid = tracker.add(point_coords=[[10, 10]])
    tracker.step(fake)
    # Another thread (a web client) re-prompts the object while the decoder runs.
    fake.on_call = lambda: tracker.add(point_coords=[[50, 40]], object_id=oid)
    tracker.step(fake)
    fake.on_call = None
    objects = tracker.step(fake)
    assert objects[oid].box == (40.0, 30.0, 69.0, 49.0)  # the new prompt won


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"min_score": 2.0}, "min_score"),
        ({"max_area_change": 1.0}, "max_area_change"),
        ({"min_area": -1}, "min_area"),
        ({"box_margin": -0.1}, "box_margin"),
        ({"use_box": False, "use_point": False}, "a mask alone"),
        ({"max_objects": 0}, "max_objects"),
        ({"min_fragment": 1.0}, "min_fragment"),
        ({"max_overlap": 0.0}, "max_overlap"),
    ],
)
def test_config_validation(kwargs, match):
    with pytest.raises(InputError, match=match):
        TrackerConfig(**kwargs)


def test_mask_geometry_helpers():
    mask = np.zeros((H, W), bool)
    mask[10:30, 0:40] = True  # touches the left frame edge
    assert mask_box(mask) == (0.0, 10.0, 39.0, 29.0)
    x, y = deep_point(mask)
    assert mask[int(y), int(x)]
    assert 17 <= x <= 22
    assert 17 <= y <= 22
    np.testing.assert_allclose(expand_box((0, 10, 39, 29), 0.5, (H, W)), [0, 0, 59, 39])
    np.testing.assert_allclose(expand_box((70, 50, 79, 59), 0.5, (H, W)), [65, 45, 80, 60])
    with pytest.raises(InputError, match="empty"):
        mask_box(np.zeros((H, W), bool))


def test_speckles_are_dropped_before_the_next_box():
    mask = np.zeros((H, W), bool)
    mask[10:30, 10:30] = True  # the object, 400 px
    mask[50:53, 70:73] = True  # a speckle, 9 px
    mask[10:30, 32:38] = True  # a real second part, 120 px (30%)
    cleaned = drop_fragments(mask, 0.1)
    assert not cleaned[51, 71]
    assert cleaned[20, 35]
    assert int(cleaned.sum()) == 520
    assert drop_fragments(cleaned, 0.1) is cleaned  # nothing to drop: no copy
    assert drop_fragments(mask, 0.0).sum() == mask.sum()

    labels = scene((10, 10, 29, 29))
    labels[50:53, 70:73] = 1  # the fake predictor returns the speckle with the object
    fake = FakePredictor(labels)
    tracker = Tracker(TrackerConfig(min_fragment=0.1))
    oid = tracker.add(point_coords=[[20, 20]])
    assert tracker.step(fake)[oid].box == (10.0, 10.0, 29.0, 29.0)
    tracker = Tracker(TrackerConfig(min_fragment=0.0))
    oid = tracker.add(point_coords=[[20, 20]])
    assert tracker.step(fake)[oid].box == (10.0, 10.0, 72.0, 52.0)


def test_neighbours_get_negative_points():
    # Two objects side by side: each one's widened box holds the other's deep point.
    fake = FakePredictor(scene((10, 10, 29, 29), (31, 10, 44, 29)))
    fake.label_map[45:56, 65:76] = 3
    tracker = Tracker(TrackerConfig(box_margin=1.0))
    a = tracker.add(point_coords=[[20, 20]])
    b = tracker.add(point_coords=[[37, 20]])
    far = tracker.add(point_coords=[[70, 50]])
    objects = tracker.step(fake)
    tracker.step(fake)
    pa, pb, pfar = fake.calls[1][0]
    assert pa.point_labels.tolist() == [1.0, 0.0]
    np.testing.assert_allclose(pa.point_coords[1], deep_point(objects[b].mask))
    assert pb.point_labels.tolist() == [1.0, 0.0]
    np.testing.assert_allclose(pb.point_coords[1], deep_point(objects[a].mask))
    assert pfar.point_labels.tolist() == [1.0]  # nobody near it
    assert all(o.tracking for o in tracker.objects.values())
    assert far in tracker
    off = Tracker(TrackerConfig(box_margin=1.0, negative_points=False))
    off.add(point_coords=[[20, 20]])
    off.add(point_coords=[[37, 20]])
    off.step(fake)
    off.step(fake)
    assert [p.point_labels.tolist() for p in fake.calls[-1][0]] == [[1.0], [1.0]]


def test_an_object_that_drifts_onto_another_is_lost_not_duplicated():
    big, small = (10, 10, 29, 24), (30, 10, 44, 24)  # 300 px and 225 px, touching
    fake = FakePredictor(scene(big, small))
    tracker = Tracker(TrackerConfig(max_overlap=0.8, negative_points=False))
    a = tracker.add(point_coords=[[20, 17]])
    b = tracker.add(point_coords=[[37, 17]])
    tracker.step(fake)
    # Both prompts now return the union (x2.3 for b: under the area-jump limit).
    fake.label_map = scene((10, 10, 44, 24))
    objects = tracker.step(fake)
    assert objects[a].state is TrackState.TRACKING  # it stayed where it was
    assert objects[b].state is TrackState.LOST  # it moved onto a
    assert objects[b].lost_reason.startswith(f"merged with object {a}")
    assert len(fake.calls[-1][0]) == 2
    tracker.step(fake)
    assert len(fake.calls[-1][0]) == 1  # b is no longer decoded
    keep = Tracker(TrackerConfig(max_overlap=1.0, negative_points=False))
    fake.label_map = scene(big, small)
    keep.add(point_coords=[[20, 17]])
    keep.add(point_coords=[[37, 17]])
    keep.step(fake)
    fake.label_map = scene((10, 10, 44, 24))
    assert all(o.tracking for o in keep.step(fake).values())
