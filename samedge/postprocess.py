"""Mask postprocessing: selection, upsampling to the frame, and mask utilities.

Upsampling follows segment_anything's ``Sam.postprocess_masks``: bilinear
(``align_corners=False``) from the decoder's ``L×L`` logits to the encoder's
``S×S`` input frame, crop to the resized (unpadded) ``h×w``, bilinear again to
the original ``H×W``, then threshold at 0 (``Sam.mask_threshold``). OpenCV's
``INTER_LINEAR`` on float32 uses the same half-pixel source coordinates and
edge clamping as ``torch.nn.functional.interpolate(..., align_corners=False)``
(tested against it). Masks go through OpenCV one at a time
(:data:`RESIZE_GROUP`): its vectorised bilinear path is for 1-4 channels, and
a many-channel stack takes a generic loop, 3-20x slower for a batch of masks
(48 masks 256² -> 480×640: 18 ms vs 67 ms of CPU time in 128-channel groups on
amd-epyc-2c; the results differ by < 3e-5, as much as either differs from
``torch``'s interpolate).

``exact=False`` (``Predictor(mask_resample=Resample.FAST)``) resizes the
logits' crop straight to the frame in one bilinear step with the same
pixel-centre geometry, instead of two resizes through the ``S×S`` frame:
2-4x less CPU time on 640×480-1280×720 frames (single-thread CPU time,
benchmarks/results/amd-epyc-2c/prepost.md), and the thresholded masks agree
with the exact path on all but ~0.02% of pixels (at mask edges). It needs
the crop to be a whole number of low-resolution pixels (``h * L / S`` and
``w * L / S`` integers, as for 4:3 and 16:9 frames); other frames take the
exact path.

Example:
    >>> import numpy as np
    >>> logits = np.zeros((1, 4, 16, 16), np.float32)
    >>> iou = np.array([[0.1, 0.2, 0.3, 0.4]], np.float32)
    >>> low, scores = select_masks(logits, iou, multimask_output=True)
    >>> low.shape, scores.tolist()
    ((1, 3, 16, 16), [[0.20000000298023224, 0.30000001192092896, 0.4000000059604645]])
    >>> upscale_masks(low, 64, (32, 64), (100, 200)).shape
    (1, 3, 100, 200)
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from samedge.errors import InputError

# Mask geometry lives in samedge.masks; these names stay importable from here.
from samedge.masks import mask_to_rle, masks_to_boxes, rle_area, rle_to_mask

__all__ = [
    "CV_MAX_CHANNELS",
    "MASK_THRESHOLD",
    "RESIZE_GROUP",
    "mask_to_rle",
    "masks_to_boxes",
    "postprocess_masks",
    "rle_area",
    "rle_to_mask",
    "select_masks",
    "stability_score",
    "upscale_masks",
]

# SAM's Sam.mask_threshold.
MASK_THRESHOLD = 0.0
# OpenCV 4 allows 512 channels per image (CV_CN_MAX), OpenCV 5 only 128.
CV_MAX_CHANNELS = 128
# Masks per cv2.resize call (at most CV_MAX_CHANNELS): one, see the module docstring.
RESIZE_GROUP = 1


def select_masks(
    low_res_masks: np.ndarray, iou_predictions: np.ndarray, multimask_output: bool
) -> tuple[np.ndarray, np.ndarray]:
    """Pick SAM's outputs: ``[:, 1:]`` for multimask, ``[:, 0:1]`` for a single mask.

    Args:
        low_res_masks: ``[B, K, L, L]`` decoder logits, K = 4 (index 0 is the
            single-mask output, 1..3 the multimask outputs).
        iou_predictions: ``[B, K]`` predicted IoU per mask.
        multimask_output: Select the 3 multimask outputs, else the single one.

    Returns:
        ``([B, C, L, L], [B, C])`` with C = 3 or 1 (views, not copies).
    """
    if low_res_masks.ndim != 4 or iou_predictions.shape != low_res_masks.shape[:2]:
        raise InputError(
            f"select_masks: got low_res_masks {low_res_masks.shape} and iou_predictions "
            f"{iou_predictions.shape}, expected [B, K, L, L] and [B, K]"
        )
    if low_res_masks.shape[1] < 2:
        raise InputError(
            f"select_masks: got K={low_res_masks.shape[1]} masks per object, expected "
            "SAM's K=4 (single + multimask outputs); re-export the model with samedge"
        )
    sl = slice(1, None) if multimask_output else slice(0, 1)
    return low_res_masks[:, sl], iou_predictions[:, sl]


def _resize_channels(hwc: np.ndarray, size_hw: tuple[int, int]) -> np.ndarray:
    """Bilinear (align_corners=False) resize of an ``h×w×c`` float32 stack, keeping c."""
    h, w = size_hw
    if hwc.shape[:2] == (h, w):
        return hwc
    out = cv2.resize(hwc, (w, h), interpolation=cv2.INTER_LINEAR)
    # OpenCV drops a single channel axis.
    return out.reshape(h, w, hwc.shape[2])


def _upscale_group(
    hwc: np.ndarray, image_size: int, input_size: tuple[int, int], original_size: tuple[int, int]
) -> np.ndarray:
    """Postprocess one ``L×L×c`` group of logits to ``H×W×c``."""
    L = hwc.shape[0]
    h, w = input_size
    if image_size % L == 0:
        # With an integer scale r, the first rows/columns of an upsampled
        # sub-block are the same numbers as those of the full S×S upsample
        # (same source coordinates, and the +1 margin keeps the edge clamp
        # away from the crop), so only the part the crop keeps is computed.
        r = image_size // L
        lh = min(L, math.ceil(h / r) + 1)
        lw = min(L, math.ceil(w / r) + 1)
        big = _resize_channels(np.ascontiguousarray(hwc[:lh, :lw]), (lh * r, lw * r))
    else:
        big = _resize_channels(hwc, (image_size, image_size))
    cropped = np.ascontiguousarray(big[:h, :w])
    return _resize_channels(cropped, original_size)


def _fast_crop(
    image_size: int, low_size: int, input_size: tuple[int, int]
) -> tuple[int, int] | None:
    """The crop ``(lh, lw)`` of the logits the fast path resizes; ``None`` if not whole pixels.

    Frame pixel centre ``x + 0.5`` sits at ``(x + 0.5) * w / W`` in the resized
    frame and at that times ``L / S`` in the logits; a resize of the
    ``lw = w * L / S`` wide crop to ``W`` samples exactly there.
    """
    h, w = input_size
    if (h * low_size) % image_size or (w * low_size) % image_size:
        return None
    return h * low_size // image_size, w * low_size // image_size


def upscale_masks(
    low_res_masks: np.ndarray,
    image_size: int,
    input_size: tuple[int, int],
    original_size: tuple[int, int],
    threshold: float | None = None,
    *,
    exact: bool = True,
) -> np.ndarray:
    """Upsample low-resolution logits to the original frame, like ``Sam.postprocess_masks``.

    Args:
        low_res_masks: ``[..., L, L]`` float logits (any leading dimensions).
        image_size: Side ``S`` of the encoder's square input.
        input_size: ``(h, w)`` of the resized frame inside the ``S×S`` input.
        original_size: ``(H, W)`` of the original frame.
        threshold: ``None`` returns float32 logits; a number returns bool
            masks ``logits > threshold``.
        exact: ``True`` follows ``Sam.postprocess_masks`` step by step (what
            SamPredictor returns); ``False`` resizes once where the crop is a
            whole number of low-resolution pixels (module docstring), for streams.

    Returns:
        ``[..., H, W]`` float32 logits or bool masks.

    Example:
        >>> import numpy as np
        >>> m = upscale_masks(np.ones((2, 8, 8), np.float32), 32, (16, 32), (5, 10), 0.0)
        >>> m.shape, m.dtype, bool(m.all())
        ((2, 5, 10), dtype('bool'), True)
    """
    arr = np.asarray(low_res_masks)
    if arr.ndim < 2 or arr.shape[-1] != arr.shape[-2]:
        raise InputError(f"low_res_masks: got shape {arr.shape}, expected [..., L, L]")
    h, w = input_size
    H, W = original_size
    if not (0 < h <= image_size and 0 < w <= image_size) or H <= 0 or W <= 0:
        raise InputError(
            f"upscale_masks: got input_size {input_size} for image_size {image_size} and "
            f"original_size {original_size}; expected 0 < h, w <= image_size and H, W > 0"
        )
    lead = arr.shape[:-2]
    L = arr.shape[-1]
    flat = arr.reshape(-1, L, L).astype(np.float32, copy=False)
    C = flat.shape[0]
    dtype = np.float32 if threshold is None else np.bool_
    out = np.empty((C, H, W), dtype=dtype)
    crop = None if exact else _fast_crop(image_size, L, input_size)
    if crop is not None:
        for start in range(0, C, RESIZE_GROUP):
            group = flat[start : start + RESIZE_GROUP, : crop[0], : crop[1]]
            res = _resize_channels(np.ascontiguousarray(group.transpose(1, 2, 0)), original_size)
            if threshold is not None:
                res = res > threshold
            out[start : start + group.shape[0]] = res.transpose(2, 0, 1)
        return out.reshape(*lead, H, W)
    for start in range(0, C, RESIZE_GROUP):
        group = np.ascontiguousarray(flat[start : start + RESIZE_GROUP].transpose(1, 2, 0))
        res = _upscale_group(group, image_size, input_size, original_size)
        if threshold is not None:
            # Threshold before the HWC -> CHW transpose: moving bools is 4x cheaper.
            res = res > threshold
        out[start : start + group.shape[2]] = res.transpose(2, 0, 1)
    return out.reshape(*lead, H, W)


def postprocess_masks(
    low_res_masks: np.ndarray,
    image_size: int,
    input_size: tuple[int, int],
    original_size: tuple[int, int],
    return_logits: bool = False,
    *,
    exact: bool = True,
) -> np.ndarray:
    """Upsample to the frame and threshold at :data:`MASK_THRESHOLD` unless ``return_logits``.

    ``exact=False`` takes the one-step fast path (see :func:`upscale_masks`).
    """
    threshold = None if return_logits else MASK_THRESHOLD
    return upscale_masks(
        low_res_masks, image_size, input_size, original_size, threshold, exact=exact
    )


def stability_score(
    logits: np.ndarray, threshold: float = MASK_THRESHOLD, offset: float = 1.0
) -> np.ndarray:
    """IoU between the masks thresholded at ``threshold ± offset`` (SAM's stability score).

    Args:
        logits: ``[..., H, W]`` mask logits.
        threshold: The mask threshold.
        offset: How far above and below it to threshold.

    Returns:
        ``[...]`` float32 scores in [0, 1]; 0 where both masks are empty
        (SAM divides 0 by 0 there; 0 keeps such masks out of any
        ``score > t`` filter, as NaN did, without the NaN).

    Example:
        >>> import numpy as np
        >>> stability_score(np.array([[[-2.0, 0.5, 3.0, 3.0]]]))
        array([0.6666667], dtype=float32)
    """
    arr = np.asarray(logits)
    if arr.ndim < 2:
        raise InputError(f"logits: got shape {arr.shape}, expected [..., H, W]")
    inter = np.count_nonzero(arr > threshold + offset, axis=(-2, -1))
    union = np.count_nonzero(arr > threshold - offset, axis=(-2, -1))
    score = np.divide(
        inter, union, out=np.zeros(np.shape(inter), dtype=np.float64), where=union > 0
    )
    return score.astype(np.float32)
