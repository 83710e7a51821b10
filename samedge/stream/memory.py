"""Follow objects with SAM 2's memory: stateless graphs, the memory bank in numpy.

:class:`MemoryTracker` has the public interface of the re-prompt
:class:`~samedge.stream.tracking.Tracker` (``add``, ``add_prompt``, ``remove``,
``clear``, ``objects``, ``step(predictor)``, :class:`TrackedObject` results),
so the pipeline, the server and ``samedge.stream`` use it unchanged; its
predictor is a :class:`~samedge.memory_predictor.MemoryPredictor`.

Each object has its own bank, with SAM 2's rules (``SAM2Base`` and the
per-object ``SAM2VideoPredictor`` of sam2 1.1):

* a frame on which a new object is prompted is a *conditioning* frame: it is
  decoded from the frame's features plus the no-memory embedding (no
  memory attention), and its memory is kept while the object lives (the
  ``max_conditioning_frames`` temporally closest are attended);
* every later frame is decoded from features conditioned by memory attention
  on the conditioning frames (temporal slot 0) and the memories of the last
  ``num_maskmem - 1`` frames (slots by distance), plus the object pointers of
  the conditioning frames and of up to ``max_pointers_in_encoder - 1`` recent
  frames (with their frame distance);
* a prompt for an object that is already tracked is a correction, as a click
  on a tracked frame in SAM 2: the tracked decode of this frame is run again
  with the points and the previous mask logits (clamped to +-32), and the
  result enters memory as this frame's (binarised, as prompted masks are);
* an object whose presence score is <= 0 is ``OCCLUDED``: no mask, still
  followed; SAM 2 writes its memory with the no-object embedding, which is
  how it knows the object is gone (``write_occluded_memory``), and it comes
  back when the score rises.

Objects go through memory attention and the decoder together, one call per
group of objects whose inputs share a shape (same bank length, same number of
prompt tokens: padding would change SAM 2's results). Memory is bounded:
spatial memories older than ``num_maskmem - 1`` frames are dropped (their
pointers kept up to ``max_pointers_in_encoder - 1`` frames), conditioning
frames beyond ``max_conditioning_frames`` are dropped oldest first.
:meth:`MemoryTracker.memory_report` gives the bytes held per object.

SAM2VideoPredictor stores memory features in bfloat16 and fills small mask
holes with a CUDA kernel; here memory stays float32 and no holes are filled
(Meta's code skips that step too where its extension is not built).

Example:
    >>> from samedge.memory_predictor import MemoryPredictor     # doctest: +SKIP
    >>> predictor = MemoryPredictor("out/sam2.1_hiera_tiny")      # doctest: +SKIP
    >>> tracker = MemoryTracker()
    >>> oid = tracker.add(point_coords=[[320, 240]], point_labels=[1])
    >>> for frame in frames:                                      # doctest: +SKIP
    ...     predictor.set_image(frame)
    ...     objects = tracker.step(predictor)
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any, cast

import numpy as np

from samedge.errors import InputError, ProfileLimitError, PromptError
from samedge.graph_names import IOU_PREDICTIONS, LOW_RES_MASKS
from samedge.masks import mask_box
from samedge.memory_model import (
    NO_MEMORY_FEATURES,
    OBJECT_POINTERS,
    OBJECT_SCORE_LOGITS,
    MemorySettings,
)
from samedge.prompts import ObjectPrompt
from samedge.stream._objects import PromptedObjects
from samedge.stream.tracking import TrackedObject, TrackState

__all__ = ["MemoryTracker", "MemoryTrackerConfig", "ObjectMemory"]

log = logging.getLogger(__name__)

# SAM2Base clamps previous logits fed back with correction clicks.
_PREV_LOGIT_CLAMP = 32.0


@dataclass(frozen=True)
class MemoryTrackerConfig:
    """How many objects and memories; ``None`` takes the model card's value.

    Attributes:
        max_objects: Most objects at once; keep it at or under the engines'
            batch profile on TensorRT (``TensorRTConfig.max_objects``).
        max_conditioning_frames: Prompted frames attended per object, at most
            the card's ``max_conditioning_frames`` (the engines' memory profile).
        write_occluded_memory: Write memory on frames where the object is
            absent, as SAM 2 does (with its no-object embedding). False keeps
            the last memories of the visible object instead.
        correction_as_conditioning: A correction click makes its frame a
            conditioning frame (SAM2VideoPredictor's
            ``add_all_frames_to_correct_as_cond``; off there by default).
    """

    max_objects: int | None = None
    max_conditioning_frames: int | None = None
    write_occluded_memory: bool = True
    correction_as_conditioning: bool = False

    def __post_init__(self) -> None:
        for name in ("max_objects", "max_conditioning_frames"):
            value = getattr(self, name)
            if value is not None and (
                isinstance(value, bool) or not isinstance(value, int) or value < 1
            ):
                raise InputError(f"{name}: got {value!r}, expected a positive int or None")
        if self.max_conditioning_frames is not None and self.max_conditioning_frames < 2:
            raise InputError(
                f"max_conditioning_frames: got {self.max_conditioning_frames}, expected >= 2 "
                "(SAM 2 keeps the closest conditioning frame before and after)"
            )


@dataclass(eq=False)
class _Memory:
    """One frame in an object's bank."""

    features: np.ndarray | None  # [T, Cm]; None once too old for a spatial slot
    pointer: np.ndarray  # [C]


