"""``samedge.stream(...)`` / ``open_stream``: results, prompts on the fly, clean release."""

from __future__ import annotations

import gc
import sys
import threading
import time

import numpy as np
import pytest

import samedge
from samedge import ObjectPrompt
from samedge.errors import ImageError, InputError, PromptError
from samedge.stream import (
    FrameResult,
    PushSource,
    Stream,
    SyntheticSource,
    TrackState,
    click_points,
    open_stream,
)
from tests._shared import PERMISSIVE

SMALL = (96, 128)


def clicks(source: SyntheticSource, count: int) -> list[ObjectPrompt]:
    scene = source.scene_at(0)
    return [
        ObjectPrompt(point_coords=[xy], point_labels=[1])
        for _, xy in click_points(scene.masks, scene.ids, count, min_area=20)
    ]


def live(fps: float = 200.0) -> SyntheticSource:
    """A paced synthetic camera: read by the capture thread like a real one."""
    return SyntheticSource(seed=0, size=SMALL, fps=fps, realtime=True)


def test_samedge_stream_is_callable_and_is_open_stream(predictor):
    assert sys.modules["samedge.stream"] is samedge.stream
    assert callable(samedge.stream)
    source = SyntheticSource(seed=1, size=SMALL, num_objects=3)
    prompts = clicks(source, 2)
    results = []
    with samedge.stream(
        source, prompts=prompts, model=predictor, tracker=PERMISSIVE, max_frames=3
    ) as s:
        assert isinstance(s, Stream)
        for result in s:
            results.append(result)
    assert [r.frame_id for r in results] == [0, 1, 2]
    for r in results:
        assert isinstance(r, FrameResult)
        assert r.image.shape == (*SMALL, 3)
        assert r.annotated is None
        assert set(r.objects) == {1, 2}
        for oid, obj in r.objects.items():
            assert obj.object_id == oid
            assert obj.state in (TrackState.TRACKING, TrackState.LOST)
            if obj.mask is not None:
                assert obj.mask.shape == SMALL
                assert obj.box is not None
                assert np.isfinite(obj.score)
    assert results[1].timestamp > results[0].timestamp
    assert s.closed
    assert source.closed
    assert s.stats.frames == 3


def test_prompt_forms_and_changes_while_iterating(predictor):
    box = ObjectPrompt(box=[10, 10, 60, 50])
    both = ObjectPrompt(point_coords=[[40, 30]], point_labels=[1], box=[20, 15, 70, 60])
    s = open_stream(
        SyntheticSource(seed=2, size=SMALL),
        {4: box, 9: both},
        model=predictor,
        tracker=PERMISSIVE,
        max_frames=5,
    )
    seen: list[set[int]] = []
    for result in s:
        seen.append(set(result.objects))
        if result.frame_id == 1:
            new = s.add(ObjectPrompt(point_coords=[[90, 60]], point_labels=[1]))
            assert new == 10  # ids keep counting after the highest given
            s.remove(4)
        if result.frame_id == 2:
            s.add(ObjectPrompt(box=[0, 0, 30, 30]), object_id=9)  # re-prompt in place
        if result.frame_id == 3:
            assert s.frame_size == SMALL
            s.clear()
    assert seen == [{4, 9}, {4, 9}, {9, 10}, {9, 10}, set()]
    # One prompt alone is object 1; a sequence numbers them 1..N.
    one = open_stream(SyntheticSource(size=SMALL), box, model=predictor, max_frames=1)
    assert set(next(iter(one)).objects) == {1}
    one.close()


