"""Video object segmentation accuracy of a tracker: J, F and J&F on DAVIS-format folders.

The protocol is DAVIS 2017's semi-supervised one (Pont-Tuset et al., "The 2017
DAVIS Challenge on Video Object Segmentation", arXiv:1704.00675; measures from
Perazzi et al., "A Benchmark Dataset and Evaluation Methodology for Video
Object Segmentation", CVPR 2016), with the first frame's masks turned into
prompts, since a promptable tracker takes points and boxes:

* the objects of a sequence are the labels present in its first annotation
  (DAVIS counts 1 to the largest; the two agree when every object shows in
  the first frame, as in DAVIS); each is
  prompted on the first frame from its mask, as a box (the mask's inclusive
  pixel extremes) or a click (the pixel farthest from the mask's border,
  :func:`samedge.masks.deepest_point`, as :mod:`samedge.evaluate`'s click);
* frames are streamed to the tracker one at a time (``set_image`` then
  ``step``), never the whole video at once;
* frames strictly between the first and the last are scored, per object:
  **J** is the IoU of the predicted and true masks over the pixels that are
  not void (255); both empty counts 1 (:func:`samedge.masks.mask_iou`'s
  convention, which is DAVIS's);
  **F** is the boundary F-measure: the boundary pixels of a mask are those
  that differ from their right, lower or lower-right neighbour (Martin et
  al.'s ``seg2bmap``, as DAVIS uses it); a predicted boundary pixel is
  correct when a true one lies within ``ceil(0.008 × image diagonal)``
  pixels (a disc), and the reverse for recall; F = 2PR/(P+R), with P = 1 for
  no predicted boundary and R = 1 for no true one (so both empty is 1 and one
  of them empty is 0); void pixels count as background;
* a sequence's J (F) is the mean over its objects of their per-frame mean;
  the overall J (F) is the mean over all objects (DAVIS's "J-Mean"), J&F
  their average; recall is the share of an object's frames scoring > 0.5.

Differences from the davis2017-evaluation code, where they matter: its
semi-supervised evaluation turns the annotations to booleans before it
compares them with 255, so it never leaves void pixels out; here they are
left out, as its metric functions intend. Its decay statistic is not reported.

Sequences written by :func:`samedge.davis.write_moving_scenes` carry per-frame
events (:data:`samedge.davis.EVENTS`); the report then breaks J and F down by
event (pooled over object-frames) and measures **id kept**: of the frames
where an object is visible again after an occlusion or a re-entry
(``after_occlusion``/``reentry``), the share where the tracker's mask for
that object's id has J >= 0.5.

Example:
    >>> from samedge.evaluate_video import evaluate_video
    >>> report = evaluate_video("samedge_tiny", "heldout_davis")  # doctest: +SKIP
    >>> print(report.summary())                                     # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import enum
import logging
import math
import os
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import cv2
import numpy as np

from samedge.davis import EVENTS, DavisDataset, DavisSequence, read_davis
from samedge.errors import InputError, SamedgeError, UnknownNameError
from samedge.masks import Ties, deepest_point, mask_box, mask_iou

__all__ = [
    "BOUND_TH",
    "TRACKERS",
    "EventScore",
    "ObjectScore",
    "PromptKind",
    "TrackerLike",
    "VideoEvalConfig",
    "VideoEvalReport",
    "boundary_f",
    "boundary_map",
    "evaluate_tracker",
    "evaluate_video",
    "region_j",
]

log = logging.getLogger(__name__)

#: DAVIS's boundary tolerance: a fraction of the image diagonal (>= 1: pixels).
BOUND_TH = 0.008
#: Trackers :func:`evaluate_video` can build by name.
TRACKERS: tuple[str, ...] = ("reprompt", "memory")
# The rows of the event table besides EVENTS.
_NONE, _ALL = "none", "all"


# ----------------------------------------------------------------------------- measures


def _keep(mask: np.ndarray, void: np.ndarray | None) -> np.ndarray:
    m = np.asarray(mask, bool)
    return m if void is None else m & ~void


def region_j(pred: np.ndarray, gt: np.ndarray, void: np.ndarray | None = None) -> float:
    """Region similarity J: IoU of ``pred`` and ``gt`` over the pixels not in ``void``.

    Both empty (after removing void) gives 1.0, as DAVIS.

    Example:
        >>> a = np.zeros((4, 4), bool); a[:2] = True
        >>> region_j(a, a.T), region_j(a & False, a & False)
        (0.3333333333333333, 1.0)
    """
    if np.shape(pred) != np.shape(gt):
        raise InputError(f"masks: got shapes {np.shape(pred)} and {np.shape(gt)}, expected equal")
    return mask_iou(_keep(pred, void), _keep(gt, void))


def boundary_map(mask: np.ndarray) -> np.ndarray:
    """One-pixel-wide boundary of a mask: pixels that differ from their right,
    lower or lower-right neighbour (those inside the image).

    The frame's own edge is not a boundary (Martin et al.'s ``seg2bmap``,
    the definition DAVIS's F uses).
    """
    m = np.asarray(mask, bool)
    b = np.zeros_like(m)
    b[:, :-1] |= m[:, :-1] != m[:, 1:]
    b[:-1, :] |= m[:-1, :] != m[1:, :]
    b[:-1, :-1] |= m[:-1, :-1] != m[1:, 1:]
    return b


def _disc(radius: int) -> np.ndarray:
    r = np.arange(-radius, radius + 1)
    return (r[:, None] ** 2 + r[None, :] ** 2 <= radius**2).astype(np.uint8)


def boundary_f(
    pred: np.ndarray,
    gt: np.ndarray,
    void: np.ndarray | None = None,
    bound_th: float = BOUND_TH,
) -> float:
    """Boundary F-measure F of ``pred`` against ``gt`` (DAVIS's definition).

    Args:
        pred: ``H×W`` bool prediction.
        gt: ``H×W`` bool ground truth.
        void: Pixels counted as background in both (DAVIS's void).
        bound_th: Match tolerance: below 1 a fraction of the image diagonal
            (rounded up to whole pixels), else pixels.

    Returns:
        F in ``[0, 1]``: 1 when neither has a boundary, 0 when only one has.

    Example:
        >>> a = np.zeros((10, 100), bool); a[:, :50] = True   # one edge, 10 px
        >>> b = a.copy(); b[:, 80:90] = True                  # + a far part: 20 px more
        >>> boundary_f(a, a), round(boundary_f(b, a), 6)       # P = 1/3, R = 1
        (1.0, 0.5)
    """
    if np.shape(pred) != np.shape(gt) or np.ndim(gt) != 2:
        raise InputError(f"masks: got shapes {np.shape(pred)} and {np.shape(gt)}, expected (H, W)")
    if not bound_th > 0:
        raise InputError(f"bound_th: got {bound_th}, expected > 0")
    h, w = np.shape(gt)
    radius = int(bound_th) if bound_th >= 1 else math.ceil(bound_th * math.hypot(h, w))
    pb = boundary_map(_keep(pred, void))
    gb = boundary_map(_keep(gt, void))
    n_pred, n_gt = int(np.count_nonzero(pb)), int(np.count_nonzero(gb))
    if n_pred == 0 or n_gt == 0:
        return 1.0 if n_pred == n_gt else 0.0
    disc = _disc(radius)
    near_gt = cv2.dilate(gb.view(np.uint8), disc).view(bool)
    near_pred = cv2.dilate(pb.view(np.uint8), disc).view(bool)
    precision = np.count_nonzero(pb & near_gt) / n_pred
    recall = np.count_nonzero(gb & near_pred) / n_gt
    if precision + recall == 0:
        return 0.0
    return float(2 * precision * recall / (precision + recall))


# ----------------------------------------------------------------------------- config


class PromptKind(str, enum.Enum):
    """How the first frame's masks become prompts."""

    BOX = "box"
    CLICK = "click"


@dataclass(frozen=True)
class VideoEvalConfig:
    """How a tracker is scored.

    Attributes:
        prompt: First-frame prompt per object (:class:`PromptKind`).
        bound_th: F's tolerance (see :func:`boundary_f`); DAVIS's 0.008.
        kept_j: J at or above which an object counts as tracked for "id kept".
        per_frame: Keep every object's per-frame J and F in the report.
    """

    prompt: PromptKind = PromptKind.BOX
    bound_th: float = BOUND_TH
    kept_j: float = 0.5
    per_frame: bool = True

    def __post_init__(self) -> None:
        if not isinstance(self.prompt, PromptKind):
            raise InputError(
                f"prompt: got {self.prompt!r}, expected a PromptKind "
                f"({', '.join(p.value for p in PromptKind)})"
            )
        if not (isinstance(self.bound_th, (int, float)) and self.bound_th > 0):
            raise InputError(f"bound_th: got {self.bound_th!r}, expected a number > 0")
        if not 0.0 < self.kept_j <= 1.0:
            raise InputError(f"kept_j: got {self.kept_j!r}, expected a J in (0, 1]")


class TrackerLike(Protocol):
    """What :func:`evaluate_tracker` needs from a tracker: :class:`samedge.stream.Tracker`'s
    ``add`` and ``step``; ``step`` returns objects by id whose ``mask`` is an
    ``H×W`` bool array or ``None`` (not tracked in this frame)."""

    def add(
        self,
        point_coords: Any = None,
        point_labels: Any = None,
        box: Any = None,
        *,
        object_id: int | None = None,
    ) -> int: ...

    def step(self, predictor: Any) -> Mapping[int, Any]: ...


# ----------------------------------------------------------------------------- results


def _mean(values: Sequence[float]) -> float:
    return float(np.mean(values)) if len(values) else math.nan


def _clean(v: float, digits: int = 4) -> float | None:
    return None if math.isnan(v) else round(v, digits)


def _read(v: float | None) -> float:
    return math.nan if v is None else float(v)


@dataclass(frozen=True)
class ObjectScore:
    """One object of one sequence.

    Attributes:
        sequence: Sequence name.
        label: The object's annotation index (its tracker id).
        j: Mean J over the scored frames.
        f: Mean F over the scored frames.
        j_recall: Share of frames with J > 0.5.
        f_recall: Share of frames with F > 0.5.
        frames: Frames scored.
        j_frames: Per-frame J (empty when the report was kept without them).
        f_frames: Per-frame F.
    """

    sequence: str
    label: int
    j: float
    f: float
    j_recall: float
    f_recall: float
    frames: int
    j_frames: tuple[float, ...] = ()
    f_frames: tuple[float, ...] = ()

    @property
    def jf(self) -> float:
        return (self.j + self.f) / 2

    def to_dict(self, per_frame: bool = False) -> dict[str, Any]:
        # Six digits: the report's means are recomputed from these when read back.
        out: dict[str, Any] = {
            "j": _clean(self.j, 6),
            "f": _clean(self.f, 6),
            "jf": _clean(self.jf, 6),
            "j_recall": _clean(self.j_recall, 6),
            "f_recall": _clean(self.f_recall, 6),
            "frames": self.frames,
        }
        if per_frame:
            out["j_frames"] = [round(v, 6) for v in self.j_frames]
            out["f_frames"] = [round(v, 6) for v in self.f_frames]
        return out

    @classmethod
    def from_dict(cls, sequence: str, label: int, data: Mapping[str, Any]) -> ObjectScore:
        return cls(
            sequence=sequence,
            label=int(label),
            j=_read(data["j"]),
            f=_read(data["f"]),
            j_recall=_read(data["j_recall"]),
            f_recall=_read(data["f_recall"]),
            frames=int(data["frames"]),
            j_frames=tuple(float(v) for v in data.get("j_frames", ())),
            f_frames=tuple(float(v) for v in data.get("f_frames", ())),
        )


@dataclass(frozen=True)
class EventScore:
    """J and F pooled over the object-frames that carry one event.

    Attributes:
        j: Mean J over those object-frames (``nan`` when there are none).
        f: Mean F.
        frames: Object-frames.
        objects: Distinct objects among them.
    """

    j: float
    f: float
    frames: int
    objects: int

    @property
    def jf(self) -> float:
        return (self.j + self.f) / 2

    def to_dict(self) -> dict[str, Any]:
        return {
            "j": _clean(self.j),
            "f": _clean(self.f),
            "jf": _clean(self.jf),
            "frames": self.frames,
            "objects": self.objects,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> EventScore:
        return cls(_read(data["j"]), _read(data["f"]), int(data["frames"]), int(data["objects"]))


@dataclass(frozen=True)
class VideoEvalReport:
    """J, F and J&F of a tracker on a DAVIS-format folder.

    Attributes:
        objects: Every object's scores, sequence by sequence.
        by_event: ``{event: EventScore}`` for :data:`~samedge.davis.EVENTS`
            plus ``"none"`` (object-frames with no event) and ``"all"``
            (every object-frame, pooled); empty when no sequence has events.
        id_kept: Share of visible object-frames after an occlusion or a
            re-entry where the object's J >= ``kept_j`` (``nan``: none).
        id_kept_frames: Object-frames ``id_kept`` is measured on.
        sequences: Sequences evaluated.
        frames: Frames streamed through the tracker.
        tracker: Tracker name.
        prompt: :class:`PromptKind` value.
        model: Model name or directory.
        backend: Backend that ran the graphs.
        dataset: The DAVIS folder.
        bound_th: F's tolerance.
        kept_j: J threshold of ``id_kept``.
        seconds: Wall time of the evaluation.
    """

    objects: tuple[ObjectScore, ...]
    by_event: Mapping[str, EventScore]
    id_kept: float
    id_kept_frames: int
    sequences: int
    frames: int
    tracker: str = ""
    prompt: str = PromptKind.BOX.value
    model: str = ""
    backend: str = ""
    dataset: str = ""
    bound_th: float = BOUND_TH
    kept_j: float = 0.5
    seconds: float = 0.0

    @property
    def j(self) -> float:
        """DAVIS's J-Mean: the mean over objects of their mean J."""
        return _mean([o.j for o in self.objects])

    @property
    def f(self) -> float:
        """DAVIS's F-Mean."""
        return _mean([o.f for o in self.objects])

    @property
    def jf(self) -> float:
        """DAVIS's J&F-Mean."""
        return (self.j + self.f) / 2

    @property
    def j_recall(self) -> float:
        return _mean([o.j_recall for o in self.objects])

    @property
    def f_recall(self) -> float:
        return _mean([o.f_recall for o in self.objects])

    def per_sequence(self) -> dict[str, tuple[float, float]]:
        """``{sequence: (J, F)}``: means over each sequence's objects."""
        out: dict[str, list[ObjectScore]] = {}
        for o in self.objects:
            out.setdefault(o.sequence, []).append(o)
        return {k: (_mean([o.j for o in v]), _mean([o.f for o in v])) for k, v in out.items()}

    def summary(self, sequences: bool = False) -> str:
        """Headline, the event table, and (``sequences``) one line per sequence."""
        lines = [
            f"{self.model} on {self.backend}, {self.tracker} tracker prompted by {self.prompt}: "
            f"{self.dataset}: {self.sequences} sequences, {len(self.objects)} objects, "
            f"{self.frames} frames, {self.seconds:.1f} s",
            f"J&F {self.jf:.3f}  J {self.j:.3f}  F {self.f:.3f}  "
            f"(recall J {self.j_recall:.3f}, F {self.f_recall:.3f})",
        ]
        if self.by_event:
            kept = (
                f"{self.id_kept:.3f} of {self.id_kept_frames} object-frames"
                if self.id_kept_frames
                else "no frames after an occlusion or re-entry"
            )
            lines.append(f"id kept (J >= {self.kept_j:g} after occlusion/re-entry): {kept}")
            lines.append(f"{'event':<16} {'J&F':>6} {'J':>6} {'F':>6} {'frames':>7} {'objects':>8}")
            for name, e in self.by_event.items():
                lines.append(
                    f"{name:<16} {e.jf:>6.3f} {e.j:>6.3f} {e.f:>6.3f} {e.frames:>7} {e.objects:>8}"
                )
        if sequences:
            lines.append(f"{'sequence':<24} {'J&F':>6} {'J':>6} {'F':>6}")
            for name, (j, f) in self.per_sequence().items():
                lines.append(f"{name:<24} {(j + f) / 2:>6.3f} {j:>6.3f} {f:>6.3f}")
        return "\n".join(lines)

    def to_dict(self, per_frame: bool = False) -> dict[str, Any]:
        """JSON-friendly form (``nan`` becomes ``None``); ``per_frame`` adds the per-frame J/F."""
        seqs: dict[str, dict[str, Any]] = {}
        for o in self.objects:
            seqs.setdefault(o.sequence, {"objects": {}})["objects"][str(o.label)] = o.to_dict(
                per_frame
            )
        for name, (j, f) in self.per_sequence().items():
            seqs[name].update({"j": _clean(j), "f": _clean(f), "jf": _clean((j + f) / 2)})
        return {
            "dataset": self.dataset,
            "model": self.model,
            "backend": self.backend,
            "tracker": self.tracker,
            "prompt": self.prompt,
            "sequences": self.sequences,
            "objects": len(self.objects),
            "frames": self.frames,
            "bound_th": self.bound_th,
            "jf": _clean(self.jf),
            "j": _clean(self.j),
            "f": _clean(self.f),
            "j_recall": _clean(self.j_recall),
            "f_recall": _clean(self.f_recall),
            "kept_j": self.kept_j,
            "id_kept": _clean(self.id_kept),
            "id_kept_frames": self.id_kept_frames,
            "by_event": {k: v.to_dict() for k, v in self.by_event.items()},
            "per_sequence": seqs,
            "seconds": round(self.seconds, 2),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> VideoEvalReport:
        """Read :meth:`to_dict`'s form back (also from a saved eval file).

        Raises:
            InputError: a key is missing or has the wrong type.
        """
        try:
            objects = tuple(
                ObjectScore.from_dict(seq, label, scores)
                for seq, entry in data["per_sequence"].items()
                for label, scores in entry["objects"].items()
            )
            return cls(
                objects=objects,
                by_event={k: EventScore.from_dict(v) for k, v in data["by_event"].items()},
                id_kept=_read(data["id_kept"]),
                id_kept_frames=int(data["id_kept_frames"]),
                sequences=int(data["sequences"]),
                frames=int(data["frames"]),
                tracker=str(data.get("tracker", "")),
                prompt=str(data.get("prompt", PromptKind.BOX.value)),
                model=str(data.get("model", "")),
                backend=str(data.get("backend", "")),
                dataset=str(data.get("dataset", "")),
                bound_th=float(data.get("bound_th", BOUND_TH)),
                kept_j=float(data.get("kept_j", 0.5)),
                seconds=float(data.get("seconds", 0.0)),
            )
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            raise InputError(
                f"video eval report: not readable ({type(e).__name__}: {e}); expected "
                "VideoEvalReport.to_dict()'s form"
            ) from e


# ----------------------------------------------------------------------------- the loop


def _first_prompt(mask: np.ndarray, kind: PromptKind) -> dict[str, Any]:
    if kind is PromptKind.BOX:
        return {"box": np.array(mask_box(mask), np.float64)}
    p = deepest_point(mask, ties=Ties.FIRST)
    return {"point_coords": np.array([[p.x, p.y]], np.float64), "point_labels": np.ones(1)}


@dataclass
class _Pool:
    """Per-frame scores pooled by event."""

    j: dict[str, list[float]] = field(default_factory=dict)
    f: dict[str, list[float]] = field(default_factory=dict)
    objects: dict[str, set[tuple[str, int]]] = field(default_factory=dict)
    kept: list[bool] = field(default_factory=list)

    def add(self, key: str, obj: tuple[str, int], j: float, f: float) -> None:
        self.j.setdefault(key, []).append(j)
        self.f.setdefault(key, []).append(f)
        self.objects.setdefault(key, set()).add(obj)

    def table(self) -> dict[str, EventScore]:
        out = {}
        for key in (*EVENTS, _NONE, _ALL):
            js, fs = self.j.get(key, []), self.f.get(key, [])
            out[key] = EventScore(_mean(js), _mean(fs), len(js), len(self.objects.get(key, ())))
        return out


def _score_sequence(
    predictor: Any,
    tracker: TrackerLike,
    seq: DavisSequence,
    config: VideoEvalConfig,
    pool: _Pool,
) -> list[ObjectScore]:
    n = len(seq)
    if n < 3:
        raise InputError(
            f"sequence {seq.name!r}: {n} frame(s); DAVIS scores the frames between the first "
            "(the prompt) and the last, so a sequence needs at least 3"
        )
    labels = seq.object_ids()
    if not labels:
        raise InputError(
            f"sequence {seq.name!r}: its first annotation ({seq.annotations[0].name}) has no "
            "object (only 0 background / 255 void); the first frame must show every object"
        )
    j_of: dict[int, list[float]] = {k: [] for k in labels}
    f_of: dict[int, list[float]] = {k: [] for k in labels}
    empty: np.ndarray | None = None
    for i, frame in enumerate(seq.frames()):
        if i == 0:
            for k in labels:
                oid = tracker.add(**_first_prompt(frame.mask(k), config.prompt), object_id=k)
                if oid != k:
                    raise InputError(
                        f"tracker: asked for object id {k}, got {oid}; the evaluation needs a "
                        "tracker that takes the ids it is given"
                    )
        predictor.set_image(frame.image)
        objects = tracker.step(predictor)
        if i == 0 or i == n - 1:
            continue
        if empty is None or empty.shape != frame.labels.shape:
            empty = np.zeros(frame.labels.shape, bool)
        void = frame.void
        for k in labels:
            obj = objects.get(k)
            pred = obj.mask if obj is not None and obj.mask is not None else empty
            gt = frame.mask(k)
            j = region_j(pred, gt, void)
            f = boundary_f(pred, gt, void, config.bound_th)
            j_of[k].append(j)
            f_of[k].append(f)
            if seq.events is None:
                continue
            events = seq.events.at(k, i)
            for e in events:
                pool.add(e, (seq.name, k), j, f)
            if not events:
                pool.add(_NONE, (seq.name, k), j, f)
            pool.add(_ALL, (seq.name, k), j, f)
            if ("after_occlusion" in events or "reentry" in events) and gt.any():
                pool.kept.append(j >= config.kept_j)
    scores = []
    for k in labels:
        js, fs = j_of[k], f_of[k]
        scores.append(
            ObjectScore(
                sequence=seq.name,
                label=k,
                j=_mean(js),
                f=_mean(fs),
                j_recall=float(np.mean(np.array(js) > 0.5)),
                f_recall=float(np.mean(np.array(fs) > 0.5)),
                frames=len(js),
                j_frames=tuple(js) if config.per_frame else (),
                f_frames=tuple(fs) if config.per_frame else (),
            )
        )
    return scores


def evaluate_tracker(
    predictor: Any,
    make_tracker: Callable[[], TrackerLike],
    dataset: DavisDataset | Iterable[DavisSequence],
    config: VideoEvalConfig | None = None,
) -> VideoEvalReport:
    """Score a tracker on DAVIS sequences, one fresh tracker per sequence.

    Args:
        predictor: What the tracker's ``step`` takes: a :class:`samedge.Predictor`
            (or anything with its ``set_image``) for the re-prompt tracker.
        make_tracker: Returns a new tracker (``add``/``step`` as
            :class:`samedge.stream.Tracker`) for each sequence.
        dataset: A :class:`~samedge.davis.DavisDataset` or its sequences.
        config: Prompt kind and tolerances; ``None`` for the defaults.

    Returns:
        The report (``model``/``backend``/``tracker`` left for the caller to fill).

    Raises:
        InputError: a sequence with fewer than 3 frames or no object in its
            first annotation, or a bad annotation file.

    Example:
        >>> from samedge import Predictor
        >>> from samedge.stream import Tracker
        >>> with Predictor("samedge_tiny") as p:                               # doctest: +SKIP
        ...     report = evaluate_tracker(p, Tracker, read_davis("heldout_davis"))
    """
    config = config or VideoEvalConfig()
    t0 = time.perf_counter()
    pool = _Pool()
    objects: list[ObjectScore] = []
    count = frames = 0
    has_events = False
    for seq in dataset:
        scores = _score_sequence(predictor, make_tracker(), seq, config, pool)
        objects += scores
        count += 1
        frames += len(seq)
        has_events |= seq.events is not None
        log.info(
            "%s: J&F %.3f over %d objects", seq.name, _mean([o.jf for o in scores]), len(scores)
        )
    if count == 0:
        raise InputError("dataset: no sequences to evaluate")
    kept = pool.kept
    return VideoEvalReport(
        objects=tuple(objects),
        by_event=pool.table() if has_events else {},
        id_kept=float(np.mean(kept)) if kept else math.nan,
        id_kept_frames=len(kept),
        sequences=count,
        frames=frames,
        prompt=config.prompt.value,
        dataset=str(dataset.root) if isinstance(dataset, DavisDataset) else "",
        bound_th=config.bound_th,
        kept_j=config.kept_j,
        seconds=time.perf_counter() - t0,
    )


def _tracker_setup(name: str) -> tuple[Callable[..., Any], Callable[[], TrackerLike]]:
    """The predictor class and the tracker factory of a tracker name."""
    if name == "reprompt":
        from samedge.predictor import Predictor
        from samedge.stream.tracking import Tracker

        return Predictor, Tracker
    if name == "memory":
        try:
            from samedge.memory_predictor import MemoryPredictor
            from samedge.stream.memory import MemoryTracker
        except ImportError as e:
            raise SamedgeError(
                "tracker 'memory': samedge.stream.memory is not in this install of samedge; "
                "use --tracker reprompt"
            ) from e
        return MemoryPredictor, MemoryTracker
    raise UnknownNameError(f"tracker: got {name!r}, expected one of {', '.join(TRACKERS)}")


def evaluate_video(
    model: str | os.PathLike[str],
    video: str | os.PathLike[str] | DavisDataset,
    *,
    backend: str = "auto",
    tracker: str = "reprompt",
    config: VideoEvalConfig | None = None,
    split: str | None = None,
) -> VideoEvalReport:
    """Evaluate a model with a tracker on a DAVIS-format folder (``samedge eval --video``).

    Args:
        model: Model directory or built-in name (see :class:`samedge.Predictor`).
        video: The DAVIS folder (or an opened :class:`~samedge.davis.DavisDataset`).
        backend: ``"auto"``, ``"onnxruntime"``, ``"openvino"`` or ``"tensorrt"``.
        tracker: One of :data:`TRACKERS`: ``"reprompt"``
            (:class:`samedge.stream.Tracker` on a :class:`samedge.Predictor`) or
            ``"memory"`` (:class:`samedge.stream.memory.MemoryTracker` on a
            :class:`samedge.memory_predictor.MemoryPredictor`: a SAM 2-family
            model directory).
        config: Prompt kind and tolerances.
        split: An ImageSets list to restrict the sequences (see
            :func:`~samedge.davis.read_davis`).

    Returns:
        The report; ``report.summary()`` is what ``samedge eval --video`` prints.

    Example:
        >>> config = VideoEvalConfig(prompt=PromptKind.CLICK)
        >>> report = evaluate_video("samedge_tiny", "heldout", config=config)  # doctest: +SKIP
        >>> round(report.jf, 3)                                              # doctest: +SKIP
    """
    if tracker not in TRACKERS:
        raise UnknownNameError(f"tracker: got {tracker!r}, expected one of {', '.join(TRACKERS)}")
    predictor_class, make_tracker = _tracker_setup(tracker)
    dataset = video if isinstance(video, DavisDataset) else read_davis(Path(video), split=split)
    with predictor_class(model, backend=backend) as predictor:
        report = evaluate_tracker(predictor, make_tracker, dataset, config)
        backend_name = predictor.backend_name
    return dataclasses.replace(report, tracker=tracker, model=str(model), backend=backend_name)
