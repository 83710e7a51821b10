"""The torch modules that are traced into ``encoder.onnx`` and ``decoder.onnx``.

Both wrap the SAM model's own modules (never re-implementations), so any
SAM-family model (Meta's SAM, MobileSAM, samedge_tiny) exports the same way.
The wrappers only change what TensorRT and OpenVINO cannot take, following
the I/O contract in the project notes:

* The encoder normalises inside the graph, so a frame padded with the pixel
  mean becomes exactly the zero padding SAM applies after normalising.
* The decoder takes a *batch* of B prompts of N points each, and returns all
  K = 4 mask tokens' low-resolution logits and IoU scores. There is no
  ``orig_im_size`` input, no upsampling and no mask cropping in the graph:
  TensorRT cannot build SAM's original decoder export because that input
  becomes a shape tensor (NVIDIA/TensorRT#2968), and Meta's export bakes the
  example's image size into the crop. Upsampling happens after the decoder.
* Point coordinates arrive in the encoder's input frame (the card's
  ``image_size``). A model whose prompt encoder works in another frame
  (EfficientViT-SAM L: 512-px encoder, 1024-px prompt frame) gets one scale
  in the graph, so the runtime never needs a second frame.
* SAM's ``MaskDecoder.predict_masks`` repeats all image-side work per prompt;
  where the decoder has SAM's layout it is traced in a batched form that
  computes the same function with the image's share done once per call
  (:mod:`samedge.exporters._batched_decoder`; 1.5x faster for one object and
  about 2x per object for 16, benchmarks/results/amd-epyc-2c/decoder_batch.md).
* Prompt-dependent control flow in ``PromptEncoder._embed_points`` (boolean
  index assignment, concatenating a padding point) is replaced by arithmetic
  with label masks, so the graph has no NonZero/ScatterND and B, N stay the
  only dynamic dimensions.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from samedge.exporters._batched_decoder import BatchedMaskDecoder, supports_batched_decoder

__all__ = ["EncoderGraph", "PromptDecoderGraph"]


class EncoderGraph(nn.Module):
    """``image`` (0..255 RGB, mean-padded, [1,3,S,S]) -> ``image_embeddings``.

    Args:
        sam: A SAM-family model with ``image_encoder``.
        pixel_mean: RGB mean in 0..255 (the model card's; checked against the model's).
        pixel_std: RGB std in 0..255.
    """

    pixel_mean: torch.Tensor
    pixel_std: torch.Tensor

    def __init__(
        self,
        sam: nn.Module,
        pixel_mean: tuple[float, float, float],
        pixel_std: tuple[float, float, float],
    ) -> None:
        super().__init__()
        # Any: Meta's, MobileSAM's and samedge's own SAM classes share no base type.
        self.image_encoder: Any = sam.image_encoder
        # Constants of shape [1,3,1,1]: broadcasting against the static input
        # keeps the normalisation two elementwise ops every backend fuses.
        self.register_buffer("pixel_mean", torch.tensor(pixel_mean).view(1, 3, 1, 1))
        self.register_buffer("pixel_std", torch.tensor(pixel_std).view(1, 3, 1, 1))

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        # Same op order as Sam.preprocess ((x - mean) / std) for bitwise-close parity.
        return self.image_encoder((image - self.pixel_mean) / self.pixel_std)  # type: ignore[no-any-return]


class PromptDecoderGraph(nn.Module):
    """Prompt encoder + mask decoder over a batch of prompts, ending at low-res logits.

    Inputs (see the project's decoder contract):
        image_embeddings: [1, C, h, w].
        point_coords: [B, N, 2] in the encoder's input frame (pixels of the resized image;
            see ``image_size``).
        point_labels: [B, N]; 1 foreground, 0 background, 2/3 box corners, -1 padding.
        mask_input: [B, 1, 4h, 4w] low-res mask logits of a previous prediction.
        has_mask_input: [B]; 1 where ``mask_input`` is used, 0 where it is ignored.

    Outputs:
        low_res_masks: [B, K, 4h, 4w] logits of all K mask tokens.
        iou_predictions: [B, K].
    """

    coord_scale: torch.Tensor
    frame_scale: torch.Tensor | None
    image_pe: torch.Tensor

    def __init__(
        self, sam: nn.Module, image_size: int | None = None, *, batched: bool = True
    ) -> None:
        """Wrap ``sam``'s prompt encoder and mask decoder.

        Args:
            sam: A SAM-family model.
            image_size: Side of the frame ``point_coords`` arrive in (the
                encoder's input); ``None`` for the prompt encoder's own frame.
            batched: Share the image-side work over the B prompts
                (:mod:`~samedge.exporters._batched_decoder`) where the decoder
                has SAM's layout; ``False`` traces SAM's own ``predict_masks``.
        """
        super().__init__()
        # Any: Meta's, MobileSAM's and samedge's own SAM classes share no base type.
        prompt_encoder: Any = sam.prompt_encoder
        self.prompt_encoder: Any = prompt_encoder
        self.mask_decoder: Any = sam.mask_decoder
        height, width = prompt_encoder.input_image_size
        # forward_with_coords divides x by the width and y by the height.
        self.register_buffer("coord_scale", torch.tensor([float(width), float(height)]))
        # EfficientViT-SAM L encodes 512 px but prompts in SAM's 1024-px frame: one
        # Mul maps the encoder frame to it (none at all when the frames agree).
        frame = None
        if image_size is not None and (width, height) != (image_size, image_size):
            frame = torch.tensor([width / image_size, height / image_size])
        self.register_buffer("frame_scale", frame)
        # The dense positional encoding depends only on the (static) grid: keep
        # it as one constant instead of tracing the cumsum/sin/cos every call.
        with torch.no_grad():
            self.register_buffer("image_pe", prompt_encoder.get_dense_pe().detach().clone())
        # SAM's own predict_masks repeats all image-side work per object; the
        # batched form shares it (same function, verified by the export's parity check).
        self.batched: BatchedMaskDecoder | None = None
        if batched and supports_batched_decoder(prompt_encoder, self.mask_decoder):
            self.batched = BatchedMaskDecoder(prompt_encoder, self.mask_decoder, self.image_pe)

    def _embed_points(self, coords: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        pe = self.prompt_encoder
        if self.frame_scale is not None:
            coords = coords * self.frame_scale
        # +0.5: the pixel centre, as PromptEncoder._embed_points/_embed_boxes.
        normalised = (coords + 0.5) / self.coord_scale
        embedding = pe.pe_layer._pe_encoding(normalised)  # [B, N, C]
        labels = labels.unsqueeze(-1)
        # Padding points carry only not_a_point_embed (SAM zeroes their PE first).
        embedding = torch.where(labels == -1, pe.not_a_point_embed.weight, embedding)
        # point_embeddings[0..3]: background, foreground, box top-left, box bottom-right.
        for i in range(pe.num_point_embeddings):
            embedding = embedding + pe.point_embeddings[i].weight * (labels == i).to(
                embedding.dtype
            )
        return embedding  # type: ignore[no-any-return]

    def _embed_masks(self, mask_input: torch.Tensor, has_mask_input: torch.Tensor) -> torch.Tensor:
        pe = self.prompt_encoder
        has = has_mask_input.view(-1, 1, 1, 1)
        no_mask = pe.no_mask_embed.weight.view(1, -1, 1, 1)
        return has * pe.mask_downscaling(mask_input) + (1.0 - has) * no_mask  # type: ignore[no-any-return]

    def forward(
        self,
        image_embeddings: torch.Tensor,
        point_coords: torch.Tensor,
        point_labels: torch.Tensor,
        mask_input: torch.Tensor,
        has_mask_input: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        sparse = self._embed_points(point_coords, point_labels)
        if self.batched is not None:
            return self.batched(image_embeddings, sparse, mask_input, has_mask_input)  # type: ignore[no-any-return]
        dense = self._embed_masks(mask_input, has_mask_input)
        # predict_masks repeats the single image embedding (and PE) over the B prompts.
        masks, iou = self.mask_decoder.predict_masks(
            image_embeddings=image_embeddings,
            image_pe=self.image_pe,
            sparse_prompt_embeddings=sparse,
            dense_prompt_embeddings=dense,
        )
        return masks, iou
