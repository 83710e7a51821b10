"""The held-out evaluation: protocol logic on an oracle, and the real model end to end."""

from __future__ import annotations

import math

import numpy as np
import pytest

from samedge.errors import InputError
from samedge.evaluate import (
    SIZE_BINS,
    EvalConfig,
    EvalReport,
    Protocol,
    Sample,
    _summarise,
    evaluate,
    evaluate_predictor,
    heldout_scenes,
)
from samedge.scenes import Scene


def _box(mask: np.ndarray) -> tuple[int, int, int, int]:
    ys, xs = np.nonzero(mask)
    return int(xs.min()), int(ys.min()), int(xs.max()), int(ys.max())


class _Oracle:
    """Answers each prompt with the ground-truth mask it points at (or an empty one).

    A point prompt gets the mask containing its first point; a box prompt the
    mask whose tight box it is. So the protocol's clicks and boxes are
    checked to land on the right object.
    """

    def __init__(self, scenes: list[Scene], empty: bool = False) -> None:
        self.by_image = {s.image.tobytes(): s for s in scenes}
        self.empty = empty
        self.scene: Scene | None = None

    def set_image(self, image: np.ndarray) -> None:
        self.scene = self.by_image[image.tobytes()]

    def predict_batch(self, prompts, multimask_output: bool = True):
        assert self.scene is not None
        out = []
        for p in prompts:
            if p.box is not None:
                hit = [m for m in self.scene.masks if _box(m) == tuple(p.box.astype(int))]
            else:
                x, y = p.point_coords[0].astype(int)
                hit = [m for m in self.scene.masks if m[y, x]]
            assert len(hit) >= 1
            out.append(np.zeros_like(hit[0]) if self.empty else hit[0])
        c = 3 if multimask_output else 1
        masks = np.repeat(np.stack(out)[:, None], c, axis=1)
        scores = np.ones((len(out), c), np.float32)
        low = np.zeros((len(out), c, 64, 64), np.float32)
        return masks, scores, low


def test_protocol_on_an_oracle_scores_one() -> None:
    scenes, _ = heldout_scenes(EvalConfig(scenes=6, size=(96, 96), photos=False))
    ious, areas = evaluate_predictor(_Oracle(scenes), scenes, clicks=3)
    assert set(ious) == {"click", "2 clicks", "3 clicks", "box"}
    n = sum(len(s.masks) for s in scenes)
    assert len(areas) == n
    assert all(len(v) == n for v in ious.values())
    assert all(v == 1.0 for vals in ious.values() for v in vals)


def test_protocol_on_empty_predictions_scores_zero_and_corrects() -> None:
    scenes, _ = heldout_scenes(EvalConfig(scenes=3, size=(96, 96), photos=False))
    ious, _ = evaluate_predictor(_Oracle(scenes, empty=True), scenes, clicks=2)
    assert all(v == 0.0 for vals in ious.values() for v in vals)


def test_summarise_bins_by_area() -> None:
    ious = {"click": [1.0, 0.5, 0.0], "box": [1.0, 1.0, 1.0]}
    miou, by_size, counts = _summarise(ious, [10.0, 1000.0, 10000.0])
    assert counts == {"small": 1, "medium": 1, "large": 1}
    assert miou["click"] == pytest.approx(0.5)
    assert by_size["click"] == {"small": 1.0, "medium": 0.5, "large": 0.0}
    _, by_size, counts = _summarise({"box": [0.3]}, [10.0])
    assert counts["large"] == 0
    assert math.isnan(by_size["box"]["large"])
    assert [b for b, _, _ in SIZE_BINS] == ["small", "medium", "large"]


def test_eval_config_validates() -> None:
    with pytest.raises(InputError, match="scenes"):
        EvalConfig(scenes=0)
    with pytest.raises(InputError, match="clicks"):
        EvalConfig(clicks=0)


def test_heldout_scenes_are_deterministic_and_seeded() -> None:
    a, _ = heldout_scenes(EvalConfig(scenes=2, size=(64, 64), photos=False))
    b, _ = heldout_scenes(EvalConfig(scenes=2, size=(64, 64), photos=False))
    c, _ = heldout_scenes(EvalConfig(scenes=2, size=(64, 64), photos=False, seed=1))
    assert np.array_equal(a[1].image, b[1].image)
    assert not np.array_equal(a[1].image, c[1].image)


