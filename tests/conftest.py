"""Shared fixtures and capability-based skipping.

Every test is collected on every machine; tests marked ``gpu``, ``tensorrt``
or ``openvino`` skip with a reason where the capability is missing. Nothing
here imports tensorrt or torch at module import time.
"""

from __future__ import annotations

import importlib.util
import shutil
import subprocess

import pytest


def _has_module(name: str) -> bool:
    return importlib.util.find_spec(name) is not None


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
