"""Per-object prompts and their batching into the decoder's input tensors.

An :class:`ObjectPrompt` holds what SamPredictor's ``predict`` takes for one
object: points with labels, a box, or both, and optionally a low-resolution
mask from an earlier prediction. :func:`batch_prompts` turns N objects into
one decoder call's tensors, ordering sparse prompts exactly like
segment_anything's prompt encoder so results match SamPredictor:

* the object's points first (labels 1 foreground, 0 background);
* then its box as two corner points labelled 2 (top-left) and 3 (bottom-right);
* when the object has no box, one padding point ``(0, 0)`` labelled -1, as
  SAM's prompt encoder appends (``pad=True`` when ``boxes is None``);
* finally objects with fewer prompts than the longest one are padded with
  ``(0, 0)``/-1 points up to the common length.

Every padding point adds a "not a point" token to the decoder's attention, so
an object batched next to an object with more prompts can come out slightly
different from the same object predicted alone; that is inherent to running
SAM on a batch of unequal prompts. Objects with equal prompt counts match a
lone call exactly.

Choices that differ from SamPredictor, on purpose:

* points and boxes must lie inside the image, ``0 <= x <= W`` and
  ``0 <= y <= H`` (SAM silently accepts any coordinates; a point outside the
  frame is almost always a bug in the caller's coordinate system). Clip with
  ``np.clip`` if it is intended;
* labels must be 0 or 1 (SAM's -1/2/3 are reserved for padding and boxes);
* an object needs at least one point or a box (a mask alone is refused).

Example:
    >>> import numpy as np
    >>> from samedge.preprocess import ResizeLongestSide
    >>> p = ObjectPrompt(point_coords=np.array([[10, 20]]), point_labels=np.array([1]))
    >>> batch = batch_prompts([p], (100, 200), ResizeLongestSide(64), mask_size=16)
    >>> batch.point_coords.shape, batch.point_labels.tolist()
    ((1, 2, 2), [[1.0, -1.0]])
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from samedge import graph_names
from samedge.errors import PromptError
from samedge.preprocess import ResizeLongestSide

__all__ = ["BOX_LABELS", "PAD_LABEL", "DecoderPrompts", "ObjectPrompt", "batch_prompts"]

# Labels SAM's prompt encoder gives box corners and padding points.
BOX_LABELS = (2.0, 3.0)
PAD_LABEL = -1.0


def _as_float_array(value: Any, name: str) -> np.ndarray:
    try:
        arr = np.array(value, dtype=np.float64, copy=True)
    except (TypeError, ValueError) as e:
        raise PromptError(
            f"{name}: got {type(value).__name__} that is not numeric ({e}); expected numbers"
        ) from e
    return arr


def _check_finite(arr: np.ndarray, name: str) -> None:
    if not np.all(np.isfinite(arr)):
        bad = np.argwhere(~np.isfinite(arr))[0].tolist()
        raise PromptError(
            f"{name}: got a NaN or infinite value at index {bad}; expected finite pixel values"
        )


def _check_points(
    point_coords: npt.ArrayLike | None, point_labels: npt.ArrayLike | None
) -> tuple[np.ndarray | None, np.ndarray | None]:
    if point_coords is None and point_labels is None:
        return None, None
    if point_coords is None:
        raise PromptError("point_labels: given without point_coords; pass both or neither")
    if point_labels is None:
        raise PromptError(
            "point_coords: given without point_labels; pass one label per point "
            "(1 foreground, 0 background)"
        )
    coords = _as_float_array(point_coords, "point_coords")
    labels = _as_float_array(point_labels, "point_labels")
    if coords.ndim != 2 or coords.shape[1] != 2:
        raise PromptError(
            f"point_coords: got shape {coords.shape}, expected (N, 2) (x, y) points; "
            "for one point pass [[x, y]]"
        )
    if labels.ndim != 1:
        raise PromptError(f"point_labels: got shape {labels.shape}, expected (N,)")
    if len(labels) != len(coords):
        raise PromptError(
            f"point_labels: got {len(labels)} labels for {len(coords)} points "
            f"(point_coords {coords.shape}); expected one label per point"
        )
    _check_finite(coords, "point_coords")
    bad = ~np.isin(labels, (0.0, 1.0))
    if np.any(bad):
        raise PromptError(
            f"point_labels: got {labels[bad].tolist()}, expected 0 (background) or "
            "1 (foreground); boxes are passed as box=, not as labels 2/3"
        )
    if len(coords) == 0:
        # SamPredictor treats an empty point set like no points at all.
        return None, None
    return coords, labels


def _check_box(box_like: npt.ArrayLike | None) -> np.ndarray | None:
    if box_like is None:
        return None
    box = _as_float_array(box_like, "box")
    if box.shape not in ((4,), (1, 4)):
        raise PromptError(
            f"box: got shape {box.shape}, expected (4,) XYXY for one object; "
            "pass several boxes to predict_batch as one ObjectPrompt each"
        )
    box = box.reshape(4)
    _check_finite(box, "box")
    x0, y0, x1, y1 = box.tolist()
    if x1 < x0 or y1 < y0:
        raise PromptError(
            f"box: got {[x0, y0, x1, y1]} with "
            f"{'x1 < x0' if x1 < x0 else 'y1 < y0'}; expected XYXY "
            "(x0, y0, x1, y1) with x0 <= x1 and y0 <= y1"
        )
    return box


def _check_mask(mask_input: npt.ArrayLike | None) -> np.ndarray | None:
    if mask_input is None:
        return None
    try:
        mask = np.array(mask_input, dtype=np.float32, copy=True)
    except (TypeError, ValueError) as e:
        raise PromptError(f"mask_input: not numeric ({e}); expected (1, 4h, 4w) logits") from e
    if mask.ndim != 3 or mask.shape[0] != 1 or mask.shape[1] != mask.shape[2]:
        raise PromptError(
            f"mask_input: got shape {mask.shape}, expected (1, L, L) low-resolution "
            "logits (e.g. low_res_logits[i][None] from an earlier predict)"
        )
    if not np.all(np.isfinite(mask)):
        raise PromptError("mask_input: contains NaN or infinite values; expected finite logits")
    return mask


@dataclass(frozen=True, eq=False, init=False)
class ObjectPrompt:
    """Prompts for one object, in the original frame's pixel coordinates.

    Field names and meanings are those of ``SamPredictor.predict``. Arrays are
    copied on construction (``point_coords``, ``point_labels`` and ``box`` as
    float64, ``mask_input`` as float32) and made read-only.

    Attributes:
        point_coords: ``(N, 2)`` (x, y) points, or ``None``.
        point_labels: ``(N,)`` labels, 1 foreground, 0 background; required
            with ``point_coords``.
        box: ``(4,)`` or ``(1, 4)`` XYXY box, or ``None``; stored as ``(4,)``.
        mask_input: ``(1, 4h, 4w)`` low-resolution logits from an earlier
            prediction (e.g. one of ``predict``'s ``low_res_logits``), or ``None``.

    Raises:
        PromptError: shapes or lengths do not match, labels are not 0/1, a
            coordinate is NaN/inf, ``x1 < x0`` or ``y1 < y0``, or there is
            neither a point nor a box.

    Example:
        >>> import numpy as np
        >>> ObjectPrompt(box=np.array([10, 10, 50, 40])).num_sparse
        2
    """

    point_coords: np.ndarray | None
    point_labels: np.ndarray | None
    box: np.ndarray | None
    mask_input: np.ndarray | None

    def __init__(
        self,
        point_coords: npt.ArrayLike | None = None,
        point_labels: npt.ArrayLike | None = None,
        box: npt.ArrayLike | None = None,
        mask_input: npt.ArrayLike | None = None,
    ) -> None:
        # A hand-written __init__ so callers may pass lists (typed ArrayLike)
        # while the stored fields are always validated, read-only arrays.
        coords, labels = _check_points(point_coords, point_labels)
        box_arr = _check_box(box)
        mask = _check_mask(mask_input)
        if coords is None and box_arr is None:
            raise PromptError(
                "prompt: got no points and no box, expected at least one point "
                "(point_coords + point_labels) or a box"
            )
        for name, arr in (
            ("point_coords", coords),
            ("point_labels", labels),
            ("box", box_arr),
            ("mask_input", mask),
        ):
            if arr is not None:
                arr.flags.writeable = False
            object.__setattr__(self, name, arr)

    @property
    def num_points(self) -> int:
        """Number of user points (0 when there are none)."""
        return 0 if self.point_coords is None else len(self.point_coords)

    @property
    def num_sparse(self) -> int:
        """Sparse prompt tokens this object needs: points + 2 box corners, or + 1 padding point."""
        return self.num_points + (2 if self.box is not None else 1)

    def check_inside(self, original_size: tuple[int, int], name: str = "prompt") -> None:
        """Raise :class:`PromptError` when a point or box corner lies outside the image.

        Args:
            original_size: ``(H, W)`` of the frame; the valid range is
                ``0 <= x <= W``, ``0 <= y <= H``.
            name: How to call this prompt in the message (e.g. ``"prompts[3]"``).
        """
        h, w = original_size
        if self.point_coords is not None:
            xs, ys = self.point_coords[:, 0], self.point_coords[:, 1]
            outside = (xs < 0) | (xs > w) | (ys < 0) | (ys > h)
            if np.any(outside):
                i = int(np.argmax(outside))
                raise PromptError(
                    f"{name}.point_coords[{i}]: got ({xs[i]:g}, {ys[i]:g}), outside the "
                    f"{w}×{h} (W×H) image; expected 0 <= x <= {w} and 0 <= y <= {h} "
                    "in (x, y) order; clip the points if this is intended"
                )
        if self.box is not None:
            x0, y0, x1, y1 = self.box.tolist()
            if x0 < 0 or y0 < 0 or x1 > w or y1 > h:
                raise PromptError(
                    f"{name}.box: got {[x0, y0, x1, y1]}, outside the {w}×{h} (W×H) image; "
                    f"expected XYXY within [0, {w}]×[0, {h}]; clip it with "
                    f"np.clip(box, 0, [{w}, {h}, {w}, {h}])"
                )


@dataclass(frozen=True, eq=False)
class DecoderPrompts:
    """The decoder's prompt inputs for a batch of B objects.

    Attributes:
        point_coords: float32 ``[B, N, 2]`` in the encoder's input frame.
        point_labels: float32 ``[B, N]``: 1, 0, 2/3 (box corners), -1 (padding).
        mask_input: float32 ``[B, 1, L, L]`` (zeros where an object has none).
        has_mask_input: float32 ``[B]``, 1 where the object has a mask input.
    """

    point_coords: np.ndarray
    point_labels: np.ndarray
    mask_input: np.ndarray
    has_mask_input: np.ndarray

    @property
    def num_objects(self) -> int:
        return int(self.point_coords.shape[0])

    def feeds(self) -> dict[str, np.ndarray]:
        """Name -> array for the decoder (``image_embeddings`` is added by the caller)."""
        return {
            graph_names.POINT_COORDS: self.point_coords,
            graph_names.POINT_LABELS: self.point_labels,
            graph_names.MASK_INPUT: self.mask_input,
            graph_names.HAS_MASK_INPUT: self.has_mask_input,
        }


def batch_prompts(
    prompts: Sequence[ObjectPrompt],
    original_size: tuple[int, int],
    transform: ResizeLongestSide,
    mask_size: int,
) -> DecoderPrompts:
    """Turn N objects' prompts into one decoder call's input tensors.

    Args:
        prompts: One :class:`ObjectPrompt` per object (at least one).
        original_size: ``(H, W)`` of the frame the prompts refer to.
        transform: Maps frame coordinates to the encoder's input frame.
        mask_size: Side ``L`` of the decoder's low-resolution masks (``4h``).

    Returns:
        The batched tensors; see the module docstring for the point order.

    Raises:
        PromptError: no prompts, a non-ObjectPrompt item, a point or box
            outside the image, or a ``mask_input`` of the wrong size.

    Example:
        >>> import numpy as np
        >>> from samedge.preprocess import ResizeLongestSide
        >>> objs = [ObjectPrompt(box=np.array([0, 0, 10, 10])),
        ...         ObjectPrompt(point_coords=[[5, 5], [1, 1]], point_labels=[1, 0])]
        >>> b = batch_prompts(objs, (20, 20), ResizeLongestSide(40), mask_size=16)
        >>> b.point_labels.tolist()
        [[2.0, 3.0, -1.0], [1.0, 0.0, -1.0]]
    """
    if isinstance(prompts, ObjectPrompt):
        raise PromptError("prompts: got one ObjectPrompt, expected a sequence; wrap it in [...]")
    prompts = list(prompts)
    if not prompts:
        raise PromptError("prompts: got an empty sequence, expected at least one ObjectPrompt")
    for i, p in enumerate(prompts):
        if not isinstance(p, ObjectPrompt):
            raise PromptError(
                f"prompts[{i}]: got {type(p).__name__}, expected an ObjectPrompt "
                "(ObjectPrompt(point_coords=..., point_labels=..., box=...))"
            )
        p.check_inside(original_size, f"prompts[{i}]")
        if p.mask_input is not None and p.mask_input.shape != (1, mask_size, mask_size):
            raise PromptError(
                f"prompts[{i}].mask_input: got shape {p.mask_input.shape}, expected "
                f"(1, {mask_size}, {mask_size}) for this model"
            )
    B = len(prompts)
    N = max(p.num_sparse for p in prompts)
    coords = np.zeros((B, N, 2), dtype=np.float64)
    labels = np.full((B, N), PAD_LABEL, dtype=np.float32)
    masks = np.zeros((B, 1, mask_size, mask_size), dtype=np.float32)
    has_mask = np.zeros((B,), dtype=np.float32)
    for i, p in enumerate(prompts):
        n = p.num_points
        if p.point_coords is not None and p.point_labels is not None:
            coords[i, :n] = p.point_coords
            labels[i, :n] = p.point_labels
        if p.box is not None:
            coords[i, n : n + 2] = p.box.reshape(2, 2)
            labels[i, n : n + 2] = BOX_LABELS
        if p.mask_input is not None:
            masks[i] = p.mask_input
            has_mask[i] = 1.0
    # One vectorised transform for every point and corner; padding stays at
    # (0, 0) since scaling 0 gives 0, exactly SAM's padding point.
    coords = transform.apply_coords(coords, original_size)
    return DecoderPrompts(
        point_coords=coords.astype(np.float32),
        point_labels=labels,
        mask_input=masks,
        has_mask_input=has_mask,
    )
