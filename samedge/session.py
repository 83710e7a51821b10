"""One session: model -> source -> tracker -> pipeline, opened by one function.

:func:`open_session` is the only place that wires a session together: it
checks the configuration, takes the prompts (before anything slow happens),
opens the model (the backend is chosen once, by the
:class:`~samedge.Predictor`, which keeps the choice and its reason), opens the
source, and returns a :class:`~samedge.stream.Stream`, which runs the
:class:`~samedge.stream.Pipeline` in the caller's thread or a background one
and takes prompt edits from any thread while it runs.

Everything that follows objects through frames is a thin layer on it:

* ``samedge run`` (:func:`~samedge.stream.run_demo`, with :class:`~samedge.stream.RunConfig`,
  a :class:`SessionConfig` plus the demo's clicks and video file);
* ``samedge serve`` (:class:`~samedge.serve.StreamService`, with
  :class:`~samedge.serve.ServeConfig`, a :class:`SessionConfig` plus the server's settings);
* ``samedge.stream(...)`` (:func:`~samedge.stream.open_stream`, keyword arguments
  for a :class:`SessionConfig`).

Example:
    >>> from samedge import ObjectPrompt
    >>> from samedge.session import SessionConfig, open_session
    >>> config = SessionConfig(max_frames=30)
    >>> with open_session(config, ObjectPrompt(point_coords=[[320, 240]])) as s:  # doctest: +SKIP
    ...     for result in s:
    ...         print(result.frame_id, result.objects[1].state.value)
"""

from __future__ import annotations

import enum
import logging
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from samedge.errors import InputError
from samedge.stream.api import Prompts, Stream, prompt_items
from samedge.stream.memory import MemoryTracker, MemoryTrackerConfig
from samedge.stream.pipeline import FrameResult
from samedge.stream.reconnect import ReconnectPolicy
from samedge.stream.sinks import CallbackSink, Sink
from samedge.stream.sources import FrameSource, SyntheticSource, is_synthetic, open_source
from samedge.stream.tracking import Tracker, TrackerConfig

if TYPE_CHECKING:
    from samedge.memory_predictor import MemoryPredictor
    from samedge.predictor import Predictor

__all__ = ["SessionConfig", "Tracking", "open_session"]

log = logging.getLogger(__name__)


class Tracking(str, enum.Enum):
    """How objects are followed from frame to frame (``--tracker``)."""

    AUTO = "auto"
    """Memory for SAM 2-family models (SAM 2.1, EdgeTAM), re-prompting for the others."""
    REPROMPT = "reprompt"
    """Each frame prompted again from the object's previous mask (any SAM 1-family model)."""
    MEMORY = "memory"
    """SAM 2's memory bank (needs a SAM 2-family model directory)."""


