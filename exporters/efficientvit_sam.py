"""EfficientViT-SAM (MIT Han Lab): builders over the ``efficientsam`` package.

EfficientViT-SAM keeps SAM's prompt encoder and mask decoder and replaces the
image encoder with EfficientViT. Two things differ from SAM, and both live in
the model spec (:mod:`samedge.models`), not in code paths:

* The L models' encoder takes a 512-px square (XL: 1024 px) while their
  prompt encoder stays in SAM's 1024-px frame (``EfficientViTSam.image_size``
  is ``(prompt frame, encoder input)``). samedge keeps one frame, the
  encoder's: the decoder graph maps prompt coordinates to the prompt
  encoder's frame (:class:`~samedge.exporters.decoder.PromptDecoderGraph`),
  and masks are upsampled to the encoder's square, so the card's
  ``image_size`` is 512 for L0-L2.
* Normalisation: the package's transform is ``ToTensor`` then ``Normalize``
  with SAM's mean/std divided by 255, i.e. SAM's own normalisation, which the
  encoder graph applies in 0..255 units.

The models are built with the package's own ``create_efficientvit_sam_model``
and ``pretrained=False``, so nothing is downloaded; a checkpoint is read and
matched by :mod:`samedge.exporters.builders` (a checkpoint of another size is
refused with the name of the size it fits).

Example:
    >>> from samedge.exporters.efficientvit_sam import build_efficientvit_sam_l0
    >>> sam = build_efficientvit_sam_l0("efficientvit_sam_l0.pt")  # doctest: +SKIP
    >>> sam.image_size                                             # doctest: +SKIP
    (1024, 512)
"""

from __future__ import annotations

import warnings
from functools import partial
from typing import Any

from torch import nn

from samedge.exporters.builders import Checkpoint, _build

__all__ = [
    "EFFICIENTVIT_SAM_SIZES",
    "build_efficientvit_sam_l0",
    "build_efficientvit_sam_l1",
    "build_efficientvit_sam_l2",
    "build_efficientvit_sam_xl0",
    "build_efficientvit_sam_xl1",
    "encoder_input_size",
    "is_efficientvit_sam",
    "mask_upsample_size",
]

#: samedge size name -> the ``efficientsam`` model zoo's name.
EFFICIENTVIT_SAM_SIZES: dict[str, str] = {
    size: f"efficientvit-sam-{size}" for size in ("l0", "l1", "l2", "xl0", "xl1")
}


def _factory(size: str) -> nn.Module:
    with warnings.catch_warnings():
        # timm/torchvision deprecation notices from the package's imports.
        warnings.simplefilter("ignore")
        from efficientsam.sam_model_zoo import create_efficientvit_sam_model

    # The zoo's builder also sets the LayerNorm/BatchNorm eps its checkpoints
    # were trained with; pretrained=False keeps it from reading its default path.
    return create_efficientvit_sam_model(EFFICIENTVIT_SAM_SIZES[size], pretrained=False)


def _builder(size: str, checkpoint: Checkpoint, seed: int) -> nn.Module:
    return _build(f"efficientvit_sam_{size}", partial(_factory, size), checkpoint, seed)


def build_efficientvit_sam_l0(checkpoint: Checkpoint = None, *, seed: int = 0) -> nn.Module:
    """EfficientViT-SAM-L0 (512-px encoder), eval mode.

    Args:
        checkpoint: MIT Han Lab's ``efficientvit_sam_l0.pt`` (or any state dict of
            this architecture); ``None`` for random weights drawn with ``seed``.
        seed: Seed of the random weights when ``checkpoint`` is ``None``.

    Raises:
        CheckpointError: missing, unreadable, or another model's checkpoint
            (e.g. another EfficientViT-SAM size, which it names).
    """
    return _builder("l0", checkpoint, seed)


def build_efficientvit_sam_l1(checkpoint: Checkpoint = None, *, seed: int = 0) -> nn.Module:
    """EfficientViT-SAM-L1 (512-px encoder). See :func:`build_efficientvit_sam_l0`."""
    return _builder("l1", checkpoint, seed)


def build_efficientvit_sam_l2(checkpoint: Checkpoint = None, *, seed: int = 0) -> nn.Module:
    """EfficientViT-SAM-L2 (512-px encoder). See :func:`build_efficientvit_sam_l0`."""
    return _builder("l2", checkpoint, seed)


def build_efficientvit_sam_xl0(checkpoint: Checkpoint = None, *, seed: int = 0) -> nn.Module:
    """EfficientViT-SAM-XL0 (1024-px encoder). See :func:`build_efficientvit_sam_l0`."""
    return _builder("xl0", checkpoint, seed)


def build_efficientvit_sam_xl1(checkpoint: Checkpoint = None, *, seed: int = 0) -> nn.Module:
    """EfficientViT-SAM-XL1 (1024-px encoder). See :func:`build_efficientvit_sam_l0`."""
    return _builder("xl1", checkpoint, seed)


def is_efficientvit_sam(model: nn.Module) -> bool:
    """Whether ``model`` is the ``efficientsam`` package's ``EfficientViTSam``."""
    return type(model).__name__ == "EfficientViTSam" and type(model).__module__.startswith(
        "efficientsam."
    )


def encoder_input_size(model: nn.Module) -> int:
    """Side of the square the image encoder of a SAM-family ``model`` takes.

    EfficientViT-SAM records it as ``image_size[1]`` (its prompt frame is
    ``image_size[0]``); every other model encodes in its prompt frame.
    """
    if is_efficientvit_sam(model):
        sizes: Any = model.image_size
        return int(sizes[1])
    prompt_encoder: Any = model.prompt_encoder
    return int(prompt_encoder.input_image_size[0])


def mask_upsample_size(model: nn.Module) -> int:
    """Side of the square the model's own predictor upsamples low-res masks to.

    ``EfficientViTSam.postprocess_masks`` upsamples to ``image_size[0]`` (its
    prompt frame); SAM's ``postprocess_masks`` to the encoder's input size.
    """
    if is_efficientvit_sam(model):
        sizes: Any = model.image_size
        return int(sizes[0])
    return encoder_input_size(model)
