"""Encoders for frames of one aspect ratio: no compute on the square's padding.

SAM-family encoders take an ``S×S`` square; a 640×480 camera frame fills its
top 75% and the rest is padding (44% for 16:9). Encoders built from
convolutions and *windowed* attention (MobileSAM's TinyViT, samedge_tiny's
CNN) run at any size that is a multiple of their stride, so ``samedge export
--frame-size 640x480`` traces the encoder on the frame's content box
(``768×1024`` for ``S = 1024``) instead of the square.

Everything after the encoder keeps the square's geometry: the graph's output
is still the ``C×h×w`` embedding of the square, its content rows computed from
the frame and its padding rows a constant, the embedding the square encoder
gives an all-padding image there. The decoder, prompts, mask sizes and every
runtime path stay as they are; only the encoder's ``image`` input changes
shape (the card's ``encoder_input``).

It is not bit-exact: in the square, features near the content's edge also see
the padding through convolutions and attention windows, and the padding rows
next to the content see the content. :func:`measure_agreement` measures the
difference the way the precision gate does (mask IoU over prompted masks on
procedural scenes, against the square encoder with the same weights), and
the export refuses an encoder that misses the gate.

SAM ViT and SAM 2's Hiera use absolute position embeddings over the square
(and ViT global attention), EfficientViT-SAM global linear attention: the
padding is part of what their content features are computed from, so they
are refused rather than approximated.
"""

from __future__ import annotations

import copy
import logging
import math
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from samedge.errors import InputError
from samedge.models import ModelSpec
from samedge.preprocess import get_preprocess_shape

if TYPE_CHECKING:
    from samedge.exporters.parity import References

__all__ = [
    "Agreement",
    "ContentEncoderGraph",
    "content_references",
    "encoder_box",
    "measure_agreement",
    "parse_frame_size",
    "supports_frame_size",
]

log = logging.getLogger(__name__)

#: Frames and prompts of the agreement check (a 4×4 grid of single clicks).
AGREEMENT_FRAMES = 4
AGREEMENT_GRID = 4
#: Margins (in encoder strides of real padding below/right of the content) the
#: export tries, smallest first, until the masks pass the gate. Measured with
#: random-weight MobileSAM (mean / p5 mask IoU vs the square): 640x480 at
#: margin 0 0.933 / 0.870, 2 0.946 / 0.896, 4 0.958 / 0.921 (passes: 832x1024),
#: 8 0.978 / 0.947; 1280x720 at 0 0.895 / 0.794, 8 0.946 / 0.874, 12 0.954 /
#: 0.883 (passes: 768x1024). Trained weights may need less; the export measures.
MARGINS = (0, 2, 4, 8, 12)


def parse_frame_size(text: str) -> tuple[int, int]:
    """``"640x480"`` -> ``(640, 480)`` (width, height).

    Raises:
        InputError: not two positive integers joined by ``x``.

    Example:
        >>> parse_frame_size("1280x720")
        (1280, 720)
    """
    parts = str(text).lower().replace("×", "x").split("x")
    try:
        w, h = (int(p) for p in parts)
    except ValueError:
        raise InputError(
            f"frame size: got {text!r}, expected WIDTHxHEIGHT of the camera frames, e.g. 640x480"
        ) from None
    if w <= 0 or h <= 0:
        raise InputError(f"frame size: got {text!r}, expected positive WIDTHxHEIGHT")
    return w, h


def _encoder_kind(sam: nn.Module) -> str | None:
    encoder = getattr(sam, "image_encoder", None)
    module = type(encoder).__module__
    name = type(encoder).__name__
    if name == "TinyViT" and module.startswith("mobile_sam"):
        return "tinyvit"
    if name == "TinyEncoder" and "tiny_model" in module:
        return "cnn"
    return None


# Stride the content box is rounded up to: TinyViT halves 1/4 -> 1/16 by stride-2
# convolutions; samedge_tiny's stride-32 stage is upsampled x2 onto the 1/16 grid.
_STRIDE = {"tinyvit": 16, "cnn": 32}


def supports_frame_size(sam: nn.Module) -> bool:
    """Whether ``sam``'s encoder can be traced on a frame's content box."""
    return _encoder_kind(sam) is not None


def encoder_box(
    spec: ModelSpec, frame_size: tuple[int, int], sam: nn.Module, margin: int = 0
) -> tuple[int, int]:
    """``(h, w)`` of the encoder input for frames of ``frame_size`` (width, height).

    The frame is resized as always (longest side ``S``); the box is that size
    rounded up to the encoder's stride, plus ``margin`` strides of padding
    (computed from real padding pixels, as in the square), capped at ``S``.

    Raises:
        InputError: the encoder cannot run off the square, or the box is the square.
    """
    kind = _encoder_kind(sam)
    if kind is None:
        raise InputError(
            f"--frame-size: {spec.name}'s encoder sees the whole square (absolute position "
            "embeddings or global attention), so its padding cannot be left out without "
            "changing its features; supported: mobile_sam, samedge_tiny (and checkpoints "
            "of their architectures). Export without --frame-size"
        )
    width, height = frame_size
    stride = _STRIDE[kind]
    h, w = get_preprocess_shape(height, width, spec.image_size)
    box = (
        min(spec.image_size, (math.ceil(h / stride) + margin) * stride),
        min(spec.image_size, (math.ceil(w / stride) + margin) * stride),
    )
    if box == (spec.image_size, spec.image_size):
        raise InputError(
            f"--frame-size {width}x{height}: the frame fills the {spec.image_size} square "
            "(nothing to leave out); export without --frame-size"
        )
    return box


