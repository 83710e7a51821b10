"""SAM's ``MaskDecoder.predict_masks`` over B prompts, with the image's share computed once.

SAM's own ``predict_masks`` repeats the image embedding B times and then runs
every image-side projection, head split and layout change once per object:
in the exported graph a 16-object call costs 16-20x a 1-object call
(benchmarks/results/amd-epyc-2c/decoder_batch.md has the per-op profile).
This module computes the same function from the same modules' weights,
rearranged so that

* the first layer's image-side projections (token->image keys and values,
  image->token queries) run once on the batch-1 embedding; what the mask
  prompt adds per object goes through the mask branch's 16-channel bottleneck
  (``mask_downscaling``'s last layer is a 1x1 convolution, so the projection
  of its output folds into one small matrix);
* every other image-side projection is folded into the per-object token side
  (``q . (W k)`` as ``(W^T q) . k``), so no ``[B, h*w, C]`` tensor is
  projected, split into heads or transposed;
* head splitting uses block-diagonal token matrices (8 heads x T tokens
  rows), so attention is plain matrix products on the ``[B, h*w, C]`` layout;
* the image->token attention's logits are (head, token) rows x image
  columns, so its softmax over a head's T tokens reduces along an outer axis
  and vectorises over the image positions (as ``[B, h*w, H, T]`` the kernels
  worked on T-wide slivers: 52 of OpenVINO bf16's 559 ms for 16 objects on one
  thread, benchmarks/results/amd-epyc-2c/decoder_softmax_axis.md);
* the two 2x2/stride-2 transposed convolutions of the output upscaling run as
  matrix products in channels-last layout (``LayerNorm2d`` becomes one
  ``LayerNormalization``), and only the 4-channel mask logits are reordered;
* the final token->image attention runs for the IoU and mask tokens only: the
  prompt tokens' outputs are never read (a 16-object call 1.08-1.11x faster,
  benchmarks/results/amd-epyc-2c/decoder_final_attention.md).

Terms that are constant along a softmax's axis (key biases, the dense
prompt's constant part) are dropped from the logits, where they cancel
exactly; value biases are added after the attention, whose rows sum to one.
The export's parity check compares the result with SAM's own
``predict_masks`` (:mod:`samedge.exporters.parity`), so the rearrangement is
verified on every export. Models whose decoder is built differently take
the upstream path (:func:`supports_batched_decoder`).
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["BatchedMaskDecoder", "supports_batched_decoder"]


def _is_conv_transpose_2x2(module: Any) -> bool:
    return (
        isinstance(module, nn.ConvTranspose2d)
        and tuple(module.kernel_size) == (2, 2)
        and tuple(module.stride) == (2, 2)
        and tuple(module.padding) == (0, 0)
        and tuple(module.output_padding) == (0, 0)
        and tuple(module.dilation) == (1, 1)
        and module.groups == 1
        and module.bias is not None
    )


def _is_layer_norm_2d(module: Any) -> bool:
    return type(module).__name__ == "LayerNorm2d" and hasattr(module, "eps")


def _is_attention(module: Any) -> bool:
    return all(hasattr(module, a) for a in ("q_proj", "k_proj", "v_proj", "out_proj", "num_heads"))


def supports_batched_decoder(prompt_encoder: Any, mask_decoder: Any) -> bool:
    """Whether ``mask_decoder`` has the layout :class:`BatchedMaskDecoder` computes.

    Checked by structure (segment_anything, MobileSAM and samedge_tiny share it):
    a ``TwoWayTransformer`` of ``TwoWayAttentionBlock`` layers whose first
    skips the positional encoding, SAM's output upscaling, and a mask branch
    ending in a 1x1 convolution. Anything else (SAM-HQ, SAM 2) keeps the
    upstream ``predict_masks``.
    """
    transformer = getattr(mask_decoder, "transformer", None)
    if type(transformer).__name__ != "TwoWayTransformer":
        return False
    layers = list(getattr(transformer, "layers", []))
    if not layers or not _is_attention(getattr(transformer, "final_attn_token_to_image", None)):
        return False
    for i, layer in enumerate(layers):
        if type(layer).__name__ != "TwoWayAttentionBlock":
            return False
        if bool(getattr(layer, "skip_first_layer_pe", None)) != (i == 0):
            return False
        for name in ("self_attn", "cross_attn_token_to_image", "cross_attn_image_to_token"):
            if not _is_attention(getattr(layer, name, None)):
                return False
    upscaling = list(getattr(mask_decoder, "output_upscaling", []))
    # SAM 2's MaskDecoder shares the name but adds high-resolution features
    # and an object-score token.
    if (
        type(mask_decoder).__name__ != "MaskDecoder"
        or hasattr(mask_decoder, "use_high_res_features")
        or hasattr(mask_decoder, "pred_obj_scores")
        or len(upscaling) != 5
        or not _is_conv_transpose_2x2(upscaling[0])
        or not _is_layer_norm_2d(upscaling[1])
        or not _is_conv_transpose_2x2(upscaling[3])
    ):
        return False
    downscaling = list(getattr(prompt_encoder, "mask_downscaling", []))
    if not downscaling:
        return False
    last = downscaling[-1]
    return (
        isinstance(last, nn.Conv2d)
        and tuple(last.kernel_size) == (1, 1)
        and tuple(last.stride) == (1, 1)
        and last.groups == 1
        and last.bias is not None
    )


class BatchedMaskDecoder(nn.Module):
    """``predict_masks`` with the image-side work shared over the batch (see the module doc).

    Args:
        prompt_encoder: The model's prompt encoder (its mask branch and no-mask embedding).
        mask_decoder: The model's ``MaskDecoder``; check :func:`supports_batched_decoder` first.
        image_pe: The dense positional encoding, ``[1, C, h, w]``.
    """

    pe_cl: torch.Tensor
    head_mask: torch.Tensor
    mask_t2i_k: torch.Tensor
    mask_t2i_v: torch.Tensor
    mask_i2t_q: torch.Tensor
    mask_dense: torch.Tensor
    up1_weight: torch.Tensor
    up1_bias: torch.Tensor
    up2_weight: torch.Tensor
    up2_bias: torch.Tensor

    def __init__(self, prompt_encoder: nn.Module, mask_decoder: nn.Module, image_pe: torch.Tensor):
        super().__init__()
        # Any: Meta's, MobileSAM's and samedge's own SAM classes share no base type.
        self.prompt_encoder: Any = prompt_encoder
        self.mask_decoder: Any = mask_decoder
        pe = image_pe.detach().flatten(2)  # [1, C, n]
        self.register_buffer("pe_cl", pe.transpose(1, 2).contiguous())
        self._fold_weights()
        decoder: Any = mask_decoder
        transformer = decoder.transformer
        attentions = [
            a
            for layer in transformer.layers
            for a in (layer.cross_attn_token_to_image, layer.cross_attn_image_to_token)
        ] + [transformer.final_attn_token_to_image]
        heads: set[int] = {int(a.num_heads) for a in attentions}
        inner: set[int] = {int(a.q_proj.out_features) for a in attentions}
        if len(heads) != 1 or len(inner) != 1:
            raise ValueError("BatchedMaskDecoder: cross-attention layers differ in heads or width")
        self.num_heads: int = next(iter(heads))
        width = next(iter(inner))
        # head_mask[h, 0, c] = 1 where channel c belongs to head h: turns per-token
        # rows into block-diagonal (head, token) rows.
        per_head = width // self.num_heads
        mask = torch.zeros(self.num_heads, 1, width)
        for h in range(self.num_heads):
            mask[h, 0, h * per_head : (h + 1) * per_head] = 1.0
        self.register_buffer("head_mask", mask)
        self.scale = 1.0 / math.sqrt(per_head)

    @torch.no_grad()
    def _fold_weights(self) -> None:
        """Products and layouts of the modules' weights, as constants of the graph.

        Computed here rather than traced, so every MatMul of the graph has a
        constant right operand (the backends pre-pack those and fuse the bias)
        instead of a weight expression evaluated at run time.
        """
        last = self.prompt_encoder.mask_downscaling[-1]
        c_m = last.weight[:, :, 0, 0]  # [C, c]: the mask branch's last 1x1 convolution
        first = self.mask_decoder.transformer.layers[0]
        t2i, i2t = first.cross_attn_token_to_image, first.cross_attn_image_to_token
        self.register_buffer("mask_t2i_k", (t2i.k_proj.weight @ c_m).clone())  # [Ci, c]
        self.register_buffer("mask_t2i_v", (t2i.v_proj.weight @ c_m).T.contiguous())  # [c, Ci]
        self.register_buffer("mask_i2t_q", (i2t.q_proj.weight @ c_m).clone())  # [Ci, c]
        self.register_buffer("mask_dense", c_m.T.contiguous())  # [c, C]
        up1, _, _, up2, _ = self.mask_decoder.output_upscaling
        # ConvTranspose2d weight [C_in, C_out, kh, kw] -> [C_in, (kh, kw, C_out)].
        for name, up in (("up1", up1), ("up2", up2)):
            weight = up.weight.permute(0, 2, 3, 1).reshape(up.in_channels, -1).contiguous()
            self.register_buffer(f"{name}_weight", weight)
            self.register_buffer(f"{name}_bias", torch.cat([up.bias] * 4).clone())

    # ------------------------------------------------------------------ heads

    def _block_rows(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, T, Ci]`` -> ``[B, H*T, Ci]``: row (h, t) keeps only head h's channels of x[t]."""
        return (x.unsqueeze(1) * self.head_mask).flatten(1, 2)

    def _merge_rows(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, H*T, Ci]`` -> ``[B, T, Ci]``: token t takes head h's channels from row (h, t)."""
        return (x.unflatten(1, (self.num_heads, -1)) * self.head_mask).sum(dim=1)

    def _softmax_over_tokens(self, logits: torch.Tensor) -> torch.Tensor:
        """Softmax of ``[B, H*T, n]`` over each head's T token rows, per image position.

        The reduced axis (T, a handful of tokens) is not the innermost: the
        kernels vectorise over the n image rows instead of T-wide slivers.
        """
        return torch.softmax(logits.unflatten(1, (self.num_heads, -1)), dim=2).flatten(1, 2)

    # --------------------------------------------------------------- attention

    def _token_to_image(
        self, attn: Any, q_tokens: torch.Tensor, keys: torch.Tensor, keys_pe: torch.Tensor
    ) -> torch.Tensor:
        """``attn(q=q_tokens, k=keys_pe, v=keys)`` with per-object keys ``[B, n, C]``."""
        rows = self._block_rows(attn.q_proj(q_tokens))  # [B, HT, Ci]
        # q . (Wk k + bk): the bias term is constant along the softmax axis.
        logits = (rows @ attn.k_proj.weight) @ keys_pe.transpose(1, 2)  # [B, HT, n]
        weights = torch.softmax(logits * self.scale, dim=-1)
        # attn @ (keys Wv^T + bv) = (attn @ keys) Wv^T + bv: rows sum to one.
        out = attn.v_proj(weights @ keys)  # [B, HT, Ci]
        return attn.out_proj(self._merge_rows(out))  # type: ignore[no-any-return]

    def _image_to_token(
        self, attn: Any, keys_pe: torch.Tensor, q_tokens: torch.Tensor, tokens: torch.Tensor
    ) -> torch.Tensor:
        """``attn(q=keys_pe, k=q_tokens, v=tokens)`` for per-object image rows ``[B, n, C]``."""
        k_rows = self._block_rows(attn.k_proj(q_tokens))  # [B, HT, Ci]
        v_rows = self._block_rows(attn.v_proj(tokens))
        # (Wq x + bq) . k = x . (Wq^T k) + bq . k, as (head, token) rows x image columns
        proj = k_rows @ attn.q_proj.weight  # [B, HT, C]
        bias = (k_rows @ attn.q_proj.bias).unsqueeze(-1)  # [B, HT, 1]
        weights = self._softmax_over_tokens((proj @ keys_pe.transpose(1, 2) + bias) * self.scale)
        return weights.transpose(1, 2) @ self._values_out(attn, v_rows, attn.out_proj.bias)

    def _values_out(self, attn: Any, v_rows: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        """Value rows with the output projection and ``bias`` folded in, ``[B, H*T, C]``.

        Each head's attention row sums to one, so a row of weights sums to H:
        ``weights @ (V Wo^T + bias / H) = weights @ V Wo^T + bias``.
        """
        return v_rows @ attn.out_proj.weight.T + bias / self.num_heads  # type: ignore[no-any-return]

    # ------------------------------------------------------------------ forward

    def forward(
        self,
        image_embeddings: torch.Tensor,
        tokens: torch.Tensor,
        mask_input: torch.Tensor,
        has_mask_input: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Low-resolution mask logits ``[B, K, 4h, 4w]`` and IoU predictions ``[B, K]``.

        Args:
            image_embeddings: ``[1, C, h, w]``.
            tokens: The prompt tokens (sparse embeddings), ``[B, N', C]``.
            mask_input: ``[B, 1, 4h, 4w]``.
            has_mask_input: ``[B]``.
        """
        decoder, pe = self.mask_decoder, self.prompt_encoder
        transformer = decoder.transformer
        output_tokens = torch.cat([decoder.iou_token.weight, decoder.mask_tokens.weight], dim=0)
        output_tokens = output_tokens.unsqueeze(0).expand(tokens.size(0), -1, -1)
        query_pe = torch.cat((output_tokens, tokens), dim=1)  # [B, T, C]
        h, w = image_embeddings.shape[-2:]

        # The mask prompt: dense = g @ Cm^T + beta, g the 16-channel bottleneck.
        last = pe.mask_downscaling[-1]
        has = has_mask_input.view(-1, 1, 1)
        g_cf = has * pe.mask_downscaling[:-1](mask_input).flatten(2)  # [B, c, n]
        g_cl = g_cf.transpose(1, 2)  # [B, n, c]
        beta = has * last.bias + (1.0 - has) * pe.no_mask_embed.weight  # [B, 1, C]

        # The image side at batch 1.
        src_cf = image_embeddings.flatten(2)  # [1, C, n]
        src_cl = src_cf.transpose(1, 2)  # [1, n, C]

        layers = list(transformer.layers)
        first = layers[0]
        queries = first.norm1(first.self_attn(q=query_pe, k=query_pe, v=query_pe))

        # Layer 0, token -> image: keys = src + dense, shared projections + the mask's share.
        attn = first.cross_attn_token_to_image
        k_shared = attn.k_proj(src_cl + self.pe_cl).transpose(1, 2)  # [1, Ci, n]
        v_shared = attn.v_proj(src_cl)  # [1, n, Ci]
        rows = self._block_rows(attn.q_proj(queries + query_pe))  # [B, HT, Ci]
        logits = rows @ k_shared + (rows @ self.mask_t2i_k) @ g_cf  # [B, HT, n]
        weights = torch.softmax(logits * self.scale, dim=-1)
        out = (
            weights @ v_shared
            + (weights @ g_cl) @ self.mask_t2i_v
            + F.linear(beta, attn.v_proj.weight)
        )
        queries = first.norm2(queries + attn.out_proj(self._merge_rows(out)))
        queries = first.norm3(queries + first.mlp(queries))

        # Layer 0, image -> token: queries of the image rows are shared + the mask's share.
        attn = first.cross_attn_image_to_token
        q_tokens = queries + query_pe
        k_rows = self._block_rows(attn.k_proj(q_tokens))  # [B, HT, Ci]
        v_rows = self._block_rows(attn.v_proj(queries))
        q_shared = attn.q_proj(src_cl + self.pe_cl).transpose(1, 2)  # [1, Ci, n]
        logits = (
            k_rows @ q_shared
            + (k_rows @ self.mask_i2t_q) @ g_cf
            + k_rows @ F.linear(beta, attn.q_proj.weight).transpose(1, 2)
        )  # [B, HT, n]
        weights = self._softmax_over_tokens(logits * self.scale)
        # keys = src + dense + attention out, dense = g Cm^T + beta: one product
        # over [weights, g] with beta and the output bias folded into the values.
        values = self._values_out(attn, v_rows, attn.out_proj.bias + beta)  # [B, HT, C]
        rows_and_mask = torch.cat([weights, g_cf], dim=1)  # [B, HT + c, n]
        values_and_mask = torch.cat(
            [values, self.mask_dense.expand(values.shape[0], -1, -1)], dim=1
        )
        keys = first.norm4(src_cl + rows_and_mask.transpose(1, 2) @ values_and_mask)  # [B, n, C]

        for layer in layers[1:]:
            q = queries + query_pe
            queries = layer.norm1(queries + layer.self_attn(q=q, k=q, v=queries))
            keys_pe = keys + self.pe_cl
            q_tokens = queries + query_pe
            queries = layer.norm2(
                queries
                + self._token_to_image(layer.cross_attn_token_to_image, q_tokens, keys, keys_pe)
            )
            queries = layer.norm3(queries + layer.mlp(queries))
            q_tokens = queries + query_pe
            keys = layer.norm4(
                keys
                + self._image_to_token(layer.cross_attn_image_to_token, keys_pe, q_tokens, queries)
            )

        # Only the IoU and mask tokens' outputs are read: the final attention
        # skips the prompt tokens' rows (exact; 2 of 7 for a click and SAM's padding point).
        used = 1 + decoder.num_mask_tokens
        queries, query_pe = queries[:, :used], query_pe[:, :used]
        attn_out = self._token_to_image(
            transformer.final_attn_token_to_image, queries + query_pe, keys, keys + self.pe_cl
        )
        hs = transformer.norm_final_attn(queries + attn_out)

        masks = self._upscale_and_project(keys, hs[:, 1 : 1 + decoder.num_mask_tokens, :], h, w)
        iou_pred = decoder.iou_prediction_head(hs[:, 0, :])
        return masks, iou_pred

    def _upscale_and_project(
        self, keys: torch.Tensor, mask_tokens: torch.Tensor, h: int, w: int
    ) -> torch.Tensor:
        """``output_upscaling`` + hypernetwork product in channels-last layout.

        A 2x2/stride-2 transposed convolution writes each input pixel's four
        output pixels independently: one matrix product to ``(di, dj, c_out)``
        columns. Pixel (4i + 2di + ei, 4j + 2dj + ej) of the result comes from
        row (i, j), columns (di, dj) of the first and (ei, ej) of the second.
        """
        decoder = self.mask_decoder
        up1, norm, act1, up2, act2 = decoder.output_upscaling
        c1, c2 = up1.out_channels, up2.out_channels
        # Weights and biases (tiled over the 4 sub-pixels) from _fold_weights; 2-D
        # products with the bias, so each is one Gemm.
        n = keys.shape[1]
        x = torch.addmm(self.up1_bias, keys.reshape(-1, keys.shape[-1]), self.up1_weight)
        x = act1(F.layer_norm(x.reshape(-1, c1), (c1,), norm.weight, norm.bias, norm.eps))
        x = act2(torch.addmm(self.up2_bias, x, self.up2_weight))  # [B*n*4, 4*c2]
        hyper = torch.stack(
            [mlp(mask_tokens[:, i, :]) for i, mlp in enumerate(decoder.output_hypernetworks_mlps)],
            dim=1,
        )  # [B, K, c2]
        k = hyper.shape[1]
        logits = hyper @ x.reshape(-1, n * 16, c2).transpose(1, 2)  # [B, K, n*16]
        # (B*K, i, j, di, dj, ei, ej) -> (B*K, i, di, ei, j, dj, ej)
        logits = logits.reshape(-1, h, w, 2, 2, 2, 2).permute(0, 1, 3, 5, 2, 4, 6)
        return logits.reshape(-1, k, 4 * h, 4 * w)
