"""PyTorch builders for the registered architectures, and checkpoint loading.

Each ``build_*`` function returns the upstream PyTorch model (Meta's
``segment_anything.modeling.Sam`` or MobileSAM's own ``Sam``) in eval mode,
with the weights of ``checkpoint`` or, for ``None``, seeded random weights
(speed and parity tests only: no weights can be downloaded here).

Checkpoints are read here, not by the upstream builders, so that every failure
is a :class:`~samedge.errors.CheckpointError` that says what went wrong and
what to do: a missing or truncated file, something that is not a state dict,
or the state dict of another model (we then name the registered model it
matches, so the user can re-run ``samedge export`` with the right name).

Example:
    >>> from samedge.exporters.builders import build_sam_vit_b
    >>> sam = build_sam_vit_b("sam_vit_b_01ec64.pth")       # doctest: +SKIP
    >>> sam.image_encoder.img_size                          # doctest: +SKIP
    1024
"""

from __future__ import annotations

import functools
import importlib
import logging
import os
import pickle
import re
import warnings
import zipfile
from collections.abc import Callable, Iterable, Mapping
from functools import partial
from pathlib import Path

import torch
from torch import nn

from samedge.errors import CheckpointError, InputError
from samedge.models import MODELS, SAM_PIXEL_MEAN, SAM_PIXEL_STD, ModelSpec

__all__ = [
    "REDUCED_SAM_NAME",
    "build_mobile_sam",
    "build_sam_reduced",
    "build_sam_vit_b",
    "build_sam_vit_h",
    "build_sam_vit_l",
    "identify_checkpoint",
    "read_checkpoint",
    "reduced_sam_spec",
    "resolve_builder",
]

log = logging.getLogger(__name__)

Checkpoint = str | os.PathLike[str] | None
StateDict = dict[str, torch.Tensor]

REDUCED_SAM_NAME = "sam_reduced"

_SAM_MEAN, _SAM_STD = SAM_PIXEL_MEAN, SAM_PIXEL_STD

# Every SAM-family state dict is split over these three modules.
_SAM_PREFIXES = ("image_encoder.", "prompt_encoder.", "mask_decoder.")


# --------------------------------------------------------------------------- builders


def build_sam_vit_b(checkpoint: Checkpoint = None, *, seed: int = 0) -> nn.Module:
    """SAM ViT-B (Meta's ``segment_anything``), eval mode.

    Args:
        checkpoint: Meta's ``sam_vit_b_01ec64.pth`` (or any state dict of this
            architecture); ``None`` for random weights drawn with ``seed``.
        seed: Seed of the random weights when ``checkpoint`` is ``None``.

    Raises:
        CheckpointError: missing, unreadable, or another model's checkpoint.
    """
    return _build("sam_vit_b", partial(_meta_sam_vit, 768, 12, 12, (2, 5, 8, 11)), checkpoint, seed)


def build_sam_vit_l(checkpoint: Checkpoint = None, *, seed: int = 0) -> nn.Module:
    """SAM ViT-L (Meta's ``segment_anything``), eval mode. See :func:`build_sam_vit_b`."""
    return _build(
        "sam_vit_l", partial(_meta_sam_vit, 1024, 24, 16, (5, 11, 17, 23)), checkpoint, seed
    )


def build_sam_vit_h(checkpoint: Checkpoint = None, *, seed: int = 0) -> nn.Module:
    """SAM ViT-H (Meta's ``segment_anything``), eval mode. See :func:`build_sam_vit_b`."""
    return _build(
        "sam_vit_h", partial(_meta_sam_vit, 1280, 32, 16, (7, 15, 23, 31)), checkpoint, seed
    )


def build_mobile_sam(checkpoint: Checkpoint = None, *, seed: int = 0) -> nn.Module:
    """MobileSAM (TinyViT-5M encoder, MobileSAM's own code from ``mobilesam-mirror``).

    Args:
        checkpoint: MobileSAM's ``mobile_sam.pt``; ``None`` for random weights.
        seed: Seed of the random weights when ``checkpoint`` is ``None``.

    Raises:
        CheckpointError: missing, unreadable, or another model's checkpoint.
    """

    def factory() -> nn.Module:
        with warnings.catch_warnings():
            # timm's deprecation notices and the TinyViT registry overwrite
            # warnings are upstream noise the user cannot act on.
            warnings.simplefilter("ignore")
            from mobile_sam import build_sam_vit_t

        return build_sam_vit_t(None)

    return _build("mobile_sam", factory, checkpoint, seed)


