"""Synthetic benchmark rows and reports shared by the report, goals and README tests."""

from __future__ import annotations

from samedge.bench.peak import PeakRate
from samedge.bench.records import Measurement, Timing
from samedge.bench.report import BenchReport


def _t(ms: float) -> Timing:
    return Timing.from_seconds([ms / 1e3] * 3)


def _row(part="encoder", backend="openvino", precision="bf16", ms=10.0, **kw) -> Measurement:
    fields = {
        "suite": "samedge",
        "model": "mobile_sam",
        "backend": backend,
        "precision": precision,
        "part": part,
        "timing": _t(ms),
        "device": "CPU",
        "model_precision": "fp32",
    }
    fields.update(kw)
    return Measurement(**fields)


def _report(rows, peaks=(), ratios=()) -> BenchReport:
    return BenchReport(
        machine={"name": "test-2c", "cpu": "Test CPU", "cores": 2, "cpu_flags": ["avx2"]},
        versions={"samedge": "0.1.0"},
        command="samedge bench mobile_sam --runs 3",
        timestamp="2026-11-25T03:30:00+00:00",
        settings={"threads": 2, "runs": 3, "warmup": 1, "frame_size": [640, 480]},
        models=({"name": "mobile_sam", "precision": "fp32", "encoder_gflops": 77.5},),
        measurements=tuple(rows),
        peaks=tuple(peaks),
        ratios=tuple(ratios),
        default={"choice": "openvino on cpu", "backend": "openvino"},
    )


def _peak(backend="openvino", precision="bf16", rate=400.0, device="CPU") -> PeakRate:
    return PeakRate(backend, precision, device, None, 2, 64, rate, rate, "MatMul fp32", precision,
                    _t(1.0))  # fmt: skip
