"""TensorRT backend: ONNX -> engine (cached) -> named-tensor execution on a CUDA stream.

Supported: TensorRT 8.6 (JetPack 6.0), 10.x (JetPack 6.1+/7, desktop) and 11.x.
Every difference between them lives in :class:`_TrtCompat`
(:mod:`samedge.runtimes._trt_plan`, with the graph's precision and the
optimisation profile), each branch citing the NVIDIA page it follows;
everything else uses calls that are the same from
8.6 to 11 (``OnnxParser.parse_from_file``, ``build_serialized_network``,
``deserialize_cuda_engine`` and the named-tensor API: ``set_input_shape``,
``set_tensor_address``, ``execute_async_v3``).

Precision. An FP16 or INT8 model is an ONNX graph that *carries* its precision
(FP16 initializers, or QuantizeLinear/DequantizeLinear pairs; DESIGN.md). It is
built strongly typed on 10.x/11.x, as 11.x requires (it removed the FP16/INT8
builder flags and implicit calibration). An FP32 graph builds in FP32 (with
TensorRT's default TF32 on Ampere and newer); ``fp16=True`` adds the FP16
builder flag on the versions that still have it.

Optimisation profile. The decoder's dynamic axes get one profile: axis 0 is
the number of objects B (``1..max_objects``), axis 1 the number of prompt
points per object N (``1..max_points``). N counts what the decoder receives,
not clicks: each click is one point, a box adds its two corners, and an object
without a box gets one padding point, as SAM's prompt encoder pads; objects in
one call are padded to the longest. So ``max_points=10`` allows 9 clicks
without a box, or 8 clicks with a box. The encoder is static and needs no
profile.

Verification: this module and ``_trt_plan`` are type-checked against NVIDIA's
10.13 API (``tensorrt-stubs``) by tests/runtimes/test_trt_types.py, and each
version branch follows the documentation page it cites; the tests marked
``tensorrt`` run the backend for real on a machine with TensorRT and a GPU.

Example:
    >>> from samedge.runtimes.trt import TensorRTBackend, TensorRTConfig   # doctest: +SKIP
    >>> cfg = TensorRTConfig(max_objects=32, max_points=6)
    >>> with TensorRTBackend("model/decoder.onnx", cfg) as backend:
    ...     out = backend.infer(feeds)
"""

from __future__ import annotations

import collections
import logging
import math
import os
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

import numpy as np

from samedge.errors import (
    BackendError,
    BackendUnavailableError,
    DeviceUnavailableError,
    EngineCacheError,
    InputError,
    ProfileLimitError,
)
from samedge.runtimes._graph import OnnxSummary, read_onnx_summary
from samedge.runtimes._hw import parse_device

# The planning half (precision, version differences, profile) is its own module;
# its public names are re-exported here, where users have always imported them.
from samedge.runtimes._trt_plan import (
    _AXIS_ROLES,
    _INSTALL_HINT,
    BuildPlan,
    GraphPrecision,
    ProfileShape,
    _profile_text,
    _TrtCompat,
    profile_shapes,
)
from samedge.runtimes.base import Backend, TensorSpec
from samedge.runtimes.cache import CacheKey, EngineCache
from samedge.runtimes.cuda_mem import CudaApi, CudaMemory, get_cuda_memory

if TYPE_CHECKING:  # type names only; TensorRT is imported lazily at run time
    import tensorrt as trt

__all__ = [
    "GraphPrecision",
    "ProfileShape",
    "TensorRTBackend",
    "TensorRTConfig",
    "profile_shapes",
]

logger = logging.getLogger(__name__)

_LIMIT_HINT = (
    "N counts each click, 2 corners per box, and 1 padding point for an object without a box"
)

# TensorRT DataType names -> numpy. Keyed by name because INT64 (10.0+) and BF16
# do not exist as attributes on every supported version.
_NUMPY_DTYPES: dict[str, np.dtype] = {
    "FLOAT": np.dtype(np.float32),
    "HALF": np.dtype(np.float16),
    "INT8": np.dtype(np.int8),
    "INT32": np.dtype(np.int32),
    "INT64": np.dtype(np.int64),
    "BOOL": np.dtype(np.bool_),
    "UINT8": np.dtype(np.uint8),
}


