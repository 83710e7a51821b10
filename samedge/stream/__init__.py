"""Streams of frames: sources, tracking by re-prompting, drawing, the frame loop, the demo.

The pieces stay separate so that ``samedge run`` (the demo) and the camera
server reuse them:

* :mod:`~samedge.stream.sources`: :func:`open_source` for the synthetic scene,
  cameras, files, URLs, GStreamer pipelines and image folders;
* :mod:`~samedge.stream.tracking`: :class:`Tracker`, objects with stable ids
  followed by re-prompting, all decoded in one batched call per frame;
* :mod:`~samedge.stream.draw`: mask overlays, ids, boxes, a status line;
* :mod:`~samedge.stream.sinks`: video file (or PNG frames) and callback sinks;
* :mod:`~samedge.stream.pipeline`: :class:`Pipeline` and its per-stage :class:`Stats`;
* :mod:`~samedge.stream.demo`: :func:`run_demo`, what ``samedge run`` calls.

Example:
    >>> from samedge.stream import RunConfig, run_demo
    >>> print(run_demo(RunConfig(frames=60)).format())     # doctest: +SKIP
"""

from __future__ import annotations

from samedge.stream.demo import DEFAULT_OUTPUT, RunConfig, RunReport, click_points, run_demo
from samedge.stream.draw import color_for_id, draw_objects, draw_text_line
from samedge.stream.pipeline import STAGES, FrameResult, Pipeline, Stats, StatsSummary
from samedge.stream.sinks import CallbackSink, Sink, VideoSink
from samedge.stream.sources import (
    Frame,
    FrameSource,
    ImageFolderSource,
    LatestFrameReader,
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
    "Pipeline",
    "RunConfig",
    "RunReport",
    "Sink",
    "Stats",
    "StatsSummary",
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
    "run_demo",
]
