"""Hardware probes and the device vocabulary."""

from __future__ import annotations

import ctypes
from typing import Any

import pytest

from samedge.errors import InputError
from samedge.runtimes import _hw
from samedge.runtimes._hw import CudaDevice, DeviceRequest, cpu_info, cuda_devices, parse_device


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("cpu", DeviceRequest("cpu")),
        ("CPU", DeviceRequest("cpu")),
        ("gpu", DeviceRequest("gpu")),
        ("gpu:1", DeviceRequest("gpu", 1)),
        ("cuda", DeviceRequest("cuda")),
        (" cuda:0 ", DeviceRequest("cuda", 0)),
        ("NPU", DeviceRequest("npu")),
        (None, None),
    ],
)
def test_parse_device(text: str | None, expected: DeviceRequest | None) -> None:
    assert parse_device(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [("tpu", "expected one of cpu, gpu"), ("cpu:1", "takes no index"), ("cuda:x", "expected")],
)
def test_parse_device_refuses(text: str, message: str) -> None:
    with pytest.raises(InputError, match=message):
        parse_device(text)
    with pytest.raises(InputError, match="expected a string"):
        parse_device(0)  # type: ignore[arg-type]


def test_device_request_words() -> None:
    assert str(DeviceRequest("gpu", 2)) == "gpu:2"
    assert DeviceRequest("cuda").ordinal == 0
    assert str(CudaDevice(1, "Orin", (8, 7))) == "cuda:1 Orin (sm_87)"


def test_cpu_info_describes_this_machine() -> None:
    info = cpu_info()
    assert info.cores >= 1
    assert info.model
    assert info.arch
    if info.vendor == "GenuineIntel":
        assert info.is_intel


class _FakeLibcuda:
    """The five driver calls the probe makes, answering like a two-GPU machine."""

    def __init__(self) -> None:
        self.names = [b"NVIDIA H100 80GB HBM3", b"Orin"]
        self.cc = [(9, 0), (8, 7)]

    def cuInit(self, flags: int) -> int:  # noqa: N802 - the driver's names
        return 0

    def cuDeviceGetCount(self, count: Any) -> int:  # noqa: N802
        count._obj.value = len(self.names)
        return 0

    def cuDeviceGet(self, handle: Any, index: int) -> int:  # noqa: N802
        handle._obj.value = index
        return 0

    def cuDeviceGetName(self, buf: Any, size: int, handle: ctypes.c_int) -> int:  # noqa: N802
        buf.value = self.names[handle.value]
        return 0

    def cuDeviceGetAttribute(self, out: Any, attribute: int, handle: ctypes.c_int) -> int:  # noqa: N802
        major, minor = self.cc[handle.value]
        out._obj.value = {75: major, 76: minor}[attribute]
        return 0


def test_cuda_probe_reads_the_driver(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_hw, "_load_libcuda", _FakeLibcuda)
    cuda_devices.cache_clear()
    try:
        devices = cuda_devices()
    finally:
        cuda_devices.cache_clear()
    assert devices == (
        CudaDevice(0, "NVIDIA H100 80GB HBM3", (9, 0)),
        CudaDevice(1, "Orin", (8, 7)),
    )


def test_cuda_probe_without_driver_or_when_init_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_hw, "_load_libcuda", lambda: None)
    cuda_devices.cache_clear()
    assert cuda_devices() == ()
    failing = _FakeLibcuda()
    failing.cuInit = lambda flags: 100  # type: ignore[method-assign]  # CUDA_ERROR_NO_DEVICE
    monkeypatch.setattr(_hw, "_load_libcuda", lambda: failing)
    cuda_devices.cache_clear()
    try:
        assert cuda_devices() == ()
    finally:
        cuda_devices.cache_clear()
