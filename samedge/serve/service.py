"""The server's engine room: the pipeline thread, the broadcaster, prompts, subscribers.

:class:`StreamService` opens one session (:func:`~samedge.session.open_session`,
the same wiring as ``samedge run`` and ``samedge.stream()``), runs its
:class:`~samedge.stream.Stream` in a background thread (live sources, the
synthetic scene included, are read by the pipeline's capture thread, which
keeps only the newest frame), takes prompts from any thread, and fans each
result out to WebSocket subscribers.

Threads and queues, so that nothing slow can stall the camera loop:

* ``samedge-capture`` (the pipeline's :class:`~samedge.stream.LatestFrameReader`)
  reads the source and keeps one frame;
* ``samedge-serve-pipeline`` runs encoder, decoder and tracker, records
  metrics, and leaves the newest result in a one-slot mailbox;
* ``samedge-serve-broadcast`` takes the newest result from the mailbox
  (skipping any it did not get to), encodes it once (JSON with COCO RLE
  masks, optionally a JPEG), and offers it to every subscriber;
* each :class:`Subscriber` keeps at most ``client_queue`` messages and drops
  its oldest when a new one arrives: a client that reads slowly (or never)
  loses frames, nobody else does.

Example:
    >>> service = StreamService(ServeConfig(model="samedge_tiny"))   # doctest: +SKIP
    >>> service.start()                                              # doctest: +SKIP
    >>> oid = service.add(PromptSpec(points=((320.0, 240.0),), labels=(1,)))  # doctest: +SKIP
    >>> service.stop()                                               # doctest: +SKIP
"""

from __future__ import annotations

import asyncio
import base64
import collections
import json
import logging
import math
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np

from samedge._version import __version__
from samedge.errors import InputError, PromptError
from samedge.generator import GeneratorConfig, MaskGenerator, OutputMode
from samedge.masks import mask_to_rle
from samedge.serve.config import ServeConfig
from samedge.serve.metrics import ServerMetrics
from samedge.session import open_session
from samedge.stream.api import Stream
from samedge.stream.pipeline import FrameResult
from samedge.stream.reconnect import ReconnectingSource, SourceStatus
from samedge.stream.sources import FrameSource, SyntheticSource
from samedge.stream.tracking import TrackedObject, Tracker, TrackState

if TYPE_CHECKING:
    from samedge.memory_predictor import MemoryPredictor
    from samedge.predictor import Predictor
    from samedge.stream.memory import MemoryTracker

__all__ = [
    "ApiError",
    "FrameMessage",
    "PromptSpec",
    "StreamService",
    "Subscriber",
    "object_json",
]

log = logging.getLogger(__name__)

_JOIN_TIMEOUT_S = 15.0
# How often the broadcaster looks at the source's connection state when no frame
# comes (a camera that dropped out sends none): clients hear of it within this.
_STATUS_POLL_S = 0.25