def build_sam_reduced(checkpoint: Checkpoint = None, *, seed: int = 0) -> nn.Module:
    """A small SAM for tests: the real classes, 256-pixel input, 2-block ViT.

    The prompt encoder and mask decoder keep SAM's width of 256 channels so the
    model stays interchangeable with ``SamPredictor`` and the decoder contract;
    only the encoder (64 wide, window 6 so window padding is exercised) and the
    decoder's MLP are shrunk. See :func:`reduced_sam_spec`.
    """
    return _build("sam_reduced", _reduced_sam, checkpoint, seed)


def reduced_sam_spec() -> ModelSpec:
    """The :class:`~samedge.models.ModelSpec` of :func:`build_sam_reduced` (not registered).

    Example:
        >>> spec = reduced_sam_spec()
        >>> spec.image_size, spec.embedding_shape
        (256, (256, 16, 16))
    """
    return ModelSpec(
        name=REDUCED_SAM_NAME,
        description="reduced SAM for tests (2-block ViT, 256 px, random weights)",
        image_size=256,
        pixel_mean=_SAM_MEAN,
        pixel_std=_SAM_STD,
        embedding_shape=(256, 16, 16),
        builder="samedge.exporters.builders:build_sam_reduced",
    )


def resolve_builder(spec: ModelSpec) -> Callable[..., nn.Module]:
    """Import the ``"module:function"`` builder named by ``spec``.

    Raises:
        InputError: the module or function does not exist.
    """
    module_name, _, func_name = spec.builder.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        raise InputError(
            f"model {spec.name}: cannot import builder module {module_name!r} ({e}); "
            "install the export extra with `pip install samedge[export]`"
        ) from e
    func = getattr(module, func_name, None)
    if not callable(func):
        raise InputError(f"model {spec.name}: builder {spec.builder!r} is not a function")
    return func  # type: ignore[no-any-return]


# --------------------------------------------------------------------------- architectures


def _meta_sam_vit(
    embed_dim: int,
    depth: int,
    num_heads: int,
    global_attn_indexes: tuple[int, ...],
    *,
    image_size: int = 1024,
    window_size: int = 14,
    decoder_mlp_dim: int = 2048,
) -> nn.Module:
    """Meta's ``_build_sam`` body with the knobs the reduced model needs."""
    from segment_anything.modeling import (
        ImageEncoderViT,
        MaskDecoder,
        PromptEncoder,
        Sam,
        TwoWayTransformer,
    )

    prompt_embed_dim = 256
    patch_size = 16
    grid = image_size // patch_size
    return Sam(
        image_encoder=ImageEncoderViT(
            depth=depth,
            embed_dim=embed_dim,
            img_size=image_size,
            mlp_ratio=4,
            norm_layer=partial(nn.LayerNorm, eps=1e-6),
            num_heads=num_heads,
            patch_size=patch_size,
            qkv_bias=True,
            use_rel_pos=True,
            global_attn_indexes=global_attn_indexes,
            window_size=window_size,
            out_chans=prompt_embed_dim,
        ),
        prompt_encoder=PromptEncoder(
            embed_dim=prompt_embed_dim,
            image_embedding_size=(grid, grid),
            input_image_size=(image_size, image_size),
            mask_in_chans=16,
        ),
        mask_decoder=MaskDecoder(
            num_multimask_outputs=3,
            transformer=TwoWayTransformer(
                depth=2, embedding_dim=prompt_embed_dim, mlp_dim=decoder_mlp_dim, num_heads=8
            ),
            transformer_dim=prompt_embed_dim,
            iou_head_depth=3,
            iou_head_hidden_dim=256,
        ),
        pixel_mean=list(_SAM_MEAN),
        pixel_std=list(_SAM_STD),
    )


def _reduced_sam() -> nn.Module:
    # Window 6 over a 16x16 grid pads to 18x18, so the window-padding path of
    # the real encoder is part of every parity test.
    return _meta_sam_vit(64, 2, 2, (1,), image_size=256, window_size=6, decoder_mlp_dim=512)


def _build(
    name: str, factory: Callable[[], nn.Module], checkpoint: Checkpoint, seed: int
) -> nn.Module:
    """Run ``factory`` under ``seed`` and load ``checkpoint`` into it (shared by all builders).

    Other modules' builders (e.g. samedge_tiny's) call this too: keep the signature.
    """
    # Read first: a missing or truncated file fails before minutes of model building.
    state = read_checkpoint(checkpoint) if checkpoint is not None else None
    if state is not None:
        # A mismatch is found on the meta device where the model's code allows
        # it, before SAM ViT-H spends seconds and GBs on random initialisation.
        expected = _meta_signature(factory)
        if expected is not None and expected != _signature(state):
            raise CheckpointError(
                _mismatch_message(name, Path(checkpoint), expected, _signature(state))  # type: ignore[arg-type]
            )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = factory()
    if state is not None:
        _load_state(model, state, name, Path(checkpoint))  # type: ignore[arg-type]
    return model.eval()


