"""Accuracy of a promptable model: against ground truth, and against its FP32 pipeline (no torch).

Ground truth comes from one of two datasets, scored by one implementation of
the prompting protocols (:func:`evaluate_predictor`):

* :func:`evaluate`: held-out procedural scenes from
  :func:`samedge.scenes.make_scene`, with a seed that training never uses,
  over procedural backgrounds and, when scikit-image is installed, the held-out
  photos :data:`samedge.scenes.HELDOUT_PHOTOS` (samedge-tiny's accuracy);
  object sizes in visible pixels: small < 500, medium < 4000, large.
* :func:`evaluate_coco`: any COCO-format folder (images + instances JSON; RLE
  checked and decoded, polygons rasterized by pycocotools; see
  :mod:`samedge._coco`), for real models; object sizes by the annotation's
  ``area`` as COCO splits them: small < 32², medium < 96², large.

Prompts per object (the protocols NanoSAM, EfficientViT-SAM and EdgeSAM report):

* ``box``: the ground-truth box. Procedural scenes: the mask's inclusive pixel
  extremes; COCO: the annotation's ``bbox`` ``[x, y, w, h]`` as
  ``[x, y, x + w, y + h]``, as those three do.
* ``click``: one positive click at the pixel of the mask farthest from its
  boundary (maximum of the distance transform, the frame edge counting as
  boundary): EdgeSAM's ``mask-center`` point and EfficientViT-SAM's first
  click (RITM's clicker). Not the box centre, which misses non-convex objects
  (a ring, a person's arms); of SAM's three multimask outputs the one with the
  highest predicted IoU is scored.
* ``k clicks``: corrective clicks after the first, RITM's deterministic rule as
  EfficientViT-SAM runs it: the distance transforms of the false-negative and
  false-positive regions (pixels already clicked excluded); the next click goes
  to the maximum of the larger one, positive in a miss, negative in a false
  alarm; an object already segmented perfectly gets no more clicks.

:class:`Protocol` says which mask is scored after box and corrective prompts:
``SAMEDGE`` (default) follows SAM's recommended use: the box's single-mask
output, and corrective clicks with the previous low-resolution logits as
``mask_input`` and the single-mask output; ``EFFICIENTVIT_SAM`` repeats
EfficientViT-SAM's ``eval_efficientvit_sam_model.py``: every prompt takes the
best of three by predicted IoU and clicks get no ``mask_input`` (NanoSAM's box
numbers are the same but for choosing among all four outputs). EdgeSAM scores
the box's single-mask output like ``SAMEDGE``; its corrective clicks are random
samples in the error region, which no deterministic protocol reproduces.

IoU is computed at the image's resolution per object and averaged (mIoU),
overall and by object size. :func:`evaluate_fidelity` (from
:mod:`samedge._fidelity`) measures an FP16/INT8 build against its FP32 source
with :mod:`samedge.calibration.report`'s metrics.

Example:
    >>> from samedge.evaluate import EvalConfig, evaluate
    >>> report = evaluate("samedge_tiny", config=EvalConfig(scenes=20))  # doctest: +SKIP
    >>> print(report.summary())                                           # doctest: +SKIP
"""

from __future__ import annotations

import enum
import logging
import math
import os
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from samedge._fidelity import FidelityReport, evaluate_fidelity
from samedge.errors import InputError, SamedgeError
from samedge.masks import Ties, deepest_point, mask_iou
from samedge.scenes import Scene, make_scene, photo_backgrounds

__all__ = [
    "COCO_SIZE_BINS",
    "EVAL_SEED",
    "SIZE_BINS",
    "CocoConfig",
    "EvalConfig",
    "EvalReport",
    "FidelityReport",
    "Protocol",
    "Sample",
    "evaluate",
    "evaluate_coco",
    "evaluate_fidelity",
    "evaluate_predictor",
    "heldout_scenes",
    "save_eval",
]

log = logging.getLogger(__name__)

