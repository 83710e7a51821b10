"""CUDA memory and streams for the TensorRT backend, behind one small interface.

TensorRT's Python API takes raw device addresses and a stream handle; it does
not allocate I/O buffers itself. This module gives the backend exactly what it
needs, page-locked host buffers, device buffers, async copies on a stream, and
the device's name and compute capability, through :class:`CudaMemory`, with two
implementations:

* :class:`CudaPythonMemory` on NVIDIA's ``cuda-python`` (package
  ``cuda-bindings``; ``from cuda.bindings import runtime``, or ``from cuda
  import cudart`` before 12.6.1), which NVIDIA's own TensorRT samples use
  since 10.14 (``samples/python/common_runtime.py``).
* :class:`PycudaMemory` on ``pycuda``, the layer for JetPack 6: PyPI's aarch64
  CUDA wheels (cuda-python's included) are built for SBSA servers, not for
  Jetson's L4T, while pycuda compiles against JetPack's own CUDA.

Which to install: pycuda on JetPack 6 (``pip install samedge[jetson]``);
cuda-python on JetPack 7, SBSA servers and x86-64 (``pip install
samedge[tensorrt]``), its major version matching the driver's CUDA.

:func:`get_cuda_memory` picks cuda-python when it imports, else pycuda. Both
talk to the device's *primary* context, the one the CUDA runtime and TensorRT
use, so buffers allocated here are valid in TensorRT's calls. Both leave the
calling thread's CUDA state as they found it: :meth:`CudaMemory.activate`
restores the current device (cuda-python) or pops the context it pushed
(pycuda), so PyTorch or other CUDA code in the same thread is not moved.
Streams are created non-blocking: they never wait on, nor hold up, work that
other libraries queue on the legacy default stream.

Errors: a missing package raises :class:`BackendUnavailableError` naming the
pip extra; a missing driver or GPU raises :class:`DeviceUnavailableError`; any
other CUDA failure raises :class:`BackendError` with CUDA's error name.

Example:
    >>> mem = get_cuda_memory()                           # doctest: +SKIP
    >>> host = mem.alloc_host(16); dev = mem.alloc_device(16)
    >>> stream = mem.create_stream()
    >>> mem.memcpy_htod_async(dev, host, stream); mem.synchronize(stream)
"""

from __future__ import annotations

import contextlib
import ctypes
import enum
import importlib
import importlib.util
import logging
import threading
from collections.abc import Iterator
from types import ModuleType
from typing import Any, Protocol

import numpy as np

from samedge._registry import lookup
from samedge.errors import BackendError, BackendUnavailableError, DeviceUnavailableError

__all__ = [
    "CudaApi",
    "CudaMemory",
    "CudaPythonMemory",
    "PycudaMemory",
    "get_cuda_memory",
]

logger = logging.getLogger(__name__)

_INSTALL_HINT = (
    "on Jetson with JetPack 6 install pycuda, `pip install samedge[jetson]` (PyPI's aarch64 "
    "cuda-python wheels are for SBSA servers and fail on JetPack 6); on JetPack 7, SBSA "
    "servers and x86-64 install cuda-python, `pip install samedge[tensorrt]`, matching the "
    "driver's CUDA major version (`pip install 'cuda-python==12.*'` under a CUDA 12 driver); "
    "on Jetson, TensorRT itself comes with JetPack"
)

# CUstream_flags.CU_STREAM_NON_BLOCKING (cuda.h; cuda-bindings driver.StreamFlags.NON_BLOCKING
# = 1): pycuda's Stream(flags=...) passes it to cuStreamCreate and names no constant for it.
_CU_STREAM_NON_BLOCKING = 0x1

