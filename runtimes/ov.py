"""OpenVINO backend (``pip install samedge[openvino]``): Intel CPUs, iGPUs and NPUs.

OpenVINO reads the ONNX file directly and compiles it for one device. On a CPU
with native bf16 (AMX on Xeon 4th gen and later, AVX-512 BF16) its CPU plugin
computes in bf16 unless told otherwise; that is several times faster than
fp32 for SAM's ViT encoders, so it is left as the default and the precision
actually used is read back from the compiled model (:attr:`OpenVinoBackend.precision`).
Pass ``OpenVinoConfig(inference_precision=InferencePrecision.FP32)`` for
bit-faithful fp32.

Compiled blobs are cached by OpenVINO itself (its ``CACHE_DIR`` property), in
a directory of their own for each graph and configuration:
``<cache root>/openvino/<key>/``, the key made of the graph's content hash,
the device (and CPU model), the performance hint, the inference precision,
the thread count and the OpenVINO version. OpenVINO's own keying was not
enough: with one shared directory, a model compiled at fp32 and then with the
default bf16 in one process got a blob that returned NaN (OpenVINO 2026.4.1,
Xeon with AMX) and kept it for every later process. One directory per
configuration keeps them apart, and :meth:`OpenVinoBackend.drop_cache` can
remove exactly the entry that misbehaved. Each directory holds
``samedge-entry.json`` saying what it is for (``samedge cache list``).

Example:
    >>> from samedge.runtimes import OpenVinoBackend, OpenVinoConfig   # doctest: +SKIP
    >>> with OpenVinoBackend("model/encoder.onnx", OpenVinoConfig(num_threads=2)) as b:
    ...     print(b.device, b.precision)
    CPU bf16
"""

from __future__ import annotations

import enum
import functools
import hashlib
import json
import logging
import os
import shutil
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from samedge._io import atomic_write_text
from samedge._signals import import_module
from samedge.errors import (
    BackendError,
    BackendUnavailableError,
    DeviceUnavailableError,
    InputError,
)
from samedge.runtimes._graph import read_onnx_summary, unnamed_dim
from samedge.runtimes._hw import cpu_info, parse_device
from samedge.runtimes.base import Backend, Dim, TensorSpec
from samedge.runtimes.cache import OV_ENTRY_NAME, EngineCache

log = logging.getLogger(__name__)

__all__ = [
    "InferencePrecision",
    "OpenVinoBackend",
    "OpenVinoConfig",
    "OvDevice",
    "PerformanceHint",
    "import_openvino",
]

OPENVINO_EXTRA = "pip install samedge[openvino]"


class OvDevice(enum.Enum):
    """OpenVINO device plugins samedge drives."""

    CPU = "CPU"
    GPU = "GPU"
    NPU = "NPU"
    AUTO = "AUTO"


class PerformanceHint(enum.Enum):
    """OpenVINO's high-level performance hint."""

    LATENCY = "LATENCY"
    THROUGHPUT = "THROUGHPUT"


class InferencePrecision(enum.Enum):
    """Precision OpenVINO computes floating-point layers in."""

    FP32 = "f32"
    FP16 = "f16"
    BF16 = "bf16"


# OpenVINO element-type names -> samedge's precision words.
_PRECISION_WORDS = {"f32": "fp32", "f16": "fp16", "bf16": "bf16"}


@dataclass(frozen=True)
class OpenVinoConfig:
    """Settings of the OpenVINO backend; ``None`` means "OpenVINO's default".

    Attributes:
        device: Device plugin; ``None`` means the ``device`` argument of the
            backend, else CPU. AUTO lets OpenVINO pick (and start on CPU while a
            GPU compiles).
        performance_hint: LATENCY for one frame at a time (the real-time case),
            THROUGHPUT for batches of requests.
        inference_precision: ``None`` keeps the device's default (bf16 on CPUs
            with native bf16, f16 on GPUs); the precision used is reported by
            :attr:`OpenVinoBackend.precision`.
        num_threads: CPU inference threads (CPU device only).
        cache_dir: Where OpenVINO keeps compiled blobs, one subdirectory per
            graph and configuration; ``None`` means ``<samedge cache root>/openvino``.
        use_cache: Turn compiled-blob caching off entirely.
    """

    device: OvDevice | None = None
    performance_hint: PerformanceHint = PerformanceHint.LATENCY
    inference_precision: InferencePrecision | None = None
    num_threads: int | None = None
    cache_dir: str | os.PathLike[str] | None = None
    use_cache: bool = True

    def __post_init__(self) -> None:
        if self.device is not None and not isinstance(self.device, OvDevice):
            raise InputError(
                f"device: got {self.device!r}, expected an OvDevice "
                f"({', '.join(d.name for d in OvDevice)}) or None"
            )
        if not isinstance(self.performance_hint, PerformanceHint):
            raise InputError(
                f"performance_hint: got {self.performance_hint!r}, expected PerformanceHint."
                "LATENCY or PerformanceHint.THROUGHPUT"
            )
        if self.inference_precision is not None and not isinstance(
            self.inference_precision, InferencePrecision
        ):
            raise InputError(
                f"inference_precision: got {self.inference_precision!r}, expected an "
                f"InferencePrecision ({', '.join(p.name for p in InferencePrecision)}) or None"
            )
        if self.num_threads is not None:
            if (
                isinstance(self.num_threads, bool)
                or not isinstance(self.num_threads, int)
                or self.num_threads < 1
            ):
                raise InputError(
                    f"num_threads: got {self.num_threads!r}, expected an int >= 1 or None"
                )
            if self.device not in (None, OvDevice.CPU):
                raise InputError(
                    f"num_threads: applies to the CPU device only, got device {self.device.name}"
                )
        if self.cache_dir is not None and not isinstance(self.cache_dir, str | os.PathLike):
            raise InputError(f"cache_dir: got {self.cache_dir!r}, expected a path or None")
        if not isinstance(self.use_cache, bool):
            raise InputError(f"use_cache: got {self.use_cache!r}, expected True or False")