def test_evaluate_shipped_model_returns_numbers_in_range() -> None:
    report = evaluate("samedge_tiny", backend="onnxruntime", config=EvalConfig(scenes=3))
    assert isinstance(report, EvalReport)
    assert report.backend == "onnxruntime"
    assert report.scenes == 3
    assert sum(report.counts.values()) == report.objects > 0
    for value in report.miou.values():
        assert 0.0 <= value <= 1.0
    text = report.summary()
    for row in ("click", "2 clicks", "3 clicks", "box"):
        assert row in text
    d = report.to_dict()
    assert set(d["miou"]) == set(report.miou)


def test_cli_eval(capsys: pytest.CaptureFixture[str]) -> None:
    from samedge.cli import main

    assert main(["eval", "samedge_tiny", "--scenes", "2", "--backend", "onnxruntime"]) == 0
    out = capsys.readouterr().out
    assert "box" in out
    assert "samedge_tiny" in out


# ----------------------------------------------------------------------------- click placement


def _full_frame_farthest(region: np.ndarray) -> tuple[float, int, int]:
    """The definition: distance transform of the whole frame, frame edge as border."""
    import cv2

    padded = np.pad(region.astype(np.uint8), 1)
    dist = cv2.distanceTransform(padded, cv2.DIST_L2, cv2.DIST_MASK_PRECISE)[1:-1, 1:-1]
    sq = np.rint(dist.astype(np.float64) ** 2)  # exact integers, as _farthest keeps them
    y, x = np.unravel_index(int(sq.argmax()), sq.shape)
    return float(np.sqrt(sq[y, x])), int(x), int(y)


def test_farthest_on_the_crop_equals_the_whole_frame() -> None:
    from samedge.evaluate import _farthest

    rng = np.random.default_rng(0)
    scenes, _ = heldout_scenes(EvalConfig(scenes=4, size=(96, 128), photos=False))
    regions = [m for s in scenes for m in s.masks]
    regions += [rng.random((40, 50)) > 0.5, np.ones((30, 20), bool)]  # ragged; the whole frame
    for region in regions:
        assert _farthest(region) == _full_frame_farthest(region)


def test_next_click_follows_ritm() -> None:
    from samedge.evaluate import _next_click

    def click(gt: np.ndarray, pred: np.ndarray | None) -> tuple[int, int, int]:
        out = _next_click(gt, pred, [(30, 30)] if pred is not None else [])
        assert out is not None
        return out

    gt = np.zeros((60, 60), bool)
    gt[10:50, 10:50] = True
    # First click: the centre of the object (a 40x40 square: one of its 4 central pixels).
    x, y, label = click(gt, None)
    assert (label, x in (29, 30), y in (29, 30)) == (1, True, True)
    # A wide false alarm beats a thin miss: a negative click inside the false alarm.
    pred = gt.copy()
    pred[10:50, 10:12] = False  # 2-px-wide miss
    pred[0:10, 0:60] = True  # 10-px-high false alarm above
    x, y, label = click(gt, pred)
    assert (label, y < 10, bool(gt[y, x])) == (0, True, False)
    # A wide miss beats a thin false alarm: a positive click in the miss.
    pred = gt.copy()
    pred[10:50, 30:50] = False
    pred[50:52, 10:50] = True
    x, y, label = click(gt, pred)
    assert (label, x >= 30, bool(gt[y, x])) == (1, True, True)
    # A pixel already clicked is never clicked again.
    single = np.zeros((5, 5), bool)
    single[2, 2] = True
    assert _next_click(single, np.zeros_like(single), [(2, 2)]) is None
    # Nothing to correct.
    assert _next_click(gt, gt.copy(), [(30, 30)]) is None


class _Recorder(_Oracle):
    """The oracle, recording the multimask flag and mask inputs of every call."""

    def __init__(self, scenes: list[Scene]) -> None:
        super().__init__(scenes)
        self.calls: list[tuple[str, bool, bool]] = []

    def predict_batch(self, prompts, multimask_output: bool = True):
        kind = "box" if prompts[0].box is not None else f"{len(prompts[0].point_coords)} clicks"
        fed = any(p.mask_input is not None for p in prompts)
        self.calls.append((kind, multimask_output, fed))
        masks, scores, low = super().predict_batch(prompts, multimask_output)
        # A wrong first answer, so the corrective rounds have something to correct.
        if kind == "1 clicks":
            masks = np.zeros_like(masks)
        return masks, scores, low