# cudaError_t names that mean "no usable driver or GPU here" rather than a bug.
_NO_DEVICE_ERRORS = frozenset(
    {
        "cudaErrorNoDevice",
        "cudaErrorInsufficientDriver",
        "cudaErrorInvalidDevice",
        "cudaErrorInitializationError",
        "cudaErrorSystemDriverMismatch",
        "cudaErrorCompatNotSupportedOnDevice",
        "cudaErrorDevicesUnavailable",
        "cudaErrorSystemNotReady",
        "cudaErrorStubLibrary",
        "cudaErrorUnsupportedPtxVersion",
    }
)


class CudaApi(str, enum.Enum):
    """Which Python CUDA package carries the memory layer."""

    CUDA_PYTHON = "cuda-python"
    PYCUDA = "pycuda"


class CudaMemory(Protocol):
    """What the TensorRT backend needs from CUDA.

    Device buffers and streams are plain integer addresses/handles, as
    TensorRT's ``set_tensor_address`` and ``execute_async_v3`` take them.
    Host buffers are page-locked (pinned) ``uint8`` numpy arrays, so copies
    from and to them are truly asynchronous.
    """

    api: CudaApi
    device_index: int

    def device_name(self) -> str:
        """Marketing name of the GPU, e.g. ``"NVIDIA Orin"``."""
        ...

    def compute_capability(self) -> tuple[int, int]:
        """``(major, minor)``, e.g. ``(8, 7)`` for Orin."""
        ...

    def is_integrated(self) -> bool:
        """Whether the GPU shares the system's memory (Jetson) rather than having its own."""
        ...

    def total_memory(self) -> int:
        """The GPU's memory in bytes (on an integrated GPU: the memory it shares)."""
        ...

    def activate(self) -> contextlib.AbstractContextManager[None]:
        """Make this device's primary context current in the calling thread for the block.

        The thread's previous CUDA state (current device, current context) is restored
        when the block exits.
        """
        ...

    def alloc_host(self, nbytes: int) -> np.ndarray:
        """Page-locked host buffer of ``nbytes`` bytes, as a 1-D ``uint8`` array."""
        ...

    def free_host(self, buffer: np.ndarray) -> None:
        """Release a buffer from :meth:`alloc_host`; the array must not be used afterwards."""
        ...

    def alloc_device(self, nbytes: int) -> int:
        """Device buffer of ``nbytes`` bytes; returns its address."""
        ...

    def free_device(self, address: int) -> None:
        """Release a buffer from :meth:`alloc_device`."""
        ...

    def create_stream(self) -> int:
        """A new non-blocking CUDA stream; returns its handle."""
        ...

    def destroy_stream(self, stream: int) -> None:
        """Release a stream from :meth:`create_stream`."""
        ...

    def memcpy_htod_async(self, dst: int, src: np.ndarray, stream: int) -> None:
        """Queue a copy of the C-contiguous host array ``src`` to device address ``dst``."""
        ...

    def memcpy_dtoh_async(self, dst: np.ndarray, src: int, stream: int) -> None:
        """Queue a copy from device address ``src`` into the C-contiguous host array ``dst``."""
        ...

    def synchronize(self, stream: int) -> None:
        """Wait until everything queued on ``stream`` has finished."""
        ...

    def close(self) -> None:
        """Release every buffer and stream still held, and the context."""
        ...


def _check_contiguous(array: np.ndarray, what: str) -> None:
    if not array.flags.c_contiguous:
        raise BackendError(f"{what}: host array must be C-contiguous for an async CUDA copy")


# -- cuda-python (cuda-bindings) ------------------------------------------------------


def _import_cudart() -> ModuleType:
    """Import cuda-python's runtime module under its current or its pre-12.6.1 name."""
    try:
        # cuda-bindings >= 12.6.1; the only name left in 13.x, where the `cuda.cudart`
        # trampoline was removed (cuda-bindings 13.0.0 release notes, "Breaking changes").
        return importlib.import_module("cuda.bindings.runtime")
    except ImportError:
        pass
    try:
        # cuda-python 11.x / 12.x before the `cuda.bindings` namespace (JetPack 5/6 wheels).
        return importlib.import_module("cuda.cudart")
    except ImportError as e:
        raise BackendUnavailableError(f"cuda-python is not installed; {_INSTALL_HINT}") from e


