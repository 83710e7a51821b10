"""The torch modules traced into a SAM 2-family model directory's four graphs.

Each wraps the model's own modules (``SAM2Base`` from Meta's code) and only
rewrites what the exporters or the backends cannot take:

* Rotary position encoding (``RoPEAttention`` / EdgeTAM's ``RoPEAttentionv2``)
  uses complex tensors upstream (``torch.polar``, ``view_as_complex``), which
  ONNX has no type for (facebookresearch/sam2#186). :func:`_rotate` applies the
  same rotation as real arithmetic: cos/sin tables computed once from the
  module's own ``compute_cis`` and pairs of channels rotated with Mul/Sub/Add.
  The attention layers are re-stated around it with the modules' own weights
  (projections, norms, MLP), in the order ``MemoryAttentionLayer`` runs them.
* The memory bank arrives as tensors (:mod:`samedge.memory_model`), its
  spatial positional encoding (constant) and temporal encodings (learned
  tables, indexed by ``memory_bank_tpos``) are added inside the graph, and
  object pointers get their temporal encoding (``get_1d_sine_pe`` +
  ``obj_ptr_tpos_proj``) inside the graph too, so the runtime holds no weights.
* The decoder returns all 4 mask tokens' masks, scores and object pointers;
  choosing among them (multimask, stability fallback) is numpy in the runtime.
"""

from __future__ import annotations

import math
from types import SimpleNamespace
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from samedge.exporters.decoder import PromptDecoderGraph
from samedge.memory_model import NO_OBJ_SCORE

__all__ = [
    "Sam2DecoderGraph",
    "Sam2EncoderGraph",
    "Sam2MemoryAttentionGraph",
    "Sam2MemoryEncoderGraph",
    "memory_position_encoding",
]


class Sam2EncoderGraph(nn.Module):
    """``image`` [1,3,S,S] (0..255) -> vision features, no-memory features, high-res features."""

    pixel_mean: torch.Tensor
    pixel_std: torch.Tensor

    def __init__(
        self,
        model: nn.Module,
        pixel_mean: tuple[float, float, float],
        pixel_std: tuple[float, float, float],
    ) -> None:
        super().__init__()
        self.model: Any = model
        trunk: Any = model.image_encoder.trunk  # type: ignore[union-attr]
        if hasattr(trunk, "_get_pos_embed"):
            # Hiera interpolates its positional embedding (bicubic) on every call; the
            # exporter turns that into If nodes TensorRT cannot take. For the fixed
            # input size it is a constant: computed once and served on this instance.
            size = int(getattr(model, "image_size", 1024))
            with torch.no_grad():
                grid = trunk.patch_embed(torch.zeros(1, 3, size, size)).shape[1:3]
                pos_embed = trunk._get_pos_embed(tuple(grid)).detach().clone()
            trunk._get_pos_embed = lambda hw: pos_embed
        self.register_buffer("pixel_mean", torch.tensor(pixel_mean).view(1, 3, 1, 1))
        self.register_buffer("pixel_std", torch.tensor(pixel_std).view(1, 3, 1, 1))

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, ...]:
        # SAM 2 normalises x/255 with ImageNet's mean/std: the same as (x - 255*mean) / (255*std).
        out = self.model.forward_image((image - self.pixel_mean) / self.pixel_std)
        fpn = out["backbone_fpn"]
        vision = fpn[-1]
        # directly_add_no_mem_embed: a frame prompted without memory decodes from this.
        no_memory = vision + self.model.no_mem_embed.view(1, -1, 1, 1)
        return vision, no_memory, fpn[0], fpn[1]


