"""samedge-tiny-track: samedge-tiny with SAM 2's memory, a SAM 2-family model.

The model is Meta's ``SAM2VideoPredictor`` (from the ``sam2`` package, as
SAM 2.1 and EdgeTAM are), assembled at samedge-tiny's width, so the SAM 2
exporter (:mod:`samedge.exporters.sam2`) writes its four stateless graphs and
:class:`~samedge.stream.memory.MemoryTracker` runs it like any SAM 2 export:

* image encoder: samedge-tiny's :class:`~samedge.exporters.tiny_model.TinyEncoder`
  (frozen in training), whose pyramid gives SAM 2's three levels: the
  128×16×16 embedding and real stride-8 (64 channels) and stride-4 (24
  channels) features as the decoder's high-resolution features;
* prompt encoder and mask decoder: SAM 2's classes at width 128 with
  samedge-tiny's sizes (2-block two-way transformer, 4 heads, MLP 512). SAM 2's
  decoder is SAM's plus an object-score token and head and the two 1×1
  projections of the high-resolution features (``conv_s0``/``conv_s1``, here
  from 24 and 64 channels);
* memory attention: SAM 2's ``MemoryAttention`` with 2 RoPE layers at width
  128 (SAM 2.1: 4 at 256); memory encoder: SAM 2's ``MemoryEncoder`` at width
  128 with 64-channel memories (SAM 2.1: 256 / 64), 7 memory slots, object
  pointers, the no-object embeddings: SAM 2.1's settings otherwise.

:func:`init_from_samedge_tiny` copies samedge-tiny's trained weights into the
parts that match (encoder, prompt encoder, and the decoder's SAM part, with
``conv_s0``/``conv_s1`` zeroed and the no-memory embedding zeroed, so a
prompted frame decodes as samedge-tiny would, up to the object-score token);
``training/train_samedge_tiny_track.py`` trains the rest.

Example:
    >>> from samedge.exporters.tiny_track_model import build_samedge_tiny_track
    >>> model = build_samedge_tiny_track(None)          # random weights
    >>> model.hidden_dim, model.mem_dim
    (128, 64)
"""

from __future__ import annotations

import logging
from typing import Any

import torch
from torch import nn

from samedge.exporters.tiny_model import TINY_EMBED_DIM, TINY_IMAGE_SIZE, Checkpoint, TinyEncoder

__all__ = [
    "TINY_TRACK_MEMORY_DIM",
    "TINY_TRACK_NAME",
    "TinyTrackImageEncoder",
    "build_samedge_tiny_track",
    "init_from_samedge_tiny",
    "tiny_track_model",
]

log = logging.getLogger(__name__)

TINY_TRACK_NAME = "samedge_tiny_track"
TINY_TRACK_MEMORY_DIM = 64
# Channels of TinyEncoder's stride-4 and stride-8 stages.
_STRIDE4_CHANNELS = 24
_STRIDE8_CHANNELS = 64


class _Neck(nn.Module):
    """What ``SAM2Base`` reads off an image encoder's neck: its width, and the position encoding."""

    def __init__(self, d_model: int) -> None:
        super().__init__()
        from sam2.modeling.position_encoding import PositionEmbeddingSine

        self.d_model = d_model
        self.position_encoding = PositionEmbeddingSine(num_pos_feats=d_model)


class TinyTrackImageEncoder(nn.Module):
    """samedge-tiny's encoder as SAM 2's image encoder (``forward`` returns SAM 2's dict).

    ``backbone_fpn`` is the stride-4, stride-8 and stride-16 levels, finest first, as
    SAM 2's ``ImageEncoder``; ``SAM2Base.forward_image`` projects the first two with
    the decoder's ``conv_s0``/``conv_s1``.
    """

    def __init__(self) -> None:
        super().__init__()
        self.trunk = TinyEncoder()
        self.neck = _Neck(TINY_EMBED_DIM)

    def forward(self, x: torch.Tensor) -> dict[str, Any]:
        levels = list(self.trunk.pyramid(x))
        pos = [self.neck.position_encoding(f).to(f.dtype) for f in levels]
        return {"vision_features": levels[-1], "vision_pos_enc": pos, "backbone_fpn": levels}


