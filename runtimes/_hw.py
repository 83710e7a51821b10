"""Hardware probes and the device vocabulary shared by every backend.

The probes import no backend SDK: the CPU is read from ``/proc/cpuinfo`` (or
``platform``), and CUDA GPUs are counted through the driver library
(``libcuda``) with ctypes, which every CUDA install has (desktop drivers and
JetPack alike) even when neither pycuda nor cuda-python is installed.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import logging
import os
import platform
import re
import sys
from dataclasses import dataclass
from pathlib import Path

from samedge.errors import InputError

log = logging.getLogger(__name__)

__all__ = ["CpuInfo", "CudaDevice", "DeviceRequest", "cpu_info", "cuda_devices", "parse_device"]


@dataclass(frozen=True)
class CpuInfo:
    """What the machine's CPU is.

    Attributes:
        vendor: ``vendor_id`` from ``/proc/cpuinfo`` (``"GenuineIntel"``, ``"AuthenticAMD"``)
            or ``""`` where it cannot be read.
        model: Marketing name (``"Intel(R) Xeon(R) Platinum 8480+"``).
        arch: ``platform.machine()`` (``"x86_64"``, ``"aarch64"``).
        cores: Logical CPUs this process may use.
        flags: ISA feature flags (``"avx512_bf16"``, ``"amx_tile"``, ...).
    """

    vendor: str
    model: str
    arch: str
    cores: int
    flags: frozenset[str]

    @property
    def is_intel(self) -> bool:
        return self.vendor == "GenuineIntel" or "intel" in self.model.lower()


@functools.lru_cache(maxsize=1)
def cpu_info() -> CpuInfo:
    """Describe this machine's CPU (cached for the process)."""
    fields: dict[str, str] = {}
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        text = ""
    for line in text.splitlines():
        if not line.strip():
            if fields:  # the first processor block is enough
                break
            continue
        key, _, value = line.partition(":")
        fields.setdefault(key.strip(), value.strip())
    model = fields.get("model name") or fields.get("Model") or platform.processor() or "unknown"
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count() or 1
    flags = fields.get("flags") or fields.get("Features") or ""
    return CpuInfo(
        vendor=fields.get("vendor_id", ""),
        model=model,
        arch=platform.machine(),
        cores=cores,
        flags=frozenset(flags.split()),
    )


@dataclass(frozen=True)
class CudaDevice:
    """One CUDA GPU as the driver reports it.

    Attributes:
        index: CUDA ordinal (``cuda:<index>``).
        name: Product name (``"NVIDIA H100 80GB HBM3"``, ``"Orin"``).
        compute_capability: ``(major, minor)``, e.g. ``(8, 7)`` on Jetson Orin.
    """

    index: int
    name: str
    compute_capability: tuple[int, int]

    @property
    def sm(self) -> str:
        """Compute capability as ``"sm_87"``."""
        return f"sm_{self.compute_capability[0]}{self.compute_capability[1]}"

    def __str__(self) -> str:
        return f"cuda:{self.index} {self.name} ({self.sm})"


# cuda.h: CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR / _MINOR.
_CC_MAJOR, _CC_MINOR = 75, 76


def _load_libcuda() -> ctypes.CDLL | None:
    names = ["nvcuda.dll"] if sys.platform == "win32" else ["libcuda.so.1", "libcuda.so"]
    found = ctypes.util.find_library("cuda")
    if found:
        names.append(found)
    for name in names:
        try:
            return ctypes.CDLL(name)
        except OSError:
            continue
    return None


@functools.lru_cache(maxsize=1)
def cuda_devices() -> tuple[CudaDevice, ...]:
    """CUDA GPUs the driver can see; empty without a driver or a GPU (cached)."""
    lib = _load_libcuda()
    if lib is None:
        return ()
    try:
        if lib.cuInit(0) != 0:
            return ()
        count = ctypes.c_int(0)
        if lib.cuDeviceGetCount(ctypes.byref(count)) != 0:
            return ()
        devices = []
        for index in range(count.value):
            handle = ctypes.c_int(0)
            if lib.cuDeviceGet(ctypes.byref(handle), index) != 0:
                continue
            name = ctypes.create_string_buffer(256)
            lib.cuDeviceGetName(name, len(name), handle)
            major, minor = ctypes.c_int(0), ctypes.c_int(0)
            lib.cuDeviceGetAttribute(ctypes.byref(major), _CC_MAJOR, handle)
            lib.cuDeviceGetAttribute(ctypes.byref(minor), _CC_MINOR, handle)
            devices.append(
                CudaDevice(
                    index=index,
                    name=name.value.decode("utf-8", errors="replace") or "CUDA GPU",
                    compute_capability=(major.value, minor.value),
                )
            )
        return tuple(devices)
    except (AttributeError, OSError) as e:  # a stub or foreign libcuda
        log.debug("CUDA driver probe failed: %s", e)
        return ()


# -- the device vocabulary ----------------------------------------------------------

_DEVICE_RE = re.compile(r"^(cpu|npu|gpu|cuda)(?::(\d+))?$")
DEVICE_FORMS = "cpu, gpu, gpu:N, cuda, cuda:N, npu"


@dataclass(frozen=True)
class DeviceRequest:
    """A device asked for in samedge's backend-neutral words.

    Attributes:
        kind: ``"cpu"``, ``"gpu"`` (any GPU a backend drives: NVIDIA for TensorRT /
            ONNX Runtime, Intel for OpenVINO), ``"cuda"`` (NVIDIA only) or ``"npu"``.
        index: Which one of that kind; ``None`` means the first.
    """

    kind: str
    index: int | None = None

    def __str__(self) -> str:
        return self.kind if self.index is None else f"{self.kind}:{self.index}"

    @property
    def ordinal(self) -> int:
        return self.index or 0


def parse_device(device: str | None) -> DeviceRequest | None:
    """Parse ``"cpu"``, ``"gpu"``, ``"gpu:1"``, ``"cuda"``, ``"cuda:0"``, ``"npu"`` (any case).

    Raises:
        InputError: anything else.
    """
    if device is None:
        return None
    if not isinstance(device, str):
        raise InputError(f"device: got {type(device).__name__}, expected a string such as 'cpu'")
    match = _DEVICE_RE.match(device.strip().lower())
    if match is None:
        raise InputError(f"device: got {device!r}, expected one of {DEVICE_FORMS}")
    kind, index = match.group(1), match.group(2)
    if index is not None and kind in ("cpu", "npu"):
        raise InputError(f"device: got {device!r}; {kind} takes no index, pass {kind!r}")
    return DeviceRequest(kind=kind, index=None if index is None else int(index))
