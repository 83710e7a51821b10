"""Model specs: what samedge knows about each member of the SAM family.

A spec is pure data (no torch): the encoder's square input size, the pixel
normalisation, the embedding shape, and where the PyTorch builder lives. The
builder is named by an import path and only imported by the exporters, so the
core never imports torch.

Example:
    >>> from samedge.models import get_model_spec
    >>> spec = get_model_spec("mobile_sam")
    >>> spec.image_size, spec.embedding_shape
    (1024, (256, 64, 64))
"""

from __future__ import annotations

from dataclasses import dataclass

from samedge._registry import lookup
from samedge.errors import InputError

__all__ = ["MODELS", "ModelSpec", "get_model_spec", "list_models"]

# segment_anything's Sam.pixel_mean / pixel_std, in 0..255 RGB.
_SAM_MEAN = (123.675, 116.28, 103.53)
_SAM_STD = (58.395, 57.12, 57.375)


@dataclass(frozen=True)
class ModelSpec:
    """Static facts about one promptable segmentation model.

    Attributes:
        name: Registry name, e.g. ``"sam_vit_b"``.
        description: One line for ``samedge info`` and error messages.
        image_size: Side of the encoder's square input; frames are resized so
            their longest side equals it, then padded bottom/right.
        pixel_mean: Per-channel RGB mean in 0..255, subtracted inside the encoder graph.
        pixel_std: Per-channel RGB std in 0..255.
        embedding_shape: ``(C, h, w)`` of the image embedding.
        builder: ``"module:function"`` building the PyTorch model from a checkpoint
            path (or random weights for ``None``); imported only by the exporters.
        num_mask_outputs: Masks the decoder returns per prompt (SAM: 1 single + 3 multimask).
    """

    name: str
    description: str
    image_size: int
    pixel_mean: tuple[float, float, float]
    pixel_std: tuple[float, float, float]
    embedding_shape: tuple[int, int, int]
    builder: str
    num_mask_outputs: int = 4

    def __post_init__(self) -> None:
        if self.image_size <= 0:
            raise InputError(f"image_size: got {self.image_size}, expected a positive int")
        if len(self.pixel_mean) != 3 or len(self.pixel_std) != 3:
            raise InputError("pixel_mean/pixel_std: expected 3 values each (R, G, B)")
        if any(s <= 0 for s in self.pixel_std):
            raise InputError(f"pixel_std: got {self.pixel_std}, expected positive values")
        if len(self.embedding_shape) != 3 or min(self.embedding_shape) <= 0:
            raise InputError(
                f"embedding_shape: got {self.embedding_shape}, expected positive (C, h, w)"
            )
        if ":" not in self.builder:
            raise InputError(f"builder: got {self.builder!r}, expected 'module:function'")

    @property
    def low_res_mask_size(self) -> int:
        """Side of the decoder's low-resolution masks (4x the embedding grid)."""
        return 4 * self.embedding_shape[1]


MODELS: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in (
        ModelSpec(
            name="sam_vit_b",
            description="SAM ViT-B (Meta, 91M-parameter encoder)",
            image_size=1024,
            pixel_mean=_SAM_MEAN,
            pixel_std=_SAM_STD,
            embedding_shape=(256, 64, 64),
            builder="samedge.exporters.builders:build_sam_vit_b",
        ),
        ModelSpec(
            name="sam_vit_l",
            description="SAM ViT-L (Meta, 308M-parameter encoder)",
            image_size=1024,
            pixel_mean=_SAM_MEAN,
            pixel_std=_SAM_STD,
            embedding_shape=(256, 64, 64),
            builder="samedge.exporters.builders:build_sam_vit_l",
        ),
        ModelSpec(
            name="sam_vit_h",
            description="SAM ViT-H (Meta, 636M-parameter encoder)",
            image_size=1024,
            pixel_mean=_SAM_MEAN,
            pixel_std=_SAM_STD,
            embedding_shape=(256, 64, 64),
            builder="samedge.exporters.builders:build_sam_vit_h",
        ),
        ModelSpec(
            name="mobile_sam",
            description="MobileSAM (TinyViT-5M encoder + SAM's decoder)",
            image_size=1024,
            pixel_mean=_SAM_MEAN,
            pixel_std=_SAM_STD,
            embedding_shape=(256, 64, 64),
            builder="samedge.exporters.builders:build_mobile_sam",
        ),
        ModelSpec(
            name="samedge_tiny",
            description="samedge-tiny (1M-parameter CNN encoder + SAM's decoder, built in)",
            image_size=256,
            pixel_mean=_SAM_MEAN,
            pixel_std=_SAM_STD,
            embedding_shape=(128, 16, 16),
            builder="samedge.exporters.tiny_model:build_samedge_tiny",
        ),
    )
}


def get_model_spec(name: str) -> ModelSpec:
    """Return the spec registered under ``name``.

    Raises:
        UnknownNameError: with the valid names and the closest match.
    """
    return lookup(MODELS, name, "model")


def list_models() -> list[str]:
    """Names of every registered model, sorted."""
    return sorted(MODELS)
