"""The frame loop: source -> predictor -> tracker -> drawing -> sinks, timed per stage.

:class:`Pipeline` pulls frames from a :class:`~samedge.stream.FrameSource`,
computes each frame's embedding (``Predictor.set_image``), lets the
:class:`~samedge.stream.Tracker` decode every object in one batched call,
draws the result, and hands a :class:`FrameResult` to each sink and to the
caller. Every stage is timed with ``time.perf_counter`` into :class:`Stats`.

Stages: ``capture`` (reading the frame; waiting for it with live sources),
``encoder`` (preprocessing + encoder), ``decoder`` (the batched decoder call,
including mask upsampling to the frame), ``postprocess`` (masks -> boxes,
re-prompts, lost checks), ``draw`` (overlays), ``sinks`` (video writing,
callbacks), and ``latency``: capture to result, end to end.

Live sources (cameras, URLs) are read by a :class:`LatestFrameReader` thread
that keeps only the newest frame, so a slow model skips frames (counted as
``dropped``) instead of lagging. Files and the synthetic scene are read
every frame, none skipped, so runs are reproducible.

With ``overlap`` (the default when a :class:`~samedge.Predictor`'s encoder runs
off the CPU, e.g. on TensorRT or an OpenVINO GPU/NPU; off on a CPU), one worker
thread reads frame k+1 and runs its encoder (``Predictor.encode``) while the
loop decodes, tracks, draws and hands out frame k; the loop then installs
k+1's embedding (``Predictor.set_embedding``) before tracking it. Results
still come in frame order and each frame is tracked on its own embedding.
The ``capture`` and ``encoder`` timings are measured on the worker; the time
a frame waits for the loop counts in its ``latency`` only.

Example:
    >>> from samedge import Predictor
    >>> from samedge.stream import Pipeline, Tracker, open_source
    >>> tracker = Tracker()
    >>> tracker.add(point_coords=[[320, 240]])                       # doctest: +SKIP
    >>> with Pipeline(open_source(0), Predictor("samedge_tiny"), tracker) as pipe:  # doctest: +SKIP
    ...     for result in pipe:
    ...         for oid, obj in result.objects.items():
    ...             print(result.frame_id, oid, obj.state.value, obj.box)
"""

from __future__ import annotations

import collections
import contextlib
import logging
import math
import signal
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import CancelledError, Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from types import FrameType, TracebackType
from typing import Any, Protocol, cast

import numpy as np

from samedge.errors import InputError
from samedge.stream.draw import draw_objects
from samedge.stream.latest import LatestFrameReader
from samedge.stream.sinks import Sink
from samedge.stream.sources import Frame, FrameSource
from samedge.stream.tracking import TrackedObject

__all__ = [
    "STAGES",
    "FrameResult",
    "Pipeline",
    "StageStats",
    "Stats",
    "StatsSummary",
    "encoder_off_cpu",
]

log = logging.getLogger(__name__)

STAGES = ("capture", "encoder", "decoder", "postprocess", "draw", "sinks")
LATENCY = "latency"


class StreamPredictor(Protocol):
    """What the pipeline needs from a :class:`~samedge.Predictor` or a
    :class:`~samedge.memory_predictor.MemoryPredictor` (trackers need more).

    ``overlap`` also needs ``encode(image) -> embedding`` and
    ``set_embedding(embedding)``, with ``encode`` safe to run on one thread
    while another decodes (as :class:`~samedge.Predictor` guarantees).
    """

    def set_image(self, image: np.ndarray, image_format: str = "RGB") -> None: ...


class FrameTracker(Protocol):
    """What the pipeline needs from a tracker (:class:`~samedge.stream.Tracker`,
    :class:`~samedge.stream.MemoryTracker`): one step per frame, timed."""

    last_timings: dict[str, float]

    def step(self, predictor: Any) -> dict[int, TrackedObject]: ...


class _EncodingPredictor(Protocol):
    """The split ``set_image`` that ``overlap`` uses (see :meth:`samedge.Predictor.encode`)."""

    def encode(self, image: np.ndarray, image_format: str = "RGB") -> Any: ...

    def set_embedding(self, embedding: Any) -> None: ...


def _can_overlap(predictor: object) -> bool:
    return callable(getattr(predictor, "encode", None)) and callable(
        getattr(predictor, "set_embedding", None)
    )


