"""A live source that drops out is reopened with backoff (fake cameras, recorded delays)."""

from __future__ import annotations

import logging
import threading
import time

import numpy as np
import pytest

from samedge.errors import InputError, SourceError
from samedge.stream import (
    LatestFrameReader,
    Pipeline,
    ReconnectingSource,
    ReconnectPolicy,
    open_source,
)
from samedge.stream import sources as sources_module
from samedge.stream.sources import FrameSource


class FakeCamera(FrameSource):
    """Delivers ``frames`` frames, then drops out (raises, or returns no frame)."""

    live = True

    def __init__(self, frames: int, *, raises: bool = True, name: str = "fake camera") -> None:
        super().__init__()
        self.frames = frames
        self.raises = raises
        self.description = name

    def _read(self):
        if self._next_id >= self.frames:
            if self.raises:
                raise OSError("device unplugged (test)")
            return None
        time.sleep(0.001)  # a camera paces its frames; the capture thread must not spin
        return np.full((8, 8, 3), self._next_id, np.uint8), time.monotonic()


class Plan:
    """An opener following a script: an int opens a camera giving that many frames,
    an exception is raised by that opening attempt."""

    def __init__(self, *steps: int | Exception) -> None:
        self.steps = list(steps)
        self.cameras: list[FakeCamera] = []

    def __call__(self) -> FakeCamera:
        if not self.steps:
            raise SourceError("no more steps in the test plan")
        step = self.steps.pop(0)
        if isinstance(step, Exception):
            raise step
        camera = FakeCamera(step, raises=len(self.cameras) % 2 == 0)
        self.cameras.append(camera)
        return camera


class Sleeps(list):
    """A fake sleep that records the delays instead of waiting."""

    def __call__(self, seconds: float) -> None:
        self.append(seconds)


def test_policy_delays_grow_to_the_cap():
    policy = ReconnectPolicy(initial_delay=0.25, max_delay=1.5, multiplier=3.0)
    assert [policy.delay(n) for n in range(1, 5)] == [0.25, 0.75, 1.5, 1.5]
    assert ReconnectPolicy().delay(10_000) == 30.0  # no overflow on a very long outage
    assert ReconnectPolicy(initial_delay=0.0, max_delay=0.0).delay(3) == 0.0


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({"initial_delay": -1.0}, "initial_delay: got -1.0"),
        ({"max_delay": float("inf")}, "max_delay: got inf"),
        ({"initial_delay": 5.0, "max_delay": 1.0}, "expected >= initial_delay"),
        ({"multiplier": 0.5}, "multiplier: got 0.5"),
        ({"max_reconnect": -1}, "max_reconnect: got -1"),
        ({"max_reconnect": True}, "max_reconnect: got True"),
        ({"initial_delay": "1"}, "initial_delay: got '1'"),
    ],
)
def test_policy_validation(kwargs, words):
    with pytest.raises(InputError, match=words):
        ReconnectPolicy(**kwargs)


def test_drop_outs_are_reopened_with_backoff_and_ids_keep_counting(caplog):
    # Open (2 frames), drop; two failed attempts; reopen (3 frames), drop; reopen at once.
    plan = Plan(2, SourceError("no /dev/video0"), SourceError("no /dev/video0"), 3, 1)
    sleeps = Sleeps()
    policy = ReconnectPolicy(initial_delay=0.5, max_delay=1.5)
    caplog.set_level(logging.INFO, logger="samedge.stream.reconnect")
    src = ReconnectingSource(plan, policy, sleep=sleeps)
    assert src.live
    assert src.description == "fake camera"
    assert src.status.state == "connected"
    frames = [src.read() for _ in range(6)]
    assert [f.frame_id for f in frames] == [0, 1, 2, 3, 4, 5]
    assert [int(f.image[0, 0, 0]) for f in frames] == [0, 1, 0, 1, 2, 0]
    # 3 attempts after the first drop-out (0.5, 1.0, then capped at 1.5); the delays
    # start over after the reopened camera delivered frames.
    assert sleeps == [0.5, 1.0, 1.5, 0.5]
    status = src.status
    assert status.state == "connected"
    assert (status.dropouts, status.attempts, status.reconnects) == (2, 4, 2)
    # Every dropped handle was released; the current one is released by close().
    assert [c.closed for c in plan.cameras] == [True, True, False]
    src.close()
    assert plan.cameras[-1].closed
    assert src.status.state == "closed"
    text = caplog.text
    assert "fake camera dropped out: OSError: device unplugged (test)" in text
    assert "dropped out: no frame (camera or stream ended)" in text
    assert "reconnect attempt 1 in 0.50 s" in text
    assert "reconnect attempt 2 failed: no /dev/video0" in text
    assert "reconnected (attempt 3)" in text


