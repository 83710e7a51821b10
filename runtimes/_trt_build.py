"""Driving TensorRT: import, logger, ONNX parsing and the engine build.

The half of the TensorRT backend (:mod:`samedge.runtimes.trt`) that calls
TensorRT's builder: it turns a :class:`~samedge.runtimes._trt_plan.BuildPlan`
and an optimisation profile into a serialized engine, with the version-specific
details the plan decided (precision flags, FP32 layers pinned on 8.x), the
builder's workspace cap and its timing cache. Type-checked against NVIDIA's
stubs with the rest of the backend (tests/runtimes/test_trt_types.py).
"""

from __future__ import annotations

import collections
import logging
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from samedge._io import atomic_write_bytes
from samedge.errors import BackendError, BackendUnavailableError
from samedge.runtimes._trt_plan import _INSTALL_HINT, BuildPlan, ProfileShape, _TrtCompat

if TYPE_CHECKING:  # type names only; TensorRT is imported lazily at run time
    import tensorrt as trt

    from samedge.runtimes.trt import TensorRTConfig

# Named ``samedge.runtimes.trt`` so that the backend's records keep one logger
# name however its code is split between modules.
logger = logging.getLogger("samedge.runtimes.trt")

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


def _pin_fp32_layers(network: trt.INetworkDefinition) -> int:
    """Constrain every layer whose parsed output is FP32 to compute and output FP32.

    Used on TensorRT 8.x with ``OBEY_PRECISION_CONSTRAINTS`` for graphs that carry FP16,
    so the islands samedge's FP16 step kept in FP32 stay there. Q/DQ layers and the
    layers that read a DequantizeLayer's output are left alone: explicit quantization
    decides their precision. Returns how many layers were pinned.
    """
    import tensorrt as trt

    float32 = trt.DataType.FLOAT
    quantizers = (trt.LayerType.QUANTIZE, trt.LayerType.DEQUANTIZE)
    layers = [network.get_layer(i) for i in range(network.num_layers)]
    dequantized = {
        layer.get_output(j).name
        for layer in layers
        if layer.type == trt.LayerType.DEQUANTIZE
        for j in range(layer.num_outputs)
    }
    pinned = 0
    for layer in layers:
        if layer.type in quantizers:
            continue
        inputs = (layer.get_input(j) for j in range(layer.num_inputs))
        if any(t is not None and t.name in dequantized for t in inputs):
            continue
        fp32_outputs = [j for j in range(layer.num_outputs) if layer.get_output(j).dtype == float32]
        if not fp32_outputs:
            continue
        layer.precision = float32
        for j in fp32_outputs:
            layer.set_output_type(j, float32)
        pinned += 1
    return pinned


def _attach_timing_cache(
    build_config: trt.IBuilderConfig, path: Path | None
) -> trt.ITimingCache | None:
    """Give the builder the timing cache stored at ``path`` (or a fresh one); None without a path.

    A cache TensorRT refuses (another TensorRT build or GPU, a damaged file) is replaced by
    a fresh one: it only ever makes builds faster, never changes what they produce.
    """
    if path is None:
        return None
    data = b""
    if path.is_file():
        try:
            data = path.read_bytes()
        except OSError as e:
            logger.warning("TensorRT timing cache %s unreadable (%s); starting afresh", path, e)
    try:
        cache = build_config.create_timing_cache(data)
        # ignore_mismatch=False: the file is per GPU already; another GPU's cache is refused.
        if cache is not None and build_config.set_timing_cache(cache, False):
            return cache
    except Exception as e:  # pybind11 surfaces TensorRT's refusals as assorted errors
        logger.info("TensorRT refused the timing cache %s (%s); starting afresh", path, e)
    if data:
        logger.info("TensorRT timing cache %s does not fit this build; starting afresh", path)
    cache = build_config.create_timing_cache(b"")
    build_config.set_timing_cache(cache, False)
    return cache


def _store_timing_cache(cache: trt.ITimingCache | None, path: Path | None) -> None:
    if cache is None or path is None:
        return
    try:
        atomic_write_bytes(path, bytes(cache.serialize()))
    except OSError as e:  # the engine is built; only the next build's tuning is lost
        logger.warning("TensorRT timing cache not saved to %s: %s", path, e)


def _build_serialized(
    onnx_path: Path,
    plan: BuildPlan,
    shapes: Mapping[str, ProfileShape],
    config: TensorRTConfig,
    *,
    workspace: int | None = None,
    timing_cache: Path | None = None,
) -> bytes:
    """Parse the ONNX, build it with ``plan`` and ``shapes``, and return the serialized engine.

    Args:
        onnx_path: The graph.
        plan: Network-creation and builder flags.
        shapes: The optimisation profile.
        config: Optimisation level.
        workspace: Cap on the builder's scratch memory; None = TensorRT's default.
        timing_cache: File the builder's timing cache is read from and saved to.

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
    if workspace is not None:
        build_config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace)
    if config.builder_optimization_level is not None:
        build_config.builder_optimization_level = config.builder_optimization_level
    if plan.fp16_flag:
        build_config.set_flag(trt.BuilderFlag.FP16)
    if plan.int8_flag:
        build_config.set_flag(trt.BuilderFlag.INT8)
    if plan.obey_precision:
        build_config.set_flag(trt.BuilderFlag.OBEY_PRECISION_CONSTRAINTS)
        pinned = _pin_fp32_layers(network)
        logger.info("TensorRT: %d layers the graph keeps in FP32 pinned to FP32", pinned)
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
    cache = _attach_timing_cache(build_config, timing_cache)
    serialized = builder.build_serialized_network(network, build_config)
    if serialized is None:
        raise BackendError(f"{onnx_path.name}: TensorRT could not build an engine" + _ERRORS.take())
    _store_timing_cache(cache, timing_cache)
    return bytes(serialized)