def test_bad_prompts_are_clear_errors(predictor):
    with pytest.raises(PromptError, match="expected an ObjectPrompt, a list"):
        open_stream(SyntheticSource(size=SMALL), "box", model=predictor)  # type: ignore[arg-type]
    with pytest.raises(PromptError, match=r"expected a samedge\.ObjectPrompt"):
        open_stream(SyntheticSource(size=SMALL), [[1, 2]], model=predictor)  # type: ignore[list-item]
    with pytest.raises(InputError, match="positive ints as keys"):
        open_stream(
            SyntheticSource(size=SMALL), {0: ObjectPrompt(box=[1, 1, 5, 5])}, model=predictor
        )
    with pytest.raises(InputError, match="max_frames"):
        open_stream(SyntheticSource(size=SMALL), model=predictor, max_frames=0)
    # Outside the frame, known only once a frame arrived: the iteration says so and
    # releases the source.
    source = SyntheticSource(size=SMALL)
    s = open_stream(source, {3: ObjectPrompt(box=[0, 0, 500, 50])}, model=predictor)
    with pytest.raises(PromptError, match=r"object 3\.box: got .*outside the 128×96"):
        list(s)
    assert s.closed
    assert source.closed
    # Once frames come, add() checks at once and the stream goes on.
    s = open_stream(SyntheticSource(size=SMALL), model=predictor, max_frames=3)
    frames = 0
    for result in s:
        frames += 1
        if result.frame_id == 0:
            with pytest.raises(PromptError, match=r"point_coords\[0\]: got \(200, 10\)"):
                s.add(ObjectPrompt(point_coords=[[200, 10]], point_labels=[1]))
            with pytest.raises(PromptError, match=r"expected a samedge\.ObjectPrompt"):
                s.add([1, 2])  # type: ignore[arg-type]
    assert frames == 3
    with pytest.raises(InputError, match="closed"):
        list(s)
    s = open_stream(live(), model=predictor)
    s.start()
    with pytest.raises(InputError, match="runs once"):
        iter(s)
    s.close()


def test_leaving_the_loop_releases_the_camera(predictor):
    baseline = threading.active_count()
    # break
    source = live()
    for result in samedge.stream(source, model=predictor):
        if result.frame_id >= 1:
            break
    assert source.closed
    assert threading.active_count() == baseline
    # an exception in the loop body
    source = live()

    def fail_in_the_loop_body() -> None:
        for _ in samedge.stream(source, model=predictor):
            raise ZeroDivisionError

    with pytest.raises(ZeroDivisionError):
        fail_in_the_loop_body()
    assert source.closed
    assert threading.active_count() == baseline
    # a context manager, exited before the iteration ends
    source = live()
    with samedge.stream(source, model=predictor, overlap=True) as s:
        it = iter(s)
        next(it)
        # The capture thread, and the worker encoding the next frame meanwhile.
        assert s.pipeline.overlap
        names = sorted(
            t.name.split("_")[0] for t in threading.enumerate() if t.name.startswith("samedge-")
        )
        assert threading.active_count() == baseline + 2, threading.enumerate()
        assert names == ["samedge-capture", "samedge-encode"]
    assert source.closed
    assert threading.active_count() == baseline
    del it
    # garbage collection of a half-read stream nobody closed (no reference cycle
    # keeps it: CPython releases it at once, without waiting for gc)
    source = live()
    s = samedge.stream(source, model=predictor)
    it = iter(s)
    next(it)
    del it, s
    assert source.closed
    assert threading.active_count() == baseline
    # and of one never iterated
    source = live()
    s = samedge.stream(source, model=predictor)
    del s
    gc.collect()
    assert source.closed


def test_start_stop_repeatedly_leaks_nothing(predictor):
    baseline = threading.active_count()
    for _ in range(4):
        source = live()
        got: list[FrameResult] = []
        s = samedge.stream(source, model=predictor, callback=got.append)
        assert s.start() is s
        assert s.running
        deadline = time.monotonic() + 60
        while len(got) < 2 and time.monotonic() < deadline:
            time.sleep(0.005)
        s.close()
        assert len(got) >= 2
        assert not s.running
        assert source.closed
        assert threading.active_count() == baseline


