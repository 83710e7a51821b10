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

import importlib
import sys
import types
from typing import TYPE_CHECKING, Any

# The light modules load with the package; the ones that need onnx (and the
# build, which needs them) on first use of one of their names, so that
# ``import samedge.calibration.gate`` or reading a report needs no onnx.
from samedge.calibration.frames import CalibrationDataError, FrameSet, encoder_inputs, read_frames
from samedge.calibration.gate import GateConfig, GateError, GateKind, GateResult, GateVerdict
from samedge.calibration.report import (
    BuildReport,
    CalibrationSettings,
    Candidate,
    Fidelity,
    GraphPrecision,
    GroundTruth,
    LayerFallback,
    LayerSensitivity,
    MemoryTrial,
    Reference,
    VideoFidelity,
    fixed_prompts,
)

if TYPE_CHECKING:
    from samedge.calibration.build import BuildConfig, Precision, build, failed_report_path
    from samedge.calibration.fp16 import Fp16Config, Fp16Result, convert_fp16
    from samedge.calibration.int8 import (
        DEFAULT_METHOD,
        Int8Config,
        Int8Method,
        Int8Result,
        QdqSummary,
        check_qdq,
        quantize_int8,
    )
    from samedge.calibration.sensitivity import drop_quantization, find_fallback, layer_sensitivity

_LAZY = {
    "BuildConfig": "build",
    "Precision": "build",
    "build": "build",
    "failed_report_path": "build",
    "Fp16Config": "fp16",
    "Fp16Result": "fp16",
    "convert_fp16": "fp16",
    "DEFAULT_METHOD": "int8",
    "Int8Config": "int8",
    "Int8Method": "int8",
    "Int8Result": "int8",
    "QdqSummary": "int8",
    "check_qdq": "int8",
    "quantize_int8": "int8",
    "drop_quantization": "sensitivity",
    "find_fallback": "sensitivity",
    "layer_sensitivity": "sensitivity",
}


class _Package(types.ModuleType):
    """This package, whose ``build`` stays the function.

    Importing the submodule ``samedge.calibration.build`` makes Python set the
    package's ``build`` attribute to that module; with the function loaded
    lazily nothing would set it back, so the setter keeps the function.
    """

    @property
    def build(self) -> Any:
        return importlib.import_module(f"{__name__}.build").build

    @build.setter
    def build(self, value: Any) -> None:
        if not isinstance(value, types.ModuleType):
            raise AttributeError("samedge.calibration.build is the build function")


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


sys.modules[__name__].__class__ = _Package

__all__ = [
    "DEFAULT_METHOD",
    "BuildConfig",
    "BuildReport",
    "CalibrationDataError",
    "CalibrationSettings",
    "Candidate",
    "Fidelity",
    "Fp16Config",
    "Fp16Result",
    "FrameSet",
    "GateConfig",
    "GateError",
    "GateKind",
    "GateResult",
    "GateVerdict",
    "GraphPrecision",
    "GroundTruth",
    "Int8Config",
    "Int8Method",
    "Int8Result",
    "LayerFallback",
    "LayerSensitivity",
    "MemoryTrial",
    "Precision",
    "QdqSummary",
    "Reference",
    "VideoFidelity",
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
