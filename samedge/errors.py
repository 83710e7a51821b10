"""Errors raised by samedge.

Every error samedge raises on purpose derives from :class:`SamedgeError`, so
``except samedge.SamedgeError`` catches all of them. Errors about what the
caller passed in also derive from :class:`ValueError` (or the matching builtin),
so code written against segment_anything's ``SamPredictor`` keeps working.

Messages say what was received, what was expected, and what to do.

Hierarchy::

    SamedgeError
    ├── InputError (ValueError)                bad argument or data from the caller
    │   ├── UnknownNameError (KeyError)          unknown model / backend / precision name
    │   ├── ImageError                           frame of the wrong dtype, shape or content
    │   ├── PromptError                          points, labels, boxes or masks that do not fit
    │   │   └── ProfileLimitError                more objects/points than the engine was built for
    │   ├── CheckpointError                      missing, truncated or mismatched checkpoint
    │   ├── ModelDirError                        model directory missing a file or too new
    │   ├── SourceError                          a camera/file/stream cannot be opened, or
    │   │                                        dropped out and could not be reopened
    │   ├── OutputExistsError (FileExistsError)  refusing to overwrite without force=True
    │   └── CalibrationDataError                 calibration source with no / too few / wrong frames
    ├── OutputWriteError (OSError)             an output could not be written whole (disk
    │                                          full, I/O error); the previous one is kept
    ├── ExportError                            export produced a wrong or unloadable graph
    │   ├── ParityError                          ONNX Runtime disagrees with PyTorch past tolerance
    │   └── GateError                            an FP16/INT8 build missed its accuracy gate
    ├── BackendError                           a backend failed to load, build or run
    │   ├── BackendUnavailableError (ImportError)  SDK not installed: names the pip extra
    │   ├── DeviceUnavailableError               the backend is there, the hardware is not
    │   ├── EngineCacheError                     a cached engine is corrupt or incompatible
    │   └── NonFiniteOutputError                 a graph returned NaN/inf (names model,
    │                                            backend, precision and cache)
    └── PredictorStateError (RuntimeError)     e.g. predict() before set_image()

    (``samedge.serve.ApiError(InputError)`` stays in the server: it carries the
    HTTP status to answer with, which means nothing outside the server.)

    SamedgeWarning (UserWarning)               our own warnings; tests turn them into errors
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = [
    "BackendError",
    "BackendUnavailableError",
    "CalibrationDataError",
    "CheckpointError",
    "DeviceUnavailableError",
    "EngineCacheError",
    "ExportError",
    "GateError",
    "ImageError",
    "InputError",
    "ModelDirError",
    "NonFiniteOutputError",
    "OutputExistsError",
    "OutputWriteError",
    "ParityError",
    "PredictorStateError",
    "ProfileLimitError",
    "PromptError",
    "SamedgeError",
    "SamedgeWarning",
    "SourceError",
    "UnknownNameError",
]


class SamedgeError(Exception):
    """Root of every error samedge raises on purpose."""


class InputError(SamedgeError, ValueError):
    """An argument or data passed by the caller is wrong."""


class UnknownNameError(InputError, KeyError):
    """A name (model, backend, precision, ...) is not one samedge knows."""

    def __str__(self) -> str:
        # KeyError's __str__ repr()s its argument; keep the message readable.
        return str(self.args[0]) if self.args else ""


class ImageError(InputError):
    """A frame has the wrong dtype, shape, channel count or content."""


class PromptError(InputError):
    """Prompts (points, labels, boxes, masks) that do not fit together or the image."""


class ProfileLimitError(PromptError):
    """More objects or points than the built engine's optimisation profile allows."""


class CheckpointError(InputError):
    """A checkpoint is missing, unreadable, truncated or belongs to another model."""


class ModelDirError(InputError):
    """A model directory is missing a file, is malformed, or was made by a newer samedge."""


class SourceError(InputError):
    """A frame source cannot be opened (the message says what was tried), or it
    dropped out and could not be reopened within the reconnect policy."""


class OutputExistsError(InputError, FileExistsError):
    """The output exists and ``force`` was not given."""


class CalibrationDataError(InputError):
    """The calibration source gave no usable frames, too few, or frames of the wrong type."""


class OutputWriteError(SamedgeError, OSError):
    """An output could not be written whole (a full disk, an I/O error).

    Nothing replaced what was at the output path before; the partial file is removed.
    """


class ExportError(SamedgeError):
    """An export produced a graph that is invalid or does not load."""


class ParityError(ExportError):
    """The exported graph disagrees with PyTorch past the tolerance."""


class GateError(ExportError):
    """An FP16/INT8 build missed its accuracy gate; nothing was written as a model.

    Attributes:
        report: The failing build's report as a JSON-ready dict (also written
            to ``report_path`` when there is one).
        report_path: Where the failing report was saved for diagnosis, if anywhere.
    """

    def __init__(
        self, message: str, report: Mapping[str, Any], report_path: str | None = None
    ) -> None:
        super().__init__(message)
        self.report = dict(report)
        self.report_path = report_path


class BackendError(SamedgeError):
    """A backend failed to load, build or run a model."""


class BackendUnavailableError(BackendError, ImportError):
    """The backend's SDK is not installed; the message names the pip extra."""


class DeviceUnavailableError(BackendError):
    """The backend is installed but the requested device is not present."""


class EngineCacheError(BackendError):
    """A cached engine or compiled blob is corrupt or built for something else."""


class NonFiniteOutputError(BackendError):
    """A graph returned NaN or inf where a result must be finite.

    Never handed out as a result: the message names the model, backend,
    precision and the engine cache entry (which is dropped before raising).
    """


class PredictorStateError(SamedgeError, RuntimeError):
    """A Predictor method was called in the wrong order (e.g. predict before set_image)."""


class SamedgeWarning(UserWarning):
    """Warnings samedge emits itself."""
