"""Backends behind one interface (installed as ``samedge.runtimes``).

A :class:`Backend` runs one ONNX graph: construct it cheaply, it loads on first
use, :meth:`Backend.infer` validates feeds against its :class:`TensorSpec`\\ s.
:func:`open_backend` picks and creates one (``backend="auto"`` by default);
:func:`select_backend` says which it would pick and why; :func:`available_backends`
lists what this machine has. Importing this package never imports TensorRT or
OpenVINO.

Example:
    >>> from samedge.runtimes import open_backend                     # doctest: +SKIP
    >>> with open_backend("model/encoder.onnx") as encoder:           # doctest: +SKIP
    ...     print(encoder.name, encoder.device, encoder.precision)
    openvino CPU bf16
"""

from __future__ import annotations

from samedge.runtimes.base import Backend, Dim, TensorSpec
from samedge.runtimes.cache import (
    CacheEntry,
    CacheKey,
    EngineCache,
    clear_cache,
    default_cache_root,
    list_cache,
)
from samedge.runtimes.ort import PREFERRED_PROVIDERS, GraphOptimization, OrtBackend, OrtConfig
from samedge.runtimes.ov import (
    InferencePrecision,
    OpenVinoBackend,
    OpenVinoConfig,
    OvDevice,
    PerformanceHint,
)
from samedge.runtimes.select import (
    BACKENDS,
    BackendChoice,
    BackendInfo,
    available_backends,
    backend_class,
    native_precisions,
    open_backend,
    refresh_probes,
    resolve_backend,
    select_backend,
)

__all__ = [
    "BACKENDS",
    "PREFERRED_PROVIDERS",
    "Backend",
    "BackendChoice",
    "BackendInfo",
    "CacheEntry",
    "CacheKey",
    "Dim",
    "EngineCache",
    "GraphOptimization",
    "InferencePrecision",
    "OpenVinoBackend",
    "OpenVinoConfig",
    "OrtBackend",
    "OrtConfig",
    "OvDevice",
    "PerformanceHint",
    "TensorSpec",
    "available_backends",
    "backend_class",
    "clear_cache",
    "default_cache_root",
    "list_cache",
    "native_precisions",
    "open_backend",
    "refresh_probes",
    "resolve_backend",
    "select_backend",
]