def import_openvino() -> Any:
    """Import ``openvino`` or raise :class:`BackendUnavailableError` naming the extra."""
    try:
        # A Ctrl-C inside the native import raises KeyboardInterrupt here, never
        # an ImportError that reads as "not installed".
        openvino = import_module("openvino")
    except ImportError as e:
        raise BackendUnavailableError(
            f"backend 'openvino' is not installed ({e}); install it with `{OPENVINO_EXTRA}`"
        ) from e
    return openvino


def _device_from_request(device: str | None) -> str | None:
    """samedge's device words -> an OpenVINO device name (``"gpu:1"`` -> ``"GPU.1"``)."""
    request = parse_device(device)
    if request is None:
        return None
    if request.kind == "cuda":
        raise DeviceUnavailableError(
            f"device {device!r}: OpenVINO does not run on CUDA GPUs; "
            "use backend='tensorrt' or 'onnxruntime'"
        )
    name = request.kind.upper()
    return name if request.index is None else f"{name}.{request.index}"


# x86 flags of an int8 dot-product unit that sums 8-bit weights' products in 32 bits.
_INT8_DOT_FLAGS = ("avx512_vnni", "avx_vnni", "amx_int8")


def _warn_saturating_int8(path: Path, metadata: Mapping[str, str]) -> None:
    """Warn once per graph when an INT8 build with 8-bit weights runs on a CPU without VNNI.

    There OpenVINO's int8 kernels sum pairs of u8×s8 products in 16 bits
    (``vpmaddubsw``), which saturates with 8-bit weights: masks go wrong without
    an error. samedge builds 7-bit weights unless ``--int8-full-range``; builds
    from before that option (no ``int8_full_range`` in their calibration) had 8.
    """
    try:
        calibration = json.loads(metadata.get("samedge.calibration", "null"))
    except ValueError:
        return
    if not isinstance(calibration, dict) or not calibration.get("int8_full_range", True):
        return
    cpu = cpu_info()
    if cpu.arch.lower() not in ("x86_64", "amd64") or str(path) in _WARNED_INT8:
        return
    if any(f in cpu.flags for f in _INT8_DOT_FLAGS):
        return
    _WARNED_INT8.add(str(path))
    log.warning(
        "%s is an INT8 build with 8-bit weights, and this CPU has no VNNI/AMX: OpenVINO's int8 "
        "kernels can saturate on it and give wrong masks. Rebuild it here without "
        "--int8-full-range (samedge build SRC --precision int8), or use the fp32 directory",
        path,
    )


_WARNED_INT8: set[str] = set()


@functools.lru_cache(maxsize=1)
def _shared_core() -> Any:
    """One ``ov.Core`` for the whole process.

    Why: with OpenVINO 2026.4, a process that created and released two Cores
    (an encoder and a decoder backend) segfaults on the next Python-handled
    signal, Ctrl-C included. Keeping one Core alive avoids it, and compile
    settings are passed per ``compile_model`` call, so nothing leaks between
    backends through it.
    """
    return import_openvino().Core()


