"""Video evaluation: J and F on hand-made masks, the loop on oracles, samedge_tiny end to end."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from samedge.davis import EVENTS, DavisDataset, read_davis, write_davis, write_moving_scenes
from samedge.errors import InputError, UnknownNameError
from samedge.evaluate_video import (
    BOUND_TH,
    PromptKind,
    VideoEvalConfig,
    VideoEvalReport,
    boundary_f,
    boundary_map,
    evaluate_tracker,
    evaluate_video,
    region_j,
)

# ----------------------------------------------------------------------------- J


def test_region_j_known_values_and_empty_masks() -> None:
    a = np.zeros((10, 10), bool)
    a[:, :4] = True
    b = np.zeros((10, 10), bool)
    b[:, 2:6] = True
    assert region_j(a, b) == pytest.approx(20 / 60)
    assert region_j(a, a) == 1.0
    empty = np.zeros_like(a)
    assert region_j(empty, empty) == 1.0  # nothing there, nothing predicted: right
    assert region_j(a, empty) == 0.0
    assert region_j(empty, a) == 0.0
    void = np.zeros_like(a)
    void[:, 4:6] = True  # the disagreement b adds is void
    assert region_j(a, b, void) == pytest.approx(20 / 40)
    assert region_j(void, empty, void) == 1.0  # a prediction only on void pixels is not wrong
    with pytest.raises(InputError, match="shapes"):
        region_j(a, a[:5])


# ----------------------------------------------------------------------------- F


def _reference_boundary(mask: np.ndarray) -> np.ndarray:
    """Pixel by pixel: differs from its right, lower or lower-right neighbour (inside the image)."""
    h, w = mask.shape
    out = np.zeros_like(mask)
    for y in range(h):
        for x in range(w):
            for dy, dx in ((0, 1), (1, 0), (1, 1)):
                if y + dy < h and x + dx < w and mask[y, x] != mask[y + dy, x + dx]:
                    out[y, x] = True
    return out


def _reference_f(pred: np.ndarray, gt: np.ndarray, radius: float) -> float:
    pb, gb = _reference_boundary(pred), _reference_boundary(gt)
    p_pts, g_pts = np.argwhere(pb), np.argwhere(gb)
    if len(p_pts) == 0 or len(g_pts) == 0:
        return 1.0 if len(p_pts) == len(g_pts) else 0.0
    d = np.sqrt(((p_pts[:, None, :] - g_pts[None, :, :]) ** 2).sum(-1))
    precision = (d.min(axis=1) <= radius).mean()
    recall = (d.min(axis=0) <= radius).mean()
    return 0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall)


def test_boundary_map_is_the_seg2bmap_definition() -> None:
    rng = np.random.default_rng(0)
    for _ in range(5):
        m = rng.random((9, 11)) > 0.6
        assert np.array_equal(boundary_map(m), _reference_boundary(m))
    full = np.ones((5, 6), bool)
    assert not boundary_map(full).any()  # the frame's edge is not a boundary


def test_boundary_f_known_values() -> None:
    def left(n: int) -> np.ndarray:
        m = np.zeros((10, 100), bool)
        m[:, :n] = True  # one vertical edge: column n - 1
        return m

    gt = left(50)
    # The tolerance here: ceil(0.008 * hypot(10, 100)) = 1 pixel.
    assert boundary_f(gt, gt) == 1.0
    assert boundary_f(left(51), gt) == 1.0  # within 1 px
    assert boundary_f(left(53), gt) == 0.0  # 3 px off: nothing matches
    assert boundary_f(left(53), gt, bound_th=3) == 1.0  # >= 1: pixels
    # A second, far-away part: 10 of its 30 boundary pixels match (P 1/3, R 1).
    pred = gt.copy()
    pred[:, 80:90] = True
    assert boundary_f(pred, gt) == pytest.approx(0.5)
    assert boundary_f(gt, pred) == pytest.approx(0.5)
    empty = np.zeros_like(gt)
    assert boundary_f(empty, empty) == 1.0
    assert boundary_f(gt, empty) == 0.0
    assert boundary_f(empty, gt) == 0.0
    # Void counts as background in both: the far part vanishes.
    void = np.zeros_like(gt)
    void[:, 70:] = True
    assert boundary_f(pred, gt, void) == 1.0
    with pytest.raises(InputError, match="bound_th"):
        boundary_f(gt, gt, bound_th=0)


def test_boundary_f_matches_its_definition_on_random_masks() -> None:
    import cv2

    rng = np.random.default_rng(1)
    h, w = 40, 56
    radius = math.ceil(BOUND_TH * math.hypot(h, w))
    for _ in range(8):
        gt = cv2.GaussianBlur(rng.random((h, w)), (0, 0), 3) > 0.5
        pred = cv2.GaussianBlur(rng.random((h, w)), (0, 0), 3) > 0.5
        pred |= np.roll(gt, int(rng.integers(-3, 4)), axis=1)
        assert boundary_f(pred, gt) == pytest.approx(_reference_f(pred, gt, radius))


# ----------------------------------------------------------------------------- the loop


class _OracleTracker:
    """A tracker that answers every frame with the true masks of its objects.

    It reads the truth from the dataset by frame order, so it checks that the
    loop prompts every first-frame object, streams every frame, and scores
    the mask of the id it asked for.
    """

    def __init__(self, truth: list[np.ndarray], drop: set[int] = frozenset()) -> None:
        self.truth = truth
        self.drop = drop  # ids this tracker never returns
        self.ids: list[int] = []
        self.prompts: list[dict[str, Any]] = []
        self.t = 0

    def add(self, point_coords=None, point_labels=None, box=None, *, object_id=None) -> int:
        self.ids.append(object_id)
        self.prompts.append({"points": point_coords, "labels": point_labels, "box": box})
        return object_id

    def step(self, predictor: Any) -> dict[int, Any]:
        labels = self.truth[self.t]
        self.t += 1

        class Obj:
            def __init__(self, mask: np.ndarray | None) -> None:
                self.mask = mask

        return {k: Obj(None if k in self.drop else labels == k) for k in self.ids}


class _NullPredictor:
    def __init__(self) -> None:
        self.frames = 0

    def set_image(self, image: np.ndarray) -> None:
        assert image.dtype == np.uint8
        assert image.ndim == 3
        self.frames += 1


@pytest.fixture(scope="module")
def heldout(tmp_path_factory: pytest.TempPathFactory) -> DavisDataset:
    out = tmp_path_factory.mktemp("davis") / "held"
    # Fast motion (1.5 fps) and a short window: every event happens in 10 frames.
    write_moving_scenes(
        out, sequences=2, frames=10, size=(96, 128), seed=900_050, fps=1.5, window=3, photos=False
    )
    return read_davis(out)


def _oracles(data: DavisDataset, drop: set[int] = frozenset()):
    made: list[_OracleTracker] = []
    sequences = iter(data)

    def make() -> _OracleTracker:
        seq = next(sequences)
        made.append(_OracleTracker([seq.labels(i) for i in range(len(seq))], drop))
        return made[-1]

    return make, made


def test_oracle_tracker_scores_one(heldout: DavisDataset) -> None:
    make, made = _oracles(heldout)
    predictor = _NullPredictor()
    report = evaluate_tracker(predictor, make, heldout, VideoEvalConfig(prompt=PromptKind.CLICK))
    assert predictor.frames == heldout.frames == report.frames == 20
    assert report.j == report.f == report.jf == 1.0
    assert report.sequences == 2
    assert [o.frames for o in report.objects] == [8] * len(report.objects)  # not first, last
    for seq, tracker in zip(heldout, made, strict=True):
        assert tracker.ids == list(seq.object_ids())
        first = seq.labels(0)
        for k, prompt in zip(tracker.ids, tracker.prompts, strict=True):
            x, y = prompt["points"][0].astype(int)
            assert first[y, x] == k
            assert prompt["box"] is None
    assert report.by_event["all"].frames == sum(o.frames for o in report.objects)
    assert set(report.by_event) == {*EVENTS, "none", "all"}
    for name, event in report.by_event.items():
        assert event.frames > 0, name  # the fixture has every event
        assert event.j == event.f == 1.0
    assert report.id_kept_frames > 0
    assert report.id_kept == 1.0


def test_a_tracker_that_loses_an_object(heldout: DavisDataset) -> None:
    make, _ = _oracles(heldout, drop={1})
    report = evaluate_tracker(_NullPredictor(), make, heldout)
    for o in report.objects:
        if o.label != 1:
            assert o.j == o.f == 1.0
            continue
        # Object 1 is never returned: J is 1 exactly on the frames it is not visible.
        seq = next(s for s in heldout if s.name == o.sequence)
        shown = [bool((seq.labels(i) == 1).any()) for i in range(1, len(seq) - 1)]
        assert list(o.j_frames) == [0.0 if s else 1.0 for s in shown]
        assert list(o.f_frames) == list(o.j_frames)
        assert o.j_recall == pytest.approx(1 - np.mean(shown))
    expected = np.mean([o.j for o in report.objects])
    assert report.j == pytest.approx(expected)
    # Id kept: the visible frames after an occlusion or re-entry; only object 1's are lost.
    after = []
    for seq in heldout:
        for k in seq.object_ids():
            for i in range(1, len(seq) - 1):
                names = seq.events.at(k, i)
                if {"after_occlusion", "reentry"} & set(names) and (seq.labels(i) == k).any():
                    after.append(k != 1)
    assert report.id_kept_frames == len(after) > 0
    assert report.id_kept == pytest.approx(np.mean(after))
    assert report.jf == pytest.approx((report.j + report.f) / 2)


def test_box_prompts_are_the_masks_extremes(heldout: DavisDataset) -> None:
    make, made = _oracles(heldout)
    evaluate_tracker(_NullPredictor(), make, heldout, VideoEvalConfig(prompt=PromptKind.BOX))
    seq, tracker = heldout.sequences[0], made[0]
    for k, prompt in zip(tracker.ids, tracker.prompts, strict=True):
        ys, xs = np.nonzero(seq.labels(0) == k)
        assert prompt["box"].tolist() == [xs.min(), ys.min(), xs.max(), ys.max()]


def test_loop_refuses_bad_sequences(tmp_path: Path) -> None:
    img = np.zeros((20, 24, 3), np.uint8)
    obj = np.zeros((20, 24), np.uint8)
    obj[5:10, 5:10] = 1
    short = write_davis(tmp_path / "short", [("s", [(img, obj), (img, obj)])])
    make, _ = _oracles(read_davis(short))
    with pytest.raises(InputError, match="at least 3"):
        evaluate_tracker(_NullPredictor(), make, read_davis(short))
    blank = write_davis(tmp_path / "blank", [("s", [(img, obj * 0)] + [(img, obj)] * 2)])
    make, _ = _oracles(read_davis(blank))
    with pytest.raises(InputError, match="has no object"):
        evaluate_tracker(_NullPredictor(), make, read_davis(blank))

    class Renumbering(_OracleTracker):
        def add(self, *args: Any, object_id: int | None = None, **kwargs: Any) -> int:
            return super().add(*args, object_id=object_id, **kwargs) + 1

    fine = write_davis(tmp_path / "fine", [("s", [(img, obj)] * 3)])
    with pytest.raises(InputError, match="asked for object id 1, got 2"):
        evaluate_tracker(_NullPredictor(), lambda: Renumbering([obj] * 3), read_davis(fine))
    with pytest.raises(InputError, match="prompt"):
        VideoEvalConfig(prompt="box")  # type: ignore[arg-type]
    with pytest.raises(UnknownNameError, match="reprompt"):
        evaluate_video("samedge_tiny", fine, tracker="magic")


# ----------------------------------------------------------------------------- samedge_tiny


def test_samedge_tiny_end_to_end(heldout: DavisDataset, tiny_model: Path) -> None:
    reports = {}
    for prompt in PromptKind:
        report = evaluate_video(
            tiny_model, heldout, backend="onnxruntime", config=VideoEvalConfig(prompt=prompt)
        )
        reports[prompt] = report
        assert report.tracker == "reprompt"
        assert report.backend == "onnxruntime"
        assert report.prompt == prompt.value
        assert report.frames == 20
        assert len(report.objects) == sum(len(s.object_ids()) for s in heldout)
        assert 0.0 <= report.j <= 1.0
        assert 0.0 <= report.f <= 1.0
        for o in report.objects:
            assert len(o.j_frames) == o.frames == 8
            assert o.j == pytest.approx(np.mean(o.j_frames))
        assert set(report.by_event) == {*EVENTS, "none", "all"}
        # The report reads itself back (from the JSON form, per-frame values included).
        back = VideoEvalReport.from_dict(report.to_dict(per_frame=True))
        assert back.jf == pytest.approx(report.jf, abs=1e-6)
        assert back.objects[0].j_frames == pytest.approx(report.objects[0].j_frames, abs=1e-6)
        for name, event in report.by_event.items():
            assert back.by_event[name].frames == event.frames
            assert back.by_event[name].jf == pytest.approx(event.jf, abs=1e-4)
        assert back.id_kept == pytest.approx(report.id_kept, abs=1e-4)
        text = report.summary(sequences=True)
        assert "J&F" in text
        assert heldout.sequences[0].name in text
    # A trained model tracks: on the first scored frame, the box-prompted masks
    # overlap their objects (an untrained or misaligned pipeline gives ~0).
    first = [o.j_frames[0] for o in reports[PromptKind.BOX].objects]
    assert np.mean(first) > 0.3


def test_cli_eval_video(
    heldout: DavisDataset, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from samedge.cli import main

    video = str(heldout.root)
    assert main(["eval", "samedge_tiny", "--video", video, "--scenes", "3"]) == 1
    assert "--scenes (for procedural scenes): not used with video" in capsys.readouterr().err
    assert main(["eval", "samedge_tiny", "--video", str(tmp_path / "none")]) == 1
    assert "no such folder" in capsys.readouterr().err
    out = tmp_path / "eval.json"
    args = ["eval", "samedge_tiny", "--video", video, "--prompt", "click", "--backend"]
    assert main([*args, "onnxruntime", "--split", "all", "--output", str(out)]) == 0
    assert "id kept" in capsys.readouterr().out
    saved = json.loads(out.read_text())
    assert saved["command"].startswith("samedge eval samedge_tiny --video")
    report = VideoEvalReport.from_dict(saved)
    assert report.prompt == "click"
    assert report.sequences == 2


def test_memory_tracker_is_wired(heldout: DavisDataset) -> None:
    pytest.importorskip("samedge.stream.memory")
    from samedge.evaluate_video import _tracker_setup
    from samedge.memory_predictor import MemoryPredictor
    from samedge.stream.memory import MemoryTracker

    assert _tracker_setup("memory") == (MemoryPredictor, MemoryTracker)
    # A SAM 1-family model has no memory graphs: one line, before any frame is read.
    with pytest.raises(InputError, match="no memory graphs"):
        evaluate_video("samedge_tiny", heldout, tracker="memory")
