"""Mask geometry: IoU, boxes, deepest point, fragments and holes, run-length encoding.

The one home of these operations; everything in samedge (evaluation, export
parity, calibration reports, tracking, the mask generator, training) imports
them from here, so they agree with each other.

Conventions:

* A mask is a boolean ``[H, W]`` array (``[..., H, W]`` where a function says
  so). 0/1 integer masks are accepted; float arrays are refused, because
  ``bool(-3.0)`` is ``True``: threshold logits first (``logits > 0``).
* **IoU of two empty masks is 1.0.** IoU measures how well two masks agree, and
  two empty masks agree exactly: an INT8 build that reproduces the FP32 build's
  empty mask, or a prediction of nothing where the ground truth is empty, is
  right, not wrong. 0.0 would punish agreement and makes "IoU ≥ t" checks
  fail on identical inputs. An empty mask against a non-empty one is 0.0.
  Callers for which an *absent* mask means something else (the tracker
  compares a lost object as 0.0) decide that before calling.
* Boxes are XYXY with inclusive pixel indices, as segment_anything's
  ``batched_mask_to_box``: a single pixel at ``(x, y)`` has the box
  ``(x, y, x, y)``. :func:`box_xyxy_to_xywh` gives SAM's ``XYWH``
  (``w = x1 - x0``).
* Distances inside a mask are exact Euclidean distances to the nearest pixel
  outside it, with the frame edge counting as outside (an object cut by the
  frame is not deepest at the edge).
* RLE is COCO's: column-major runs starting with a run of zeros.
  "Uncompressed" counts are a list of ints (segment_anything's
  ``mask_to_rle_pytorch``), "compressed" counts are COCO's ASCII string
  (pycocotools' ``encode``); :func:`rle_to_mask` and :func:`rle_area` read both.

Example:
    >>> import numpy as np
    >>> a = np.zeros((4, 6), bool); a[1:3, 1:4] = True
    >>> b = np.zeros((4, 6), bool); b[1:3, 2:5] = True
    >>> round(mask_iou(a, b), 3), mask_box(a)
    (0.5, (1.0, 1.0, 3.0, 2.0))
    >>> mask_iou(np.zeros((4, 6), bool), np.zeros((4, 6), bool))
    1.0
    >>> rle = mask_to_coco_rle(a)[0]
    >>> bool((rle_to_mask(rle) == a).all()), rle_area(rle)
    (True, 6)
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from typing import Any, NamedTuple

import cv2
import numpy as np

from samedge.errors import InputError

__all__ = [
    "Box",
    "DeepPoint",
    "RegionMode",
    "Ties",
    "border_distance",
    "box_xyxy_to_xywh",
    "decode_counts",
    "deep_point",
    "deepest_point",
    "drop_fragments",
    "encode_counts",
    "mask_box",
    "mask_iou",
    "mask_ious",
    "mask_to_coco_rle",
    "mask_to_rle",
    "masks_to_boxes",
    "pairwise_mask_iou",
    "remove_small_regions",
    "rle_area",
    "rle_to_mask",
    "runs_to_mask",
]

Box = tuple[float, float, float, float]
"""XYXY box, inclusive pixel indices."""


def _as_masks(masks: Any, name: str, min_ndim: int = 2) -> np.ndarray:
    arr = np.asarray(masks)
    if arr.dtype.kind == "f" or arr.dtype.kind == "c":
        raise InputError(
            f"{name}: got {arr.dtype} values, expected bool masks (threshold logits "
            "first, e.g. logits > 0)"
        )
    if arr.ndim < min_ndim:
        raise InputError(f"{name}: got shape {arr.shape}, expected [..., H, W] masks")
    return arr.astype(bool, copy=False)


# ----------------------------------------------------------------------------- IoU


def mask_ious(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of ``[..., H, W]`` masks, element by element over the (broadcast) leading dims.

    Two empty masks have IoU 1.0 (see the module's conventions).

    Returns:
        ``[...]`` float64 IoUs.

    Example:
        >>> import numpy as np
        >>> m = np.zeros((2, 3, 3), bool); m[0, 0, 0] = True
        >>> mask_ious(m, np.zeros((3, 3), bool)).tolist()
        [0.0, 1.0]
    """
    pa, pb = _as_masks(a, "a"), _as_masks(b, "b")
    if pa.shape[-2:] != pb.shape[-2:]:
        raise InputError(f"masks: got sizes {pa.shape[-2:]} and {pb.shape[-2:]}, expected equal")
    inter = np.count_nonzero(pa & pb, axis=(-2, -1))
    union = np.count_nonzero(pa | pb, axis=(-2, -1))
    return np.where(union == 0, 1.0, inter / np.maximum(union, 1))