@dataclass(frozen=True)
class ObjectMemory:
    """What one object's bank holds (see :meth:`MemoryTracker.memory_report`)."""

    object_id: int
    conditioning_frames: int
    recent_frames: int
    pointers: int
    nbytes: int


@dataclass(eq=False)
class _Object:
    object_id: int
    prompt: ObjectPrompt | None
    generation: int = 0
    cond: dict[int, _Memory] = field(default_factory=dict)
    recent: dict[int, _Memory] = field(default_factory=dict)
    state: TrackState = TrackState.TRACKING
    mask: np.ndarray | None = None
    box: tuple[float, float, float, float] | None = None
    score: float = 0.0
    area: int = 0
    age: int = 0
    low_res: np.ndarray | None = field(default=None, repr=False)  # [L, L], this frame's
    object_score: float | None = None  # presence logit of this frame
    reason: str | None = None

    def snapshot(self) -> TrackedObject:
        return TrackedObject(
            object_id=self.object_id,
            state=self.state,
            mask=self.mask if self.state is TrackState.TRACKING else None,
            box=self.box,
            score=self.score,
            area=self.area,
            age=self.age,
            lost_reason=self.reason,
            low_res_logits=self.low_res,
            object_score=self.object_score,
        )

    def nbytes(self) -> int:
        total = 0
        for entry in (*self.cond.values(), *self.recent.values()):
            total += entry.pointer.nbytes
            if entry.features is not None:
                total += entry.features.nbytes
        return total


@dataclass
class _Job:
    """One object's work on this frame."""

    obj: _Object
    generation: int
    prompt: ObjectPrompt | None  # the prompt decoded this frame (None: tracking only)
    init: bool  # a conditioning frame decoded without memory
    embeddings: np.ndarray | None = None  # [C, h, w] decoder input
    low_res: np.ndarray | None = None  # chosen [L, L] logits
    iou: float = 0.0
    pointer: np.ndarray | None = None
    object_score: float = 0.0


