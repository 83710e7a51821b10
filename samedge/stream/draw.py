"""Draw tracked objects on frames: colored masks, outlines, boxes, ids, a status line.

OpenCV only. Functions take an RGB frame and return a new BGR frame (what
``cv2.VideoWriter`` and ``cv2.imwrite`` expect); the input is never modified.
Each object id keeps its color across frames.

Example:
    >>> import numpy as np
    >>> frame = np.zeros((120, 160, 3), np.uint8)
    >>> out = draw_objects(frame, {}, text="0.0 FPS")
    >>> out.shape, out.dtype
    ((120, 160, 3), dtype('uint8'))
"""

from __future__ import annotations

from collections.abc import Mapping

import cv2
import numpy as np

from samedge.errors import ImageError
from samedge.stream.tracking import TrackedObject, TrackState

__all__ = ["color_for_id", "draw_objects", "draw_text_line"]

# Well-separated hues (Tableau 10), as BGR; ids cycle through them.
_PALETTE_BGR: tuple[tuple[int, int, int], ...] = (
    (180, 119, 31),
    (14, 127, 255),
    (44, 160, 44),
    (40, 39, 214),
    (189, 103, 148),
    (75, 86, 140),
    (194, 119, 227),
    (34, 189, 188),
    (207, 190, 23),
    (127, 127, 127),
)
_LOST_BGR = (160, 160, 160)
_FONT = cv2.FONT_HERSHEY_SIMPLEX


def color_for_id(object_id: int) -> tuple[int, int, int]:
    """BGR color of an object id (stable across frames and runs)."""
    return _PALETTE_BGR[(int(object_id) - 1) % len(_PALETTE_BGR)]


def draw_objects(
    image: np.ndarray,
    objects: Mapping[int, TrackedObject],
    *,
    alpha: float = 0.45,
    text: str | None = None,
    boxes: bool = True,
) -> np.ndarray:
    """Overlay objects on an RGB frame and return the annotated BGR frame.

    Tracked objects get a translucent mask, an outline, a box and a label
    ``"id score"``; lost and occluded objects a grey box at their last
    position labelled ``"id lost"`` / ``"id occluded"``.

    Args:
        image: ``H×W×3`` uint8 RGB frame.
        objects: Object states by id, e.g. from :meth:`Tracker.step`.
        alpha: Mask opacity in [0, 1].
        text: Status line drawn at the top left (see :func:`draw_text_line`).
        boxes: Draw boxes as well as masks.

    Returns:
        A new ``H×W×3`` uint8 BGR frame.

    Raises:
        ImageError: ``image`` is not ``H×W×3`` uint8, or a mask's size differs from it.
    """
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3:
        raise ImageError(
            f"draw_objects: got {getattr(image, 'dtype', type(image).__name__)} "
            f"{getattr(image, 'shape', '')}, expected an H×W×3 uint8 RGB frame"
        )
    out = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
    h, w = out.shape[:2]
    for oid in sorted(objects):
        obj = objects[oid]
        if obj.mask is None or obj.state is not TrackState.TRACKING:
            continue
        if obj.mask.shape != (h, w):
            raise ImageError(
                f"draw_objects: object {oid} has a {obj.mask.shape} mask for a {(h, w)} frame"
            )
        # Blend only the mask's box: far cheaper than blending whole frames per object.
        x0, y0, x1, y1 = (int(v) for v in obj.box) if obj.box else (0, 0, w - 1, h - 1)
        roi = out[y0 : y1 + 1, x0 : x1 + 1]
        m = obj.mask[y0 : y1 + 1, x0 : x1 + 1]
        tint = np.empty_like(roi)
        tint[:] = color_for_id(oid)
        blended = cv2.addWeighted(roi, 1.0 - alpha, tint, alpha, 0.0)
        np.copyto(roi, blended, where=m[..., None])
        contours, _ = cv2.findContours(
            np.ascontiguousarray(m, dtype=np.uint8),
            cv2.RETR_EXTERNAL,
            cv2.CHAIN_APPROX_SIMPLE,
            offset=(x0, y0),
        )
        cv2.drawContours(out, contours, -1, color_for_id(oid), 2, cv2.LINE_AA)
    for oid in sorted(objects):
        obj = objects[oid]
        if obj.box is None:
            continue
        tracking = obj.state is TrackState.TRACKING
        color = color_for_id(oid) if tracking else _LOST_BGR
        x0, y0, x1, y1 = (round(v) for v in obj.box)
        if boxes or not tracking:
            cv2.rectangle(out, (x0, y0), (x1, y1), color, 1 if tracking else 2, cv2.LINE_AA)
        label = f"{oid} {obj.score:.2f}" if tracking else f"{oid} {obj.state.value}"
        _label(out, label, (x0, y0), color)
    if text:
        draw_text_line(out, text)
    return out


def _label(out: np.ndarray, text: str, corner: tuple[int, int], color: tuple[int, int, int]):
    (tw, th), base = cv2.getTextSize(text, _FONT, 0.5, 1)
    x = min(max(corner[0], 0), max(out.shape[1] - tw - 4, 0))
    y = corner[1] - 4 if corner[1] - th - base - 4 >= 0 else corner[1] + th + 4
    cv2.rectangle(out, (x, y - th - 3), (x + tw + 4, y + base - 1), color, cv2.FILLED)
    cv2.putText(out, text, (x + 2, y - 1), _FONT, 0.5, (255, 255, 255), 1, cv2.LINE_AA)


def draw_text_line(image: np.ndarray, text: str, *, origin: tuple[int, int] = (8, 8)) -> None:
    """Draw one line of white text on a dark band, in place (e.g. FPS and latency).

    Args:
        image: ``H×W×3`` uint8 frame, modified in place.
        text: The text; non-ASCII characters are replaced (Hershey fonts are ASCII only).
        origin: Top-left corner of the band in pixels.
    """
    text = text.encode("ascii", "replace").decode("ascii")
    (tw, th), base = cv2.getTextSize(text, _FONT, 0.5, 1)
    x, y = origin
    band = image[y : y + th + base + 6, x : x + tw + 8]
    band[:] = band // 3  # darken instead of a solid box so the scene stays visible
    cv2.putText(image, text, (x + 4, y + th + 3), _FONT, 0.5, (255, 255, 255), 1, cv2.LINE_AA)