# Not in samedge.errors on purpose: ``status`` is an HTTP status code, which only
# the server's routes give meaning to; library code raises the plain errors.
class ApiError(InputError):
    """A request the server refuses; ``status`` is the HTTP status to answer with."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class PromptSpec:
    """One object's prompt as received from a client, in frame pixels.

    Attributes:
        points: ``(x, y)`` points.
        labels: One label per point, 1 foreground, 0 background.
        box: ``(x0, y0, x1, y1)`` or ``None``.
    """

    points: tuple[tuple[float, float], ...] = ()
    labels: tuple[int, ...] = ()
    box: tuple[float, float, float, float] | None = None

    def __post_init__(self) -> None:
        if len(self.points) != len(self.labels):
            raise PromptError(
                f"labels: got {len(self.labels)} labels for {len(self.points)} points; "
                "expected one label per point"
            )
        if not self.points and self.box is None:
            raise PromptError("prompt: got no points and no box; expected at least one of them")

    def to_json(self) -> dict[str, Any]:
        return {
            "points": [list(p) for p in self.points],
            "labels": list(self.labels),
            "box": list(self.box) if self.box is not None else None,
        }


@dataclass(frozen=True)
class FrameMessage:
    """What a subscriber sends for one frame: a JSON text and, if asked for, a JPEG."""

    frame_id: int
    text: str
    jpeg: bytes | None = None


def object_json(obj: TrackedObject, *, rle: bool = True) -> dict[str, Any]:
    """One tracked object as the API shows it.

    ``state`` is ``"tracking"``, ``"lost"``, or ``"pending"`` (prompted, not
    decoded yet). ``rle`` (COCO uncompressed, column-major) is included when
    asked for and the object has a mask on this frame.
    """
    state = obj.state.value
    if obj.state is TrackState.TRACKING and obj.mask is None:
        state = "pending"
    data: dict[str, Any] = {
        "id": obj.object_id,
        "state": state,
        "score": round(float(obj.score), 4) if math.isfinite(obj.score) else None,
        "box": [float(v) for v in obj.box] if obj.box is not None else None,
        "area": int(obj.area),
        "age": int(obj.age),
        "lost_reason": obj.lost_reason,
    }
    if rle and obj.mask is not None:
        data["rle"] = mask_to_rle(obj.mask)[0]
    return data


class Subscriber:
    """One client's bounded queue of frame messages; lives on the server's event loop.

    :meth:`offer` must run on ``loop`` (the broadcaster schedules it there
    with ``call_soon_threadsafe``); :meth:`get` is awaited by the client's
    sender task.

    Args:
        loop: The event loop serving the client.
        frames: Send a JPEG of each frame after its JSON.
        masks: Include the masks (COCO RLE) in the JSON.
        maxlen: Messages kept; the oldest is dropped beyond it.
        metrics: Where dropped messages are counted.
    """

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        *,
        frames: bool = False,
        masks: bool = True,
        maxlen: int = 2,
        metrics: ServerMetrics | None = None,
    ) -> None:
        if maxlen <= 0:
            raise InputError(f"maxlen: got {maxlen}, expected a positive queue length")
        self.loop = loop
        self.frames = frames
        self.masks = masks
        self.dropped = 0
        self.received = 0
        self._queue: collections.deque[FrameMessage] = collections.deque(maxlen=maxlen)
        self._ready = asyncio.Event()
        self._metrics = metrics
        self.closed = False

    def offer(self, message: FrameMessage) -> None:
        """Queue a message, dropping the oldest when full (event-loop thread only)."""
        if self.closed:
            return
        if len(self._queue) == self._queue.maxlen:
            self.dropped += 1
            if self._metrics is not None:
                self._metrics.message_dropped()
        self._queue.append(message)
        self.received += 1
        self._ready.set()

    async def get(self) -> FrameMessage:
        """Wait for the oldest queued message."""
        while not self._queue:
            self._ready.clear()
            await self._ready.wait()
        return self._queue.popleft()

    def __len__(self) -> int:
        return len(self._queue)


def _encode_jpeg(image_rgb: np.ndarray, quality: int) -> bytes:
    bgr = cv2.cvtColor(image_rgb, cv2.COLOR_RGB2BGR)
    ok, buf = cv2.imencode(".jpg", bgr, [int(cv2.IMWRITE_JPEG_QUALITY), int(quality)])
    if not ok:
        raise InputError("JPEG encoding failed for a frame")  # cv2 only fails on bad arrays
    return buf.tobytes()


class StreamService:
    """A pipeline in background threads, with prompts in and results out.

    :meth:`open` loads the model and opens the source (errors surface here,
    before a server starts listening); :meth:`start` starts the threads;
    :meth:`stop` stops them, joins them and releases the model and the
    source. ``start`` after ``stop`` opens everything afresh (objects are
    not kept).

    Args:
        config: What to serve.
        source: Use this source instead of opening ``config.source`` (owned;
            for the first :meth:`start` only).

    Example:
        >>> with StreamService(ServeConfig()) as service:        # doctest: +SKIP
        ...     service.wait_for_frame(timeout=30)
        ...     oid = service.add(PromptSpec(box=(100.0, 80.0, 220.0, 200.0)))
    """

    def __init__(self, config: ServeConfig | None = None, *, source: FrameSource | None = None):
        self.config = config if config is not None else ServeConfig()
        self.metrics = ServerMetrics()
        self._given_source = source
        self._lock = threading.Lock()  # prompts, subscribers, state
        self._cond = threading.Condition()  # the broadcaster's mailbox
        self._stream: Stream | None = None  # the session, from open() to stop()
        # "Segment everything" runs on a Predictor of its own (the pipeline's is busy on
        # the pipeline thread and not thread-safe), opened on first use, one request at a time.
        self._everything: Predictor | MemoryPredictor | None = None
        self._everything_lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._subscribers: set[Subscriber] = set()
        self._prompts: dict[int, PromptSpec] = {}
        self._latest: FrameResult | None = None
        self._pending: FrameResult | None = None
        self._frame_size: tuple[int, int] | None = None
        self._first_frame = threading.Event()
        self._stopping = False
        self._state = "created"
        self.error: BaseException | None = None
        self._info: dict[str, str] = {}
        self.backend_reason = ""
        self.synthetic: dict[str, Any] | None = None

    # -- lifecycle -------------------------------------------------------------------

    def open(self) -> None:
        """Load the model and open the source; idempotent.

        Raises:
            ModelDirError, BackendError: the model cannot be loaded.
            InputError: the source cannot be opened.
        """
        if self._stream is not None:
            return
        given, self._given_source = self._given_source, None
        stream = open_session(
            self.config.session(), source=given, on_result=self._publish, on_end=self._ended
        )
        try:
            # Load the engines now: a broken model should fail here, not in the thread.
            predictor = stream.predictor
            precision, device = predictor.precision, predictor.device
        except BaseException:
            stream.close()
            raise
        self._stream = stream
        source = stream.source
        self.synthetic = None
        if isinstance(source, SyntheticSource):
            scene = source.scene
            self.synthetic = {
                "seed": scene.seed,
                "height": scene.size[0],
                "width": scene.size[1],
                "num_objects": scene.num_objects,
                "fps": scene.fps,
            }
        self._info = {
            "version": __version__,
            "model": predictor.card.model,
            "backend": predictor.backend_name,
            "precision": precision,
            "device": device,
            "source": source.description,
        }
        self.backend_reason = predictor.backend_reason
        self._state = "opened"
        log.info(
            "serving %s on %s (%s, %s) from %s",
            predictor.card.model,
            predictor.backend_name,
            precision,
            device,
            source.description,
        )

    def start(self) -> None:
        """Open (if needed) and start the pipeline and broadcaster threads; idempotent."""
        if self._threads:
            return
        self.open()
        stream = self._stream
        if stream is None:
            raise InputError("StreamService: open() did not complete; see the error it raised")
        with self._lock:
            self._prompts.clear()
            self._stopping = False
            self._state = "running"
            self.error = None
        self._first_frame.clear()
        stream.start(name="samedge-serve-pipeline")
        broadcaster = threading.Thread(
            target=self._broadcast, name="samedge-serve-broadcast", daemon=True
        )
        self._threads = [broadcaster]
        broadcaster.start()

    def stop(self) -> None:
        """Stop and join the threads, close the source and the model; idempotent."""
        with self._lock:
            self._stopping = True
        stream, self._stream = self._stream, None
        if stream is not None:
            stream.close()  # joins the pipeline thread; closes the source and the model
        with self._everything_lock:  # waits for a running "segment everything"
            if self._everything is not None:
                self._everything.close()
                self._everything = None
        with self._cond:
            self._cond.notify_all()
        for t in self._threads:
            t.join(timeout=_JOIN_TIMEOUT_S)
            if t.is_alive():
                log.warning("%s did not end within %.0f s", t.name, _JOIN_TIMEOUT_S)
        self._threads = []
        with self._lock:
            if self._state in ("running", "opened"):
                self._state = "stopped"
        with self._cond:
            self._pending = None
            self._latest = None

    def __enter__(self) -> StreamService:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def state(self) -> str:
        """``created``, ``opened``, ``running``, ``ended`` (the source ended), ``failed``
        or ``stopped``."""
        with self._lock:
            return self._state

    @property
    def running(self) -> bool:
        return self.state == "running"

    @property
    def info(self) -> dict[str, str]:
        """Model, backend, precision, device, source (the metrics' info labels)."""
        return dict(self._info)

    @property
    def frame_size(self) -> tuple[int, int] | None:
        """``(H, W)`` of the latest frame, ``None`` before the first."""
        with self._cond:
            return self._frame_size

    @property
    def latest(self) -> FrameResult | None:
        """The newest result, ``None`` before the first."""
        with self._cond:
            return self._latest

    def wait_for_frame(self, timeout: float | None = None) -> bool:
        """Block until the first frame was processed; False on timeout."""
        return self._first_frame.wait(timeout)

    # -- threads ----------------------------------------------------------------------

    @property
    def stream(self) -> Stream | None:
        """The running session (:func:`~samedge.session.open_session`); ``None``
        before :meth:`open` and after :meth:`stop`."""
        return self._stream

    @property
    def _tracker(self) -> Tracker | MemoryTracker | None:
        stream = self._stream
        return stream.tracker if stream is not None else None

    def _ended(self, error: BaseException | None) -> None:
        """The pipeline thread ended: the source ended, it failed, or stop() ended it."""
        stream = self._stream
        with self._lock:
            if self._stopping:
                state = "stopped"
            elif error is not None:
                self.error = error
                state = "failed"
            else:
                state = "ended"
            self._state = state
        if state == "ended" and stream is not None:
            log.info("the source ended: %s", stream.source.description)
        with self._cond:
            self._cond.notify_all()

    def _publish(self, result: FrameResult) -> None:
        stream = self._stream
        counts = {"tracking": 0, "lost": 0, "occluded": 0, "pending": 0}
        for obj in result.objects.values():
            if obj.state is not TrackState.TRACKING:
                counts[obj.state.value] += 1
            else:
                counts["tracking" if obj.mask is not None else "pending"] += 1
        self.metrics.observe_frame(
            result.timings,
            ended=time.perf_counter(),
            dropped=stream.pipeline.stats.dropped if stream is not None else 0,
            objects=counts,
        )
        with self._cond:
            self._latest = result
            self._pending = result
            self._frame_size = (int(result.image.shape[0]), int(result.image.shape[1]))
            self._cond.notify_all()
        self._first_frame.set()

    def _broadcast(self) -> None:
        source_state = "connected"
        while True:
            with self._cond:
                self._cond.wait_for(
                    lambda: self._pending is not None or self._stopping or not self._alive(),
                    timeout=_STATUS_POLL_S,
                )
                result, self._pending = self._pending, None
                done = result is None and (self._stopping or not self._alive())
            if done:
                return  # stopping, or the pipeline ended and everything was sent
            if result is not None:
                with self._lock:
                    subscribers = [s for s in self._subscribers if not s.closed]
                try:
                    if subscribers:
                        self._fan_out(result, subscribers)
                except Exception:  # one bad frame must not end the broadcast
                    log.exception("could not encode frame %d for the clients", result.frame_id)
            # After the frame, so that a frame decoded before a drop-out cannot follow
            # (and seem to contradict) the news of it.
            status = self.source_status()
            if (
                status is not None
                and status.state != source_state
                and status.state != "closed"  # closed by stop(): nothing to tell
            ):
                # A dropped camera sends no frames: tell the clients why the video froze.
                source_state = status.state
                self._send_status(status)

    def _send_status(self, status: SourceStatus) -> None:
        text = json.dumps({"type": "status", **self.status_json(status)}, separators=(",", ":"))
        with self._lock:
            subscribers = [s for s in self._subscribers if not s.closed]
        for sub in subscribers:
            try:
                sub.loop.call_soon_threadsafe(sub.offer, FrameMessage(-1, text))
            except RuntimeError:  # its event loop is closed: the server is going away
                sub.closed = True

    def source_status(self) -> SourceStatus | None:
        """Connection state of a source that reconnects (camera, URL); ``None`` for
        the others (files, folders, the synthetic scene), which cannot drop out."""
        source = self._stream.source if self._stream is not None else None
        return source.status if isinstance(source, ReconnectingSource) else None

    def status_json(self, status: SourceStatus | None = None) -> dict[str, Any]:
        """The pipeline state and the source's connection state, for clients."""
        status = status if status is not None else self.source_status()
        data: dict[str, Any] = {"state": self.state, "source_state": "connected"}
        if status is not None:
            data.update(
                source_state=status.state,
                reconnects=status.reconnects,
                attempts=status.attempts,
                error=status.last_error if not status.connected else None,
            )
        return data

    def _alive(self) -> bool:
        stream = self._stream
        return stream is not None and stream.running

    def _fan_out(self, result: FrameResult, subscribers: list[Subscriber]) -> None:
        jpeg = None
        if any(s.frames for s in subscribers):
            jpeg = _encode_jpeg(result.image, self.config.jpeg_quality)
        texts: dict[bool, str] = {}
        for sub in subscribers:
            if sub.masks not in texts:
                texts[sub.masks] = json.dumps(
                    self.frame_json(result, masks=sub.masks), separators=(",", ":")
                )
            message = FrameMessage(result.frame_id, texts[sub.masks], jpeg if sub.frames else None)
            try:
                sub.loop.call_soon_threadsafe(sub.offer, message)
            except RuntimeError:  # its event loop is closed: the server is going away
                sub.closed = True

    def frame_json(self, result: FrameResult, *, masks: bool = True) -> dict[str, Any]:
        """The per-frame message: ids, timestamps, speed, and every object's state."""
        h, w = result.image.shape[:2]
        latency = result.timings.get("latency", math.nan)
        return {
            "type": "frame",
            "frame_id": result.frame_id,
            "timestamp": result.timestamp,
            "width": int(w),
            "height": int(h),
            "fps": round(self.metrics.fps(), 2),
            "latency_ms": round(latency * 1000.0, 2) if math.isfinite(latency) else None,
            "stages_ms": {
                k: round(v * 1000.0, 2)
                for k, v in result.timings.items()
                if k in ("capture", "encoder", "decoder", "postprocess")
            },
            "dropped": self.metrics.dropped,
            # Also here, not only in "status" messages: a slow client may lose one of
            # those among the frames it drops.
            "source_state": status.state if (status := self.source_status()) else "connected",
            "objects": [object_json(o, rle=masks) for _, o in sorted(result.objects.items())],
        }

    # -- segment everything ---------------------------------------------------------------

    def segment_everything(
        self, config: GeneratorConfig | None = None, *, frame: bool = False
    ) -> dict[str, Any]:
        """Every object in the latest frame (SAM's automatic mask generation).

        Runs :class:`~samedge.generator.MaskGenerator` on the newest frame with a
        Predictor of its own (the stream goes on meanwhile), best mask first.

        Args:
            config: Grid and thresholds; ``None`` for :class:`GeneratorConfig`'s
                defaults (score thresholds left unset are the model's own). Masks
                come back as uncompressed COCO RLE (``rle``), as the objects' masks do.
            frame: Also return the frame the masks belong to, as a base64 JPEG
                (``jpeg``), so a client can draw them on it (the stream moves on).

        Raises:
            ApiError: 409 while another request runs, 503 before the first
                frame, 422 for a model without SAM's prompt decoder (SAM 2).
        """
        result = self.latest
        stream = self._stream
        if result is None or stream is None:
            raise ApiError(503, "no frame yet: the pipeline is starting; retry in a moment")
        if not self._everything_lock.acquire(blocking=False):
            raise ApiError(409, "segment everything: a request is already running; wait for it")
        try:
            predictor = self._everything
            if predictor is None:
                from samedge.errors import ModelDirError
                from samedge.memory_predictor import MemoryPredictor
                from samedge.predictor import Predictor

                # A predictor of its own (the stream's is busy with frames), on the same
                # backend; a SAM 2-family model prompts an image without memory.
                source = stream.predictor
                opener = MemoryPredictor if isinstance(source, MemoryPredictor) else Predictor
                try:
                    predictor = opener(source.model_dir, backend=source.backend_choice)
                except ModelDirError as e:
                    raise ApiError(422, f"segment everything: {e}") from e
                self._everything = predictor
            config = replace(
                config if config is not None else GeneratorConfig(),
                output_mode=OutputMode.UNCOMPRESSED_RLE,
            )
            started = time.perf_counter()
            records = MaskGenerator(predictor, config).generate(result.image)
            seconds = time.perf_counter() - started
        finally:
            self._everything_lock.release()
        h, w = result.image.shape[:2]
        extra = {}
        if frame:
            jpeg = _encode_jpeg(result.image, self.config.jpeg_quality)
            extra["jpeg"] = base64.b64encode(jpeg).decode("ascii")
        return {
            "frame_id": result.frame_id,
            "width": int(w),
            "height": int(h),
            "seconds": round(seconds, 3),
            **extra,
            "masks": [
                {
                    "rle": r["segmentation"],
                    "bbox": [float(v) for v in r["bbox"]],
                    "area": int(r["area"]),
                    "predicted_iou": round(float(r["predicted_iou"]), 4),
                    "stability_score": round(float(r["stability_score"]), 4),
                    "point": [float(v) for v in r["point_coords"][0]],
                }
                for r in records
            ],
        }

    # -- subscribers --------------------------------------------------------------------

    def subscribe(self, subscriber: Subscriber) -> None:
        """Start offering frames to ``subscriber``.

        Raises:
            ApiError: 503 when ``max_clients`` clients are already subscribed.
        """
        with self._lock:
            if len(self._subscribers) >= self.config.max_clients:
                raise ApiError(
                    503,
                    f"already {len(self._subscribers)} WebSocket clients, the limit is "
                    f"{self.config.max_clients}; try again later",
                )
            self._subscribers.add(subscriber)
        self.metrics.client_connected(+1)

    def unsubscribe(self, subscriber: Subscriber) -> None:
        subscriber.closed = True
        with self._lock:
            if subscriber not in self._subscribers:
                return
            self._subscribers.discard(subscriber)
        self.metrics.client_connected(-1)

    # -- prompts ----------------------------------------------------------------------

    def _ready_tracker(self) -> tuple[Tracker | MemoryTracker, tuple[int, int]]:
        """The tracker and frame size, or the reason prompts cannot be taken now."""
        state = self.state
        if state != "running" or self._tracker is None:
            detail = f": {self.error}" if self.error is not None else ""
            raise ApiError(503, f"the pipeline is not running (state {state}{detail})")
        size = self.frame_size
        if size is None:
            raise ApiError(
                503, "no frame yet: the pipeline is starting; retry in a moment (see /health)"
            )
        return self._tracker, size

    def _check(self, prompt: PromptSpec, size: tuple[int, int]) -> None:
        h, w = size
        for i, (x, y) in enumerate(prompt.points):
            if not (0 <= x <= w and 0 <= y <= h):
                raise ApiError(
                    422,
                    f"points[{i}]: got ({x:g}, {y:g}), outside the {w}x{h} (WxH) frame; "
                    f"expected 0 <= x <= {w} and 0 <= y <= {h}, (x, y) in frame pixels",
                )
        if prompt.box is not None:
            x0, y0, x1, y1 = prompt.box
            if not (0 <= x0 <= x1 <= w and 0 <= y0 <= y1 <= h):
                raise ApiError(
                    422,
                    f"box: got [{x0:g}, {y0:g}, {x1:g}, {y1:g}], expected x0 <= x1 and "
                    f"y0 <= y1 inside the {w}x{h} (WxH) frame",
                )
        if len(prompt.points) > self.config.max_points:
            raise ApiError(
                422,
                f"points: got {len(prompt.points)}, the limit is {self.config.max_points} "
                "per object",
            )

    def _apply(
        self, tracker: Tracker | MemoryTracker, prompt: PromptSpec, object_id: int | None
    ) -> int:
        try:
            return tracker.add(
                point_coords=[list(p) for p in prompt.points] if prompt.points else None,
                point_labels=list(prompt.labels) if prompt.points else None,
                box=list(prompt.box) if prompt.box is not None else None,
                object_id=object_id,
            )
        except PromptError as e:
            raise ApiError(422, str(e)) from e

    def add(self, prompt: PromptSpec) -> int:
        """Track a new object from ``prompt``; returns its id.

        Raises:
            ApiError: 503 before the first frame or when the pipeline is not
                running, 422 for a prompt outside the frame or over the point
                limit, 409 at the object limit.
        """
        tracker, size = self._ready_tracker()
        self._check(prompt, size)
        with self._lock:
            if len(tracker) >= self.config.max_objects:
                raise ApiError(
                    409,
                    f"already {len(tracker)} objects, the limit is {self.config.max_objects}; "
                    "remove one first (DELETE /api/objects/{id})",
                )
            oid = self._apply(tracker, prompt, None)
            self._prompts[oid] = prompt
        return oid

    def update(self, object_id: int, prompt: PromptSpec, *, extend: bool = False) -> int:
        """Re-prompt an object (tracking or lost) with ``prompt``.

        Args:
            object_id: The object.
            prompt: The new prompt; with ``extend`` its points are added to the
                object's earlier clicks and its box, if any, replaces the earlier box.
            extend: Refine instead of replace.

        Raises:
            ApiError: 404 for an unknown id, otherwise as :meth:`add`.
        """
        tracker, size = self._ready_tracker()
        with self._lock:
            if object_id not in tracker:
                self._prompts.pop(object_id, None)
                raise self._unknown(object_id, tracker)
            old = self._prompts.get(object_id)
            if extend and old is not None:
                prompt = PromptSpec(
                    points=old.points + prompt.points,
                    labels=old.labels + prompt.labels,
                    box=prompt.box if prompt.box is not None else old.box,
                )
            self._check(prompt, size)
            self._apply(tracker, prompt, object_id)
            self._prompts[object_id] = prompt
        return object_id

    def remove(self, object_id: int) -> None:
        """Stop tracking an object. Raises ApiError 404 for an unknown id."""
        tracker = self._tracker
        with self._lock:
            self._prompts.pop(object_id, None)
            if tracker is None or object_id not in tracker:
                raise self._unknown(object_id, tracker)
            tracker.remove(object_id)

    def clear(self) -> int:
        """Remove every object; returns how many there were."""
        tracker = self._tracker
        with self._lock:
            self._prompts.clear()
            if tracker is None:
                return 0
            n = len(tracker)
            tracker.clear()
            return n

    def _unknown(self, object_id: int, tracker: Tracker | MemoryTracker | None) -> ApiError:
        known = ", ".join(map(str, sorted(tracker.objects))) if tracker is not None else ""
        return ApiError(404, f"object {object_id}: no such object (ids: {known or 'none'})")

    def objects(self, *, masks: bool = False) -> list[dict[str, Any]]:
        """Every object with its state after the latest frame and its user prompt."""
        tracker = self._tracker
        if tracker is None:
            return []
        with self._lock:
            prompts = dict(self._prompts)
        out = []
        for oid, obj in tracker.objects.items():
            data = object_json(obj, rle=masks)
            if oid in prompts:
                data["prompt"] = prompts[oid].to_json()
            out.append(data)
        return out

    def object(self, object_id: int, *, masks: bool = False) -> dict[str, Any]:
        """One object as :meth:`objects` shows it. Raises ApiError 404 for an unknown id."""
        for data in self.objects(masks=masks):
            if data["id"] == object_id:
                return data
        raise self._unknown(object_id, self._tracker)

    def health(self) -> dict[str, Any]:
        """State, frames processed, and the error if the pipeline failed.

        ``status`` is ``ok``, ``reconnecting`` (running, but the camera dropped
        out and is being reopened), ``ended``, ``failed``, ``stopped``, ...; a
        source that can reconnect adds ``source`` (its connection state) and
        ``reconnects``.
        """
        latest = self.latest
        status = self.source_status()
        state = self.state
        if state == "running" and status is not None and not status.connected:
            state = "reconnecting"  # the server is up, but no frames come meanwhile
        data: dict[str, Any] = {
            "status": "ok" if state == "running" else state,
            "frames": self.metrics.frames,
            "frame_id": latest.frame_id if latest is not None else None,
        }
        if status is not None:
            data["source"] = status.state
            data["reconnects"] = status.reconnects
        if self.error is not None:
            data["error"] = str(self.error)
        return data

    def threads(self) -> Iterator[threading.Thread]:
        """The service's live threads (for diagnostics and tests)."""
        stream = self._stream
        if stream is not None and stream.thread is not None and stream.thread.is_alive():
            yield stream.thread
        yield from (t for t in self._threads if t.is_alive())
