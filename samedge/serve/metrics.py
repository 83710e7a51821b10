"""Server metrics in the Prometheus text exposition format, without a client library.

What ``GET /metrics`` serves: frame and drop counters, a recent FPS gauge,
end-to-end latency and per-stage histograms, tracked objects by state, the
source's connection state (connected gauge, drop-out and reconnect counters),
WebSocket clients and the messages dropped for slow ones, and an info gauge
whose labels name the model, backend, precision, device and source.

Everything here is thread-safe: the pipeline thread records frames, the
server's event loop records WebSocket traffic and renders the text.

Example:
    >>> m = ServerMetrics()
    >>> m.observe_frame({"latency": 0.02, "encoder": 0.01}, ended=1.0)
    >>> "samedge_frames_total 1" in m.render({"model": "samedge_tiny"})
    True
"""

from __future__ import annotations

import bisect
import collections
import itertools
import math
import threading
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from samedge.errors import InputError

if TYPE_CHECKING:
    from samedge.stream.reconnect import SourceStatus

__all__ = ["LATENCY_BUCKETS", "STAGE_BUCKETS", "Histogram", "ServerMetrics", "escape_label"]

# Seconds. End to end (capture to result) on an edge device spans ~10 ms to ~1 s.
LATENCY_BUCKETS = (0.005, 0.01, 0.02, 0.033, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1.0, 2.5)
# Single stages are shorter; the same grid minus the slowest buckets plus a finer start.
STAGE_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.02, 0.033, 0.05, 0.1, 0.25, 0.5, 1.0)
# The stages worth a histogram (draw and sinks are near zero in the server).
HISTOGRAM_STAGES = ("capture", "encoder", "decoder", "postprocess")
_FPS_WINDOW = 60


