"""The machine's limit: a measured peak matrix-multiply rate through samedge's own backends.

One large square GEMM (``size``³, 2048 by default: large enough that every
backend runs its best kernel and memory traffic is small beside the
arithmetic) is built with ``onnx.helper`` in the precision asked for, loaded
through :func:`samedge.runtimes.open_backend` with the same configuration the
model runs under (threads, precision hint, ISA cap, device), and timed like a
model part. The rate is ``2·size³ / median seconds``.

Graphs per precision (the weight operand is a constant, as in a network):

* ``fp32``: ``MatMul`` of float32 tensors; on OpenVINO with an f32 hint.
* ``bf16``: the fp32 graph on OpenVINO with a bf16 inference-precision hint.
* ``fp16``: ``MatMul`` of float16 tensors (GPUs); the fp32 graph with an f16
  hint on OpenVINO.
* ``int8``: on OpenVINO and TensorRT, the Q/DQ form samedge's INT8 models
  carry (``QuantizeLinear``/``DequantizeLinear`` on both operands, then
  ``MatMul``), which they fuse into an integer GEMM; on ONNX Runtime's CPU
  provider, ``MatMulInteger`` (uint8 × int8 → int32), its integer GEMM kernel.

Example:
    >>> rate = measure_peak(PeakJob("openvino", "fp32", threads=2))   # doctest: +SKIP
    >>> round(rate.gflops_per_s)                                        # doctest: +SKIP
    180
"""

from __future__ import annotations

import logging
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from samedge.bench.records import Timing
from samedge.errors import InputError

__all__ = ["PEAK_PRECISIONS", "PeakJob", "PeakRate", "gemm_graph", "measure_peak"]

log = logging.getLogger(__name__)

PEAK_PRECISIONS = ("fp32", "bf16", "fp16", "int8")
_OPSET = 17
# ONNX IR version every supported ONNX Runtime / OpenVINO / TensorRT reads.
_IR_VERSION = 8


@dataclass(frozen=True)
class PeakJob:
    """One peak-rate measurement: a GEMM precision on a backend configuration.

    Attributes:
        backend: ``"onnxruntime"``, ``"openvino"`` or ``"tensorrt"``.
        precision: One of :data:`PEAK_PRECISIONS`.
        device: samedge device words (``"cpu"``, ``"cuda:0"``, ``"gpu"``).
        providers: ONNX Runtime execution providers; None = CPU.
        threads: CPU threads (ignored on GPUs).
        size: M = N = K of the GEMM.
        runs: Timed runs.
        warmup: Untimed runs first.
        isa: CPU ISA cap in force (recorded; the caller sets the environment).
    """

    backend: str
    precision: str
    device: str = "cpu"
    providers: tuple[str, ...] | None = None
    threads: int | None = None
    size: int = 2048
    runs: int = 10
    warmup: int = 2
    isa: str | None = None

    def __post_init__(self) -> None:
        if self.precision not in PEAK_PRECISIONS:
            raise InputError(
                f"PeakJob.precision: got {self.precision!r}, expected one of {PEAK_PRECISIONS}"
            )
        if isinstance(self.size, bool) or not isinstance(self.size, int) or self.size < 16:
            raise InputError(f"PeakJob.size: got {self.size!r}, expected an int >= 16")
        if self.runs < 1 or self.warmup < 0:
            raise InputError(
                f"PeakJob: got runs={self.runs}, warmup={self.warmup}; expected runs >= 1, "
                "warmup >= 0"
            )

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["providers"] = list(self.providers) if self.providers else None
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> PeakJob:
        fields = dict(data)
        if fields.get("providers"):
            fields["providers"] = tuple(fields["providers"])
        return cls(**fields)