# -- configuration ------------------------------------------------------------------


@dataclass(frozen=True)
class TensorRTConfig:
    """How the TensorRT engine is built and where it is cached.

    Attributes:
        max_objects: Most objects (decoder batch B) one call may carry.
        max_points: Most prompt points per object (N): clicks + 2 per box + 1
            padding point when an object has no box.
        opt_objects: B that TensorRT tunes kernels for; None = 1 (one object).
        opt_points: N tuned for; None = 2 (one click + padding, or one box).
        workspace_bytes: Cap on the builder's scratch memory; None = TensorRT's
            default (the device's memory).
        fp16: None (default) follows the graph: a graph that carries FP16 or
            INT8 builds in that precision, an FP32 graph in FP32. True also
            lets an FP32 graph use FP16 kernels through the builder flag on
            TensorRT 8.6/10.x (11.x removed it: convert the ONNX to FP16 with
            samedge's FP16 step instead). False insists on FP32 and refuses a
            graph that carries FP16 or INT8.
        cache_dir: Engine cache root; None = samedge's default (``$SAMEDGE_CACHE_DIR``,
            else the user cache dir).
        use_cache: Read and write the engine cache (False always rebuilds).
        device_index: CUDA device ordinal; None = from the backend's ``device``
            argument (``"cuda:1"``), else 0.
        builder_optimization_level: 0..5, TensorRT's build-time/quality trade-off;
            None = TensorRT's default (3).
        cuda_api: ``"cuda-python"`` or ``"pycuda"`` for buffers and streams;
            None picks cuda-python when installed, else pycuda.

    Example:
        >>> TensorRTConfig(max_objects=32).max_points
        10
    """

    max_objects: int = 16
    max_points: int = 10
    opt_objects: int | None = None
    opt_points: int | None = None
    workspace_bytes: int | None = None
    fp16: bool | None = None
    cache_dir: Path | None = None
    use_cache: bool = True
    device_index: int | None = None
    builder_optimization_level: int | None = None
    cuda_api: CudaApi | None = None

    def __post_init__(self) -> None:
        for name in ("max_objects", "max_points"):
            _check_int(name, getattr(self, name), low=1)
        for name, top in (("opt_objects", self.max_objects), ("opt_points", self.max_points)):
            value = getattr(self, name)
            if value is not None:
                _check_int(name, value, low=1, high=top)
        if self.workspace_bytes is not None:
            _check_int("workspace_bytes", self.workspace_bytes, low=1)
        if self.fp16 is not None and not isinstance(self.fp16, bool):
            raise InputError(f"fp16: got {self.fp16!r}, expected True, False or None")
        if not isinstance(self.use_cache, bool):
            raise InputError(f"use_cache: got {self.use_cache!r}, expected True or False")
        if self.cache_dir is not None and not isinstance(self.cache_dir, str | os.PathLike):
            raise InputError(f"cache_dir: got {self.cache_dir!r}, expected a path or None")
        if self.device_index is not None:
            _check_int("device_index", self.device_index, low=0)
        if self.builder_optimization_level is not None:
            _check_int("builder_optimization_level", self.builder_optimization_level, 0, 5)
        if self.cuda_api is not None and not isinstance(self.cuda_api, CudaApi):
            valid = ", ".join(repr(a.value) for a in CudaApi)
            raise InputError(f"cuda_api: got {self.cuda_api!r}, expected CudaApi({valid}) or None")

    @property
    def objects_opt(self) -> int:
        return self.opt_objects if self.opt_objects is not None else 1

    @property
    def points_opt(self) -> int:
        return self.opt_points if self.opt_points is not None else min(2, self.max_points)


