"""The video side of a memory model's build: clips, both trackers over them, the comparison.

A SAM 2-family build is judged on what its users run: the memory tracker
(:class:`samedge.stream.memory.MemoryTracker` over
:class:`samedge.memory_predictor.MemoryPredictor`) following objects through
a clip, frame by frame, against the same tracker on the FP32 graphs. Memory
attention conditions every frame after the first on the frames before it, so
an error that the memory carries forward grows along the clip; a gate on
single images would not see it. :func:`compare_tracks` measures, per frame
and object, the mask IoU at frame resolution and the correlation of the
low-resolution logits, and :meth:`samedge.calibration.gate.GateConfig.judge_video`
decides.

Clips (:class:`Clip`): frames plus the objects prompted on the first frame.

* :func:`scene_clip`: a procedural :class:`samedge.scenes.MovingScene`,
  prompted from its ground truth (the largest objects on frame 0, alternately
  a click on the deepest point and the box). The gate's clip uses
  :data:`GATE_SEED`, which calibration never uses.
* :func:`fixed_clip`: frames of the user's own video, prompted at fixed
  places (a click, a box, two clicks with a background click, as the export
  parity clip), since a user's video comes without ground truth.

Both trackers run on ONNX Runtime's CPU provider: deterministic, and FP32
there is the exact reference the exporter verified against PyTorch.

:func:`track_clip` can also record memory attention's inputs while the FP32
tracker runs (``record_attention=True``): those are the calibration data of
memory attention, the features and memory banks it meets when tracking.

Example:
    >>> clip = scene_clip(GATE_SEED, frames=30, objects=3)           # doctest: +SKIP
    >>> ref = track_clip("out/sam2.1_hiera_tiny", clip)               # doctest: +SKIP
    >>> build = track_clip("out/candidate", clip)                     # doctest: +SKIP
    >>> compare_tracks(ref, build, clip.source).mean_iou              # doctest: +SKIP
    0.997
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from samedge import graph_names
from samedge import memory_model as mm
from samedge._fidelity import cosine, sqnr_db
from samedge.errors import CalibrationDataError, ExportError
from samedge.masks import deepest_point, mask_box, mask_iou
from samedge.prompts import ObjectPrompt

__all__ = [
    "CALIBRATION_CLIP_FRAMES",
    "GATE_SEED",
    "Clip",
    "ClipTrack",
    "compare_tracks",
    "fixed_clip",
    "scene_clip",
    "scene_frames",
    "split_clips",
    "track_clip",
]

log = logging.getLogger(__name__)

#: Seed of the gate's moving scene: not the parity clip's (3), evaluation's
#: (2026) nor any calibration seed (:func:`calibration_seeds` skips it).
GATE_SEED = 2027
#: Longest calibration clip: long enough that memory attention sees SAM 2's
#: full bank (1 conditioning + 6 recent frames) on more than half its frames.
CALIBRATION_CLIP_FRAMES = 16
#: Scene size of the synthetic clips (the size of ``samedge run``'s synthetic camera).
SCENE_SIZE = (480, 640)
# Objects smaller than this fraction of the frame are not prompted: a click on
# a sliver tests the decoder's guess, not the build.
_MIN_OBJECT_FRACTION = 0.002


@dataclass(frozen=True)
class Clip:
    """Frames and the objects prompted on the first of them.

    Attributes:
        frames: ``H×W×3`` uint8 RGB frames, in order.
        prompts: One prompt per object (ids 1, 2, ...), given on frame 0.
        source: Where the clip came from, in words.
    """

    frames: tuple[np.ndarray, ...]
    prompts: tuple[ObjectPrompt, ...]
    source: str

    def __post_init__(self) -> None:
        if not self.frames:
            raise CalibrationDataError(f"clip {self.source}: has no frames")
        if not self.prompts:
            raise CalibrationDataError(f"clip {self.source}: prompts no object")


def scene_clip(seed: int, frames: int, objects: int, size: tuple[int, int] = SCENE_SIZE) -> Clip:
    """A clip of :class:`~samedge.scenes.MovingScene` ``seed``, prompted from its ground truth.

    The ``objects`` largest objects visible on frame 0 (at least 0.2 % of the
    frame each; the scene has ``objects + 3`` slots, as some start off screen)
    are prompted, alternately by a click on the mask's deepest point and by its box.

    Raises:
        CalibrationDataError: frame 0 shows no object large enough.
    """
    from samedge.scenes import MovingScene

    scene = MovingScene(seed=seed, size=size, num_objects=objects + 3)
    images = tuple(s.image for s in scene.frames(frames))
    first = scene.frame(0)
    areas = first.masks.reshape(len(first.ids), -1).sum(axis=1)
    order = [int(k) for k in np.argsort(-areas, kind="stable")]
    least = _MIN_OBJECT_FRACTION * size[0] * size[1]
    prompts: list[ObjectPrompt] = []
    for k in order[:objects]:
        if areas[k] < least:
            break
        mask = first.masks[k]
        if len(prompts) % 2 == 0:
            p = deepest_point(mask)
            prompts.append(ObjectPrompt(point_coords=[[p.x, p.y]], point_labels=[1]))
        else:
            prompts.append(ObjectPrompt(box=list(mask_box(mask))))
    if not prompts:
        raise CalibrationDataError(
            f"moving scene seed {seed}: frame 0 shows no object of at least "
            f"{_MIN_OBJECT_FRACTION:.1%} of the frame; choose another seed"
        )
    return Clip(images, tuple(prompts), f"moving scene seed {seed}, {frames} frames")


def scene_frames(
    seeds: Sequence[int], objects: int, size: tuple[int, int] = SCENE_SIZE
) -> list[np.ndarray]:
    """Frame 0 of the moving scene of each seed: varied frames for the image encoder.

    Consecutive frames of one scene are nearly the same picture; an encoder
    calibrated on one clip's frames clips the activations of another scene's
    (measured on the reduced SAM 2.1: vision_features cosine 0.849 on the gate
    clip after INT8 calibrated on 4 frames of one scene, 0.997 on frame 0 of 8 scenes).
    """
    from samedge.scenes import MovingScene

    return [MovingScene(seed=s, size=size, num_objects=objects + 3).frame(0).image for s in seeds]


def fixed_clip(frames: Sequence[np.ndarray], objects: int, source: str) -> Clip:
    """A clip of the user's frames, ``objects`` objects prompted at fixed places on frame 0.

    The places of the export parity clip (a click, a box, two clicks with a
    background click), then single clicks on a 4×4 grid.
    """
    if not frames:
        raise CalibrationDataError(f"clip {source}: has no frames")
    h, w = frames[0].shape[:2]
    prompts = [
        ObjectPrompt(point_coords=[[0.3 * w, 0.35 * h]], point_labels=[1]),
        ObjectPrompt(box=[0.45 * w, 0.4 * h, 0.8 * w, 0.85 * h]),
        ObjectPrompt(
            point_coords=[[0.2 * w, 0.75 * h], [0.28 * w, 0.78 * h], [0.6 * w, 0.2 * h]],
            point_labels=[1, 1, 0],
        ),
    ]
    for j in range(4):
        for i in range(4):
            x, y = (i + 0.5) * w / 4, (j + 0.5) * h / 4
            prompts.append(ObjectPrompt(point_coords=[[x, y]], point_labels=[1]))
    return Clip(tuple(frames), tuple(prompts[:objects]), source)


def split_clips(
    frames: Sequence[np.ndarray], longest: int = CALIBRATION_CLIP_FRAMES
) -> list[Sequence[np.ndarray]]:
    """Consecutive frames cut into clips of nearly equal length, none longer than ``longest``."""
    if not frames:
        return []
    count = math.ceil(len(frames) / longest)
    size = math.ceil(len(frames) / count)
    return [frames[i : i + size] for i in range(0, len(frames), size)]


def calibration_seeds(base: int, count: int) -> list[int]:
    """``count`` scene seeds from ``base`` on, never the gate's."""
    seeds: list[int] = []
    seed = base
    while len(seeds) < count:
        if seed != GATE_SEED:
            seeds.append(seed)
        seed += 1
    return seeds


