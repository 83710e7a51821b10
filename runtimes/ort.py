"""ONNX Runtime backend (core dependency; runs everywhere).

Execution providers are tried in the order TensorRT EP, CUDA EP, OpenVINO EP,
CPU, keeping those this ONNX Runtime build has (``onnxruntime-gpu`` brings the
CUDA ones, ``onnxruntime-openvino`` the OpenVINO one) and, for the CUDA ones,
only when a CUDA GPU is actually present: a GPU build on a GPU-less machine
would otherwise fail over to CPU with a wall of warnings.

Example:
    >>> from samedge.runtimes import OrtBackend, OrtConfig          # doctest: +SKIP
    >>> with OrtBackend("model/encoder.onnx", OrtConfig(intra_op_threads=2)) as b:
    ...     emb = b.infer({"image": frame})["image_embeddings"]
"""

from __future__ import annotations

import enum
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from samedge.errors import DeviceUnavailableError, InputError
from samedge.runtimes._graph import read_onnx_summary, unnamed_dim
from samedge.runtimes._hw import DeviceRequest, cuda_devices, parse_device
from samedge.runtimes.base import Backend, TensorSpec
from samedge.runtimes.cache import EngineCache

if TYPE_CHECKING:
    import onnxruntime

log = logging.getLogger(__name__)

__all__ = ["PREFERRED_PROVIDERS", "GraphOptimization", "OrtBackend", "OrtConfig"]

TENSORRT_EP = "TensorrtExecutionProvider"
CUDA_EP = "CUDAExecutionProvider"
OPENVINO_EP = "OpenVINOExecutionProvider"
CPU_EP = "CPUExecutionProvider"
#: Providers in the order samedge prefers them when ``OrtConfig.providers`` is ``None``.
PREFERRED_PROVIDERS = (TENSORRT_EP, CUDA_EP, OPENVINO_EP, CPU_EP)
_CUDA_FAMILY = frozenset({TENSORRT_EP, CUDA_EP})
# Session config entry that stops the intra-op threads' busy-wait when a run
# returns; see OrtConfig.spin_after_run.
STOP_SPINNING_AFTER_RUN = ("session.force_spinning_stop", "1")

# ONNX Runtime's type strings for the dtypes SAM graphs use at their boundaries.
_ORT_TYPES: dict[str, np.dtype] = {
    "tensor(float)": np.dtype(np.float32),
    "tensor(float16)": np.dtype(np.float16),
    "tensor(double)": np.dtype(np.float64),
    "tensor(int64)": np.dtype(np.int64),
    "tensor(int32)": np.dtype(np.int32),
    "tensor(int16)": np.dtype(np.int16),
    "tensor(int8)": np.dtype(np.int8),
    "tensor(uint8)": np.dtype(np.uint8),
    "tensor(uint16)": np.dtype(np.uint16),
    "tensor(bool)": np.dtype(np.bool_),
}


class GraphOptimization(enum.Enum):
    """ONNX Runtime's graph optimisation level."""

    DISABLE = "disable"
    BASIC = "basic"
    EXTENDED = "extended"
    ALL = "all"


