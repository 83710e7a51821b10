"""What a benchmark measures: one :class:`Measurement` per (suite, model, backend, precision, part).

Every number a benchmark records is one of these, whether samedge made it or a
peer (the PyTorch predictor, samexporter, the OpenVINO notebook recipe) did, so
one table and one plot hold them side by side and ratios can be taken within a
run.

Example:
    >>> t = Timing.from_seconds([0.010, 0.012, 0.011])
    >>> round(t.median_ms, 1)
    11.0
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from samedge.errors import InputError

__all__ = ["ENGINE", "PARTS", "Measurement", "Timing"]

# encoder: image tensor in, embedding out. decoder: embedding + prompts of
# `objects` objects in one call. predictor: a frame in, masks at frame size out.
PARTS = ("encoder", "decoder", "predictor")
#: The ``note`` prefix (``"engine: ..."``) of a row from another tool that times
#: the network alone, tensors in and out, as samedge's encoder/decoder rows do.
ENGINE = "engine"


@dataclass(frozen=True)
class Timing:
    """Latency statistics of warm runs, in milliseconds."""

    runs: int
    median_ms: float
    mean_ms: float
    p90_ms: float
    p99_ms: float
    min_ms: float

    @classmethod
    def from_seconds(cls, seconds: Sequence[float]) -> Timing:
        if len(seconds) == 0:
            raise InputError("Timing.from_seconds: got no runs; measure at least one")
        ms = np.asarray(seconds, dtype=np.float64) * 1e3
        return cls(
            runs=len(ms),
            median_ms=float(np.median(ms)),
            mean_ms=float(ms.mean()),
            p90_ms=float(np.percentile(ms, 90)),
            p99_ms=float(np.percentile(ms, 99)),
            min_ms=float(ms.min()),
        )


@dataclass(frozen=True)
class Measurement:
    """One timed configuration.

    Attributes:
        suite: ``"samedge"`` or the peer's name (``"pytorch"``, ``"samexporter"``,
            ``"openvino-notebook"``).
        model: Registry name (``"mobile_sam"``, ``"sam_vit_b"``, ``"samedge_tiny"``).
        backend: ``"onnxruntime"``, ``"openvino"``, ``"tensorrt"`` or ``"torch"``.
        precision: What actually ran: ``"fp32"``, ``"bf16"``, ``"fp16"`` or ``"int8"``.
        part: One of :data:`PARTS`.
        timing: Warm-run latency.
        objects: Objects per decoder call (decoder and predictor parts), else None.
        device: Backend device (``"cpu"``, ``"cuda:0"``, ...).
        threads: Intra-op threads the backend was given.
        throughput_per_s: Items per second (images, or objects for the decoder).
        peak_rss_mib: Peak resident memory of the process that ran it.
        build_s: Engine build / compile / session creation time.
        engine_mib: Size of the file(s) the backend ran.
        gflops: Floating-point work of one call (counted from the ONNX graph).
        fraction_of_peak: Achieved FLOP/s over the measured peak GEMM rate.
        accuracy: Accuracy beside the speed (e.g. ``{"mean_iou_vs_fp32": 0.98}``).
        note: Anything a reader needs to interpret the row.
        model_precision: Precision the model directory holds (``"fp32"``,
            ``"fp16"``, ``"int8"``), which can differ from what ran (an FP32
            directory computes in bf16 on OpenVINO's default); None for peers.
        isa: The CPU instruction-set cap in force (``ONEDNN_MAX_CPU_ISA``,
            e.g. ``"AVX512_CORE_VNNI"``); None when uncapped.
    """

    suite: str
    model: str
    backend: str
    precision: str
    part: str
    timing: Timing
    objects: int | None = None
    device: str = "cpu"
    threads: int | None = None
    throughput_per_s: float | None = None
    peak_rss_mib: float | None = None
    build_s: float | None = None
    engine_mib: float | None = None
    gflops: float | None = None
    fraction_of_peak: float | None = None
    accuracy: dict[str, float] = field(default_factory=dict)
    note: str = ""
    model_precision: str | None = None
    isa: str | None = None

    def __post_init__(self) -> None:
        if self.part not in PARTS:
            raise InputError(f"Measurement.part: got {self.part!r}, expected one of {PARTS}")
        if self.objects is not None and self.objects < 1:
            raise InputError(f"Measurement.objects: got {self.objects}, expected >= 1 or None")

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Measurement:
        fields = dict(data)
        fields["timing"] = Timing(**fields["timing"])
        return cls(**fields)
