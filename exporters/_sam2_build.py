"""Build Meta's SAM 2.1 and EdgeTAM models (``SAM2VideoPredictor``) from their configs.

The model code and configs come from the ``edgetam-dimos`` package (Meta's
EdgeTAM code, which carries SAM 2 and the SAM 2.1 configs under the ``sam2``
import name). Models are built with the overrides ``SAM2VideoPredictor`` gets
from ``build_sam2_video_predictor`` (dynamic multimask via stability,
binarised prompted masks in memory), so the exported graphs and the runtime
follow what Meta's video predictor does.

EdgeTAM's config builds its RepViT trunk with ``timm.create_model(...,
pretrained=True)``, which downloads ImageNet weights at build time. The
trunk is pointed at :class:`TimmTrunk` instead: the same timm model, same
state-dict keys, built with ``pretrained=False`` (the checkpoint overwrites
every weight anyway).

Example:
    >>> model = build_sam2_1_hiera_tiny(None)        # random weights  # doctest: +SKIP
    >>> type(model).__name__                                          # doctest: +SKIP
    'SAM2VideoPredictor'
"""

from __future__ import annotations

import functools
import logging
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from samedge.exporters.builders import Checkpoint, _build
from samedge.models import ModelSpec

__all__ = [
    "REDUCED_SAM2_NAME",
    "TimmTrunk",
    "build_edgetam",
    "build_sam2_1_hiera_base_plus",
    "build_sam2_1_hiera_large",
    "build_sam2_1_hiera_small",
    "build_sam2_1_hiera_tiny",
    "build_sam2_reduced",
    "reduced_sam2_spec",
]

log = logging.getLogger(__name__)

REDUCED_SAM2_NAME = "sam2_reduced"

_SAM_MEAN = (123.675, 116.28, 103.53)
_SAM_STD = (58.395, 57.12, 57.375)

# What build_sam2_video_predictor adds to every config (fill_hole_area needs
# Meta's CUDA extension and is left out; see samedge.stream.memory).
_VIDEO_OVERRIDES = (
    "++model._target_=sam2.sam2_video_predictor.SAM2VideoPredictor",
    "++model.sam_mask_decoder_extra_args.dynamic_multimask_via_stability=true",
    "++model.sam_mask_decoder_extra_args.dynamic_multimask_stability_delta=0.05",
    "++model.sam_mask_decoder_extra_args.dynamic_multimask_stability_thresh=0.98",
    "++model.binarize_mask_from_pts_for_mem_enc=true",
)

_CONFIGS = {
    "sam2.1_hiera_tiny": "configs/sam2.1/sam2.1_hiera_t.yaml",
    "sam2.1_hiera_small": "configs/sam2.1/sam2.1_hiera_s.yaml",
    "sam2.1_hiera_base_plus": "configs/sam2.1/sam2.1_hiera_b+.yaml",
    "sam2.1_hiera_large": "configs/sam2.1/sam2.1_hiera_l.yaml",
    "edgetam": "configs/edgetam.yaml",
    # A small SAM 2.1 for tests: the real classes at 256 px, a 5-block Hiera
    # and 2 memory-attention layers (see reduced_sam2_spec).
    REDUCED_SAM2_NAME: "configs/sam2.1/sam2.1_hiera_t.yaml",
}
_EXTRA_OVERRIDES: dict[str, tuple[str, ...]] = {
    "edgetam": ("++model.image_encoder.trunk._target_=samedge.exporters._sam2_build.TimmTrunk",),
    REDUCED_SAM2_NAME: (
        "++model.image_size=256",
        "++model.image_encoder.trunk.stages=[1,1,2,1]",
        "++model.image_encoder.trunk.global_att_blocks=[3]",
        "++model.memory_attention.num_layers=2",
    ),
}


class TimmTrunk(nn.Module):
    """EdgeTAM's ``TimmBackbone`` without the download: ``pretrained=False``.

    Same timm model, same attributes (``body``, ``channel_list``) and so the
    same state-dict keys as ``sam2.modeling.backbones.timm.TimmBackbone``.

    Args:
        name: timm model name (EdgeTAM: ``repvit_m1.dist_in1k``).
        features: Feature levels as ``"layer<i>"`` names.
    """

    def __init__(self, name: str, features: Sequence[str]) -> None:
        super().__init__()
        from timm.models import create_model

        out_indices = tuple(int(f[len("layer") :]) for f in features)
        body: Any = create_model(
            name, pretrained=False, in_chans=3, features_only=True, out_indices=out_indices
        )
        self.body = body
        self.channel_list = body.feature_info.channels()[::-1]

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return list(self.body(x))


