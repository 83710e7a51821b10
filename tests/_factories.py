"""Shared test helpers: random-weight checkpoints and exported model directories.

Nothing is downloaded: the real architectures are built with seeded random
weights, saved to a checkpoint file (so the real loading path is exercised),
and exported with :func:`samedge.exporters.export_model`.

Used by the session fixtures ``reduced_sam_dir`` / ``mobile_sam_dir`` in
``tests/conftest.py``; import it as ``from tests._factories import ...``.
torch is imported lazily so collecting tests never needs it.
"""

from __future__ import annotations

import os
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, NamedTuple

from samedge.models import ModelSpec, get_model_spec

if TYPE_CHECKING:
    from samedge.exporters import ExportConfig, ExportReport

__all__ = [
    "ExportedModel",
    "export_random",
    "export_report",
    "load_benchmark_script",
    "reduced_sam_spec",
    "resolve_spec",
    "save_random_checkpoint",
]


class ExportedModel(NamedTuple):
    """An exported model directory and what it was made from."""

    dir: Path
    checkpoint: Path
    spec: ModelSpec


def reduced_sam_spec() -> ModelSpec:
    """Spec of the small SAM used by tests (256 px input, embedding (256, 16, 16))."""
    from samedge.exporters.builders import reduced_sam_spec as _spec

    return _spec()


def resolve_spec(model: str | ModelSpec) -> ModelSpec:
    """A registered name, ``"sam_reduced"``, or a spec -> the spec."""
    if isinstance(model, ModelSpec):
        return model
    if model == "sam_reduced":
        return reduced_sam_spec()
    return get_model_spec(model)


def save_random_checkpoint(
    model: str | ModelSpec, path: str | os.PathLike[str], seed: int = 0
) -> Path:
    """Build ``model`` with random weights (``seed``) and ``torch.save`` its state dict.

    Returns:
        ``path`` as a Path; parent directories are created.
    """
    import torch

    from samedge.exporters.builders import resolve_builder

    spec = resolve_spec(model)
    sam = resolve_builder(spec)(None, seed=seed)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(sam.state_dict(), path)
    return path


def export_random(
    model: str | ModelSpec,
    out_dir: str | os.PathLike[str],
    *,
    seed: int = 0,
    checkpoint: str | os.PathLike[str] | None = None,
    config: ExportConfig | None = None,
) -> ExportedModel:
    """Save a random-weight checkpoint and export it to ``out_dir``.

    Args:
        model: Registered name, ``"sam_reduced"``, or a spec.
        out_dir: Model directory to write (must not exist or be empty).
        seed: Seed of the random weights.
        checkpoint: Where to save the checkpoint; default ``out_dir`` + ``.pth`` beside it.
        config: Export config; default verifies parity without a progress bar.

    Returns:
        The directory, the checkpoint it was exported from, and the spec.
    """
    from samedge.exporters import ExportConfig, export_model

    spec = resolve_spec(model)
    out = Path(out_dir)
    ckpt = Path(checkpoint) if checkpoint is not None else out.with_name(out.name + ".pth")
    save_random_checkpoint(spec, ckpt, seed=seed)
    export_model(spec, ckpt, out, config=config or ExportConfig(progress=False))
    return ExportedModel(out, ckpt, spec)


def export_report(
    model: str | ModelSpec, out_dir: str | os.PathLike[str], *, seed: int = 0
) -> tuple[ExportedModel, ExportReport]:
    """Like :func:`export_random`, also returning the :class:`ExportReport`."""
    from samedge.exporters import ExportConfig, export_model

    spec = resolve_spec(model)
    out = Path(out_dir)
    ckpt = save_random_checkpoint(spec, out.with_name(out.name + ".pth"), seed=seed)
    report = export_model(spec, ckpt, out, config=ExportConfig(progress=False))
    return ExportedModel(out, ckpt, spec), report


def load_benchmark_script(name: str) -> ModuleType:
    """Import ``benchmarks/<name>.py`` (a script, not a package module) for its tests."""
    import importlib.util
    import sys

    path = Path(__file__).resolve().parents[1] / "benchmarks" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module
