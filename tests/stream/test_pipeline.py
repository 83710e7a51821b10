"""The frame loop and the demo, end to end on the reduced random-weight SAM."""

from __future__ import annotations

import math
import os
import signal
import threading
from collections.abc import Callable, Mapping

import cv2
import numpy as np
import pytest

from samedge.errors import ImageError, InputError, SourceError
from samedge.stream import (
    STAGES,
    CallbackSink,
    FrameResult,
    FrameSource,
    ImageFolderSource,
    Pipeline,
    RunConfig,
    SyntheticSource,
    Tracker,
    VideoSink,
    click_points,
    run_demo,
)
from tests._shared import PERMISSIVE

SMALL = (96, 128)


def count_frames(path) -> int:
    cap = cv2.VideoCapture(str(path))
    n = 0
    while cap.read()[0]:
        n += 1
    cap.release()
    return n


def clicked_tracker(source: SyntheticSource, count: int) -> Tracker:
    tracker = Tracker(PERMISSIVE)
    scene = source.scene_at(0)
    for _, (x, y) in click_points(scene.masks, scene.ids, count, min_area=20):
        tracker.add(point_coords=[[x, y]])
    return tracker


def test_pipeline_end_to_end(predictor, tmp_path):
    source = SyntheticSource(seed=2, size=SMALL, num_objects=3)
    tracker = clicked_tracker(source, 2)
    assert len(tracker) == 2
    seen: list[FrameResult] = []
    video = VideoSink(tmp_path / "run.mp4", fps=10)
    with Pipeline(
        source, predictor, tracker, sinks=[CallbackSink(seen.append), video], max_frames=4
    ) as pipe:
        results = list(pipe)
    assert [r.frame_id for r in results] == [0, 1, 2, 3]
    assert [r.frame_id for r in seen] == [0, 1, 2, 3]
    for r in results:
        assert set(r.objects) == {1, 2}
        assert set(r.timings) == {*STAGES, "latency"}
        assert all(v >= 0 for v in r.timings.values())
        assert r.image.shape == (*SMALL, 3)
        assert r.annotated.shape == (*SMALL, 3)
        for obj in r.objects.values():
            if obj.mask is not None:
                assert obj.mask.shape == SMALL
    summary = pipe.stats.summary()
    assert summary.frames == 4
    assert summary.fps > 0
    for name in (*STAGES, "latency"):
        stage = summary.stage(name)
        assert stage.count == 3  # the warm-up frame is not timed
        assert math.isfinite(stage.p50_ms)
        assert stage.p99_ms >= stage.p50_ms
    assert "FPS" in pipe.stats.line()
    assert "p99" in summary.table()
    assert source.closed
    assert count_frames(tmp_path / "run.mp4") == 4


def test_encoder_only_without_tracker(predictor):
    source = SyntheticSource(seed=0, size=SMALL)
    pipe = Pipeline(source, predictor, None, max_frames=2, annotate=False)
    results = list(pipe)
    assert [r.objects for r in results] == [{}, {}]
    assert results[0].annotated is None
    assert results[1].timings["decoder"] == 0.0


@pytest.mark.parametrize("overlap", [False, True])
def test_live_source_start_stop_repeatedly_leaks_no_threads(predictor, overlap):
    baseline = threading.active_count()
    for _ in range(4):
        source = SyntheticSource(seed=0, size=SMALL, fps=200.0, realtime=True)
        pipe = Pipeline(
            source, predictor, clicked_tracker(source, 1), max_frames=3, overlap=overlap
        )
        assert pipe.threaded
        assert pipe.overlap is overlap
        summary = pipe.run()
        assert summary.frames == 3
        assert source.closed
        assert threading.active_count() == baseline
    # Stopped from elsewhere (a web handler, a ROS callback) mid-stream.
    source = SyntheticSource(seed=0, size=SMALL, fps=200.0, realtime=True)
    pipe = Pipeline(source, predictor, None, overlap=overlap)
    pipe.sinks.append(CallbackSink(lambda result: pipe.stop()))
    assert pipe.run().frames == 1
    assert not pipe.interrupted
    assert threading.active_count() == baseline