@dataclass
class ClipTrack:
    """What one tracker did on a clip, frame by frame.

    Attributes:
        features: The encoder's ``vision_features`` per frame.
        masks: Per frame, object id -> ``H×W`` bool mask (empty when occluded).
        logits: Per frame, object id -> the chosen ``[L, L]`` low-res logits.
        scores: Per frame, object id -> object score logit (> 0: present).
        attention_feeds: Memory attention's inputs, when recorded.
        decoder_feeds: The decoder's inputs of the first two calls, when recorded.
        seconds: Wall time of the run.
    """

    features: list[np.ndarray] = field(default_factory=list)
    masks: list[dict[int, np.ndarray]] = field(default_factory=list)
    logits: list[dict[int, np.ndarray]] = field(default_factory=list)
    scores: list[dict[int, float]] = field(default_factory=list)
    attention_feeds: list[dict[str, np.ndarray]] = field(default_factory=list)
    decoder_feeds: list[dict[str, np.ndarray]] = field(default_factory=list)
    seconds: float = 0.0


class _Recording:
    """A MemoryPredictor that keeps what the tracker hands memory attention and the
    decoder (calibration data), read through the predictor's public calls."""

    def __init__(self, predictor: Any, record_attention: bool) -> None:
        self._predictor = predictor
        self._record_attention = record_attention
        self.attention: list[dict[str, np.ndarray]] = []
        self.decoder: list[dict[str, np.ndarray]] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self._predictor, name)

    def attend(
        self,
        memory_bank: np.ndarray,
        memory_tpos: np.ndarray,
        pointer_bank: np.ndarray,
        pointer_offsets: np.ndarray,
    ) -> np.ndarray:
        if self._record_attention:
            self.attention.append(
                {
                    mm.VISION_FEATURES: self._predictor.features[mm.VISION_FEATURES],
                    mm.MEMORY_BANK: memory_bank,
                    mm.MEMORY_BANK_TPOS: memory_tpos,
                    mm.POINTER_BANK: pointer_bank,
                    mm.POINTER_BANK_OFFSETS: pointer_offsets,
                }
            )
        return self._predictor.attend(memory_bank, memory_tpos, pointer_bank, pointer_offsets)  # type: ignore[no-any-return]

    def decode(
        self,
        embeddings: np.ndarray,
        point_coords: np.ndarray,
        point_labels: np.ndarray,
        mask_input: np.ndarray,
        has_mask_input: np.ndarray,
    ) -> dict[str, np.ndarray]:
        if self._record_attention and len(self.decoder) < 2:
            f = self._predictor.features
            self.decoder.append(
                {
                    graph_names.IMAGE_EMBEDDINGS: embeddings,
                    mm.HIGH_RES_FEATURES_0: f[mm.HIGH_RES_FEATURES_0],
                    mm.HIGH_RES_FEATURES_1: f[mm.HIGH_RES_FEATURES_1],
                    graph_names.POINT_COORDS: point_coords,
                    graph_names.POINT_LABELS: point_labels,
                    graph_names.MASK_INPUT: mask_input,
                    graph_names.HAS_MASK_INPUT: has_mask_input,
                }
            )
        return self._predictor.decode(  # type: ignore[no-any-return]
            embeddings, point_coords, point_labels, mask_input, has_mask_input
        )


