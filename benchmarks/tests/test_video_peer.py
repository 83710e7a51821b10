"""benchmarks/video_peer.py: Meta's video predictor timed beside a saved video report.

On the reduced SAM 2.1 (random weights, 256 px) and a small clip; no time is checked.
"""

from __future__ import annotations

import json

import pytest

pytest.importorskip("sam2", reason="the export extra (edgetam-dimos) is not installed")
pytest.importorskip("torch")

import video_peer

from samedge.bench.records import Timing
from samedge.bench.video import make_clip
from samedge.bench.video_report import VideoReport, VideoRow
from samedge.errors import InputError


def _model(tmp_path, seed: int | None) -> dict:
    return {
        "name": "sam2_reduced",
        "directory": str(tmp_path),
        "precision": "fp32",
        "weights": "random",
        "random_weights_seed": seed,
    }


def _report(tmp_path, model: dict) -> VideoReport:
    ours = VideoRow(
        suite="samedge",
        model="sam2_reduced",
        backend="onnxruntime",
        precision="fp32",
        objects=2,
        total=Timing.from_seconds([0.1, 0.2, 0.3]),
        frame_ms=(100.0, 200.0, 300.0),
        first_frame=2,
        default=True,
    )
    return VideoReport(
        machine={"name": "test"},
        versions={"samedge": "0"},
        command="samedge bench DIR --video",
        timestamp="t",
        settings={"warmup": 1, "frames": 3, "objects": [1, 2], "threads": 1},
        clip=make_clip((128, 96), 2),
        models=(model,),
        rows=(ours,),
    )


def test_peer_rows_and_ratios_on_the_same_frames(tmp_path):
    model = _model(tmp_path, 0)
    report = video_peer.add_video_peer(
        _report(tmp_path, model), frames=2, command="python benchmarks/video_peer.py R"
    )
    assert report.failures == ()
    peers = [r for r in report.rows if r.suite == "pytorch"]
    assert [(r.objects, r.backend, list(r.frames)) for r in peers] == [
        (1, "torch", [2, 3]),
        (2, "torch", [2, 3]),
    ]
    for row in peers:
        assert row.total.runs == len(row.frame_ms) == 2
        assert row.memory_bytes_per_object > 0
        assert row.threads == 1
    (ratio,) = report.peer_ratios()  # only 2 objects has a samedge row
    assert ratio.frames == (2, 3)
    assert ratio.samedge_ms == 150.0  # frames 2 and 3 of samedge's 2..4
    assert ratio.ratio == pytest.approx(peers[1].median_over(range(2, 4)) / 150.0)
    assert report.command.endswith("&& python benchmarks/video_peer.py R")
    assert report.settings["peer_frames"] == 2
    assert any(s.startswith("sam2-onnx") for s in report.skipped)
    assert "edgetam-dimos" in report.versions
    report.save(tmp_path, "bench_video")
    assert VideoReport.load(tmp_path / "bench_video.json").to_json() == json.loads(
        (tmp_path / "bench_video.json").read_text()
    )


def test_unknown_weights_and_bad_frames_are_refused(tmp_path):
    model = _model(tmp_path, None)
    report = video_peer.add_video_peer(_report(tmp_path, model), frames=1)
    (failure,) = report.failures
    assert "pass it with --checkpoint" in failure["error"]
    with pytest.raises(InputError, match="frames"):
        video_peer.add_video_peer(_report(tmp_path, model), frames=0)


def test_per_object_states_hold_what_one_batched_state_holds(tmp_path):
    """sam2 1.1's per-object form (EdgeTAM's only one here) tracks the same frames and memory."""
    from samedge.exporters.builders import resolve_builder
    from samedge.exporters.export import resolve_spec

    spec = resolve_spec("sam2_reduced")
    model = resolve_builder(spec)(None, seed=0)
    clip = make_clip((128, 96), 2)
    batched = video_peer.time_reference(model, spec, clip, 2, 1, 2, tmp_path / "a")
    single = video_peer.time_reference(model, spec, clip, 2, 1, 2, tmp_path / "b", per_object=True)
    assert len(batched["frame_s"]) == len(single["frame_s"]) == 2
    assert single["bank_bytes"] == batched["bank_bytes"] > 0
