"""Frame preprocessing and coordinate transforms (numpy + OpenCV, no torch).

The encoder graph takes ``image`` float32 ``[1, 3, S, S]``: RGB values in 0..255,
resized so the longest side is ``S`` and padded bottom/right with the pixel
mean. The graph normalises ``(x - mean) / std``, so the padding becomes exactly
0, which is what segment_anything does (it pads *after* normalising).

Accepted frames:

* ``H×W×3`` uint8 in ``image_format`` order (``"RGB"`` or ``"BGR"``).
* Grayscale ``H×W`` or ``H×W×1`` uint8 is converted by repeating the one
  channel three times (R = G = B). This loses nothing and has one meaning.
* Four-channel (RGBA/BGRA) frames are refused: alpha has no single correct
  interpretation (drop it? composite on black? on white?), so the caller
  chooses, e.g. ``frame[..., :3]``.
* Anything else (float or 16-bit frames, NaN, 0-sized frames, wrong number
  of dimensions or channels) raises :class:`~samedge.errors.ImageError`
  saying what was received and what is expected.

Resizing (:class:`Resample`): segment_anything resizes with PIL's bilinear
filter (torchvision's ``to_pil_image`` + ``resize``), which antialiases when
downscaling and works in 8-bit fixed point. OpenCV has no identical filter.
Measured against PIL on scikit-image's sample photos (mean / max absolute
difference in grey levels): upscaling with ``cv2.INTER_LINEAR_EXACT`` 0.10-0.21
/ 1, downscaling with ``cv2.INTER_AREA`` (the closest OpenCV filter; plain
``INTER_LINEAR`` aliases: up to 8.2 / 133) 0.3-2.4 / 14-45. Small, but a random
weight SAM at 256 px turns it into mask IoU of only 0.95-0.98 against
SamPredictor, so the default, :attr:`Resample.EXACT`, re-implements PIL's
algorithm (``Resample.c``: triangle filter widened by the scale factor,
normalised coefficients in 22-bit fixed point, two separable passes rounded
to uint8 in between, in Pillow's order) in vectorised numpy: bit-identical to SamPredictor's
input. Measured on a shared 2-core Xeon: 640×480 to 256 px 6.6 ms (FAST 0.7),
to 1024 px 16 ms (FAST 2.0); 1920×1080 to 1024 px 50 ms (FAST 12).
Where Pillow is importable (it is not a samedge dependency, but torchvision
and most imaging stacks bring it), EXACT calls Pillow's own resize instead:
SamPredictor's exact operation by construction, and 2-4x faster than the
numpy version (benchmarks/results/amd-epyc-2c/prepost.md).
:attr:`Resample.FAST` uses the OpenCV filters above, for
pipelines that prefer speed over bit-exactness.

Example:
    >>> import numpy as np
    >>> from samedge.preprocess import ResizeLongestSide, preprocess_image
    >>> frame = np.zeros((480, 640, 3), np.uint8)
    >>> x, input_size = preprocess_image(frame, 1024, (123.675, 116.28, 103.53))
    >>> x.shape, input_size
    ((1, 3, 1024, 1024), (768, 1024))
    >>> ResizeLongestSide(1024).apply_coords(np.array([[320.0, 240.0]]), (480, 640))
    array([[512., 384.]])
"""

from __future__ import annotations

import enum
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import cv2
import numpy as np

from samedge.errors import ImageError, InputError

__all__ = [
    "IMAGE_FORMATS",
    "Resample",
    "ResizeLongestSide",
    "get_preprocess_shape",
    "model_input",
    "pad_to_square",
    "preprocess_image",
    "resize_longest_side",
    "validate_image",
]

log = logging.getLogger(__name__)

IMAGE_FORMATS = ("RGB", "BGR")


class Resample(enum.Enum):
    """How frames are resized to the encoder's input (see the module docstring)."""

    #: PIL's bilinear filter re-implemented bit for bit: what SamPredictor feeds.
    EXACT = "exact"
    #: OpenCV: ``INTER_LINEAR_EXACT`` up, ``INTER_AREA`` down; faster, within a few grey levels.
    FAST = "fast"


# Pillow's fixed-point precision for 8-bit images (Resample.c: 32 - 8 - 2).
_PIL_PRECISION_BITS = 22

_EXPECTED = "an H×W×3 uint8 array (or H×W / H×W×1 uint8 grayscale)"


