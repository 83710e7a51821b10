"""The Python stream API for robotics code: ``for result in samedge.stream(source, prompts)``.

:func:`open_stream` (also callable as ``samedge.stream(...)``) opens a model
and a source and returns a :class:`Stream`: an iterator of
:class:`~samedge.stream.FrameResult` (frame id, timestamp, image, and per
object id its mask, box, score and tracking state). It is a thin layer over
:func:`~samedge.session.open_session`, which ``samedge run`` and ``samedge
serve`` open their sessions with too.

Three ways to consume it:

* iterate: ``for result in stream: ...``;
* callback, blocking: ``open_stream(..., callback=fn).run()``;
* callback, in a background thread: ``stream.start()``, later ``stream.close()``.

Prompts can be added, replaced and removed while it runs (from the loop body,
the callback or another thread): :meth:`Stream.add`, :meth:`Stream.remove`,
:meth:`Stream.clear`.

Resources: the stream owns its source (and the model unless a
:class:`~samedge.Predictor` was passed in). Leaving the ``for`` loop (its end,
``break``, an exception), :meth:`Stream.close`, the end of a ``with`` block
and garbage collection all stop the capture thread and release the camera.
A stream is iterated once.

Example:
    >>> import samedge
    >>> from samedge import ObjectPrompt
    >>> box = ObjectPrompt(box=[100, 80, 220, 200])
    >>> with samedge.stream(0, prompts=[box]) as s:                # doctest: +SKIP
    ...     for result in s:
    ...         for oid, obj in result.objects.items():
    ...             print(result.frame_id, oid, obj.state.value, obj.box, obj.score)
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from types import TracebackType
from typing import TYPE_CHECKING

from samedge.errors import InputError, PromptError
from samedge.prompts import ObjectPrompt
from samedge.stream.pipeline import FrameResult, Pipeline, StatsSummary
from samedge.stream.reconnect import ReconnectPolicy
from samedge.stream.sinks import CallbackSink, Sink
from samedge.stream.sources import FrameSource
from samedge.stream.tracking import TrackedObject, Tracker, TrackerConfig

if TYPE_CHECKING:
    from samedge.memory_predictor import MemoryPredictor
    from samedge.predictor import Predictor
    from samedge.stream.memory import MemoryTracker

__all__ = ["Prompts", "Stream", "open_stream", "prompt_items"]

log = logging.getLogger(__name__)

Prompts = ObjectPrompt | Sequence[ObjectPrompt] | Mapping[int, ObjectPrompt] | None
"""One prompt (object 1), a sequence (objects 1..N) or a mapping object id -> prompt."""

_JOIN_TIMEOUT_S = 15.0


def prompt_items(prompts: Prompts) -> list[tuple[int | None, ObjectPrompt]]:
    """``(object id or None, prompt)`` pairs from any accepted form of ``prompts``.

    Raises:
        InputError: a mapping key is not a positive int.
        PromptError: ``prompts`` is of no accepted form.
    """
    if prompts is None:
        return []
    if isinstance(prompts, ObjectPrompt):
        return [(None, prompts)]
    if isinstance(prompts, Mapping):
        items: list[tuple[int | None, ObjectPrompt]] = []
        for key, value in prompts.items():
            if isinstance(key, bool) or not isinstance(key, int) or key <= 0:
                raise InputError(f"prompts: got object id {key!r}, expected positive ints as keys")
            items.append((key, value))
        return items
    if isinstance(prompts, (str, bytes)) or not isinstance(prompts, Sequence):
        raise PromptError(
            f"prompts: got {type(prompts).__name__}, expected an ObjectPrompt, a list of "
            "them, or a dict object id -> ObjectPrompt"
        )
    return [(None, p) for p in prompts]


class _FrameSize:
    """Remembers the size of the latest frame (a sink)."""

    value: tuple[int, int] | None = None

    def __call__(self, result: FrameResult) -> None:
        h, w = result.image.shape[:2]
        self.value = (int(h), int(w))


class Stream:
    """Per-frame segmentation results of a source; made by
    :func:`~samedge.session.open_session` (through :func:`open_stream`,
    ``samedge run`` and ``samedge serve``).

    Attributes:
        pipeline: The underlying :class:`~samedge.stream.Pipeline`.
        tracker: The objects being followed.
        predictor: The model.
        source: Where frames come from.
        error: What ended a :meth:`start`-ed stream, if it failed.
    """

    def __init__(
        self,
        source: FrameSource,
        predictor: Predictor | MemoryPredictor,
        tracker: Tracker | MemoryTracker,
        *,
        owns_predictor: bool,
        sinks: Sequence[Sink] = (),
        max_frames: int | None = None,
        annotate: bool = False,
        overlap: bool | None = None,
        stats_window: int = 10_000,
        on_result: Callable[[FrameResult], object] | None = None,
        on_end: Callable[[BaseException | None], object] | None = None,
    ) -> None:
        self._closed = False
        self._on_result = on_result
        self._on_end = on_end
        self._owns_predictor = owns_predictor
        self.source = source
        self.predictor = predictor
        self.tracker = tracker
        self.error: BaseException | None = None
        self._size = _FrameSize()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._iterated = False
        # The first sink notes the frame size, so add() can check prompts against it.
        # It must not hold the stream itself: a cycle would keep a dropped stream (and
        # its camera) alive until the cyclic garbage collector ran.
        self.pipeline = Pipeline(
            source,
            predictor,
            tracker,
            sinks=[CallbackSink(self._size), *sinks],
            max_frames=max_frames,
            annotate=annotate,
            overlap=overlap,
            stats_window=stats_window,
        )

    # -- consuming ------------------------------------------------------------------

    def _claim(self, how: str) -> None:
        with self._lock:
            if self._closed:
                raise InputError(f"Stream.{how}: the stream is closed; open a new one")
            if self._iterated:
                raise InputError(
                    f"Stream.{how}: a stream runs once (it was already iterated, run or "
                    "started); open a new one"
                )
            self._iterated = True

    def __iter__(self) -> Iterator[FrameResult]:
        """Results until the source ends, ``max_frames``, :meth:`stop` or :meth:`close`.

        Leaving the loop early closes the stream (camera released).

        Raises:
            PromptError: a prompt given before the first frame lies outside it
                (the stream is closed).
            SourceError: a live source dropped out and could not be reopened.
        """
        self._claim("__iter__")
        return self._results()

    def _results(self) -> Iterator[FrameResult]:
        try:
            yield from self.pipeline
        finally:
            self.close()

    def run(self) -> StatsSummary:
        """Drive the stream to its end in this thread (results go to the callback);
        Ctrl-C and SIGTERM end it cleanly. Returns the timing summary."""
        self._claim("run")
        try:
            return self.pipeline.run()
        finally:
            self.close()

    def start(self, *, name: str = "samedge-stream") -> Stream:
        """Run the stream in a background thread called ``name``; results go to
        the callback and the sinks. Returns ``self``; :meth:`close` stops it,
        :meth:`wait` waits for the end."""
        self._claim("start")
        self._thread = threading.Thread(target=self._background, name=name, daemon=True)
        self._thread.start()
        return self

    @property
    def thread(self) -> threading.Thread | None:
        """The thread of a :meth:`start`-ed stream, ``None`` before."""
        return self._thread

    def _background(self) -> None:
        try:
            for result in self.pipeline:
                if self._on_result is not None:
                    self._on_result(result)
        except Exception as e:  # handed to wait(); the thread must not die silently
            self.error = e
            log.error("stream failed: %s", e, exc_info=log.isEnabledFor(logging.DEBUG))
        if self._on_end is not None:
            try:
                self._on_end(self.error)
            except Exception:  # the owner's hook must not hide how the stream ended
                log.exception("the stream's on_end hook failed")

    def wait(self, timeout: float | None = None) -> StatsSummary:
        """Wait for a :meth:`start`-ed stream to end; re-raises what ended it.

        Raises:
            InputError: the stream was not started, or ``timeout`` passed.
        """
        thread = self._thread
        if thread is None:
            raise InputError("Stream.wait: the stream was not start()-ed")
        thread.join(timeout)
        if thread.is_alive():
            raise InputError(f"Stream.wait: still running after {timeout} s")
        self.close()
        if self.error is not None:
            raise self.error
        return self.pipeline.stats.summary()

    @property
    def running(self) -> bool:
        """Whether a :meth:`start`-ed stream's thread is alive."""
        return self._thread is not None and self._thread.is_alive()

    def add_sink(self, sink: Sink) -> None:
        """Also hand every result to ``sink`` (owned: closed with the stream).

        Raises:
            InputError: the stream already started or is closed.
        """
        with self._lock:
            if self._closed or self._iterated:
                raise InputError(
                    "Stream.add_sink: add sinks before the stream is iterated, run or started"
                )
            self.pipeline.sinks.append(sink)

    # -- prompts --------------------------------------------------------------------

    def add(self, prompt: ObjectPrompt, *, object_id: int | None = None) -> int:
        """Follow a new object, or re-prompt object ``object_id`` (also re-acquires
        a lost one); decoded on the next frame. Safe from any thread.

        Raises:
            PromptError: ``prompt`` is not an ObjectPrompt, or lies outside the
                frames seen so far.
        """
        if not isinstance(prompt, ObjectPrompt):
            raise PromptError(
                f"prompt: got {type(prompt).__name__}, expected a samedge.ObjectPrompt "
                "(e.g. ObjectPrompt(box=[x0, y0, x1, y1]))"
            )
        size = self._size.value
        if size is not None:
            prompt.check_inside(size, f"object {object_id}" if object_id else "prompt")
        return self.tracker.add_prompt(prompt, object_id=object_id)

    def remove(self, object_id: int) -> None:
        """Stop following an object. Raises InputError for an unknown id."""
        self.tracker.remove(object_id)

    def clear(self) -> None:
        """Stop following every object."""
        self.tracker.clear()

    @property
    def objects(self) -> dict[int, TrackedObject]:
        """Every object after the latest frame, by id."""
        return self.tracker.objects

    @property
    def frame_size(self) -> tuple[int, int] | None:
        """``(H, W)`` of the latest frame, ``None`` before the first."""
        return self._size.value

    @property
    def stats(self) -> StatsSummary:
        """FPS, dropped frames and per-stage latency so far."""
        return self.pipeline.stats.summary()

    # -- ending ---------------------------------------------------------------------

    def stop(self) -> None:
        """Ask the loop to end after the current frame; safe from any thread."""
        self.pipeline.stop()

    def close(self) -> None:
        """Stop, join the threads, release the source (and the model if owned); idempotent.

        To end a ``for`` loop that runs in another thread, call :meth:`stop`
        from there instead: the loop then ends after its current frame and
        closes the stream itself.
        """
        with self._lock:
            if self._closed:
                return
            self._closed = True
        self.pipeline.stop()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(_JOIN_TIMEOUT_S)
            if thread.is_alive():
                log.warning("samedge-stream did not end within %.0f s", _JOIN_TIMEOUT_S)
        try:
            self.pipeline.close()
        finally:
            if self._owns_predictor:
                self.predictor.close()

    @property
    def closed(self) -> bool:
        return self._closed

    def __enter__(self) -> Stream:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __del__(self) -> None:
        # A stream dropped without close() must not keep a camera open; __del__ may run
        # on a half-built object or at interpreter exit, so never raise from here.
        if getattr(self, "_closed", True):
            return
        with contextlib.suppress(Exception):  # nothing can be reported from __del__
            self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else "running" if self.running else "open"
        return f"<Stream {self.source.description} {state}, {len(self.tracker)} objects>"


