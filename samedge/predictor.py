"""The Predictor: segment_anything's ``SamPredictor`` over any samedge backend.

Method names, arguments, coordinate handling and output shapes are those of
``segment_anything.SamPredictor``, so code written for it can swap this in:
``set_image`` once per frame, then any number of ``predict`` calls on the
cached embedding. :meth:`Predictor.predict_batch` runs N objects through one
decoder call. Everything around the two graphs is numpy/OpenCV (no torch).

``set_image`` is :meth:`Predictor.encode` (frame -> :class:`ImageEmbedding`,
the predictor's current frame untouched) followed by
:meth:`Predictor.set_embedding` (install it). Split, they let a video
pipeline encode frame k+1 on one thread while frame k is decoded on another.

Differences from SamPredictor, all raising a typed error instead of going on:
points and boxes must lie inside the frame, labels must be 0/1, a mask alone
is not a prompt (see :mod:`samedge.prompts`); 4-channel and non-uint8 frames
are refused (see :mod:`samedge.preprocess`). Outputs are numpy arrays.

Example:
    >>> import numpy as np
    >>> from samedge import Predictor
    >>> with Predictor("out/mobile_sam") as predictor:                # doctest: +SKIP
    ...     predictor.set_image(frame)                                 # H×W×3 uint8 RGB
    ...     masks, scores, logits = predictor.predict(
    ...         point_coords=np.array([[500, 375]]), point_labels=np.array([1]))
    ...     best = masks[np.argmax(scores)]                            # H×W bool
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, NoReturn

import numpy as np

from samedge import graph_names
from samedge._registry import unknown_name_message
from samedge.errors import (
    InputError,
    ModelDirError,
    NonFiniteOutputError,
    PredictorStateError,
)
from samedge.model_dir import PRECISIONS, ModelCard, read_model_dir
from samedge.models import MODELS
from samedge.postprocess import postprocess_masks, select_masks
from samedge.preprocess import (
    Resample,
    ResizeLongestSide,
    get_preprocess_shape,
    preprocess_image,
    validate_image,
)
from samedge.prompts import ObjectPrompt, batch_prompts

__all__ = ["BUILTIN_MODELS", "ImageEmbedding", "Predictor", "resolve_model"]

log = logging.getLogger(__name__)

# Built-in model name -> directory relative to the samedge package. Another
# model ships by adding its directory under samedge/assets/ and a line here.
BUILTIN_MODELS: dict[str, str] = {
    "samedge_tiny": "assets/samedge_tiny",
    "samedge_tiny_track": "assets/samedge_tiny_track",
}

_ENCODER_IN = graph_names.IMAGE
_ENCODER_OUT = graph_names.IMAGE_EMBEDDINGS
_DECODER_IN = graph_names.DECODER_INPUTS
_DECODER_OUT = graph_names.DECODER_OUTPUTS

#: Bytes of working memory ``predict_batch`` may use beyond the arrays it returns;
#: more objects than fit are decoded in several calls (same results).
DECODE_BUDGET = 256 * 2**20


def resolve_model(model: str | os.PathLike[str]) -> Path:
    """Turn a model directory or a built-in model name into a directory path.

    An existing directory wins over a built-in of the same name.

    Args:
        model: A directory written by ``samedge export`` / ``samedge build``,
            or a name in :data:`BUILTIN_MODELS` (``"samedge_tiny"``).

    Returns:
        The model directory (its contents are checked by :func:`read_model_dir`).

    Raises:
        ModelDirError: neither an existing directory nor a built-in name, or a
            built-in whose files are missing from this installation.

    Example:
        >>> resolve_model("samedge_tiny")                  # doctest: +SKIP
        PosixPath('.../site-packages/samedge/assets/samedge_tiny')
    """
    if not isinstance(model, (str, os.PathLike)):
        raise ModelDirError(
            f"model: got {type(model).__name__}, expected a model directory path or a "
            f"built-in model name ({', '.join(sorted(BUILTIN_MODELS))})"
        )
    path = Path(model)
    if path.is_dir():
        return path
    name = os.fspath(model)
    if name in BUILTIN_MODELS:
        builtin = Path(__file__).resolve().parent / BUILTIN_MODELS[name]
        if builtin.is_dir():
            return builtin
        raise ModelDirError(
            f"built-in model {name!r}: its files are not in this installation (expected "
            f"{builtin}); reinstall samedge, or pass an exported model directory"
        )
    if path.exists():
        raise ModelDirError(
            f"model {path}: is a file, expected a model directory (encoder.onnx, "
            "decoder.onnx, samedge.json); pass the directory that holds it"
        )
    if name in MODELS:
        hint = (
            f" {name!r} is an architecture, not a built model: export it first with "
            f"`samedge export {name} --checkpoint FILE --output DIR` and pass DIR."
        )
    else:
        hint = " " + unknown_name_message("built-in model", name, BUILTIN_MODELS)
    raise ModelDirError(f"model {name!r}: no such directory.{hint}")


@dataclass(frozen=True, eq=False)
class ImageEmbedding:
    """One frame's image embedding and the geometry needed to decode prompts on it.

    Made by :meth:`Predictor.encode`, installed with :meth:`Predictor.set_embedding`.

    Attributes:
        features: float32 ``[1, C, h, w]`` encoder output (read-only when made
            by :meth:`Predictor.encode`).
        original_size: ``(H, W)`` of the frame.
        input_size: ``(h, w)`` of the frame resized for the encoder (longest side
            ``image_size``).
        image_size: Side of the encoder's square input it was computed with.
        extras: The encoder's other outputs, which the decoder takes by the same
            names (SAM-HQ's ``hq_features``; see :mod:`samedge.graph_names`);
            empty for SAM's two-graph contract.

    Raises:
        InputError: fields that do not fit together (wrong dtype or rank,
            an ``input_size`` that is not ``original_size`` resized to ``image_size``).
    """

    features: np.ndarray
    original_size: tuple[int, int]
    input_size: tuple[int, int]
    image_size: int
    extras: Mapping[str, np.ndarray] = field(default_factory=dict)

    def __post_init__(self) -> None:
        f = self.features
        if not isinstance(f, np.ndarray) or f.dtype != np.float32 or f.ndim != 4 or len(f) != 1:
            got = f"{f.dtype} {f.shape}" if isinstance(f, np.ndarray) else type(f).__name__
            raise InputError(
                f"features: got {got}, expected a float32 [1, C, h, w] array; "
                "make embeddings with Predictor.encode(image)"
            )
        for name, value in self.extras.items():
            if not isinstance(value, np.ndarray) or value.dtype != np.float32 or len(value) != 1:
                raise InputError(
                    f"extras[{name!r}]: got {type(value).__name__}, expected a float32 array "
                    "of batch 1; make embeddings with Predictor.encode(image)"
                )
        for name in ("original_size", "input_size"):
            size = getattr(self, name)
            if (
                not isinstance(size, tuple)
                or len(size) != 2
                or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in size)
            ):
                raise InputError(f"{name}: got {size!r}, expected (height, width) positive ints")
        if (
            isinstance(self.image_size, bool)
            or not isinstance(self.image_size, int)
            or self.image_size <= 0
        ):
            raise InputError(f"image_size: got {self.image_size!r}, expected a positive int")
        expected = get_preprocess_shape(*self.original_size, self.image_size)
        if self.input_size != expected:
            raise InputError(
                f"input_size: got {self.input_size}, expected {expected} (original_size "
                f"{self.original_size} resized to longest side {self.image_size}); "
                "make embeddings with Predictor.encode(image)"
            )


class Predictor:
    """SamPredictor-compatible mask prediction on an exported model directory.

    Opens ``encoder.onnx`` and ``decoder.onnx`` through
    :func:`samedge.runtimes.open_backend`. Engines load lazily (on the first
    :meth:`set_image`), so creating a Predictor is cheap. Not thread-safe,
    with one exception: :meth:`encode` runs only the encoder and
    :meth:`set_embedding` / :meth:`predict` / :meth:`predict_batch` only the
    decoder, two separate backend objects, so one thread may encode the next
    frame while another predicts on the current one. Never call
    :meth:`encode` or :meth:`set_image` from two threads at once.

    Args:
        model: Model directory or built-in model name (see :func:`resolve_model`).
        backend: ``"auto"``, ``"onnxruntime"``, ``"openvino"`` or ``"tensorrt"``
            (or a :class:`~samedge.runtimes.BackendChoice`); chosen once, for both
            graphs: :attr:`backend_choice` holds the choice and its reason.
        precision: ``None`` runs the directory as it is; ``"fp32"``, ``"fp16"``
            or ``"int8"`` asserts that the directory holds that precision.
        device: Backend device (e.g. ``"CPU"``, ``"GPU"``, ``"cuda:0"``);
            ``None`` lets the backend choose.
        config: Backend configuration passed to ``open_backend`` for both graphs.
        resample: Frame resize filter: :attr:`~samedge.preprocess.Resample.EXACT`
            (bit-identical to SamPredictor's PIL resize; Pillow's own C code
            where Pillow is importable) or ``FAST`` (OpenCV, several times
            faster on large frames, within a few grey levels).
        mask_resample: How masks go to the frame: ``EXACT`` step by step as
            ``Sam.postprocess_masks``; ``FAST`` in one bilinear resize of the
            logits' crop (up to several times less CPU time, differing on
            ~0.02% of pixels at mask edges; see
            :func:`~samedge.postprocess.upscale_masks`). ``None`` follows ``resample``.

    Raises:
        ModelDirError: the model is missing, incomplete, too new, or not of
            the requested precision.

    Example:
        >>> predictor = Predictor("samedge_tiny", backend="onnxruntime")   # doctest: +SKIP
        >>> predictor.set_image(frame)                                      # doctest: +SKIP
        >>> masks, scores, _ = predictor.predict(box=np.array([10, 20, 200, 180]),
        ...                                      multimask_output=False)   # doctest: +SKIP
    """

    def __init__(
        self,
        model: str | os.PathLike[str],
        backend: str = "auto",
        precision: str | None = None,
        device: str | None = None,
        *,
        config: Any = None,
        resample: Resample = Resample.EXACT,
        mask_resample: Resample | None = None,
    ) -> None:
        from samedge.runtimes import open_backend, resolve_backend

        self.model_dir = resolve_model(model)
        self.card: ModelCard = read_model_dir(self.model_dir)
        if self.card.family != "sam":
            raise ModelDirError(
                f"model {self.model_dir}: holds {self.card.model}, a SAM 2-family model "
                "(four graphs with a memory); open it with "
                "samedge.memory_predictor.MemoryPredictor, or track with it through "
                "samedge.stream / `samedge run --model DIR` (memory tracking)"
            )
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
        if not isinstance(resample, Resample):
            raise InputError(
                f"resample: got {resample!r}, expected Resample.EXACT or Resample.FAST"
            )
        if mask_resample is not None and not isinstance(mask_resample, Resample):
            raise InputError(
                f"mask_resample: got {mask_resample!r}, expected Resample.EXACT, "
                "Resample.FAST or None"
            )
        self.resample = resample
        self.mask_resample = resample if mask_resample is None else mask_resample
        self.transform = ResizeLongestSide(self.card.image_size)
        # One decision for both graphs (``auto`` probes the machine once), kept so
        # callers can say which backend runs the model and why.
        self.backend_choice = resolve_backend(backend, device, config)
        self._encoder = open_backend(
            self.model_dir / self.card.encoder, self.backend_choice, config=config
        )
        try:
            self._decoder = open_backend(
                self.model_dir / self.card.decoder, self.backend_choice, config=config
            )
        except BaseException:
            self._encoder.close()
            raise
        self._checked = False
        self._input_buffer: np.ndarray | None = None
        self._features: np.ndarray | None = None
        self._extras: dict[str, np.ndarray] = {}
        # Decoder inputs the encoder also outputs (SAM-HQ), found by _check_graphs.
        self._extra_names: tuple[str, ...] = ()
        self._original_size: tuple[int, int] | None = None
        self._input_size: tuple[int, int] | None = None

    # -- properties ----------------------------------------------------------------

    @property
    def backend_name(self) -> str:
        """Name of the backend running the graphs (``"onnxruntime"``, ...)."""
        return self._encoder.name

    @property
    def backend_reason(self) -> str:
        """Why that backend (and device) runs the model, in one line."""
        return self.backend_choice.reason

    @property
    def precision(self) -> str:
        """Precision the encoder actually computes in (e.g. ``"bf16"`` on OpenVINO/AMX).

        Loads the engine if it is not loaded yet (the backend decides at load).
        """
        self._encoder.load()
        return self._encoder.precision

    @property
    def device(self) -> str:
        """Device the encoder runs on, in the backend's words (loads the engine)."""
        self._encoder.load()
        return self._encoder.device

    @property
    def max_objects_per_call(self) -> int | None:
        """Most objects one decoder call may carry; ``None`` when the backend has no limit.

        A TensorRT engine is built for at most ``TensorRTConfig.max_objects``
        objects; ONNX Runtime and OpenVINO take any batch.
        """
        limit = getattr(getattr(self._decoder, "config", None), "max_objects", None)
        return limit if isinstance(limit, int) and not isinstance(limit, bool) else None

    @property
    def image_size(self) -> int:
        """Side of the encoder's square input."""
        return self.card.image_size

    @property
    def mask_size(self) -> int:
        """Side of the decoder's low-resolution masks (256 for SAM)."""
        return self.card.low_res_mask_size

    @property
    def is_image_set(self) -> bool:
        """Whether :meth:`set_image` or :meth:`set_embedding` gave an embedding to predict from."""
        return self._features is not None

    @property
    def original_size(self) -> tuple[int, int]:
        """``(H, W)`` of the current frame."""
        return self._require_image("original_size")[1]

    @property
    def input_size(self) -> tuple[int, int]:
        """``(h, w)`` of the current frame resized for the encoder (longest side S)."""
        return self._require_image("input_size")[2]

    # -- SamPredictor API ----------------------------------------------------------

    def set_image(self, image: np.ndarray, image_format: str = "RGB") -> None:
        """Compute and cache the image embedding of one frame.

        Args:
            image: ``H×W×3`` uint8 frame (grayscale ``H×W``/``H×W×1`` is
                repeated into 3 channels; see :mod:`samedge.preprocess`).
            image_format: ``"RGB"`` or ``"BGR"`` (e.g. OpenCV frames).

        Raises:
            ImageError: wrong dtype, shape or channels, empty frame.
            InputError: ``image_format`` other than ``"RGB"``/``"BGR"``.
            NonFiniteOutputError: the encoder returned NaN or inf (a broken
                engine or compiled-blob cache); its cache entry is removed.
        """
        # Validate before dropping the previous embedding, so a bad frame
        # leaves the predictor as it was.
        x, original_size, input_size = self._prepare(image, image_format)
        # Then forget it before the encoder runs, as SamPredictor does: a failing
        # encoder leaves no image set rather than the previous frame's.
        self.reset_image()
        self._install(self._run_encoder(x, original_size, input_size))
        log.debug("set_image: %s -> input %s", original_size, input_size)

    def encode(self, image: np.ndarray, image_format: str = "RGB") -> ImageEmbedding:
        """Compute one frame's embedding without changing the current one.

        ``set_image(image)`` is ``set_embedding(encode(image))``. Only the encoder
        runs, so another thread may meanwhile :meth:`predict` on the current
        embedding (see the class notes on threads).

        Args:
            image: ``H×W×3`` uint8 frame (see :meth:`set_image`).
            image_format: ``"RGB"`` or ``"BGR"``.

        Returns:
            The frame's :class:`ImageEmbedding`; its ``features`` are read-only.

        Raises:
            ImageError: wrong dtype, shape or channels, empty frame.
            InputError: ``image_format`` other than ``"RGB"``/``"BGR"``.

        Example:
            >>> emb = predictor.encode(next_frame)     # on a worker thread  # doctest: +SKIP
            >>> predictor.set_embedding(emb)                             # doctest: +SKIP
            >>> masks, scores, _ = predictor.predict(box=box)            # doctest: +SKIP
        """
        x, original_size, input_size = self._prepare(image, image_format)
        return self._run_encoder(x, original_size, input_size)

    def set_embedding(self, embedding: ImageEmbedding) -> None:
        """Make ``embedding`` (from :meth:`encode`) the current frame to predict on.

        Args:
            embedding: An embedding this predictor's model computed.

        Raises:
            InputError: not an :class:`ImageEmbedding`, or one computed by a
                model with another input size or embedding shape.
        """
        if not isinstance(embedding, ImageEmbedding):
            raise InputError(
                f"embedding: got {type(embedding).__name__}, expected an ImageEmbedding "
                "from Predictor.encode(image)"
            )
        expected = (1, *self.card.embedding_shape)
        if embedding.image_size != self.card.image_size or embedding.features.shape != expected:
            raise InputError(
                f"embedding: computed for a {embedding.image_size}-px encoder with features "
                f"{embedding.features.shape}; this predictor's model {self.card.model!r} takes "
                f"{self.card.image_size} px and makes {expected}; encode the frame with this "
                "predictor"
            )
        self._install(embedding)

    def predict(
        self,
        point_coords: np.ndarray | None = None,
        point_labels: np.ndarray | None = None,
        box: np.ndarray | None = None,
        mask_input: np.ndarray | None = None,
        multimask_output: bool = True,
        return_logits: bool = False,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Predict masks for one object on the current frame, like ``SamPredictor.predict``.

        Args:
            point_coords: ``(N, 2)`` (x, y) points in the frame's pixels.
            point_labels: ``(N,)`` labels, 1 foreground, 0 background.
            box: ``(4,)`` XYXY box in the frame's pixels.
            mask_input: ``(1, L, L)`` low-resolution logits from an earlier
                prediction (``low_res_logits[i][None]``).
            multimask_output: Return SAM's 3 multimask outputs, else its single mask.
            return_logits: Return float logits instead of bool masks.

        Returns:
            ``masks`` ``[C, H, W]`` (bool, or float32 logits), ``scores`` ``[C]``
            float32 predicted IoU, ``low_res_logits`` ``[C, L, L]`` float32;
            C = 3 with ``multimask_output`` else 1.

        Raises:
            PredictorStateError: no image set.
            PromptError: see :class:`~samedge.prompts.ObjectPrompt`.
            ProfileLimitError: more points than the engine's profile allows.

        Example:
            >>> masks, scores, logits = predictor.predict(            # doctest: +SKIP
            ...     point_coords=np.array([[320, 240]]), point_labels=np.array([1]))
            >>> masks.shape                                            # doctest: +SKIP
            (3, 480, 640)
        """
        self._require_image("predict")
        prompt = ObjectPrompt(
            point_coords=point_coords, point_labels=point_labels, box=box, mask_input=mask_input
        )
        masks, scores, low_res = self._decode([prompt], multimask_output, return_logits)
        return masks[0], scores[0], low_res[0]

    def predict_batch(
        self,
        prompts: Sequence[ObjectPrompt],
        multimask_output: bool = True,
        return_logits: bool = False,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Predict masks for B objects, in one decoder call where memory allows.

        Each object's prompts are ordered and padded as in
        :func:`samedge.prompts.batch_prompts`. Working memory beyond the
        returned arrays stays within :data:`DECODE_BUDGET` (256 MiB): more
        objects than fit (about 16 SAM objects with multimask on a 640×480
        frame) are decoded in several calls of the same padded batch, which
        gives the same masks as one call.

        Args:
            prompts: One :class:`~samedge.prompts.ObjectPrompt` per object.
            multimask_output: 3 masks per object, else 1.
            return_logits: Return float logits instead of bool masks.

        Returns:
            ``masks`` ``[B, C, H, W]``, ``scores`` ``[B, C]``,
            ``low_res_logits`` ``[B, C, L, L]``; row i belongs to ``prompts[i]``.

        Raises:
            PredictorStateError: no image set.
            PromptError: an empty list or a bad prompt (the message names its index).
            ProfileLimitError: more objects or points than the engine's profile allows.
            NonFiniteOutputError: the decoder returned NaN (see :meth:`set_image`).

        Example:
            >>> boxes = detector(frame)                                # doctest: +SKIP
            >>> masks, scores, _ = predictor.predict_batch(            # doctest: +SKIP
            ...     [ObjectPrompt(box=b) for b in boxes], multimask_output=False)
            >>> masks[:, 0].shape                                      # doctest: +SKIP
            (len(boxes), 480, 640)
        """
        self._require_image("predict_batch")
        return self._decode(prompts, multimask_output, return_logits)

    def predict_low_res(
        self, prompts: Sequence[ObjectPrompt], multimask_output: bool = True
    ) -> tuple[np.ndarray, np.ndarray]:
        """Scores and low-resolution logits of B objects in one decoder call, not upsampled.

        For callers that keep only some of the masks (the automatic mask
        generator filters on the predicted IoU first) and upsample those with
        :func:`samedge.postprocess.upscale_masks`, :attr:`input_size` and
        :attr:`original_size`. B is at most :attr:`max_objects_per_call`.

        Returns:
            ``scores`` ``[B, C]`` float32 and ``low_res_logits`` ``[B, C, L, L]``
            float32, C = 3 with ``multimask_output`` else 1; the same numbers
            :meth:`predict_batch` returns.

        Raises:
            PredictorStateError: no image set.
            PromptError: an empty list or a bad prompt (the message names its index).
            ProfileLimitError: more objects or points than the engine's profile allows.
            NonFiniteOutputError: the decoder returned NaN.
        """
        features, original_size, _ = self._require_image("predict_low_res")
        batch = batch_prompts(prompts, original_size, self.transform, self.mask_size)
        low_res, scores = self._infer_rows(batch.feeds(), features, multimask_output)
        return np.ascontiguousarray(scores), np.ascontiguousarray(low_res)

    def get_image_embedding(self) -> np.ndarray:
        """The current frame's embedding, read-only float32 ``[1, C, h, w]``.

        Raises:
            PredictorStateError: no image set.
        """
        return self._require_image("get_image_embedding")[0]

    def reset_image(self) -> None:
        """Forget the current frame and its embedding."""
        self._features = None
        self._extras = {}
        self._original_size = None
        self._input_size = None

    # -- lifetime -------------------------------------------------------------------

    def close(self) -> None:
        """Release both engines; the predictor reloads them if used again."""
        self.reset_image()
        try:
            self._encoder.close()
        finally:
            self._decoder.close()

    def __enter__(self) -> Predictor:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return (
            f"Predictor({str(self.model_dir)!r}, model={self.card.model!r}, "
            f"backend={self.backend_name!r}, precision={self.card.precision!r})"
        )

    # -- internals ---------------------------------------------------------------------

    def _prepare(
        self, image: np.ndarray, image_format: str
    ) -> tuple[np.ndarray, tuple[int, int], tuple[int, int]]:
        """Check the graphs and the frame; the encoder input, original and input size."""
        self._check_graphs()
        rgb = validate_image(image, image_format)
        x, input_size = preprocess_image(
            rgb,
            self.card.image_size,
            self.card.pixel_mean,
            "RGB",
            self._input_buffer,
            self.resample,
            self.card.input_box,
        )
        # Reusing the buffer is safe because only the encoder reads it, and the
        # encoder runs on one thread at a time (see the class notes).
        self._input_buffer = x
        original_size = (int(rgb.shape[0]), int(rgb.shape[1]))
        return x, original_size, (int(input_size[0]), int(input_size[1]))

    def _run_encoder(
        self, x: np.ndarray, original_size: tuple[int, int], input_size: tuple[int, int]
    ) -> ImageEmbedding:
        outputs = self._encoder.infer({_ENCODER_IN: x})
        features = outputs[_ENCODER_OUT]
        extras = {name: outputs[name] for name in self._extra_names}
        expected = (1, *self.card.embedding_shape)
        if features.shape != expected or features.dtype != np.float32:
            raise ModelDirError(
                f"{self.card.encoder}: image_embeddings came out {features.dtype} "
                f"{features.shape}, the model card says float32 {expected}; re-export the model"
            )
        # ~0.1 ms for SAM's 1M-value embedding, against >= 100 ms of encoder: cheap
        # enough to do every frame, and a NaN embedding makes every mask empty.
        if not np.isfinite(features).all():
            self._non_finite(self._encoder, "image embedding")
        if not all(np.isfinite(v).all() for v in extras.values()):
            self._non_finite(self._encoder, f"encoder output ({', '.join(extras)})")
        # Read-only: predict() hands it to the decoder every call, and a backend may
        # keep it in device memory between calls only while it cannot change.
        features.flags.writeable = False
        for value in extras.values():
            value.flags.writeable = False
        return ImageEmbedding(features, original_size, input_size, self.card.image_size, extras)

    def _non_finite(self, backend: Any, what: str) -> NoReturn:
        """Raise for a NaN/inf result, after dropping the engine cache entry that made it.

        The backend is closed too, so the next call compiles afresh instead of
        reusing the engine in memory.
        """
        cached = backend.cache_path
        dropped = backend.drop_cache()
        backend.close()
        if dropped is not None:
            cache = f"its compiled cache entry {dropped} was removed; the next call recompiles"
        elif cached is not None:
            cache = f"cache {cached}"
        else:
            cache = "no engine cache in use"
        raise NonFiniteOutputError(
            f"model {self.card.model!r} ({backend.model_path.name}) on {backend.name}, "
            f"precision {backend.precision}: the {what} holds NaN or inf, so no mask from it "
            f"can be right; {cache}. If it happens again, run at another precision "
            "(OpenVinoConfig(inference_precision=InferencePrecision.FP32)) or without the "
            "cache (use_cache=False), and report it"
        )

    def _install(self, embedding: ImageEmbedding) -> None:
        features = embedding.features
        if features.flags.writeable:
            # A read-only copy, not a view: a backend may keep a read-only input in
            # device memory between calls, so it must not change behind the predictor.
            features = features.copy()
            features.flags.writeable = False
        self._features = features
        self._extras = {}
        for name, value in embedding.extras.items():
            if value.flags.writeable:
                value = value.copy()  # a read-only copy, as above
                value.flags.writeable = False
            self._extras[name] = value
        self._original_size = embedding.original_size
        self._input_size = embedding.input_size

    def _require_image(self, what: str) -> tuple[np.ndarray, tuple[int, int], tuple[int, int]]:
        if self._features is None or self._original_size is None or self._input_size is None:
            raise PredictorStateError(f"{what}: no image is set; call set_image(image) first")
        return self._features, self._original_size, self._input_size

    def _decode(
        self, prompts: Sequence[ObjectPrompt], multimask_output: bool, return_logits: bool
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        features, original_size, _ = self._require_image("predict")
        batch = batch_prompts(prompts, original_size, self.transform, self.mask_size)
        feeds = batch.feeds()
        count = batch.num_objects
        step = self._objects_per_call(original_size, multimask_output)
        if count <= step:
            return self._decode_rows(feeds, features, multimask_output, return_logits)
        # Slices of one batch, so every chunk is padded to the same number of
        # points and the masks are those of a single call; each chunk's results
        # go straight into the returned arrays (concatenating would hold them twice).
        results: tuple[np.ndarray, ...] = ()
        for start in range(0, count, step):
            rows = slice(start, start + step)
            part = self._decode_rows(
                {name: value[rows] for name, value in feeds.items()},
                features,
                multimask_output,
                return_logits,
            )
            if not results:
                results = tuple(np.empty((count, *a.shape[1:]), a.dtype) for a in part)
            for whole, piece in zip(results, part, strict=True):
                whole[rows] = piece
            del part
        masks, scores, low_res = results
        return masks, scores, low_res

    def _objects_per_call(self, original_size: tuple[int, int], multimask_output: bool) -> int:
        """Objects per decoder call so that working memory stays within :data:`DECODE_BUDGET`.

        Per object: the decoder's 4 low-resolution logits, and per returned mask
        a float32 ``S×S`` upsampled map and a float32 frame-sized crop.
        """
        S, L = self._upsample_size, self.mask_size
        H, W = original_size
        per_mask = 4 * (S * S + H * W)
        per_object = 4 * 4 * L * L + (3 if multimask_output else 1) * per_mask
        return max(1, DECODE_BUDGET // per_object)

    def _decode_rows(
        self,
        feeds: dict[str, np.ndarray],
        features: np.ndarray,
        multimask_output: bool,
        return_logits: bool,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        _, original_size, input_size = self._require_image("predict")
        low_res, scores = self._infer_rows(feeds, features, multimask_output)
        masks = postprocess_masks(
            low_res,
            self._upsample_size,
            self._crop_size(input_size),
            original_size,
            return_logits,
            exact=self.mask_resample is Resample.EXACT,
        )
        return masks, np.ascontiguousarray(scores), np.ascontiguousarray(low_res)

    @property
    def _upsample_size(self) -> int:
        """Side of the square masks are upsampled to before the crop (the model card's)."""
        return self.card.mask_upsample_size or self.card.image_size

    def _crop_size(self, input_size: tuple[int, int]) -> tuple[int, int]:
        """The frame's extent in the upsampled masks: ``input_size``, or the frame resized
        to the model's own upsampling square (EfficientViT-SAM L: 1024 px, encoder 512)."""
        if self._upsample_size == self.card.image_size:
            return input_size
        return get_preprocess_shape(*self._require_image("predict")[1], self._upsample_size)

    def _infer_rows(
        self, feeds: dict[str, np.ndarray], features: np.ndarray, multimask_output: bool
    ) -> tuple[np.ndarray, np.ndarray]:
        """One decoder call: the selected low-resolution logits and their scores."""
        self._check_graphs()
        if set(self._extras) != set(self._extra_names):
            raise InputError(
                f"embedding: carries extras {sorted(self._extras)}, model {self.card.model!r} "
                f"needs {list(self._extra_names)}; make embeddings with Predictor.encode(image)"
            )
        out = self._decoder.infer({**feeds, _ENCODER_OUT: features, **self._extras})
        # NaN only: an fp16 engine may saturate a confident logit to +-inf, which
        # still thresholds to a definite mask; NaN thresholds to nothing.
        low_res, iou = out[graph_names.LOW_RES_MASKS], out[graph_names.IOU_PREDICTIONS]
        if np.isnan(low_res).any() or np.isnan(iou).any():
            self._non_finite(self._decoder, "decoder output (masks or scores)")
        return select_masks(low_res, iou, multimask_output)

    def _check_graphs(self) -> None:
        """Check once that both graphs follow samedge's I/O contract."""
        if self._checked:
            return
        H, W = self.card.input_box
        enc_in = {s.name: s for s in self._encoder.inputs}
        enc_out = {s.name for s in self._encoder.outputs}
        problems = []
        if set(enc_in) != {_ENCODER_IN} or enc_in[_ENCODER_IN].shape != (1, 3, H, W):
            got = [(s.name, s.shape) for s in self._encoder.inputs]
            problems.append(
                f"{self.card.encoder} inputs {got}, expected [('image', (1, 3, {H}, {W}))]"
            )
        if _ENCODER_OUT not in enc_out:
            problems.append(
                f"{self.card.encoder} outputs {sorted(enc_out)}, expected '{_ENCODER_OUT}'"
            )
        dec_in = {s.name for s in self._decoder.inputs}
        dec_out = {s.name for s in self._decoder.outputs}
        # Decoder inputs beyond SAM's are encoder outputs passed through (SAM-HQ).
        extra = dec_in - set(_DECODER_IN)
        if not set(_DECODER_IN) <= dec_in or not extra <= enc_out - {_ENCODER_OUT}:
            problems.append(
                f"{self.card.decoder} inputs {sorted(dec_in)}, expected {sorted(_DECODER_IN)} "
                f"and encoder outputs besides {_ENCODER_OUT} ({sorted(enc_out - {_ENCODER_OUT})})"
            )
        if not set(_DECODER_OUT) <= dec_out:
            problems.append(
                f"{self.card.decoder} outputs {sorted(dec_out)}, expected {list(_DECODER_OUT)}"
            )
        if problems:
            raise ModelDirError(
                f"model {self.model_dir}: graphs do not follow samedge's I/O contract: "
                + "; ".join(problems)
                + "; re-export it with `samedge export`"
            )
        self._extra_names = tuple(sorted(extra))
        self._checked = True