def test_backoff_keeps_growing_while_reopened_cameras_die_at_once():
    plan = Plan(1, 0, 0, 2)
    sleeps = Sleeps()
    src = ReconnectingSource(plan, ReconnectPolicy(initial_delay=0.1, max_delay=10), sleep=sleeps)
    ids = [src.read().frame_id for _ in range(3)]
    assert ids == [0, 1, 2]
    assert sleeps == pytest.approx([0.1, 0.2, 0.4])
    src.close()


def test_gives_up_after_max_reconnect_failures():
    plan = Plan(1, SourceError("gone"), SourceError("gone"), SourceError("gone"), 5)
    sleeps = Sleeps()
    src = ReconnectingSource(plan, ReconnectPolicy(max_reconnect=2), sleep=sleeps)
    assert src.read().frame_id == 0
    with pytest.raises(SourceError, match="2 reconnect attempts in a row failed") as info:
        src.read()
    assert "max_reconnect=2" in str(info.value)
    assert "SourceError: gone" in str(info.value)  # the last reason is named
    assert len(sleeps) == 2
    assert src.status.state == "failed"
    assert len(plan.steps) == 2  # it stopped trying
    src.close()
    assert src.status.state == "failed"


def test_max_reconnect_zero_turns_reconnecting_off():
    sleeps = Sleeps()
    src = ReconnectingSource(Plan(1, 1), ReconnectPolicy(max_reconnect=0), sleep=sleeps)
    src.read()
    with pytest.raises(SourceError, match=r"reconnecting is off \(max_reconnect=0\)"):
        src.read()
    assert sleeps == []


def test_the_first_open_fails_at_once():
    with pytest.raises(SourceError, match="no such camera"):
        ReconnectingSource(Plan(SourceError("no such camera")), sleep=Sleeps())
    with pytest.raises(InputError, match="expected a FrameSource"):
        ReconnectingSource(lambda: "camera")  # type: ignore[arg-type,return-value]


def test_closing_wakes_a_reader_waiting_between_attempts():
    """A pipeline stopping during a long backoff does not sit it out."""
    plan = Plan(2, SourceError("unplugged"))
    src = ReconnectingSource(plan, ReconnectPolicy(initial_delay=60.0, max_delay=60.0))
    reader = LatestFrameReader(src)
    deadline = time.monotonic() + 30
    while src.status.state != "reconnecting" and time.monotonic() < deadline:
        time.sleep(0.01)
    assert src.status.state == "reconnecting"
    reader.close()  # joins at most 10 s; the 60 s wait must have been cut short
    assert not reader.alive
    assert src.closed
    assert src.status.attempts == 0  # woken before the attempt, not after it


class NoModel:
    """Just enough predictor for an encoder-only pipeline."""

    original_size = (8, 8)

    def set_image(self, image, image_format="RGB"):
        self.original_size = image.shape[:2]


def test_pipeline_runs_through_drop_outs():
    plan = Plan(3, SourceError("gone"), 2, 10**9)
    src = ReconnectingSource(plan, ReconnectPolicy(initial_delay=0.001, max_delay=0.002))
    baseline = threading.active_count()
    pipe = Pipeline(src, NoModel(), None, max_frames=8, annotate=False)
    assert pipe.threaded  # live: read by the capture thread
    ids = [r.frame_id for r in pipe]
    assert ids == sorted(ids)
    assert len(ids) == 8
    assert src.status.reconnects == 2
    assert src.closed
    assert threading.active_count() == baseline


def test_open_source_wraps_live_sources(monkeypatch):
    opened: list[int] = []

    def fake_camera(index: int) -> FakeCamera:
        opened.append(index)
        return FakeCamera(1, name=f"camera {index} (fake)")

    monkeypatch.setattr(sources_module, "_open_camera", fake_camera)
    policy = ReconnectPolicy(initial_delay=0.0, max_delay=0.0, max_reconnect=3)
    src = open_source("2", reconnect=policy)
    assert isinstance(src, ReconnectingSource)
    assert src.policy is policy
    assert src.live
    assert src.description == "camera 2 (fake)"
    assert [src.read().frame_id for _ in range(3)] == [0, 1, 2]
    assert opened == [2, 2, 2]  # reopened through the same opener
    src.close()
    # Files and folders end (or loop) instead: they are not wrapped.
    assert not isinstance(open_source("synthetic"), ReconnectingSource)


def test_a_camera_that_cannot_be_opened_is_a_source_error():
    with pytest.raises(SourceError, match="tried camera index 97"):
        open_source(97)
