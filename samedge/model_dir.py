"""The model directory: ``encoder.onnx`` + ``decoder.onnx`` + ``samedge.json``.

Every exporter, precision build and runtime speaks this one format. The card
(``samedge.json``) carries what the runtime needs to pre- and post-process
frames without torch, plus provenance. The same key/values are written into
each ONNX file's ``metadata_props`` so a lone ``.onnx`` still explains itself.

Example:
    >>> card = read_model_dir("out/mobile_sam")          # doctest: +SKIP
    >>> card.image_size, card.embedding_shape            # doctest: +SKIP
    (1024, (256, 64, 64))
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from samedge._io import atomic_write_text
from samedge._version import __version__
from samedge.errors import ModelDirError
from samedge.models import ModelSpec

__all__ = [
    "CARD_NAME",
    "DECODER_NAME",
    "ENCODER_NAME",
    "FORMAT_VERSION",
    "ModelCard",
    "read_model_dir",
    "write_model_card",
]

CARD_NAME = "samedge.json"
ENCODER_NAME = "encoder.onnx"
DECODER_NAME = "decoder.onnx"
# Bump when a reader of the old version could misread the new layout.
FORMAT_VERSION = 1

PRECISIONS = ("fp32", "fp16", "int8")


@dataclass(frozen=True)
class ModelCard:
    """Contents of ``samedge.json``.

    Attributes:
        model: Registry name of the architecture (``"mobile_sam"``, ...).
        image_size: Side of the encoder's square input.
        pixel_mean: RGB mean in 0..255 (the encoder graph normalises).
        pixel_std: RGB std in 0..255.
        embedding_shape: ``(C, h, w)`` of ``image_embeddings``.
        num_mask_outputs: Masks per prompt the decoder returns (index 0 is the
            single-mask output, 1.. the multimask ones, as in SAM).
        precision: ``"fp32"``, ``"fp16"`` or ``"int8"`` (of the encoder; see ``details``).
        opset: ONNX opset of both graphs.
        checkpoint_sha256: SHA-256 of the checkpoint file, ``None`` for random weights.
        samedge_version: Version that wrote the directory.
        format_version: Layout version of the directory.
        encoder: File name of the encoder graph inside the directory.
        decoder: File name of the decoder graph inside the directory.
        details: Free-form provenance (parity report, calibration settings).
        mask_upsample_size: Side of the square the decoder's low-resolution masks
            are upsampled to before the frame's crop; ``None`` means ``image_size``
            (EfficientViT-SAM L: 1024 for a 512-px encoder, see :class:`~samedge.models.ModelSpec`).
        family: ``"sam"`` (two graphs) or ``"sam2"`` (SAM 2.1 / EdgeTAM: also
            memory attention and memory encoder graphs, see :mod:`samedge.memory_model`).
        memory_attention: File name of the memory-attention graph (``"sam2"`` only).
        memory_encoder: File name of the memory-encoder graph (``"sam2"`` only).
        memory: The memory settings and maxima (:class:`~samedge.memory_model.MemorySettings`
            as a dict; ``"sam2"`` only).
        encoder_input: ``(h, w)`` of the encoder's input when it was exported for
            frames of one aspect ratio (``samedge export --frame-size``): the
            frame's content without the square's padding; ``None`` for the
            ``image_size`` square. The embedding keeps its shape either way.
    """

    model: str
    image_size: int
    pixel_mean: tuple[float, float, float]
    pixel_std: tuple[float, float, float]
    embedding_shape: tuple[int, int, int]
    num_mask_outputs: int = 4
    precision: str = "fp32"
    opset: int = 17
    checkpoint_sha256: str | None = None
    samedge_version: str = __version__
    format_version: int = FORMAT_VERSION
    encoder: str = ENCODER_NAME
    decoder: str = DECODER_NAME
    details: Mapping[str, Any] = field(default_factory=dict)
    mask_upsample_size: int | None = None
    family: str = "sam"
    memory_attention: str | None = None
    memory_encoder: str | None = None
    memory: Mapping[str, Any] | None = None
    encoder_input: tuple[int, int] | None = None

    def __post_init__(self) -> None:
        if self.encoder_input is not None:
            box = tuple(self.encoder_input)
            if len(box) != 2 or not all(
                isinstance(v, int) and 0 < v <= self.image_size for v in box
            ):
                raise ModelDirError(
                    f"encoder_input: got {self.encoder_input!r}, expected (h, w) within the "
                    f"{self.image_size} square; re-export the model"
                )
        if self.family not in ("sam", "sam2"):
            raise ModelDirError(f"family: got {self.family!r}, expected 'sam' or 'sam2'")
        if self.family == "sam2" and not (
            self.memory_attention and self.memory_encoder and self.memory is not None
        ):
            raise ModelDirError(
                "a sam2-family card needs memory_attention, memory_encoder and memory; re-export"
            )
        if self.precision not in PRECISIONS:
            raise ModelDirError(
                f"precision: got {self.precision!r}, expected one of {', '.join(PRECISIONS)}"
            )

    @classmethod
    def from_spec(cls, spec: ModelSpec, **kwargs: Any) -> ModelCard:
        """Card for an export of ``spec``; ``kwargs`` fill the remaining fields."""
        return cls(
            model=spec.name,
            image_size=spec.image_size,
            pixel_mean=spec.pixel_mean,
            pixel_std=spec.pixel_std,
            embedding_shape=spec.embedding_shape,
            num_mask_outputs=spec.num_mask_outputs,
            mask_upsample_size=spec.mask_upsample_size,
            family=spec.family,
            **kwargs,
        )

    @property
    def low_res_mask_size(self) -> int:
        """Side of the decoder's low-resolution masks."""
        return 4 * self.embedding_shape[1]

    @property
    def input_box(self) -> tuple[int, int]:
        """``(h, w)`` of the encoder's ``image`` input: the square, or ``encoder_input``."""
        if self.encoder_input is None:
            return (self.image_size, self.image_size)
        return (self.encoder_input[0], self.encoder_input[1])

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True, default=str) + "\n"

    def to_metadata(self) -> dict[str, str]:
        """String key/values for ONNX ``metadata_props`` (prefixed ``samedge.``)."""
        data = asdict(self)
        data.pop("details")
        return {f"samedge.{k}": json.dumps(v) for k, v in data.items()}

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any], source: str) -> ModelCard:
        """Parse a card from JSON data; ``source`` names it in errors."""
        version = data.get("format_version", 0)
        if not isinstance(version, int) or version > FORMAT_VERSION:
            raise ModelDirError(
                f"{source}: format_version {version!r} was written by samedge "
                f"{data.get('samedge_version', '?')}, newer than this samedge {__version__} "
                f"(reads up to {FORMAT_VERSION}); upgrade samedge with `pip install -U samedge`"
            )
        required = ("model", "image_size", "pixel_mean", "pixel_std", "embedding_shape")
        missing = [k for k in required if k not in data]
        if missing:
            raise ModelDirError(f"{source}: missing keys {', '.join(missing)}; re-export the model")
        known = set(cls.__dataclass_fields__)
        kwargs = {k: v for k, v in data.items() if k in known}
        try:
            for key in ("pixel_mean", "pixel_std", "embedding_shape", "encoder_input"):
                if kwargs.get(key) is not None:
                    kwargs[key] = tuple(kwargs[key])
            return cls(**kwargs)
        except (TypeError, ValueError) as e:
            raise ModelDirError(f"{source}: malformed card ({e}); re-export the model") from e

    @classmethod
    def from_metadata(cls, props: Mapping[str, str], source: str) -> ModelCard:
        """Parse a card back from ONNX ``metadata_props`` written by :meth:`to_metadata`."""
        data = {}
        for key, value in props.items():
            if key.startswith("samedge."):
                try:
                    data[key.removeprefix("samedge.")] = json.loads(value)
                except json.JSONDecodeError as e:
                    raise ModelDirError(f"{source}: metadata {key!r} is not JSON ({e})") from e
        if not data:
            raise ModelDirError(f"{source}: carries no samedge metadata")
        return cls.from_mapping(data, source)


