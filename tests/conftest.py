"""Shared fixtures and capability-based skipping.

Every test is collected on every machine; tests marked ``gpu``, ``tensorrt``
or ``openvino`` skip with a reason where the capability is missing. Nothing
here imports tensorrt or torch at module import time.
"""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests._shared import TINY_DIR


def _has_module(name: str) -> bool:
    # A stubs-only install (tensorrt-stubs ships tensorrt/__init__.pyi) is a namespace
    # package with no origin: it imports, but the library is not there.
    spec = importlib.util.find_spec(name)
    return spec is not None and spec.origin is not None


def _has_nvidia_gpu() -> bool:
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return False
    try:
        return subprocess.run([smi, "-L"], capture_output=True, timeout=20).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


_CAPABILITIES = {
    "gpu": (_has_nvidia_gpu, "no NVIDIA GPU on this machine"),
    "tensorrt": (lambda: _has_module("tensorrt"), "TensorRT is not installed"),
    "openvino": (lambda: _has_module("openvino"), "OpenVINO is not installed"),
}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    cache: dict[str, bool] = {}
    for item in items:
        for marker, (probe, reason) in _CAPABILITIES.items():
            if marker in item.keywords:
                if marker not in cache:
                    cache[marker] = probe()
                if not cache[marker]:
                    item.add_marker(pytest.mark.skip(reason=reason))


@pytest.fixture(scope="session")
def tiny_model() -> Path:
    """The shipped samedge_tiny directory: what the torch-free runtime tests run on."""
    if not (TINY_DIR / "samedge.json").is_file():
        pytest.fail(f"samedge_tiny is not at {TINY_DIR} (no samedge.json)")
    return TINY_DIR


# --- exported random-weight models, one export per session (exporters engineer) ---

if TYPE_CHECKING:
    from tests._factories import ExportedModel


@pytest.fixture(scope="session")
def reduced_sam_dir(tmp_path_factory: pytest.TempPathFactory) -> ExportedModel:
    """The reduced test SAM (256 px), random weights seed 0, exported and verified.

    Returns an ``ExportedModel(dir, checkpoint, spec)`` NamedTuple; treat it as read-only.
    """
    pytest.importorskip("torch")
    from tests._factories import export_random

    return export_random("sam_reduced", tmp_path_factory.mktemp("exported") / "sam_reduced")


@pytest.fixture(scope="session")
def mobile_sam_dir(tmp_path_factory: pytest.TempPathFactory) -> ExportedModel:
    """MobileSAM (1024 px), random weights seed 0, exported and verified; read-only."""
    pytest.importorskip("torch")
    from tests._factories import export_random

    return export_random("mobile_sam", tmp_path_factory.mktemp("exported") / "mobile_sam")