def track_clip(
    model_dir: str | os.PathLike[str],
    clip: Clip,
    *,
    record_attention: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> ClipTrack:
    """Run the memory tracker of ``model_dir`` over ``clip`` on ONNX Runtime's CPU provider.

    Args:
        model_dir: A SAM 2-family model directory (FP32, or a candidate build).
        clip: The frames and the objects prompted on frame 0.
        record_attention: Keep memory attention's inputs (calibration data).
        progress: Called with ``(done, total)`` after each frame.

    Raises:
        ExportError: the tracker returned an object without its logits or
            presence score (a tracker that changed under this measurement).
    """
    import time

    from samedge.memory_predictor import MemoryPredictor
    from samedge.stream.memory import MemoryTracker

    t0 = time.perf_counter()
    track = ClipTrack()
    with MemoryPredictor(model_dir, backend="onnxruntime") as predictor:
        recorder = _Recording(predictor, record_attention)
        tracker = MemoryTracker()
        for prompt in clip.prompts:
            tracker.add_prompt(prompt)
        for t, frame in enumerate(clip.frames):
            predictor.set_image(frame)
            track.features.append(np.array(predictor.features[mm.VISION_FEATURES]))
            objects = tracker.step(recorder)
            missing = [
                oid
                for oid, o in objects.items()
                if o.low_res_logits is None or o.object_score is None
            ]
            if missing:
                raise ExportError(
                    f"frame {t}: the tracker returned objects {missing} without their "
                    "low-res logits or presence score; the video gate needs both"
                )
            h, w = frame.shape[:2]
            track.masks.append(
                {
                    oid: (o.mask if o.mask is not None else np.zeros((h, w), bool))
                    for oid, o in objects.items()
                }
            )
            track.logits.append({oid: np.array(o.low_res_logits) for oid, o in objects.items()})
            track.scores.append({oid: float(o.object_score or 0.0) for oid, o in objects.items()})
            if progress is not None:
                progress(t + 1, len(clip.frames))
        track.attention_feeds = recorder.attention
        track.decoder_feeds = recorder.decoder
    track.seconds = time.perf_counter() - t0
    return track


def logit_correlation(ref: np.ndarray, test: np.ndarray) -> float:
    """Pearson correlation of two logit maps; 1.0 when both are constant and equal, else 0.0
    when one is constant (SAM 2 writes a constant NO_OBJ_SCORE map for an absent object)."""
    a = ref.astype(np.float64).ravel() - float(ref.mean())
    b = test.astype(np.float64).ravel() - float(test.mean())
    na, nb = float(np.linalg.norm(a)), float(np.linalg.norm(b))
    if na == 0.0 or nb == 0.0:
        same = na == nb and np.allclose(ref, test)
        return 1.0 if same else 0.0
    if not math.isfinite(na * nb):
        return 0.0
    return float(np.dot(a, b) / (na * nb))


def compare_tracks(ref: ClipTrack, build: ClipTrack, source: str) -> Any:
    """The build's tracker against the FP32 one on the same clip.

    Returns:
        A :class:`samedge.calibration.report.VideoFidelity`.

    A frame where the build's logits hold NaN or inf counts correlation 0,
    so such a build never passes.

    Raises:
        ExportError: the runs differ in frames or objects.
    """
    from samedge.calibration.report import VideoFidelity

    if len(ref.masks) != len(build.masks):
        raise ExportError(f"tracks of {len(ref.masks)} and {len(build.masks)} frames differ")
    frame_iou, frame_corr, all_iou = [], [], []
    agree = total = 0
    score_diffs: list[float] = []
    for t, (rm, bm) in enumerate(zip(ref.masks, build.masks, strict=True)):
        if set(rm) != set(bm):
            raise ExportError(f"frame {t}: tracked objects {sorted(rm)} and {sorted(bm)} differ")
        ious, corrs = [], []
        for oid in sorted(rm):
            logits = build.logits[t][oid]
            ious.append(mask_iou(rm[oid], bm[oid]))
            # NaN/inf logits (an overflowing graph) correlate 0: the gate fails them.
            finite = bool(np.isfinite(logits).all())
            corrs.append(logit_correlation(ref.logits[t][oid], logits) if finite else 0.0)
            agree += (ref.scores[t][oid] > 0) == (build.scores[t][oid] > 0)
            score_diffs.append(abs(ref.scores[t][oid] - build.scores[t][oid]))
            total += 1
        all_iou += ious
        frame_iou.append(float(np.mean(ious)) if ious else 1.0)
        frame_corr.append(float(np.mean(corrs)) if corrs else 1.0)
    cosines = [cosine(a, b) for a, b in zip(ref.features, build.features, strict=True)]
    sqnrs = [sqnr_db(a, b) for a, b in zip(ref.features, build.features, strict=True)]
    return VideoFidelity(
        source=source,
        frames=len(ref.masks),
        objects=len(ref.masks[0]) if ref.masks else 0,
        frame_iou=tuple(frame_iou),
        frame_logit_corr=tuple(frame_corr),
        mean_iou=float(np.mean(all_iou)) if all_iou else 1.0,
        worst_iou=float(np.min(all_iou)) if all_iou else 1.0,
        presence_agreement=agree / total if total else 1.0,
        cosine_mean=float(np.mean(cosines)),
        cosine_min=float(np.min(cosines)),
        sqnr_mean_db=float(np.mean(sqnrs)),
        sqnr_min_db=float(np.min(sqnrs)),
        score_diff_mean=float(np.mean(score_diffs)) if score_diffs else 0.0,
        score_diff_max=float(np.max(score_diffs)) if score_diffs else 0.0,
    )


def attention_summary(feeds: Sequence[Mapping[str, np.ndarray]]) -> str:
    """Memory attention's calibration inputs in words: calls, objects, bank lengths seen."""
    if not feeds:
        return "no memory attention calls"
    lengths = sorted({int(f[mm.MEMORY_BANK].shape[1]) for f in feeds})
    objects = sum(int(f[mm.MEMORY_BANK].shape[0]) for f in feeds)
    return f"{len(feeds)} calls, {objects} object banks, memory frames {lengths[0]}-{lengths[-1]}"
