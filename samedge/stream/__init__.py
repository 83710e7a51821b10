"""Streams of frames: sources, tracking by re-prompting, drawing, the frame loop, the demo.

For robotics code the entry point is this module itself, which is callable:
``for result in samedge.stream(source, prompts=..., model=...)`` is
:func:`open_stream` (type checkers see a module; typed code calls
:func:`open_stream`).

The pieces stay separate so that ``samedge run`` (the demo), the camera
server and :func:`open_stream` reuse them:

* :mod:`~samedge.stream.api`: :func:`open_stream` and :class:`Stream`, per-frame
  results as an iterator or a callback, prompts added and removed on the fly;
* :mod:`~samedge.stream.sources`: :func:`open_source` for the synthetic scene,
  cameras, files, URLs, GStreamer pipelines and image folders; :class:`PushSource`
  for frames handed in by other code;
* :mod:`~samedge.stream.reconnect`: :class:`ReconnectingSource`, live sources
  reopened with backoff after a drop-out;
* :mod:`~samedge.stream.tracking`: :class:`Tracker`, objects with stable ids
  followed by re-prompting, all decoded in one batched call per frame;
* :mod:`~samedge.stream.memory`: :class:`MemoryTracker`, SAM 2's memory bank (in
  numpy) over the stateless graphs of a SAM 2.1 / EdgeTAM export;
* :mod:`~samedge.stream.draw`: mask overlays, ids, boxes, a status line;
* :mod:`~samedge.stream.sinks`: video file (or PNG frames) and callback sinks;
* :mod:`~samedge.stream.pipeline`: :class:`Pipeline` and its per-stage :class:`Stats`;
* :mod:`~samedge.stream.demo`: :func:`run_demo`, what ``samedge run`` calls.

A session (model -> source -> tracker -> pipeline) is opened in one place,
:func:`samedge.session.open_session`; :func:`open_stream`, :func:`run_demo` and
the server's :class:`~samedge.serve.StreamService` are thin layers on it.

Example:
    >>> import samedge
    >>> from samedge import ObjectPrompt
    >>> box = ObjectPrompt(box=[90, 60, 200, 180])
    >>> for result in samedge.stream(0, prompts=[box]):                  # doctest: +SKIP
    ...     print(result.frame_id, result.objects[1].state.value, result.objects[1].box)
"""

from __future__ import annotations

import sys
import types
from typing import Any

from samedge.stream.api import Prompts, Stream, open_stream
from samedge.stream.draw import color_for_id, draw_objects, draw_text_line
from samedge.stream.latest import LatestFrameReader
from samedge.stream.memory import MemoryTracker, MemoryTrackerConfig
from samedge.stream.pipeline import STAGES, FrameResult, Pipeline, Stats, StatsSummary
from samedge.stream.reconnect import ReconnectingSource, ReconnectPolicy, SourceStatus
from samedge.stream.sinks import CallbackSink, Sink, VideoSink
from samedge.stream.sources import (
    Frame,
    FrameSource,
    ImageFolderSource,
    PushSource,
    SyntheticSource,
    VideoCaptureSource,
    jetson_csi_pipeline,
    open_source,
)
from samedge.stream.tracking import TrackedObject, Tracker, TrackerConfig, TrackState

__all__ = [
    "DEFAULT_OUTPUT",
    "STAGES",
    "CallbackSink",
    "Frame",
    "FrameResult",
    "FrameSource",
    "ImageFolderSource",
    "LatestFrameReader",
    "MemoryTracker",
    "MemoryTrackerConfig",
    "Pipeline",
    "Prompts",
    "PushSource",
    "ReconnectPolicy",
    "ReconnectingSource",
    "RunConfig",
    "RunReport",
    "Sink",
    "SourceStatus",
    "Stats",
    "StatsSummary",
    "Stream",
    "SyntheticSource",
    "TrackState",
    "TrackedObject",
    "Tracker",
    "TrackerConfig",
    "VideoCaptureSource",
    "VideoSink",
    "click_points",
    "color_for_id",
    "draw_objects",
    "draw_text_line",
    "jetson_csi_pipeline",
    "open_source",
    "open_stream",
    "run_demo",
]


class _CallableModule(types.ModuleType):
    """This package's module type: calling it calls :func:`open_stream`.

    Issue #6 promises robotics code ``for result in samedge.stream(source,
    prompts=..., model=...)``, but ``samedge.stream`` was already this package.
    Rather than rename the package (breaking ``from samedge.stream import ...``)
    or shadow it with a function, the module object itself is made callable:
    Python looks ``__call__`` up on the type, and a module's ``__class__`` may be
    set to a ``ModuleType`` subclass (supported since Python 3.5; see the data
    model's "Customizing module attribute access").
    """

    def __call__(self, *args: Any, **kwargs: Any) -> Stream:
        return open_stream(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        # The demo is built on samedge.session, which is built on this package:
        # importing it here, up front, would make `import samedge.session` circular.
        if name in _DEMO:
            from samedge.stream import demo

            return getattr(demo, name)
        raise AttributeError(f"module {self.__name__!r} has no attribute {name!r}")


_DEMO = frozenset({"DEFAULT_OUTPUT", "RunConfig", "RunReport", "click_points", "run_demo"})


sys.modules[__name__].__class__ = _CallableModule
