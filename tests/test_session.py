"""One session wiring: open_session() and SessionConfig (run, serve and stream() build on it)."""

from __future__ import annotations

from pathlib import Path

import pytest

from samedge.errors import InputError, PromptError
from samedge.prompts import ObjectPrompt
from samedge.session import SessionConfig, Tracking, open_session
from samedge.stream import PushSource, SyntheticSource
from samedge.stream.tracking import Tracker


def test_auto_tracks_a_sam1_model_by_reprompting(tiny_model: Path) -> None:
    config = SessionConfig(model=tiny_model, backend="onnxruntime", frames=2)
    with open_session(config, ObjectPrompt(point_coords=[[320, 240]], point_labels=[1])) as stream:
        assert isinstance(stream.tracker, Tracker)
        assert isinstance(stream.source, SyntheticSource)
        # The backend was chosen once, and the predictor says why.
        assert stream.predictor.backend_choice.name == "onnxruntime"
        assert stream.predictor.backend_reason
        results = list(stream)
    assert [r.frame_id for r in results] == [0, 1]
    assert results[-1].objects[1].mask is not None


def test_memory_tracking_needs_a_memory_model(tiny_model: Path) -> None:
    source = PushSource()
    config = SessionConfig(model=tiny_model, tracking=Tracking.MEMORY)
    with pytest.raises(InputError, match="no memory graphs"):
        open_session(config, source=source)
    assert source.closed  # owned from the call on, even when it fails


def test_bad_prompt_fails_before_the_model_loads(monkeypatch: pytest.MonkeyPatch) -> None:
    import samedge.predictor

    def no_model(*args: object, **kwargs: object) -> None:
        raise AssertionError("the model must not load before the prompts are checked")

    monkeypatch.setattr(samedge.predictor, "Predictor", no_model)
    box = ObjectPrompt(box=[1, 2, 30, 40])
    with pytest.raises(InputError, match="positive ints"):
        open_session(SessionConfig(), {0: box})
    with pytest.raises(PromptError, match="ObjectPrompt"):
        open_session(SessionConfig(), "a box")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("tracking", "memory", "samedge.session.Tracking"),
        ("frames", 0, "positive int"),
        ("overlap", 1, "True, False or None"),
        ("synthetic_size", (10, 10), ">= 32"),
        ("tracker", object(), "TrackerConfig"),
    ],
)
def test_config_refuses_bad_fields(field: str, value: object, message: str) -> None:
    with pytest.raises(InputError, match=message):
        SessionConfig(**{field: value})  # type: ignore[arg-type]


def test_synthetic_is_one_test() -> None:
    assert SessionConfig().synthetic
    assert SessionConfig(source=" Synthetic ").synthetic
    assert not SessionConfig(source="0").synthetic
