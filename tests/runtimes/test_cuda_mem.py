"""The CUDA memory layer: real round trips on a GPU, clean errors everywhere else."""

from __future__ import annotations

import importlib.util
import inspect
import re
from pathlib import Path

import numpy as np
import pytest

from samedge.errors import (
    BackendError,
    BackendUnavailableError,
    DeviceUnavailableError,
    UnknownNameError,
)
from samedge.runtimes import cuda_mem
from samedge.runtimes._hw import cuda_devices
from samedge.runtimes.cuda_mem import CudaApi, CudaPythonMemory, get_cuda_memory

SOURCE = Path(cuda_mem.__file__).read_text(encoding="utf-8")


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ImportError:
        return False


def _implementations() -> list[str]:
    found = []
    if _installed("cuda.bindings") or _installed("cuda.cudart"):
        found.append(CudaApi.CUDA_PYTHON.value)
    if _installed("pycuda"):
        found.append(CudaApi.PYCUDA.value)
    return found


no_gpu = pytest.mark.skipif(bool(cuda_devices()), reason="this machine has a CUDA GPU")


# -- CPU: the cuda-python names samedge calls exist, with the arity it uses ----------


def test_cuda_python_runtime_has_every_function_samedge_calls() -> None:
    # cuda-bindings ships no type stubs, so mypy cannot check these calls; check the
    # installed module instead, with the names read from cuda_mem.py itself.
    runtime = pytest.importorskip("cuda.bindings.runtime")
    calls = re.findall(r"self\._rt\.(cuda\w+)\(([^()]*(?:\([^()]*\))?[^()]*)\)", SOURCE)
    assert calls, "no cuda-python calls found in cuda_mem.py"
    # Every call site was parsed (none slipped past the pattern).
    assert len(calls) == len(re.findall(r"self\._rt\.cuda\w+\(", SOURCE))
    for name, args in calls:
        function = getattr(runtime, name, None)
        assert function is not None, f"cuda.bindings.runtime has no {name}"
        given = 0 if not args.strip() else len(re.split(r",(?![^()]*\))", args))
        params = inspect.signature(function).parameters
        assert given == len(params), f"{name}{inspect.signature(function)} called with {given}"
    for enum_name, member in re.findall(r"self\._rt\.(cuda\w+)\.(cuda\w+)", SOURCE):
        assert hasattr(getattr(runtime, enum_name), member), f"{enum_name}.{member} missing"
    prop = runtime.cudaDeviceProp()
    for field in ("name", "major", "minor"):
        assert hasattr(prop, field), f"cudaDeviceProp has no {field}"


def test_cuda_python_error_names_map_to_samedge_errors() -> None:
    runtime = pytest.importorskip("cuda.bindings.runtime")
    # Bypass __init__ (which needs a GPU) to test the error mapping on its own.
    mem = CudaPythonMemory.__new__(CudaPythonMemory)
    mem._rt = runtime
    mem.device_index = 0
    assert mem._call((runtime.cudaError_t.cudaSuccess, 42), "x") == 42
    assert mem._call((runtime.cudaError_t.cudaSuccess,), "x") is None
    with pytest.raises(BackendError, match=r"cudaMalloc failed with cudaErrorMemoryAllocation"):
        mem._call((runtime.cudaError_t.cudaErrorMemoryAllocation, None), "cudaMalloc")
    with pytest.raises(DeviceUnavailableError, match="cudaErrorNoDevice"):
        mem._call((runtime.cudaError_t.cudaErrorNoDevice, None), "cudaSetDevice")


@no_gpu
def test_cuda_python_without_driver_is_device_unavailable() -> None:
    pytest.importorskip("cuda.bindings.runtime")
    with pytest.raises(DeviceUnavailableError, match="no usable CUDA driver or GPU") as info:
        CudaPythonMemory(0)
    assert not isinstance(info.value, BackendUnavailableError)