def _meta_signature(factory: Callable[[], nn.Module]) -> dict[str, tuple[int, ...]] | None:
    """Keys and shapes of ``factory()``'s state dict, built without memory; None if impossible."""
    try:
        with torch.device("meta"), torch.random.fork_rng(devices=[]):
            return _signature(factory().state_dict())
    except Exception:  # some upstream code (TinyViT's .item()) cannot run on meta
        return None


# --------------------------------------------------------------------------- checkpoints


def read_checkpoint(checkpoint: str | os.PathLike[str]) -> StateDict:
    """Read a state dict with ``torch.load(weights_only=True)`` (never runs pickled code).

    A state dict wrapped in a dict (``{"model": state_dict, "epoch": 3}``) is
    unwrapped when exactly one value is a state dict; a ``module.`` prefix on
    every key (DataParallel) is removed.

    Raises:
        CheckpointError: missing, a directory, unreadable or truncated, holding
            pickled Python objects, or not a (unique) state dict.
    """
    path = Path(checkpoint)
    if not path.exists():
        raise CheckpointError(
            f"checkpoint {path}: no such file; pass the .pth/.pt file of the model "
            "(or --random-weights for a speed test)"
        )
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path}: is a directory; expected a .pth/.pt file")
    if path.stat().st_size == 0:
        raise CheckpointError(f"checkpoint {path}: is empty (0 bytes); download it again")
    # mmap keeps a multi-GB checkpoint out of resident memory; it needs the zip format.
    mmap = zipfile.is_zipfile(path)
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except pickle.UnpicklingError as e:
        found = re.search(r"Unsupported global: GLOBAL (\S+)", str(e))
        if found:
            raise CheckpointError(
                f"checkpoint {path}: holds Python objects besides tensors (e.g. {found[1]}), "
                "which samedge does not unpickle because that could run code; save only the "
                "state dict with `torch.save(model.state_dict(), path)`"
            ) from e
        # torch's message suggests weights_only=False; we never do that, so show only the cause.
        cause = re.search(r"WeightsUnpickler error:\s*(.+)", str(e))
        raise CheckpointError(
            f"checkpoint {path}: unreadable, not a PyTorch checkpoint or damaged "
            f"({cause[1].strip() if cause else type(e).__name__}); download it again"
        ) from e
    except Exception as e:  # torch raises RuntimeError/EOFError/... for damaged files
        raise CheckpointError(
            f"checkpoint {path}: unreadable or truncated ({type(e).__name__}: {_first_line(e)}); "
            "download it again"
        ) from e
    return _as_state_dict(obj, path)


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return text[0] if text else type(e).__name__


def _is_state_dict(obj: object) -> bool:
    return (
        isinstance(obj, Mapping)
        and len(obj) > 0
        and all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items())
    )


def _as_state_dict(obj: object, path: Path) -> StateDict:
    if not isinstance(obj, Mapping):
        raise CheckpointError(
            f"checkpoint {path}: holds a {type(obj).__name__}, expected a state dict "
            "(a mapping of parameter names to tensors)"
        )
    if _is_state_dict(obj):
        state = dict(obj)
    else:
        inner = [k for k, v in obj.items() if _is_state_dict(v)]
        if len(inner) != 1:
            found = ", ".join(repr(k) for k in inner) if inner else "none"
            raise CheckpointError(
                f"checkpoint {path}: expected a state dict or a dict wrapping exactly one; "
                f"top-level keys {_preview(obj)}, state dicts among them: {found}. "
                "Save the model's state dict alone with `torch.save(model.state_dict(), path)`"
            )
        log.info("checkpoint %s: using the state dict under key %r", path, inner[0])
        state = dict(obj[inner[0]])
    if all(k.startswith("module.") for k in state):
        log.info("checkpoint %s: removing the 'module.' prefix of DataParallel", path)
        state = {k.removeprefix("module."): v for k, v in state.items()}
    return state


def _preview(keys: Iterable[object], n: int = 5) -> str:
    keys = list(keys)
    shown = ", ".join(repr(k) for k in keys[:n])
    return f"[{shown}{', ...' if len(keys) > n else ''}] ({len(keys)} in all)"


def _signature(state: Mapping[str, torch.Tensor]) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in state.items()}


def _load_state(model: nn.Module, state: StateDict, name: str, path: Path) -> None:
    expected = _signature(model.state_dict())
    got = _signature(state)
    if expected != got:
        raise CheckpointError(_mismatch_message(name, path, expected, got))
    model.load_state_dict(state, strict=True)
    log.info("loaded %d tensors from %s", len(state), path)


