"""Segment everything: automatic mask generation over a point grid.

:class:`MaskGenerator` has the parameters and semantics of segment_anything's
``SamAutomaticMaskGenerator``: a grid of single foreground points (per crop
layer), three masks per point, filtered on the predicted IoU and the stability
score, masks touching an inner crop's edge dropped, duplicates removed by box
non-maximum suppression (within a crop, then between crops), optional removal
of small holes and islands, and the same mask records (``segmentation``,
``area``, ``bbox`` XYWH, ``predicted_iou``, ``point_coords``,
``stability_score``, ``crop_box`` XYWH), best first.

What differs is how the work is done, not what comes out: the grid goes
through samedge's batched decoder in chunks (:attr:`GeneratorConfig.points_per_batch`,
by default the size measured fastest for the backend, never more than a
TensorRT profile allows), the predicted-IoU filter runs on the decoder's
low-resolution output, and so does an exact bound (a mask whose low-resolution
logits never exceed the threshold plus the stability offset has a stability
score of 0 once upsampled), so only masks that can survive are upsampled to
the frame; kept masks wait for NMS bit-packed. Empty masks are never returned
(SAM can return them, with a NaN stability score, when both thresholds are 0).

SAM 2.1 and EdgeTAM model directories run too (through a
:class:`~samedge.memory_predictor.MemoryPredictor`), with the semantics of
``SAM2AutomaticMaskGenerator``, whose parameters are SAM's.

The two score thresholds default to the model's own
(:attr:`samedge.models.ModelSpec.mask_thresholds`): SAM's 0.88 / 0.95,
``SAM2AutomaticMaskGenerator``'s 0.8 / 0.95 for the SAM 2 family, and measured
ones for samedge-tiny (0.6 / 0.6; 0.6 / 0.8 with memory), whose scores stay below
SAM's on most images.

Example:
    >>> from samedge import MaskGenerator, Predictor
    >>> generator = MaskGenerator(Predictor("samedge_tiny"))          # doctest: +SKIP
    >>> records = generator.generate(image)                            # doctest: +SKIP
    >>> records[0]["bbox"], records[0]["predicted_iou"]                # doctest: +SKIP
    ([12, 40, 118, 96], 0.97)
"""

from __future__ import annotations

import enum
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from itertools import product
from typing import Any

import numpy as np

from samedge._image_prompter import ImagePrompter, as_prompter
from samedge.errors import InputError
from samedge.masks import (
    RegionMode,
    box_xyxy_to_xywh,
    mask_to_coco_rle,
    mask_to_rle,
    masks_to_boxes,
    remove_small_regions,
)
from samedge.postprocess import MASK_THRESHOLD, stability_score
from samedge.preprocess import validate_image

__all__ = [
    "DECODER_MEMORY_BUDGET",
    "DEFAULT_POINTS_PER_BATCH",
    "GeneratorConfig",
    "MaskGenerator",
    "OutputMode",
    "box_nms",
    "build_point_grid",
    "crop_boxes",
]

log = logging.getLogger(__name__)

# Points per decoder call, measured on this repository's 2-core EPYC
# (benchmarks/results/amd-epyc-2c/generator_chunks.md: 16..256 on samedge_tiny,
# 16..64 on MobileSAM). ONNX Runtime: 64 was fastest on MobileSAM and within
# noise of the fastest on samedge_tiny; OpenVINO: 32 on samedge_tiny. TensorRT is
# not measured here: 64, capped by its engine profile (TensorRTConfig.max_objects).
# SAM-size embeddings are further capped by DECODER_MEMORY_BUDGET (to 16).
DEFAULT_POINTS_PER_BATCH: dict[str, int] = {
    "onnxruntime": 64,
    "openvino": 32,
    "tensorrt": 64,
}
_FALLBACK_POINTS_PER_BATCH = 64

