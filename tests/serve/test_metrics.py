"""Prometheus text: histogram arithmetic, label escaping, and the /metrics endpoint."""

from __future__ import annotations

import math
import re

import pytest

from samedge.errors import InputError
from samedge.serve.metrics import Histogram, ServerMetrics, escape_label

# One sample line of the text format: name, optional {labels}, value.
SAMPLE = re.compile(
    r'^[a-zA-Z_:][a-zA-Z0-9_:]*(\{([a-zA-Z_][a-zA-Z0-9_]*="([^"\\]|\\.)*",?)*\})? '
    r"(-?[0-9.e+-]+|NaN|[+-]Inf)$"
)


def check_exposition(text: str) -> dict[str, float]:
    """Every line is a comment or a valid sample; returns samples by full name."""
    assert text.endswith("\n")
    samples = {}
    for line in text.splitlines():
        if line.startswith("# HELP ") or line.startswith("# TYPE "):
            continue
        assert SAMPLE.match(line), f"not a valid sample line: {line!r}"
        name, value = line.rsplit(" ", 1)
        samples[name] = float(value)
    return samples


def test_histogram_is_cumulative():
    h = Histogram([0.01, 0.1, 1.0])
    for v in (0.125, 0.01, 0.0625, 0.5, 4.0, math.nan):  # exact in binary
        h.observe(v)
    lines = h.lines("x_seconds", 'stage="a"')
    assert lines == [
        'x_seconds_bucket{stage="a",le="0.01"} 1',  # le is inclusive
        'x_seconds_bucket{stage="a",le="0.1"} 2',
        'x_seconds_bucket{stage="a",le="1"} 4',
        'x_seconds_bucket{stage="a",le="+Inf"} 5',
        'x_seconds_sum{stage="a"} 4.6975',
        'x_seconds_count{stage="a"} 5',
    ]
    assert h.count == 5


@pytest.mark.parametrize("buckets", [[], [0.1, 0.1], [0.2, 0.1], [1.0, math.inf]])
def test_histogram_rejects_bad_buckets(buckets):
    with pytest.raises(InputError, match="buckets"):
        Histogram(buckets)


def test_render_and_escaping():
    m = ServerMetrics()
    m.observe_frame(
        {"latency": 0.04, "encoder": 0.02, "decoder": 0.005, "capture": 0.001},
        ended=10.0,
        dropped=3,
        objects={"tracking": 2, "lost": 1},
    )
    m.observe_frame({"latency": 0.06}, ended=10.1)
    m.message_dropped()
    m.client_connected(+1)
    text = m.render({"model": 'we"ird\\name\n', "backend": "onnxruntime"}, up=True)
    samples = check_exposition(text)
    assert samples["samedge_frames_total"] == 2
    assert samples["samedge_dropped_frames_total"] == 3
    assert samples["samedge_fps"] == pytest.approx(10.0)
    assert samples['samedge_latency_seconds_bucket{le="0.05"}'] == 1
    assert samples['samedge_latency_seconds_bucket{le="+Inf"}'] == 2
    assert samples["samedge_latency_seconds_sum"] == pytest.approx(0.1)
    assert samples['samedge_stage_seconds_count{stage="encoder"}'] == 1
    assert samples['samedge_objects{state="tracking"}'] == 2
    assert samples["samedge_websocket_dropped_total"] == 1
    assert samples["samedge_websocket_clients"] == 1
    assert 'model="we\\"ird\\\\name\\n"' in text
    assert escape_label('a"b') == 'a\\"b'


def test_metrics_endpoint(client):
    r = client.get("/metrics")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/plain; version=0.0.4")
    samples = check_exposition(r.text)
    info = next(k for k in samples if k.startswith("samedge_info{"))
    assert 'backend="onnxruntime"' in info
    assert 'precision="fp32"' in info
    assert 'model="samedge_tiny"' in info
    assert samples["samedge_pipeline_up"] == 1
    assert samples["samedge_frames_total"] >= 1
    assert samples['samedge_latency_seconds_bucket{le="+Inf"}'] >= 1
    assert "samedge_dropped_frames_total" in samples