@no_gpu
def test_auto_choice_without_gpu_is_device_unavailable() -> None:
    if not _implementations():
        with pytest.raises(BackendUnavailableError, match=r"samedge\[tensorrt\]"):
            get_cuda_memory()
    else:
        with pytest.raises(DeviceUnavailableError):
            get_cuda_memory()


def test_nothing_installed_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cuda_mem, "_installed", lambda module: False)
    with pytest.raises(BackendUnavailableError, match=r"pip install samedge\[tensorrt\]"):
        get_cuda_memory()


def test_pycuda_missing_or_gpu_missing_is_a_typed_error() -> None:
    if _installed("pycuda") and cuda_devices():
        pytest.skip("pycuda and a GPU are present; the round-trip test covers it")
    expected = DeviceUnavailableError if _installed("pycuda") else BackendUnavailableError
    with pytest.raises(expected, match=r"pycuda|CUDA"):
        get_cuda_memory(CudaApi.PYCUDA)


def test_unknown_package_name_lists_the_valid_ones() -> None:
    with pytest.raises(UnknownNameError, match=r"'cuda-python', 'pycuda'|cuda-python, pycuda"):
        get_cuda_memory("pycudaa")


# -- GPU: real round trips, for every implementation installed ------------------------


@pytest.fixture(params=[CudaApi.CUDA_PYTHON, CudaApi.PYCUDA], ids=lambda api: api.value)
def memory(request: pytest.FixtureRequest) -> cuda_mem.CudaMemory:
    api: CudaApi = request.param
    if api.value not in _implementations():
        pytest.skip(f"{api.value} is not installed")
    mem = get_cuda_memory(api)
    yield mem
    mem.close()


@pytest.mark.gpu
def test_round_trip_through_device_memory(memory: cuda_mem.CudaMemory) -> None:
    rng = np.random.default_rng(0)
    payload = rng.integers(0, 256, size=3 * 4096 + 5, dtype=np.uint8)
    src = memory.alloc_host(payload.nbytes)
    dst = memory.alloc_host(payload.nbytes)
    src[:] = payload
    dst[:] = 0
    device = memory.alloc_device(payload.nbytes)
    stream = memory.create_stream()
    with memory.activate():
        memory.memcpy_htod_async(device, src, stream)
        memory.memcpy_dtoh_async(dst, device, stream)
        memory.synchronize(stream)
    np.testing.assert_array_equal(dst, payload)
    # Typed views over the pinned bytes round-trip too (how the backend stages tensors).
    values = rng.standard_normal((7, 3)).astype(np.float32)
    src[: values.nbytes].view(np.float32).reshape(values.shape)[:] = values
    memory.memcpy_htod_async(device, src[: values.nbytes], stream)
    memory.memcpy_dtoh_async(dst[: values.nbytes], device, stream)
    memory.synchronize(stream)
    np.testing.assert_array_equal(dst[: values.nbytes].view(np.float32).reshape(7, 3), values)
    memory.free_device(device)
    memory.free_host(src)
    memory.free_host(dst)
    memory.destroy_stream(stream)


@pytest.mark.gpu
def test_device_description(memory: cuda_mem.CudaMemory) -> None:
    assert memory.device_name()
    major, minor = memory.compute_capability()
    assert major >= 5
    assert minor >= 0


@pytest.mark.gpu
def test_non_contiguous_host_array_is_refused(memory: cuda_mem.CudaMemory) -> None:
    host = memory.alloc_host(64)
    device = memory.alloc_device(64)
    stream = memory.create_stream()
    with pytest.raises(BackendError, match="C-contiguous"):
        memory.memcpy_htod_async(device, host[::2], stream)


@pytest.mark.gpu
def test_close_releases_everything_and_is_idempotent(memory: cuda_mem.CudaMemory) -> None:
    memory.alloc_host(1 << 20)
    memory.alloc_device(1 << 20)
    memory.create_stream()
    memory.close()
    memory.close()
