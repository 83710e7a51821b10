"""samedge: the Segment Anything family on edge hardware.

Export a SAM / MobileSAM checkpoint to ONNX, build FP16/INT8 variants, run them
on ONNX Runtime, OpenVINO or TensorRT, and serve camera frames.

Example:
    >>> import samedge
    >>> samedge.get_model_spec("sam_vit_b").image_size
    1024
"""

from __future__ import annotations

from samedge._version import __version__
from samedge.errors import (
    BackendError,
    BackendUnavailableError,
    CalibrationDataError,
    CheckpointError,
    DeviceUnavailableError,
    EngineCacheError,
    ExportError,
    GateError,
    ImageError,
    InputError,
    ModelDirError,
    NonFiniteOutputError,
    OutputExistsError,
    OutputWriteError,
    ParityError,
    PredictorStateError,
    ProfileLimitError,
    PromptError,
    SamedgeError,
    SamedgeWarning,
    SourceError,
    UnknownNameError,
)
from samedge.generator import GeneratorConfig, MaskGenerator, OutputMode
from samedge.model_dir import ModelCard, read_model_dir
from samedge.models import ModelSpec, get_model_spec, list_models
from samedge.predictor import ImageEmbedding, Predictor
from samedge.preprocess import Resample
from samedge.prompts import ObjectPrompt


def __getattr__(name: str) -> object:
    # `samedge.stream(...)` (the stream API, a callable subpackage) without making
    # `import samedge` import the streaming code up front.
    if name == "stream":
        import importlib

        return importlib.import_module("samedge.stream")
    raise AttributeError(f"module 'samedge' has no attribute {name!r}")


__all__ = [
    "BackendError",
    "BackendUnavailableError",
    "CalibrationDataError",
    "CheckpointError",
    "DeviceUnavailableError",
    "EngineCacheError",
    "ExportError",
    "GateError",
    "GeneratorConfig",
    "ImageEmbedding",
    "ImageError",
    "InputError",
    "MaskGenerator",
    "ModelCard",
    "ModelDirError",
    "ModelSpec",
    "NonFiniteOutputError",
    "ObjectPrompt",
    "OutputExistsError",
    "OutputMode",
    "OutputWriteError",
    "ParityError",
    "Predictor",
    "PredictorStateError",
    "ProfileLimitError",
    "PromptError",
    "Resample",
    "SamedgeError",
    "SamedgeWarning",
    "SourceError",
    "UnknownNameError",
    "__version__",
    "get_model_spec",
    "list_models",
    "read_model_dir",
]
