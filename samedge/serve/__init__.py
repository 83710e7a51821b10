"""Serve camera segmentation over HTTP and WebSocket, with a click-to-segment page.

``samedge serve`` runs a :class:`~samedge.stream.Pipeline` in background
threads and serves, by default on http://127.0.0.1:8000/:

* ``/``: a page showing the live video with mask overlays; click to add an
  object (or refine the selected one), right- or shift-click for a
  background point, drag for a box;
* ``/api/objects``: add, update and remove prompts (JSON);
* ``/ws``: per-frame results (COCO RLE masks, boxes, scores, states),
  optionally with JPEG frames;
* ``/health`` and Prometheus ``/metrics``.

See :mod:`samedge.serve.app` for the endpoints and the safety rules.
Needs the ``serve`` extra: ``pip install 'samedge[serve]'``.

Modules: :mod:`~samedge.serve.config` (:class:`ServeConfig`),
:mod:`~samedge.serve.service` (:class:`StreamService`: threads, prompts,
subscribers), :mod:`~samedge.serve.app` (the ASGI app),
:mod:`~samedge.serve.server` (:func:`serve`, :class:`ServerThread`),
:mod:`~samedge.serve.metrics` (Prometheus text).

Example:
    >>> from samedge.serve import ServeConfig, serve
    >>> serve(ServeConfig(source="0", token="s3cret"))     # doctest: +SKIP
"""

from __future__ import annotations

from samedge.errors import BackendUnavailableError

try:
    import starlette  # noqa: F401
    import uvicorn  # noqa: F401
except ImportError as e:  # pragma: no cover - depends on the install
    raise BackendUnavailableError(
        f"samedge.serve needs the 'serve' extra ({e.name} is not installed): "
        "pip install 'samedge[serve]'"
    ) from e

from samedge.serve.app import create_app, parse_prompt
from samedge.serve.config import ServeConfig
from samedge.serve.metrics import ServerMetrics
from samedge.serve.server import ServerThread, bind_socket, serve
from samedge.serve.service import ApiError, PromptSpec, StreamService, Subscriber

__all__ = [
    "ApiError",
    "PromptSpec",
    "ServeConfig",
    "ServerMetrics",
    "ServerThread",
    "StreamService",
    "Subscriber",
    "bind_socket",
    "create_app",
    "parse_prompt",
    "serve",
]