@dataclass(frozen=True)
class OrtConfig:
    """Settings of the ONNX Runtime backend; ``None`` means "ONNX Runtime's default".

    Attributes:
        providers: Execution providers in priority order, e.g.
            ``("CUDAExecutionProvider", "CPUExecutionProvider")``. ``None`` uses
            :data:`PREFERRED_PROVIDERS` filtered to those available here.
        intra_op_threads: Threads inside one operator (ONNX Runtime's default is
            one per physical core).
        graph_optimization: Graph optimisation level.
        io_binding: Run through IOBinding. ``None`` turns it on when the first
            provider is a CUDA one, where it saves copies (see :meth:`OrtBackend._infer`).
        spin_after_run: Let the intra-op threads keep busy-waiting after a run
            returns (ONNX Runtime's own default). samedge stops them
            (``session.force_spinning_stop``): a predictor runs an encoder and a
            decoder session one after the other, and the idle one's spinning
            threads would take the cores the other's run needs (on 2 cores, a
            MobileSAM decoder call right after the encoder took 56 ms instead
            of 28: benchmarks/results/amd-epyc-2c/ort_spinning.md). They
            still spin between the operators of one run. ``True`` suits a
            program that runs one session in a tight loop.
    """

    providers: tuple[str, ...] | None = None
    intra_op_threads: int | None = None
    graph_optimization: GraphOptimization = GraphOptimization.ALL
    io_binding: bool | None = None
    spin_after_run: bool = False

    def __post_init__(self) -> None:
        if self.providers is not None:
            if not isinstance(self.providers, tuple) or not self.providers:
                raise InputError(
                    f"providers: got {self.providers!r}, expected a non-empty tuple of "
                    "provider names such as ('CPUExecutionProvider',), or None"
                )
            for p in self.providers:
                if not isinstance(p, str) or not p.endswith("ExecutionProvider"):
                    raise InputError(
                        f"providers: got {p!r}, expected a name ending in 'ExecutionProvider'"
                    )
            if len(set(self.providers)) != len(self.providers):
                raise InputError(f"providers: got {self.providers!r}, which repeats a provider")
        if self.intra_op_threads is not None and (
            isinstance(self.intra_op_threads, bool)
            or not isinstance(self.intra_op_threads, int)
            or self.intra_op_threads < 1
        ):
            raise InputError(
                f"intra_op_threads: got {self.intra_op_threads!r}, expected an int >= 1 or None"
            )
        if not isinstance(self.graph_optimization, GraphOptimization):
            raise InputError(
                f"graph_optimization: got {self.graph_optimization!r}, expected a "
                f"GraphOptimization ({', '.join(m.name for m in GraphOptimization)})"
            )
        if self.io_binding is not None and not isinstance(self.io_binding, bool):
            raise InputError(f"io_binding: got {self.io_binding!r}, expected True, False or None")
        if not isinstance(self.spin_after_run, bool):
            raise InputError(f"spin_after_run: got {self.spin_after_run!r}, expected True or False")


def _import_onnxruntime() -> Any:
    from samedge._signals import import_module

    try:
        # A Ctrl-C inside the native import interrupts; it is never "not installed".
        onnxruntime = import_module("onnxruntime")
    except ImportError as e:  # a core dependency, but a broken install is possible
        from samedge.errors import BackendUnavailableError

        raise BackendUnavailableError(
            f"onnxruntime cannot be imported ({e}); reinstall it with `pip install samedge`"
        ) from e
    return onnxruntime