def _retarget_tinyvit(encoder: nn.Module, box: tuple[int, int], size: int) -> nn.Module:
    """A copy of a TinyViT whose layers expect the ``box`` input instead of the square.

    TinyViT's weights do not depend on the input size (attention biases are
    per window); only each layer's ``input_resolution`` (used to fold tokens
    back into a grid) does, so the copy gets those scaled by ``box / size``.
    """
    out = copy.deepcopy(encoder)
    for module in out.modules():
        res = getattr(module, "input_resolution", None)
        if isinstance(res, tuple) and len(res) == 2:
            h, w = res
            setattr(module, "input_resolution", (h * box[0] // size, w * box[1] // size))  # noqa: B010
    return out


class _TinyViTContent(nn.Module):
    """TinyViT's ``forward_features`` on a ``box`` input (upstream folds a fixed 64×64)."""

    def __init__(self, encoder: nn.Module, box: tuple[int, int], size: int, grid: int) -> None:
        super().__init__()
        self.encoder: Any = _retarget_tinyvit(encoder, box, size)
        self.grid = (box[0] * grid // size, box[1] * grid // size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.encoder.patch_embed(x)
        for layer in self.encoder.layers:
            x = layer(x)
        b, _, c = x.shape
        x = x.view(b, self.grid[0], self.grid[1], c).permute(0, 3, 1, 2)
        return self.encoder.neck(x)  # type: ignore[no-any-return]


class ContentEncoderGraph(nn.Module):
    """``image`` (0..255 RGB, ``[1,3,h,w]``, the content box) -> the square's embedding.

    Args:
        sam: A SAM-family model whose encoder :func:`supports_frame_size`.
        spec: Its spec (square size, mean/std, embedding shape).
        box: ``(h, w)`` from :func:`encoder_box`.
    """

    pixel_mean: torch.Tensor
    pixel_std: torch.Tensor
    fill: torch.Tensor

    def __init__(self, sam: nn.Module, spec: ModelSpec, box: tuple[int, int]) -> None:
        super().__init__()
        kind = _encoder_kind(sam)
        size = spec.image_size
        _, gh, gw = spec.embedding_shape
        encoder: Any = sam.image_encoder
        self.content: nn.Module
        if kind == "tinyvit":
            self.content = _TinyViTContent(encoder, box, size, gh)
        elif kind == "cnn":
            self.content = encoder
        else:
            raise InputError(f"model {spec.name}: its encoder cannot run off the square")
        self.register_buffer("pixel_mean", torch.tensor(spec.pixel_mean).view(1, 3, 1, 1))
        self.register_buffer("pixel_std", torch.tensor(spec.pixel_std).view(1, 3, 1, 1))
        self.box = box
        self.rows, self.cols = box[0] * gh // size, box[1] * gw // size
        # What the square encoder returns where an image is all padding (0 once normalised).
        with torch.no_grad():
            padding = encoder(torch.zeros(1, 3, size, size))
        below = self.rows < gh  # content above the padding (else: left of it)
        fill = padding[:, :, self.rows :, :] if below else padding[:, :, :, self.cols :]
        self.register_buffer("fill", fill.contiguous())
        self.dim = 2 if below else 3

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        x = self.content((image - self.pixel_mean) / self.pixel_std)
        return torch.cat([x, self.fill], dim=self.dim)


def content_references(refs: References, content: ContentEncoderGraph) -> References:
    """``refs`` with the encoder's input cut to the content box and its output from ``content``.

    The decoder's references stay the square's (``decoder_embeddings``): its
    parity is checked on the same inputs either way.
    """
    bh, bw = content.box
    image = np.ascontiguousarray(refs.padded_image[:, :, :bh, :bw])
    with torch.no_grad():
        embedding = content(torch.from_numpy(image)).numpy().copy()
    return replace(
        refs,
        padded_image=image,
        image_embeddings=embedding,
        decoder_embeddings=refs.image_embeddings,
    )


@dataclass(frozen=True)
class Agreement:
    """How close the content encoder's masks are to the square encoder's.

    Attributes:
        frame_size: ``(width, height)`` of the frames.
        encoder_input: ``(h, w)`` of the content box.
        frames: Procedural scenes compared.
        masks: Masks compared (frames × clicks × mask outputs).
        mean_iou, p5_iou, worst_iou: Mask IoU (``logits > 0`` over the frame's
            part of the low-resolution masks), square vs content.
        embedding_cosine: Cosine of the two embeddings over the content rows.
        min_mean_iou, min_p5_iou: The gate (the precision builds' defaults).
    """

    frame_size: tuple[int, int]
    encoder_input: tuple[int, int]
    frames: int
    masks: int
    mean_iou: float
    p5_iou: float
    worst_iou: float
    embedding_cosine: float
    min_mean_iou: float
    min_p5_iou: float

    @property
    def passed(self) -> bool:
        return self.mean_iou >= self.min_mean_iou and self.p5_iou >= self.min_p5_iou

    def to_dict(self) -> dict[str, Any]:
        return {
            "frame_size": list(self.frame_size),
            "encoder_input": list(self.encoder_input),
            "frames": self.frames,
            "masks": self.masks,
            "mean_iou": round(self.mean_iou, 4),
            "p5_iou": round(self.p5_iou, 4),
            "worst_iou": round(self.worst_iou, 4),
            "embedding_cosine": round(self.embedding_cosine, 5),
            "gate": {"min_mean_iou": self.min_mean_iou, "min_p5_iou": self.min_p5_iou},
            "passed": self.passed,
        }

    def summary(self) -> str:
        w, h = self.frame_size
        verdict = "PASSED" if self.passed else "FAILED"
        return (
            f"frame size {w}x{h}: encoder input {self.encoder_input[0]}x{self.encoder_input[1]} "
            f"instead of the square; vs the square encoder: mask IoU mean {self.mean_iou:.4f}, "
            f"p5 {self.p5_iou:.4f}, worst {self.worst_iou:.4f} ({self.masks} masks, "
            f"{self.frames} scenes), embedding cosine {self.embedding_cosine:.5f} "
            f"[gate {verdict}: mean >= {self.min_mean_iou}, p5 >= {self.min_p5_iou}]"
        )


@torch.no_grad()
def measure_agreement(
    sam: nn.Module,
    spec: ModelSpec,
    graph: ContentEncoderGraph,
    frame_size: tuple[int, int],
    *,
    frames: int = AGREEMENT_FRAMES,
    seed: int = 0,
) -> Agreement:
    """Compare masks from ``graph`` with the square encoder's on procedural scenes.

    Each scene (``frame_size``, seeded) is encoded both ways and decoded with
    SAM's own prompt encoder and mask decoder for a grid of single clicks over
    the frame; the masks are compared where the frame is.
    """
    from samedge.calibration.gate import DEFAULT_MIN_MEAN_IOU, DEFAULT_MIN_P5_IOU
    from samedge.exporters.decoder import EncoderGraph, PromptDecoderGraph
    from samedge.preprocess import Resample, preprocess_image
    from samedge.scenes import make_scene

    square = EncoderGraph(sam, spec.pixel_mean, spec.pixel_std).eval()
    decoder = PromptDecoderGraph(sam, spec.image_size).eval()
    width, height = frame_size
    box = graph.box
    rng = np.random.default_rng(seed)
    ious: list[float] = []
    cosines: list[float] = []
    low = 4 * spec.embedding_shape[1]
    for _ in range(frames):
        scene = make_scene(rng, (height, width))
        x, (h, w) = preprocess_image(
            scene.image, spec.image_size, spec.pixel_mean, "RGB", None, Resample.EXACT
        )
        full = torch.from_numpy(x)
        ref = square(full)
        got = graph(full[:, :, : box[0], : box[1]])
        rows, cols = math.ceil(h * low / spec.image_size), math.ceil(w * low / spec.image_size)
        er, ec = graph.rows, graph.cols
        a, b = ref[:, :, :er, :ec].flatten(), got[:, :, :er, :ec].flatten()
        cosines.append(float(torch.nn.functional.cosine_similarity(a, b, dim=0)))
        n = AGREEMENT_GRID
        xs = (np.arange(n) + 0.5) * w / n
        ys = (np.arange(n) + 0.5) * h / n
        coords = np.array([[[cx, cy]] for cy in ys for cx in xs], np.float32)
        labels = np.ones((n * n, 1), np.float32)
        mask_in = torch.zeros(n * n, 1, low, low)
        has = torch.zeros(n * n)
        prompts = (torch.from_numpy(coords), torch.from_numpy(labels), mask_in, has)
        m_ref = decoder(ref, *prompts)[0][..., :rows, :cols] > 0
        m_got = decoder(got, *prompts)[0][..., :rows, :cols] > 0
        inter = (m_ref & m_got).flatten(2).sum(-1).double()
        union = (m_ref | m_got).flatten(2).sum(-1).double()
        iou = torch.where(union > 0, inter / union.clamp(min=1), torch.ones_like(union))
        ious.extend(iou.flatten().tolist())
    arr = np.asarray(ious)
    return Agreement(
        frame_size=(width, height),
        encoder_input=box,
        frames=frames,
        masks=int(arr.size),
        mean_iou=float(arr.mean()),
        p5_iou=float(np.percentile(arr, 5)),
        worst_iou=float(arr.min()),
        embedding_cosine=float(min(cosines)),
        min_mean_iou=DEFAULT_MIN_MEAN_IOU,
        min_p5_iou=DEFAULT_MIN_P5_IOU,
    )
