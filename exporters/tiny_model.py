"""samedge-tiny: a small CNN encoder with SAM's own prompt encoder and mask decoder.

The model is a ``segment_anything.modeling.Sam``, so ``SamPredictor``, the
exporters, the runtimes and the serving code treat it like any SAM. Only the
image encoder is ours: a MobileNetV2-style network (inverted residual blocks,
BatchNorm that ONNX export folds into the convolutions) with a small
feature-pyramid neck, turning a 256×256 image into a 128×16×16 embedding
(stride 16; the decoder's low-resolution masks are 64×64). Stride 8 (32×32
tokens) was tried first: the decoder's attention over 4× more tokens learned to
localise prompts far too slowly for a CPU training budget (click mIoU 0.10
after 20 minutes), see ``training/README.md``. The prompt encoder and mask
decoder are Meta's classes at width 128 with a 2-block two-way transformer.

The weights are trained by ``training/train_samedge_tiny.py`` on procedural
scenes (:mod:`samedge.scenes`).

Example:
    >>> from samedge.exporters.tiny_model import build_samedge_tiny
    >>> sam = build_samedge_tiny(None)          # random weights
    >>> sam.image_encoder.img_size
    256
"""

from __future__ import annotations

import os

import torch
import torch.nn.functional as F
from torch import nn

from samedge.models import get_model_spec

__all__ = [
    "TINY_EMBED_DIM",
    "TINY_GRID",
    "TINY_IMAGE_SIZE",
    "TinyEncoder",
    "build_samedge_tiny",
    "tiny_sam",
]

TINY_IMAGE_SIZE = 256
TINY_EMBED_DIM = 128
TINY_GRID = TINY_IMAGE_SIZE // 16

Checkpoint = str | os.PathLike[str] | None


def _conv_bn(cin: int, cout: int, k: int = 1, stride: int = 1, groups: int = 1) -> list[nn.Module]:
    return [
        nn.Conv2d(cin, cout, k, stride, k // 2, groups=groups, bias=False),
        nn.BatchNorm2d(cout),
    ]


class InvertedResidual(nn.Module):
    """MobileNetV2's block: 1×1 expand, 3×3 depthwise, 1×1 linear projection."""

    def __init__(self, cin: int, cout: int, stride: int, expand: int) -> None:
        super().__init__()
        hidden = cin * expand
        layers: list[nn.Module] = []
        if expand != 1:
            layers += [*_conv_bn(cin, hidden), nn.ReLU6(inplace=True)]
        layers += [*_conv_bn(hidden, hidden, 3, stride, groups=hidden), nn.ReLU6(inplace=True)]
        layers += _conv_bn(hidden, cout)
        self.block = nn.Sequential(*layers)
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.block(x)
        return x + y if self.residual else y


def _stage(cin: int, cout: int, n: int, stride: int, expand: int) -> nn.Sequential:
    blocks = [InvertedResidual(cin, cout, stride, expand)]
    blocks += [InvertedResidual(cout, cout, 1, expand) for _ in range(n - 1)]
    return nn.Sequential(*blocks)


class TinyEncoder(nn.Module):
    """MobileNetV2-style encoder with a top-down neck: ``[B,3,256,256] -> [B,128,16,16]``.

    The stride-32 stage adds context (a shape's full extent); the neck folds
    it back into the stride-16 grid. Input is normalised (SAM's mean/std), like SAM's
    encoder expects.

    Attributes:
        img_size: Side of the square input (``Sam.preprocess`` pads to it).
    """

    def __init__(self, img_size: int = TINY_IMAGE_SIZE, out_chans: int = TINY_EMBED_DIM) -> None:
        super().__init__()
        self.img_size = img_size
        self.stem = nn.Sequential(*_conv_bn(3, 16, 3, 2), nn.ReLU6(inplace=True))  # /2
        self.s4 = nn.Sequential(_stage(16, 16, 1, 1, 1), _stage(16, 24, 2, 2, 4))  # /4
        self.s8 = _stage(24, 64, 3, 2, 4)  # /8
        self.s16 = _stage(64, 128, 4, 2, 4)  # /16
        self.s32 = _stage(128, 160, 2, 2, 4)  # /32
        self.lat16 = nn.Conv2d(128, out_chans, 1)
        self.lat32 = nn.Conv2d(160, out_chans, 1)
        self.smooth = nn.Sequential(
            *_conv_bn(out_chans, out_chans, 3, groups=out_chans),
            nn.ReLU6(inplace=True),
            *_conv_bn(out_chans, out_chans),
            nn.ReLU6(inplace=True),
            *_conv_bn(out_chans, out_chans, 3, groups=out_chans),
            nn.ReLU6(inplace=True),
            nn.Conv2d(out_chans, out_chans, 1),
        )

    def pyramid(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The stride-4 (24 channels) and stride-8 (64) features and the embedding.

        The embedding is what :meth:`forward` returns; the two finer levels are
        the high-resolution features of the memory model ``samedge_tiny_track``.
        """
        f4 = self.s4(self.stem(x))
        f8 = self.s8(f4)
        f16 = self.s16(f8)
        f32 = self.s32(f16)
        out = self.lat16(f16) + F.interpolate(self.lat32(f32), scale_factor=2.0, mode="nearest")
        return f4, f8, self.smooth(out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pyramid(x)[-1]


def tiny_sam() -> nn.Module:
    """The untrained samedge-tiny ``Sam`` (train mode, PyTorch's default init)."""
    from segment_anything.modeling import MaskDecoder, PromptEncoder, Sam, TwoWayTransformer

    spec = get_model_spec("samedge_tiny")
    return Sam(
        image_encoder=TinyEncoder(),  # type: ignore[arg-type]
        prompt_encoder=PromptEncoder(
            embed_dim=TINY_EMBED_DIM,
            image_embedding_size=(TINY_GRID, TINY_GRID),
            input_image_size=(TINY_IMAGE_SIZE, TINY_IMAGE_SIZE),
            mask_in_chans=16,
        ),
        mask_decoder=MaskDecoder(
            num_multimask_outputs=3,
            transformer=TwoWayTransformer(
                depth=2, embedding_dim=TINY_EMBED_DIM, mlp_dim=512, num_heads=4
            ),
            transformer_dim=TINY_EMBED_DIM,
            iou_head_depth=3,
            iou_head_hidden_dim=128,
        ),
        pixel_mean=list(spec.pixel_mean),
        pixel_std=list(spec.pixel_std),
    )


def build_samedge_tiny(checkpoint: Checkpoint = None, *, seed: int = 0) -> nn.Module:
    """samedge-tiny as a ``segment_anything`` ``Sam`` in eval mode.

    Args:
        checkpoint: ``training/samedge_tiny.pt`` (a state dict; a training
            checkpoint holding one under ``"model"`` also works); ``None`` for
            random weights drawn with ``seed``.
        seed: Seed of the random weights when ``checkpoint`` is ``None``.

    Raises:
        CheckpointError: missing, unreadable, or another model's checkpoint.

    Example:
        >>> from segment_anything import SamPredictor
        >>> sam = build_samedge_tiny("training/samedge_tiny.pt")  # doctest: +SKIP
        >>> predictor = SamPredictor(sam)  # doctest: +SKIP
    """
    from samedge.exporters.builders import _build

    return _build("samedge_tiny", tiny_sam, checkpoint, seed)
