"""The CUDA memory layer: real round trips on a GPU, clean errors everywhere else."""

from __future__ import annotations

import ctypes
import importlib.util
import inspect
import re
import threading
import types
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
from samedge.runtimes.cuda_mem import CudaApi, CudaPythonMemory, PycudaMemory, get_cuda_memory

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


# -- CPU: thread state, streams and context release, on fake CUDA packages ------------


class FakeCudart:
    """The part of ``cuda.bindings.runtime`` samedge calls, over a fake per-thread device."""

    cudaStreamNonBlocking = 1  # noqa: N815  # cuda-python's name

    class cudaMemcpyKind:  # noqa: N801  # mirrors cuda-python's enum name
        cudaMemcpyHostToDevice = 1  # noqa: N815
        cudaMemcpyDeviceToHost = 2  # noqa: N815

    def __init__(self, devices: int = 2, integrated: bool = True) -> None:
        self.devices = devices
        self.integrated = integrated
        self.current = threading.local()
        self.stream_flags: list[int] = []
        self.calls: list[str] = []

    def _device(self) -> int:
        return getattr(self.current, "device", 0)

    def cudaGetDeviceCount(self) -> tuple[int, int]:  # noqa: N802
        return (0, self.devices)

    def cudaGetDevice(self) -> tuple[int, int]:  # noqa: N802
        return (0, self._device())

    def cudaSetDevice(self, device: int) -> tuple[int]:  # noqa: N802
        self.calls.append(f"set {device}")
        self.current.device = device
        return (0,)

    def cudaGetDeviceProperties(self, device: int) -> tuple[int, object]:  # noqa: N802
        props = types.SimpleNamespace(
            name=b"NVIDIA Orin\x00\x00",
            major=8,
            minor=7,
            integrated=int(self.integrated),
            totalGlobalMem=8 << 30,
        )
        return (0, props)

    def cudaGetErrorName(self, err: int) -> tuple[int, bytes]:  # noqa: N802
        return (0, b"cudaErrorFake")

    def cudaStreamCreateWithFlags(self, flags: int) -> tuple[int, int]:  # noqa: N802
        self.stream_flags.append(flags)
        return (0, 0x5000 + len(self.stream_flags))

    def cudaStreamDestroy(self, stream: int) -> tuple[int]:  # noqa: N802
        return (0,)


@pytest.fixture
def fake_cudart(monkeypatch: pytest.MonkeyPatch) -> FakeCudart:
    rt = FakeCudart()
    monkeypatch.setattr(cuda_mem, "_import_cudart", lambda: rt)
    monkeypatch.setattr(cuda_mem, "_native_handle", int)
    return rt


def test_cuda_python_activate_restores_the_callers_device(fake_cudart: FakeCudart) -> None:
    mem = CudaPythonMemory(1)
    assert (mem.device_name(), mem.compute_capability()) == ("NVIDIA Orin", (8, 7))
    assert mem.is_integrated()
    assert mem.total_memory() == 8 << 30
    fake_cudart.cudaSetDevice(0)  # the caller (e.g. PyTorch) works on device 0
    with mem.activate():
        assert fake_cudart.cudaGetDevice()[1] == 1
    assert fake_cudart.cudaGetDevice()[1] == 0
    with pytest.raises(KeyError), mem.activate():
        raise KeyError("an error inside the block")
    assert fake_cudart.cudaGetDevice()[1] == 0
    # Already on the device: nothing to restore.
    fake_cudart.cudaSetDevice(1)
    fake_cudart.calls.clear()
    with mem.activate():
        pass
    assert fake_cudart.calls == ["set 1"]
    assert fake_cudart.cudaGetDevice()[1] == 1


def test_cuda_python_streams_are_non_blocking(fake_cudart: FakeCudart) -> None:
    mem = CudaPythonMemory(0)
    handle = mem.create_stream()
    assert fake_cudart.stream_flags == [FakeCudart.cudaStreamNonBlocking]
    mem.destroy_stream(handle)
    mem.close()