def _rope(kv_in_dim: int | None = None) -> nn.Module:
    from sam2.modeling.sam.transformer import RoPEAttention

    grid = TINY_IMAGE_SIZE // 16
    extra: dict[str, Any] = (
        {} if kv_in_dim is None else {"rope_k_repeat": True, "kv_in_dim": kv_in_dim}
    )
    # Attention inside at half width (64; SAM 2.1: 256): the cross-attention over
    # up to 7 x 256 memory tokens is most of the model's cost, in training and at run time.
    return RoPEAttention(  # type: ignore[no-any-return]
        rope_theta=10000.0,
        feat_sizes=[grid, grid],
        embedding_dim=TINY_EMBED_DIM,
        num_heads=1,
        downsample_rate=2,
        dropout=0.0,
        **extra,
    )


def tiny_track_model() -> nn.Module:
    """The untrained samedge-tiny-track (``SAM2VideoPredictor``, train mode, default init)."""
    from sam2.modeling.memory_attention import MemoryAttention, MemoryAttentionLayer
    from sam2.modeling.memory_encoder import CXBlock, Fuser, MaskDownSampler, MemoryEncoder
    from sam2.modeling.position_encoding import PositionEmbeddingSine
    from sam2.modeling.sam.mask_decoder import MaskDecoder
    from sam2.modeling.sam.transformer import TwoWayTransformer
    from sam2.sam2_video_predictor import SAM2VideoPredictor

    width, memory = TINY_EMBED_DIM, TINY_TRACK_MEMORY_DIM
    # Dropout off: the memory modules train for minutes, not epochs.
    attention = MemoryAttention(
        d_model=width,
        pos_enc_at_input=True,
        layer=MemoryAttentionLayer(
            activation="relu",
            cross_attention=_rope(kv_in_dim=memory),
            d_model=width,
            dim_feedforward=2 * width,
            dropout=0.0,
            pos_enc_at_attn=False,
            pos_enc_at_cross_attn_keys=True,
            pos_enc_at_cross_attn_queries=False,
            self_attention=_rope(),
        ),
        num_layers=2,
    )
    encoder = MemoryEncoder(
        out_dim=memory,
        # MaskDownSampler's own defaults (4x4, stride 4: 2 layers; SAM 2.1 uses 4
        # layers of 3x3, stride 2) and one fuser block (SAM 2.1: 2), for a CPU budget.
        mask_downsampler=MaskDownSampler(
            embed_dim=width, kernel_size=4, stride=4, padding=0, total_stride=16
        ),
        fuser=Fuser(
            CXBlock(dim=width, kernel_size=7, padding=3, layer_scale_init_value=1e-6),
            num_layers=1,
        ),
        position_encoding=PositionEmbeddingSine(num_pos_feats=memory),
        in_dim=width,
    )
    decoder_args = {
        "dynamic_multimask_via_stability": True,
        "dynamic_multimask_stability_delta": 0.05,
        "dynamic_multimask_stability_thresh": 0.98,
    }
    # SAM 2.1's model settings (configs/sam2.1/sam2.1_hiera_t.yaml) and the ones
    # build_sam2_video_predictor adds, at 256 px.
    model = SAM2VideoPredictor(
        image_encoder=TinyTrackImageEncoder(),
        memory_attention=attention,
        memory_encoder=encoder,
        num_maskmem=7,
        image_size=TINY_IMAGE_SIZE,
        backbone_stride=16,
        sigmoid_scale_for_mem_enc=20.0,
        sigmoid_bias_for_mem_enc=-10.0,
        binarize_mask_from_pts_for_mem_enc=True,
        use_mask_input_as_output_without_sam=True,
        directly_add_no_mem_embed=True,
        no_obj_embed_spatial=True,
        use_high_res_features_in_sam=True,
        multimask_output_in_sam=True,
        iou_prediction_use_sigmoid=False,  # samedge-tiny's IoU head is linear
        use_obj_ptrs_in_encoder=True,
        add_tpos_enc_to_obj_ptrs=True,
        proj_tpos_enc_in_obj_ptrs=True,
        use_signed_tpos_enc_to_obj_ptrs=True,
        only_obj_ptrs_in_the_past_for_eval=True,
        pred_obj_scores=True,
        pred_obj_scores_mlp=True,
        fixed_no_obj_ptr=True,
        multimask_output_for_tracking=True,
        use_multimask_token_for_obj_ptr=True,
        multimask_min_pt_num=0,
        multimask_max_pt_num=1,
        use_mlp_for_obj_ptr_proj=True,
        sam_mask_decoder_extra_args=decoder_args,
    )
    # SAM2Base builds its decoder at SAM 2's sizes (MLP 2048, 8 heads, IoU head 256):
    # replaced by the same class at samedge-tiny's, so its trained weights fit.
    m: Any = model
    m.sam_mask_decoder = MaskDecoder(
        num_multimask_outputs=3,
        transformer=TwoWayTransformer(depth=2, embedding_dim=width, mlp_dim=512, num_heads=4),
        transformer_dim=width,
        iou_head_depth=3,
        iou_head_hidden_dim=128,
        use_high_res_features=True,
        iou_prediction_use_sigmoid=False,
        pred_obj_scores=True,
        pred_obj_scores_mlp=True,
        use_multimask_token_for_obj_ptr=True,
        **decoder_args,
    )
    # High-resolution projections from TinyEncoder's stage widths (SAM 2: from the
    # FPN's 256) to the decoder's upscaling widths (C/8, C/4), as in SAM 2.
    decoder: Any = m.sam_mask_decoder
    decoder.conv_s0 = nn.Conv2d(_STRIDE4_CHANNELS, width // 8, kernel_size=1)
    decoder.conv_s1 = nn.Conv2d(_STRIDE8_CHANNELS, width // 4, kernel_size=1)
    return model


def init_from_samedge_tiny(model: nn.Module, sam: nn.Module) -> list[str]:
    """Copy samedge-tiny's trained weights into the parts of ``model`` that match.

    Encoder -> ``image_encoder.trunk``; prompt encoder -> ``sam_prompt_encoder``;
    mask decoder -> ``sam_mask_decoder`` (SAM's ``MLPBlock`` ``lin1``/``lin2`` are
    SAM 2's ``MLP`` ``layers.0``/``layers.1``; every other name is the same).
    ``conv_s0``/``conv_s1`` and the no-memory embedding are zeroed, so the
    high-resolution features and the no-memory embedding start by adding
    nothing: a prompted frame decodes from samedge-tiny's embedding with
    samedge-tiny's decoder (plus SAM 2's object-score token in its attention).

    Returns:
        The names (in ``model``) of the parameters and buffers copied.

    Raises:
        ValueError: a samedge-tiny tensor has no place, or the wrong shape, in ``model``.
    """
    target = model.state_dict()
    copied: dict[str, torch.Tensor] = {}
    for key, value in sam.state_dict().items():
        prefix, _, rest = key.partition(".")
        if prefix in ("pixel_mean", "pixel_std"):
            continue
        name = {
            "image_encoder": "image_encoder.trunk.",
            "prompt_encoder": "sam_prompt_encoder.",
            "mask_decoder": "sam_mask_decoder.",
        }[prefix] + rest.replace("mlp.lin1.", "mlp.layers.0.").replace("mlp.lin2.", "mlp.layers.1.")
        if name not in target or target[name].shape != value.shape:
            got = tuple(target[name].shape) if name in target else "missing"
            raise ValueError(f"samedge_tiny {key} {tuple(value.shape)}: model has {name} {got}")
        copied[name] = value
    model.load_state_dict(copied, strict=False)
    m: Any = model
    with torch.no_grad():
        for conv in (m.sam_mask_decoder.conv_s0, m.sam_mask_decoder.conv_s1):
            conv.weight.zero_()
            conv.bias.zero_()
        m.no_mem_embed.zero_()
    log.info("copied %d samedge_tiny tensors into %s", len(copied), TINY_TRACK_NAME)
    return sorted(copied)


def build_samedge_tiny_track(checkpoint: Checkpoint = None, *, seed: int = 0) -> nn.Module:
    """samedge-tiny-track as Meta's ``SAM2VideoPredictor``, eval mode.

    Args:
        checkpoint: ``training/samedge_tiny_track.pt`` (a state dict); ``None``
            for random weights drawn with ``seed``.
        seed: Seed of the random weights when ``checkpoint`` is ``None``.

    Raises:
        CheckpointError: missing, unreadable, or another model's checkpoint.
    """
    from samedge.exporters.builders import _build

    return _build(TINY_TRACK_NAME, tiny_track_model, checkpoint, seed)
