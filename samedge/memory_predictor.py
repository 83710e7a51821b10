"""The predictor side of memory tracking: a SAM 2-family model directory on a backend.

:class:`MemoryPredictor` opens the four graphs of a SAM 2.1 / EdgeTAM export
(:mod:`samedge.memory_model`) through :func:`samedge.runtimes.open_backend`,
runs the image encoder **once per frame** in :meth:`MemoryPredictor.set_image`,
and offers the three per-object graphs as batched calls. It holds no memory:
:class:`samedge.stream.memory.MemoryTracker` owns the bank and calls these.

Frames are resized to the model's S x S square as SAM 2 does (no letterbox:
SAM 2's video predictor squashes the frame), prompts are scaled by S/W and
S/H, and masks are upsampled from the low-resolution logits to the frame.
No torch: numpy and OpenCV only.

Example:
    >>> predictor = MemoryPredictor("out/sam2.1_hiera_tiny")    # doctest: +SKIP
    >>> predictor.set_image(frame)                               # doctest: +SKIP
    >>> predictor.original_size                                  # doctest: +SKIP
    (480, 640)
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from types import TracebackType
from typing import Any

import cv2
import numpy as np

from samedge import memory_model as mm
from samedge.errors import InputError, ModelDirError, PredictorStateError
from samedge.graph_names import (
    HAS_MASK_INPUT,
    IMAGE,
    IMAGE_EMBEDDINGS,
    MASK_INPUT,
    POINT_COORDS,
    POINT_LABELS,
)
from samedge.model_dir import PRECISIONS, ModelCard, read_model_dir
from samedge.predictor import resolve_model
from samedge.preprocess import validate_image

__all__ = ["MemoryPredictor", "resize_square"]

log = logging.getLogger(__name__)


def resize_square(image: np.ndarray, size: int) -> np.ndarray:
    """An ``H×W×3`` uint8 frame resized to ``size x size`` (SAM 2's input, aspect not kept).

    Area averaging when shrinking, bicubic when enlarging: close to the PIL
    bicubic resize of SAM 2's video loader (within a few grey levels).
    """
    h, w = image.shape[:2]
    shrink = size < h or size < w
    return cv2.resize(
        image, (size, size), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_CUBIC
    )


class MemoryPredictor:
    """The four graphs of a SAM 2-family model directory, one image encoding per frame.

    Args:
        model: Model directory written by ``samedge export sam2.1_*`` / ``edgetam``.
        backend: ``"auto"``, ``"onnxruntime"``, ``"openvino"`` or ``"tensorrt"``
            (or a :class:`~samedge.runtimes.BackendChoice`); decided once for all
            four graphs, :attr:`backend_choice` says which and why.
        precision: ``None`` runs the directory as it is; ``"fp32"``, ``"fp16"``
            or ``"int8"`` asserts that the directory holds that precision.
        device: Backend device; ``None`` lets the backend choose.
        config: Backend configuration passed to ``open_backend`` for every graph.

    Raises:
        ModelDirError: not a model directory, one of the SAM (two-graph) family,
            or not of the requested precision.
    """

    def __init__(
        self,
        model: str | os.PathLike[str],
        backend: Any = "auto",
        precision: str | None = None,
        device: str | None = None,
        *,
        config: Any = None,
    ) -> None:
        from samedge.runtimes import open_backend, resolve_backend

        self.model_dir = resolve_model(model)
        self.card: ModelCard = read_model_dir(self.model_dir)
        if precision is not None:
            if precision not in PRECISIONS:
                raise InputError(
                    f"precision: got {precision!r}, expected None or one of {', '.join(PRECISIONS)}"
                )
            if precision != self.card.precision:
                raise ModelDirError(
                    f"model {self.model_dir}: holds {self.card.precision}, {precision} was asked "
                    f"for; build it with `samedge build {self.model_dir} --precision {precision}` "
                    "and pass the built directory (or leave precision=None)"
                )
        if self.card.family != mm.FAMILY_SAM2 or self.card.memory is None:
            raise ModelDirError(
                f"model {self.model_dir}: holds {self.card.model} (family {self.card.family!r}), "
                "which has no memory graphs; memory tracking needs a SAM 2.1 or EdgeTAM export "
                "(`samedge export sam2.1_hiera_tiny ...`) or the built-in samedge_tiny_track, "
                "or use the re-prompt tracker"
            )
        self.settings = mm.MemorySettings.from_dict(self.card.memory, f"{self.model_dir} memory")
        files = {
            "encoder": self.card.encoder,
            "memory_attention": self.card.memory_attention,
            "decoder": self.card.decoder,
            "memory_encoder": self.card.memory_encoder,
        }
        self.backend_choice = resolve_backend(backend, device, config)
        self._graphs: dict[str, Any] = {}
        try:
            for key, name in files.items():
                self._graphs[key] = open_backend(
                    self.model_dir / str(name), self.backend_choice, config=config
                )
        except BaseException:
            self.close()
            raise
        self._features: dict[str, np.ndarray] | None = None
        self._original_size: tuple[int, int] | None = None

    # -- frame ---------------------------------------------------------------------

    @property
    def image_size(self) -> int:
        """Side S of the encoder's square input."""
        return self.card.image_size

    @property
    def mask_size(self) -> int:
        """Side of the low-resolution masks (S / 4)."""
        return self.card.low_res_mask_size

    @property
    def backend_name(self) -> str:
        """Name of the backend running the graphs (``"onnxruntime"``, ...)."""
        return str(self._graphs["encoder"].name)

    @property
    def backend_reason(self) -> str:
        """Why that backend (and device) runs the model, in one line."""
        return str(self.backend_choice.reason)

    @property
    def precision(self) -> str:
        """Precision the image encoder computes in (loads its engine)."""
        self._graphs["encoder"].load()
        return str(self._graphs["encoder"].precision)

    @property
    def device(self) -> str:
        """Device the image encoder runs on, in the backend's words (loads its engine)."""
        self._graphs["encoder"].load()
        return str(self._graphs["encoder"].device)

    @property
    def max_objects_per_call(self) -> int | None:
        """Most objects one per-object graph call may carry (a TensorRT engine's
        ``TensorRTConfig.max_objects``); ``None`` when the backend has no limit."""
        limit = getattr(getattr(self._graphs["decoder"], "config", None), "max_objects", None)
        return limit if isinstance(limit, int) and not isinstance(limit, bool) else None

    @property
    def original_size(self) -> tuple[int, int]:
        """``(H, W)`` of the current frame."""
        if self._original_size is None:
            raise PredictorStateError("original_size: no image is set; call set_image(image)")
        return self._original_size

    @property
    def features(self) -> Mapping[str, np.ndarray]:
        """The current frame's encoder outputs, by graph name."""
        if self._features is None:
            raise PredictorStateError("features: no image is set; call set_image(image)")
        return self._features

    def set_image(self, image: np.ndarray, image_format: str = "RGB") -> None:
        """Run the image encoder on one frame (once, whatever the number of objects).

        Raises:
            ImageError: wrong dtype, shape or channels.
            InputError: ``image_format`` other than ``"RGB"``/``"BGR"``.
        """
        rgb = validate_image(image, image_format)
        square = resize_square(rgb, self.image_size)
        x = np.ascontiguousarray(square.transpose(2, 0, 1)[None], dtype=np.float32)
        self._features = None
        out = self._graphs["encoder"].infer({IMAGE: x})
        self._features = {k: out[k] for k in mm.ENCODER_OUTPUTS}
        self._original_size = (int(rgb.shape[0]), int(rgb.shape[1]))

    def reset_image(self) -> None:
        """Forget the current frame."""
        self._features = None
        self._original_size = None

    # -- per-object graphs (B objects per call) ---------------------------------------

    def attend(
        self,
        memory_bank: np.ndarray,
        memory_tpos: np.ndarray,
        pointer_bank: np.ndarray,
        pointer_offsets: np.ndarray,
    ) -> np.ndarray:
        """Memory attention: ``[B, C, h, w]`` features conditioned on each object's bank."""
        out = self._graphs["memory_attention"].infer(
            {
                mm.VISION_FEATURES: self.features[mm.VISION_FEATURES],
                mm.MEMORY_BANK: memory_bank,
                mm.MEMORY_BANK_TPOS: memory_tpos,
                mm.POINTER_BANK: pointer_bank,
                mm.POINTER_BANK_OFFSETS: pointer_offsets,
            }
        )
        return out[mm.CONDITIONED_FEATURES]  # type: ignore[no-any-return]

    def decode(
        self,
        embeddings: np.ndarray,
        point_coords: np.ndarray,
        point_labels: np.ndarray,
        mask_input: np.ndarray,
        has_mask_input: np.ndarray,
    ) -> dict[str, np.ndarray]:
        """Prompt encoder + mask decoder for B objects (coordinates already in the S frame)."""
        f = self.features
        return self._graphs["decoder"].infer(  # type: ignore[no-any-return]
            {
                IMAGE_EMBEDDINGS: embeddings,
                mm.HIGH_RES_FEATURES_0: f[mm.HIGH_RES_FEATURES_0],
                mm.HIGH_RES_FEATURES_1: f[mm.HIGH_RES_FEATURES_1],
                POINT_COORDS: point_coords,
                POINT_LABELS: point_labels,
                MASK_INPUT: mask_input,
                HAS_MASK_INPUT: has_mask_input,
            }
        )

    def encode_memory(
        self, mask_logits: np.ndarray, from_prompt: np.ndarray, object_scores: np.ndarray
    ) -> np.ndarray:
        """Memory encoder: each object's ``[T, Cm]`` memory entry of this frame."""
        graph = self._graphs["memory_encoder"]
        feeds = {
            mm.VISION_FEATURES: self.features[mm.VISION_FEATURES],
            mm.MASK_LOGITS: mask_logits,
            mm.MASK_FROM_PROMPT: from_prompt,
            mm.OBJECT_SCORE_LOGITS: object_scores,
        }
        # EdgeTAM's memory has no no-object embedding: its graph takes no score.
        names = {spec.name for spec in graph.inputs}
        out = graph.infer({k: v for k, v in feeds.items() if k in names})
        return out[mm.MEMORY_FEATURES]  # type: ignore[no-any-return]

    def to_model_coords(self, coords: np.ndarray) -> np.ndarray:
        """Frame pixels (x, y) -> the S x S encoder frame (SAM 2: x*S/W, y*S/H)."""
        h, w = self.original_size
        scale = np.array([self.image_size / w, self.image_size / h])
        return np.asarray(coords, np.float64) * scale

    def upsample(self, low_res: np.ndarray) -> np.ndarray:
        """``[L, L]`` logits -> ``[H, W]`` logits of the frame (bilinear, half-pixel centres)."""
        h, w = self.original_size
        return cv2.resize(low_res, (w, h), interpolation=cv2.INTER_LINEAR)  # type: ignore[no-any-return]

    # -- lifetime ---------------------------------------------------------------------

    def close(self) -> None:
        """Release every engine."""
        self.reset_image()
        for graph in self._graphs.values():
            graph.close()

    def __enter__(self) -> MemoryPredictor:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"MemoryPredictor({str(self.model_dir)!r}, model={self.card.model!r})"