def _native_handle(obj: Any) -> int:
    """Address behind a cuda-python handle object (stream, pointer wrapper) as an int."""
    try:
        # cuda-bindings >= 12.9.1 deprecates int(obj) in favour of this helper
        # (cuda-bindings 12.9.1 / 13.0.0 release notes, "Highlights").
        from cuda.bindings.utils import get_cuda_native_handle
    except ImportError:
        return int(obj)
    return int(get_cuda_native_handle(obj))


class CudaPythonMemory:
    """:class:`CudaMemory` on cuda-python's runtime API (``cudaMallocHost``, ``cudaMemcpyAsync``).

    Every cuda-python call returns a tuple whose first item is a ``cudaError_t``;
    :meth:`_call` checks it and raises with CUDA's error name.

    Raises:
        BackendUnavailableError: cuda-python is not installed.
        DeviceUnavailableError: no CUDA driver, no GPU, or no GPU ``device_index``.
    """

    api = CudaApi.CUDA_PYTHON

    def __init__(self, device_index: int = 0) -> None:
        self._rt = _import_cudart()
        self.device_index = device_index
        self._host: dict[int, int] = {}  # array data address -> cudaMallocHost pointer
        self._device: set[int] = set()
        self._streams: dict[int, Any] = {}  # handle -> cudaStream_t (keeps it alive)
        self._closed = False
        count = int(self._call(self._rt.cudaGetDeviceCount(), "cudaGetDeviceCount", probe=True))
        if count == 0:
            raise DeviceUnavailableError("CUDA reports no GPU on this machine")
        if not 0 <= device_index < count:
            raise DeviceUnavailableError(
                f"CUDA device {device_index} requested, but this machine has {count} "
                f"(valid indices 0..{count - 1})"
            )
        self._call(self._rt.cudaSetDevice(device_index), "cudaSetDevice", probe=True)
        props = self._call(
            self._rt.cudaGetDeviceProperties(device_index), "cudaGetDeviceProperties"
        )
        raw_name = props.name
        name = raw_name.decode(errors="replace") if isinstance(raw_name, bytes) else str(raw_name)
        self._name = name.split("\x00", 1)[0].strip()
        self._cc = (int(props.major), int(props.minor))
        self._integrated = bool(props.integrated)
        self._total_memory = int(props.totalGlobalMem)

    # -- error checking --------------------------------------------------------------

    def _error_name(self, err: Any) -> str:
        result = self._rt.cudaGetErrorName(err)
        name = result[1] if len(result) > 1 else None
        if isinstance(name, bytes):
            return name.decode(errors="replace")
        return str(name) if name is not None else str(err)

    def _call(self, result: Any, what: str, *, probe: bool = False) -> Any:
        """Check a cuda-python result tuple; return its value (or values, or None)."""
        err = result[0]
        if int(err) != 0:  # cudaSuccess == 0 in every CUDA version
            name = self._error_name(err)
            if probe or name in _NO_DEVICE_ERRORS:
                raise DeviceUnavailableError(
                    f"{what} failed with {name}: no usable CUDA driver or GPU "
                    f"(device {self.device_index}); check `nvidia-smi`, and that cuda-python's "
                    "major version matches the driver's CUDA version"
                )
            raise BackendError(f"{what} failed with {name}")
        values = result[1:]
        if not values:
            return None
        return values[0] if len(values) == 1 else values

    # -- CudaMemory --------------------------------------------------------------------

    def device_name(self) -> str:
        return self._name

    def compute_capability(self) -> tuple[int, int]:
        return self._cc

    def is_integrated(self) -> bool:
        return self._integrated

    def total_memory(self) -> int:
        return self._total_memory

    @contextlib.contextmanager
    def activate(self) -> Iterator[None]:
        # The runtime API binds the current device per thread; a worker thread that
        # calls infer() starts on device 0 unless told otherwise. The caller's device
        # is put back afterwards: PyTorch and other CUDA code in this thread rely on it.
        previous = int(self._call(self._rt.cudaGetDevice(), "cudaGetDevice"))
        self._call(self._rt.cudaSetDevice(self.device_index), "cudaSetDevice")
        try:
            yield
        finally:
            if previous != self.device_index:
                self._call(self._rt.cudaSetDevice(previous), "cudaSetDevice(restore)")

    def alloc_host(self, nbytes: int) -> np.ndarray:
        ptr = int(self._call(self._rt.cudaMallocHost(max(nbytes, 1)), "cudaMallocHost"))
        # A numpy view over the pinned block; it does not own the memory, free_host does.
        array = np.ctypeslib.as_array((ctypes.c_uint8 * max(nbytes, 1)).from_address(ptr))
        self._host[int(array.ctypes.data)] = ptr
        return array[:nbytes]

    def free_host(self, buffer: np.ndarray) -> None:
        ptr = self._host.pop(int(buffer.ctypes.data), None)
        if ptr is not None:
            self._call(self._rt.cudaFreeHost(ptr), "cudaFreeHost")

    def alloc_device(self, nbytes: int) -> int:
        ptr = int(self._call(self._rt.cudaMalloc(max(nbytes, 1)), "cudaMalloc"))
        self._device.add(ptr)
        return ptr

    def free_device(self, address: int) -> None:
        if address in self._device:
            self._device.discard(address)
            self._call(self._rt.cudaFree(address), "cudaFree")

    def create_stream(self) -> int:
        stream = self._call(
            self._rt.cudaStreamCreateWithFlags(self._rt.cudaStreamNonBlocking),
            "cudaStreamCreateWithFlags",
        )
        handle = _native_handle(stream)
        self._streams[handle] = stream
        return handle

    def destroy_stream(self, stream: int) -> None:
        obj = self._streams.pop(stream, None)
        if obj is not None:
            self._call(self._rt.cudaStreamDestroy(obj), "cudaStreamDestroy")

    def _stream(self, handle: int) -> Any:
        try:
            return self._streams[handle]
        except KeyError:
            raise BackendError(f"stream {handle:#x} was not created by this memory layer") from None

    def memcpy_htod_async(self, dst: int, src: np.ndarray, stream: int) -> None:
        _check_contiguous(src, "memcpy_htod_async")
        kind = self._rt.cudaMemcpyKind.cudaMemcpyHostToDevice
        self._call(
            self._rt.cudaMemcpyAsync(dst, src.ctypes.data, src.nbytes, kind, self._stream(stream)),
            "cudaMemcpyAsync(host->device)",
        )

    def memcpy_dtoh_async(self, dst: np.ndarray, src: int, stream: int) -> None:
        _check_contiguous(dst, "memcpy_dtoh_async")
        kind = self._rt.cudaMemcpyKind.cudaMemcpyDeviceToHost
        self._call(
            self._rt.cudaMemcpyAsync(dst.ctypes.data, src, dst.nbytes, kind, self._stream(stream)),
            "cudaMemcpyAsync(device->host)",
        )

    def synchronize(self, stream: int) -> None:
        self._call(self._rt.cudaStreamSynchronize(self._stream(stream)), "cudaStreamSynchronize")

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        # Best effort: a failing free must not hide the error that led to close().
        for handle in list(self._streams):
            with contextlib.suppress(BackendError):
                self.destroy_stream(handle)
        for ptr in list(self._device):
            with contextlib.suppress(BackendError):
                self.free_device(ptr)
        for ptr in list(self._host.values()):
            with contextlib.suppress(BackendError):
                self._call(self._rt.cudaFreeHost(ptr), "cudaFreeHost")
        self._host.clear()


