"""What the mask generator asks of a model: one image, a batch of single clicks, upsampling.

:class:`~samedge.generator.MaskGenerator` runs over two kinds of model directory:

* SAM-family (two graphs: SAM, MobileSAM, EfficientViT-SAM, SAM-HQ,
  samedge_tiny) through a :class:`~samedge.Predictor`: the frame is resized
  longest-side and padded, masks are upsampled as ``Sam.postprocess_masks``
  does (in the model's own upsampling square, see
  :attr:`~samedge.models.ModelSpec.mask_upsample_size`).
* SAM 2-family (SAM 2.1, EdgeTAM) through a
  :class:`~samedge.memory_predictor.MemoryPredictor`: a prompted image without
  memory decodes from the encoder's ``no_memory_features`` with the high-res
  features, as ``SAM2ImagePredictor`` does; the frame is squashed to S x S and
  masks are upsampled straight to the frame.

One difference from ``SAM2ImagePredictor`` is the exported decoder's: it
replaces a mask whose object score says "no object" with SAM 2's
``NO_OBJ_SCORE`` (what the video predictor does), so such a click yields no
mask here, where Meta's image predictor returns the raw mask.

Example:
    >>> prompter = open_prompter("samedge_tiny")            # doctest: +SKIP
    >>> prompter.set_image(image)                           # doctest: +SKIP
    >>> scores, low = prompter.decode_points(np.array([[40.0, 60.0]]))  # doctest: +SKIP
    >>> scores.shape, low.shape                             # doctest: +SKIP
    ((1, 3), (1, 3, 64, 64))
"""

from __future__ import annotations

import abc
import os
from types import TracebackType
from typing import Any

import numpy as np

from samedge import memory_model as mm
from samedge.errors import InputError
from samedge.graph_names import IOU_PREDICTIONS, LOW_RES_MASKS
from samedge.model_dir import ModelCard, read_model_dir
from samedge.postprocess import upscale_masks
from samedge.preprocess import get_preprocess_shape
from samedge.prompts import ObjectPrompt

__all__ = ["ImagePrompter", "Sam2Prompter", "SamPrompter", "as_prompter", "open_prompter"]


