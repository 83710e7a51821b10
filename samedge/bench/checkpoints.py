"""Seeded random-weight checkpoints: what ``samedge bench`` exports a registry model from.

No checkpoint can be downloaded on the machines samedge is measured on, and
speed does not depend on weight values, so ``samedge bench mobile_sam``
times a random-weight export. The checkpoint is a plain state dict that
segment_anything's, MobileSAM's and samexporter's loaders all read, so other
tools (the peers in the repository's ``benchmarks/``) can time the same weights.
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
from pathlib import Path

from samedge.errors import InputError

__all__ = ["random_checkpoint"]

log = logging.getLogger(__name__)


def random_checkpoint(model: str, work_dir: Path, seed: int = 0) -> Path:
    """A seeded random-weight checkpoint of ``model``, written once under ``work_dir``.

    The weights are those of samedge's builders (``samedge export
    --random-weights`` with the same seed) with seeded noise on the tensors
    initialisation left constant (see the comment in the code), saved as a
    plain state dict that segment_anything's, MobileSAM's and samexporter's
    loaders all read. samedge and every peer time these same weights (export
    samedge's model from this file too). An existing file is reused.

    Args:
        model: Registry name (``"mobile_sam"``, ``"sam_vit_b"``, ``"samedge_tiny"``, ...).
        work_dir: The bench's work directory; the file goes to ``work_dir/checkpoints/``.
        seed: Seed of the random weights.

    Returns:
        Path of the ``.pth`` file.

    Raises:
        UnknownNameError: ``model`` is not registered.

    Example:
        >>> random_checkpoint("mobile_sam", Path("work"))       # doctest: +SKIP
        PosixPath('work/checkpoints/mobile_sam-random-seed0.pth')
    """
    from samedge.exporters.export import build_model, resolve_spec

    spec = resolve_spec(model)
    if not isinstance(seed, int) or seed < 0:
        raise InputError(f"seed: got {seed!r}, expected an int >= 0")
    path = Path(work_dir) / "checkpoints" / f"{spec.name}-random-seed{seed}.pth"
    if path.is_file():
        return path
    import torch

    path.parent.mkdir(parents=True, exist_ok=True)
    if spec.family == "sam2":
        # SAM 2.1 / EdgeTAM: Meta's SAM2VideoPredictor, which the SAM 1-shaped
        # check of build_model does not fit; the builder is what their export calls.
        from samedge.exporters.builders import resolve_builder

        state = resolve_builder(spec)(None, seed=seed).state_dict()
    else:
        state = build_model(spec, None, seed=seed).state_dict()
    # Initialisation leaves many tensors constant (norm weights 1, biases 0,
    # MobileSAM's zero-initialised BatchNorm before each residual), so several
    # are identical. The ONNX exporter then shares one weight through Identity
    # nodes, which a trained checkpoint never produces and which ONNX Runtime's
    # quantize_dynamic (samexporter's --quantize-out) rejects. Seeded 2% noise
    # on those tensors makes every tensor distinct, as in a trained checkpoint.
    noise = torch.Generator().manual_seed(seed)
    for name, t in state.items():
        if t.is_floating_point() and t.numel() > 1 and bool((t == t.reshape(-1)[0]).all()):
            state[name] = t + 0.02 * torch.randn(t.shape, generator=noise, dtype=t.dtype)
    # Written beside and moved in, so an interrupted save never leaves a truncated file.
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent)
    os.close(fd)
    try:
        torch.save(state, tmp)
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
    log.info("wrote random-weight checkpoint %s (seed %d)", path, seed)
    return path