@functools.cache
def _compose(name: str) -> object:
    """The resolved hydra config of ``name`` (composition costs ~0.2 s; cached)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # hydra/omegaconf deprecation notices
        import sam2  # noqa: F401  (registers Meta's config module with hydra)
        from hydra import compose
        from omegaconf import OmegaConf

        cfg = compose(
            config_name=_CONFIGS[name],
            overrides=[*_VIDEO_OVERRIDES, *_EXTRA_OVERRIDES.get(name, ())],
        )
        OmegaConf.resolve(cfg)
    return cfg


def _factory(name: str) -> Callable[[], nn.Module]:
    def factory() -> nn.Module:
        from hydra.utils import instantiate

        cfg = _compose(name)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # timm/torch deprecation notices
            return instantiate(cfg.model, _recursive_=True)  # type: ignore[attr-defined]

    return factory


def _build_sam2(name: str, checkpoint: Checkpoint, seed: int) -> nn.Module:
    return _build(name, _factory(name), checkpoint, seed)


def build_sam2_1_hiera_tiny(checkpoint: Checkpoint = None, *, seed: int = 0) -> nn.Module:
    """SAM 2.1 Hiera-T as Meta's ``SAM2VideoPredictor``, eval mode.

    Args:
        checkpoint: Meta's ``sam2.1_hiera_tiny.pt`` (its ``{"model": state_dict}``
            wrapper is unwrapped); ``None`` for random weights drawn with ``seed``.
        seed: Seed of the random weights.

    Raises:
        CheckpointError: missing, unreadable, or another model's checkpoint
            (the message names the model it looks like).
    """
    return _build_sam2("sam2.1_hiera_tiny", checkpoint, seed)


def build_sam2_1_hiera_small(checkpoint: Checkpoint = None, *, seed: int = 0) -> nn.Module:
    """SAM 2.1 Hiera-S. See :func:`build_sam2_1_hiera_tiny`."""
    return _build_sam2("sam2.1_hiera_small", checkpoint, seed)


def build_sam2_1_hiera_base_plus(checkpoint: Checkpoint = None, *, seed: int = 0) -> nn.Module:
    """SAM 2.1 Hiera-B+. See :func:`build_sam2_1_hiera_tiny`."""
    return _build_sam2("sam2.1_hiera_base_plus", checkpoint, seed)


def build_sam2_1_hiera_large(checkpoint: Checkpoint = None, *, seed: int = 0) -> nn.Module:
    """SAM 2.1 Hiera-L. See :func:`build_sam2_1_hiera_tiny`."""
    return _build_sam2("sam2.1_hiera_large", checkpoint, seed)


def build_edgetam(checkpoint: Checkpoint = None, *, seed: int = 0) -> nn.Module:
    """EdgeTAM (RepViT-M1 trunk, 2-D spatial perceiver), built without any download.

    Args:
        checkpoint: Meta's ``edgetam.pt``; ``None`` for random weights.
        seed: Seed of the random weights.

    Raises:
        CheckpointError: missing, unreadable, or another model's checkpoint.
    """
    return _build_sam2("edgetam", checkpoint, seed)


def build_sam2_reduced(checkpoint: Checkpoint = None, *, seed: int = 0) -> nn.Module:
    """A small SAM 2.1 for tests (256 px, 5 Hiera blocks, 2 memory-attention layers)."""
    return _build_sam2(REDUCED_SAM2_NAME, checkpoint, seed)


def reduced_sam2_spec() -> ModelSpec:
    """The (unregistered) spec of :func:`build_sam2_reduced`.

    Example:
        >>> reduced_sam2_spec().embedding_shape
        (256, 16, 16)
    """
    return ModelSpec(
        name=REDUCED_SAM2_NAME,
        description="reduced SAM 2.1 for tests (256 px, random weights)",
        image_size=256,
        pixel_mean=_SAM_MEAN,
        pixel_std=_SAM_STD,
        embedding_shape=(256, 16, 16),
        builder="samedge.exporters._sam2_build:build_sam2_reduced",
        family="sam2",
    )