# The decoder's working memory per point, in image embeddings' worth: ONNX
# Runtime peaked at 55 MiB per point for MobileSAM's 4 MiB embedding (OpenVINO
# 31 MiB), measured with benchmarks/bench_generator.py's memory probe. The
# default chunk keeps a call within DECODER_MEMORY_BUDGET; 256 MobileSAM points
# in one call were killed for memory on a 24 GiB machine.
DECODER_MEMORY_BUDGET = 1 << 30
_BYTES_PER_POINT_PER_EMBEDDING_BYTE = 14

# SAM's is_box_near_crop_edge tolerance, in pixels.
_EDGE_TOLERANCE = 20.0

# Bilinear upsampling only averages neighbours, so a mask whose low-resolution
# logits all stay at or below a cut has no upsampled pixel above it: with no
# pixel above threshold + offset its stability score is 0, with none above the
# threshold it is empty; either way it is dropped before upsampling. The margin
# covers float rounding in the interpolation (the cut is never crossed by more).
_PEAK_MARGIN = 1e-3


class OutputMode(enum.Enum):
    """How :meth:`MaskGenerator.generate` returns each mask's ``segmentation``."""

    BINARY_MASK = "binary_mask"
    """``[H, W]`` bool array."""
    UNCOMPRESSED_RLE = "uncompressed_rle"
    """``{"size": [H, W], "counts": [int, ...]}`` (segment_anything's form)."""
    COCO_RLE = "coco_rle"
    """``{"size": [H, W], "counts": str}`` (pycocotools' compressed form, JSON-ready)."""


def _check_fraction(name: str, value: object, *, low_open: bool = False) -> None:
    if (
        not isinstance(value, (int, float))
        or isinstance(value, bool)
        or not math.isfinite(value)
        or not (0.0 < value <= 1.0 if low_open else 0.0 <= value <= 1.0)
    ):
        interval = "(0, 1]" if low_open else "[0, 1]"
        raise InputError(f"{name}: got {value!r}, expected a number in {interval}")