@dataclass(frozen=True)
class SessionConfig:
    """What a session runs: model, source, tracker and frame loop.

    Attributes:
        source: A ``--source`` spec (camera index, file, folder, URL, GStreamer
            pipeline; see :func:`~samedge.stream.open_source`); ``None`` or
            ``"synthetic"`` is the built-in moving scene.
        model: Model directory or built-in name.
        backend: ``"auto"`` or a backend name.
        precision: ``None`` (the model as it is) or one to insist on.
        device: Backend device; ``None`` for the backend's best.
        frames: End after this many frames; ``None``: when the source ends
            (or on Ctrl-C / :meth:`~samedge.stream.Stream.stop`).
        loop: Loop video files and image folders.
        seed: Seed of the synthetic scene.
        synthetic_size: ``(height, width)`` of the synthetic scene.
        synthetic_fps: Frame rate of the synthetic scene's motion.
        synthetic_objects: Objects in the synthetic scene.
        realtime: Pace the synthetic scene at its frame rate and read it like
            a camera (newest frame only), as the server shows it.
        tracking: Which tracker follows the objects (:class:`Tracking`).
        tracker: Re-prompting and loss thresholds (the re-prompt tracker).
        memory: Objects and memories of the memory tracker.
        reconnect: How a camera or stream that drops out is reopened.
        overlap: Encode frame k+1 on a worker thread while frame k is decoded
            (see :class:`~samedge.stream.Pipeline`); ``None``: only when the
            encoder runs off the CPU (on a CPU it costs latency for little or
            no FPS), ``False`` runs the stages one after the other.
        annotate: Draw overlays into ``FrameResult.annotated`` (BGR).
        stats_window: Timing samples kept per pipeline stage.
    """

    source: str | int | os.PathLike[str] | None = None
    model: str | os.PathLike[str] = "samedge_tiny"
    backend: str = "auto"
    precision: str | None = None
    device: str | None = None
    frames: int | None = None
    loop: bool = False
    seed: int = 0
    synthetic_size: tuple[int, int] = (480, 640)
    synthetic_fps: float = 30.0
    synthetic_objects: int = 4
    realtime: bool = False
    tracking: Tracking = Tracking.AUTO
    tracker: TrackerConfig = field(default_factory=TrackerConfig)
    memory: MemoryTrackerConfig = field(default_factory=MemoryTrackerConfig)
    reconnect: ReconnectPolicy = field(default_factory=ReconnectPolicy)
    overlap: bool | None = None
    annotate: bool = False
    stats_window: int = 10_000

    def __post_init__(self) -> None:
        if self.overlap is not None and not isinstance(self.overlap, bool):
            raise InputError(f"overlap: got {self.overlap!r}, expected True, False or None")
        if self.frames is not None and (
            isinstance(self.frames, bool) or not isinstance(self.frames, int) or self.frames <= 0
        ):
            raise InputError(f"frames: got {self.frames!r}, expected a positive int or None")
        if not isinstance(self.backend, str):
            raise InputError(f"backend: got {self.backend!r}, expected a name such as 'auto'")
        if not isinstance(self.tracking, Tracking):
            raise InputError(
                f"tracking: got {self.tracking!r}, expected one of "
                f"{', '.join(t.value for t in Tracking)} (samedge.session.Tracking)"
            )
        if not isinstance(self.memory, MemoryTrackerConfig):
            raise InputError(
                f"memory: got {type(self.memory).__name__}, expected a MemoryTrackerConfig"
            )
        if not isinstance(self.tracker, TrackerConfig):
            raise InputError(
                f"tracker: got {type(self.tracker).__name__}, expected a TrackerConfig"
            )
        if not isinstance(self.reconnect, ReconnectPolicy):
            raise InputError(
                f"reconnect: got {type(self.reconnect).__name__}, expected a ReconnectPolicy"
            )
        if not (self.synthetic_fps > 0 and math.isfinite(self.synthetic_fps)):
            raise InputError(f"synthetic_fps: got {self.synthetic_fps}, expected > 0")
        if len(self.synthetic_size) != 2 or min(self.synthetic_size) < 32:
            raise InputError(
                f"synthetic_size: got {self.synthetic_size}, expected (height, width) >= 32"
            )
        if self.synthetic_objects <= 0:
            raise InputError(
                f"synthetic_objects: got {self.synthetic_objects}, expected a positive int"
            )
        if self.stats_window <= 0:
            raise InputError(f"stats_window: got {self.stats_window}, expected a positive int")

    @property
    def synthetic(self) -> bool:
        """Whether the source is the built-in moving scene."""
        return is_synthetic(self.source)


def _open_source(config: SessionConfig) -> FrameSource:
    if config.synthetic:
        return SyntheticSource(
            seed=config.seed,
            size=config.synthetic_size,
            num_objects=config.synthetic_objects,
            fps=config.synthetic_fps,
            realtime=config.realtime,
        )
    return open_source(config.source, loop=config.loop, reconnect=config.reconnect)  # type: ignore[arg-type]


def _memory_model(config: SessionConfig, predictor: object) -> bool:
    """Whether the session's model is of the SAM 2 family (has memory graphs)."""
    if predictor is not None:
        from samedge.memory_predictor import MemoryPredictor

        return isinstance(predictor, MemoryPredictor)
    from samedge.model_dir import read_model_dir
    from samedge.predictor import resolve_model

    return read_model_dir(resolve_model(config.model)).family == "sam2"


def _tracking(config: SessionConfig, predictor: object) -> Tracking:
    """The tracker this session runs: ``AUTO`` resolved against the model's family."""
    memory_model = _memory_model(config, predictor)
    if config.tracking is Tracking.AUTO:
        return Tracking.MEMORY if memory_model else Tracking.REPROMPT
    if config.tracking is Tracking.REPROMPT and memory_model:
        raise InputError(
            f"tracking reprompt: {config.model} is a SAM 2-family model, whose decoder needs "
            "memory-conditioned features; track it with memory (--tracker memory or auto)"
        )
    if config.tracking is Tracking.MEMORY and not memory_model:
        raise InputError(
            f"tracking memory: {config.model} has no memory graphs (a SAM 1-family model); "
            "export a SAM 2.1 or EdgeTAM checkpoint (`samedge export sam2.1_hiera_tiny ...`), "
            "or track by re-prompting (--tracker reprompt or auto)"
        )
    return config.tracking