def test_callback_forms(predictor):
    got: list[int] = []
    s = open_stream(
        SyntheticSource(size=SMALL),
        model=predictor,
        max_frames=3,
        callback=lambda r: got.append(r.frame_id),
    )
    summary = s.run()
    assert summary.frames == 3
    assert got == [0, 1, 2]
    with pytest.raises(InputError, match="closed"):
        s.run()
    # start() then wait() for the end; wait() re-raises what ended a failed stream.
    s = open_stream(SyntheticSource(size=SMALL), model=predictor, max_frames=2, callback=got.append)
    assert s.start().wait(timeout=60).frames == 2
    s = open_stream(
        SyntheticSource(size=SMALL), {1: ObjectPrompt(box=[0, 0, 999, 9])}, model=predictor
    )
    with pytest.raises(PromptError, match="outside"):
        s.start().wait(timeout=60)
    with pytest.raises(InputError, match="callback: got int"):
        open_stream(SyntheticSource(size=SMALL), model=predictor, callback=3)  # type: ignore[arg-type]
    with pytest.raises(InputError, match="not start"):
        open_stream(SyntheticSource(size=SMALL), model=predictor).wait()


def test_the_model_is_closed_only_when_the_stream_opened_it(tiny_model, monkeypatch):
    from samedge.predictor import Predictor

    closed: list[int] = []
    real_close = Predictor.close

    def counting_close(self):
        closed.append(1)
        real_close(self)

    monkeypatch.setattr(Predictor, "close", counting_close)
    s = open_stream(
        SyntheticSource(size=SMALL), model=tiny_model, backend="onnxruntime", max_frames=1
    )
    assert isinstance(s.predictor, Predictor)
    assert len(list(s)) == 1
    assert closed == [1]
    with Predictor(tiny_model, backend="onnxruntime") as mine:
        s = open_stream(SyntheticSource(size=SMALL), model=mine, max_frames=1)
        list(s)
        assert closed == [1]
    # A model that fails to load releases the source it was given.
    source = SyntheticSource(size=SMALL)
    with pytest.raises(InputError):
        open_stream(source, model=tiny_model / "missing")
    assert source.closed


def test_push_source_feeds_a_stream(predictor):
    src = PushSource("test feed", fps=30.0)
    frame = np.zeros((*SMALL, 3), np.uint8)
    frame[20:60, 30:80] = (200, 40, 40)
    results: list[FrameResult] = []
    s = open_stream(
        src, [ObjectPrompt(box=[30, 20, 80, 60])], model=predictor, callback=results.append
    )
    s.start()
    ids = []
    for _ in range(3):
        ids.append(src.put(frame))
        deadline = time.monotonic() + 60
        while (not results or results[-1].frame_id != ids[-1]) and time.monotonic() < deadline:
            time.sleep(0.002)
    src.end()
    s.wait(timeout=60)
    assert ids == [0, 1, 2]
    assert [r.frame_id for r in results] == ids
    assert results[0].objects[1].object_id == 1


def test_push_source_unit():
    src = PushSource()
    assert src.live
    assert src.read(timeout=0.01) is None  # nothing yet
    rgb = np.zeros((4, 6, 3), np.uint8)
    rgb[..., 2] = 255
    assert src.put(rgb, image_format="BGR") == 0
    assert src.put(rgb) == 1  # replaces frame 0, which was never read
    assert src.dropped == 1
    frame = src.read()
    assert frame.frame_id == 1
    np.testing.assert_array_equal(frame.image, rgb)
    assert src.put(rgb, image_format="BGR") == 2
    assert src.read().image[0, 0].tolist() == [255, 0, 0]  # BGR -> RGB
    with pytest.raises(ImageError, match="expected an H×W×3 uint8 frame"):
        src.put(np.zeros((4, 6), np.uint8))
    with pytest.raises(ImageError, match="got 4 channels"):
        src.put(np.zeros((4, 6, 4), np.uint8))
    with pytest.raises(InputError, match="image_format"):
        src.put(rgb, image_format="YUV")
    src.interrupt()
    assert src.read() is None  # woken, no frame
    src.end()
    with pytest.raises(InputError, match="after end"):
        src.put(rgb)
    assert src.read() is None
    src.close()