def escape_label(value: str) -> str:
    """Escape a label value as the text format requires (backslash, quote, newline)."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _fmt(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value)) if not float(value).is_integer() else str(int(value))


class Histogram:
    """A cumulative Prometheus histogram of seconds.

    Args:
        buckets: Increasing upper bounds; ``+Inf`` is added.

    Raises:
        InputError: ``buckets`` is empty, not increasing, or not finite.
    """

    def __init__(self, buckets: Sequence[float]) -> None:
        bounds = [float(b) for b in buckets]
        if not bounds or any(not math.isfinite(b) for b in bounds):
            raise InputError(f"buckets: got {list(buckets)}, expected finite upper bounds")
        if any(b >= c for b, c in itertools.pairwise(bounds)):
            raise InputError(f"buckets: got {bounds}, expected strictly increasing bounds")
        self.bounds = tuple(bounds)
        self._counts = [0] * (len(bounds) + 1)  # last = above every bound (+Inf only)
        self._sum = 0.0
        self._lock = threading.Lock()

    def observe(self, value: float) -> None:
        """Add one sample (NaN samples are ignored: they carry no time)."""
        if math.isnan(value):
            return
        with self._lock:
            self._counts[bisect.bisect_left(self.bounds, value)] += 1
            self._sum += value

    @property
    def count(self) -> int:
        with self._lock:
            return sum(self._counts)

    def lines(self, name: str, labels: str = "") -> list[str]:
        """The ``_bucket``/``_sum``/``_count`` sample lines; ``labels`` like ``stage="encoder"``."""
        with self._lock:
            counts, total = list(self._counts), self._sum
        sep = "," if labels else ""
        out = []
        cumulative = 0
        for bound, n in zip((*self.bounds, math.inf), counts, strict=True):
            cumulative += n
            out.append(f'{name}_bucket{{{labels}{sep}le="{_fmt(bound)}"}} {cumulative}')
        braces = f"{{{labels}}}" if labels else ""
        out.append(f"{name}_sum{braces} {_fmt(total)}")
        out.append(f"{name}_count{braces} {cumulative}")
        return out


class ServerMetrics:
    """Counters, gauges and histograms of a running server."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.frames = 0
        self.dropped = 0
        self.latency = Histogram(LATENCY_BUCKETS)
        self.stages = {name: Histogram(STAGE_BUCKETS) for name in HISTOGRAM_STAGES}
        self._ends: collections.deque[float] = collections.deque(maxlen=_FPS_WINDOW)
        self._last_latency = math.nan
        self.objects: dict[str, int] = {"tracking": 0, "lost": 0, "occluded": 0, "pending": 0}
        self.ws_clients = 0
        self.ws_messages = 0
        self.ws_dropped = 0
        self.prompt_errors = 0

    def observe_frame(
        self,
        timings: Mapping[str, float],
        *,
        ended: float,
        dropped: int | None = None,
        objects: Mapping[str, int] | None = None,
    ) -> None:
        """Record one processed frame.

        Args:
            timings: Seconds per stage, with ``"latency"`` (capture to result).
            ended: ``time.perf_counter()`` when the result was ready (for the FPS).
            dropped: The pipeline's total of frames dropped by the capture thread.
            objects: Objects by state after this frame.
        """
        latency = timings.get("latency", math.nan)
        self.latency.observe(latency)
        for name, hist in self.stages.items():
            if name in timings:
                hist.observe(timings[name])
        with self._lock:
            self.frames += 1
            self._ends.append(ended)
            self._last_latency = latency
            if dropped is not None:
                self.dropped = dropped
            if objects is not None:
                self.objects = {k: int(objects.get(k, 0)) for k in self.objects}

    def fps(self) -> float:
        """Frames per second over the last ``_FPS_WINDOW`` results (0 before two)."""
        with self._lock:
            ends = list(self._ends)
        if len(ends) < 2 or ends[-1] <= ends[0]:
            return 0.0
        return (len(ends) - 1) / (ends[-1] - ends[0])

    @property
    def last_latency(self) -> float:
        with self._lock:
            return self._last_latency

    def client_connected(self, delta: int) -> None:
        with self._lock:
            self.ws_clients += delta

    def message_sent(self) -> None:
        with self._lock:
            self.ws_messages += 1

    def message_dropped(self) -> None:
        with self._lock:
            self.ws_dropped += 1

    def prompt_rejected(self) -> None:
        with self._lock:
            self.prompt_errors += 1

    def render(
        self, info: Mapping[str, str], *, up: bool = True, source: SourceStatus | None = None
    ) -> str:
        """The Prometheus text exposition (version 0.0.4) of every metric.

        Args:
            info: Labels of the ``samedge_info`` gauge (model, backend, precision, ...).
            up: Whether the pipeline thread is running.
            source: Connection state of a source that reconnects; ``None`` for
                sources that cannot drop out (connected while ``up``).
        """
        labels = ",".join(f'{k}="{escape_label(str(v))}"' for k, v in sorted(info.items()))
        with self._lock:
            frames, dropped = self.frames, self.dropped
            objects = dict(self.objects)
            clients, sent, ws_dropped = self.ws_clients, self.ws_messages, self.ws_dropped
            prompt_errors = self.prompt_errors
        lines = [
            "# HELP samedge_info Model, backend, precision, device and source being served.",
            "# TYPE samedge_info gauge",
            f"samedge_info{{{labels}}} 1",
            "# HELP samedge_pipeline_up 1 while the pipeline thread runs.",
            "# TYPE samedge_pipeline_up gauge",
            f"samedge_pipeline_up {int(up)}",
            "# HELP samedge_source_connected 1 while the source delivers frames, 0 while a "
            "dropped camera or stream is being reopened.",
            "# TYPE samedge_source_connected gauge",
            f"samedge_source_connected {int(source.connected if source is not None else up)}",
            "# HELP samedge_source_dropouts_total Times the source dropped out.",
            "# TYPE samedge_source_dropouts_total counter",
            f"samedge_source_dropouts_total {source.dropouts if source is not None else 0}",
            "# HELP samedge_source_reconnect_attempts_total Attempts to reopen the source.",
            "# TYPE samedge_source_reconnect_attempts_total counter",
            f"samedge_source_reconnect_attempts_total {source.attempts if source else 0}",
            "# HELP samedge_source_reconnects_total Successful reopenings of the source.",
            "# TYPE samedge_source_reconnects_total counter",
            f"samedge_source_reconnects_total {source.reconnects if source is not None else 0}",
            "# HELP samedge_frames_total Frames processed.",
            "# TYPE samedge_frames_total counter",
            f"samedge_frames_total {frames}",
            "# HELP samedge_dropped_frames_total Frames the capture thread replaced before "
            "they were processed.",
            "# TYPE samedge_dropped_frames_total counter",
            f"samedge_dropped_frames_total {dropped}",
            f"# HELP samedge_fps Frames per second over the last {_FPS_WINDOW} frames.",
            "# TYPE samedge_fps gauge",
            f"samedge_fps {_fmt(self.fps())}",
            "# HELP samedge_latency_seconds End-to-end latency, capture to result.",
            "# TYPE samedge_latency_seconds histogram",
            *self.latency.lines("samedge_latency_seconds"),
            "# HELP samedge_stage_seconds Time per pipeline stage.",
            "# TYPE samedge_stage_seconds histogram",
        ]
        for name, hist in self.stages.items():
            lines += hist.lines("samedge_stage_seconds", f'stage="{name}"')
        lines += [
            "# HELP samedge_objects Objects by tracking state.",
            "# TYPE samedge_objects gauge",
            *(f'samedge_objects{{state="{k}"}} {v}' for k, v in sorted(objects.items())),
            "# HELP samedge_websocket_clients Connected WebSocket clients.",
            "# TYPE samedge_websocket_clients gauge",
            f"samedge_websocket_clients {clients}",
            "# HELP samedge_websocket_messages_total Frame messages sent to WebSocket clients.",
            "# TYPE samedge_websocket_messages_total counter",
            f"samedge_websocket_messages_total {sent}",
            "# HELP samedge_websocket_dropped_total Frame messages dropped for clients that "
            "read too slowly.",
            "# TYPE samedge_websocket_dropped_total counter",
            f"samedge_websocket_dropped_total {ws_dropped}",
            "# HELP samedge_prompt_errors_total Prompts rejected with a 4xx.",
            "# TYPE samedge_prompt_errors_total counter",
            f"samedge_prompt_errors_total {prompt_errors}",
        ]
        return "\n".join(lines) + "\n"