# Training draws its scenes from seeds 0.. and validation from 777000; this
# one is kept for evaluation.
EVAL_SEED = 2026
SizeBins = tuple[tuple[str, float, float], ...]
SIZE_BINS: SizeBins = (
    ("small", 0, 500),
    ("medium", 500, 4000),
    ("large", 4000, math.inf),
)
#: COCO's object sizes (``area`` in pixels), as COCOeval and the SAM-family papers split them.
COCO_SIZE_BINS: SizeBins = (
    ("small", 0, 32**2),
    ("medium", 32**2, 96**2),
    ("large", 96**2, math.inf),
)
# How the summary names the reasons in EvalReport.skipped.
_SKIP_LABELS = {
    "crowd": "crowd",
    "category": "other categories",
    "min_area": "below the minimum area",
    "max_images": "past the image limit",
    "empty_mask": "empty masks",
}
# Objects per decoder call: TensorRT's default optimisation profile holds 16,
# and it bounds the frame-size masks held at once on large images.
_BATCH = 16


class Protocol(enum.Enum):
    """Which of SAM's outputs is scored after a box and after corrective clicks.

    The click placement is the same in both (see the module docstring); the
    first click always scores the best of three by predicted IoU.
    """

    SAMEDGE = "samedge"
    EFFICIENTVIT_SAM = "efficientvit-sam"

    @property
    def box_multimask(self) -> bool:
        """Score the best of three by predicted IoU for a box (else the single-mask output)."""
        return self is Protocol.EFFICIENTVIT_SAM

    @property
    def corrective_multimask(self) -> bool:
        """Score the best of three after corrective clicks (else the single-mask output)."""
        return self is Protocol.EFFICIENTVIT_SAM

    @property
    def mask_input(self) -> bool:
        """Feed the previous low-resolution logits to corrective clicks."""
        return self is Protocol.SAMEDGE


def _check_protocol(protocol: object) -> None:
    if not isinstance(protocol, Protocol):
        raise InputError(
            f"protocol: got {protocol!r}, expected a Protocol "
            f"({', '.join(p.value for p in Protocol)})"
        )


def _check_clicks(clicks: object) -> None:
    if isinstance(clicks, bool) or not isinstance(clicks, int) or clicks < 1:
        raise InputError(f"clicks: got {clicks!r}, expected an int >= 1")


@dataclass(frozen=True)
class EvalConfig:
    """How to evaluate on procedural scenes.

    Attributes:
        scenes: Number of held-out scenes.
        seed: Seed of the scenes; ``None`` means :data:`EVAL_SEED`.
        size: ``(height, width)`` of the scenes.
        clicks: Total clicks of the corrective-click protocol (>= 1).
        photos: Use the held-out photo backgrounds (needs scikit-image);
            ``None`` means "when scikit-image is installed".
        protocol: Which outputs are scored (see :class:`Protocol`).
    """

    scenes: int = 200
    seed: int | None = None
    size: tuple[int, int] = (256, 256)
    clicks: int = 3
    photos: bool | None = None
    protocol: Protocol = Protocol.SAMEDGE

    def __post_init__(self) -> None:
        if self.scenes < 1:
            raise InputError(f"scenes: got {self.scenes}, expected >= 1")
        _check_clicks(self.clicks)
        if len(self.size) != 2 or min(self.size) < 16:
            raise InputError(f"size: got {self.size!r}, expected (height, width) >= 16")
        _check_protocol(self.protocol)