@pytest.mark.parametrize(
    ("protocol", "box_multi", "fix_multi", "fed"),
    [(Protocol.SAMEDGE, False, False, True), (Protocol.EFFICIENTVIT_SAM, True, True, False)],
)
def test_protocols_choose_outputs_and_mask_inputs(
    protocol: Protocol, box_multi: bool, fix_multi: bool, fed: bool
) -> None:
    scenes, _ = heldout_scenes(EvalConfig(scenes=2, size=(96, 96), photos=False))
    recorder = _Recorder(scenes)
    ious, _ = evaluate_predictor(recorder, scenes, clicks=2, protocol=protocol)
    assert all(v == 0.0 for v in ious["click"])
    assert all(v == 1.0 for v in ious["2 clicks"])  # the corrective click lands on the object
    assert {c for c in recorder.calls if c[0] == "box"} == {("box", box_multi, False)}
    assert {c for c in recorder.calls if c[0] == "1 clicks"} == {("1 clicks", True, False)}
    assert {c for c in recorder.calls if c[0] == "2 clicks"} == {("2 clicks", fix_multi, fed)}


def test_objects_are_decoded_in_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    import samedge.evaluate as evaluate_module

    monkeypatch.setattr(evaluate_module, "_BATCH", 2)
    scenes, _ = heldout_scenes(EvalConfig(scenes=3, size=(96, 96), photos=False))
    recorder = _Recorder(scenes)
    ious, areas = evaluate_predictor(recorder, scenes, clicks=1)
    assert len(ious["box"]) == len(areas) == sum(len(s.masks) for s in scenes)
    assert len(recorder.calls) > 2 * len(scenes)  # more than one call per prompt type
    assert all(v == 1.0 for v in ious["box"])


def test_sample_validates() -> None:
    image = np.zeros((8, 8, 3), np.uint8)
    masks = np.zeros((1, 8, 8), bool)
    with pytest.raises(InputError, match="empty mask"):
        Sample(image, masks, np.zeros((1, 4)), np.ones(1))
    masks[0, 2, 2] = True
    with pytest.raises(InputError, match="boxes"):
        Sample(image, masks, np.zeros((2, 4)), np.ones(1))
    with pytest.raises(InputError, match="protocol"):
        EvalConfig(protocol="samedge")  # type: ignore[arg-type]


def test_save_eval_writes_the_json_schema_with_provenance(tmp_path) -> None:
    import json

    from samedge.evaluate import save_eval

    report = EvalReport(
        miou={"click": 0.5, "box": 0.75},
        by_size={"click": dict.fromkeys(("small", "medium", "large"), 0.5),
                 "box": {"small": math.nan, "medium": 0.7, "large": 0.8}},
        counts={"small": 0, "medium": 1, "large": 1},
        objects=2, scenes=1, seed=7, photos=False, model="samedge_tiny", backend="onnxruntime",
    )  # fmt: skip
    path = save_eval(report.to_dict(), tmp_path / "sub" / "eval.json", command="samedge eval x")
    data = json.loads(path.read_text())
    assert {k: v for k, v in data.items() if k not in ("command", "samedge", "timestamp")} == (
        report.to_dict()
    )
    assert data["command"] == "samedge eval x"
    assert data["by_size"]["box"]["small"] is None
    with pytest.raises(InputError, match="is a directory"):
        save_eval(report.to_dict(), tmp_path, command="x")
    with pytest.raises(InputError, match="already has"):
        save_eval(data, tmp_path / "again.json", command="x")


def test_cli_eval_output_file(capsys: pytest.CaptureFixture[str], tmp_path) -> None:
    import json

    from samedge.cli import main

    out = tmp_path / "eval_samedge_tiny.json"
    argv = ["eval", "samedge_tiny", "--scenes", "1", "--backend", "onnxruntime", "--output"]
    assert main([*argv, str(out)]) == 0
    assert f"wrote {out}" in capsys.readouterr().out
    data = json.loads(out.read_text())
    assert data["scenes"] == 1
    # The command as typed: it reproduces the file.
    assert data["command"] == f"samedge {' '.join(argv)} {out}"
    # A directory is refused before the evaluation runs, in one line.
    assert main([*argv, str(tmp_path)]) == 1
    assert "is a directory" in capsys.readouterr().err