def test_cuda_python_non_blocking_flag_exists() -> None:
    runtime = pytest.importorskip("cuda.bindings.runtime")
    assert "cudaStreamNonBlocking" in SOURCE
    assert int(runtime.cudaStreamNonBlocking) == 1  # CU_STREAM_NON_BLOCKING
    assert int(runtime.cudaStreamNonBlocking) == cuda_mem._CU_STREAM_NON_BLOCKING


class FakePycudaContext:
    """pycuda's primary-context object as far as :class:`PycudaMemory` uses it."""

    handle = 0xC0

    def __init__(self, log: list[str]) -> None:
        self.log = log

    def push(self) -> None:
        self.log.append(f"push on {threading.current_thread().name}")

    def detach(self) -> None:
        self.log.append(f"detach on {threading.current_thread().name}")


def _fake_pycuda(monkeypatch: pytest.MonkeyPatch) -> tuple[PycudaMemory, list[str]]:
    log: list[str] = []

    class Error(Exception):
        pass

    class Stream:
        def __init__(self, flags: int = 0) -> None:
            log.append(f"stream flags={flags}")
            self.handle = 0x77

    drv = types.SimpleNamespace(
        Error=Error,
        Stream=Stream,
        Context=types.SimpleNamespace(pop=lambda: log.append("pycuda pop")),
    )
    mem = PycudaMemory.__new__(PycudaMemory)  # __init__ needs a GPU
    mem._drv = drv
    mem.device_index = 0
    mem._host, mem._device, mem._streams = {}, {}, {}
    mem._closed = False
    mem._thread = threading.get_ident()
    mem._ctx = FakePycudaContext(log)
    monkeypatch.setattr(
        cuda_mem, "_pop_driver_context", lambda handle: log.append(f"driver pop {handle:#x}")
    )
    return mem, log


def test_pycuda_streams_are_non_blocking(monkeypatch: pytest.MonkeyPatch) -> None:
    mem, log = _fake_pycuda(monkeypatch)
    assert mem.create_stream() == 0x77
    assert "stream flags=1" in log


def test_pycuda_close_on_its_thread_pushes_detaches_and_pops(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    mem, log = _fake_pycuda(monkeypatch)
    me = threading.current_thread().name
    mem.close()
    assert log == [f"push on {me}", f"detach on {me}", "driver pop 0xc0"]
    mem.close()  # idempotent
    assert len(log) == 3


def test_pycuda_close_on_another_thread_keeps_the_context(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    mem, log = _fake_pycuda(monkeypatch)
    monkeypatch.setattr(cuda_mem, "_KEPT_CONTEXTS", [])
    closer = threading.Thread(target=mem.close, name="closer")
    closer.start()
    closer.join(timeout=60)
    # detach() would be a silent no-op there; the context is kept, not half-released.
    assert not any(entry.startswith("detach") for entry in log)
    assert [mem._ctx] == cuda_mem._KEPT_CONTEXTS


class FakeLibcuda:
    """``libcuda``'s context stack for one thread (cuCtxPopCurrent_v2 / cuCtxPushCurrent_v2)."""

    def __init__(self, stack: list[int]) -> None:
        self.stack = stack

    def cuCtxPopCurrent_v2(self, ref: object) -> int:  # noqa: N802
        if not self.stack:
            return 201  # CUDA_ERROR_INVALID_CONTEXT
        ref._obj.value = self.stack.pop()  # type: ignore[attr-defined]
        return 0

    def cuCtxPushCurrent_v2(self, ctx: ctypes.c_void_p) -> int:  # noqa: N802
        self.stack.append(int(ctx.value or 0))
        return 0


@pytest.mark.parametrize(
    ("before", "after"),
    [
        ([0xA0, 0xC0], [0xA0]),  # the released context on top: popped
        ([0xC0, 0xB0], [0xB0]),  # pycuda re-pushed the previous context above it: kept
        ([0xB0], [0xB0]),  # not on the stack: nothing lost
        ([], []),
    ],
)
def test_pop_driver_context_pops_only_the_released_context(
    monkeypatch: pytest.MonkeyPatch, before: list[int], after: list[int]
) -> None:
    lib = FakeLibcuda(list(before))
    monkeypatch.setattr(cuda_mem.ctypes, "CDLL", lambda name: lib)
    cuda_mem._pop_driver_context(0xC0)
    assert lib.stack == after