def encoder_off_cpu(predictor: object) -> bool:
    """Whether the predictor's encoder runs on an accelerator (GPU, NPU), not the CPU.

    ``overlap=None`` overlaps only then. On the CPU the encoder and decoder
    share the same cores: measured on a 2-core CPU with samedge_tiny
    (``samedge run --frames 300 --no-video --overlap on|off``), OpenVINO kept
    the same FPS (56.5/60.0, 53.4/56.4, 47.1/44.7 on vs off) at twice the
    latency (p50 32-38 ms vs 16-22 ms), ONNX Runtime gained 18% FPS (48.6 vs 41.3) for
    +20% latency. A frame loop for robots is latency-bound, so the CPU
    default is sequential; an accelerator frees the CPU for decoding meanwhile.
    """
    device = getattr(predictor, "device", None)
    if not isinstance(device, str):
        return False
    word = device.upper()
    # ONNX Runtime names its execution provider ("CPUExecutionProvider",
    # "CUDAExecutionProvider:0"); its OpenVINO provider does not say which device.
    return not ("CPU" in word or word.startswith("OPENVINOEXECUTIONPROVIDER"))


@dataclass(frozen=True, eq=False)
class _Encoded:
    """A frame read and encoded on the worker, waiting for the loop."""

    frame: Frame
    embedding: Any
    started: float  # perf_counter before the read: the frame's capture start
    capture: float  # seconds reading
    encoder: float  # seconds encoding


@dataclass(frozen=True, eq=False)
class FrameResult:
    """Everything the pipeline knows about one frame.

    Attributes:
        frame_id: The source's frame counter.
        timestamp: The source's timestamp (seconds).
        image: The ``H×W×3`` uint8 RGB frame.
        objects: Object states after this frame, by id.
        timings: Seconds per stage (see :data:`STAGES`); ``sinks`` and
            ``latency`` are filled in after the sinks ran.
        annotated: The drawn ``H×W×3`` uint8 BGR frame, when annotating.
    """

    frame_id: int
    timestamp: float
    image: np.ndarray
    objects: Mapping[int, TrackedObject]
    timings: dict[str, float] = field(default_factory=dict)
    annotated: np.ndarray | None = None


@dataclass(frozen=True)
class StageStats:
    """Latency of one stage over the stats window, in milliseconds."""

    name: str
    count: int
    mean_ms: float
    p50_ms: float
    p99_ms: float


@dataclass(frozen=True)
class StatsSummary:
    """A snapshot of :class:`Stats`.

    Attributes:
        frames: Frames processed (warm-up frames included).
        dropped: Frames the capture thread replaced before they were processed.
        elapsed_s: Seconds from the first timed frame's capture to the last result.
        fps: Timed frames per second over ``elapsed_s`` (warm-up frames excluded).
        stages: Per-stage latency, in :data:`STAGES` order, then ``latency``
            (capture to result).
        warmup: Leading frames left out of the timings and the FPS.
    """

    frames: int
    dropped: int
    elapsed_s: float
    fps: float
    stages: tuple[StageStats, ...]
    warmup: int = 0

    def stage(self, name: str) -> StageStats:
        """The stats of one stage by name.

        Raises:
            InputError: unknown stage name.
        """
        for s in self.stages:
            if s.name == name:
                return s
        raise InputError(
            f"stage: got {name!r}, expected one of {', '.join(s.name for s in self.stages)}"
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "frames": self.frames,
            "dropped": self.dropped,
            "elapsed_s": self.elapsed_s,
            "fps": self.fps,
            "warmup": self.warmup,
            "stages": {
                s.name: {
                    "count": s.count,
                    "mean_ms": s.mean_ms,
                    "p50_ms": s.p50_ms,
                    "p99_ms": s.p99_ms,
                }
                for s in self.stages
            },
        }

    def table(self) -> str:
        """Per-stage p50/p99 as an aligned text table."""
        rows = [f"  {'stage':<12} {'p50 ms':>8} {'p99 ms':>8} {'mean ms':>8}"]
        for s in self.stages:
            rows.append(f"  {s.name:<12} {s.p50_ms:>8.2f} {s.p99_ms:>8.2f} {s.mean_ms:>8.2f}")
        return "\n".join(rows)