@dataclass(frozen=True)
class PeakRate:
    """A measured GEMM rate.

    Attributes:
        backend: Backend that ran it.
        precision: GEMM precision (``"int8"`` rates count integer ops as FLOPs).
        device: The device as the backend reports it.
        isa: CPU ISA cap in force, or None.
        threads: CPU threads.
        size: M = N = K.
        gflops_per_s: ``2·size³`` over the median run time, in 10⁹/s.
        best_gflops_per_s: The same over the fastest run.
        graph: Which graph form ran (``"MatMul fp32"``, ``"Q/DQ MatMul"``, ``"MatMulInteger"``...).
        ran_in: The precision the backend reported it computed in.
        timing: The runs.
    """

    backend: str
    precision: str
    device: str
    isa: str | None
    threads: int | None
    size: int
    gflops_per_s: float
    best_gflops_per_s: float
    graph: str
    ran_in: str
    timing: Timing

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> PeakRate:
        fields = dict(data)
        fields["timing"] = Timing(**fields["timing"])
        return cls(**fields)


def _graph_form(job: PeakJob) -> str:
    if job.precision == "int8":
        on_ort_cpu = job.backend == "onnxruntime" and not job.providers
        return "MatMulInteger" if on_ort_cpu else "Q/DQ MatMul"
    if job.precision == "fp16" and job.backend != "openvino":
        return "MatMul fp16"
    return "MatMul fp32"