@dataclass(frozen=True)
class CocoConfig:
    """How to evaluate on a COCO-format set.

    Attributes:
        max_images: Evaluate the first this many images (in the JSON's order)
            that have an annotation left after the filters; ``None``: all.
        categories: Category names or ids to keep; empty keeps all.
        include_crowd: Keep ``iscrowd`` annotations (one mask over a group of
            objects; NanoSAM and EfficientViT-SAM keep them, EdgeSAM leaves them out).
        min_area: Leave out annotations whose ``area`` is below this, in pixels.
        clicks: Total clicks of the corrective-click protocol (>= 1).
        protocol: Which outputs are scored (see :class:`Protocol`).
    """

    max_images: int | None = None
    categories: tuple[str | int, ...] = ()
    include_crowd: bool = False
    min_area: float = 0.0
    clicks: int = 3
    protocol: Protocol = Protocol.SAMEDGE

    def __post_init__(self) -> None:
        m = self.max_images
        if m is not None and (isinstance(m, bool) or not isinstance(m, int) or m < 1):
            raise InputError(f"max_images: got {m!r}, expected None or an int >= 1")
        if isinstance(self.categories, (str, int)) or not all(
            isinstance(c, (str, int)) and not isinstance(c, bool) for c in self.categories
        ):
            raise InputError(
                f"categories: got {self.categories!r}, expected a tuple of names or ids"
            )
        if not isinstance(self.min_area, (int, float)) or not self.min_area >= 0:
            raise InputError(f"min_area: got {self.min_area!r}, expected a number >= 0")
        if not isinstance(self.include_crowd, bool):
            raise InputError(f"include_crowd: got {self.include_crowd!r}, expected a bool")
        _check_clicks(self.clicks)
        _check_protocol(self.protocol)


@dataclass(frozen=True)
class Sample:
    """One image with its ground-truth objects, as the protocol consumes it.

    Attributes:
        image: ``H×W×3`` uint8 RGB.
        masks: ``K×H×W`` bool, none empty.
        boxes: ``K×4`` box prompts ``x0, y0, x1, y1`` in pixels.
        areas: ``K`` object sizes the report bins by.
        name: For logs.
    """

    image: np.ndarray
    masks: np.ndarray
    boxes: np.ndarray
    areas: np.ndarray
    name: str = ""

    def __post_init__(self) -> None:
        k = len(self.masks)
        if self.masks.ndim != 3 or self.masks.dtype != np.bool_:
            raise InputError(
                f"Sample.masks: got {self.masks.dtype} {self.masks.shape}, expected bool (K, H, W)"
            )
        if self.masks.shape[1:] != self.image.shape[:2]:
            raise InputError(
                f"Sample.masks: got {self.masks.shape[1:]}, expected the image's "
                f"{self.image.shape[:2]}"
            )
        if self.boxes.shape != (k, 4) or self.areas.shape != (k,):
            raise InputError(
                f"Sample: got boxes {self.boxes.shape} and areas {self.areas.shape}, "
                f"expected ({k}, 4) and ({k},)"
            )
        if k and not self.masks.any(axis=(1, 2)).all():
            raise InputError("Sample.masks: an empty mask; leave such objects out")

    @classmethod
    def from_scene(cls, scene: Scene) -> Sample:
        """A procedural scene: tight inclusive boxes, visible pixel counts as sizes."""
        boxes = []
        for m in scene.masks:
            ys, xs = np.nonzero(m)
            boxes.append([xs.min(), ys.min(), xs.max(), ys.max()])
        return cls(
            image=scene.image,
            masks=scene.masks,
            boxes=np.array(boxes, np.float64).reshape(-1, 4),
            areas=scene.masks.sum(axis=(1, 2)).astype(np.float64),
        )


