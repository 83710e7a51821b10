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