@pytest.mark.skipif(os.name != "posix", reason="SIGTERM is POSIX")
def test_sigterm_handler_stops_cleanly_and_is_restored(predictor, tmp_path):
    """The handler run() installs stops the loop; a real SIGTERM is sent to a
    `samedge run` process in test_cli_run.py (in-process signals are unsafe here
    once a test has closed OpenVINO models, see the report of 2026-11-25)."""
    before = signal.getsignal(signal.SIGTERM)

    def terminate(result: FrameResult) -> None:
        if result.frame_id == 1:
            handler = signal.getsignal(signal.SIGTERM)
            assert callable(handler)
            assert handler is not before
            handler(signal.SIGTERM, None)

    source = SyntheticSource(seed=0, size=SMALL)
    pipe = Pipeline(
        source,
        predictor,
        clicked_tracker(source, 1),
        sinks=[CallbackSink(terminate), VideoSink(tmp_path / "x.mp4")],
        max_frames=50,
    )
    summary = pipe.run()
    assert pipe.interrupted
    assert summary.frames == 2
    assert signal.getsignal(signal.SIGTERM) is before
    assert count_frames(tmp_path / "x.mp4") == 2


def test_ctrl_c_finishes_the_video(predictor, tmp_path):
    def interrupt(result: FrameResult) -> None:
        if result.frame_id == 2:
            raise KeyboardInterrupt

    source = SyntheticSource(seed=0, size=SMALL)
    video = VideoSink(tmp_path / "x.mp4")
    pipe = Pipeline(source, predictor, None, sinks=[video, CallbackSink(interrupt)])
    assert pipe.run().frames == 2  # the third frame never completed
    assert pipe.interrupted
    assert source.closed
    assert count_frames(tmp_path / "x.mp4") == 3  # written before the interrupt


def test_pipeline_argument_errors(predictor):
    source = SyntheticSource(size=SMALL)
    with pytest.raises(InputError, match="FrameSource"):
        Pipeline("synthetic", predictor)  # type: ignore[arg-type]
    with pytest.raises(InputError, match="max_frames"):
        Pipeline(source, predictor, max_frames=0)
    pipe = Pipeline(source, predictor, max_frames=1, annotate=False)
    list(pipe)
    with pytest.raises(InputError, match="iterated once"):
        list(pipe)
    with pytest.raises(InputError, match="stage"):
        pipe.stats.summary().stage("nope")


def test_run_demo_on_the_synthetic_scene(tiny_model, tmp_path):
    report = run_demo(
        RunConfig(
            model=tiny_model,
            backend="onnxruntime",
            frames=4,
            objects=2,
            output=tmp_path / "demo.mp4",
            tracker=PERMISSIVE,
        )
    )
    assert report.objects == 2
    assert report.stats.frames == 4
    assert report.backend == "onnxruntime"
    assert report.backend_reason
    assert report.mean_iou is not None
    assert 0.0 <= report.mean_iou <= 1.0
    assert set(report.iou_per_object) <= {1, 2}
    assert str(tmp_path / "demo.mp4") in report.output
    assert count_frames(tmp_path / "demo.mp4") == 4
    text = report.format()
    for word in ("FPS", "p50", "p99", "encoder", "decoder", "mean IoU", "onnxruntime"):
        assert word in text
    assert report.to_dict()["stats"]["frames"] == 4


