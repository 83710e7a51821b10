"""The SAM 2-family model directory: four stateless graphs and the memory settings.

A SAM 2.1 or EdgeTAM export holds no state in any graph. The memory bank lives
in the runtime (numpy, :mod:`samedge.stream.memory`) and enters the graphs as
explicit tensors, so the same files run on TensorRT, OpenVINO and ONNX Runtime.
This module is the contract between the exporter (:mod:`samedge.exporters.sam2`)
and the runtime: graph file names, tensor names, and :class:`MemorySettings`,
the ``memory`` section of the model card (``samedge.json``).

Graphs (``h = w = S / 16``; ``C`` = 256; ``Cm`` = memory width, 64; ``T`` =
memory tokens per frame: ``h*w`` for SAM 2.1, the perceiver's 512 for EdgeTAM):

* ``encoder.onnx``: ``image`` ``[1, 3, S, S]`` (RGB 0..255, the frame resized
  to S x S) -> ``vision_features`` ``[1, C, h, w]``, ``no_memory_features``
  (the same plus SAM 2's no-memory embedding: what a prompted frame without
  memory decodes from), ``high_res_features_0`` ``[1, C/8, 4h, 4w]``,
  ``high_res_features_1`` ``[1, C/4, 2h, 2w]`` (SAM 2's decoder projections of the
  stride-4 and stride-8 levels).
* ``memory_attention.onnx``: ``vision_features``, ``memory_bank``
  ``[B, M, T, Cm]``, ``memory_bank_tpos`` ``[B, M]`` (SAM 2's temporal slot:
  0 for a conditioning frame, 1..num_maskmem-1 for recent frames),
  ``pointer_bank`` ``[B, P, C]``, ``pointer_bank_offsets`` ``[B, P]`` (frames
  between the pointer and now) -> ``conditioned_features`` ``[B, C, h, w]``.
* ``decoder.onnx``: ``image_embeddings`` ``[B, C, h, w]`` (no-memory or
  conditioned features), both high-res features, ``point_coords``,
  ``point_labels``, ``mask_input``, ``has_mask_input`` (SAM's decoder
  contract) -> ``low_res_masks`` ``[B, 4, 4h, 4w]`` (NO_OBJ_SCORE where the
  object is absent), ``iou_predictions`` ``[B, 4]``, ``object_pointers``
  ``[B, 4, C]`` (one per mask token), ``object_score_logits`` ``[B, 1]``.
* ``memory_encoder.onnx``: ``vision_features``, ``mask_logits``
  ``[B, 1, 4h, 4w]`` (the chosen low-res mask), ``mask_from_prompt`` ``[B]``
  (1 binarises the mask, as SAM 2 does on prompted frames),
  ``object_score_logits`` ``[B, 1]`` -> ``memory_features`` ``[B, T, Cm]``.

Dynamic dims: ``B`` (objects), ``M`` (memory frames), ``P`` (object pointers),
``N`` (points). M and P are dynamic up to :attr:`MemorySettings.max_memory_frames`
and :attr:`MemorySettings.max_pointers` rather than fixed with validity masks:
a padded fixed bank would make every frame pay for the full bank (the memory
attention is the largest cost, linear in M), needs an additive attention mask
that FP16 builds handle poorly, and TensorRT builds the dynamic form with one
optimisation profile (min 1, opt = the steady state, max = the documented maximum).

Example:
    >>> s = MemorySettings.from_dict(MemorySettings().to_dict())
    >>> s.num_maskmem, s.max_memory_frames
    (7, 10)
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any

from samedge.errors import InputError, ModelDirError
from samedge.graph_names import (
    HAS_MASK_INPUT,
    IMAGE,
    IMAGE_EMBEDDINGS,
    IOU_PREDICTIONS,
    LOW_RES_MASKS,
    MASK_INPUT,
    POINT_COORDS,
    POINT_LABELS,
)

__all__ = [
    "CONDITIONED_FEATURES",
    "DECODER_INPUTS",
    "DECODER_OUTPUTS",
    "ENCODER_OUTPUTS",
    "FAMILY_SAM",
    "FAMILY_SAM2",
    "HIGH_RES_FEATURES_0",
    "HIGH_RES_FEATURES_1",
    "MASK_FROM_PROMPT",
    "MASK_LOGITS",
    "MEMORY_ATTENTION_INPUTS",
    "MEMORY_ATTENTION_NAME",
    "MEMORY_BANK",
    "MEMORY_BANK_TPOS",
    "MEMORY_ENCODER_INPUTS",
    "MEMORY_ENCODER_NAME",
    "MEMORY_FEATURES",
    "NO_MEMORY_FEATURES",
    "NO_OBJ_SCORE",
    "OBJECT_POINTERS",
    "OBJECT_SCORE_LOGITS",
    "POINTER_BANK",
    "POINTER_BANK_OFFSETS",
    "VISION_FEATURES",
    "MemorySettings",
]

FAMILY_SAM = "sam"
FAMILY_SAM2 = "sam2"

MEMORY_ATTENTION_NAME = "memory_attention.onnx"
MEMORY_ENCODER_NAME = "memory_encoder.onnx"

# SAM 2's placeholder logit for an absent object (sam2_base.NO_OBJ_SCORE).
NO_OBJ_SCORE = -1024.0

VISION_FEATURES = "vision_features"
NO_MEMORY_FEATURES = "no_memory_features"
HIGH_RES_FEATURES_0 = "high_res_features_0"
HIGH_RES_FEATURES_1 = "high_res_features_1"
MEMORY_BANK = "memory_bank"
MEMORY_BANK_TPOS = "memory_bank_tpos"
POINTER_BANK = "pointer_bank"
POINTER_BANK_OFFSETS = "pointer_bank_offsets"
CONDITIONED_FEATURES = "conditioned_features"
OBJECT_POINTERS = "object_pointers"
OBJECT_SCORE_LOGITS = "object_score_logits"
MASK_LOGITS = "mask_logits"
MASK_FROM_PROMPT = "mask_from_prompt"
MEMORY_FEATURES = "memory_features"

ENCODER_INPUTS: tuple[str, ...] = (IMAGE,)
ENCODER_OUTPUTS: tuple[str, ...] = (
    VISION_FEATURES,
    NO_MEMORY_FEATURES,
    HIGH_RES_FEATURES_0,
    HIGH_RES_FEATURES_1,
)
MEMORY_ATTENTION_INPUTS: tuple[str, ...] = (
    VISION_FEATURES,
    MEMORY_BANK,
    MEMORY_BANK_TPOS,
    POINTER_BANK,
    POINTER_BANK_OFFSETS,
)
MEMORY_ATTENTION_OUTPUTS: tuple[str, ...] = (CONDITIONED_FEATURES,)
DECODER_INPUTS: tuple[str, ...] = (
    IMAGE_EMBEDDINGS,
    HIGH_RES_FEATURES_0,
    HIGH_RES_FEATURES_1,
    POINT_COORDS,
    POINT_LABELS,
    MASK_INPUT,
    HAS_MASK_INPUT,
)
DECODER_OUTPUTS: tuple[str, ...] = (
    LOW_RES_MASKS,
    IOU_PREDICTIONS,
    OBJECT_POINTERS,
    OBJECT_SCORE_LOGITS,
)
MEMORY_ENCODER_INPUTS: tuple[str, ...] = (
    VISION_FEATURES,
    MASK_LOGITS,
    MASK_FROM_PROMPT,
    OBJECT_SCORE_LOGITS,
)
MEMORY_ENCODER_OUTPUTS: tuple[str, ...] = (MEMORY_FEATURES,)


@dataclass(frozen=True)
class MemorySettings:
    """SAM 2's memory rules for one exported model (the card's ``memory`` section).

    Read from the PyTorch model at export (``SAM2Base`` attributes and the
    settings ``SAM2VideoPredictor`` applies), so the runtime needs no torch.

    Attributes:
        num_maskmem: Memory slots: 1 conditioning slot + ``num_maskmem - 1``
            recent frames (SAM 2: 7).
        max_conditioning_frames: Most prompted (conditioning) frames attended
            at once, the temporally closest kept (SAM 2's ``max_cond_frames_in_attn``,
            unlimited there; bounded here so the bank has a maximum).
        max_pointers_in_encoder: SAM 2's ``max_obj_ptrs_in_encoder`` (16): the
            pointers of up to ``max - 1`` recent frames, and the normaliser of
            their temporal encoding.
        memory_tokens: Tokens per memory frame (``h*w``, or EdgeTAM's 512).
        memory_dim: Channels of a memory token (64).
        hidden_dim: Channels of the features and object pointers (256).
        multimask_output_in_sam: Whether prompted frames may use 3 masks.
        multimask_output_for_tracking: Whether tracked frames use 3 masks.
        multimask_min_pt_num: Fewest points (a box counts 2) for 3 masks.
        multimask_max_pt_num: Most points for 3 masks.
        use_multimask_token_for_obj_ptr: Pointer from the chosen multimask token.
        dynamic_multimask_via_stability: Single-mask output falls back to the
            best multimask when unstable (SAM2VideoPredictor turns it on).
        stability_delta: Logit offset of that stability score.
        stability_thresh: Stability below which it falls back.
        binarize_mask_from_pts_for_mem_enc: Prompted frames enter memory as a
            binary mask (SAM2VideoPredictor turns it on).
        only_obj_ptrs_in_the_past: Pointers of conditioning frames only from the past.
        image_size: Side S of the square encoder input.
    """

    num_maskmem: int = 7
    max_conditioning_frames: int = 4
    max_pointers_in_encoder: int = 16
    memory_tokens: int = 4096
    memory_dim: int = 64
    hidden_dim: int = 256
    multimask_output_in_sam: bool = True
    multimask_output_for_tracking: bool = True
    multimask_min_pt_num: int = 0
    multimask_max_pt_num: int = 1
    use_multimask_token_for_obj_ptr: bool = True
    dynamic_multimask_via_stability: bool = True
    stability_delta: float = 0.05
    stability_thresh: float = 0.98
    binarize_mask_from_pts_for_mem_enc: bool = True
    only_obj_ptrs_in_the_past: bool = True
    image_size: int = 1024

    def __post_init__(self) -> None:
        for name in ("num_maskmem", "max_pointers_in_encoder", "memory_tokens", "memory_dim"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise InputError(f"memory.{name}: got {value!r}, expected a positive int")
        if (
            isinstance(self.max_conditioning_frames, bool)
            or not isinstance(self.max_conditioning_frames, int)
            or self.max_conditioning_frames < 2
        ):
            # SAM 2's selection keeps the closest frame before and after: at least 2.
            raise InputError(
                f"memory.max_conditioning_frames: got {self.max_conditioning_frames!r}, "
                "expected an int >= 2"
            )
        if self.hidden_dim % self.memory_dim:
            raise InputError(
                f"memory.hidden_dim {self.hidden_dim} is not a multiple of memory_dim "
                f"{self.memory_dim}"
            )
        if not math.isfinite(self.stability_thresh) or not math.isfinite(self.stability_delta):
            raise InputError("memory.stability_*: expected finite numbers")

    @property
    def max_memory_frames(self) -> int:
        """The bank's most frames M: conditioning frames + recent frames."""
        return self.max_conditioning_frames + self.num_maskmem - 1

    @property
    def max_pointers(self) -> int:
        """The bank's most object pointers P: conditioning + recent frames' pointers."""
        return self.max_conditioning_frames + self.max_pointers_in_encoder - 1

    @property
    def pointer_tokens(self) -> int:
        """Memory tokens one object pointer becomes (``hidden_dim / memory_dim``)."""
        return self.hidden_dim // self.memory_dim

    def memory_bytes_per_object(self) -> int:
        """float32 bytes a full bank holds for one object (frames + pointers)."""
        frames = self.max_memory_frames * self.memory_tokens * self.memory_dim
        return 4 * (frames + self.max_pointers * self.hidden_dim)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["max_memory_frames"] = self.max_memory_frames
        data["max_pointers"] = self.max_pointers
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], source: str = "memory") -> MemorySettings:
        """Parse the card's ``memory`` section (derived keys are ignored)."""
        if not isinstance(data, Mapping):
            raise ModelDirError(f"{source}: expected a JSON object, got {type(data).__name__}")
        known = {f.name for f in fields(cls)}
        try:
            return cls(**{k: v for k, v in data.items() if k in known})
        except (TypeError, InputError) as e:
            raise ModelDirError(f"{source}: malformed memory settings ({e}); re-export") from e
