"""What machine a benchmark ran on: its name, CPU, GPUs and library versions."""

from __future__ import annotations

import contextlib
import importlib.metadata
import os
import platform
import re
from typing import Any

__all__ = ["library_versions", "machine_info", "machine_name"]

# CPU flags that explain a result (bf16/AMX/VNNI/AVX-512 paths in OpenVINO and ORT).
_NOTABLE_FLAGS = (
    "avx2",
    "avx512f",
    "avx512_bf16",
    "avx512_vnni",
    "avx512_fp16",
    "avx_vnni",
    "amx_bf16",
    "amx_int8",
    "amx_tile",
    "asimd",
    "fphp",
    "asimddp",
)
# Distributions whose versions change a benchmark's numbers (metadata only: nothing is imported).
_DISTRIBUTIONS = (
    "samedge",
    "numpy",
    "opencv-python-headless",
    "opencv-python",
    "onnx",
    "onnxruntime",
    "onnxruntime-gpu",
    "onnxruntime-openvino",
    "openvino",
    "nncf",
    "tensorrt",
    "pycuda",
    "cuda-python",
    "torch",
    "torchvision",
    "segment-anything",
    "mobilesam-mirror",
    "timm",
    "samexporter",
    "matplotlib",
)


def _slug(text: str) -> str:
    text = re.sub(r"\((r|tm)\)|\bcpu\b|\bprocessor\b|@.*$", "", text.lower())
    return re.sub(r"[^a-z0-9]+", "-", text).strip("-")


def machine_name() -> str:
    """A stable directory name for this machine: ``"amd-epyc-2c"``, ``"nvidia-h100-80gb-hbm3-16c"``.

    The CPU's model name and the logical CPUs this process may use; on a
    machine with a CUDA GPU, the first GPU's name instead of the CPU's.
    """
    from samedge.runtimes._hw import cpu_info, cuda_devices

    cpu = cpu_info()
    gpus = cuda_devices()
    slug = _slug(gpus[0].name) if gpus else _slug(cpu.model)
    return f"{slug or 'unknown'}-{cpu.cores}c"


def machine_info(name: str | None = None) -> dict[str, Any]:
    """The machine as a JSON-ready dict: name, CPU, cores, ISA flags, GPUs, OS, load."""
    from samedge.runtimes._hw import cpu_info, cuda_devices

    cpu = cpu_info()
    info: dict[str, Any] = {
        "name": name or machine_name(),
        "cpu": cpu.model,
        "vendor": cpu.vendor,
        "arch": cpu.arch,
        "cores": cpu.cores,
        "cpu_flags": sorted(f for f in _NOTABLE_FLAGS if f in cpu.flags),
        "gpus": [str(g) for g in cuda_devices()],
        "platform": platform.platform(),
    }
    # Other processes compete for the cores; read the numbers with this in mind.
    with contextlib.suppress(OSError):
        info["load_average_1min"] = round(os.getloadavg()[0], 2)
    return info


def library_versions() -> dict[str, str]:
    """Installed versions of the libraries that change the numbers (absent ones left out)."""
    versions = {"python": platform.python_version()}
    for dist in _DISTRIBUTIONS:
        try:
            versions[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            continue
    return versions
