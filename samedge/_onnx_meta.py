"""Read samedge's provenance from an ONNX file without loading its weights."""

from __future__ import annotations

import os
from pathlib import Path

from samedge.errors import InputError

__all__ = ["read_onnx_metadata"]


def read_onnx_metadata(path: str | os.PathLike[str]) -> dict[str, str]:
    """Return the ``samedge.*`` entries of an ONNX file's ``metadata_props``.

    Uses ONNX Runtime (a core dependency) so it works without the ``onnx`` package.

    Raises:
        InputError: the file is missing or is not a readable ONNX model.
    """
    import onnxruntime as ort

    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such file; expected an .onnx model")
    options = ort.SessionOptions()
    options.log_severity_level = 3
    try:
        session = ort.InferenceSession(
            str(path), sess_options=options, providers=["CPUExecutionProvider"]
        )
    except Exception as e:  # ORT raises its own untyped errors for bad files
        raise InputError(f"{path}: not a loadable ONNX model ({type(e).__name__}: {e})") from e
    props = session.get_modelmeta().custom_metadata_map
    return {k: v for k, v in props.items() if k.startswith("samedge.")}
