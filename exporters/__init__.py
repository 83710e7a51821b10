"""PyTorch -> ONNX exporters (installed as samedge.exporters; needs the `export` extra).

Example:
    >>> from samedge.exporters import ExportConfig, export_model
    >>> report = export_model("mobile_sam", "mobile_sam.pt", "out/mobile_sam")  # doctest: +SKIP
    >>> print(report.summary())  # doctest: +SKIP
"""

from __future__ import annotations

from samedge.exporters.builders import identify_checkpoint, read_checkpoint, reduced_sam_spec
from samedge.exporters.export import (
    ExportConfig,
    ExportReport,
    build_model,
    export_decoder,
    export_encoder,
    export_model,
)
from samedge.exporters.parity import ParityReport, verify_export

__all__ = [
    "ExportConfig",
    "ExportReport",
    "ParityReport",
    "build_model",
    "export_decoder",
    "export_encoder",
    "export_model",
    "identify_checkpoint",
    "read_checkpoint",
    "reduced_sam_spec",
    "verify_export",
]