def validate_image(image: object, image_format: str = "RGB") -> np.ndarray:
    """Check a frame and return it as a contiguous ``H×W×3`` uint8 RGB array.

    Grayscale ``H×W`` / ``H×W×1`` frames are repeated into three channels;
    ``"BGR"`` frames are reversed to RGB. The input is never modified.

    Args:
        image: The frame, a numpy array (or anything ``np.asarray`` turns into one).
        image_format: Channel order of ``image``: ``"RGB"`` or ``"BGR"``.

    Returns:
        A new C-contiguous ``H×W×3`` uint8 array in RGB order (or ``image``
        itself when it already is one and no conversion was needed).

    Raises:
        InputError: ``image_format`` is not ``"RGB"`` or ``"BGR"``.
        ImageError: wrong type, dtype, shape, channel count, or an empty frame.

    Example:
        >>> import numpy as np
        >>> validate_image(np.zeros((4, 6), np.uint8)).shape
        (4, 6, 3)
    """
    if image_format not in IMAGE_FORMATS:
        raise InputError(f"image_format: got {image_format!r}, expected 'RGB' or 'BGR'")
    if not isinstance(image, np.ndarray):
        try:
            image = np.asarray(image)
        except (TypeError, ValueError) as e:
            raise ImageError(
                f"image: got {type(image).__name__} that is not array-like ({e}); "
                f"expected {_EXPECTED}"
            ) from e
    if image.dtype != np.uint8:
        raise ImageError(_dtype_message(image))
    if image.ndim not in (2, 3):
        raise ImageError(f"image: got {image.ndim} dimensions {image.shape}, expected {_EXPECTED}")
    if image.shape[0] == 0 or image.shape[1] == 0:
        raise ImageError(f"image: got an empty frame of shape {image.shape}, expected {_EXPECTED}")
    if image.ndim == 3:
        channels = image.shape[2]
        if channels == 4:
            raise ImageError(
                f"image: got 4 channels {image.shape} (RGBA/BGRA), expected 3; "
                "samedge does not guess what alpha means: drop it with image[..., :3] "
                "or composite it yourself"
            )
        if channels not in (1, 3):
            raise ImageError(f"image: got {channels} channels {image.shape}, expected {_EXPECTED}")
        if channels == 1:
            image = image[:, :, 0]
    if image.ndim == 2:
        log.debug("grayscale frame %s repeated into 3 channels", image.shape)
        return np.ascontiguousarray(np.repeat(image[:, :, None], 3, axis=2))
    if image_format == "BGR":
        image = image[:, :, ::-1]
    return np.ascontiguousarray(image)


def _dtype_message(image: np.ndarray) -> str:
    detail = ""
    if np.issubdtype(image.dtype, np.floating) and image.size:
        n_nan = int(np.count_nonzero(np.isnan(image)))
        if n_nan:
            detail = f" containing {n_nan} NaN value(s)"
        else:
            detail = f" with values in [{float(image.min()):g}, {float(image.max()):g}]"
        hint = (
            "convert with np.clip(image * 255, 0, 255).astype(np.uint8) if it is 0..1, "
            "or np.clip(image, 0, 255).astype(np.uint8) if it is 0..255"
        )
    elif image.dtype == np.uint16:
        hint = "convert with (image >> 8).astype(np.uint8) for 16-bit frames"
    else:
        hint = "convert it to uint8 0..255"
    return f"image: got dtype {image.dtype}{detail} {image.shape}, expected uint8; {hint}"


def get_preprocess_shape(old_h: int, old_w: int, long_side: int) -> tuple[int, int]:
    """Size ``(h, w)`` of a frame resized so its longest side is ``long_side``.

    Rounds exactly like segment_anything's ``ResizeLongestSide.get_preprocess_shape``
    (``int(x + 0.5)``), so coordinates and masks line up with SamPredictor's.

    Example:
        >>> get_preprocess_shape(300, 451, 1024)
        (681, 1024)
    """
    if old_h <= 0 or old_w <= 0 or long_side <= 0:
        raise InputError(
            f"get_preprocess_shape: got ({old_h}, {old_w}) -> {long_side}, expected positive sizes"
        )
    scale = long_side * 1.0 / max(old_h, old_w)
    new_h, new_w = old_h * scale, old_w * scale
    return int(new_h + 0.5), int(new_w + 0.5)


