"""``samedge run``: track a few objects on a source, write a video, report speed.

On the built-in synthetic scene the demo clicks the objects itself: one
positive point deep inside each of the largest objects of the first frame
(the maximum of the ground-truth mask's distance transform), then follows
them by re-prompting, and measures the tracked masks against the scene's
ground truth. On other sources the caller gives the prompts (points, boxes).

Example:
    >>> from samedge.stream import RunConfig, run_demo
    >>> report = run_demo(RunConfig(frames=30, output=None))   # doctest: +SKIP
    >>> print(report.format())                                  # doctest: +SKIP
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from samedge.errors import InputError
from samedge.masks import deep_point, mask_iou
from samedge.prompts import ObjectPrompt
from samedge.session import SessionConfig, Tracking, open_session
from samedge.stream.memory import MemoryTracker
from samedge.stream.pipeline import FrameResult, StatsSummary
from samedge.stream.sinks import CallbackSink, VideoSink
from samedge.stream.sources import SyntheticSource
from samedge.stream.tracking import TrackState

__all__ = [
    "BUILTIN_MEMORY_MODEL",
    "BUILTIN_REPROMPT_MODEL",
    "DEFAULT_OUTPUT",
    "RunConfig",
    "RunReport",
    "TrackingEval",
    "click_points",
    "run_demo",
]

log = logging.getLogger(__name__)

DEFAULT_OUTPUT = Path("out/run.mp4")
#: ``samedge run``'s model when none is given: the built-in with memory ...
BUILTIN_MEMORY_MODEL = "samedge_tiny_track"
#: ... or, with ``--tracker reprompt``, the built-in SAM 1-style model.
BUILTIN_REPROMPT_MODEL = "samedge_tiny"
# Objects smaller than this are not clicked: a click on a sliver says little.
_MIN_CLICK_AREA = 200


@dataclass(frozen=True)
class RunConfig(SessionConfig):
    """What ``samedge run`` does: a :class:`~samedge.session.SessionConfig` (model,
    source, tracker, frame loop; see there) plus the demo's prompts and video.

    Attributes:
        frames: Frames to process (default 150); ``None`` until the source
            ends (or Ctrl-C).
        objects: On the synthetic scene, how many objects to click.
        points: One object per point ``(x, y)``, a positive click each.
        boxes: One object per box ``(x0, y0, x1, y1)``.
        output: Annotated video (``.mp4``...) or PNG-frame folder; ``None`` for none.
        force: Replace an existing ``output`` (:data:`DEFAULT_OUTPUT` is
            always replaced: it is the demo's own scratch file).
        model: As in :class:`~samedge.session.SessionConfig`; ``None`` (the
            default) is the built-in model for the tracker:
            :data:`BUILTIN_MEMORY_MODEL` (memory tracking, which follows the
            built-in scene better: README, "samedge-tiny-track") unless
            ``tracking`` is ``REPROMPT``, then :data:`BUILTIN_REPROMPT_MODEL`.
    """

    model: str | os.PathLike[str] | None = None  # type: ignore[assignment]
    frames: int | None = 150
    objects: int = 3
    points: tuple[tuple[float, float], ...] = ()
    boxes: tuple[tuple[float, float, float, float], ...] = ()
    output: Path | None = DEFAULT_OUTPUT
    force: bool = False

    def __post_init__(self) -> None:
        if self.model is None:
            builtin = (
                BUILTIN_REPROMPT_MODEL
                if self.tracking is Tracking.REPROMPT
                else BUILTIN_MEMORY_MODEL
            )
            object.__setattr__(self, "model", builtin)
        super().__post_init__()
        if self.objects < 0:
            raise InputError(f"objects: got {self.objects}, expected 0 or more")
        for p in self.points:
            if len(p) != 2:
                raise InputError(f"points: got {p!r}, expected (x, y)")
        for b in self.boxes:
            if len(b) != 4:
                raise InputError(f"boxes: got {b!r}, expected (x0, y0, x1, y1)")


@dataclass(frozen=True)
class RunReport:
    """What a run did and how fast.

    Attributes:
        model: Model name from its card, and the directory it came from.
        source: Description of the source.
        backend: Backend that ran the model.
        backend_reason: Why that backend.
        precision: Precision the encoder computes in.
        device: Device, in the backend's words.
        objects: Objects prompted.
        stats: Frame count, FPS, per-stage latency.
        output: Where the annotated frames went, ``None`` if nowhere.
        mean_iou: Mean IoU of the tracked masks vs the synthetic scene's
            ground truth over every (frame, clicked object) while the object
            is in view (a lost object counts 0); ``None`` without ground truth.
        iou_per_object: Mean IoU per object id.
        lost: Objects lost at the end of the run.
        interrupted: The run was ended by Ctrl-C or SIGTERM.
        overlap: The encoder of the next frame ran while a frame was decoded.
        tracker: Which tracker followed the objects (``"reprompt"`` or ``"memory"``).
        signal: The signal that ended the run (``signal.SIGINT`` for Ctrl-C,
            ``signal.SIGTERM``), ``None`` when it was not interrupted.
    """

    model: str
    source: str
    backend: str
    backend_reason: str
    precision: str
    device: str
    objects: int
    stats: StatsSummary
    output: str | None
    mean_iou: float | None
    iou_per_object: dict[int, float]
    lost: int
    interrupted: bool
    overlap: bool = False
    signal: int | None = None
    tracker: str = "reprompt"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (``samedge run --json``)."""
        data = {k: v for k, v in vars(self).items() if k != "stats"}
        data["stats"] = self.stats.to_dict()
        return data

    def format(self) -> str:
        """The human-readable report ``samedge run`` prints."""
        s = self.stats
        lines = [
            f"model:     {self.model}",
            f"source:    {self.source}",
            f"backend:   {self.backend} ({self.backend_reason})",
            f"precision: {self.precision}, device {self.device}",
            "tracker:   "
            + (
                "memory (SAM 2's memory bank)"
                if self.tracker == "memory"
                else "reprompt (each frame prompted from the previous mask)"
            ),
            "pipeline:  "
            + (
                "encoder of frame k+1 overlapped with decoding frame k"
                if self.overlap
                else "sequential (encode, then decode, per frame)"
            ),
            f"frames:    {s.frames} ({s.warmup} warm-up, untimed), then "
            f"{s.frames - s.warmup} in {s.elapsed_s:.2f} s -> {s.fps:.1f} FPS; "
            f"{self.objects} objects, {self.lost} lost, {s.dropped} frames dropped"
            + (" [interrupted]" if self.interrupted else ""),
            s.table(),
        ]
        if self.mean_iou is not None:
            per = ", ".join(f"{k}: {v:.2f}" for k, v in sorted(self.iou_per_object.items()))
            lines.append(f"tracking:  mean IoU vs ground truth {self.mean_iou:.3f} ({per})")
        lines.append(f"output:    {self.output or 'none (--no-video)'}")
        return "\n".join(lines)


def click_points(
    masks: np.ndarray, ids: Sequence[int], count: int, *, min_area: int = _MIN_CLICK_AREA
) -> list[tuple[int, tuple[float, float]]]:
    """Where a person would click: deep inside each of the ``count`` largest objects.

    Args:
        masks: ``K×H×W`` bool ground-truth masks.
        ids: The ``K`` objects' ids.
        count: Objects to click.
        min_area: Skip objects with fewer visible pixels.

    Returns:
        ``(object id, (x, y))`` pairs, largest object first; fewer than
        ``count`` when fewer objects are large enough.
    """
    areas = masks.reshape(len(masks), -1).sum(axis=1) if len(masks) else np.zeros(0)
    order = [int(k) for k in np.argsort(-areas, kind="stable") if areas[k] >= min_area]
    return [(int(ids[k]), deep_point(masks[k])) for k in order[:count]]


class TrackingEval:
    """Accumulates IoU of tracked objects against a synthetic scene's ground truth.

    Args:
        source: The synthetic source being tracked.
        truth: Tracker id -> scene object id.
    """

    def __init__(self, source: SyntheticSource, truth: dict[int, int]) -> None:
        self.source = source
        self.truth = dict(truth)
        self.ious: dict[int, list[float]] = {oid: [] for oid in truth}

    def __call__(self, result: FrameResult) -> None:
        # By id, not last_scene: an overlapped pipeline has already read the next frame.
        scene = self.source.scene_of(result.frame_id)
        if scene is None:
            return  # a frame read too long ago; no ground truth for it
        index = {sid: k for k, sid in enumerate(scene.ids)}
        for oid, sid in self.truth.items():
            k = index.get(sid)
            if k is None or not scene.masks[k].any():
                continue  # the object left the view: nothing to score
            obj = result.objects.get(oid)
            if obj is None or obj.state is not TrackState.TRACKING or obj.mask is None:
                self.ious[oid].append(0.0)
                continue
            self.ious[oid].append(mask_iou(scene.masks[k], obj.mask))

    def per_object(self) -> dict[int, float]:
        return {oid: float(np.mean(v)) for oid, v in self.ious.items() if v}

    def mean(self) -> float | None:
        values = [x for v in self.ious.values() for x in v]
        return float(np.mean(values)) if values else None


def run_demo(config: RunConfig | None = None) -> RunReport:
    """Run the tracking demo described by ``config`` and report on it.

    Opens a session (:func:`~samedge.session.open_session`), prompts the
    objects (clicked from the ground truth on the synthetic scene, else
    ``config.points`` / ``config.boxes``), runs it to the end, and closes
    everything.

    Raises:
        InputError: a source other than the synthetic scene without prompts,
            a source or output that cannot be opened, or a bad prompt.
        ModelDirError, BackendError: the model cannot be loaded.

    Example:
        >>> print(run_demo(RunConfig(frames=30)).format())     # doctest: +SKIP
    """
    config = config if config is not None else RunConfig()
    prompts = [ObjectPrompt(point_coords=[[x, y]], point_labels=[1]) for x, y in config.points]
    prompts += [ObjectPrompt(box=list(box)) for box in config.boxes]
    if not config.synthetic and not prompts:
        raise InputError(
            f"source {config.source!r}: no objects to track; only the synthetic scene can "
            "click objects itself. Give prompts with --point X,Y (repeatable, one object "
            "each) and/or --box X0,Y0,X1,Y1 (repeatable)"
        )
    session = replace(
        config,
        annotate=config.output is not None,
        synthetic_objects=max(config.synthetic_objects, config.objects),
    )
    stream = open_session(session, prompts)
    evaluator: TrackingEval | None = None
    try:
        source = stream.source
        if not prompts and isinstance(source, SyntheticSource):
            scene = source.scene_at(0)
            clicks = click_points(scene.masks, scene.ids, config.objects)
            if len(clicks) < config.objects:
                log.warning(
                    "the first frame shows %d objects large enough to click; clicking %d, not %d",
                    len(clicks),
                    len(clicks),
                    config.objects,
                )
            truth = {}
            for sid, (x, y) in clicks:
                truth[stream.add(ObjectPrompt(point_coords=[[x, y]], point_labels=[1]))] = sid
            evaluator = TrackingEval(source, truth)
            stream.add_sink(CallbackSink(evaluator))
        video = None
        if config.output is not None:
            fps = source.fps if source.fps and math.isfinite(source.fps) else 30.0
            force = config.force or Path(config.output) == DEFAULT_OUTPUT
            video = VideoSink(config.output, fps=fps, force=force)
            stream.add_sink(video)
        predictor = stream.predictor
        # Loaded before the first frame (a broken model fails here, not mid-video),
        # and read now: the stream closes the model when it ends.
        precision, device = predictor.precision, predictor.device
    except BaseException:
        stream.close()
        raise
    summary = stream.run()
    pipeline = stream.pipeline
    objects = stream.objects
    return RunReport(
        model=f"{predictor.card.model} ({predictor.model_dir})",
        source=source.description,
        backend=predictor.backend_name,
        backend_reason=predictor.backend_reason,
        precision=precision,
        device=device,
        objects=len(objects),
        stats=summary,
        output=video.description if video is not None else None,
        mean_iou=evaluator.mean() if evaluator else None,
        iou_per_object=evaluator.per_object() if evaluator else {},
        lost=sum(o.state is TrackState.LOST for o in objects.values()),
        interrupted=pipeline.interrupted,
        overlap=pipeline.overlap,
        signal=pipeline.interrupted_by,
        tracker="memory" if isinstance(stream.tracker, MemoryTracker) else "reprompt",
    )
