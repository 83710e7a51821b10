"""FP16 and INT8 builds with an accuracy report and gate (installed as ``samedge.calibration``).

:func:`build` is ``samedge build``: an FP32 model directory in, an FP16 or
INT8 model directory out, written only when it passes its
:class:`GateConfig` against the FP32 pipeline. Its steps are usable alone:
:func:`read_frames` / :func:`encoder_inputs` (calibration data),
:func:`convert_fp16`, :func:`quantize_int8` (explicit Q/DQ for every
backend), :class:`Reference` (fidelity against FP32) and
:func:`layer_sensitivity` (which layers INT8 hurts most).

Example:
    >>> from samedge.calibration import BuildConfig, Precision, build
    >>> config = BuildConfig(precision=Precision.INT8)
    >>> report = build("samedge_tiny", "out/tiny_int8", config)   # doctest: +SKIP
    >>> report.passed, report.fidelity.mean_iou                   # doctest: +SKIP
    (True, 0.99)
"""

from __future__ import annotations

from samedge.calibration.build import BuildConfig, Precision, build, failed_report_path
from samedge.calibration.fp16 import Fp16Config, Fp16Result, convert_fp16
from samedge.calibration.frames import (
    CalibrationDataError,
    FrameSet,
    encoder_inputs,
    read_frames,
)
from samedge.calibration.gate import GateConfig, GateError, GateResult
from samedge.calibration.int8 import (
    DEFAULT_METHOD,
    Int8Config,
    Int8Method,
    Int8Result,
    QdqSummary,
    check_qdq,
    quantize_int8,
)
from samedge.calibration.report import BuildReport, Fidelity, Reference, fixed_prompts
from samedge.calibration.sensitivity import (
    LayerSensitivity,
    drop_quantization,
    find_fallback,
    layer_sensitivity,
)

__all__ = [
    "DEFAULT_METHOD",
    "BuildConfig",
    "BuildReport",
    "CalibrationDataError",
    "Fidelity",
    "Fp16Config",
    "Fp16Result",
    "FrameSet",
    "GateConfig",
    "GateError",
    "GateResult",
    "Int8Config",
    "Int8Method",
    "Int8Result",
    "LayerSensitivity",
    "Precision",
    "QdqSummary",
    "Reference",
    "build",
    "check_qdq",
    "convert_fp16",
    "drop_quantization",
    "encoder_inputs",
    "failed_report_path",
    "find_fallback",
    "fixed_prompts",
    "layer_sensitivity",
    "quantize_int8",
    "read_frames",
]