class Stats:
    """Per-stage timings and frame rate of a running pipeline; thread-safe.

    Keeps the last ``window`` samples per stage, so memory stays flat over
    long runs and percentiles describe recent behaviour. The first
    ``warmup`` frames are counted but not timed: they pay one-off costs
    (engine compilation, first allocations) that say nothing about the
    steady state.

    Args:
        window: Samples kept per stage.
        warmup: Frames left out of the timings and the FPS.
    """

    def __init__(self, window: int = 10_000, warmup: int = 1) -> None:
        if window <= 0:
            raise InputError(f"window: got {window}, expected a positive number of samples")
        if warmup < 0:
            raise InputError(f"warmup: got {warmup}, expected 0 or more frames")
        self.warmup = warmup
        self._lock = threading.Lock()
        self._samples: dict[str, collections.deque[float]] = {
            name: collections.deque(maxlen=window) for name in (*STAGES, LATENCY)
        }
        self.frames = 0
        self.dropped = 0
        self._first: float | None = None
        self._last: float | None = None
        self._ends: collections.deque[float] = collections.deque(maxlen=256)

    def record(self, timings: Mapping[str, float], *, started: float, ended: float) -> None:
        """Add one frame's stage timings (seconds) and its perf_counter start/end."""
        with self._lock:
            self.frames += 1
            if self.frames <= self.warmup:
                return
            for name, seconds in timings.items():
                if name in self._samples:
                    self._samples[name].append(seconds)
            if self._first is None:
                self._first = started
            self._last = ended
            self._ends.append(ended)

    def summary(self) -> StatsSummary:
        """Percentiles over the window and FPS since the first frame."""
        with self._lock:
            elapsed = (
                self._last - self._first
                if self._first is not None and self._last is not None
                else 0.0
            )
            stages = tuple(_stage_stats(name, self._samples[name]) for name in (*STAGES, LATENCY))
            timed = self.frames - min(self.frames, self.warmup)
            fps = timed / elapsed if elapsed > 0 else 0.0
            return StatsSummary(
                self.frames, self.dropped, elapsed, fps, stages, min(self.frames, self.warmup)
            )

    def line(self, recent: int = 60) -> str:
        """One short line for an overlay over the last ``recent`` frames:
        FPS, encoder and decoder p50, end-to-end latency p50/p99."""
        with self._lock:
            if not self._ends:
                return "warming up"
            ends = list(self._ends)[-recent:]
            span = ends[-1] - ends[0] if len(ends) > 1 else 0.0
            fps = (len(ends) - 1) / span if span > 0 else 0.0
            enc, dec, lat = (
                _stage_stats(n, list(self._samples[n])[-recent:])
                for n in ("encoder", "decoder", LATENCY)
            )
        return (
            f"{fps:.1f} FPS | enc {enc.p50_ms:.1f} ms | dec {dec.p50_ms:.1f} ms | "
            f"latency p50 {lat.p50_ms:.0f} p99 {lat.p99_ms:.0f} ms"
        )


def _stage_stats(name: str, samples: Sequence[float]) -> StageStats:
    if not samples:
        return StageStats(name, 0, math.nan, math.nan, math.nan)
    ms = np.asarray(samples, np.float64) * 1000.0
    p50, p99 = np.percentile(ms, [50, 99])
    return StageStats(name, len(ms), float(ms.mean()), float(p50), float(p99))