class MemoryTracker(PromptedObjects[_Object]):
    """Objects with stable ids, followed with SAM 2's memory, batched per frame.

    Thread-safe as :class:`~samedge.stream.tracking.Tracker`: prompts may arrive
    from other threads while a pipeline thread calls :meth:`step`; a decode
    that raced a new prompt or a removal of its object is discarded. A prompt
    for a known object (``add(..., object_id=...)``) corrects it: decoded with
    its memory on the next frame, which becomes a conditioning frame; a second
    prompt for it before that frame is refused (:class:`PromptError`).

    Args:
        config: Limits; ``None`` for the defaults.

    Example:
        >>> tracker = MemoryTracker(MemoryTrackerConfig(max_objects=8))
        >>> a = tracker.add(point_coords=[[100, 80]], point_labels=[1])
        >>> b = tracker.add(box=[200, 50, 300, 160])
        >>> sorted(tracker.objects)
        [1, 2]
    """

    def __init__(self, config: MemoryTrackerConfig | None = None) -> None:
        self.config = config if config is not None else MemoryTrackerConfig()
        super().__init__(self.config.max_objects)
        self._frame = 0
        self.last_timings: dict[str, float] = {}

    # -- prompts (add, add_prompt, remove, clear, objects: PromptedObjects) --------------

    def _new_entry(self, object_id: int, prompt: ObjectPrompt) -> _Object:
        return _Object(object_id=object_id, prompt=prompt)

    def _prompt_known(self, entry: _Object, prompt: ObjectPrompt) -> None:
        # A corrective prompt: decoded on the next frame with the object's memory, and
        # that frame becomes one of its conditioning frames (as SAM 2 does).
        if entry.prompt is not None:
            raise PromptError(
                f"object {entry.object_id}: already has a prompt waiting for the next "
                "frame; put all its points (and box) in one prompt, or prompt it "
                "again after the next step"
            )
        entry.prompt = prompt
        entry.generation += 1

    def _limit_error(self, count: int, limit: int) -> PromptError:
        return ProfileLimitError(
            f"tracker: already {count} objects, the limit is {limit} "
            "(MemoryTrackerConfig.max_objects; keep it within the engines' batch "
            "profile, TensorRTConfig.max_objects); remove one first"
        )

    @property
    def frame_index(self) -> int:
        """Frames stepped so far (the index the next frame gets)."""
        return self._frame

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)

    def __contains__(self, object_id: object) -> bool:
        with self._lock:
            return object_id in self._entries

    def memory_report(self) -> list[ObjectMemory]:
        """What each object's bank holds now, and its bytes (bounded by the card's maxima)."""
        with self._lock:
            return [
                ObjectMemory(
                    oid,
                    len(o.cond),
                    sum(1 for m in o.recent.values() if m.features is not None),
                    len(o.cond) + len(o.recent),
                    o.nbytes(),
                )
                for oid, o in sorted(self._entries.items())
            ]

    # -- per frame -------------------------------------------------------------------

    def step(self, predictor: Any) -> dict[int, TrackedObject]:
        """Track every object on the predictor's current frame (its ``set_image`` was called).

        Sets :attr:`last_timings`: ``memory_attention``, ``decoder``,
        ``memory_encoder`` and ``postprocess`` seconds.

        Raises:
            PromptError: a new prompt does not fit the frame (it is dropped).
            ProfileLimitError: ``max_conditioning_frames`` above the model's maximum,
                or more objects than the engines take per call (TensorRT's batch profile).
        """
        settings: MemorySettings = predictor.settings
        max_cond = self._max_conditioning(settings)
        t = self._frame
        timings = dict.fromkeys(("memory_attention", "decoder", "memory_encoder"), 0.0)
        start = time.perf_counter()
        jobs = self._plan(predictor.original_size)
        limit = getattr(predictor, "max_objects_per_call", None)
        if jobs and isinstance(limit, int) and len(jobs) > limit:
            raise ProfileLimitError(
                f"tracker: {len(jobs)} objects on this frame, but the engines take at most "
                f"{limit} per call (TensorRTConfig.max_objects); build them for more, or keep "
                "MemoryTrackerConfig.max_objects at or under it"
            )
        self._frame += 1
        if jobs:
            self._condition(predictor, jobs, settings, max_cond, t, timings)
            self._decode(predictor, jobs, settings, timings, track=True)
            corrections = [j for j in jobs if j.prompt is not None and not j.init]
            self._decode(predictor, corrections, settings, timings, track=False)
            self._remember(predictor, jobs, settings, max_cond, t, timings)
            self._publish(predictor, jobs)
        busy = sum(timings.values())
        timings["postprocess"] = time.perf_counter() - start - busy
        self.last_timings = timings
        return self.objects

    def _max_conditioning(self, settings: MemorySettings) -> int:
        wanted = self.config.max_conditioning_frames
        if wanted is None:
            return settings.max_conditioning_frames
        if wanted > settings.max_conditioning_frames:
            raise ProfileLimitError(
                f"max_conditioning_frames: got {wanted}, but this model was exported for at "
                f"most {settings.max_conditioning_frames} (memory bank of "
                f"{settings.max_memory_frames} frames and {settings.max_pointers} pointers, "
                "the engines' profile); lower MemoryTrackerConfig.max_conditioning_frames"
            )
        return wanted

    def _plan(self, frame_size: tuple[int, int]) -> list[_Job]:
        jobs = []
        with self._lock:
            for oid, obj in sorted(self._entries.items()):
                prompt = obj.prompt
                if prompt is not None:
                    try:
                        prompt.check_inside(frame_size, f"object {oid}")
                    except PromptError:
                        obj.prompt = None
                        if not obj.cond:
                            del self._entries[oid]
                        raise
                if prompt is None and not obj.cond:
                    continue
                init = not obj.cond  # no memory yet: a conditioning frame without memory
                jobs.append(_Job(obj, obj.generation, prompt, init))
        return jobs

    def _condition(
        self,
        predictor: Any,
        jobs: list[_Job],
        settings: MemorySettings,
        max_cond: int,
        t: int,
        timings: dict[str, float],
    ) -> None:
        """Decoder inputs: no-memory features for new objects, memory attention for the rest."""
        no_memory = predictor.features[NO_MEMORY_FEATURES][0]
        groups: dict[tuple[int, int], list[tuple[_Job, tuple[np.ndarray, ...]]]] = {}
        for job in jobs:
            if job.init:
                job.embeddings = no_memory
                continue
            bank = _select(job.obj, t, settings, max_cond)
            groups.setdefault((len(bank[1]), len(bank[3])), []).append((job, bank))
        for members in groups.values():
            stacked = [np.stack([b[i] for _, b in members]) for i in range(4)]
            t0 = time.perf_counter()
            out = predictor.attend(*stacked)
            timings["memory_attention"] += time.perf_counter() - t0
            for (job, _), features in zip(members, out, strict=True):
                job.embeddings = features

    def _decode(
        self,
        predictor: Any,
        jobs: list[_Job],
        settings: MemorySettings,
        timings: dict[str, float],
        *,
        track: bool,
    ) -> None:
        """Decode ``jobs`` grouped by prompt length; corrections feed back this frame's mask."""
        groups: dict[int, list[tuple[_Job, np.ndarray, np.ndarray, bool]]] = {}
        for job in jobs:
            prompt = job.prompt if (job.init or not track) else None
            coords, labels = _tokens(prompt, predictor)
            points = int((labels >= 0).sum())  # a box counts 2, as in SAM 2
            multimask = settings.multimask_output_in_sam and (
                job.init or settings.multimask_output_for_tracking
            )
            multimask = multimask and (
                settings.multimask_min_pt_num <= points <= settings.multimask_max_pt_num
            )
            groups.setdefault(len(labels), []).append((job, coords, labels, multimask))
        side = predictor.mask_size
        for members in groups.values():
            b = len(members)
            masks_in = np.zeros((b, 1, side, side), np.float32)
            has_mask = np.zeros(b, np.float32)
            for i, (job, *_rest) in enumerate(members):
                if not track and job.low_res is not None:
                    # SAM 2 feeds the frame's tracked logits back with a correction click.
                    masks_in[i, 0] = np.clip(job.low_res, -_PREV_LOGIT_CLAMP, _PREV_LOGIT_CLAMP)
                    has_mask[i] = 1.0
                elif job.prompt is not None and job.prompt.mask_input is not None and job.init:
                    masks_in[i] = job.prompt.mask_input
                    has_mask[i] = 1.0
            t0 = time.perf_counter()
            out = predictor.decode(
                np.stack([cast("np.ndarray", m[0].embeddings) for m in members]).astype(
                    np.float32, copy=False
                ),
                np.stack([m[1] for m in members]).astype(np.float32),
                np.stack([m[2] for m in members]).astype(np.float32),
                masks_in,
                has_mask,
            )
            timings["decoder"] += time.perf_counter() - t0
            for i, (job, _, _, multimask) in enumerate(members):
                k = _choose(out[LOW_RES_MASKS][i], out[IOU_PREDICTIONS][i], multimask, settings)
                ptr = 1 + int(np.argmax(out[IOU_PREDICTIONS][i, 1:])) if multimask else 0
                if not (multimask and settings.use_multimask_token_for_obj_ptr):
                    ptr = 0
                job.low_res = np.array(out[LOW_RES_MASKS][i, k], np.float32)
                job.iou = float(out[IOU_PREDICTIONS][i, k])
                job.pointer = np.array(out[OBJECT_POINTERS][i, ptr], np.float32)
                job.object_score = float(out[OBJECT_SCORE_LOGITS][i, 0])

    def _remember(
        self,
        predictor: Any,
        jobs: list[_Job],
        settings: MemorySettings,
        max_cond: int,
        t: int,
        timings: dict[str, float],
    ) -> None:
        """Encode each object's chosen mask into its bank (one batched call)."""
        write = [
            j for j in jobs if self.config.write_occluded_memory or j.object_score > 0 or j.init
        ]
        if not write:
            return
        prompted = np.array(
            [
                1.0 if (j.prompt is not None and settings.binarize_mask_from_pts_for_mem_enc)
                else 0.0
                for j in write
            ],
            np.float32,
        )  # fmt: skip
        t0 = time.perf_counter()
        features = predictor.encode_memory(
            np.stack([cast("np.ndarray", j.low_res)[None] for j in write]),
            prompted,
            np.array([[j.object_score] for j in write], np.float32),
        )
        timings["memory_encoder"] += time.perf_counter() - t0
        keep_recent = max(settings.num_maskmem - 1, settings.max_pointers_in_encoder - 1)
        with self._lock:
            for job, feat in zip(write, features, strict=True):
                obj = job.obj
                if self._entries.get(obj.object_id) is not obj or obj.generation != job.generation:
                    continue
                entry = _Memory(np.array(feat, np.float32), cast("np.ndarray", job.pointer))
                conditioning = job.init or (
                    job.prompt is not None and self.config.correction_as_conditioning
                )
                if conditioning:
                    obj.cond[t] = entry
                    obj.recent.pop(t, None)
                    while len(obj.cond) > max_cond:
                        del obj.cond[min(obj.cond)]
                else:
                    obj.recent[t] = entry
                for old in [f for f in obj.recent if f <= t - keep_recent]:
                    del obj.recent[old]
                for f, mem in obj.recent.items():
                    if f < t - (settings.num_maskmem - 2):
                        mem.features = None  # only its pointer is read from now on

    def _publish(self, predictor: Any, jobs: list[_Job]) -> None:
        with self._lock:
            for job in jobs:
                obj = job.obj
                if self._entries.get(obj.object_id) is not obj or obj.generation != job.generation:
                    continue
                if job.prompt is not None:
                    obj.prompt = None
                    obj.age = 0
                obj.age += 1
                low = cast("np.ndarray", job.low_res)
                low.flags.writeable = False  # handed out in snapshots
                obj.low_res = low
                obj.object_score = job.object_score
                obj.score = job.iou
                mask = predictor.upsample(low) > 0 if job.object_score > 0 else None
                area = int(np.count_nonzero(mask)) if mask is not None else 0
                if mask is None or area == 0:
                    if obj.state is not TrackState.OCCLUDED:
                        log.info("object %d occluded", obj.object_id)
                    obj.state = TrackState.OCCLUDED
                    obj.reason = (
                        f"object score {job.object_score:.2f} <= 0"
                        if job.object_score <= 0
                        else "empty mask"
                    )
                    obj.mask = None
                    continue
                mask.flags.writeable = False
                obj.state = TrackState.TRACKING
                obj.reason = None
                obj.mask = mask
                obj.box = mask_box(mask)
                obj.area = area