def gemm_graph(form: str, size: int, seed: int = 0) -> Any:
    """A ``size``³ GEMM as an ``onnx.ModelProto``: input ``a`` [size, size], constant weight.

    Args:
        form: ``"MatMul fp32"``, ``"MatMul fp16"``, ``"Q/DQ MatMul"`` (float input,
            quantized to int8 with zero point 0, int8 weights, per-tensor) or ``"MatMulInteger"``
            (uint8 input × int8 weight → int32).
        size: M = N = K.
        seed: Seed of the weight values.

    Raises:
        InputError: unknown ``form``.
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    shape = [size, size]
    nodes: list[Any] = []
    inits: list[Any] = []
    if form in ("MatMul fp32", "MatMul fp16"):
        dtype = np.float32 if form == "MatMul fp32" else np.float16
        elem = TensorProto.FLOAT if dtype == np.float32 else TensorProto.FLOAT16
        weight = (rng.standard_normal(shape) / np.sqrt(size)).astype(dtype)
        inits.append(numpy_helper.from_array(weight, "w"))
        nodes.append(helper.make_node("MatMul", ["a", "w"], ["y"]))
        a_elem, y_elem = elem, elem
    elif form == "Q/DQ MatMul":
        weight = rng.integers(-127, 128, shape, dtype=np.int8)
        inits += [
            numpy_helper.from_array(weight, "w_q"),
            numpy_helper.from_array(np.array(0.01, np.float32), "w_scale"),
            numpy_helper.from_array(np.array(0, np.int8), "w_zero"),
            numpy_helper.from_array(np.array(0.02, np.float32), "a_scale"),
            # int8 activations, zero point 0: the symmetric form TensorRT requires
            # and OpenVINO and ONNX Runtime's CUDA provider accept.
            numpy_helper.from_array(np.array(0, np.int8), "a_zero"),
        ]
        nodes += [
            helper.make_node("QuantizeLinear", ["a", "a_scale", "a_zero"], ["a_q"]),
            helper.make_node("DequantizeLinear", ["a_q", "a_scale", "a_zero"], ["a_dq"]),
            helper.make_node("DequantizeLinear", ["w_q", "w_scale", "w_zero"], ["w_dq"]),
            helper.make_node("MatMul", ["a_dq", "w_dq"], ["y"]),
        ]
        a_elem, y_elem = TensorProto.FLOAT, TensorProto.FLOAT
    elif form == "MatMulInteger":
        weight = rng.integers(-127, 128, shape, dtype=np.int8)
        inits.append(numpy_helper.from_array(weight, "w"))
        nodes.append(helper.make_node("MatMulInteger", ["a", "w"], ["y"]))
        a_elem, y_elem = TensorProto.UINT8, TensorProto.INT32
    else:
        raise InputError(
            f"gemm_graph: form {form!r} unknown; expected 'MatMul fp32', 'MatMul fp16', "
            "'Q/DQ MatMul' or 'MatMulInteger'"
        )
    graph = helper.make_graph(
        nodes,
        f"gemm_{size}",
        [helper.make_tensor_value_info("a", a_elem, shape)],
        [helper.make_tensor_value_info("y", y_elem, shape)],
        initializer=inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", _OPSET)])
    model.ir_version = _IR_VERSION
    onnx.checker.check_model(model)
    return model


def _input(form: str, size: int) -> np.ndarray:
    rng = np.random.default_rng(1)
    if form == "MatMulInteger":
        return rng.integers(0, 256, (size, size), dtype=np.uint8)
    x = rng.standard_normal((size, size))
    return x.astype(np.float16 if form == "MatMul fp16" else np.float32)


def _backend_config(job: PeakJob) -> tuple[Any, str | None]:
    """The backend config and device for ``job``, as samedge would run a model."""
    if job.backend == "onnxruntime":
        from samedge.runtimes import OrtConfig

        on_cpu = not job.providers
        config = OrtConfig(
            providers=job.providers, intra_op_threads=job.threads if on_cpu else None
        )
        return config, "cpu" if on_cpu else None
    if job.backend == "openvino":
        from samedge.runtimes import InferencePrecision, OpenVinoConfig

        hint = {
            "fp32": InferencePrecision.FP32,
            "bf16": InferencePrecision.BF16,
            "fp16": InferencePrecision.FP16,
            "int8": InferencePrecision.FP32,  # float parts of the Q/DQ graph stay f32
        }[job.precision]
        on_cpu = job.device == "cpu"
        config = OpenVinoConfig(
            inference_precision=hint,
            num_threads=job.threads if on_cpu else None,
            use_cache=False,
        )
        return config, job.device
    if job.backend == "tensorrt":
        from samedge.runtimes.trt import TensorRTConfig

        return TensorRTConfig(use_cache=False), job.device
    raise InputError(
        f"PeakJob.backend: got {job.backend!r}, expected onnxruntime, openvino or tensorrt"
    )


def measure_peak(job: PeakJob) -> PeakRate:
    """Build the GEMM graph for ``job``, run it on the backend and return its rate.

    Runs in the calling process: call it in a process whose environment holds
    the ISA cap when ``job.isa`` is set (:mod:`samedge.bench.measure` does).

    Raises:
        InputError: a malformed job.
        BackendUnavailableError / DeviceUnavailableError: the backend or device is missing.

    Example:
        >>> job = PeakJob("onnxruntime", "fp32", threads=2, size=256)
        >>> measure_peak(job).gflops_per_s                                # doctest: +SKIP
        95.2
    """
    import onnx

    from samedge.runtimes import open_backend

    form = _graph_form(job)
    config, device = _backend_config(job)
    with tempfile.TemporaryDirectory(prefix="samedge-peak-") as tmp:
        path = Path(tmp) / "gemm.onnx"
        onnx.save(gemm_graph(form, job.size), str(path))
        backend = open_backend(path, job.backend, config=config, device=device)
        try:
            backend.load()
            feeds = {"a": _input(form, job.size)}
            for _ in range(job.warmup):
                backend.infer(feeds)
            seconds = []
            for _ in range(job.runs):
                start = time.perf_counter()
                backend.infer(feeds)
                seconds.append(time.perf_counter() - start)
            ran_in, device_name = backend.precision, backend.device
            if form == "MatMulInteger":
                # ORT reads a graph's precision from Q/DQ nodes or metadata; this one has neither.
                ran_in = "int8"
        finally:
            backend.close()
    timing = Timing.from_seconds(seconds)
    work = 2.0 * job.size**3
    rate = PeakRate(
        backend=job.backend,
        precision=job.precision,
        device=device_name,
        isa=job.isa,
        threads=job.threads,
        size=job.size,
        gflops_per_s=work / (timing.median_ms * 1e-3) / 1e9,
        best_gflops_per_s=work / (timing.min_ms * 1e-3) / 1e9,
        graph=form,
        ran_in=ran_in,
        timing=timing,
    )
    log.info(
        "peak %s %s%s: %.1f GFLOP/s (%s, ran in %s)",
        job.backend,
        job.precision,
        f" [{job.isa}]" if job.isa else "",
        rate.gflops_per_s,
        form,
        ran_in,
    )
    return rate