class OpenVinoBackend(Backend):
    """A graph compiled by OpenVINO for one device.

    Args:
        model_path: The ``.onnx`` file.
        config: Device, hints, threads, cache; ``None`` for the defaults.
        device: ``"cpu"``, ``"gpu"``, ``"gpu:N"`` or ``"npu"``; must agree with
            ``config.device`` when both are given.

    Raises:
        InputError: the file is missing, or ``config``/``device`` are malformed or conflict.
        DeviceUnavailableError: ``device`` is a CUDA GPU.

    Example:
        >>> b = OpenVinoBackend("encoder.onnx", OpenVinoConfig(num_threads=2))  # doctest: +SKIP
        >>> b.load(); b.precision                                             # doctest: +SKIP
        'bf16'
    """

    name: ClassVar[str] = "openvino"
    config_class: ClassVar[type[Any] | None] = OpenVinoConfig

    def __init__(
        self,
        model_path: str | os.PathLike[str],
        config: OpenVinoConfig | None = None,
        *,
        device: str | None = None,
    ) -> None:
        super().__init__(model_path)
        if config is not None and not isinstance(config, OpenVinoConfig):
            raise InputError(
                f"config: got {type(config).__name__}, expected OpenVinoConfig or None"
            )
        self.config = config or OpenVinoConfig()
        requested = _device_from_request(device)
        configured = self.config.device.value if self.config.device is not None else None
        if requested is not None and configured is not None and requested != configured:
            raise InputError(
                f"device={device!r} and OpenVinoConfig.device={configured}: "
                "they disagree; pass one of them"
            )
        self._ov_device = requested or configured or OvDevice.CPU.value
        if self.config.num_threads is not None and self._ov_device != "CPU":
            raise InputError(
                f"num_threads: applies to the CPU device only, got device {self._ov_device}"
            )
        self._core: Any = None
        self._compiled: Any = None
        self._request: Any = None
        self._out_ports: dict[str, Any] = {}
        self._precision = "fp32"
        self._execution_device = ""
        self._cache_entry: Path | None = None

    def _compile_config(self, ov: Any) -> dict[Any, Any]:
        import openvino.properties as props
        import openvino.properties.hint as hints

        cfg: dict[Any, Any] = {
            hints.performance_mode: getattr(
                hints.PerformanceMode, self.config.performance_hint.value
            ),
        }
        if self.config.inference_precision is not None:
            cfg[hints.inference_precision] = getattr(ov.Type, self.config.inference_precision.value)
        if self.config.num_threads is not None:
            cfg[props.inference_num_threads] = self.config.num_threads
        if self.config.use_cache:
            cfg[props.cache_dir] = str(self._cache_entry_dir(ov))
        return cfg

    def _cache_key(self, ov: Any) -> dict[str, Any]:
        """Everything a compiled blob depends on (see the module notes)."""
        cpu = cpu_info()
        hint = self.config.inference_precision
        return {
            "format": 1,
            "onnx_sha256": self._cache_root().content_hash(self.model_path),
            "device": self._ov_device,
            "cpu": f"{cpu.vendor} {cpu.model}" if self._ov_device in ("CPU", "AUTO") else "",
            "performance_hint": self.config.performance_hint.value,
            "inference_precision": hint.value if hint is not None else "default",
            "num_threads": self.config.num_threads,
            "openvino": ov.get_version(),
        }

    def _cache_root(self) -> EngineCache:
        # A cache_dir of the user's own keeps its hash memo beside the blobs.
        if self.config.cache_dir is not None:
            return EngineCache(Path(self.config.cache_dir).expanduser())
        return EngineCache()

    def _cache_entry_dir(self, ov: Any) -> Path:
        """This graph and configuration's own CACHE_DIR (created, with its description)."""
        if self.config.cache_dir is not None:
            root = Path(self.config.cache_dir).expanduser()
            root.mkdir(parents=True, exist_ok=True)
        else:
            root = EngineCache().subdir("openvino")
        try:
            key = self._cache_key(ov)
        except InputError as e:  # not an ONNX file: say so as OpenVINO's load would
            raise BackendError(f"{self.name} could not load {self.model_path}: {e}") from e
        canonical = json.dumps(key, sort_keys=True, separators=(",", ":"))
        entry = root / hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:24]
        entry.mkdir(exist_ok=True)
        description = entry / OV_ENTRY_NAME
        if not description.is_file():
            metadata = read_onnx_summary(self.model_path).metadata
            try:
                model = json.loads(metadata.get("samedge.model", "null"))
            except ValueError:
                model = None
            info = {
                "backend": self.name,
                "model": model if isinstance(model, str) else self.model_path.parent.name,
                "graph": self.model_path.name,
                "onnx": str(self.model_path.resolve()),
                "created": time.time(),
                "key": key,
            }
            atomic_write_text(description, json.dumps(info, indent=2) + "\n")
        self._cache_entry = entry
        return entry

    def _load(self) -> None:
        ov = import_openvino()
        self._core = _shared_core()
        available = list(self._core.available_devices)
        family = self._ov_device.split(".")[0]
        if (
            self._ov_device != "AUTO"
            and self._ov_device not in available
            and not (self._ov_device == family and any(d.startswith(family) for d in available))
        ):
            raise DeviceUnavailableError(
                f"OpenVINO device {self._ov_device} is not present; this machine has "
                f"{', '.join(available) or 'none'}"
            )
        # Compiling from the path (not a read_model() result) lets a cache hit skip
        # reading and converting the ONNX altogether.
        self._compiled = self._core.compile_model(
            str(self.model_path), self._ov_device, self._compile_config(ov)
        )
        summary = read_onnx_summary(self.model_path)
        self._inputs = tuple(self._spec(port, summary.dims) for port in self._compiled.inputs)
        self._outputs = tuple(self._spec(port, summary.dims) for port in self._compiled.outputs)
        ports = self._compiled.outputs
        self._out_ports = {s.name: p for s, p in zip(self._outputs, ports, strict=True)}
        self._request = self._compiled.create_infer_request()
        self._execution_device = self._read_execution_device()
        self._precision = "int8" if summary.quantized else self._read_precision()
        if summary.quantized and self._execution_device.upper().startswith("CPU"):
            _warn_saturating_int8(self.model_path, summary.metadata)
        log.debug(
            "openvino compiled %s for %s (%s)",
            self.model_path.name,
            self._execution_device,
            self._precision,
        )

    def _spec(self, port: Any, declared: Any) -> TensorSpec:
        names = port.get_names()
        name = next((n for n in names if declared(n) is not None), port.get_any_name())
        onnx_dims = declared(name) or ()
        shape: list[Dim] = []
        for axis, dim in enumerate(port.get_partial_shape()):
            if dim.is_static:
                shape.append(dim.get_length())
            elif axis < len(onnx_dims) and isinstance(onnx_dims[axis], str):
                # OpenVINO drops ONNX's dim_param names; keep the graph's own ("B", "N").
                shape.append(onnx_dims[axis])
            else:
                shape.append(unnamed_dim(name, axis))
        try:
            dtype = np.dtype(port.get_element_type().to_dtype())
        except (TypeError, RuntimeError) as e:
            raise InputError(
                f"{self.model_path.name}: tensor {name} has OpenVINO type "
                f"{port.get_element_type()}, which numpy cannot hold"
            ) from e
        return TensorSpec(name=name, dtype=dtype, shape=tuple(shape))

    def _read_execution_device(self) -> str:
        try:
            devices = list(self._compiled.get_property("EXECUTION_DEVICES"))
        except RuntimeError:  # not every plugin reports it
            return self._ov_device
        return ",".join(str(d) for d in devices) or self._ov_device

    def _read_precision(self) -> str:
        """The floating-point precision the compiled model computes in."""
        try:
            hint = self._compiled.get_property("INFERENCE_PRECISION_HINT")
        except RuntimeError:
            # AUTO does not expose the hint; ask the device it actually runs on.
            first = self._execution_device.split(",")[0].strip("() ")
            try:
                hint = self._core.get_property(first, "INFERENCE_PRECISION_HINT")
            except RuntimeError:
                return "unknown"
        word = hint.get_type_name() if hasattr(hint, "get_type_name") else str(hint)
        return _PRECISION_WORDS.get(word, word)

    def _infer(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        if self._request is None:
            raise RuntimeError("model is not compiled")
        # share_inputs: the request reads the numpy buffers in place (this call is
        # synchronous, so they cannot change under it); share_outputs=False copies
        # the results out, since the next call overwrites the request's buffers.
        result = self._request.infer(
            {spec.name: feeds[spec.name] for spec in self._inputs},
            share_inputs=True,
            share_outputs=False,
        )
        return {name: np.asarray(result[port]) for name, port in self._out_ports.items()}

    def _close(self) -> None:
        self._request = None
        self._compiled = None
        self._core = None
        self._out_ports = {}

    @property
    def cache_path(self) -> Path | None:
        """This graph and configuration's compiled-blob directory; ``None`` without cache."""
        return self._cache_entry

    def drop_cache(self) -> Path | None:
        """Remove this graph and configuration's compiled blobs; the directory removed."""
        entry = self._cache_entry
        if entry is None or not (entry / OV_ENTRY_NAME).is_file():
            return None
        shutil.rmtree(entry, ignore_errors=True)
        log.warning("removed OpenVINO compiled-blob cache %s", entry)
        self._cache_entry = None
        return entry

    @property
    def device(self) -> str:
        """The OpenVINO device the model was compiled for (``"CPU"``, ``"GPU.0"``)."""
        return self._execution_device or self._ov_device

    @property
    def precision(self) -> str:
        """``"bf16"``, ``"fp16"`` or ``"fp32"`` as compiled; ``"int8"`` for a Q/DQ graph."""
        return self._precision
