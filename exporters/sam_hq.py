"""SAM-HQ (``segment-anything-hq``): builders, its two graphs and its PyTorch reference.

SAM-HQ keeps SAM's ViT encoder and prompt encoder; its mask decoder
(``MaskDecoderHQ``) adds an HQ output token whose mask is computed on
"HQ features": the embedding and the output of the ViT's first global
attention block, each upsampled 4x by two transposed convolutions and added.
Those features depend on the frame only, so samedge computes them in the
*encoder* graph, once per frame, and hands them to the decoder as one extra
input (the per-prompt decoder would otherwise redo 3+ GMAC of transposed
convolutions on every call):

* ``encoder.onnx``: ``image`` -> ``image_embeddings`` [1, 256, 64, 64] and
  :data:`HQ_FEATURES` [1, 32, 256, 256].
* ``decoder.onnx``: SAM's five inputs + :data:`HQ_FEATURES` -> SAM's two
  outputs, with SAM's meaning of the K = 4 masks: mask k is SAM's token k
  plus the HQ token's mask (``hq_token_only=False``, the upstream default).
  Index 0 is SAM-HQ's single-mask output; for ``multimask_output`` SAM-HQ's
  predictor returns the one of masks 1..3 with the highest predicted IoU,
  which is ``masks[argmax(scores)]`` of samedge's three.

The rule the runtime follows is general: every encoder output besides
``image_embeddings`` is a decoder input of the same name (the model spec's
``extra_features``).

Example:
    >>> from samedge.exporters.sam_hq import build_sam_hq_vit_b
    >>> sam = build_sam_hq_vit_b("sam_hq_vit_b.pth")  # doctest: +SKIP
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import replace
from functools import partial
from typing import Any

import torch
from torch import nn

from samedge.exporters.builders import Checkpoint, _build
from samedge.exporters.decoder import EncoderGraph, PromptDecoderGraph
from samedge.graph_names import HQ_FEATURES
from samedge.models import ModelSpec, get_model_spec

__all__ = [
    "HQ_FEATURES",
    "REDUCED_SAM_HQ_NAME",
    "HQEncoderGraph",
    "HQPromptDecoderGraph",
    "build_sam_hq_reduced",
    "build_sam_hq_vit_b",
    "build_sam_hq_vit_h",
    "build_sam_hq_vit_l",
    "combine_hq_masks",
    "hq_features",
    "is_sam_hq",
    "reduced_sam_hq_spec",
    "reference_encode",
    "reference_predict_masks",
]

REDUCED_SAM_HQ_NAME = "sam_hq_reduced"


# --------------------------------------------------------------------------- builders


def _factory(size: str) -> nn.Module:
    with warnings.catch_warnings():
        # The package registers its TinyViT variants in timm's registry over
        # MobileSAM's (same names); timm's deprecation notices. Nothing to act on.
        warnings.simplefilter("ignore")
        import segment_anything_hq

    build: Callable[..., nn.Module] = getattr(segment_anything_hq, f"build_sam_vit_{size}")
    # checkpoint=None: the upstream loader (torch.load without weights_only,
    # strict=False) is bypassed; builders.py reads and matches the checkpoint.
    return build(None)


def _builder(size: str, checkpoint: Checkpoint, seed: int) -> nn.Module:
    return _build(f"sam_hq_vit_{size}", partial(_factory, size), checkpoint, seed)


def build_sam_hq_vit_b(checkpoint: Checkpoint = None, *, seed: int = 0) -> nn.Module:
    """SAM-HQ ViT-B (``segment_anything_hq``), eval mode.

    Args:
        checkpoint: ``sam_hq_vit_b.pth`` (or any state dict of this architecture);
            ``None`` for random weights drawn with ``seed``.
        seed: Seed of the random weights when ``checkpoint`` is ``None``.

    Raises:
        CheckpointError: missing, unreadable, or another model's checkpoint
            (SAM's own ViT-B checkpoint lacks the HQ decoder and is named as such).
    """
    return _builder("b", checkpoint, seed)


def build_sam_hq_vit_l(checkpoint: Checkpoint = None, *, seed: int = 0) -> nn.Module:
    """SAM-HQ ViT-L. See :func:`build_sam_hq_vit_b`."""
    return _builder("l", checkpoint, seed)


def build_sam_hq_vit_h(checkpoint: Checkpoint = None, *, seed: int = 0) -> nn.Module:
    """SAM-HQ ViT-H. See :func:`build_sam_hq_vit_b`."""
    return _builder("h", checkpoint, seed)


def build_sam_hq_reduced(checkpoint: Checkpoint = None, *, seed: int = 0) -> nn.Module:
    """A small SAM-HQ for tests: the package's classes, 256-pixel input, 2-block ViT.

    Like :func:`~samedge.exporters.builders.build_sam_reduced`: SAM's 256-wide
    prompt encoder and decoder, a 64-wide encoder whose second block is the
    global one SAM-HQ takes its early features from. See :func:`reduced_sam_hq_spec`.
    """
    return _build(REDUCED_SAM_HQ_NAME, _reduced_factory, checkpoint, seed)


def reduced_sam_hq_spec() -> ModelSpec:
    """The :class:`~samedge.models.ModelSpec` of :func:`build_sam_hq_reduced` (not registered).

    Example:
        >>> spec = reduced_sam_hq_spec()
        >>> spec.image_size, spec.extra_features
        (256, (('hq_features', (32, 64, 64)),))
    """
    base = get_model_spec("sam_hq_vit_b")
    return replace(
        base,
        name=REDUCED_SAM_HQ_NAME,
        description="reduced SAM-HQ for tests (2-block ViT, 256 px, random weights)",
        image_size=256,
        embedding_shape=(256, 16, 16),
        builder=f"{__name__}:build_sam_hq_reduced",
        extra_features=((HQ_FEATURES, (32, 64, 64)),),
    )


def _reduced_factory() -> nn.Module:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # see _factory
        from segment_anything_hq.modeling import (
            ImageEncoderViT,
            MaskDecoderHQ,
            PromptEncoder,
            Sam,
            TwoWayTransformer,
        )

    size, grid, width = 256, 16, 64
    return Sam(
        # Window 6 over the 16x16 grid pads to 18x18, as in the reduced SAM.
        image_encoder=ImageEncoderViT(
            depth=2,
            embed_dim=width,
            img_size=size,
            mlp_ratio=4,
            norm_layer=partial(nn.LayerNorm, eps=1e-6),
            num_heads=2,
            patch_size=16,
            qkv_bias=True,
            use_rel_pos=True,
            global_attn_indexes=(1,),
            window_size=6,
            out_chans=256,
        ),
        prompt_encoder=PromptEncoder(
            embed_dim=256,
            image_embedding_size=(grid, grid),
            input_image_size=(size, size),
            mask_in_chans=16,
        ),
        mask_decoder=MaskDecoderHQ(
            num_multimask_outputs=3,
            transformer=TwoWayTransformer(depth=2, embedding_dim=256, mlp_dim=512, num_heads=8),
            transformer_dim=256,
            iou_head_depth=3,
            iou_head_hidden_dim=256,
            vit_dim=width,
        ),
        pixel_mean=[123.675, 116.28, 103.53],
        pixel_std=[58.395, 57.12, 57.375],
    )


def is_sam_hq(model: nn.Module) -> bool:
    """Whether ``model``'s mask decoder is SAM-HQ's (it has the HQ output token)."""
    decoder = getattr(model, "mask_decoder", None)
    return decoder is not None and hasattr(decoder, "hf_token")


# --------------------------------------------------------------------------- shared math


def hq_features(
    mask_decoder: Any, image_embeddings: torch.Tensor, interm_embeddings: list[torch.Tensor]
) -> torch.Tensor:
    """``MaskDecoderHQ.forward``'s HQ features: embedding + first global block, fused.

    Args:
        mask_decoder: SAM-HQ's ``MaskDecoderHQ``.
        image_embeddings: ``[1, 256, h, w]`` encoder output.
        interm_embeddings: The encoder's per-global-block outputs ``[1, h, w, D]``;
            SAM-HQ uses the first.
    """
    vit_features = interm_embeddings[0].permute(0, 3, 1, 2)
    fused = mask_decoder.embedding_encoder(image_embeddings)
    return fused + mask_decoder.compress_vit_feat(vit_features)  # type: ignore[no-any-return]


def combine_hq_masks(
    masks: torch.Tensor, iou: torch.Tensor, num_sam_tokens: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """``predict_masks``' K SAM masks + 1 HQ mask -> K masks "SAM token k + HQ", K scores."""
    sam_masks = masks[:, :num_sam_tokens]
    hq_mask = masks[:, num_sam_tokens : num_sam_tokens + 1]
    return sam_masks + hq_mask, iou[:, :num_sam_tokens]


def _num_sam_tokens(mask_decoder: Any) -> int:
    # MaskDecoderHQ counts its HQ token in num_mask_tokens.
    return int(mask_decoder.num_mask_tokens) - 1


# --------------------------------------------------------------------------- graphs


class HQEncoderGraph(EncoderGraph):
    """``image`` -> ``image_embeddings`` and :data:`HQ_FEATURES` (see the module notes)."""

    def __init__(
        self,
        sam: nn.Module,
        pixel_mean: tuple[float, float, float],
        pixel_std: tuple[float, float, float],
    ) -> None:
        super().__init__(sam, pixel_mean, pixel_std)
        self.mask_decoder: Any = sam.mask_decoder

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:  # type: ignore[override]
        embedding, interm = self.image_encoder((image - self.pixel_mean) / self.pixel_std)
        return embedding, hq_features(self.mask_decoder, embedding, interm)


class HQPromptDecoderGraph(PromptDecoderGraph):
    """SAM's batched prompt decoder with SAM-HQ's mask decoder; one more input."""

    def forward(  # type: ignore[override]
        self,
        image_embeddings: torch.Tensor,
        point_coords: torch.Tensor,
        point_labels: torch.Tensor,
        mask_input: torch.Tensor,
        has_mask_input: torch.Tensor,
        hq_features: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        sparse = self._embed_points(point_coords, point_labels)
        dense = self._embed_masks(mask_input, has_mask_input)
        masks, iou = self.mask_decoder.predict_masks(
            image_embeddings=image_embeddings,
            image_pe=self.image_pe,
            sparse_prompt_embeddings=sparse,
            dense_prompt_embeddings=dense,
            hq_features=hq_features,
        )
        return combine_hq_masks(masks, iou, _num_sam_tokens(self.mask_decoder))


# --------------------------------------------------------------------------- reference


@torch.no_grad()
def reference_encode(sam: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """SAM-HQ's encoder on a normalised, padded frame: the embedding and the HQ features."""
    image_encoder: Any = sam.image_encoder
    embedding, interm = image_encoder(x)
    return embedding, hq_features(sam.mask_decoder, embedding, interm)


@torch.no_grad()
def reference_predict_masks(
    sam: nn.Module,
    embedding: torch.Tensor,
    features: torch.Tensor,
    sparse: torch.Tensor,
    dense: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """SAM-HQ's ``predict_masks`` on SAM's prompt embeddings, in samedge's K-mask layout.

    The layout against SAM-HQ's own predictor (``MaskDecoderHQ.forward``) is
    checked against SAM-HQ's predictor by tests/exporters/test_sam_hq.py.
    """
    decoder: Any = sam.mask_decoder
    pe: Any = sam.prompt_encoder
    masks, iou = decoder.predict_masks(
        image_embeddings=embedding,
        image_pe=pe.get_dense_pe(),
        sparse_prompt_embeddings=sparse,
        dense_prompt_embeddings=dense,
        hq_features=features,
    )
    return combine_hq_masks(masks, iou, _num_sam_tokens(decoder))