# -- pycuda -------------------------------------------------------------------------


class PycudaMemory:
    """:class:`CudaMemory` on pycuda, using the device's primary context.

    pycuda's ``autoinit`` creates a context of its own; TensorRT uses the CUDA
    runtime's primary context. Retaining the primary context here (as pycuda's
    own ``autoprimaryctx`` does) keeps both on the same one, so addresses are
    valid for TensorRT. pycuda contexts are per thread, so every public call
    pushes the context and pops it again.

    The retained context is released on the thread that retained it: pycuda's
    ``Context.detach()`` does nothing on any other thread, and on its own thread
    it releases the primary context (``cuDevicePrimaryCtxRelease``) without
    popping it ("unlike cuCtxDestroy() this method does not pop the context from
    stack in any circumstances", CUDA driver API, Primary Context Management).
    :meth:`close` therefore pushes, detaches and pops the driver's context
    itself; closed from another thread, it keeps the retained context (released
    at process exit) rather than leaving a half-released one behind.

    Raises:
        BackendUnavailableError: pycuda is not installed.
        DeviceUnavailableError: no CUDA driver, no GPU, or no GPU ``device_index``.
    """

    api = CudaApi.PYCUDA

    def __init__(self, device_index: int = 0) -> None:
        try:
            drv = importlib.import_module("pycuda.driver")
        except ModuleNotFoundError as e:
            if e.name is not None and e.name.split(".")[0] == "pycuda":
                raise BackendUnavailableError(f"pycuda is not installed; {_INSTALL_HINT}") from e
            raise DeviceUnavailableError(f"pycuda cannot load the CUDA driver ({e})") from e
        except ImportError as e:  # pycuda is there but libcuda.so is not: no driver
            raise DeviceUnavailableError(f"pycuda cannot load the CUDA driver ({e})") from e
        self._drv = drv
        self.device_index = device_index
        self._host: dict[int, Any] = {}  # array data address -> pycuda HostAllocation owner
        self._device: dict[int, Any] = {}  # address -> DeviceAllocation (freed on GC)
        self._streams: dict[int, Any] = {}  # handle -> pycuda Stream
        self._closed = False
        self._thread = threading.get_ident()  # the thread that retains the context
        try:
            drv.init()
            count = int(drv.Device.count())
        except drv.Error as e:
            raise DeviceUnavailableError(f"no usable CUDA driver or GPU: {e}") from e
        if count == 0:
            raise DeviceUnavailableError("CUDA reports no GPU on this machine")
        if not 0 <= device_index < count:
            raise DeviceUnavailableError(
                f"CUDA device {device_index} requested, but this machine has {count} "
                f"(valid indices 0..{count - 1})"
            )
        try:
            self._dev = drv.Device(device_index)
            self._ctx = self._dev.retain_primary_context()
            self._name = str(self._dev.name())
            major, minor = self._dev.compute_capability()
            self._integrated = bool(self._dev.get_attribute(drv.device_attribute.INTEGRATED))
            self._total_memory = int(self._dev.total_memory())
        except drv.Error as e:
            raise DeviceUnavailableError(f"CUDA device {device_index} is not usable: {e}") from e
        self._cc = (int(major), int(minor))

    @contextlib.contextmanager
    def _translate(self, what: str) -> Iterator[None]:
        try:
            yield
        except self._drv.Error as e:
            raise BackendError(f"{what} failed: {e}") from e

    def device_name(self) -> str:
        return self._name

    def compute_capability(self) -> tuple[int, int]:
        return self._cc

    def is_integrated(self) -> bool:
        return self._integrated

    def total_memory(self) -> int:
        return self._total_memory

    @contextlib.contextmanager
    def activate(self) -> Iterator[None]:
        with self._translate("pushing the CUDA context"):
            self._ctx.push()
        try:
            yield
        finally:
            with self._translate("popping the CUDA context"):
                self._drv.Context.pop()

    def alloc_host(self, nbytes: int) -> np.ndarray:
        with self.activate(), self._translate("pagelocked_empty"):
            array = self._drv.pagelocked_empty(max(nbytes, 1), np.uint8)
        view: np.ndarray = array[:nbytes]
        self._host[int(view.ctypes.data)] = array
        return view

    def free_host(self, buffer: np.ndarray) -> None:
        owner = self._host.pop(int(buffer.ctypes.data), None)
        # The array's base is pycuda's HostAllocation; free() releases it now rather
        # than whenever the garbage collector gets to the last reference.
        free = getattr(owner.base, "free", None) if owner is not None else None
        if free is not None:
            with self.activate(), self._translate("freeing page-locked memory"):
                free()

    def alloc_device(self, nbytes: int) -> int:
        with self.activate(), self._translate("mem_alloc"):
            allocation = self._drv.mem_alloc(max(nbytes, 1))
        address = int(allocation)
        self._device[address] = allocation
        return address

    def free_device(self, address: int) -> None:
        allocation = self._device.pop(address, None)
        if allocation is not None:
            with self.activate(), self._translate("freeing device memory"):
                allocation.free()

    def create_stream(self) -> int:
        with self.activate(), self._translate("creating a stream"):
            stream = self._drv.Stream(flags=_CU_STREAM_NON_BLOCKING)
        handle = int(stream.handle)
        self._streams[handle] = stream
        return handle

    def destroy_stream(self, stream: int) -> None:
        # pycuda destroys the stream when its object is collected.
        self._streams.pop(stream, None)

    def _stream(self, handle: int) -> Any:
        try:
            return self._streams[handle]
        except KeyError:
            raise BackendError(f"stream {handle:#x} was not created by this memory layer") from None

    def memcpy_htod_async(self, dst: int, src: np.ndarray, stream: int) -> None:
        _check_contiguous(src, "memcpy_htod_async")
        with self.activate(), self._translate("memcpy_htod_async"):
            self._drv.memcpy_htod_async(dst, src, self._stream(stream))

    def memcpy_dtoh_async(self, dst: np.ndarray, src: int, stream: int) -> None:
        _check_contiguous(dst, "memcpy_dtoh_async")
        with self.activate(), self._translate("memcpy_dtoh_async"):
            self._drv.memcpy_dtoh_async(dst, src, self._stream(stream))

    def synchronize(self, stream: int) -> None:
        with self.activate(), self._translate("Stream.synchronize"):
            self._stream(stream).synchronize()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        # Best effort: a failing free must not hide the error that led to close().
        for address in list(self._device):
            with contextlib.suppress(BackendError):
                self.free_device(address)
        for owner in list(self._host.values()):
            with contextlib.suppress(BackendError):
                self.free_host(owner)
        self._host.clear()
        self._streams.clear()
        self._release_context()

    def _release_context(self) -> None:
        """Balance retain_primary_context(): push, detach, pop, on the retaining thread."""
        if threading.get_ident() != self._thread:
            # detach() would silently do nothing here, and the object's destructor might
            # later half-release the context on whichever thread collects it. Keep it:
            # the runtime (TensorRT) holds its own reference, so this only delays the
            # primary context's reset to process exit.
            _KEPT_CONTEXTS.append(self._ctx)
            logger.debug(
                "pycuda context for device %d closed off its thread; kept until exit",
                self.device_index,
            )
            return
        handle = _context_handle(self._ctx)
        try:
            self._ctx.push()
            self._ctx.detach()  # cuDevicePrimaryCtxRelease; leaves the context pushed
        except self._drv.Error as e:
            logger.debug("releasing the pycuda context failed: %s", e)
            return
        _pop_driver_context(handle)