def open_stream(
    source: str | int | os.PathLike[str] | FrameSource | None = None,
    prompts: Prompts = None,
    *,
    model: str | os.PathLike[str] | Predictor | MemoryPredictor = "samedge_tiny",
    backend: str = "auto",
    precision: str | None = None,
    device: str | None = None,
    tracker: TrackerConfig | None = None,
    max_frames: int | None = None,
    loop: bool = False,
    reconnect: ReconnectPolicy | None = None,
    callback: Callable[[FrameResult], object] | None = None,
    annotate: bool = False,
    overlap: bool | None = None,
) -> Stream:
    """Open a model and a source; per-frame masks of the prompted objects.

    Also callable as ``samedge.stream(...)``.

    Args:
        source: A ``--source`` spec (camera index, file, folder, URL, GStreamer
            pipeline, ``"synthetic"``; see :func:`~samedge.stream.open_source`)
            or a :class:`~samedge.stream.FrameSource` (e.g. a
            :class:`~samedge.stream.PushSource` fed by a ROS callback); owned.
            ``None`` is the synthetic scene.
        prompts: The objects to follow from the first frame: one
            :class:`~samedge.ObjectPrompt` (points, a box, or both), a list
            (ids 1, 2, ...) or a dict id -> prompt. More can be added later.
        model: Model directory, built-in name, or an open
            :class:`~samedge.Predictor` (or, for a SAM 2.1 / EdgeTAM directory,
            :class:`~samedge.memory_predictor.MemoryPredictor`; then not closed
            by the stream). SAM 2-family models track with memory.
        backend: ``"auto"`` or a backend name (ignored with a Predictor).
        precision: Insist on a precision (ignored with a Predictor).
        device: Backend device; ``None`` for the best (ignored with a Predictor).
        tracker: Re-prompting and loss thresholds.
        max_frames: End after this many frames; ``None``: when the source ends.
        loop: Loop video files and image folders.
        reconnect: Reopening of live sources that drop out (default: forever,
            0.5 s doubling to 30 s).
        callback: Called with every :class:`~samedge.stream.FrameResult`
            (in the thread that runs the loop).
        annotate: Draw overlays into ``FrameResult.annotated`` (BGR).
        overlap: Encode frame k+1 on a worker thread while frame k is decoded
            (see :class:`~samedge.stream.Pipeline`); ``None``: only when the
            encoder runs off the CPU.

    Returns:
        The :class:`Stream`, not started: iterate it, :meth:`~Stream.run` it or
        :meth:`~Stream.start` it.

    Raises:
        SourceError: the source cannot be opened (says what was tried).
        ModelDirError, BackendError: the model cannot be loaded.
        PromptError: malformed prompts (a prompt outside the frame is reported
            when the first frame arrives, by the iteration).

    Example:
        >>> import samedge
        >>> from samedge import ObjectPrompt
        >>> for r in samedge.stream("synthetic", ObjectPrompt(point_coords=[[320, 240]],
        ...                                                   point_labels=[1]),
        ...                         max_frames=3):                      # doctest: +SKIP
        ...     print(r.frame_id, r.objects[1].state.value, r.objects[1].box)
    """
    from samedge.memory_predictor import MemoryPredictor
    from samedge.predictor import Predictor
    from samedge.session import SessionConfig, open_session

    opened: Predictor | MemoryPredictor | None = None
    model_spec: str | os.PathLike[str]
    if isinstance(model, (Predictor, MemoryPredictor)):
        opened, model_spec = model, model.model_dir
    else:
        model_spec = model
    given, spec = (source, None) if isinstance(source, FrameSource) else (None, source)
    try:
        if max_frames is not None and (isinstance(max_frames, bool) or max_frames <= 0):
            raise InputError(f"max_frames: got {max_frames!r}, expected a positive int or None")
        config = SessionConfig(
            source=spec,
            model=model_spec,
            backend=backend,
            precision=precision,
            device=device,
            frames=max_frames,
            loop=loop,
            tracker=tracker if tracker is not None else TrackerConfig(),
            reconnect=reconnect if reconnect is not None else ReconnectPolicy(),
            overlap=overlap,
            annotate=annotate,
        )
    except BaseException:
        if given is not None:
            given.close()  # owned from the call on, even when the call fails
        raise
    return open_session(
        config,
        prompts,
        predictor=opened,
        source=given,
        callback=callback,
    )