def resize_longest_side(
    image: np.ndarray, long_side: int, resample: Resample = Resample.EXACT
) -> np.ndarray:
    """Resize a validated ``H×W×3`` uint8 frame so its longest side is ``long_side``.

    Args:
        image: ``H×W×C`` uint8 frame (C = 3 for the encoder).
        long_side: Target length of the longest side.
        resample: :attr:`Resample.EXACT` (PIL's bilinear, as SamPredictor) or
            :attr:`Resample.FAST` (OpenCV).

    Returns:
        The resized, C-contiguous frame (``image`` itself when the size does not change).

    Raises:
        ImageError: the frame is so thin that one side would resize to 0 pixels.
    """
    new_h, new_w = _target_size(image.shape[0], image.shape[1], long_side, resample)
    if (new_h, new_w) == image.shape[:2]:
        return image
    if resample is Resample.EXACT:
        resized = _resize_pillow(image, new_h, new_w)
        if resized is not None:
            return np.array(resized)  # Pillow's buffer is read-only; hand out a copy
        chw = _resize_exact_chw(np.ascontiguousarray(image.transpose(2, 0, 1)), new_h, new_w)
        return np.ascontiguousarray(chw.transpose(1, 2, 0))
    return _resize_fast(image, new_h, new_w)


def _resize_pillow(hwc: np.ndarray, new_h: int, new_w: int) -> np.ndarray | None:
    """Pillow's bilinear resize of an ``H×W×3`` uint8 frame (read-only), or ``None`` without Pillow.

    What SamPredictor runs (torchvision's ``to_pil_image`` + ``resize``), in C.
    """
    try:
        from PIL import Image
    except ImportError:
        return None
    resized = Image.fromarray(np.ascontiguousarray(hwc)).resize(
        (new_w, new_h), Image.Resampling.BILINEAR
    )
    return np.asarray(resized)


def _target_size(old_h: int, old_w: int, long_side: int, resample: Resample) -> tuple[int, int]:
    if not isinstance(resample, Resample):
        raise InputError(f"resample: got {resample!r}, expected Resample.EXACT or Resample.FAST")
    new_h, new_w = get_preprocess_shape(old_h, old_w, long_side)
    if new_h == 0 or new_w == 0:
        raise ImageError(
            f"image: got a {old_h}×{old_w} frame, which resizes to {new_h}×{new_w} at "
            f"longest side {long_side}; expected an aspect ratio under {2 * long_side}:1"
        )
    return new_h, new_w


def _resize_fast(image: np.ndarray, new_h: int, new_w: int) -> np.ndarray:
    old_h, old_w = image.shape[:2]
    upscale = new_h * new_w > old_h * old_w
    interpolation = cv2.INTER_LINEAR_EXACT if upscale else cv2.INTER_AREA
    return cv2.resize(image, (new_w, new_h), interpolation=interpolation)


def _resize_exact_chw(chw: np.ndarray, new_h: int, new_w: int) -> np.ndarray:
    """PIL's bilinear resize of a C-contiguous ``C×H×W`` uint8 array.

    Channel-first keeps every gather along a contiguous axis (about 1.5x
    faster than ``H×W×C``), and it is the layout the encoder wants anyway.
    """
    old_h, old_w = chw.shape[1:]
    # Pillow rounds to uint8 between its two passes, so their order matters
    # for bit-exactness. Pillow 13 (python-pillow/Pillow#9549) runs the
    # vertical pass first when the height loses more than twice as many
    # pixels as the width; older Pillow always ran the horizontal pass first.
    # For resize-longest-side both agree unless the frame is more than twice
    # as tall as wide; we follow Pillow 13.
    vertical_first = new_h < old_h and old_h - new_h > 2 * (old_w - new_w)
    axes = (1, 2) if vertical_first else (2, 1)
    out = chw
    for axis in axes:
        size = new_h if axis == 1 else new_w
        if size != out.shape[axis]:
            out = _pil_bilinear_axis(out, size, axis=axis)
    return out