def _tokens(prompt: ObjectPrompt | None, predictor: Any) -> tuple[np.ndarray, np.ndarray]:
    """SAM 2's sparse prompt: box corners (2, 3) first, then points, then one padding point."""
    coords: list[np.ndarray] = []
    labels: list[float] = []
    if prompt is not None:
        if prompt.box is not None:
            coords.append(predictor.to_model_coords(prompt.box.reshape(2, 2)))
            labels += [2.0, 3.0]
        if prompt.point_coords is not None and prompt.point_labels is not None:
            coords.append(predictor.to_model_coords(prompt.point_coords))
            labels += [float(v) for v in prompt.point_labels]
    else:
        # A tracked frame has no prompt: SAM 2 feeds one empty point, its encoder pads another.
        coords.append(np.zeros((1, 2)))
        labels.append(-1.0)
    coords.append(np.zeros((1, 2)))
    labels.append(-1.0)
    return np.concatenate(coords).astype(np.float32), np.asarray(labels, np.float32)


def _choose(masks: np.ndarray, iou: np.ndarray, multimask: bool, settings: MemorySettings) -> int:
    """Index of the mask SAM 2 outputs: best multimask, or token 0 unless it is unstable."""
    best = 1 + int(np.argmax(iou[1:]))
    if multimask:
        return best
    if settings.dynamic_multimask_via_stability:
        single = masks[0]
        delta = settings.stability_delta
        union = int(np.count_nonzero(single > -delta))
        stability = np.count_nonzero(single > delta) / union if union else 1.0
        if stability < settings.stability_thresh:
            return best
    return 0


