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
from samedge.graph_names import HQ_FEATURES

__all__ = [
    "MODELS",
    "SAM_MASK_THRESHOLDS",
    "SAM_PIXEL_MEAN",
    "SAM_PIXEL_STD",
    "ModelSpec",
    "get_model_spec",
    "list_models",
]

# segment_anything's Sam.pixel_mean / pixel_std, in 0..255 RGB. EfficientViT-SAM
# and SAM-HQ normalise with the same numbers (EfficientViT-SAM as /255 of them,
# after torchvision's ToTensor: the same transform).
SAM_PIXEL_MEAN: tuple[float, float, float] = (123.675, 116.28, 103.53)
SAM_PIXEL_STD: tuple[float, float, float] = (58.395, 57.12, 57.375)
_SAM_MEAN, _SAM_STD = SAM_PIXEL_MEAN, SAM_PIXEL_STD

# SamAutomaticMaskGenerator's pred_iou_thresh / stability_score_thresh (tuned on
# ViT-H). SAM2AutomaticMaskGenerator keeps masks above 0.8 predicted IoU instead.
SAM_MASK_THRESHOLDS: tuple[float, float] = (0.88, 0.95)
_SAM2_MASK_THRESHOLDS: tuple[float, float] = (0.8, 0.95)
# samedge-tiny's IoU head and logits are softer than SAM's: at SAM's thresholds it
# keeps no mask on most images (recall 0.025). The highest F1 against the procedural
# scenes' ground truth, benchmarks/results/amd-epyc-2c/generator_thresholds_*.md
# (`python benchmarks/generator_thresholds.py`): recall 0.575 / precision 0.691, and
# 0.525 / 0.755 with memory (its decoder was trained on).
_TINY_MASK_THRESHOLDS: tuple[float, float] = (0.6, 0.6)
_TINY_TRACK_MASK_THRESHOLDS: tuple[float, float] = (0.6, 0.8)