def mask_iou(a: np.ndarray, b: np.ndarray, within: Box | None = None) -> float:
    """IoU of two ``[H, W]`` masks (1.0 when both are empty).

    Args:
        a: First mask.
        b: Second mask.
        within: A box that holds every set pixel of both masks; the IoU is then
            counted on that crop only (faster for small objects in big frames).
            The caller vouches for it: pixels outside it are ignored.

    Example:
        >>> import numpy as np
        >>> a = np.eye(4, dtype=bool)
        >>> mask_iou(a, a, within=(0, 0, 3, 3))
        1.0
    """
    pa, pb = _as_masks(a, "a"), _as_masks(b, "b")
    if pa.ndim != 2 or pa.shape != pb.shape:
        raise InputError(f"masks: got shapes {pa.shape} and {pb.shape}, expected equal [H, W]")
    if within is not None:
        x0, y0, x1, y1 = (int(v) for v in within)
        x0, y0 = max(x0, 0), max(y0, 0)
        pa, pb = pa[y0 : y1 + 1, x0 : x1 + 1], pb[y0 : y1 + 1, x0 : x1 + 1]
    union = np.count_nonzero(pa | pb)
    return float(np.count_nonzero(pa & pb) / union) if union else 1.0


def pairwise_mask_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every mask of ``a`` ``[N, H, W]`` with every mask of ``b`` ``[M, H, W]``.

    Returns:
        ``[N, M]`` float64 IoUs (1.0 for two empty masks).

    Example:
        >>> import numpy as np
        >>> m = np.zeros((2, 2, 2), bool); m[0, 0] = True; m[1, :, 0] = True
        >>> pairwise_mask_iou(m, m).round(3).tolist()
        [[1.0, 0.333], [0.333, 1.0]]
    """
    pa, pb = _as_masks(a, "a", 3), _as_masks(b, "b", 3)
    if pa.ndim != 3 or pb.ndim != 3 or pa.shape[1:] != pb.shape[1:]:
        raise InputError(
            f"masks: got shapes {pa.shape} and {pb.shape}, expected [N, H, W] and [M, H, W]"
        )
    fa = pa.reshape(len(pa), -1)
    fb = pb.reshape(len(pb), -1)
    # float32 counts are exact up to 2**24 pixels; larger frames need float64.
    dtype = np.float32 if fa.shape[1] < 2**24 else np.float64
    inter = (fa.astype(dtype) @ fb.T.astype(dtype)).astype(np.float64)
    area_a = np.count_nonzero(fa, axis=1).astype(np.float64)
    area_b = np.count_nonzero(fb, axis=1).astype(np.float64)
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union == 0, 1.0, inter / np.maximum(union, 1))


# ----------------------------------------------------------------------------- boxes


def _bounds(mask: np.ndarray) -> tuple[int, int, int, int]:
    """``(x, y, w, h)`` of the set pixels of a 2-D bool mask; ``w == 0`` when empty."""
    x, y, w, h = cv2.boundingRect(np.ascontiguousarray(mask).view(np.uint8))
    return x, y, w, h


def mask_box(mask: np.ndarray) -> Box:
    """XYXY box of a non-empty ``[H, W]`` mask, inclusive pixel indices (SAM's convention).

    Raises:
        InputError: the mask is empty (it has no box).

    Example:
        >>> import numpy as np
        >>> m = np.zeros((5, 6), bool); m[4, 5] = True
        >>> mask_box(m)
        (5.0, 4.0, 5.0, 4.0)
    """
    arr = _as_masks(mask, "mask")
    if arr.ndim != 2:
        raise InputError(f"mask: got shape {arr.shape}, expected [H, W]")
    x, y, w, h = _bounds(arr)
    if w == 0 or h == 0:
        raise InputError("mask_box: the mask is empty; expected at least one set pixel")
    return (float(x), float(y), float(x + w - 1), float(y + h - 1))


def masks_to_boxes(masks: np.ndarray) -> np.ndarray:
    """XYXY boxes (inclusive pixel indices) of ``[..., H, W]`` masks; ``[0, 0, 0, 0]`` if empty.

    The batched form of :func:`mask_box`, as segment_anything's
    ``batched_mask_to_box``.

    Returns:
        ``[..., 4]`` int64 boxes.

    Example:
        >>> import numpy as np
        >>> m = np.zeros((5, 6), bool); m[1:3, 2:5] = True
        >>> masks_to_boxes(m).tolist()
        [2, 1, 4, 2]
    """
    arr = _as_masks(masks, "masks")
    H, W = arr.shape[-2:]
    if arr.size == 0:
        return np.zeros((*arr.shape[:-2], 4), dtype=np.int64)
    rows: np.ndarray = np.any(arr, axis=-1)  # [..., H]
    cols: np.ndarray = np.any(arr, axis=-2)  # [..., W]
    top = np.argmax(rows, axis=-1)
    bottom = H - 1 - np.argmax(rows[..., ::-1], axis=-1)
    left = np.argmax(cols, axis=-1)
    right = W - 1 - np.argmax(cols[..., ::-1], axis=-1)
    boxes = np.stack([left, top, right, bottom], axis=-1).astype(np.int64)
    boxes[~rows.any(axis=-1)] = 0
    return boxes


def box_xyxy_to_xywh(boxes: np.ndarray) -> np.ndarray:
    """SAM's ``XYWH`` (``w = x1 - x0``, ``h = y1 - y0``) of XYXY ``[..., 4]`` boxes."""
    arr = np.asarray(boxes)
    if arr.shape[-1:] != (4,):
        raise InputError(f"boxes: got shape {arr.shape}, expected [..., 4] XYXY")
    out = arr.copy()
    out[..., 2:] = arr[..., 2:] - arr[..., :2]
    return out


# ----------------------------------------------------------------------------- deepest point


class Ties(enum.Enum):
    """Which pixel :func:`deepest_point` takes among (near-)equal maxima.

    Attributes:
        FIRST: The first exact maximum in row-major order (RITM's clicker).
        RIDGE_MIDDLE: Of the pixels within one pixel of the maximum (the ridge
            of a bar or an ellipse), the one nearest their mean: a point in
            the middle of an elongated object, not at one end.
    """

    FIRST = "first"
    RIDGE_MIDDLE = "ridge_middle"


class DeepPoint(NamedTuple):
    """A mask pixel and its distance to the nearest pixel outside the mask."""

    x: int
    y: int
    depth: float


def _crop_distance(mask: np.ndarray, box: Box | None) -> tuple[np.ndarray, int, int]:
    """Exact distance transform of the mask's box crop; the frame edge counts as outside."""
    if box is None:
        x, y, w, h = _bounds(mask)
        if w == 0 or h == 0:
            raise InputError("the mask is empty; expected at least one set pixel")
        x0, y0, x1, y1 = x, y, x + w - 1, y + h - 1
    else:
        x0, y0, x1, y1 = (int(v) for v in box)
    # A one-pixel border of background: a pixel on the frame edge is one pixel
    # from the outside. With the exact transform, the crop's distances equal the
    # whole frame's: any background pixel outside the crop is no nearer than
    # the border pixel it projects onto.
    crop = np.pad(mask[y0 : y1 + 1, x0 : x1 + 1], 1).view(np.uint8)
    dist = cv2.distanceTransform(crop, cv2.DIST_L2, cv2.DIST_MASK_PRECISE)[1:-1, 1:-1]
    return dist, x0, y0


def border_distance(mask: np.ndarray) -> np.ndarray:
    """Distance of each pixel of ``mask`` to the nearest pixel outside it (0 outside).

    Exact Euclidean distance; the frame edge counts as outside.

    Returns:
        ``[H, W]`` float32.

    Example:
        >>> import numpy as np
        >>> m = np.zeros((5, 5), bool); m[1:4, 1:4] = True
        >>> border_distance(m)[2].tolist()
        [0.0, 1.0, 2.0, 1.0, 0.0]
    """
    arr = _as_masks(mask, "mask")
    if arr.ndim != 2:
        raise InputError(f"mask: got shape {arr.shape}, expected [H, W]")
    out = np.zeros(arr.shape, np.float32)
    if not arr.any():
        return out
    dist, x0, y0 = _crop_distance(arr, None)
    out[y0 : y0 + dist.shape[0], x0 : x0 + dist.shape[1]] = dist
    return out


def deepest_point(
    mask: np.ndarray,
    box: Box | None = None,
    *,
    exclude: Sequence[tuple[int, int]] = (),
    ties: Ties = Ties.FIRST,
) -> DeepPoint:
    """The pixel of ``mask`` farthest from its border (the frame edge counts as outside).

    Args:
        mask: ``[H, W]`` bool, not empty.
        box: The mask's box (:func:`mask_box`) to skip computing it; the work is
            done on that crop only.
        exclude: ``(x, y)`` pixels that may not be chosen (e.g. already
            clicked); if every pixel is excluded the result has depth 0.
        ties: How to choose among equally deep pixels.

    Raises:
        InputError: the mask is empty.

    Example:
        >>> import numpy as np
        >>> m = np.zeros((5, 9), bool); m[1:4, 1:8] = True
        >>> deepest_point(m), deepest_point(m, ties=Ties.RIDGE_MIDDLE)
        (DeepPoint(x=2, y=2, depth=2.0), DeepPoint(x=4, y=2, depth=2.0))
    """
    arr = _as_masks(mask, "mask")
    if arr.ndim != 2:
        raise InputError(f"mask: got shape {arr.shape}, expected [H, W]")
    dist, x0, y0 = _crop_distance(arr, box)
    # The exact squared distances are integers: rounding them removes float32
    # noise, so equally deep pixels tie exactly.
    sq = np.rint(dist.astype(np.float64) ** 2)
    h, w = sq.shape
    for x, y in exclude:
        if y0 <= y < y0 + h and x0 <= x < x0 + w:
            sq[y - y0, x - x0] = 0.0
    if ties is Ties.FIRST:
        i = int(sq.argmax())
        y, x = divmod(i, w)
    else:
        depth = np.sqrt(sq)
        ys, xs = np.nonzero(depth >= float(depth.max()) - 1.0)
        k = int(np.argmin((ys - ys.mean()) ** 2 + (xs - xs.mean()) ** 2))
        y, x = int(ys[k]), int(xs[k])
    return DeepPoint(x + x0, y + y0, float(np.sqrt(sq[y, x])))


def deep_point(mask: np.ndarray, box: Box | None = None) -> tuple[float, float]:
    """``(x, y)`` of a deepest pixel of a non-empty mask, mid-ridge for elongated shapes.

    :func:`deepest_point` with :attr:`Ties.RIDGE_MIDDLE`, as float pixel indices
    (a prompt point).
    """
    p = deepest_point(mask, box, ties=Ties.RIDGE_MIDDLE)
    return (float(p.x), float(p.y))


# ----------------------------------------------------------------------------- regions


class RegionMode(enum.Enum):
    """What :func:`remove_small_regions` removes."""

    HOLES = "holes"
    """Fill background regions (holes, and background pockets at the edge) below the area."""
    ISLANDS = "islands"
    """Drop foreground regions below the area (the largest stays if all are small)."""


def drop_fragments(mask: np.ndarray, min_fraction: float) -> np.ndarray:
    """``mask`` without the connected parts smaller than ``min_fraction`` of its largest.

    8-connected parts. Returns ``mask`` itself when nothing is dropped (or it is empty).
    """
    x, y, w, h = _bounds(mask)
    if w == 0 or h == 0:
        return mask
    crop = np.ascontiguousarray(mask[y : y + h, x : x + w]).view(np.uint8)
    n, labels, stats, _ = cv2.connectedComponentsWithStats(crop, connectivity=8)
    if n <= 2:  # background + one part
        return mask
    areas = stats[1:, cv2.CC_STAT_AREA]
    keep = np.flatnonzero(areas >= min_fraction * areas.max()) + 1
    if len(keep) == n - 1:
        return mask
    out = np.zeros_like(mask, dtype=bool)
    out[y : y + h, x : x + w] = np.isin(labels, keep)
    return out


def remove_small_regions(
    mask: np.ndarray, min_area: float, mode: RegionMode
) -> tuple[np.ndarray, bool]:
    """Fill small holes or drop small islands, as segment_anything's ``remove_small_regions``.

    8-connected regions of fewer than ``min_area`` pixels are removed.

    Args:
        mask: ``[H, W]`` bool.
        min_area: Regions with fewer pixels are removed.
        mode: Holes (background regions) or islands (foreground regions).

    Returns:
        The new mask and whether it changed (``mask`` itself when not).

    Example:
        >>> import numpy as np
        >>> m = np.ones((5, 5), bool); m[2, 2] = False
        >>> out, changed = remove_small_regions(m, 2, RegionMode.HOLES)
        >>> bool(out.all()), changed
        (True, True)
    """
    arr = _as_masks(mask, "mask")
    if arr.ndim != 2:
        raise InputError(f"mask: got shape {arr.shape}, expected [H, W]")
    holes = mode is RegionMode.HOLES
    work = (~arr if holes else arr).view(np.uint8)
    n, labels, stats, _ = cv2.connectedComponentsWithStats(
        np.ascontiguousarray(work), connectivity=8
    )
    sizes = stats[1:, cv2.CC_STAT_AREA]
    small = np.flatnonzero(sizes < min_area) + 1
    if len(small) == 0:
        return mask, False
    if holes:
        # Keep the mask's own pixels (label 0 of the inverse) and fill the small holes.
        return np.isin(labels, np.concatenate(([0], small))), True
    keep = np.setdiff1d(np.arange(1, n), small)
    if len(keep) == 0:  # every island is small: keep the largest
        keep = np.array([int(np.argmax(sizes)) + 1])
    return np.isin(labels, keep), True


# ----------------------------------------------------------------------------- RLE


def mask_to_rle(masks: np.ndarray) -> list[dict[str, Any]]:
    """Uncompressed COCO run-length encoding of ``[H, W]`` or ``[B, H, W]`` masks.

    Runs count pixels in column-major (Fortran) order and start with a run of
    zeros (possibly of length 0), as pycocotools and segment_anything's
    ``mask_to_rle_pytorch`` expect.

    Returns:
        One ``{"size": [H, W], "counts": [...]}`` per mask.

    Example:
        >>> import numpy as np
        >>> mask_to_rle(np.array([[0, 1], [1, 1]], bool))
        [{'size': [2, 2], 'counts': [1, 3]}]
    """
    arr = _as_masks(masks, "masks")
    if arr.ndim == 2:
        arr = arr[None]
    if arr.ndim != 3:
        raise InputError(f"masks: got shape {arr.shape}, expected [H, W] or [B, H, W]")
    B, H, W = arr.shape
    flat = arr.transpose(0, 2, 1).reshape(B, H * W)
    out = []
    for row in flat:
        if row.size == 0:
            out.append({"size": [H, W], "counts": []})
            continue
        change = np.flatnonzero(row[1:] != row[:-1]) + 1
        bounds = np.concatenate(([0], change, [row.size]))
        counts = np.diff(bounds).tolist()
        if row[0]:
            counts.insert(0, 0)
        out.append({"size": [H, W], "counts": counts})
    return out


def encode_counts(runs: Sequence[int]) -> str:
    """COCO's compressed counts string of run lengths (pycocotools' ``rleToString``).

    Example:
        >>> encode_counts([1, 3])
        '13'
    """
    chars = []
    for i, run in enumerate(runs):
        x = int(run) - (int(runs[i - 2]) if i > 2 else 0)
        more = True
        while more:
            c = x & 0x1F
            x >>= 5  # arithmetic shift: a negative delta stays negative
            more = x != -1 if c & 0x10 else x != 0
            if more:
                c |= 0x20
            chars.append(chr(c + 48))
    return "".join(chars)


def decode_counts(counts: str | bytes) -> list[int]:
    """Run lengths of COCO's compressed counts string (pycocotools' ``rleFrString``).

    Checked where pycocotools is not: a malformed string raises instead of
    overrunning its decoder's buffer.

    Raises:
        InputError: a byte outside the alphabet, a truncated or negative run.
    """
    data = counts.encode("ascii", errors="replace") if isinstance(counts, str) else counts
    runs: list[int] = []
    p = 0
    while p < len(data):
        x, k, more = 0, 0, True
        while more:
            if p >= len(data):
                raise InputError("RLE counts: truncated run length; expected a COCO RLE string")
            c = data[p] - 48
            if not 0 <= c < 64:
                raise InputError(f"RLE counts: byte {data[p]!r} is outside the RLE alphabet")
            x |= (c & 0x1F) << (5 * k)
            more = bool(c & 0x20)
            p += 1
            k += 1
            if not more and c & 0x10:
                x |= -1 << (5 * k)
        if len(runs) > 2:
            x += runs[-2]
        if x < 0:
            raise InputError("RLE counts: negative run length; expected a COCO RLE string")
        runs.append(x)
    return runs


def runs_to_mask(runs: Sequence[int], size: Sequence[int]) -> np.ndarray:
    """``[H, W]`` bool mask of column-major run lengths, background first.

    Raises:
        InputError: negative runs, or runs that do not add up to ``H * W``.
    """
    h, w = (int(v) for v in size)
    counts = np.asarray(runs, dtype=np.int64)
    if counts.ndim != 1 or np.any(counts < 0) or int(counts.sum()) != h * w:
        total = int(counts.sum()) if counts.ndim == 1 else "?"
        raise InputError(
            f"RLE: run lengths add up to {total}, expected H*W = {h * w} non-negative runs"
        )
    values = (np.arange(len(counts)) % 2).astype(bool)
    return np.repeat(values, counts).reshape(w, h).T.copy()


def mask_to_coco_rle(masks: np.ndarray) -> list[dict[str, Any]]:
    """Compressed COCO RLE of ``[H, W]`` or ``[B, H, W]`` masks, JSON-ready.

    The same as ``pycocotools.mask.encode`` with the counts decoded to ``str``
    (segment_anything's ``coco_encode_rle``).

    Example:
        >>> import numpy as np
        >>> mask_to_coco_rle(np.array([[0, 1], [1, 1]], bool))
        [{'size': [2, 2], 'counts': '13'}]
    """
    return [{"size": r["size"], "counts": encode_counts(r["counts"])} for r in mask_to_rle(masks)]


def _rle_parts(rle: Any) -> tuple[list[int], tuple[int, int]]:
    try:
        size = tuple(int(v) for v in rle["size"])
        counts = rle["counts"]
    except (KeyError, TypeError, ValueError) as e:
        raise InputError(
            "rle: expected {'size': [H, W], 'counts': [...]} (uncompressed) or with a "
            f"COCO counts string (compressed), got error {e!r}"
        ) from e
    if len(size) != 2:
        raise InputError(f"rle: size {rle['size']!r}, expected [H, W]")
    if isinstance(counts, (str, bytes)):
        return decode_counts(counts), (size[0], size[1])
    try:
        return [int(c) for c in counts], (size[0], size[1])
    except (TypeError, ValueError) as e:
        raise InputError(f"rle: counts must be ints or a COCO string, got error {e!r}") from e


def rle_to_mask(rle: dict[str, Any]) -> np.ndarray:
    """Decode a COCO RLE (uncompressed or compressed counts) into an ``[H, W]`` bool mask.

    Raises:
        InputError: not an RLE, or its runs do not fit its size.
    """
    runs, size = _rle_parts(rle)
    return runs_to_mask(runs, size)


def rle_area(rle: dict[str, Any]) -> int:
    """Number of foreground pixels of a COCO RLE (uncompressed or compressed counts)."""
    runs, _ = _rle_parts(rle)
    return int(sum(runs[1::2]))