# Primary contexts closed from a thread other than the one that retained them (above).
_KEPT_CONTEXTS: list[Any] = []


def _context_handle(ctx: Any) -> int | None:
    handle = getattr(ctx, "handle", None)
    return int(handle) if handle is not None else None


def _pop_driver_context(handle: int | None) -> None:
    """Pop the context ``handle`` off this thread's driver stack, keeping anything above it.

    pycuda cannot pop a context it no longer tracks, so this calls the driver API
    (``cuCtxPopCurrent_v2`` / ``cuCtxPushCurrent_v2``, CUDA driver API "Context
    Management") through the ``libcuda`` pycuda has already loaded. After
    ``detach()``, pycuda may have pushed the context that was current before,
    on top of the one just released.
    """
    if handle is None:  # a pycuda without Context.handle: never pop a context blindly
        logger.debug("pycuda gives no context handle; the released context stays pushed")
        return
    try:
        libcuda = ctypes.CDLL("libcuda.so.1")
    except OSError as e:
        logger.debug("cannot load libcuda to pop the released context: %s", e)
        return
    popped: list[ctypes.c_void_p] = []
    for _ in range(2):
        ctx = ctypes.c_void_p()
        if libcuda.cuCtxPopCurrent_v2(ctypes.byref(ctx)) != 0:
            break
        popped.append(ctx)
        if (ctx.value or 0) == handle:
            break
    found = bool(popped) and (popped[-1].value or 0) == handle
    # Put back whatever was not the released context, in stack order.
    keep = popped[:-1] if found else popped
    for ctx in reversed(keep):
        libcuda.cuCtxPushCurrent_v2(ctx)
    if not found:
        logger.debug("the released pycuda context was not on this thread's stack")