def _check_int(name: str, value: object, low: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < low:
        raise InputError(f"{name}: got {value!r}, expected an int >= {low}")


@dataclass(frozen=True)
class GeneratorConfig:
    """Parameters of :class:`MaskGenerator`; names, defaults and meaning are SAM's.

    Attributes:
        points_per_side: Points along each side of the grid (``n**2`` points on
            the whole image); ``None`` when ``point_grids`` gives them.
        points_per_batch: Points per decoder call; ``None`` for the backend's
            measured default (:data:`DEFAULT_POINTS_PER_BATCH`), lowered so one
            call's working memory stays within :data:`DECODER_MEMORY_BUDGET`
            (16 for SAM-size embeddings). Capped by a TensorRT engine's
            profile. Changes speed and memory, not the masks.
        pred_iou_thresh: Keep masks whose predicted IoU is above this, in
            [0, 1]; 0 keeps all. ``None``: the model's
            (:attr:`~samedge.models.ModelSpec.mask_thresholds`, SAM's 0.88 for
            SAM-family models and for a model samedge does not know).
        stability_score_thresh: Keep masks whose stability score is at least
            this, in [0, 1]; 0 keeps all. ``None``: the model's (SAM's 0.95).
        stability_score_offset: How far above and below the mask threshold the
            stability score thresholds the logits (> 0).
        box_nms_thresh: Box IoU above which the lower-scored of two masks of
            one crop is dropped, in (0, 1].
        crop_n_layers: Crop layers beside the whole image; layer i has
            ``(2**i)**2`` crops.
        crop_nms_thresh: Box IoU for removing duplicates between crops, in (0, 1].
        crop_overlap_ratio: Overlap of the first layer's crops, as a fraction
            of the image's short side, in [0, 1).
        crop_n_points_downscale_factor: Layer i samples
            ``points_per_side / factor**i`` points per side (>= 1).
        point_grids: Explicit grids, one ``(N, 2)`` array of (x, y) in [0, 1]
            per layer (``crop_n_layers + 1`` of them); requires
            ``points_per_side=None``.
        min_mask_region_area: Fill holes and drop islands smaller than this
            many pixels, then remove new duplicates; 0 skips it.
        output_mode: Form of each record's ``segmentation``.

    Example:
        >>> GeneratorConfig(points_per_side=16, pred_iou_thresh=0.8).points_per_side
        16
    """

    points_per_side: int | None = 32
    points_per_batch: int | None = None
    pred_iou_thresh: float | None = None
    stability_score_thresh: float | None = None
    stability_score_offset: float = 1.0
    box_nms_thresh: float = 0.7
    crop_n_layers: int = 0
    crop_nms_thresh: float = 0.7
    crop_overlap_ratio: float = 512 / 1500
    crop_n_points_downscale_factor: int = 1
    point_grids: tuple[np.ndarray, ...] | None = field(default=None, compare=False)
    min_mask_region_area: int = 0
    output_mode: OutputMode = OutputMode.BINARY_MASK

    def __post_init__(self) -> None:
        if (self.points_per_side is None) == (self.point_grids is None):
            raise InputError(
                f"points_per_side={self.points_per_side!r}, point_grids="
                f"{'None' if self.point_grids is None else '[...]'}: expected exactly one; "
                "pass points_per_side=None with point_grids"
            )
        if self.points_per_side is not None:
            _check_int("points_per_side", self.points_per_side, 1)
        if self.points_per_batch is not None:
            _check_int("points_per_batch", self.points_per_batch, 1)
        for name in ("pred_iou_thresh", "stability_score_thresh"):
            if getattr(self, name) is not None:
                _check_fraction(name, getattr(self, name))
        offset = self.stability_score_offset
        if (
            not isinstance(offset, (int, float))
            or isinstance(offset, bool)
            or not math.isfinite(offset)
            or offset <= 0
        ):
            raise InputError(
                f"stability_score_offset: got {offset!r}, expected a positive logit offset"
            )
        _check_fraction("box_nms_thresh", self.box_nms_thresh, low_open=True)
        _check_fraction("crop_nms_thresh", self.crop_nms_thresh, low_open=True)
        _check_int("crop_n_layers", self.crop_n_layers, 0)
        ratio = self.crop_overlap_ratio
        if not isinstance(ratio, (int, float)) or isinstance(ratio, bool) or not 0.0 <= ratio < 1.0:
            raise InputError(f"crop_overlap_ratio: got {ratio!r}, expected a number in [0, 1)")
        _check_int("crop_n_points_downscale_factor", self.crop_n_points_downscale_factor, 1)
        _check_int("min_mask_region_area", self.min_mask_region_area, 0)
        if not isinstance(self.output_mode, OutputMode):
            names = ", ".join(f"OutputMode.{m.name}" for m in OutputMode)
            raise InputError(f"output_mode: got {self.output_mode!r}, expected one of {names}")
        if self.point_grids is not None:
            self._check_grids(self.point_grids)
        elif self.points_per_side is not None:
            lowest = self.points_per_side // self.crop_n_points_downscale_factor**self.crop_n_layers
            if lowest < 1:
                raise InputError(
                    f"points_per_side={self.points_per_side} with crop_n_layers="
                    f"{self.crop_n_layers} and crop_n_points_downscale_factor="
                    f"{self.crop_n_points_downscale_factor} leaves no point in the last "
                    "layer; lower the factor or the layers"
                )

    def _check_grids(self, grids: object) -> None:
        if not isinstance(grids, (tuple, list)):
            raise InputError(
                f"point_grids: got {type(grids).__name__}, expected a tuple of (N, 2) arrays"
            )
        if len(grids) != self.crop_n_layers + 1:
            raise InputError(
                f"point_grids: got {len(grids)} grid(s), expected crop_n_layers + 1 = "
                f"{self.crop_n_layers + 1} (one per crop layer)"
            )
        for i, grid in enumerate(grids):
            arr = np.asarray(grid)
            if (
                arr.ndim != 2
                or arr.shape[1] != 2
                or len(arr) == 0
                or not np.issubdtype(arr.dtype, np.number)
            ):
                raise InputError(
                    f"point_grids[{i}]: got shape {arr.shape}, expected (N, 2) (x, y) with N >= 1"
                )
            if not np.isfinite(arr).all() or arr.min() < 0 or arr.max() > 1:
                raise InputError(
                    f"point_grids[{i}]: expected coordinates in [0, 1] (fractions of the "
                    "crop's width and height)"
                )

    def for_model(self, model: str | None) -> GeneratorConfig:
        """This config with unset score thresholds filled in with ``model``'s.

        ``model`` is a registry name (a model card's ``model``); an unknown name
        or ``None`` gets SAM's thresholds.

        Example:
            >>> GeneratorConfig().for_model("samedge_tiny").pred_iou_thresh
            0.6
            >>> GeneratorConfig(pred_iou_thresh=0.7).for_model("mobile_sam").pred_iou_thresh
            0.7
        """
        from samedge.models import MODELS, SAM_MASK_THRESHOLDS

        spec = MODELS.get(model) if model else None
        iou, stability = spec.mask_thresholds if spec else SAM_MASK_THRESHOLDS
        return replace(
            self,
            pred_iou_thresh=iou if self.pred_iou_thresh is None else self.pred_iou_thresh,
            stability_score_thresh=(
                stability if self.stability_score_thresh is None else self.stability_score_thresh
            ),
        )

    def grids(self) -> list[np.ndarray]:
        """The ``(N, 2)`` point grid of each crop layer, in [0, 1]."""
        if self.point_grids is not None:
            return [np.asarray(g, np.float64) for g in self.point_grids]
        side = self.points_per_side or 0  # __post_init__ saw one of the two
        factor = self.crop_n_points_downscale_factor
        return [build_point_grid(int(side / factor**i)) for i in range(self.crop_n_layers + 1)]


def build_point_grid(n_per_side: int) -> np.ndarray:
    """``n×n`` points evenly spaced in [0, 1]² (cell centres), row by row, ``[n*n, 2]`` (x, y).

    Example:
        >>> build_point_grid(2).tolist()
        [[0.25, 0.25], [0.75, 0.25], [0.25, 0.75], [0.75, 0.75]]
    """
    _check_int("n_per_side", n_per_side, 1)
    offset = 1 / (2 * n_per_side)
    side = np.linspace(offset, 1 - offset, n_per_side)
    xs, ys = np.meshgrid(side, side)
    return np.stack([xs, ys], axis=-1).reshape(-1, 2)


def crop_boxes(
    image_size: tuple[int, int], n_layers: int, overlap_ratio: float
) -> tuple[list[list[int]], list[int]]:
    """XYXY crop boxes of every layer (the whole image first) and each box's layer.

    Layer i >= 1 tiles the image with ``2**i`` overlapping crops per side,
    overlapping by ``overlap_ratio`` of the short side (scaled by ``2 / 2**i``).

    Example:
        >>> boxes, layers = crop_boxes((100, 200), 1, 0.2)
        >>> boxes[:2], layers
        ([[0, 0, 200, 100], [0, 0, 110, 60]], [0, 1, 1, 1, 1])
    """
    H, W = image_size
    boxes, layers = [[0, 0, W, H]], [0]
    short = min(H, W)
    for layer in range(1, n_layers + 1):
        per_side = 2**layer
        overlap = int(overlap_ratio * short * (2 / per_side))
        crop_w = math.ceil((overlap * (per_side - 1) + W) / per_side)
        crop_h = math.ceil((overlap * (per_side - 1) + H) / per_side)
        xs = [int((crop_w - overlap) * i) for i in range(per_side)]
        ys = [int((crop_h - overlap) * i) for i in range(per_side)]
        for x0, y0 in product(xs, ys):
            boxes.append([x0, y0, min(x0 + crop_w, W), min(y0 + crop_h, H)])
            layers.append(layer)
    return boxes, layers


def box_nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float) -> np.ndarray:
    """Greedy non-maximum suppression of XYXY boxes (torchvision's ``nms``, in numpy).

    A box is dropped when its IoU with a higher-scored kept box is above
    ``iou_threshold``. Areas are ``(x1 - x0) * (y1 - y0)``, as torchvision
    computes them; two zero-area boxes never suppress each other. Equal
    scores keep their input order.

    Returns:
        Indices of the kept boxes, highest score first.

    Example:
        >>> import numpy as np
        >>> b = np.array([[0, 0, 10, 10], [1, 1, 10, 10], [20, 20, 30, 30]])
        >>> box_nms(b, np.array([0.9, 0.8, 0.7]), 0.5).tolist()
        [0, 2]
    """
    b = np.asarray(boxes, np.float64).reshape(-1, 4)
    s = np.asarray(scores, np.float64).reshape(-1)
    if len(b) != len(s):
        raise InputError(f"box_nms: got {len(b)} boxes and {len(s)} scores, expected equal")
    order = np.argsort(-s, kind="stable")
    areas = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    keep: list[int] = []
    while order.size:
        i = int(order[0])
        keep.append(i)
        rest = order[1:]
        w = np.clip(np.minimum(b[i, 2], b[rest, 2]) - np.maximum(b[i, 0], b[rest, 0]), 0, None)
        h = np.clip(np.minimum(b[i, 3], b[rest, 3]) - np.maximum(b[i, 1], b[rest, 1]), 0, None)
        inter = w * h
        union = areas[i] + areas[rest] - inter
        iou = np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)
        order = rest[iou <= iou_threshold]
    return np.array(keep, dtype=np.int64)