def _select(
    obj: _Object, t: int, settings: MemorySettings, max_cond: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The bank SAM 2 attends at frame ``t``: (memories, their slots, pointers, their offsets)."""
    cond = obj.cond
    if len(cond) > max_cond:
        before = max((f for f in cond if f < t), default=None)
        chosen = [before] if before is not None else []
        rest = sorted((f for f in cond if f not in chosen), key=lambda f: abs(f - t))
        chosen += rest[: max_cond - len(chosen)]
        selected = {f: cond[f] for f in sorted(cond) if f in chosen}
    else:
        selected = dict(cond)
    unselected = {f: m for f, m in cond.items() if f not in selected}
    memories: list[np.ndarray] = []
    slots: list[float] = []
    for mem in selected.values():
        if mem.features is not None:
            memories.append(mem.features)
            slots.append(0.0)
    for slot in range(1, settings.num_maskmem):
        frame = t - (settings.num_maskmem - slot)
        found = obj.recent.get(frame) or unselected.get(frame)
        if found is not None and found.features is not None:
            memories.append(found.features)
            slots.append(float(slot))
    pointers: list[np.ndarray] = []
    offsets: list[float] = []
    for frame, mem in selected.items():
        if not settings.only_obj_ptrs_in_the_past or frame <= t:
            pointers.append(mem.pointer)
            offsets.append(float(t - frame))
    for dt in range(1, settings.max_pointers_in_encoder):
        frame = t - dt
        if frame < 0:
            break
        found = obj.recent.get(frame) or unselected.get(frame)
        if found is not None:
            pointers.append(found.pointer)
            offsets.append(float(dt))
    return (
        np.stack(memories).astype(np.float32, copy=False),
        np.asarray(slots, np.float32),
        np.stack(pointers).astype(np.float32, copy=False),
        np.asarray(offsets, np.float32),
    )