def _pil_bilinear_coeffs(in_size: int, out_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Pillow's ``precompute_coeffs`` + ``normalize_coeffs_8bpc`` for the bilinear filter.

    Returns:
        ``(kk, idx)``, both ``[out_size, ksize]``: int32 fixed-point weights and
        the source indices they apply to (clamped; their weight is 0 there).
    """
    scale = in_size / out_size
    filterscale = max(scale, 1.0)
    support = 1.0 * filterscale  # the bilinear (triangle) filter's support is 1
    ksize = math.ceil(support) * 2 + 1
    center = (np.arange(out_size) + 0.5) * scale
    # C's (int) cast truncates toward zero, as astype does.
    xmin = np.maximum((center - support + 0.5).astype(np.int64), 0)
    xmax = np.minimum((center + support + 0.5).astype(np.int64), in_size) - xmin
    taps = np.arange(ksize)
    inv = 1.0 / filterscale
    w = 1.0 - np.abs((taps[None, :] + xmin[:, None] - center[:, None] + 0.5) * inv)
    w = np.where((w > 0.0) & (taps[None, :] < xmax[:, None]), w, 0.0)
    # Sum tap by tap, in Pillow's order, so the normalisation rounds identically.
    total = np.zeros(out_size)
    for j in range(ksize):
        total = total + w[:, j]
    w = w / np.where(total == 0.0, 1.0, total)[:, None]
    kk = (0.5 + w * (1 << _PIL_PRECISION_BITS)).astype(np.int32)
    idx = np.minimum(xmin[:, None] + taps[None, :], in_size - 1)
    return kk, idx


def _pil_bilinear_axis(image: np.ndarray, out_size: int, axis: int) -> np.ndarray:
    """One pass of Pillow's 8-bit bilinear resampling along ``axis`` (0 rows, 1 columns)."""
    kk, idx = _pil_bilinear_coeffs(image.shape[axis], out_size)
    out_shape = list(image.shape)
    out_shape[axis] = out_size
    weight_shape = [1] * image.ndim
    weight_shape[axis] = out_size
    # Start at one half in fixed point: Pillow rounds by adding it before the shift.
    acc = np.full(out_shape, 1 << (_PIL_PRECISION_BITS - 1), dtype=np.int32)
    tmp = np.empty(out_shape, dtype=np.int32)
    for j in range(kk.shape[1]):
        weights = kk[:, j]
        if not weights.any():
            continue
        # The largest sum is 255 * 2**22 + 2**21 < 2**31: int32 cannot overflow.
        np.multiply(np.take(image, idx[:, j], axis=axis), weights.reshape(weight_shape), out=tmp)
        acc += tmp
    acc >>= _PIL_PRECISION_BITS
    return np.clip(acc, 0, 255).astype(np.uint8)


def pad_to_square(
    resized: np.ndarray, size: int, fill: Sequence[float], out: np.ndarray | None = None
) -> np.ndarray:
    """Lay an ``h×w×3`` frame into a float32 ``[1, 3, size, size]`` tensor.

    The frame goes top-left; the rest is ``fill`` per channel (the pixel mean,
    so the encoder's in-graph normalisation turns the padding into 0).

    Args:
        resized: ``h×w×3`` array with ``h, w <= size``.
        size: Side of the square.
        fill: One value per channel.
        out: Optional float32 ``[1, 3, size, size]`` buffer to fill in place,
            e.g. reused across frames of a stream.
    """
    return _pad_chw(resized.transpose(2, 0, 1), size, fill, out)


def _pad_chw(
    chw: np.ndarray,
    size: int,
    fill: Sequence[float],
    out: np.ndarray | None,
    box: tuple[int, int] | None = None,
) -> np.ndarray:
    h, w = chw.shape[1:]
    bh, bw = box if box is not None else (size, size)
    if h > bh or w > bw:
        if box is None or box == (size, size):
            raise ImageError(f"pad_to_square: got a {h}×{w} frame, larger than the {size} square")
        raise ImageError(
            f"image: resized to {h}×{w} for the {size}-px encoder, but this model's encoder "
            f"takes {bh}×{bw} (it was exported for frames of one aspect ratio with "
            "`samedge export --frame-size`); pass frames of that shape, or use a model "
            "directory exported without --frame-size"
        )
    if out is None:
        out = np.empty((1, 3, bh, bw), dtype=np.float32)
    elif out.shape != (1, 3, bh, bw) or out.dtype != np.float32:
        raise InputError(f"out: got {out.dtype} {out.shape}, expected float32 (1, 3, {bh}, {bw})")
    fill_arr = np.asarray(fill, dtype=np.float32).reshape(3, 1, 1)
    out[0, :, :h, :w] = chw
    out[0, :, h:, :] = fill_arr
    out[0, :, :h, w:] = fill_arr
    return out


def preprocess_image(
    image: object,
    image_size: int,
    pixel_mean: Sequence[float],
    image_format: str = "RGB",
    out: np.ndarray | None = None,
    resample: Resample = Resample.EXACT,
    box: tuple[int, int] | None = None,
) -> tuple[np.ndarray, tuple[int, int]]:
    """Validate, resize and pad one frame into the encoder's ``image`` input.

    Args:
        image: The frame (see :func:`validate_image` for what is accepted).
        image_size: Side ``S`` of the encoder's square input.
        pixel_mean: RGB mean in 0..255, used as the padding value.
        image_format: ``"RGB"`` or ``"BGR"``.
        out: Optional float32 ``[1, 3, S, S]`` buffer to fill in place.
        resample: Resize filter (see :class:`Resample`).
        box: ``(h, w)`` of an encoder exported for one aspect ratio
            (:attr:`~samedge.model_dir.ModelCard.input_box`); the frame is still
            resized to longest side ``S`` and must fit inside it. ``None``: the square.

    Returns:
        The float32 ``[1, 3, *box]`` tensor and the resized (unpadded) size ``(h, w)``.

    Raises:
        ImageError: a frame that :func:`validate_image` refuses, or one that
            does not fit ``box`` once resized.

    Example:
        >>> import numpy as np
        >>> x, (h, w) = preprocess_image(np.zeros((10, 20, 3), np.uint8), 64, (1, 2, 3))
        >>> x.shape, (h, w), float(x[0, 2, 63, 0])
        ((1, 3, 64, 64), (32, 64), 3.0)
    """
    rgb = validate_image(image, image_format)
    new_h, new_w = _target_size(rgb.shape[0], rgb.shape[1], image_size, resample)
    if resample is Resample.EXACT:
        resized = None
        if (new_h, new_w) != rgb.shape[:2]:
            resized = _resize_pillow(rgb, new_h, new_w)
        if resized is not None:
            chw = resized.transpose(2, 0, 1)
        else:
            chw = np.ascontiguousarray(rgb.transpose(2, 0, 1))
            if (new_h, new_w) != rgb.shape[:2]:
                chw = _resize_exact_chw(chw, new_h, new_w)
    else:
        resized = rgb if (new_h, new_w) == rgb.shape[:2] else _resize_fast(rgb, new_h, new_w)
        chw = resized.transpose(2, 0, 1)
    return _pad_chw(chw, image_size, pixel_mean, out, box), (new_h, new_w)


class _InputSpec(Protocol):
    """What :func:`model_input` reads of a model card."""

    @property
    def image_size(self) -> int: ...
    @property
    def pixel_mean(self) -> tuple[float, float, float]: ...
    @property
    def input_box(self) -> tuple[int, int]: ...


def model_input(
    image: object, card: _InputSpec, resample: Resample = Resample.EXACT
) -> tuple[np.ndarray, tuple[int, int]]:
    """:func:`preprocess_image` with a model card's size, mean and input box (RGB frame)."""
    return preprocess_image(
        image, card.image_size, card.pixel_mean, "RGB", None, resample, card.input_box
    )


@dataclass(frozen=True)
class ResizeLongestSide:
    """Coordinate transforms between a frame and the encoder's input frame.

    Same math as segment_anything's ``ResizeLongestSide`` (numpy part): x is
    scaled by ``new_w / old_w`` and y by ``new_h / old_h`` in float64.

    Attributes:
        target_length: Side ``S`` of the encoder's square input.

    Example:
        >>> t = ResizeLongestSide(1024)
        >>> t.apply_boxes(np.array([0, 0, 640, 480]), (480, 640))
        array([[   0.,    0., 1024.,  768.]])
    """

    target_length: int

    def __post_init__(self) -> None:
        if not isinstance(self.target_length, int) or self.target_length <= 0:
            raise InputError(f"target_length: got {self.target_length!r}, expected a positive int")

    def get_preprocess_shape(self, old_h: int, old_w: int) -> tuple[int, int]:
        """Resized ``(h, w)`` of an ``old_h×old_w`` frame."""
        return get_preprocess_shape(old_h, old_w, self.target_length)

    def apply_image(self, image: np.ndarray, resample: Resample = Resample.EXACT) -> np.ndarray:
        """Resize a validated ``H×W×3`` uint8 frame (see :func:`resize_longest_side`)."""
        return resize_longest_side(image, self.target_length, resample)

    def apply_coords(self, coords: np.ndarray, original_size: tuple[int, int]) -> np.ndarray:
        """Map ``[..., 2]`` (x, y) pixel coordinates from the frame to the input frame.

        Returns a new float64 array; ``coords`` is not modified.
        """
        old_h, old_w = original_size
        new_h, new_w = self.get_preprocess_shape(old_h, old_w)
        out = np.array(coords, dtype=np.float64, copy=True)
        if out.ndim == 0 or out.shape[-1] != 2:
            raise InputError(f"coords: got shape {out.shape}, expected (..., 2)")
        out[..., 0] *= new_w / old_w
        out[..., 1] *= new_h / old_h
        return out

    def apply_boxes(self, boxes: np.ndarray, original_size: tuple[int, int]) -> np.ndarray:
        """Map ``[B, 4]`` (or ``[4]``) XYXY boxes to the input frame; returns ``[B, 4]``."""
        arr = np.asarray(boxes, dtype=np.float64)
        if arr.size % 4:
            raise InputError(f"boxes: got shape {arr.shape}, expected (B, 4)")
        return self.apply_coords(arr.reshape(-1, 2, 2), original_size).reshape(-1, 4)