@dataclass
class _Found:
    """Masks kept so far, bit-packed, with what SAM's MaskData holds."""

    packed: list[np.ndarray] = field(default_factory=list)  # [k, h, ceil(w/8)] uint8 each
    boxes: list[np.ndarray] = field(default_factory=list)  # [k, 4] XYXY in the image
    iou: list[np.ndarray] = field(default_factory=list)
    stability: list[np.ndarray] = field(default_factory=list)
    points: list[np.ndarray] = field(default_factory=list)  # [k, 2] (x, y) in the image
    crops: list[np.ndarray] = field(default_factory=list)  # [k, 4] XYXY crop boxes

    def add(self, other: _Found) -> None:
        for name in ("packed", "boxes", "iou", "stability", "points", "crops"):
            getattr(self, name).extend(getattr(other, name))

    def arrays(self) -> dict[str, np.ndarray]:
        def cat(parts: list[np.ndarray], shape: tuple[int, ...]) -> np.ndarray:
            return np.concatenate(parts) if parts else np.zeros((0, *shape))

        return {
            "boxes": cat(self.boxes, (4,)),
            "iou": cat(self.iou, ()),
            "stability": cat(self.stability, ()),
            "points": cat(self.points, (2,)),
            "crops": cat(self.crops, (4,)),
        }