def _check_int(name: str, value: object, low: int, high: int | None = None) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InputError(f"{name}: got {value!r}, expected an integer")
    if value < low or (high is not None and value > high):
        bound = f"{low}..{high}" if high is not None else f">= {low}"
        raise InputError(f"{name}: got {value}, expected {bound}")


# -- TensorRT glue ------------------------------------------------------------------------


def _import_tensorrt() -> str:
    """Import TensorRT once and return its version string.

    Raises:
        BackendUnavailableError: TensorRT is missing, only its stubs are installed,
            or its version is unsupported.
    """
    try:
        import tensorrt as trt
    except ImportError as e:
        raise BackendUnavailableError(f"TensorRT is not installed; {_INSTALL_HINT}") from e
    version = getattr(trt, "__version__", None)
    if not isinstance(version, str) or not hasattr(trt, "Builder"):
        raise BackendUnavailableError(
            "only TensorRT's type stubs (tensorrt-stubs) are installed, not TensorRT; "
            + _INSTALL_HINT
        )
    _TrtCompat.parse(version).check_supported()
    return version


class _TrtErrors:
    """The latest error messages TensorRT logged, to quote in exceptions (thread safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._messages: collections.deque[str] = collections.deque(maxlen=8)

    def add(self, message: str) -> None:
        with self._lock:
            self._messages.append(message)

    def take(self) -> str:
        with self._lock:
            text = " | ".join(self._messages)
            self._messages.clear()
        return f" (TensorRT: {text})" if text else ""


_ERRORS = _TrtErrors()
_LOGGER: trt.ILogger | None = None
_LOGGER_LOCK = threading.Lock()


def _trt_logger() -> trt.ILogger:
    """The process-wide TensorRT logger, routed into Python logging.

    One instance for the process: TensorRT treats the logger as a singleton that
    every Builder and Runtime must share (8.x Logger page), and it must outlive
    every object created with it.
    """
    global _LOGGER
    import tensorrt as trt

    with _LOGGER_LOCK:
        if _LOGGER is None:

            class _Logger(trt.ILogger):
                # A custom logger must call the base __init__ explicitly (Logger page,
                # latest/_static/python-api/infer/Core/Logger.html).
                def __init__(self) -> None:
                    trt.ILogger.__init__(self)

                def log(self, severity: trt.ILogger.Severity, msg: str) -> None:
                    level = int(severity)  # INTERNAL_ERROR 0, ERROR 1, WARNING 2, INFO 3
                    if level <= 1:
                        _ERRORS.add(msg)
                        logger.error("TensorRT: %s", msg)
                    elif level == 2:
                        logger.warning("TensorRT: %s", msg)
                    elif level == 3:
                        logger.debug("TensorRT: %s", msg)

            _LOGGER = _Logger()
        return _LOGGER


def _dims(dims: trt.Dims) -> tuple[int, ...]:
    return tuple(int(dims[i]) for i in range(len(dims)))


def _numpy_dtype(data_type: trt.DataType, tensor: str) -> np.dtype:
    dtype = _NUMPY_DTYPES.get(data_type.name)
    if dtype is None:
        raise BackendError(
            f"{tensor}: TensorRT I/O type {data_type.name} has no numpy equivalent; "
            "keep the graph's inputs and outputs in float32/float16/int types"
        )
    return dtype


def _build_serialized(
    onnx_path: Path,
    plan: BuildPlan,
    shapes: Mapping[str, ProfileShape],
    config: TensorRTConfig,
) -> bytes:
    """Parse the ONNX, build it with ``plan`` and ``shapes``, and return the serialized engine.

    Raises:
        BackendError: the parser rejects the graph, or the build fails.
    """
    import tensorrt as trt

    log = _trt_logger()
    builder = trt.Builder(log)
    flags = 0
    if plan.explicit_batch:
        flags |= 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
    if plan.strongly_typed:
        flags |= 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, log)
    # parse_from_file resolves external-data weights relative to the file.
    if not parser.parse_from_file(str(onnx_path)):
        errors = [str(parser.get_error(i).desc()) for i in range(parser.num_errors)]
        raise BackendError(
            f"{onnx_path.name}: TensorRT's ONNX parser rejected the graph: "
            + ("; ".join(errors) or "no details given")
            + _ERRORS.take()
        )
    build_config = builder.create_builder_config()
    if config.workspace_bytes is not None:
        build_config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, config.workspace_bytes)
    if config.builder_optimization_level is not None:
        build_config.builder_optimization_level = config.builder_optimization_level
    if plan.fp16_flag:
        build_config.set_flag(trt.BuilderFlag.FP16)
    if plan.int8_flag:
        build_config.set_flag(trt.BuilderFlag.INT8)
    if shapes:
        profile = builder.create_optimization_profile()
        for name, shape in shapes.items():
            profile.set_shape(
                name,
                trt.Dims(list(shape.min)),
                trt.Dims(list(shape.opt)),
                trt.Dims(list(shape.max)),
            )
        build_config.add_optimization_profile(profile)
    serialized = builder.build_serialized_network(network, build_config)
    if serialized is None:
        raise BackendError(f"{onnx_path.name}: TensorRT could not build an engine" + _ERRORS.take())
    return bytes(serialized)


# -- the backend ------------------------------------------------------------------------


@dataclass
class _IOBuffer:
    """Page-locked host staging plus device memory for one I/O tensor."""

    host: np.ndarray
    device: int

    @property
    def capacity(self) -> int:
        return int(self.host.nbytes)


@dataclass
class _Engine:
    """What one loaded engine holds (kept together so it is released in order)."""

    runtime: trt.Runtime
    engine: trt.ICudaEngine
    context: trt.IExecutionContext
    stream: int
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    dtypes: dict[str, np.dtype]
    limits: dict[str, tuple[tuple[int, ...], tuple[int, ...]]]  # input -> (min, max) shape
    buffers: dict[str, _IOBuffer] = field(default_factory=dict)

    def release(self, mem: CudaMemory) -> None:
        """Free buffers and the stream, then drop context, engine and runtime in that order."""
        with mem.activate():
            for buf in self.buffers.values():
                mem.free_host(buf.host)
                mem.free_device(buf.device)
            self.buffers.clear()
            mem.destroy_stream(self.stream)
            # TensorRT objects must go before what created them, while the CUDA context
            # is current: the execution context, then the engine, then the runtime.
            del self.context
            del self.engine
            del self.runtime


class TensorRTBackend(Backend):
    """One ONNX graph as a TensorRT engine on an NVIDIA GPU.

    The first :meth:`load` builds the engine (minutes on a Jetson) and stores it
    in samedge's engine cache; later loads deserialize it in seconds. A cached
    engine that fails to load (corrupt, or from another TensorRT build) is
    logged, dropped and rebuilt. Calls to :meth:`infer` are serialized: the
    engine has one execution context and one set of I/O buffers, reused and
    grown when a larger batch arrives.

    Args:
        model_path: The ``.onnx`` graph.
        config: Build and cache settings; None = :class:`TensorRTConfig` defaults.
        device: ``"cuda"``, ``"cuda:N"``, ``"gpu"`` or ``"gpu:N"``; None = GPU 0
            (or ``config.device_index``).

    Raises:
        InputError: ``device`` is malformed or disagrees with ``config.device_index``.
        DeviceUnavailableError: ``device`` names a CPU or NPU; (at load) no usable NVIDIA GPU.
        BackendUnavailableError: (at load) TensorRT or a CUDA Python package is missing.
        ProfileLimitError: (at infer) more objects or points than the engine allows.

    Example:
        >>> backend = TensorRTBackend("model/decoder.onnx")   # doctest: +SKIP
        >>> backend.precision, backend.device                  # doctest: +SKIP
        ('fp32', 'NVIDIA Orin (sm_87)')
    """

    name: ClassVar[str] = "tensorrt"
    config_class: ClassVar[type[TensorRTConfig]] = TensorRTConfig

    def __init__(
        self,
        model_path: str | os.PathLike[str],
        config: TensorRTConfig | None = None,
        *,
        device: str | None = None,
    ) -> None:
        super().__init__(model_path)
        if config is not None and not isinstance(config, TensorRTConfig):
            raise InputError(f"config: got {type(config).__name__}, expected TensorRTConfig")
        self.config = config if config is not None else TensorRTConfig()
        request = parse_device(device)
        if request is not None and request.kind not in ("cuda", "gpu"):
            raise DeviceUnavailableError(
                f"device {device!r}: TensorRT runs on NVIDIA GPUs only; pass 'cuda' or 'cuda:N', "
                "or use backend='onnxruntime' or 'openvino'"
            )
        index = self.config.device_index
        if request is not None and index is not None and request.ordinal != index:
            raise InputError(
                f"device={device!r} and TensorRTConfig(device_index={index}) disagree; pass one"
            )
        self._device_index = index if index is not None else (request.ordinal if request else 0)
        self._mem: CudaMemory | None = None
        self._state: _Engine | None = None
        self._precision = ""
        self._device = ""
        self._lock = threading.Lock()

    # -- properties ------------------------------------------------------------------

    @property
    def precision(self) -> str:
        """``"fp32"``, ``"fp16"``, ``"int8"`` or ``"strongly-typed (int8+fp16)"`` and the like."""
        self.load()
        return self._precision

    @property
    def device(self) -> str:
        """The GPU's name and compute capability, e.g. ``"NVIDIA Orin (sm_87)"``."""
        self.load()
        return self._device

    # -- loading -----------------------------------------------------------------------

    def _load(self) -> None:
        version = _import_tensorrt()
        summary = read_onnx_summary(self.model_path)
        plan = _TrtCompat.parse(version).plan(GraphPrecision.of(summary), self.config.fp16)
        shapes = profile_shapes(summary.inputs, self.config)
        mem = get_cuda_memory(self.config.cuda_api, self._device_index)
        state: _Engine | None = None
        try:
            with mem.activate():
                state = self._open_engine(version, summary, plan, shapes, mem)
            self._inputs, self._outputs = self._specs(state, summary)
        except BaseException:
            if state is not None:
                state.release(mem)
            mem.close()
            raise
        self._state, self._mem = state, mem
        major, minor = mem.compute_capability()
        self._device = f"{mem.device_name()} (sm_{major}{minor})"
        self._precision = plan.precision
        logger.info(
            "TensorRT %s engine for %s on %s: %s, profile %s",
            version,
            self.model_path.name,
            self._device,
            plan.precision,
            _profile_text(shapes) or "static",
        )

    def _cache_key(
        self,
        version: str,
        plan: BuildPlan,
        shapes: Mapping[str, ProfileShape],
        mem: CudaMemory,
    ) -> CacheKey:
        major, minor = mem.compute_capability()
        flags = [n for n, on in (("fp16", plan.fp16_flag), ("int8", plan.int8_flag)) if on]
        precision = plan.precision + (f" flags={'+'.join(flags)}" if flags else "")
        level = self.config.builder_optimization_level
        workspace = self.config.workspace_bytes
        profile = (
            f"{_profile_text(shapes) or 'static'}"
            f";opt_level={'default' if level is None else level}"
            f";workspace={'default' if workspace is None else workspace}"
        )
        return EngineCache.key(
            self.model_path,
            precision=precision,
            backend=self.name,
            backend_version=version,
            device=mem.device_name(),
            compute_capability=f"{major}.{minor}",
            profile=profile,
        )

    def _open_engine(
        self,
        version: str,
        summary: OnnxSummary,
        plan: BuildPlan,
        shapes: Mapping[str, ProfileShape],
        mem: CudaMemory,
    ) -> _Engine:
        import tensorrt as trt

        runtime = trt.Runtime(_trt_logger())
        cache: EngineCache | None = None
        key: CacheKey | None = None
        if self.config.use_cache:
            cache = EngineCache(self.config.cache_dir)
            key = self._cache_key(version, plan, shapes, mem)
            data = cache.get(key)
            if data is not None:
                engine = self._deserialize(runtime, data, summary)
                if engine is not None:
                    logger.debug("TensorRT engine for %s read from %s", self.model_path, cache)
                    return self._prepare(runtime, engine, mem)
                cache.invalidate(key, "TensorRT could not deserialize it" + _ERRORS.take())
        logger.info(
            "building the TensorRT engine for %s (%s); this takes minutes once, then it is cached",
            self.model_path.name,
            plan.precision,
        )
        data = _build_serialized(self.model_path, plan, shapes, self.config)
        engine = self._deserialize(runtime, data, summary)
        if engine is None:
            raise BackendError(
                f"{self.model_path.name}: TensorRT built an engine it cannot load" + _ERRORS.take()
            )
        # Stored only once it has deserialized: a half-built or unloadable engine never lands.
        if cache is not None and key is not None:
            try:
                cache.put(key, data)
            except EngineCacheError as e:  # the engine works; only the next load pays again
                logger.warning("TensorRT engine not cached: %s", e)
        return self._prepare(runtime, engine, mem)

    def _deserialize(
        self, runtime: trt.Runtime, data: bytes, summary: OnnxSummary
    ) -> trt.ICudaEngine | None:
        """The engine, or None when the bytes are not a usable engine for this graph."""
        try:
            engine = runtime.deserialize_cuda_engine(data)
        except Exception as e:  # pybind11 surfaces TensorRT's failures as assorted errors
            logger.warning("TensorRT failed to deserialize an engine: %s", e)
            return None
        if engine is None:
            return None
        names = {engine.get_tensor_name(i) for i in range(engine.num_io_tensors)}
        expected = {v.name for v in (*summary.inputs, *summary.outputs)}
        if names != expected:
            logger.warning(
                "engine tensors %s do not match the graph's %s", sorted(names), sorted(expected)
            )
            return None
        return engine

    def _prepare(self, runtime: trt.Runtime, engine: trt.ICudaEngine, mem: CudaMemory) -> _Engine:
        import tensorrt as trt

        context = engine.create_execution_context()
        if context is None:
            raise BackendError(
                f"{self.model_path.name}: TensorRT could not create an execution context "
                "(out of GPU memory?)" + _ERRORS.take()
            )
        inputs: list[str] = []
        outputs: list[str] = []
        dtypes: dict[str, np.dtype] = {}
        limits: dict[str, tuple[tuple[int, ...], tuple[int, ...]]] = {}
        for i in range(engine.num_io_tensors):
            name = engine.get_tensor_name(i)
            dtypes[name] = _numpy_dtype(engine.get_tensor_dtype(name), name)
            if engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT:
                inputs.append(name)
                if any(d < 0 for d in _dims(engine.get_tensor_shape(name))):
                    # [min, opt, max] of profile 0, the only one samedge builds.
                    low, _, high = engine.get_tensor_profile_shape(name, 0)
                    limits[name] = (_dims(low), _dims(high))
            else:
                outputs.append(name)
        return _Engine(
            runtime=runtime,
            engine=engine,
            context=context,
            stream=mem.create_stream(),
            inputs=tuple(inputs),
            outputs=tuple(outputs),
            dtypes=dtypes,
            limits=limits,
        )

    def _specs(
        self, state: _Engine, summary: OnnxSummary
    ) -> tuple[tuple[TensorSpec, ...], tuple[TensorSpec, ...]]:
        """Specs from the engine's dtypes and the graph's declared (symbolic) shapes."""

        def spec(name: str) -> TensorSpec:
            # _deserialize checked that the engine's tensors are the graph's.
            declared = summary.dims(name) or ()
            return TensorSpec(name=name, dtype=state.dtypes[name], shape=declared)

        return tuple(spec(n) for n in state.inputs), tuple(spec(n) for n in state.outputs)

    # -- running -------------------------------------------------------------------------

    @staticmethod
    def _check_limits(
        limits: Mapping[str, tuple[tuple[int, ...], tuple[int, ...]]],
        feeds: Mapping[str, np.ndarray],
    ) -> None:
        """Raise :class:`ProfileLimitError` when a feed falls outside the engine's profile."""
        for name, (low, high) in limits.items():
            for axis, (size, lo, hi) in enumerate(zip(feeds[name].shape, low, high, strict=True)):
                if lo <= size <= hi:
                    continue
                what, option = _AXIS_ROLES.get(axis, (f"size on axis {axis}", ""))
                if size < lo:
                    raise ProfileLimitError(
                        f"{name}: got {size} {what} (axis {axis}), the engine needs at least {lo}"
                    )
                hint = f"; raise it with TensorRTConfig({option}={size})" if option else ""
                note = f" ({_LIMIT_HINT})" if what == "points" else ""
                raise ProfileLimitError(
                    f"{name}: got {size} {what} (axis {axis}), but this TensorRT engine was "
                    f"built for at most {hi}{note}{hint}; the larger engine is built once "
                    "and cached"
                )

    @staticmethod
    def _buffer(state: _Engine, mem: CudaMemory, name: str, nbytes: int) -> _IOBuffer:
        """The tensor's buffers, reallocated when a larger batch needs more room."""
        buf = state.buffers.get(name)
        if buf is not None and buf.capacity >= nbytes:
            return buf
        if buf is not None:
            # Nothing is in flight: every infer() ends with a stream synchronize.
            mem.free_host(buf.host)
            mem.free_device(buf.device)
        buf = _IOBuffer(host=mem.alloc_host(nbytes), device=mem.alloc_device(nbytes))
        state.buffers[name] = buf
        return buf

    def _infer(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        state, mem = self._state, self._mem
        if state is None or mem is None:
            raise BackendError("TensorRT backend used after close(); call load() again")
        self._check_limits(state.limits, feeds)
        context = state.context
        with self._lock, mem.activate():
            for name in state.inputs:
                array = feeds[name]
                if not context.set_input_shape(name, tuple(int(d) for d in array.shape)):
                    raise BackendError(
                        f"{name}: TensorRT rejected shape {tuple(array.shape)}" + _ERRORS.take()
                    )
                buf = self._buffer(state, mem, name, array.nbytes)
                staging = buf.host[: array.nbytes]
                # Page-locked staging makes the host->device copy truly asynchronous.
                np.copyto(staging.view(array.dtype).reshape(array.shape), array)
                mem.memcpy_htod_async(buf.device, staging, state.stream)
                context.set_tensor_address(name, buf.device)
            shapes: dict[str, tuple[int, ...]] = {}
            for name in state.outputs:
                # Known once every input shape is set (SAM has no data-dependent shapes).
                shape = _dims(context.get_tensor_shape(name))
                if any(d < 0 for d in shape):
                    raise BackendError(f"{name}: TensorRT cannot tell the output shape {shape}")
                shapes[name] = shape
                nbytes = math.prod(shape) * state.dtypes[name].itemsize
                context.set_tensor_address(name, self._buffer(state, mem, name, nbytes).device)
            if not context.execute_async_v3(state.stream):
                raise BackendError(
                    f"{self.model_path.name}: TensorRT execution failed" + _ERRORS.take()
                )
            views: dict[str, np.ndarray] = {}
            for name in state.outputs:
                buf = state.buffers[name]
                nbytes = math.prod(shapes[name]) * state.dtypes[name].itemsize
                views[name] = buf.host[:nbytes]
                mem.memcpy_dtoh_async(views[name], buf.device, state.stream)
            mem.synchronize(state.stream)
            # Copies: the staging buffers are overwritten by the next call.
            return {
                name: view.view(state.dtypes[name]).reshape(shapes[name]).copy()
                for name, view in views.items()
            }

    # -- closing ------------------------------------------------------------------------

    def _close(self) -> None:
        state, mem = self._state, self._mem
        self._state = self._mem = None
        if mem is None:
            return
        try:
            if state is not None:
                state.release(mem)
        finally:
            mem.close()