# SAM-HQ's decoder input beside SAM's five (see samedge.exporters.sam_hq): the
# fused early-ViT + embedding features, [1, 32, 256, 256] for a 64x64 embedding.
_HQ_FEATURES = ((HQ_FEATURES, (32, 256, 256)),)


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
        extra_features: Encoder outputs besides ``image_embeddings`` that the decoder
            takes as inputs of the same name, as ``(name, (C, H, W))`` pairs (batch 1);
            SAM-HQ's ``hq_features``. Empty for SAM's two-graph contract.
        mask_upsample_size: Side of the square the low-resolution masks are upsampled
            to before the frame's crop, where the model's own predictor does it
            (EfficientViT-SAM L: 1024, its prompt frame, though it encodes 512 px);
            ``None`` means ``image_size``.
        family: ``"sam"`` (encoder + decoder, re-prompt tracking) or ``"sam2"``
            (SAM 2.1 / EdgeTAM: four graphs and a memory bank, see
            :mod:`samedge.memory_model`).
        mask_thresholds: ``(pred_iou_thresh, stability_score_thresh)`` that
            :class:`~samedge.MaskGenerator` keeps masks above when its config
            leaves them unset: the model family's own automatic generator's
            (SAM 0.88 / 0.95, SAM 2 0.8 / 0.95), or measured for models trained here.
    """

    name: str
    description: str
    image_size: int
    pixel_mean: tuple[float, float, float]
    pixel_std: tuple[float, float, float]
    embedding_shape: tuple[int, int, int]
    builder: str
    num_mask_outputs: int = 4
    extra_features: tuple[tuple[str, tuple[int, int, int]], ...] = ()
    mask_upsample_size: int | None = None
    family: str = "sam"
    mask_thresholds: tuple[float, float] = SAM_MASK_THRESHOLDS

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
        if self.family not in ("sam", "sam2"):
            raise InputError(f"family: got {self.family!r}, expected 'sam' or 'sam2'")
        if len(self.mask_thresholds) != 2 or not all(0.0 <= t <= 1.0 for t in self.mask_thresholds):
            raise InputError(
                f"mask_thresholds: got {self.mask_thresholds}, expected two numbers in [0, 1]"
            )
        if ":" not in self.builder:
            raise InputError(f"builder: got {self.builder!r}, expected 'module:function'")
        if self.mask_upsample_size is not None and self.mask_upsample_size <= 0:
            raise InputError(
                f"mask_upsample_size: got {self.mask_upsample_size}, expected None or an int > 0"
            )
        for entry in self.extra_features:
            if (
                len(entry) != 2
                or not isinstance(entry[0], str)
                or len(entry[1]) != 3
                or min(entry[1]) <= 0
            ):
                raise InputError(
                    f"extra_features: got {entry!r}, expected (name, (C, H, W)) with positive dims"
                )

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
        *(
            ModelSpec(
                name=f"efficientvit_sam_{size}",
                description=(
                    f"EfficientViT-SAM-{size.upper()} (MIT Han Lab, {params} EfficientViT "
                    f"encoder, {image_size} px + SAM's decoder)"
                ),
                # The encoder's input; the decoder graph maps prompts from this
                # frame to its prompt encoder's 1024-px frame (exporters/decoder.py),
                # and masks are upsampled in that frame, as EfficientViTSamPredictor does.
                image_size=image_size,
                mask_upsample_size=1024,
                pixel_mean=_SAM_MEAN,
                pixel_std=_SAM_STD,
                embedding_shape=(256, 64, 64),
                builder=f"samedge.exporters.efficientvit_sam:build_efficientvit_sam_{size}",
            )
            for size, params, image_size in (
                ("l0", "31M-parameter", 512),
                ("l1", "44M-parameter", 512),
                ("l2", "57M-parameter", 512),
                ("xl0", "113M-parameter", 1024),
                ("xl1", "199M-parameter", 1024),
            )
        ),
        *(
            ModelSpec(
                name=f"sam_hq_vit_{size}",
                description=f"SAM-HQ ViT-{size.upper()} (SAM's {params} encoder + HQ decoder)",
                image_size=1024,
                pixel_mean=_SAM_MEAN,
                pixel_std=_SAM_STD,
                embedding_shape=(256, 64, 64),
                builder=f"samedge.exporters.sam_hq:build_sam_hq_vit_{size}",
                extra_features=_HQ_FEATURES,
            )
            for size, params in (
                ("b", "91M-parameter"),
                ("l", "308M-parameter"),
                ("h", "636M-parameter"),
            )
        ),
        *(
            ModelSpec(
                name=name,
                description=description,
                image_size=1024,
                # SAM 2 normalises with ImageNet's mean/std: SAM's numbers /255.
                pixel_mean=_SAM_MEAN,
                pixel_std=_SAM_STD,
                embedding_shape=(256, 64, 64),
                builder=f"samedge.exporters._sam2_build:build_{name.replace('.', '_')}",
                family="sam2",
                mask_thresholds=_SAM2_MASK_THRESHOLDS,
            )
            for name, description in (
                ("sam2.1_hiera_tiny", "SAM 2.1 Hiera-T (Meta, 39M parameters, video memory)"),
                ("sam2.1_hiera_small", "SAM 2.1 Hiera-S (Meta, 46M parameters, video memory)"),
                ("sam2.1_hiera_base_plus", "SAM 2.1 Hiera-B+ (Meta, 81M parameters, video memory)"),
                ("sam2.1_hiera_large", "SAM 2.1 Hiera-L (Meta, 224M parameters, video memory)"),
                ("edgetam", "EdgeTAM (Meta, RepViT-M1 + 2-D perceiver memory, 14M parameters)"),
            )
        ),
        ModelSpec(
            name="samedge_tiny",
            description="samedge-tiny (1M-parameter CNN encoder + SAM's decoder, built in)",
            image_size=256,
            pixel_mean=_SAM_MEAN,
            pixel_std=_SAM_STD,
            embedding_shape=(128, 16, 16),
            builder="samedge.exporters.tiny_model:build_samedge_tiny",
            mask_thresholds=_TINY_MASK_THRESHOLDS,
        ),
        ModelSpec(
            name="samedge_tiny_track",
            description=(
                "samedge-tiny-track (samedge-tiny + SAM 2's memory at width 128, video "
                "memory, built in)"
            ),
            image_size=256,
            pixel_mean=_SAM_MEAN,
            pixel_std=_SAM_STD,
            embedding_shape=(128, 16, 16),
            builder="samedge.exporters.tiny_track_model:build_samedge_tiny_track",
            family="sam2",
            mask_thresholds=_TINY_TRACK_MASK_THRESHOLDS,
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