class MaskGenerator:
    """Masks for everything in an image, as ``SamAutomaticMaskGenerator``, over a Predictor.

    Args:
        predictor: A :class:`~samedge.Predictor` (SAM, MobileSAM,
            EfficientViT-SAM, SAM-HQ, samedge_tiny) or a
            :class:`~samedge.memory_predictor.MemoryPredictor` (SAM 2.1,
            EdgeTAM: decoded without memory, as ``SAM2AutomaticMaskGenerator``
            does; see :mod:`samedge._image_prompter`); its current image is
            replaced by :meth:`generate`.
        config: The generation parameters (the defaults when ``None``); score
            thresholds left ``None`` become the model's
            (:meth:`GeneratorConfig.for_model`), as :attr:`config` shows.

    Raises:
        InputError: ``config`` is not a GeneratorConfig, or ``predictor`` is
            neither kind of predictor.

    Example:
        >>> from samedge import GeneratorConfig, MaskGenerator, Predictor
        >>> generator = MaskGenerator(Predictor("samedge_tiny"),
        ...                           GeneratorConfig(points_per_side=16))   # doctest: +SKIP
        >>> [r["area"] for r in generator.generate(image)][:3]            # doctest: +SKIP
        [5210, 3877, 1204]
    """

    def __init__(self, predictor: Any, config: GeneratorConfig | None = None) -> None:
        self.predictor = predictor
        config = config if config is not None else GeneratorConfig()
        if not isinstance(config, GeneratorConfig):
            raise InputError(f"config: got {type(config).__name__}, expected a GeneratorConfig")
        self._prompter: ImagePrompter = as_prompter(predictor)
        self.config = config.for_model(getattr(self._prompter.card, "model", None))
        # for_model left neither unset.
        self._iou_thresh = float(self.config.pred_iou_thresh or 0.0)
        self._stability_thresh = float(self.config.stability_score_thresh or 0.0)
        self._grids = self.config.grids()

    @property
    def points_per_batch(self) -> int:
        """Points per decoder call: the config's, or the backend's measured default.

        Never more than the engine's profile allows (a denser grid is chunked).
        """
        chosen = self.config.points_per_batch
        if chosen is None:
            name = self._prompter.backend_name
            chosen = min(
                DEFAULT_POINTS_PER_BATCH.get(name, _FALLBACK_POINTS_PER_BATCH),
                self._points_within_memory(),
            )
        limit = self._prompter.max_objects_per_call
        return min(chosen, limit) if limit else chosen

    def _points_within_memory(self) -> int:
        """The largest power of two of points whose decoder call fits the memory budget."""
        shape = getattr(self._prompter.card, "embedding_shape", None)
        if not shape:
            return _FALLBACK_POINTS_PER_BATCH
        per_point = _BYTES_PER_POINT_PER_EMBEDDING_BYTE * 4 * math.prod(shape)
        fits = max(1, DECODER_MEMORY_BUDGET // per_point)
        return 1 << (fits.bit_length() - 1)

    def generate(self, image: np.ndarray, image_format: str = "RGB") -> list[dict[str, Any]]:
        """Generate masks for the whole image.

        Args:
            image: ``H×W×3`` uint8 frame (see :meth:`~samedge.Predictor.set_image`).
            image_format: ``"RGB"`` or ``"BGR"``.

        Returns:
            One record per mask, best first (SAM's order): ``segmentation``
            (per :attr:`GeneratorConfig.output_mode`), ``area`` (pixels),
            ``bbox`` (XYWH, ``w = x1 - x0`` of the inclusive box), ``predicted_iou``,
            ``point_coords`` (``[[x, y]]``, the grid point), ``stability_score``
            and ``crop_box`` (XYWH).

        Raises:
            ImageError: not an image (see :func:`samedge.preprocess.validate_image`).
        """
        frame = validate_image(image, image_format)
        H, W = frame.shape[:2]
        cfg = self.config
        boxes_list, layers = crop_boxes((H, W), cfg.crop_n_layers, cfg.crop_overlap_ratio)
        found = _Found()
        for box, layer in zip(boxes_list, layers, strict=True):
            found.add(self._process_crop(frame, box, self._grids[layer]))
        data = found.arrays()
        order = np.arange(len(data["boxes"]))
        if len(boxes_list) > 1 and len(order):
            # Between crops, prefer masks from smaller crops.
            crops = data["crops"]
            area = (crops[:, 2] - crops[:, 0]) * (crops[:, 3] - crops[:, 1])
            order = box_nms(data["boxes"], 1.0 / area, cfg.crop_nms_thresh)
        masks = _unpack(found, order, (H, W))
        data = {k: v[order] for k, v in data.items()}
        if cfg.min_mask_region_area > 0 and len(masks):
            masks, data = self._remove_small_regions(masks, data)
        return self._records(masks, data)

    # -- one crop -----------------------------------------------------------------------

    def _process_crop(self, frame: np.ndarray, box: list[int], grid: np.ndarray) -> _Found:
        x0, y0, x1, y1 = box
        crop = np.ascontiguousarray(frame[y0:y1, x0:x1])
        h, w = crop.shape[:2]
        self._prompter.set_image(crop)
        points = grid * np.array([w, h], np.float64)
        found = _Found()
        step = self.points_per_batch
        for start in range(0, len(points), step):
            found.add(self._process_batch(points[start : start + step], box, frame.shape[:2]))
        self._prompter.reset_image()
        data = found.arrays()
        packed = (
            np.concatenate(found.packed)
            if found.packed
            else np.zeros((0, h, (w + 7) // 8), np.uint8)
        )
        keep = box_nms(data["boxes"], data["iou"], self.config.box_nms_thresh)
        log.debug("crop %s: %d masks, %d after box NMS", box, len(data["boxes"]), len(keep))
        offset = np.array([x0, y0, x0, y0], np.float64)
        return _Found(
            packed=[packed[keep]],
            boxes=[data["boxes"][keep] + offset],
            iou=[data["iou"][keep]],
            stability=[data["stability"][keep]],
            points=[data["points"][keep] + offset[:2]],
            crops=[np.tile(np.array(box, np.float64), (len(keep), 1))],
        )

    def _process_batch(
        self, points: np.ndarray, box: list[int], image_size: tuple[int, int]
    ) -> _Found:
        cfg = self.config
        scores, low_res = self._prompter.decode_points(points)
        k = scores.shape[1]
        iou = scores.reshape(-1)
        low = low_res.reshape(-1, *low_res.shape[-2:])
        pts = np.repeat(points, k, axis=0)
        keep = iou > self._iou_thresh if self._iou_thresh > 0 else np.ones(len(iou), bool)
        if keep.any():
            # Exact: see _PEAK_MARGIN (only masks SAM would drop after upsampling).
            cut = MASK_THRESHOLD + (cfg.stability_score_offset if self._stability_thresh > 0 else 0)
            keep[keep] = low[keep].max(axis=(1, 2)) > cut - _PEAK_MARGIN
        iou, low, pts = iou[keep], low[keep], pts[keep]
        if not len(iou):
            return _Found()
        return self._score(low, iou, pts, box, image_size)

    def _score(
        self,
        low: np.ndarray,
        iou: np.ndarray,
        pts: np.ndarray,
        box: list[int],
        image_size: tuple[int, int],
    ) -> _Found:
        """Upsample, score and filter masks one at a time.

        One frame-sized float map at a time stays in cache, where a batch of
        them would stream through memory several times (stability, threshold,
        box); the numbers are the same.
        """
        cfg = self.config
        kept: list[int] = []
        packed: list[np.ndarray] = []
        boxes: list[np.ndarray] = []
        stability: list[float] = []
        for i in range(len(low)):
            logits = self._prompter.upscale(low[i : i + 1])[0]
            score = float(stability_score(logits, MASK_THRESHOLD, cfg.stability_score_offset))
            if self._stability_thresh > 0 and not score >= self._stability_thresh:
                continue
            mask = logits > MASK_THRESHOLD
            if not mask.any():  # an empty mask carries no segment
                continue
            mask_box = masks_to_boxes(mask)
            if _near_crop_edge(mask_box[None].astype(np.float64), box, image_size)[0]:
                continue
            kept.append(i)
            packed.append(np.packbits(mask, axis=-1))
            boxes.append(mask_box)
            stability.append(score)
        if not kept:
            return _Found()
        return _Found(
            packed=[np.stack(packed)],
            boxes=[np.stack(boxes).astype(np.float64)],
            iou=[iou[kept].astype(np.float64)],
            stability=[np.array(stability, np.float64)],
            points=[pts[kept]],
        )

    # -- after all crops ----------------------------------------------------------------

    def _remove_small_regions(
        self, masks: np.ndarray, data: dict[str, np.ndarray]
    ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """SAM's postprocess_small_regions: fill holes, drop islands, NMS again."""
        cfg = self.config
        area = cfg.min_mask_region_area
        unchanged = np.ones(len(masks), np.float64)
        for i, mask in enumerate(masks):
            mask, holes = remove_small_regions(mask, area, RegionMode.HOLES)
            mask, islands = remove_small_regions(mask, area, RegionMode.ISLANDS)
            if holes or islands:
                masks[i] = mask
                unchanged[i] = 0.0
        boxes = masks_to_boxes(masks).astype(np.float64)
        # Unchanged masks first: NMS prefers those that needed no repair.
        keep = box_nms(boxes, unchanged, max(cfg.box_nms_thresh, cfg.crop_nms_thresh))
        changed = unchanged == 0.0
        data["boxes"] = np.where(changed[:, None], boxes, data["boxes"])
        return masks[keep], {k: v[keep] for k, v in data.items()}

    def _records(self, masks: np.ndarray, data: dict[str, np.ndarray]) -> list[dict[str, Any]]:
        mode = self.config.output_mode
        if mode is OutputMode.COCO_RLE:
            segmentations: Sequence[Any] = mask_to_coco_rle(masks) if len(masks) else []
        elif mode is OutputMode.UNCOMPRESSED_RLE:
            segmentations = mask_to_rle(masks) if len(masks) else []
        else:
            segmentations = list(masks)
        areas = np.count_nonzero(masks, axis=(1, 2))
        bboxes = box_xyxy_to_xywh(data["boxes"].astype(np.int64))
        crops = box_xyxy_to_xywh(data["crops"].astype(np.int64))
        return [
            {
                "segmentation": segmentations[i],
                "area": int(areas[i]),
                "bbox": bboxes[i].tolist(),
                "predicted_iou": float(data["iou"][i]),
                "point_coords": [data["points"][i].tolist()],
                "stability_score": float(data["stability"][i]),
                "crop_box": crops[i].tolist(),
            }
            for i in range(len(masks))
        ]


def _near_crop_edge(boxes: np.ndarray, crop: list[int], image_size: tuple[int, int]) -> np.ndarray:
    """Masks whose box touches an inner edge of the crop (SAM's is_box_near_crop_edge)."""
    H, W = image_size
    x0, y0 = crop[0], crop[1]
    uncropped = boxes + np.array([x0, y0, x0, y0], np.float64)
    near_crop = np.abs(uncropped - np.array(crop, np.float64)) <= _EDGE_TOLERANCE
    near_image = np.abs(uncropped - np.array([0, 0, W, H], np.float64)) <= _EDGE_TOLERANCE
    return np.any(near_crop & ~near_image, axis=1)


def _unpack(found: _Found, order: np.ndarray, image_size: tuple[int, int]) -> np.ndarray:
    """The kept masks, in ``order``, as ``[k, H, W]`` bool masks of the whole image."""
    H, W = image_size
    out = np.zeros((len(order), H, W), bool)
    # Each crop's masks are one packed block; map global indices to (block, row).
    sizes = [len(p) for p in found.packed]
    starts = np.cumsum([0, *sizes])
    crops = np.concatenate(found.crops) if found.crops else np.zeros((0, 4))
    for j, i in enumerate(order):
        block = int(np.searchsorted(starts, i, side="right") - 1)
        packed = found.packed[block][i - starts[block]]
        x0, y0, x1, y1 = (int(v) for v in crops[i])
        out[j, y0:y1, x0:x1] = np.unpackbits(packed, axis=-1, count=x1 - x0).view(bool)
    return out
