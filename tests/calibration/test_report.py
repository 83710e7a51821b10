"""The build report and the gate's verdict read themselves back; reading one needs no onnx."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import pytest

from samedge.calibration import (
    BuildReport,
    CalibrationSettings,
    Candidate,
    Fidelity,
    GateConfig,
    GateKind,
    GroundTruth,
    LayerFallback,
    LayerSensitivity,
)
from samedge.errors import InputError


def _fidelity(mean: float = 0.97, p5: float = 0.9) -> Fidelity:
    return Fidelity(2, 192, 0.999, 0.998, math.inf, 41.5, mean, p5, 0.5)


def _report(**changes: object) -> BuildReport:
    gt = GroundTruth(scenes=3, objects=9, fp32={"click": 0.6, "box": 0.7},
                     build={"click": 0.58, "box": 0.7})  # fmt: skip
    verdict = GateConfig().judge(_fidelity(0.9, 0.5), lambda: gt)
    fields: dict[str, object] = {
        "model": "samedge_tiny",
        "precision": "int8",
        "decoder_precision": "fp32",
        "gate": verdict,
        "fidelity": _fidelity(0.9, 0.5),
        "calibration": CalibrationSettings(
            source="synthetic scenes",
            frames=4,
            heldout=2,
            skipped=0,
            method="nncf",
            precision="int8",
            decoder_fp16=False,
            attention_int8=True,
            fallback=True,
            fp16_range_fraction=0.5,
            source_encoder_sha256="ab" * 32,
            versions={"samedge": "0"},
            qdq={"quantizers": 3},
        ),
        "fallback": LayerFallback(
            sensitivity=(LayerSensitivity("/a/Conv", "Conv", 30.0, 12.0),),
            tried=(1, 2),
            limit=2,
            without_fallback=_fidelity(0.5, 0.1),
            kept=("/a/Conv",),
            speed_ms={"int8": {"onnxruntime/int8": 2.0}},
            speed_cost="onnxruntime/int8: 2.0 -> 2.5 ms",
        ),
        "ground_truth": gt,
        "candidates": (
            Candidate("fp32", "onnxruntime/fp32", 3.0, True),
            Candidate("int8", "onnxruntime/int8", 2.0, False, 0.9, 0.5),
        ),
        "decision": "fp32 kept",
        "seconds": 1.5,
    }
    fields.update(changes)
    return BuildReport(**fields)  # type: ignore[arg-type]


def test_a_report_round_trips_through_json() -> None:
    report = _report()
    data = json.loads(json.dumps(report.to_dict()))
    assert BuildReport.from_dict(data) == report
    # The ground-truth gate decided (samedge_tiny's default) and missed.
    assert report.gate.kind is GateKind.GROUND_TRUTH
    assert not report.passed
    assert data["gate"]["applied"] == "ground_truth"
    assert data["ground_truth"]["gate"].startswith("FAILED: ground-truth click mIoU 0.5800")
    assert data["fidelity"]["sqnr_mean_db"] == "inf"
    assert "source" not in data
    assert "output" not in data


def test_the_gate_owns_its_message() -> None:
    report = _report()
    message = report.failure()
    assert message.startswith("samedge_tiny int8 build missed its accuracy gate (ground_truth: ")
    assert "ground-truth mIoU fp32 {'click': 0.6, 'box': 0.7}" in message
    assert "vs fp32 (reported, not gating): mean mask IoU 0.9000 < 0.95" in message
    assert "mask IoU mean 0.9000, p5 0.5000, worst 0.5000" in message
    summary = report.summary("out/tiny_int8")
    assert "-> out/tiny_int8  [gate FAILED]" in summary
    assert "gate: ground truth, mIoU within 0.01 of fp32's" in summary
    assert "candidate int8: gate FAILED, 2.0 ms on onnxruntime/int8" in summary


def test_an_explicit_drop_lets_ground_truth_accept_what_fp32_refused() -> None:
    gt = GroundTruth(scenes=3, objects=9, fp32={"click": 0.6}, build={"click": 0.6})
    gate = GateConfig(min_mean_iou=0.95, max_gt_miou_drop=0.02)
    verdict = gate.judge(_fidelity(0.9, 0.9), lambda: gt)
    assert verdict.kind is GateKind.FP32
    assert verdict.passed
    assert verdict.reasons[-1].startswith("accepted by the ground-truth gate")
    # Without ground truth the fp32 check is the verdict, and nothing is measured.
    assert not gate.judge(_fidelity(0.9, 0.9), None).passed


def test_a_report_that_is_not_one_is_refused() -> None:
    data = _report().to_dict()
    del data["fidelity"]["p5_iou"]
    with pytest.raises(InputError, match="fidelity: missing p5_iou"):
        BuildReport.from_dict(data)
    data = _report().to_dict()
    data["gate"]["applied"] = "vibes"
    with pytest.raises(InputError, match="gate record"):
        BuildReport.from_dict(data)
    with pytest.raises(InputError, match="expected a mapping"):
        BuildReport.from_dict([])  # type: ignore[arg-type]


def test_the_gate_and_the_report_import_without_onnx() -> None:
    code = (
        "import sys\n"
        "import samedge.calibration.gate, samedge.calibration.report\n"
        "heavy = [m for m in ('onnx', 'onnxconverter_common', 'nncf', 'openvino',"
        " 'samedge.calibration.build') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
        "from samedge.calibration import build\n"
        "import samedge.calibration.build\n"
        "from samedge.calibration import build as again\n"
        "assert callable(build) and again is build, again\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