def test_run_demo_needs_prompts_off_the_synthetic_scene(tiny_model, tmp_path):
    with pytest.raises(InputError, match=r"--point X,Y .*--box X0,Y0,X1,Y1"):
        run_demo(RunConfig(source=str(tmp_path), model=tiny_model, backend="onnxruntime"))
    img = SyntheticSource(size=SMALL).read().image
    for i in range(3):
        cv2.imwrite(str(tmp_path / f"{i}.png"), cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
    report = run_demo(
        RunConfig(
            source=str(tmp_path),
            model=tiny_model,
            backend="onnxruntime",
            frames=None,
            points=((60.0, 40.0),),
            boxes=((10.0, 10.0, 50.0, 40.0),),
            output=None,
            tracker=PERMISSIVE,
        )
    )
    assert report.stats.frames == 3  # the folder ended
    assert report.objects == 2
    assert report.mean_iou is None
    assert report.output is None


# -- overlap: frame k+1 encoded while frame k is decoded ---------------------------------------


class BackendCalls:
    """Wraps one backend object's infer(): which threads ran it, and whether two ever
    ran it at the same time (they must not: one instance serves one thread at a time)."""

    def __init__(self, backend: object, monkeypatch: pytest.MonkeyPatch) -> None:
        self.threads: set[str] = set()
        self.concurrent = False
        self._active = 0
        self._lock = threading.Lock()
        infer = backend.infer  # type: ignore[attr-defined]

        def guarded(feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
            with self._lock:
                self._active += 1
                self.concurrent |= self._active > 1
                self.threads.add(threading.current_thread().name)
            try:
                return infer(feeds)
            finally:
                with self._lock:
                    self._active -= 1

        monkeypatch.setattr(backend, "infer", guarded)


def synthetic_source() -> FrameSource:
    return SyntheticSource(seed=2, size=SMALL, num_objects=3)


def folder_source(folder) -> Callable[[], FrameSource]:
    scene = SyntheticSource(seed=3, size=SMALL, num_objects=3)
    for i in range(6):
        image = scene.read().image
        cv2.imwrite(str(folder / f"{i:02d}.png"), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    return lambda: ImageFolderSource(folder)


def run_once(predictor, make_source, overlap, max_frames=None):
    """Results, per-frame embeddings the tracker decoded on, and the stats of one run."""
    source = make_source()
    tracker = Tracker(PERMISSIVE)
    first = SyntheticSource(seed=2, size=SMALL, num_objects=3).scene_at(0)
    for _, (x, y) in click_points(first.masks, first.ids, 2, min_area=20):
        tracker.add(point_coords=[[x, y]])
    embeddings: dict[int, np.ndarray] = {}

    def note(result: FrameResult) -> None:
        # Runs after the tracker, in the loop: the embedding it decoded on.
        embeddings[result.frame_id] = predictor.get_image_embedding()

    pipe = Pipeline(
        source,
        predictor,
        tracker,
        sinks=[CallbackSink(note)],
        max_frames=max_frames,
        overlap=overlap,
        annotate=True,
    )
    results = list(pipe)
    return pipe, source, results, embeddings


@pytest.mark.parametrize("kind", ["synthetic", "folder"])
def test_overlap_gives_the_sequential_results(predictor, monkeypatch, tmp_path, kind):
    make = synthetic_source if kind == "synthetic" else folder_source(tmp_path)
    frames = 5 if kind == "synthetic" else None  # the folder: until it ends (6 frames)
    _, _, expected, expected_emb = run_once(predictor, make, False, frames)
    encoder = BackendCalls(predictor._encoder, monkeypatch)
    decoder = BackendCalls(predictor._decoder, monkeypatch)
    pipe, source, results, embeddings = run_once(predictor, make, True, frames)
    assert pipe.overlap
    n = 5 if kind == "synthetic" else 6
    assert [r.frame_id for r in results] == [r.frame_id for r in expected] == list(range(n))
    for got, want in zip(results, expected, strict=True):
        np.testing.assert_array_equal(got.image, want.image)
        # Each frame was tracked on its own embedding, not the one read ahead.
        np.testing.assert_array_equal(embeddings[got.frame_id], expected_emb[want.frame_id])
        assert set(got.objects) == set(want.objects) == {1, 2}
        for oid, obj in got.objects.items():
            ref = want.objects[oid]
            assert obj.state is ref.state
            assert obj.score == ref.score
            assert obj.box == ref.box
            np.testing.assert_array_equal(obj.mask, ref.mask)
        assert set(got.timings) == {*STAGES, "latency"}
        assert all(v >= 0 for v in got.timings.values())
    # The encoder ran on the worker only, the decoder in the loop only, never twice at once.
    assert encoder.threads == {"samedge-encode_0"}
    assert decoder.threads == {threading.current_thread().name}
    assert not encoder.concurrent
    assert not decoder.concurrent
    summary = pipe.stats.summary()
    assert (summary.frames, summary.dropped) == (n, 0)
    assert all(stage.count == n - 1 for stage in summary.stages)  # the warm-up frame untimed
    assert source.closed
    if kind == "synthetic":
        assert source.last_frame_id == 4  # nothing was read past max_frames


def test_overlap_default_and_arguments(predictor):
    class SetImageOnly:
        """A predictor-like without encode/set_embedding: sequential only."""

        def __init__(self, inner):
            self.inner = inner

        def set_image(self, image, image_format="RGB"):
            self.inner.set_image(image, image_format)

        @property
        def original_size(self):
            return self.inner.original_size

        def predict_batch(self, prompts, multimask_output=True, return_logits=False):
            return self.inner.predict_batch(prompts, multimask_output, return_logits)

    class OnGpu(SetImageOnly):
        """The predictor, but reporting a GPU encoder (as TensorRT's would)."""

        device = "NVIDIA Orin (sm_87)"

        def encode(self, image, image_format="RGB"):
            return self.inner.encode(image, image_format)

        def set_embedding(self, embedding):
            self.inner.set_embedding(embedding)

    source = SyntheticSource(seed=0, size=SMALL)
    # On the CPU the encoder and decoder share the cores: sequential by default.
    assert predictor.device == "CPUExecutionProvider"
    assert Pipeline(source, predictor).overlap is False
    assert Pipeline(source, predictor, overlap=True).overlap is True
    assert Pipeline(source, OnGpu(predictor)).overlap is True
    assert Pipeline(source, predictor, overlap=False).overlap is False
    duck = SetImageOnly(predictor)
    pipe = Pipeline(source, duck, clicked_tracker(source, 1), max_frames=2)
    assert pipe.overlap is False
    assert [r.frame_id for r in pipe] == [0, 1]
    with pytest.raises(InputError, match=r"overlap=True: the predictor \(SetImageOnly\) has no"):
        Pipeline(SyntheticSource(size=SMALL), duck, overlap=True)
    with pytest.raises(InputError, match="overlap: got 'yes', expected True, False or None"):
        Pipeline(SyntheticSource(size=SMALL), predictor, overlap="yes")  # type: ignore[arg-type]


class FailingSource(FrameSource):
    """The synthetic scene, until frame ``fail_at``: a float frame, or a read error."""

    def __init__(self, fail_at: int, how: str) -> None:
        super().__init__()
        self.description = f"failing at {fail_at}"
        self.scene = SyntheticSource(seed=0, size=SMALL)
        self.fail_at = fail_at
        self.how = how

    def _read(self):
        frame = self.scene.read()
        if frame.frame_id == self.fail_at:
            if self.how == "read":
                raise SourceError("camera 7: unplugged; plug it back in")
            return frame.image.astype(np.float32), frame.timestamp
        return frame.image, frame.timestamp


@pytest.mark.parametrize(("how", "error"), [("frame", ImageError), ("read", SourceError)])
def test_worker_errors_surface_in_the_loop_as_themselves(predictor, how, error):
    baseline = threading.active_count()
    outcomes = []
    for overlap in (False, True):
        source = FailingSource(3, how)
        pipe = Pipeline(source, predictor, clicked_tracker(source.scene, 1), overlap=overlap)
        got = []
        with pytest.raises(error) as info:
            got.extend(result.frame_id for result in pipe)  # keeps those before the error
        assert info.type is error
        outcomes.append((got, str(info.value)))
        assert source.closed
        assert threading.active_count() == baseline
    assert outcomes[0] == outcomes[1]
    assert outcomes[0][0] == [0, 1, 2]
    assert ("camera 7" if how == "read" else "dtype float32") in outcomes[0][1]


def test_leaving_an_overlapped_loop_joins_the_worker(predictor):
    baseline = threading.active_count()
    source = SyntheticSource(seed=0, size=SMALL)
    pipe = Pipeline(source, predictor, clicked_tracker(source, 1), overlap=True)
    for result in pipe:
        # Non-live: no capture thread, only the worker, already reading the next frame.
        names = [t.name for t in threading.enumerate() if t.name.startswith("samedge-")]
        assert names == ["samedge-encode_0"]
        if result.frame_id == 2:
            break
    assert source.closed
    assert threading.active_count() == baseline
    # Stopped from a sink: the frame read ahead meanwhile is discarded, not yielded.
    source = SyntheticSource(seed=0, size=SMALL)
    pipe = Pipeline(source, predictor, None, overlap=True)
    pipe.sinks.append(CallbackSink(lambda result: pipe.stop()))
    summary = pipe.run()
    assert (summary.frames, summary.dropped) == (1, 0)
    assert source.closed
    assert threading.active_count() == baseline


def test_run_demo_overlapped_and_sequential_agree(tiny_model):
    reports = [
        run_demo(
            RunConfig(
                model=tiny_model,
                backend="onnxruntime",
                frames=4,
                objects=2,
                output=None,
                tracker=PERMISSIVE,
                overlap=overlap,
            )
        )
        for overlap in (False, True)
    ]
    sequential, overlapped = reports
    assert (sequential.overlap, overlapped.overlap) == (False, True)
    assert "pipeline:  sequential" in sequential.format()
    assert "pipeline:  encoder of frame k+1 overlapped" in overlapped.format()
    # Scored against the right frame's ground truth although the next one was read.
    assert overlapped.mean_iou is not None
    assert overlapped.mean_iou == sequential.mean_iou
    assert overlapped.iou_per_object == sequential.iou_per_object
    assert overlapped.stats.frames == 4
    with pytest.raises(InputError, match="overlap: got 1"):
        RunConfig(overlap=1)  # type: ignore[arg-type]