class Sam2DecoderGraph(nn.Module):
    """SAM 2's prompt encoder + mask decoder over B objects, all 4 mask tokens out."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model: Any = model
        # SAM's wrapper embeds points/boxes/masks with arithmetic only; SAM 2's
        # prompt encoder is SAM's (labels -1..3, +0.5 pixel centre, 1024 frame).
        shim = SimpleNamespace(
            prompt_encoder=model.sam_prompt_encoder, mask_decoder=model.sam_mask_decoder
        )
        self.prompt = PromptDecoderGraph(shim)  # type: ignore[arg-type]

    def forward(
        self,
        image_embeddings: torch.Tensor,
        high_res_features_0: torch.Tensor,
        high_res_features_1: torch.Tensor,
        point_coords: torch.Tensor,
        point_labels: torch.Tensor,
        mask_input: torch.Tensor,
        has_mask_input: torch.Tensor,
    ) -> tuple[torch.Tensor, ...]:
        m = self.model
        sparse = self.prompt._embed_points(point_coords, point_labels)
        dense = self.prompt._embed_masks(mask_input, has_mask_input)
        masks, iou, tokens, score = m.sam_mask_decoder.predict_masks(
            image_embeddings=image_embeddings,
            image_pe=self.prompt.image_pe,
            sparse_prompt_embeddings=sparse,
            dense_prompt_embeddings=dense,
            repeat_image=False,
            high_res_features=[high_res_features_0, high_res_features_1],
        )
        pointers = m.obj_ptr_proj(tokens)  # [B, 4, C]: one per mask token
        if m.pred_obj_scores:
            present = (score > 0).to(masks.dtype)  # [B, 1]
            masks = torch.where(present[:, :, None, None] > 0, masks, NO_OBJ_SCORE)
            lam = present[:, :, None]
            if m.fixed_no_obj_ptr:
                pointers = lam * pointers
            pointers = pointers + (1.0 - lam) * m.no_obj_ptr
        return masks, iou, pointers, score


def memory_position_encoding(model: nn.Module, size: int) -> torch.Tensor:
    """The spatial positional encoding of one memory frame, ``[T, Cm]`` (a constant).

    Computed by SAM 2's own memory path on a dummy frame, so SAM 2.1's sine
    grid and EdgeTAM's perceiver encoding (zeros for its 1-D latents) both come out.
    """
    m: Any = model
    grid = size // m.backbone_stride
    with torch.no_grad():
        feats = [torch.zeros(grid * grid, 1, m.hidden_dim)]
        masks = torch.zeros(1, 1, size, size)
        _, pos = m._encode_new_memory(feats, [(grid, grid)], masks, torch.ones(1, 1), False)
    enc = pos[-1][0]
    if enc.ndim == 3:  # [Cm, h, w] -> [h*w, Cm]
        enc = enc.flatten(1).transpose(0, 1)
    return enc.detach().clone()


def _rope_tables(attn: nn.Module, tokens: int, *, key: bool = False) -> tuple[torch.Tensor, ...]:
    """cos/sin ``[tokens, c/2]`` of the rotation ``attn`` applies to ``tokens`` tokens."""
    a: Any = attn
    if hasattr(a, "freqs_cis_q"):  # RoPEAttentionv2: fixed q and k grids
        cis = a.freqs_cis_k if key else a.freqs_cis_q
    else:  # RoPEAttention recomputes for a square grid of the queries' length
        side = math.sqrt(tokens)
        cis = a.compute_cis(end_x=side, end_y=side)
    if cis.shape[0] != tokens:
        raise ValueError(f"rotary table of {cis.shape[0]} positions for {tokens} tokens")
    return cis.real.float().contiguous(), cis.imag.float().contiguous()


def _rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate channel pairs (2i, 2i+1) of ``x [..., L, c]`` by the table's angles, in reals.

    Equal to ``view_as_real(view_as_complex(x) * (cos + i sin))``.
    """
    shape = x.shape
    pairs = x.reshape(*shape[:-1], shape[-1] // 2, 2)
    re, im = pairs[..., 0], pairs[..., 1]
    out = torch.stack((re * cos - im * sin, re * sin + im * cos), dim=-1)
    return out.reshape(shape)


def _heads(x: torch.Tensor, n: int) -> torch.Tensor:
    return x.reshape(x.shape[0], x.shape[1], n, x.shape[2] // n).transpose(1, 2)


def _attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Scaled dot-product attention as MatMul/Softmax (what every backend fuses)."""
    scale = 1.0 / math.sqrt(q.shape[-1])
    weights = torch.softmax((q * scale) @ k.transpose(-1, -2), dim=-1)
    out = weights @ v
    return out.transpose(1, 2).reshape(out.shape[0], out.shape[2], -1)


class Sam2MemoryAttentionGraph(nn.Module):
    """Current features + the memory bank of B objects -> memory-conditioned features."""

    curr_pos: torch.Tensor
    memory_pos: torch.Tensor
    tpos_table: torch.Tensor
    q_cos: torch.Tensor
    q_sin: torch.Tensor
    cq_cos: torch.Tensor
    cq_sin: torch.Tensor
    k_cos: torch.Tensor
    k_sin: torch.Tensor

    def __init__(self, model: nn.Module, image_size: int) -> None:
        super().__init__()
        m: Any = model
        self.model: Any = model
        self.attention: Any = model.memory_attention
        grid = image_size // m.backbone_stride
        self.grid = grid
        self.hidden_dim = int(m.hidden_dim)
        self.mem_dim = int(m.mem_dim)
        self.num_maskmem = int(m.num_maskmem)
        self.max_ptrs = int(m.max_obj_ptrs_in_encoder)
        with torch.no_grad():
            dummy = torch.zeros(1, 3, image_size, image_size)
            pos = m.image_encoder(dummy)["vision_pos_enc"][-1]  # [1, C, h, w], constant
        self.register_buffer("curr_pos", pos.flatten(2).transpose(1, 2).detach().clone())
        self.register_buffer("memory_pos", memory_position_encoding(model, image_size))
        # maskmem_tpos_enc[num_maskmem - t_pos - 1] for t_pos = 0 .. num_maskmem-1.
        table = m.maskmem_tpos_enc.detach().reshape(self.num_maskmem, self.mem_dim)
        self.register_buffer("tpos_table", torch.flip(table, dims=[0]).clone())
        attention: Any = m.memory_attention
        layer0: Any = attention.layers[0]
        q_tokens = grid * grid
        q_cos, q_sin = _rope_tables(layer0.self_attn, q_tokens)
        self.register_buffer("q_cos", q_cos)
        self.register_buffer("q_sin", q_sin)
        cross: Any = layer0.cross_attn_image
        cq_cos, cq_sin = _rope_tables(cross, q_tokens)
        self.register_buffer("cq_cos", cq_cos)
        self.register_buffer("cq_sin", cq_sin)
        self.cross_v2 = hasattr(cross, "freqs_cis_k")
        memory_tokens = int(self.memory_pos.shape[0])
        if self.cross_v2:
            k_cos, k_sin = _rope_tables(cross, int(cross.freqs_cis_k.shape[0]), key=True)
        else:
            k_cos, k_sin = _rope_tables(cross, memory_tokens)
        self.register_buffer("k_cos", k_cos)
        self.register_buffer("k_sin", k_sin)
        # EdgeTAM's perceiver puts its 1-D latents (no rotation) before the 2-D ones.
        self.k_plain = memory_tokens - int(k_cos.shape[0])

    def _pointer_pos(self, offsets: torch.Tensor) -> torch.Tensor:
        """SAM 2's temporal encoding of object pointers, ``[B, P, Cm]``."""
        m = self.model
        if not m.add_tpos_enc_to_obj_ptrs:
            return offsets.unsqueeze(-1).expand(*offsets.shape, self.mem_dim) * 0.0
        dim = self.hidden_dim if m.proj_tpos_enc_in_obj_ptrs else self.mem_dim
        # get_1d_sine_pe(offset / t_diff_max, dim), t_diff_max = max_obj_ptrs - 1 on a stream.
        pe_dim = dim // 2
        dim_t = torch.arange(pe_dim, dtype=torch.float32)
        dim_t = 10000 ** (2 * torch.div(dim_t, 2, rounding_mode="floor") / pe_dim)
        pos = (offsets / float(self.max_ptrs - 1)).unsqueeze(-1) / dim_t
        pos = torch.cat([pos.sin(), pos.cos()], dim=-1)
        return m.obj_ptr_tpos_proj(pos)  # type: ignore[no-any-return]

    def _self_attention(self, attn: Any, x: torch.Tensor) -> torch.Tensor:
        n = attn.num_heads
        q = _rotate(_heads(attn.q_proj(x), n), self.q_cos, self.q_sin)
        k = _rotate(_heads(attn.k_proj(x), n), self.q_cos, self.q_sin)
        v = _heads(attn.v_proj(x), n)
        return attn.out_proj(_attend(q, k, v))  # type: ignore[no-any-return]

    def _cross_attention(
        self,
        attn: Any,
        x: torch.Tensor,
        spatial_k: torch.Tensor,
        spatial_v: torch.Tensor,
        pointer_k: torch.Tensor,
        pointer_v: torch.Tensor,
    ) -> torch.Tensor:
        n = attn.num_heads
        b, frames, tokens, _ = spatial_k.shape
        q = _rotate(_heads(attn.q_proj(x), n), self.cq_cos, self.cq_sin)
        k = attn.k_proj(spatial_k)  # [B, M, T, Ci]
        k = k.reshape(b, frames, tokens, n, -1).permute(0, 3, 1, 2, 4)  # [B, h, M, T, c]
        if self.k_plain:
            plain, rope = k[:, :, :, : self.k_plain], k[:, :, :, self.k_plain :]
            k = torch.cat((plain, _rotate(rope, self.k_cos, self.k_sin)), dim=3)
        else:
            k = _rotate(k, self.k_cos, self.k_sin)
        k = k.reshape(b, n, frames * tokens, -1)
        v = attn.v_proj(spatial_v).reshape(b, frames * tokens, n, -1).transpose(1, 2)
        k = torch.cat((k, _heads(attn.k_proj(pointer_k), n)), dim=2)
        v = torch.cat((v, _heads(attn.v_proj(pointer_v), n)), dim=2)
        return attn.out_proj(_attend(q, k, v))  # type: ignore[no-any-return]

    def forward(
        self,
        vision_features: torch.Tensor,
        memory_bank: torch.Tensor,
        memory_bank_tpos: torch.Tensor,
        pointer_bank: torch.Tensor,
        pointer_bank_offsets: torch.Tensor,
    ) -> torch.Tensor:
        b = memory_bank.shape[0]
        ma = self.attention
        # Spatial memories: features, and as keys features + spatial + temporal encodings.
        slot = memory_bank_tpos.to(torch.int64)  # [B, M]
        tpos = self.tpos_table[slot]  # [B, M, Cm]
        mem_pos = self.memory_pos + tpos.unsqueeze(2)  # [B, M, T, Cm]
        # Pointers: each C-wide pointer becomes C/Cm tokens of Cm, same temporal encoding.
        split = self.hidden_dim // self.mem_dim
        ptr = pointer_bank.reshape(b, -1, split, self.mem_dim).flatten(1, 2)
        ptr_pos = self._pointer_pos(pointer_bank_offsets)
        ptr_pos = ptr_pos.unsqueeze(2).expand(-1, -1, split, -1).flatten(1, 2)

        curr = vision_features.flatten(2).transpose(1, 2)  # [1, HW, C]
        out = curr
        if ma.pos_enc_at_input:
            out = out + 0.1 * self.curr_pos
        out = out.expand(b, -1, -1)
        for layer in ma.layers:
            t = layer.norm1(out)
            q_in = t + self.curr_pos if layer.pos_enc_at_attn else t
            # self_attn(q, k=q, v=t): with pos_enc_at_attn off (SAM 2.1, EdgeTAM) q = k = v.
            if layer.pos_enc_at_attn:
                raise NotImplementedError("pos_enc_at_attn: not used by SAM 2.1 or EdgeTAM")
            out = out + self._self_attention(layer.self_attn, q_in)
            t = layer.norm2(out)
            q_in = t + self.curr_pos if layer.pos_enc_at_cross_attn_queries else t
            keys_s = memory_bank + mem_pos if layer.pos_enc_at_cross_attn_keys else memory_bank
            keys_p = ptr + ptr_pos if layer.pos_enc_at_cross_attn_keys else ptr
            out = out + self._cross_attention(
                layer.cross_attn_image, q_in, keys_s, memory_bank, keys_p, ptr
            )
            t = layer.norm3(out)
            out = out + layer.linear2(layer.activation(layer.linear1(t)))
        out = ma.norm(out)
        return out.transpose(1, 2).reshape(b, self.hidden_dim, self.grid, self.grid)


class Sam2MemoryEncoderGraph(nn.Module):
    """Frame features + each object's chosen mask -> its memory entry ``[B, T, Cm]``."""

    def __init__(self, model: nn.Module, image_size: int) -> None:
        super().__init__()
        self.model: Any = model
        self.image_size = image_size

    def forward(
        self,
        vision_features: torch.Tensor,
        mask_logits: torch.Tensor,
        mask_from_prompt: torch.Tensor,
        object_score_logits: torch.Tensor | None = None,
    ) -> torch.Tensor:
        m = self.model
        size = self.image_size
        high_res = F.interpolate(
            mask_logits, size=(size, size), mode="bilinear", align_corners=False
        )
        # _encode_new_memory: binarised on prompted frames, else sigmoid; then scale/bias.
        binary = (high_res > 0).to(high_res.dtype)
        if not m.binarize_mask_from_pts_for_mem_enc:
            binary = torch.sigmoid(high_res)
        prompted = mask_from_prompt.view(-1, 1, 1, 1)
        mask = prompted * binary + (1.0 - prompted) * torch.sigmoid(high_res)
        mask = mask * m.sigmoid_scale_for_mem_enc + m.sigmoid_bias_for_mem_enc
        # One copy of the frame per object: OpenVINO's CPU plugin fuses the 1-vs-B
        # broadcast add after pix_feat_proj wrongly ("Can not clone with new dims").
        frame = vision_features.expand(mask.shape[0], -1, -1, -1)
        out = m.memory_encoder(frame, mask, skip_mask_sigmoid=True)
        features = out["vision_features"]
        # Only SAM 2.1 has the no-object embedding; EdgeTAM's graph takes no score.
        if m.no_obj_embed_spatial is not None and object_score_logits is not None:
            present = (object_score_logits > 0).to(features.dtype)
            features = (
                features
                + (1.0 - present[..., None, None]) * m.no_obj_embed_spatial[..., None, None]
            )
        if m.spatial_perceiver is not None:
            return _perceive(m.spatial_perceiver, features, out["vision_pos_enc"][0])
        return features.flatten(2).transpose(1, 2)  # [B, h*w, Cm]


def _perceive(perceiver: Any, x: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
    """EdgeTAM's ``PerceiverResampler.forward`` latents for a batch of B objects.

    Upstream ``forward_2d`` views an expanded (stride-0) tensor, which fails for
    B > 1; this runs the same layers with a copy-free reshape order instead.
    Only the latents are returned: their positional encoding is a constant of
    the memory-attention graph.
    """
    out = []
    if perceiver.num_latents > 0:
        latents, _ = perceiver.forward_1d(x, pos)
        out.append(latents)
    if perceiver.num_latents_2d > 0:
        b, c, h, _ = x.shape
        windows = int(math.sqrt(perceiver.num_latents_2d))
        size = h // windows
        # window_partition: [B, h, w, C] -> [B * windows^2, size * size, C]
        parts = x.permute(0, 2, 3, 1).reshape(b, windows, size, windows, size, c)
        parts = parts.permute(0, 1, 3, 2, 4, 5).reshape(-1, size * size, c)
        latents = perceiver.latents_2d.reshape(1, -1, c).expand(b, -1, -1).reshape(-1, 1, c)
        for layer in perceiver.layers:
            latents = layer(latents, parts)
        out.append(perceiver.norm(latents.reshape(b, -1, c)))
    return torch.cat(out, dim=1)