class Pipeline:
    """Source -> predictor -> tracker -> sinks, one frame at a time.

    Iterate it for :class:`FrameResult` objects, or call :meth:`run` to
    drive it to the end. Closing the pipeline (``with`` block, :meth:`close`,
    the end of iteration) closes the source and the sinks and joins the
    capture and encoder threads; the predictor belongs to the caller and
    stays open.

    Args:
        source: Where frames come from; owned by the pipeline.
        predictor: A :class:`~samedge.Predictor` (or anything with
            ``set_image`` / ``original_size`` / ``predict_batch``).
        tracker: The objects to follow; ``None`` runs only the encoder.
        sinks: Receive every result (video file, callbacks); owned.
        max_frames: Stop after this many frames; ``None`` runs until the
            source ends or :meth:`stop` is called.
        annotate: Draw overlays into ``FrameResult.annotated`` (needed by
            :class:`~samedge.stream.VideoSink`).
        threaded: Read the source in a capture thread keeping only the newest
            frame; ``None`` does so for live sources only.
        overlap: Read and encode frame k+1 on a worker thread while frame k is
            decoded, drawn and sunk; ``None`` does so when the predictor has
            ``encode``/``set_embedding`` (a :class:`~samedge.Predictor`) and its
            encoder runs off the CPU (:func:`encoder_off_cpu`), ``False`` runs
            every stage in the loop's thread, one after the other. The source
            must return a new array for every frame (every built-in source
            does), since frame k+1 is read while k is in use.
        stats_window: Timing samples kept per stage.
        warmup: First frames left out of the timings (see :class:`Stats`).

    Example:
        >>> pipe = Pipeline(open_source("synthetic"), predictor, tracker,   # doctest: +SKIP
        ...                 sinks=[VideoSink("out/run.mp4")], max_frames=100)
        >>> print(pipe.run().table())                                       # doctest: +SKIP
    """

    def __init__(
        self,
        source: FrameSource,
        predictor: StreamPredictor,
        tracker: FrameTracker | None = None,
        *,
        sinks: Sequence[Sink] = (),
        max_frames: int | None = None,
        annotate: bool = True,
        threaded: bool | None = None,
        overlap: bool | None = None,
        stats_window: int = 10_000,
        warmup: int = 1,
    ) -> None:
        if not isinstance(source, FrameSource):
            raise InputError(
                f"source: got {type(source).__name__}, expected a FrameSource "
                "(use samedge.stream.open_source(spec))"
            )
        if max_frames is not None and max_frames <= 0:
            raise InputError(f"max_frames: got {max_frames}, expected a positive int or None")
        if overlap is not None and not isinstance(overlap, bool):
            raise InputError(f"overlap: got {overlap!r}, expected True, False or None")
        if overlap and not _can_overlap(predictor):
            raise InputError(
                f"overlap=True: the predictor ({type(predictor).__name__}) has no "
                "encode(image) / set_embedding(embedding); pass a samedge.Predictor, or "
                "overlap=None or False"
            )
        self.source = source
        self.predictor = predictor
        self.tracker = tracker
        self.sinks = list(sinks)
        self.max_frames = max_frames
        self.annotate = annotate
        self.threaded = source.live if threaded is None else threaded
        # Safe whenever it is on: the worker runs only predictor.encode
        # (the encoder's backend object) and reads the source, the loop only
        # set_embedding and the tracker's predict_batch (the decoder's backend
        # object), one frame ahead at most. So no backend object, and no
        # source, is ever used from two threads at once, which is all a backend
        # asks ("one instance serves one thread at a time"; TensorRT makes its
        # CUDA context current per call). A predictor without the split API
        # can only run sequentially.
        if overlap is None:
            overlap = _can_overlap(predictor) and encoder_off_cpu(predictor)
        self.overlap = overlap
        self.stats = Stats(stats_window, warmup)
        self.interrupted = False
        # Which signal ended a run() (SIGINT for Ctrl-C, SIGTERM), so the CLI can
        # exit 128 + signal like any program a signal ended.
        self.interrupted_by: int | None = None
        self._stop = threading.Event()
        self._worker: ThreadPoolExecutor | None = None
        self._reader: LatestFrameReader | None = None
        self._started = False
        self._closed = False

    def stop(self) -> None:
        """Ask the loop to end after the current frame; safe from any thread or signal handler."""
        self._stop.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def __iter__(self) -> Iterator[FrameResult]:
        if self._started:
            raise InputError("Pipeline: can be iterated once; create a new one to run again")
        self._started = True
        try:
            yield from self._loop()
        finally:
            self.close()

    def _read(self) -> Frame | None:
        if self._reader is None:
            return self.source.read()
        while not self._stop.is_set():
            # Wake up regularly so stop() is honoured while a camera is silent.
            frame = self._reader.read(timeout=0.1)
            if frame is not None:
                self.stats.dropped = self._reader.dropped
                return frame
            if not self._reader.alive:
                return self._reader.read(timeout=0)
        return None

    def _read_and_encode(self) -> _Encoded | None:
        """Read the next frame and compute its embedding (on the worker thread)."""
        t0 = time.perf_counter()
        frame = self._read()
        if frame is None:
            return None
        t1 = time.perf_counter()
        embedding = cast(_EncodingPredictor, self.predictor).encode(frame.image)
        return _Encoded(frame, embedding, t0, t1 - t0, time.perf_counter() - t1)

    def _ahead(self) -> Future[_Encoded | None] | None:
        """Start reading and encoding the next frame; ``None`` once closed."""
        if self._worker is None or self._stop.is_set():
            return None
        try:
            return self._worker.submit(self._read_and_encode)
        except RuntimeError:  # close() shut the worker down from another thread
            return None

    def _next(self, ahead: Future[_Encoded | None] | None) -> _Encoded | None:
        """The next frame with its embedding installed in the predictor."""
        if self._worker is None:
            t0 = time.perf_counter()
            frame = self._read()
            if frame is None:
                return None
            t1 = time.perf_counter()
            self.predictor.set_image(frame.image)
            return _Encoded(frame, None, t0, t1 - t0, time.perf_counter() - t1)
        if ahead is None:  # the first frame: nothing to overlap with yet
            ahead = self._ahead()
            if ahead is None:
                return None
        try:
            # Re-raises what the worker raised (a source or encoder error) here.
            item = ahead.result()
        except CancelledError:  # close() from another thread cancelled it
            return None
        if item is not None:
            cast(_EncodingPredictor, self.predictor).set_embedding(item.embedding)
        return item

    def _loop(self) -> Iterator[FrameResult]:
        if self.threaded:
            self._reader = LatestFrameReader(self.source)
        if self.overlap:
            # One worker: frames are encoded one at a time, in order, by one thread.
            self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="samedge-encode")
        count = 0
        ahead: Future[_Encoded | None] | None = None
        while not self._stop.is_set():
            if self.max_frames is not None and count >= self.max_frames:
                break
            item = self._next(ahead)
            if item is None:
                break
            frame = item.frame
            # Frame k+1 is read and encoded while this one is decoded, drawn and
            # sunk. Never past max_frames: a frame read then would be thrown away.
            last = self.max_frames is not None and count + 1 >= self.max_frames
            ahead = None if last else self._ahead()
            objects: Mapping[int, TrackedObject] = {}
            timings = {"capture": item.capture, "encoder": item.encoder}
            if self.tracker is not None:
                objects = self.tracker.step(self.predictor)
                timings.update(self.tracker.last_timings)
            else:
                timings.update(decoder=0.0, postprocess=0.0)
            t3 = time.perf_counter()
            annotated = None
            if self.annotate:
                annotated = draw_objects(frame.image, objects, text=self.stats.line())
            t4 = time.perf_counter()
            timings["draw"] = t4 - t3
            result = FrameResult(
                frame.frame_id, frame.timestamp, frame.image, objects, timings, annotated
            )
            for sink in self.sinks:
                sink.write(result)
            t5 = time.perf_counter()
            timings["sinks"] = t5 - t4
            # Live frames carry their capture time (time.monotonic()); for the
            # others the frame was "captured" when its read began.
            timings[LATENCY] = (
                time.monotonic() - frame.timestamp if self.source.live else t5 - item.started
            )
            self.stats.record(timings, started=item.started, ended=t5)
            count += 1
            yield result

    def run(self) -> StatsSummary:
        """Process frames until the source ends, ``max_frames``, :meth:`stop`,
        Ctrl-C or SIGTERM; then close and return the stats.

        Ctrl-C (KeyboardInterrupt) and SIGTERM end the run cleanly (the video
        is finished, handles released) and set :attr:`interrupted`.
        """
        with _stop_on_sigterm(self):
            try:
                for _ in self:
                    pass
            except KeyboardInterrupt:
                self.interrupted = True
                self.interrupted_by = self.interrupted_by or signal.SIGINT
                log.info("interrupted; stopping")
            finally:
                self.close()
        return self.stats.summary()

    def close(self) -> None:
        """Stop and join the encoder and capture threads, close the source and the
        sinks; idempotent. A frame already read ahead is discarded (not counted as
        dropped: it was never replaced by a newer one)."""
        if self._closed:
            return
        self._closed = True
        self._stop.set()
        errors: list[BaseException] = []
        if self._worker is not None:
            # Before the source closes: the worker may be reading it. It ends soon,
            # since a threaded read gives up once stop is set, and what it was
            # doing (one read, one encode) is discarded with its future.
            self._worker.shutdown(wait=True, cancel_futures=True)
        try:
            if self._reader is not None:
                self._reader.close()
            self.source.close()
        except Exception as e:  # close everything, then report the first failure
            errors.append(e)
        for sink in self.sinks:
            try:
                sink.close()
            except Exception as e:
                errors.append(e)
        if errors:
            raise errors[0]

    def __enter__(self) -> Pipeline:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


@contextlib.contextmanager
def _stop_on_sigterm(pipeline: Pipeline) -> Iterator[None]:
    """Make SIGTERM stop ``pipeline`` cleanly while the block runs (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        # Signal handlers can only be installed from the main thread.
        yield
        return
    previous = signal.getsignal(signal.SIGTERM)

    def handler(signum: int, frame: FrameType | None) -> None:
        log.info("SIGTERM received; stopping after the current frame")
        pipeline.interrupted = True
        pipeline.interrupted_by = signal.SIGTERM
        pipeline.stop()

    signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