# -- selection -----------------------------------------------------------------------

_IMPLEMENTATIONS: dict[str, type[CudaPythonMemory] | type[PycudaMemory]] = {
    CudaApi.CUDA_PYTHON.value: CudaPythonMemory,
    CudaApi.PYCUDA.value: PycudaMemory,
}


def _installed(module: str) -> bool:
    """Whether ``module`` can be found, without importing it (pycuda.driver loads libcuda)."""
    try:
        return importlib.util.find_spec(module) is not None
    except ImportError:  # a missing parent package
        return False


def get_cuda_memory(prefer: CudaApi | str | None = None, device_index: int = 0) -> CudaMemory:
    """Open the CUDA memory layer on GPU ``device_index``.

    Args:
        prefer: ``"cuda-python"`` or ``"pycuda"``; None picks cuda-python when it
            imports, else pycuda.
        device_index: CUDA device ordinal.

    Raises:
        UnknownNameError: ``prefer`` is not a known CUDA package name.
        BackendUnavailableError: neither package (or not the preferred one) is installed.
        DeviceUnavailableError: no CUDA driver or GPU.

    Example:
        >>> mem = get_cuda_memory("pycuda")                   # doctest: +SKIP
        >>> mem.device_name(), mem.compute_capability()       # doctest: +SKIP
        ('NVIDIA Orin', (8, 7))
    """
    if prefer is not None:
        name = prefer.value if isinstance(prefer, CudaApi) else prefer
        return lookup(_IMPLEMENTATIONS, name, "CUDA Python package")(device_index)
    has_cuda_python = _installed("cuda.bindings") or _installed("cuda.cudart")
    has_pycuda = _installed("pycuda")
    if not (has_cuda_python or has_pycuda):
        raise BackendUnavailableError(
            f"neither cuda-python nor pycuda is installed; {_INSTALL_HINT}"
        )
    if not has_cuda_python:
        return PycudaMemory(device_index)
    try:
        return CudaPythonMemory(device_index)
    except DeviceUnavailableError as first:
        if not has_pycuda:
            raise
        # cuda-python built for a newer CUDA than the driver (cudaErrorInsufficientDriver)
        # while pycuda, compiled against the local CUDA, still works: try it.
        logger.info("cuda-python cannot use the GPU (%s); trying pycuda", first)
        try:
            return PycudaMemory(device_index)
        except DeviceUnavailableError as second:
            raise DeviceUnavailableError(f"{first}; pycuda: {second}") from second