class OrtBackend(Backend):
    """A graph on ONNX Runtime.

    Args:
        model_path: The ``.onnx`` file.
        config: Providers, threads, optimisation level; ``None`` for the defaults.
        device: ``"cpu"`` (CPU provider only) or ``"cuda[:N]"`` / ``"gpu[:N]"``
            (TensorRT/CUDA providers on GPU ``N``); ``None`` lets the provider
            preference decide. Give ``device`` or ``config.providers``, not both.

    Raises:
        InputError: the file is missing, or ``config``/``device`` are malformed or conflict.

    Example:
        >>> b = OrtBackend("decoder.onnx", OrtConfig(intra_op_threads=2))  # doctest: +SKIP
        >>> [s.name for s in b.inputs]                                       # doctest: +SKIP
        ['image_embeddings', 'point_coords', 'point_labels', 'mask_input', 'has_mask_input']
    """

    name: ClassVar[str] = "onnxruntime"
    config_class: ClassVar[type[Any] | None] = OrtConfig

    def __init__(
        self,
        model_path: str | os.PathLike[str],
        config: OrtConfig | None = None,
        *,
        device: str | None = None,
    ) -> None:
        super().__init__(model_path)
        if config is not None and not isinstance(config, OrtConfig):
            raise InputError(f"config: got {type(config).__name__}, expected OrtConfig or None")
        self.config = config or OrtConfig()
        self._device_request = parse_device(device)
        if self._device_request is not None and self.config.providers is not None:
            raise InputError(
                f"device={device!r} and OrtConfig.providers={self.config.providers!r}: "
                "pass one of them, not both"
            )
        if self._device_request is not None and self._device_request.kind == "npu":
            raise DeviceUnavailableError(
                "device 'npu': ONNX Runtime here drives CPU and CUDA GPUs; "
                "use backend='openvino' for an Intel NPU"
            )
        self._session: onnxruntime.InferenceSession | None = None
        self._providers: list[str] = []
        self._device_id = 0
        self._io_binding = False
        self._pinned: dict[str, tuple[np.ndarray, Any]] = {}
        self._precision: str | None = None

    # -- provider choice -----------------------------------------------------------

    def _provider_plan(self, available: list[str]) -> list[tuple[str, dict[str, Any]]]:
        """Providers with their options, in priority order."""
        request: DeviceRequest | None = self._device_request
        has_gpu = bool(cuda_devices())
        if self.config.providers is not None:
            missing = [p for p in self.config.providers if p not in available]
            if missing:
                raise DeviceUnavailableError(
                    f"providers {missing} are not in this onnxruntime build (it has "
                    f"{available}); the CUDA/TensorRT ones come with `pip install "
                    "onnxruntime-gpu`, the OpenVINO one with `pip install onnxruntime-openvino`"
                )
            names = list(self.config.providers)
        elif request is not None and request.kind == "cpu":
            names = [CPU_EP]
        elif request is not None:  # cuda / gpu
            names = [p for p in (TENSORRT_EP, CUDA_EP) if p in available]
            gpus = len(cuda_devices())
            if request.ordinal >= gpus:
                raise DeviceUnavailableError(
                    f"device {str(request)!r}: {gpus} CUDA GPU(s) present; "
                    "use device='cpu' or leave device unset"
                )
            if not names:
                raise DeviceUnavailableError(
                    f"device {str(request)!r}: this onnxruntime build has no CUDA provider "
                    f"(it has {available}); install onnxruntime-gpu"
                )
            self._device_id = request.ordinal
            names.append(CPU_EP)
        else:
            names = [
                p
                for p in PREFERRED_PROVIDERS
                if p in available and (p not in _CUDA_FAMILY or has_gpu)
            ]
        return [(p, self._provider_options(p)) for p in names]

    def _provider_options(self, provider: str) -> dict[str, Any]:
        if provider == TENSORRT_EP:
            # ORT's TensorRT EP builds engines at session creation; keep them in
            # samedge's cache root so a restart does not rebuild for minutes.
            cache_dir = EngineCache().subdir("onnxruntime-tensorrt")
            return {
                "device_id": self._device_id,
                "trt_engine_cache_enable": True,
                "trt_engine_cache_path": str(cache_dir),
            }
        if provider == CUDA_EP:
            return {"device_id": self._device_id}
        return {}

    # -- Backend -------------------------------------------------------------------

    def _load(self) -> None:
        ort = _import_onnxruntime()
        plan = self._provider_plan(ort.get_available_providers())
        options = ort.SessionOptions()
        options.log_severity_level = 3  # errors only; ORT's warnings are not the user's business
        options.graph_optimization_level = {
            GraphOptimization.DISABLE: ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
            GraphOptimization.BASIC: ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
            GraphOptimization.EXTENDED: ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
            GraphOptimization.ALL: ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
        }[self.config.graph_optimization]
        if self.config.intra_op_threads is not None:
            options.intra_op_num_threads = self.config.intra_op_threads
        if not self.config.spin_after_run:
            options.add_session_config_entry(*STOP_SPINNING_AFTER_RUN)
        self._session = ort.InferenceSession(
            str(self.model_path),
            sess_options=options,
            providers=[name for name, _ in plan],
            provider_options=[opts for _, opts in plan],
        )
        self._providers = list(self._session.get_providers())
        self._inputs = tuple(self._spec(arg) for arg in self._session.get_inputs())
        self._outputs = tuple(self._spec(arg) for arg in self._session.get_outputs())
        on_cuda = self._providers[0] in _CUDA_FAMILY
        self._io_binding = on_cuda if self.config.io_binding is None else self.config.io_binding
        log.debug(
            "onnxruntime loaded %s on %s (io_binding=%s)",
            self.model_path.name,
            self._providers,
            self._io_binding,
        )

    def _spec(self, arg: Any) -> TensorSpec:
        dtype = _ORT_TYPES.get(arg.type)
        if dtype is None:
            raise InputError(
                f"{self.model_path.name}: tensor {arg.name} has type {arg.type}, which samedge "
                f"does not feed; expected one of {', '.join(sorted(_ORT_TYPES))}"
            )
        shape = tuple(
            d if isinstance(d, int | str) and d != "" else unnamed_dim(arg.name, axis)
            for axis, d in enumerate(arg.shape)
        )
        return TensorSpec(name=arg.name, dtype=dtype, shape=shape)

    def _infer(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        # On CPU a plain run() is already zero-copy: ORT wraps the numpy buffers
        # and hands its output buffers to numpy. Binding only pays where inputs
        # must cross to device memory: it uploads each input once per call, and
        # an input that stays the same between calls (the decoder's image
        # embedding, reused for every prompt on a frame) once per frame.
        if self._io_binding:
            return self._infer_bound(feeds)
        if self._session is None:
            raise RuntimeError("session is not loaded")
        names = [spec.name for spec in self._outputs]
        results = self._session.run(names, {spec.name: feeds[spec.name] for spec in self._inputs})
        return dict(zip(names, results, strict=True))

    def _infer_bound(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        ort = _import_onnxruntime()
        if self._session is None:
            raise RuntimeError("session is not loaded")
        device_type = "cuda" if self._providers[0] in _CUDA_FAMILY else "cpu"
        binding = self._session.io_binding()
        for spec in self._inputs:
            binding.bind_ortvalue_input(
                spec.name, self._device_value(ort, spec.name, feeds[spec.name], device_type)
            )
        for spec in self._outputs:
            binding.bind_output(spec.name, device_type, self._device_id)
        self._session.run_with_iobinding(binding)
        results = binding.copy_outputs_to_cpu()
        return {spec.name: out for spec, out in zip(self._outputs, results, strict=True)}

    def _device_value(self, ort: Any, name: str, array: np.ndarray, device_type: str) -> Any:
        """The input as an OrtValue in device memory, reusing last call's upload when safe.

        Reuse needs the very same array object, read-only (``setflags(write=False)``),
        so its content cannot have changed since it was uploaded; the cache holds a
        reference to it so its id cannot be recycled.
        """
        pinned = self._pinned.get(name)
        if pinned is not None and pinned[0] is array and not array.flags.writeable:
            return pinned[1]
        value = ort.OrtValue.ortvalue_from_numpy(
            np.ascontiguousarray(array), device_type, self._device_id
        )
        if array.flags.writeable:
            self._pinned.pop(name, None)
        else:
            self._pinned[name] = (array, value)
        return value

    def _close(self) -> None:
        self._pinned.clear()
        self._session = None
        self._providers = []

    # -- reporting -------------------------------------------------------------------

    @property
    def providers(self) -> tuple[str, ...]:
        """Providers the loaded session uses, in priority order."""
        self.load()
        return tuple(self._providers)

    @property
    def device(self) -> str:
        """The provider that runs the graph (``"CUDAExecutionProvider:0"``, ...)."""
        if not self._providers:
            return "not loaded"
        first = self._providers[0]
        return f"{first}:{self._device_id}" if first in _CUDA_FAMILY else first

    @property
    def precision(self) -> str:
        """``"fp32"``, ``"fp16"`` or ``"int8"``, as the graph carries it.

        ONNX Runtime computes in the graph's own types, so the graph decides:
        samedge's metadata, else Q/DQ nodes, else the initializers' float type.
        """
        if self._precision is None:
            self._precision = read_onnx_summary(self.model_path).precision
        return self._precision
