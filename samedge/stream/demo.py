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
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from samedge.errors import InputError
from samedge.stream.pipeline import FrameResult, Pipeline, StatsSummary
from samedge.stream.reconnect import ReconnectPolicy
from samedge.stream.sinks import CallbackSink, Sink, VideoSink
from samedge.stream.sources import FrameSource, SyntheticSource, open_source
from samedge.stream.tracking import Tracker, TrackerConfig, TrackState, deep_point

if TYPE_CHECKING:
    from samedge.predictor import Predictor

__all__ = ["DEFAULT_OUTPUT", "RunConfig", "RunReport", "TrackingEval", "click_points", "run_demo"]

log = logging.getLogger(__name__)

DEFAULT_OUTPUT = Path("out/run.mp4")
# Objects smaller than this are not clicked: a click on a sliver says little.
_MIN_CLICK_AREA = 200


@dataclass(frozen=True)
class RunConfig:
    """What ``samedge run`` does.

    Attributes:
        source: ``--source`` spec (see :func:`~samedge.stream.open_source`);
            ``None`` is the synthetic scene.
        model: Model directory or built-in name.
        backend: ``"auto"`` or a backend name.
        precision: ``None`` (the model as it is) or one to insist on.
        device: Backend device; ``None`` for the backend's best.
        frames: Frames to process; ``None`` until the source ends (or Ctrl-C).
        objects: On the synthetic scene, how many objects to click.
        points: One object per point ``(x, y)``, a positive click each.
        boxes: One object per box ``(x0, y0, x1, y1)``.
        output: Annotated video (``.mp4``...) or PNG-frame folder; ``None`` for none.
        force: Replace an existing ``output``.
        loop: Loop video files and image folders.
        seed: Seed of the synthetic scene.
        tracker: Re-prompting and loss thresholds.
        reconnect: How a camera or stream that drops out is reopened.
        overlap: Encode frame k+1 while frame k is decoded (see
            :class:`~samedge.stream.Pipeline`); ``None`` for the default (on),
            ``False`` runs the stages one after the other.
    """

    source: str | int | None = None
    model: str | os.PathLike[str] = "samedge_tiny"
    backend: str = "auto"
    precision: str | None = None
    device: str | None = None
    frames: int | None = 150
    objects: int = 3
    points: tuple[tuple[float, float], ...] = ()
    boxes: tuple[tuple[float, float, float, float], ...] = ()
    output: Path | None = DEFAULT_OUTPUT
    force: bool = False
    loop: bool = False
    seed: int = 0
    tracker: TrackerConfig = field(default_factory=TrackerConfig)
    reconnect: ReconnectPolicy = field(default_factory=ReconnectPolicy)
    overlap: bool | None = None

    def __post_init__(self) -> None:
        if self.overlap is not None and not isinstance(self.overlap, bool):
            raise InputError(f"overlap: got {self.overlap!r}, expected True, False or None")
        if self.frames is not None and self.frames <= 0:
            raise InputError(f"frames: got {self.frames}, expected a positive int or None")
        if self.objects < 0:
            raise InputError(f"objects: got {self.objects}, expected 0 or more")
        for p in self.points:
            if len(p) != 2:
                raise InputError(f"points: got {p!r}, expected (x, y)")
        for b in self.boxes:
            if len(b) != 4:
                raise InputError(f"boxes: got {b!r}, expected (x0, y0, x1, y1)")
        if not isinstance(self.reconnect, ReconnectPolicy):
            raise InputError(
                f"reconnect: got {type(self.reconnect).__name__}, expected a ReconnectPolicy"
            )

    @property
    def synthetic(self) -> bool:
        return self.source is None or (
            isinstance(self.source, str) and self.source.strip().lower() == "synthetic"
        )


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
            gt = scene.masks[k]
            inter = np.count_nonzero(gt & obj.mask)
            union = np.count_nonzero(gt | obj.mask)
            self.ious[oid].append(inter / union if union else 0.0)

    def per_object(self) -> dict[int, float]:
        return {oid: float(np.mean(v)) for oid, v in self.ious.items() if v}

    def mean(self) -> float | None:
        values = [x for v in self.ious.values() for x in v]
        return float(np.mean(values)) if values else None


def run_demo(config: RunConfig | None = None) -> RunReport:
    """Run the tracking demo described by ``config`` and report on it.

    Opens the model and the source, prompts the objects (clicked from the
    ground truth on the synthetic scene, else ``config.points`` /
    ``config.boxes``), runs the pipeline, and closes everything.

    Raises:
        InputError: a source other than the synthetic scene without prompts,
            a source or output that cannot be opened, or a bad prompt.
        ModelDirError, BackendError: the model cannot be loaded.

    Example:
        >>> print(run_demo(RunConfig(frames=30)).format())     # doctest: +SKIP
    """
    from samedge.predictor import Predictor
    from samedge.runtimes import select_backend

    config = config if config is not None else RunConfig()
    user_prompts = bool(config.points or config.boxes)
    if not config.synthetic and not user_prompts:
        raise InputError(
            f"source {config.source!r}: no objects to track; only the synthetic scene can "
            "click objects itself. Give prompts with --point X,Y (repeatable, one object "
            "each) and/or --box X0,Y0,X1,Y1 (repeatable)"
        )
    choice = select_backend(config.backend, config.device)
    predictor = Predictor(
        config.model, backend=choice.name, precision=config.precision, device=choice.device
    )
    try:
        source = _open(config)
        return _run(config, predictor, source, choice.reason)
    finally:
        predictor.close()


def _open(config: RunConfig) -> FrameSource:
    if config.synthetic:
        return SyntheticSource(
            seed=config.seed, size=(480, 640), num_objects=max(4, config.objects)
        )
    return open_source(config.source, loop=config.loop, reconnect=config.reconnect)


def _run(config: RunConfig, predictor: Predictor, source: FrameSource, reason: str) -> RunReport:
    tracker = Tracker(config.tracker)
    sinks: list[Sink] = []
    evaluator: TrackingEval | None = None
    try:
        if config.points or config.boxes:
            for x, y in config.points:
                tracker.add(point_coords=[[x, y]], point_labels=[1])
            for box in config.boxes:
                tracker.add(box=list(box))
        elif isinstance(source, SyntheticSource):
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
                truth[tracker.add(point_coords=[[x, y]], point_labels=[1])] = sid
            evaluator = TrackingEval(source, truth)
            sinks.append(CallbackSink(evaluator))
        if config.output is not None:
            fps = source.fps if source.fps and math.isfinite(source.fps) else 30.0
            force = config.force or Path(config.output) == DEFAULT_OUTPUT
            sinks.append(VideoSink(config.output, fps=fps, force=force))
    except BaseException:
        source.close()
        raise
    pipeline = Pipeline(
        source,
        predictor,
        tracker,
        sinks=sinks,
        max_frames=config.frames,
        annotate=config.output is not None,
        overlap=config.overlap,
    )
    summary = pipeline.run()
    video = next((s for s in sinks if isinstance(s, VideoSink)), None)
    objects = tracker.objects
    return RunReport(
        model=f"{predictor.card.model} ({predictor.model_dir})",
        source=source.description,
        backend=predictor.backend_name,
        backend_reason=reason,
        precision=predictor.precision,
        device=predictor.device,
        objects=len(objects),
        stats=summary,
        output=video.description if video is not None else None,
        mean_iou=evaluator.mean() if evaluator else None,
        iou_per_object=evaluator.per_object() if evaluator else {},
        lost=sum(o.state is TrackState.LOST for o in objects.values()),
        interrupted=pipeline.interrupted,
        overlap=pipeline.overlap,
    )