class ImagePrompter(abc.ABC):
    """One image at a time, decoded for single foreground clicks (SAM's multimask outputs)."""

    #: The object this prompter runs on (a Predictor or MemoryPredictor).
    predictor: Any

    @property
    def backend_name(self) -> str:
        """The backend running the graphs (``"onnxruntime"``, ...)."""
        return str(getattr(self.predictor, "backend_name", ""))

    @property
    def card(self) -> ModelCard | None:
        """The model card (for the decoder's memory per point), if the predictor has one."""
        return getattr(self.predictor, "card", None)

    @property
    def max_objects_per_call(self) -> int | None:
        """Most clicks one decoder call may carry (a TensorRT profile), else ``None``."""
        limit = getattr(self.predictor, "max_objects_per_call", None)
        return limit if isinstance(limit, int) and not isinstance(limit, bool) else None

    @property
    def original_size(self) -> tuple[int, int]:
        """``(H, W)`` of the current image."""
        size: tuple[int, int] = self.predictor.original_size
        return size

    def set_image(self, image: np.ndarray) -> None:
        """Encode one validated ``H×W×3`` uint8 RGB image."""
        self.predictor.set_image(image)

    def reset_image(self) -> None:
        """Forget the current image."""
        self.predictor.reset_image()

    @abc.abstractmethod
    def decode_points(self, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Decode one foreground click per row of ``points`` (``[N, 2]`` (x, y) image pixels).

        Returns:
            ``scores`` ``[N, 3]`` predicted IoU and ``low_res`` ``[N, 3, L, L]``
            float32 logits: the three multimask outputs per click.
        """

    @abc.abstractmethod
    def upscale(self, low_res: np.ndarray) -> np.ndarray:
        """``[k, L, L]`` low-resolution logits -> ``[k, H, W]`` float32 logits of the image."""


class SamPrompter(ImagePrompter):
    """A SAM-family :class:`~samedge.Predictor` (anything with its ``predict_low_res``).

    Masks are upsampled exactly as :meth:`~samedge.Predictor.predict` does:
    to the model's upsampling square (its card's ``mask_upsample_size``, else
    the encoder's input size), cropped to the frame's extent there, then to
    the frame.
    """

    def __init__(self, predictor: Any) -> None:
        self.predictor = predictor

    def decode_points(self, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        prompts = [ObjectPrompt(point_coords=p[None], point_labels=[1]) for p in points]
        scores, low_res = self.predictor.predict_low_res(prompts, multimask_output=True)
        return scores, low_res

    def upscale(self, low_res: np.ndarray) -> np.ndarray:
        p = self.predictor
        card = self.card
        square = int(getattr(card, "mask_upsample_size", None) or p.image_size)
        if square == p.image_size:
            crop = p.input_size
        else:
            h, w = p.original_size
            crop = get_preprocess_shape(h, w, square)
        # upscale_masks resizes mask by mask (OpenCV's fast single-channel path).
        return upscale_masks(low_res, square, crop, p.original_size)


class Sam2Prompter(ImagePrompter):
    """A SAM 2-family :class:`~samedge.memory_predictor.MemoryPredictor`, without memory.

    Each click is SAM 2's sparse prompt (the point, then one padding point),
    decoded from ``no_memory_features`` in batches; masks are upsampled
    bilinearly from ``L×L`` straight to the frame (SAM 2's ``postprocess_masks``).
    """

    def __init__(self, predictor: Any) -> None:
        self.predictor = predictor

    def decode_points(self, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        p = self.predictor
        n = len(points)
        if n == 0:
            raise InputError("decode_points: got no points, expected at least one")
        side = p.mask_size
        coords = np.zeros((n, 2, 2), np.float32)
        coords[:, 0] = p.to_model_coords(np.asarray(points, np.float64))
        labels = np.tile(np.array([1.0, -1.0], np.float32), (n, 1))
        features = p.features[mm.NO_MEMORY_FEATURES]
        out = p.decode(
            np.ascontiguousarray(np.broadcast_to(features, (n, *features.shape[1:]))),
            coords,
            labels,
            np.zeros((n, 1, side, side), np.float32),
            np.zeros(n, np.float32),
        )
        # SAM 2's multimask outputs are the mask tokens 1..3, as SAM's.
        low_res = np.ascontiguousarray(out[LOW_RES_MASKS][:, 1:], dtype=np.float32)
        scores = np.ascontiguousarray(out[IOU_PREDICTIONS][:, 1:], dtype=np.float32)
        return scores, low_res

    def upscale(self, low_res: np.ndarray) -> np.ndarray:
        # Upsampling L×L to H×W is what upscale_masks does with a crop of the whole square.
        side = low_res.shape[-1]
        return upscale_masks(low_res, side, (side, side), self.original_size)


def as_prompter(predictor: Any) -> ImagePrompter:
    """The prompter of ``predictor``: a Predictor, a MemoryPredictor, or a prompter as is.

    Raises:
        InputError: none of those.
    """
    from samedge.memory_predictor import MemoryPredictor

    if isinstance(predictor, ImagePrompter):
        return predictor
    if isinstance(predictor, MemoryPredictor):
        return Sam2Prompter(predictor)
    if callable(getattr(predictor, "predict_low_res", None)):
        return SamPrompter(predictor)
    raise InputError(
        f"predictor: got {type(predictor).__name__}, expected a samedge Predictor "
        "(SAM-family model) or MemoryPredictor (SAM 2.1 / EdgeTAM)"
    )


class _Opened:
    """A prompter over a predictor this module opened, closed with it."""

    def __init__(self, prompter: ImagePrompter) -> None:
        self.prompter = prompter

    def __enter__(self) -> ImagePrompter:
        return self.prompter

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.prompter.predictor.close()


def open_prompter(
    model: str | os.PathLike[str],
    backend: str = "auto",
    precision: str | None = None,
    device: str | None = None,
) -> _Opened:
    """Open any registered model's directory for image prompting (a context manager).

    The card's family picks the predictor: SAM 2.1 / EdgeTAM exports open as a
    MemoryPredictor, every other model as a Predictor.

    Raises:
        ModelDirError: not a model directory, or not of the requested precision.
    """
    from samedge.predictor import Predictor, resolve_model

    path = resolve_model(model)
    if read_model_dir(path).family == mm.FAMILY_SAM2:
        from samedge.memory_predictor import MemoryPredictor

        return _Opened(Sam2Prompter(MemoryPredictor(path, backend, precision, device)))
    return _Opened(SamPrompter(Predictor(path, backend, precision, device)))