def _mismatch_message(
    name: str, path: Path, expected: dict[str, tuple[int, ...]], got: dict[str, tuple[int, ...]]
) -> str:
    missing = [k for k in expected if k not in got]
    unexpected = [k for k in got if k not in expected]
    shapes = [k for k in expected if k in got and expected[k] != got[k]]
    parts = []
    if missing:
        parts.append(f"{len(missing)} missing (e.g. {missing[0]})")
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected (e.g. {unexpected[0]})")
    if shapes:
        k = shapes[0]
        parts.append(f"{len(shapes)} of other shape (e.g. {k}: {got[k]} vs {expected[k]})")
    detail = "; ".join(parts)
    guess = identify_checkpoint(got)
    if guess is not None and guess != name:
        hint = (
            f"it looks like a {guess} checkpoint; run `samedge export {guess} "
            f"--checkpoint {path} ...`"
        )
        if guess == REDUCED_SAM_NAME:
            hint = f"it looks like samedge's reduced test SAM ({guess}), not {name}"
    elif all(k.startswith(_SAM_PREFIXES) for k in got):
        hint = "it is a SAM-family checkpoint of a configuration samedge does not know"
    else:
        hint = f"it is not a SAM-family checkpoint (keys {_preview(got, 3)})"
    return f"checkpoint {path}: does not fit {name} ({detail}); {hint}"


def identify_checkpoint(
    state: Mapping[str, torch.Tensor] | Mapping[str, tuple[int, ...]],
) -> str | None:
    """Name of the registered model whose state dict has exactly these keys and shapes.

    The registered models (and the reduced test SAM) are built on the ``meta``
    device where their code allows it, so even ViT-H costs no memory; the
    others are built small on the CPU once and remembered.

    Returns:
        The model name, or ``None`` when no known model matches.
    """
    got = {
        k: (tuple(v.shape) if isinstance(v, torch.Tensor) else tuple(v)) for k, v in state.items()
    }
    # Cheap characteristic keys first, so the common mistakes cost no building.
    ordered = sorted(_candidate_specs(), key=lambda s: not _plausible(s.name, got))
    for spec in ordered:
        sig = _spec_signature(spec.name, spec.builder)
        if sig == got:
            return spec.name
    return None


# Hiera blocks of each SAM 2.1 size (EdgeTAM's RepViT trunk has none under that name).
_SAM2_HIERA_BLOCKS = {
    "sam2.1_hiera_tiny": 12,
    "sam2.1_hiera_small": 16,
    "sam2.1_hiera_base_plus": 24,
    "sam2.1_hiera_large": 48,
    "edgetam": 0,
}


def _plausible(name: str, got: Mapping[str, tuple[int, ...]]) -> bool:
    width = got.get("image_encoder.patch_embed.proj.weight", (0,))[0]
    if name.startswith(("sam2", "edgetam")):  # SAM 2 family: memory modules, Hiera/RepViT trunk
        if "memory_attention.norm.weight" not in got:
            return False
        blocks = {k.split(".")[3] for k in got if k.startswith("image_encoder.trunk.blocks.")}
        return len(blocks) == _SAM2_HIERA_BLOCKS.get(name, 0)
    if name.startswith("efficientvit_sam_"):  # EfficientViT backbone + SAM neck
        return any(k.startswith("image_encoder.backbone.") for k in got)
    if name.startswith("sam_hq_"):  # SAM's ViT + the HQ output token
        hq_width = {"sam_hq_vit_b": 768, "sam_hq_vit_l": 1024, "sam_hq_vit_h": 1280}
        return "mask_decoder.hf_token.weight" in got and width == hq_width.get(name)
    return {
        "sam_vit_b": width == 768,
        "sam_vit_l": width == 1024,
        "sam_vit_h": width == 1280,
        "mobile_sam": any(k.startswith("image_encoder.layers.") for k in got),
        REDUCED_SAM_NAME: width == 64,
    }.get(name, False)


def _candidate_specs() -> list[ModelSpec]:
    return [*MODELS.values(), reduced_sam_spec()]


@functools.cache
def _spec_signature(name: str, builder: str) -> dict[str, tuple[int, ...]] | None:
    spec = next((s for s in _candidate_specs() if s.name == name), None)
    if spec is None:
        return None
    try:
        func = resolve_builder(spec)
    except InputError:
        return None
    signature = _meta_signature(lambda: func(None))
    if signature is not None:
        return signature
    try:
        return _signature(func(None).state_dict())
    except Exception as e:  # a broken builder must not hide the real error
        log.debug("cannot build %s to compare checkpoints: %s", name, e)
        return None