def _open_predictor(config: SessionConfig, tracking: Tracking) -> Predictor | MemoryPredictor:
    if tracking is Tracking.MEMORY:
        from samedge.memory_predictor import MemoryPredictor

        return MemoryPredictor(
            config.model, backend=config.backend, precision=config.precision, device=config.device
        )
    from samedge.predictor import Predictor

    return Predictor(
        config.model, backend=config.backend, precision=config.precision, device=config.device
    )


def open_session(
    config: SessionConfig | None = None,
    prompts: Prompts = None,
    *,
    predictor: Predictor | MemoryPredictor | None = None,
    source: FrameSource | None = None,
    sinks: Sequence[Sink] = (),
    callback: Callable[[FrameResult], object] | None = None,
    on_result: Callable[[FrameResult], object] | None = None,
    on_end: Callable[[BaseException | None], object] | None = None,
) -> Stream:
    """Open the model and the source of ``config``; a :class:`~samedge.stream.Stream` of results.

    Args:
        config: What to run; ``None`` for the defaults (``samedge_tiny`` on the
            synthetic scene).
        prompts: The objects to follow from the first frame: one
            :class:`~samedge.ObjectPrompt`, a list (ids 1, 2, ...) or a dict
            id -> prompt. More can be added while it runs.
        predictor: An open :class:`~samedge.Predictor` (or, for memory
            tracking, a :class:`~samedge.memory_predictor.MemoryPredictor`) to
            use instead of opening ``config.model`` (then not closed by the stream).
        source: A :class:`~samedge.stream.FrameSource` to use instead of
            opening ``config.source``; owned from the call on, even when the call fails.
        sinks: Receive every result (video file, callbacks); owned.
        callback: Called with every result, in the thread that runs the loop
            (a sink: before the frame's ``latency`` is timed).
        on_result: Called by a :meth:`~samedge.stream.Stream.start`-ed stream's
            thread with every finished result (all timings in), e.g. to publish it.
        on_end: Called once when a :meth:`~samedge.stream.Stream.start`-ed stream's
            thread ends, with the exception that ended it or ``None``.

    Returns:
        The stream, not started: iterate it, :meth:`~samedge.stream.Stream.run`
        it or :meth:`~samedge.stream.Stream.start` it.

    Raises:
        InputError, PromptError: a bad argument or prompt (before a model loads
            or a camera opens).
        InputError: a tracker the model cannot run (memory on a SAM 1-family
            model, re-prompting on a SAM 2-family one).
        SourceError: the source cannot be opened (says what was tried).
        ModelDirError, BackendError: the model cannot be loaded.
    """
    config = config if config is not None else SessionConfig()
    owned: list[FrameSource | Sink] = [*([source] if source is not None else []), *sinks]
    owns_predictor = predictor is None
    try:
        # Arguments first, before a model loads or a camera opens.
        if not isinstance(config, SessionConfig):
            raise InputError(f"config: got {type(config).__name__}, expected a SessionConfig")
        if source is not None and not isinstance(source, FrameSource):
            raise InputError(f"source: got {type(source).__name__}, expected a FrameSource")
        if callback is not None and not callable(callback):
            raise InputError(f"callback: got {type(callback).__name__}, expected a callable")
        tracking = _tracking(config, predictor)
        tracker: Tracker | MemoryTracker = (
            MemoryTracker(config.memory) if tracking is Tracking.MEMORY else Tracker(config.tracker)
        )
        for object_id, prompt in prompt_items(prompts):
            tracker.add_prompt(prompt, object_id=object_id)
        if predictor is None:
            predictor = _open_predictor(config, tracking)
        if source is None:
            source = _open_source(config)
            owned.insert(0, source)
        log.info(
            "session: %s on %s (%s) from %s, tracking by %s",
            predictor.card.model,
            predictor.backend_name,
            predictor.backend_reason,
            source.description,
            tracking.value,
        )
        all_sinks = [*sinks, *([CallbackSink(callback)] if callback is not None else [])]
        return Stream(
            source,
            predictor,
            tracker,
            owns_predictor=owns_predictor,
            sinks=all_sinks,
            max_frames=config.frames,
            annotate=config.annotate,
            overlap=config.overlap,
            stats_window=config.stats_window,
            on_result=on_result,
            on_end=on_end,
        )
    except BaseException:
        for thing in owned:
            thing.close()
        if owns_predictor and predictor is not None:
            predictor.close()
        raise