def read_model_dir(path: str | os.PathLike[str]) -> ModelCard:
    """Read and validate a model directory.

    Raises:
        ModelDirError: the directory, its card or one of its graphs is missing,
            the card is malformed, or it was written by a newer samedge.
    """
    root = Path(path)
    if not root.is_dir():
        raise ModelDirError(
            f"model directory {root}: not found; pass a directory written by `samedge export` "
            "or a built-in model name"
        )
    card_path = root / CARD_NAME
    if not card_path.is_file():
        raise ModelDirError(
            f"model directory {root}: has no {CARD_NAME}; it was not written by `samedge export`"
        )
    try:
        data = json.loads(card_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ModelDirError(f"{card_path}: unreadable ({e}); re-export the model") from e
    if not isinstance(data, dict):
        raise ModelDirError(f"{card_path}: expected a JSON object, got {type(data).__name__}")
    card = ModelCard.from_mapping(data, str(card_path))
    graphs = [card.encoder, card.decoder]
    if card.family == "sam2":
        graphs += [card.memory_attention or "", card.memory_encoder or ""]
    for name in graphs:
        if not (root / name).is_file():
            raise ModelDirError(
                f"model directory {root}: missing {name}; re-export or copy the whole directory"
            )
    return card


def write_model_card(directory: str | os.PathLike[str], card: ModelCard) -> Path:
    """Write ``samedge.json`` into ``directory`` atomically."""
    return atomic_write_text(Path(directory) / CARD_NAME, card.to_json())
