"""TensorRT backend: ONNX -> engine (cached) -> named-tensor execution on a CUDA stream.

Supported: TensorRT 8.6 (JetPack 6.0), 10.x (JetPack 6.1 and 6.2 ship 10.3; JetPack 7;
x86-64 and SBSA wheels) and 11.x (11.4.1 supports JetPack 7.2.2+ on Orin and Thor).
Every difference between them lives in :class:`_TrtCompat`
(:mod:`samedge.runtimes._trt_plan`, with the graph's precision and the
optimisation profile), each branch citing the NVIDIA page it follows; the
build itself is :mod:`samedge.runtimes._trt_build`. Everything else uses calls
that are the same from
8.6 to 11 (``OnnxParser.parse_from_file``, ``build_serialized_network``,
``deserialize_cuda_engine`` and the named-tensor API: ``set_input_shape``,
``set_tensor_address``, ``execute_async_v3``).

Precision. An FP16 or INT8 model is an ONNX graph that *carries* its precision
(FP16 initializers, or QuantizeLinear/DequantizeLinear pairs; DESIGN.md). Every
build on 10.x/11.x is strongly typed, as 11.x requires (it removed the FP16/INT8
builder flags and implicit calibration) and 10.12 recommends (it deprecated weak
typing), except one: ``fp16=True`` on an FP32 graph adds the FP16 builder flag on
the versions that still have it (with a warning: LayerNorm may then overflow).
TensorRT 8.6 has no strong typing; it builds an FP16 graph with the FP16 flag and
``OBEY_PRECISION_CONSTRAINTS``, every layer the graph keeps in FP32 pinned to FP32,
and refuses graphs above opset 17, the newest its ONNX parser reads.

Build and memory. The builder's timing cache is kept beside the engine cache
(``<cache>/tensorrt/``), so a rebuild (another profile, another model on the same
GPU) reuses measured tactics. On an integrated GPU (Jetson), whose memory the CPU
shares, the builder's workspace is capped at a quarter of it unless
``workspace_bytes`` says otherwise. I/O buffers are allocated once, at the
profile's maximum, and the stream is non-blocking; :meth:`TensorRTBackend.close`
waits for a running :meth:`~TensorRTBackend.infer` to finish.

Optimisation profile. The decoder's dynamic axes get one profile: axis 0 is
the number of objects B (``1..max_objects``), axis 1 the number of prompt
points per object N (``1..max_points``). N counts what the decoder receives,
not clicks: each click is one point, a box adds its two corners, and an object
without a box gets one padding point, as SAM's prompt encoder pads; objects in
one call are padded to the longest. So ``max_points=10`` allows 9 clicks
without a box, or 8 clicks with a box. The encoder is static and needs no
profile.

Verification: this module, ``_trt_plan`` and ``_trt_build`` are type-checked
against NVIDIA's 10.13 API (``tensorrt-stubs``) by tests/runtimes/test_trt_types.py,
and each version branch follows the documentation page it cites; the tests marked
``tensorrt`` run the backend for real on a machine with TensorRT and a GPU, and
``benchmarks/gpu_check.py`` drives it over real CUDA memory without TensorRT.
None of this has run on NVIDIA hardware yet (README, "TensorRT: what is verified").

Example:
    >>> from samedge.runtimes.trt import TensorRTBackend, TensorRTConfig   # doctest: +SKIP
    >>> cfg = TensorRTConfig(max_objects=32, max_points=6)
    >>> with TensorRTBackend("model/decoder.onnx", cfg) as backend:
    ...     out = backend.infer(feeds)
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import re
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

import numpy as np

from samedge.errors import (
    BackendError,
    DeviceUnavailableError,
    EngineCacheError,
    InputError,
    ProfileLimitError,
)
from samedge.runtimes._graph import OnnxSummary, read_onnx_summary
from samedge.runtimes._hw import parse_device
from samedge.runtimes._trt_build import (
    _ERRORS,
    _build_serialized,
    _dims,
    _import_tensorrt,
    _numpy_dtype,
    _trt_logger,
)

# The planning half (precision, version differences, profile) is its own module;
# its public names are re-exported here, where users have always imported them.
from samedge.runtimes._trt_plan import (
    MEMORY_LIMIT_HINT,
    BuildPlan,
    GraphPrecision,
    ProfileShape,
    _profile_text,
    _TrtCompat,
    axis_role,
    memory_dims,
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

# An integrated GPU's builder workspace: this share of the memory the CPU also uses.
_INTEGRATED_WORKSPACE_SHARE = 4

_LIMIT_HINT = (
    "N counts each click, 2 corners per box, and 1 padding point for an object without a box"
)

# What the profile-limit error adds, by what the axis counts.
_LIMIT_NOTES = {
    "points": _LIMIT_HINT,
    "memory frames": MEMORY_LIMIT_HINT,
    "object pointers": MEMORY_LIMIT_HINT,
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
            default (the device's memory) on a discrete GPU, a quarter of the memory
            on an integrated one (Jetson), which the CPU shares.
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


def _model_name(summary: OnnxSummary) -> str | None:
    """The model name samedge wrote into the graph's metadata (listed by ``samedge cache``)."""
    raw = summary.metadata.get("samedge.model")
    if raw is None:
        return None
    try:
        name = json.loads(raw)
    except ValueError:
        return raw
    return name if isinstance(name, str) else None