@dataclass(frozen=True)
class EvalReport:
    """mIoU per prompt type, overall and by object size.

    Attributes:
        miou: ``{prompt: mIoU}`` with prompts ``"click"``, ``"2 clicks"``, ...,
            ``"box"`` (``"click"`` is the first of the clicks).
        by_size: ``{prompt: {bin: mIoU}}`` (``nan`` for an empty bin).
        counts: Objects per size bin.
        objects: Objects evaluated.
        scenes: Images evaluated (procedural scenes or dataset images).
        seed: Seed of procedural scenes (``None`` for a dataset).
        photos: Whether held-out photo backgrounds were used.
        model: Model name or directory.
        backend: Backend that ran the graphs.
        seconds: Wall time of the evaluation.
        dataset: What was evaluated on (empty: held-out procedural scenes).
        size_bins: ``(name, low, high)`` object sizes of ``by_size``.
        protocol: :class:`Protocol` value.
        skipped: Annotations left out, by reason (datasets only).
    """

    miou: dict[str, float]
    by_size: dict[str, dict[str, float]]
    counts: dict[str, int]
    objects: int
    scenes: int
    seed: int | None
    photos: bool
    model: str = ""
    backend: str = ""
    seconds: float = 0.0
    dataset: str = ""
    size_bins: SizeBins = SIZE_BINS
    protocol: str = Protocol.SAMEDGE.value
    skipped: Mapping[str, int] = field(default_factory=dict)

    def summary(self) -> str:
        """A table: one row per prompt type, columns all / small / medium / large."""
        bins = [name for name, _, _ in self.size_bins]
        head = f"{'prompt':<10} {'all':>6} " + " ".join(
            f"{b + f' ({self.counts[b]})':>14}" for b in bins
        )
        if self.dataset:
            what = f"{self.dataset}: {self.scenes} images"
        else:
            what = (
                f"{self.scenes} held-out scenes (seed {self.seed}, "
                f"{'with' if self.photos else 'without'} held-out photos)"
            )
        lines = [
            f"{self.model} on {self.backend}: {what}, {self.objects} objects, "
            f"protocol {self.protocol}, {self.seconds:.1f} s",
        ]
        if self.skipped:
            why = ", ".join(f"{n} ({_SKIP_LABELS.get(k, k)})" for k, n in self.skipped.items())
            lines.append(f"annotations left out: {why}")
        edges = ", ".join(f"{n} < {hi:g} px" for n, _, hi in self.size_bins if math.isfinite(hi))
        lines += [f"sizes: {edges}", head]
        for prompt, value in self.miou.items():
            cells = " ".join(f"{self.by_size[prompt][b]:>14.3f}" for b in bins)
            lines.append(f"{prompt:<10} {value:>6.3f} {cells}")
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly form (``nan`` becomes ``None``)."""

        def clean(v: float) -> float | None:
            return None if math.isnan(v) else round(v, 4)

        return {
            "model": self.model,
            "backend": self.backend,
            "dataset": self.dataset or "procedural",
            "protocol": self.protocol,
            "scenes": self.scenes,
            "seed": self.seed,
            "photos": self.photos,
            "objects": self.objects,
            "skipped": dict(self.skipped),
            "size_bins": {
                n: [lo, hi if math.isfinite(hi) else None] for n, lo, hi in self.size_bins
            },
            "counts": self.counts,
            "miou": {k: clean(v) for k, v in self.miou.items()},
            "by_size": {k: {b: clean(v) for b, v in d.items()} for k, d in self.by_size.items()},
            "seconds": round(self.seconds, 2),
        }


def save_eval(data: Mapping[str, Any], path: str | os.PathLike[str], *, command: str) -> Path:
    """Write an evaluation's numbers to ``path`` as JSON, atomically, with their provenance.

    ``data`` is a report's ``to_dict()`` (what ``samedge eval --json``
    prints); the file holds it plus ``command`` (what reproduces it),
    ``samedge`` (the version) and ``timestamp`` (UTC), so a number quoted
    from the file comes with the command that made it. README's samedge-tiny
    table is generated from such a file (:mod:`samedge.bench.readme`).

    Returns:
        The path written.

    Raises:
        InputError: ``path`` is a directory, or ``data`` already has one of
            the provenance keys.

    Example:
        >>> report = evaluate("samedge_tiny", config=EvalConfig(scenes=3))    # doctest: +SKIP
        >>> command = "samedge eval samedge_tiny --scenes 3 --output eval.json"
        >>> save_eval(report.to_dict(), "eval.json", command=command)        # doctest: +SKIP
    """
    import datetime as dt
    import json

    from samedge._io import atomic_write_text
    from samedge._version import __version__

    path = Path(path)
    if path.is_dir():
        raise InputError(f"--output: {path} is a directory, expected a JSON file path")
    clash = sorted({"command", "samedge", "timestamp"} & set(data))
    if clash:
        raise InputError(f"save_eval: data already has {clash}; pass a report's to_dict()")
    record = {
        **data,
        "command": command,
        "samedge": __version__,
        "timestamp": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
    }
    atomic_write_text(path, json.dumps(record, indent=2) + "\n")
    return path


def heldout_scenes(config: EvalConfig | None = None) -> tuple[list[Scene], bool]:
    """The evaluation scenes of ``config`` and whether photo backgrounds were used."""
    config = config or EvalConfig()
    seed = EVAL_SEED if config.seed is None else config.seed
    photos: list[np.ndarray] | None = None
    if config.photos is not False:
        try:
            photos = photo_backgrounds("heldout", max_side=384)
        except SamedgeError:
            if config.photos:
                raise
            log.info("scikit-image not installed: held-out scenes use procedural backgrounds only")
    rng = np.random.default_rng([seed, 3])
    scenes = [make_scene(rng, config.size, backgrounds=photos) for _ in range(config.scenes)]
    return scenes, photos is not None


# ----------------------------------------------------------------------------- protocol


def _farthest(
    region: np.ndarray, exclude: Sequence[tuple[int, int]] = ()
) -> tuple[float, int, int]:
    """Largest distance from ``region``'s boundary (the frame edge counts) and its ``(x, y)``.

    Pixels in ``exclude`` (already clicked) are skipped, as RITM's clicker
    does; ties go to the first pixel in row-major order (RITM's argmax).
    ``(0.0, -1, -1)`` for an empty region.
    """
    if not region.any():
        return 0.0, -1, -1
    p = deepest_point(region, exclude=exclude, ties=Ties.FIRST)
    return p.depth, p.x, p.y


def _interior_point(mask: np.ndarray) -> tuple[int, int]:
    """(x, y) of the pixel farthest from the mask's border."""
    _, x, y = _farthest(mask)
    return x, y


def _next_click(
    gt: np.ndarray, pred: np.ndarray | None, clicked: Sequence[tuple[int, int]]
) -> tuple[int, int, int] | None:
    """RITM's next click ``(x, y, label)``, or ``None`` when nothing is left to correct."""
    if pred is None:  # the first click: the whole object is a miss
        d_fn, x, y = _farthest(gt, clicked)
        return (x, y, 1) if d_fn > 0 else None
    d_fn, xn, yn = _farthest(gt & ~pred, clicked)
    d_fp, xp, yp = _farthest(pred & ~gt, clicked)
    if d_fn == 0 and d_fp == 0:
        return None
    return (xn, yn, 1) if d_fn > d_fp else (xp, yp, 0)


@dataclass
class _Track:
    """One object's state through the corrective-click protocol."""

    gt: np.ndarray
    points: list[tuple[int, int]] = field(default_factory=list)
    labels: list[int] = field(default_factory=list)
    pred: np.ndarray | None = None
    logits: np.ndarray | None = None


def _predict(
    predictor: Any, prompts: Sequence[Any], multimask: bool
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Scored mask and its low-res logits ``[1, L, L]`` per prompt, in chunks of :data:`_BATCH`."""
    masks, logits = [], []
    for start in range(0, len(prompts), _BATCH):
        m, scores, low = predictor.predict_batch(
            prompts[start : start + _BATCH], multimask_output=multimask
        )
        for i in range(len(m)):
            j = int(np.argmax(scores[i])) if multimask else 0
            masks.append(m[i, j])
            logits.append(low[i, j][None])
    return masks, logits


def evaluate_predictor(
    predictor: Any,
    scenes: Iterable[Scene | Sample],
    clicks: int = 3,
    *,
    protocol: Protocol = Protocol.SAMEDGE,
) -> tuple[dict[str, list[float]], list[float]]:
    """Score a SamPredictor-like object on scenes or dataset samples.

    Args:
        predictor: Anything with ``set_image`` and ``predict_batch`` like
            :class:`samedge.Predictor`.
        scenes: Procedural scenes or :class:`Sample` objects.
        clicks: Clicks of the corrective-click protocol.
        protocol: Which outputs are scored.

    Returns:
        ``({prompt: [IoU per object]}, [size per object])``.
    """
    from samedge.prompts import ObjectPrompt

    _check_clicks(clicks)
    _check_protocol(protocol)
    names = ["click", *[f"{k} clicks" for k in range(2, clicks + 1)], "box"]
    ious: dict[str, list[float]] = {n: [] for n in names}
    areas: list[float] = []
    for item in scenes:
        sample = Sample.from_scene(item) if isinstance(item, Scene) else item
        if len(sample.masks) == 0:
            continue
        predictor.set_image(sample.image)
        areas += [float(a) for a in sample.areas]
        masks, _ = _predict(
            predictor, [ObjectPrompt(box=b) for b in sample.boxes], protocol.box_multimask
        )
        ious["box"] += [mask_iou(p, g) for p, g in zip(masks, sample.masks, strict=True)]

        tracks = [_Track(gt=m) for m in sample.masks]
        for k in range(clicks):
            active = []
            for t in tracks:
                click = _next_click(t.gt, t.pred, t.points)
                if click is None:
                    if t.pred is None:  # unreachable: Sample refuses empty masks
                        raise SamedgeError(f"{sample.name}: an empty ground-truth mask")
                    continue  # already perfect: nothing to correct
                t.points.append(click[:2])
                t.labels.append(click[2])
                active.append(t)
            if active:
                feed_mask = k > 0 and protocol.mask_input
                prompts = [
                    ObjectPrompt(
                        point_coords=np.array(t.points, float),
                        point_labels=np.array(t.labels, float),
                        mask_input=t.logits if feed_mask else None,
                    )
                    for t in active
                ]
                multimask = k == 0 or protocol.corrective_multimask
                masks, logits = _predict(predictor, prompts, multimask)
                for t, m, low in zip(active, masks, logits, strict=True):
                    t.pred, t.logits = m, low
            ious[names[k]] += [mask_iou(t.pred, t.gt) for t in tracks]  # type: ignore[arg-type]
    return ious, areas


def _summarise(
    ious: dict[str, list[float]], areas: list[float], bins: SizeBins = SIZE_BINS
) -> tuple[dict[str, float], dict[str, dict[str, float]], dict[str, int]]:
    area = np.array(areas)
    miou = {k: float(np.mean(v)) if v else math.nan for k, v in ious.items()}
    by_size: dict[str, dict[str, float]] = {}
    counts = {}
    for name, lo, hi in bins:
        sel = (area >= lo) & (area < hi)
        counts[name] = int(sel.sum())
        for k, v in ious.items():
            arr = np.array(v)
            by_size.setdefault(k, {})[name] = float(arr[sel].mean()) if sel.any() else math.nan
    return miou, by_size, counts


def evaluate(
    model: str | os.PathLike[str] = "samedge_tiny",
    *,
    backend: str = "auto",
    config: EvalConfig | None = None,
) -> EvalReport:
    """Evaluate a model directory (or built-in model) on held-out procedural scenes.

    Args:
        model: Model directory or built-in name (see :class:`samedge.Predictor`).
        backend: ``"auto"``, ``"onnxruntime"``, ``"openvino"`` or ``"tensorrt"``.
        config: Scenes and protocol; ``None`` means :class:`EvalConfig` defaults.

    Returns:
        The report; ``report.summary()`` is what ``samedge eval`` prints.

    Example:
        >>> report = evaluate("samedge_tiny", config=EvalConfig(scenes=50))  # doctest: +SKIP
        >>> report.miou["box"] > 0.8                                          # doctest: +SKIP
        True
    """
    from samedge.predictor import Predictor

    config = config or EvalConfig()
    t0 = time.perf_counter()
    scenes, photos = heldout_scenes(config)
    with Predictor(model, backend=backend) as predictor:
        ious, areas = evaluate_predictor(predictor, scenes, config.clicks, protocol=config.protocol)
        backend_name = predictor.backend_name
    miou, by_size, counts = _summarise(ious, areas)
    return EvalReport(
        miou=miou,
        by_size=by_size,
        counts=counts,
        objects=len(areas),
        scenes=len(scenes),
        seed=EVAL_SEED if config.seed is None else config.seed,
        photos=photos,
        model=str(model),
        backend=backend_name,
        seconds=time.perf_counter() - t0,
        protocol=config.protocol.value,
    )


def evaluate_coco(
    model: str | os.PathLike[str],
    images: str | os.PathLike[str],
    annotations: str | os.PathLike[str],
    *,
    backend: str = "auto",
    config: CocoConfig | None = None,
) -> EvalReport:
    """Evaluate a model on a COCO-format set: mIoU overall and by COCO object size.

    Args:
        model: Model directory or built-in name (see :class:`samedge.Predictor`).
        images: Folder the JSON's ``file_name`` entries are relative to
            (COCO: ``val2017/``).
        annotations: Instances JSON (COCO: ``annotations/instances_val2017.json``).
        backend: ``"auto"``, ``"onnxruntime"``, ``"openvino"`` or ``"tensorrt"``.
        config: Filters and protocol; ``None`` means :class:`CocoConfig` defaults.

    Returns:
        The report, with :data:`COCO_SIZE_BINS`.

    Raises:
        BackendUnavailableError: polygon annotations and no pycocotools (``samedge[eval]``).
        InputError: missing/invalid JSON, missing images (how many, which),
            nothing left after the filters, undecodable masks or a size mismatch.
        ImageError: an image OpenCV cannot decode.

    Example:
        >>> report = evaluate_coco("out/mobile_sam", "coco/val2017",
        ...     "coco/annotations/instances_val2017.json",
        ...     config=CocoConfig(max_images=500))                        # doctest: +SKIP
        >>> report.miou["box"], report.by_size["box"]["small"]           # doctest: +SKIP
    """
    from samedge import _coco
    from samedge.predictor import Predictor

    config = config or CocoConfig()
    t0 = time.perf_counter()
    dataset = _coco.load_coco(
        images,
        annotations,
        max_images=config.max_images,
        categories=config.categories,
        include_crowd=config.include_crowd,
        min_area=config.min_area,
    )
    skipped = dict(dataset.skipped)
    done = 0

    def samples() -> Iterable[Sample]:
        nonlocal done
        for sample in dataset.samples(skipped):
            yield sample
            done += 1
            if done % 50 == 0:
                rate = done / (time.perf_counter() - t0)
                log.info("evaluated %d/%d images (%.1f/s)", done, len(dataset.images), rate)

    with Predictor(model, backend=backend) as predictor:
        ious, areas = evaluate_predictor(
            predictor, samples(), config.clicks, protocol=config.protocol
        )
        backend_name = predictor.backend_name
    miou, by_size, counts = _summarise(ious, areas, COCO_SIZE_BINS)
    if config.categories:
        names = ", ".join(sorted(dataset.categories.values()))
        description = f"{dataset.description} [{names}]"
    else:
        description = dataset.description
    return EvalReport(
        miou=miou,
        by_size=by_size,
        counts=counts,
        objects=len(areas),
        scenes=done,
        seed=None,
        photos=False,
        model=str(model),
        backend=backend_name,
        seconds=time.perf_counter() - t0,
        dataset=description,
        size_bins=COCO_SIZE_BINS,
        protocol=config.protocol.value,
        skipped=skipped,
    )