def _check_int(name: str, value: object, low: int, high: int | None = None) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InputError(f"{name}: got {value!r}, expected an integer")
    if value < low or (high is not None and value > high):
        bound = f"{low}..{high}" if high is not None else f">= {low}"
        raise InputError(f"{name}: got {value}, expected {bound}")


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
            # A call that failed halfway may have left copies queued on the stream.
            with contextlib.suppress(BackendError):
                mem.synchronize(self.stream)
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
    engine has one execution context and one set of I/O buffers, allocated
    once at the profile's maximum. :meth:`close` from another thread waits for
    a running :meth:`infer` to finish; later calls raise :class:`BackendError`.

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
        # The engine-cache entry the loaded engine came from (or went into).
        self._cached: tuple[EngineCache, CacheKey] | None = None
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
        compat = _TrtCompat.parse(version)
        compat.check_opset(summary.opsets, self.model_path.name)
        plan = compat.plan(GraphPrecision.of(summary), self.config.fp16)
        shapes = profile_shapes(summary.inputs, self.config, memory_dims(summary.metadata))
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

    def _workspace(self, mem: CudaMemory) -> int | None:
        """The builder's workspace cap: the config's, else a quarter of an integrated GPU's memory.

        TensorRT's default is the device's whole memory; on a Jetson that memory is
        the system's RAM too, and a build that claims it starves everything else.
        """
        if self.config.workspace_bytes is not None:
            return self.config.workspace_bytes
        if mem.is_integrated():
            return max(mem.total_memory() // _INTEGRATED_WORKSPACE_SHARE, 1)
        return None

    def _cache_key(
        self,
        version: str,
        plan: BuildPlan,
        shapes: Mapping[str, ProfileShape],
        mem: CudaMemory,
    ) -> CacheKey:
        major, minor = mem.compute_capability()
        flags = [
            n
            for n, on in (
                ("fp16", plan.fp16_flag),
                ("int8", plan.int8_flag),
                ("obey", plan.obey_precision),
            )
            if on
        ]
        precision = plan.precision + (f" flags={'+'.join(flags)}" if flags else "")
        if plan.strongly_typed:
            precision += " strongly-typed"
        level = self.config.builder_optimization_level
        workspace = self._workspace(mem)
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
            self._cached = (cache, key)
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
        data = _build_serialized(
            self.model_path,
            plan,
            shapes,
            self.config,
            workspace=self._workspace(mem),
            timing_cache=self._timing_cache_path(cache, version, mem),
        )
        engine = self._deserialize(runtime, data, summary)
        if engine is None:
            raise BackendError(
                f"{self.model_path.name}: TensorRT built an engine it cannot load" + _ERRORS.take()
            )
        # Stored only once it has deserialized: a half-built or unloadable engine never lands.
        if cache is not None and key is not None:
            try:
                cache.put(key, data, model=_model_name(summary))
            except EngineCacheError as e:  # the engine works; only the next load pays again
                logger.warning("TensorRT engine not cached: %s", e)
        return self._prepare(runtime, engine, mem)

    @property
    def cache_path(self) -> Path | None:
        """The cached engine this graph was loaded from or stored as; ``None`` without cache."""
        if self._cached is None:
            return None
        cache, key = self._cached
        return cache.path(key)

    def drop_cache(self) -> Path | None:
        """Remove this graph's cached engine (the next load rebuilds it); the file removed."""
        path = self.cache_path
        if self._cached is None or path is None or not path.exists():
            return None
        cache, key = self._cached
        cache.invalidate(key, "it produced non-finite outputs")
        return path

    @staticmethod
    def _timing_cache_path(cache: EngineCache | None, version: str, mem: CudaMemory) -> Path | None:
        """The builder's timing cache file: beside the engines, one per TensorRT and GPU.

        None when the engine cache is off (``use_cache=False``) or cannot be created.
        """
        if cache is None:
            return None
        try:
            folder = cache.subdir("tensorrt")
        except EngineCacheError as e:
            logger.warning("TensorRT timing cache not kept: %s", e)
            return None
        major, minor = mem.compute_capability()
        device = re.sub(r"[^A-Za-z0-9]+", "-", mem.device_name()).strip("-") or "gpu"
        return folder / f"timing-{version}-sm{major}{minor}-{device}.cache"

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
        state = _Engine(
            runtime=runtime,
            engine=engine,
            context=context,
            stream=mem.create_stream(),
            inputs=tuple(inputs),
            outputs=tuple(outputs),
            dtypes=dtypes,
            limits=limits,
        )
        self._allocate_at_max(state, mem)
        return state

    def _allocate_at_max(self, state: _Engine, mem: CudaMemory) -> None:
        """Allocate every I/O buffer once, at the profile's largest shapes.

        A buffer that grows frees and reallocates, and ``cudaFree`` synchronizes the
        whole device; NVIDIA's samples allocate at the profile's maximum instead
        (``samples/python/common_runtime.py``, ``allocate_buffers``). Output sizes at
        the maximum come from the context once every input is set to its maximum.
        """
        context = state.context
        for name in state.inputs:
            shape = state.limits[name][1] if name in state.limits else None
            if shape is None:
                shape = _dims(state.engine.get_tensor_shape(name))
            elif not context.set_input_shape(name, shape):
                raise BackendError(
                    f"{name}: TensorRT rejected the profile's maximum shape {shape}"
                    + _ERRORS.take()
                )
            self._buffer(state, mem, name, math.prod(shape) * state.dtypes[name].itemsize)
        for name in state.outputs:
            shape = _dims(context.get_tensor_shape(name))
            if any(d < 0 for d in shape):
                raise BackendError(f"{name}: TensorRT cannot tell the output shape {shape}")
            self._buffer(state, mem, name, math.prod(shape) * state.dtypes[name].itemsize)

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
                what, option = axis_role(name, axis)
                if size < lo:
                    raise ProfileLimitError(
                        f"{name}: got {size} {what} (axis {axis}), the engine needs at least {lo}"
                    )
                hint = (
                    f"; raise it with TensorRTConfig({option}={size}); the larger engine is "
                    "built once and cached"
                    if option
                    else ""
                )
                note = f" ({_LIMIT_NOTES[what]})" if what in _LIMIT_NOTES else ""
                raise ProfileLimitError(
                    f"{name}: got {size} {what} (axis {axis}), but this TensorRT engine was "
                    f"built for at most {hi}{note}{hint}"
                )

    @staticmethod
    def _buffer(state: _Engine, mem: CudaMemory, name: str, nbytes: int) -> _IOBuffer:
        """The tensor's buffers (allocated at load at the profile's maximum).

        A graph whose output at some shape exceeds its size at the maximum (no SAM
        graph does) still gets room: the buffer is reallocated, once, with a warning.
        """
        buf = state.buffers.get(name)
        if buf is not None and buf.capacity >= nbytes:
            return buf
        if buf is not None:
            logger.warning(
                "%s: %d bytes needed, more than at the profile's maximum (%d); reallocating",
                name,
                nbytes,
                buf.capacity,
            )
            # Nothing is in flight: every infer() ends with a stream synchronize.
            mem.free_host(buf.host)
            mem.free_device(buf.device)
        buf = _IOBuffer(host=mem.alloc_host(nbytes), device=mem.alloc_device(nbytes))
        state.buffers[name] = buf
        return buf

    def _infer(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        # The state is read under the lock close() takes: a close() from another thread
        # either waits for this call to finish or has already emptied the state.
        with self._lock:
            state, mem = self._state, self._mem
            if state is None or mem is None:
                raise BackendError(
                    f"{self.model_path.name}: TensorRT backend used after close(); "
                    "call load() again"
                )
            self._check_limits(state.limits, feeds)
            return self._run(state, mem, feeds)

    def _run(
        self, state: _Engine, mem: CudaMemory, feeds: Mapping[str, np.ndarray]
    ) -> dict[str, np.ndarray]:
        """One execution; the caller holds ``self._lock``."""
        context = state.context
        with mem.activate():
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
        # Under the infer() lock: buffers and the stream must not go while
        # execute_async_v3 or a copy still uses them.
        with self._lock:
            state, mem = self._state, self._mem
            self._state = self._mem = None
            if mem is None:
                return
            try:
                if state is not None:
                    state.release(mem)
            finally:
                mem.close()
