"""``samedge bench --video``: the report's structure and ratios, and its one-line errors.

The end-to-end runs use the reduced SAM 2.1 (random weights, 256 px) on a
small clip; nothing here checks a time, only that the times are recorded,
split by graph and combined right.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from samedge.bench.records import Timing
from samedge.bench.video import VideoBenchConfig, make_clip, object_limit
from samedge.bench.video_report import (
    VIDEO_GRAPHS,
    VideoClip,
    VideoReport,
    VideoRow,
)
from samedge.cli import main
from samedge.errors import InputError

_SMALL = ["--frames", "2", "--warmup", "1", "--backend", "onnxruntime"]


@pytest.fixture(scope="module")
def sam2_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("sam2", reason="the export extra (edgetam-dimos) is not installed")
    pytest.importorskip("torch")
    from samedge.exporters import export_model
    from samedge.exporters.export import ExportConfig

    out = tmp_path_factory.mktemp("video") / "sam2_reduced"
    export_model("sam2_reduced", None, out, config=ExportConfig(progress=False, verify=False))
    return out


def _one_line_error(capsys: pytest.CaptureFixture[str], argv: list[str]) -> str:
    assert main(argv) == 1
    err = capsys.readouterr().err.strip()
    assert "\n" not in err, err
    assert err.startswith("samedge bench: error: ")
    return err


# -- end to end --------------------------------------------------------------------------


def test_video_bench_writes_rows_split_by_graph(capsys, tmp_path, sam2_dir):
    out = tmp_path / "results"
    argv = ["-q", "bench", str(sam2_dir), "--video", "--objects", "1,2", *_SMALL,
            "--output", str(out), "--machine", "test-machine"]  # fmt: skip
    assert main(argv) == 0
    stdout = capsys.readouterr().out
    # " (default)" where ONNX Runtime is this machine's automatic choice (no native bf16).
    assert re.search(r"sam2_reduced onnxruntime fp32( \(default\))? 2 object\(s\):", stdout)
    assert {p.name for p in out.iterdir()} == {
        "bench_video_sam2_reduced.json",
        "bench_video_sam2_reduced.md",
    }
    data = json.loads((out / "bench_video_sam2_reduced.json").read_text())
    report = VideoReport.from_json(data)
    assert report.to_json() == data
    assert report.failures == ()
    assert report.machine["name"] == "test-machine"
    assert "bench " + str(sam2_dir) + " --video" in report.command
    assert {"samedge", "onnxruntime", "numpy"} <= set(report.versions)
    assert "load_average_1min" in report.machine
    assert [r.objects for r in report.rows] == [1, 2]
    bound = report.models[0]["memory_bytes_per_object_max"]
    for row in report.rows:
        assert VideoRow.from_json(row.to_json()) == row
        assert (row.suite, row.backend, row.precision, row.threads) == (
            "samedge", "onnxruntime", "fp32", report.settings["threads"],
        )  # fmt: skip
        assert set(row.graphs) == set(VIDEO_GRAPHS)
        assert row.total.runs == len(row.frame_ms) == 2
        assert list(row.frames) == [2, 3]  # frame 0 prompted, frame 1 warm-up
        assert all(g.runs == 2 for g in row.graphs.values())
        # Each frame is exactly encoder + the tracker's step, whose parts are the other
        # graphs and the tracker's own work: the means add up (medians need not).
        parts = sum(g.mean_ms for g in row.graphs.values())
        assert parts == pytest.approx(row.total.mean_ms, rel=0.02, abs=1.0)
        assert all(g.min_ms > 0 for name, g in row.graphs.items() if name != "tracker")
        # Conditioning frame + recent frames + pointers, float32, within the card's bound.
        assert 0 < row.memory_bytes_per_object <= bound
        assert row.peak_rss_mib > 0
        assert row.build_s > 0
    # The same clip for every row: two objects are the first one plus the next largest.
    assert report.clip.object_ids[:1] == make_clip((640, 480), 2).object_ids[:1]
    (scaling,) = report.scaling()
    assert (scaling.base_objects, scaling.objects) == (1, 2)
    assert scaling.ratio == report.rows[1].total.median_ms / report.rows[0].total.median_ms
    assert data["scaling"][0]["ratio"] == scaling.ratio
    text = (out / "bench_video_sam2_reduced.md").read_text()
    for heading in ("## Per-frame latency", "## Scaling with objects", "## Per-graph profile"):
        assert heading in text
    assert re.search(
        r"\| sam2_reduced \| samedge \| onnxruntime( \(default\))? \| fp32 \| 2 \| 2-3 \|", text
    )


def test_sam1_model_is_refused_before_anything_runs(capsys, tmp_path):
    err = _one_line_error(capsys, ["-q", "bench", "samedge_tiny", "--video", "-o", str(tmp_path)])
    assert "--video: got samedge_tiny" in err
    assert "SAM 2-family" in err
    # A registry name is refused before its random-weight export.
    err = _one_line_error(capsys, ["-q", "bench", "mobile_sam", "--video", "-o", str(tmp_path)])
    assert "family 'sam'" in err
    assert "sam2.1_hiera_tiny" in err
    assert not any(tmp_path.iterdir())


def test_more_objects_than_the_graphs_take(capsys, tmp_path, sam2_dir):
    onnx = pytest.importorskip("onnx")
    fixed = tmp_path / "fixed"
    shutil.copytree(sam2_dir, fixed)
    graph = onnx.load(str(fixed / "memory_encoder.onnx"))
    (mask,) = [i for i in graph.graph.input if i.name == "mask_logits"]
    mask.type.tensor_type.shape.dim[0].dim_value = 2  # a static export for 2 objects
    onnx.save(graph, str(fixed / "memory_encoder.onnx"))
    assert object_limit(fixed)[0] == 2
    assert object_limit(sam2_dir) == (None, "")
    argv = ["-q", "bench", str(fixed), "--video", "--objects", "1,3", *_SMALL]
    err = _one_line_error(capsys, [*argv, "-o", str(tmp_path / "out")])
    assert "objects: got 3" in err
    assert "at most 2 per call" in err
    assert "--objects up to 2" in err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--frames", "3"], "--frames: not used without --video"),
        (["--video", "--runs", "3"], "--runs: not used with --video"),
        (["--video", "--isa-cap"], "--isa-cap: not used with --video"),
        (["--video", "--objects", "0"], "counts >= 1"),
        (["--video", "--objects", "1,1"], "each count once"),
        (["--video", "--frames", "0"], "frames: got 0"),
    ],
)
def test_bad_flags(capsys, tmp_path, flags, message):
    err = _one_line_error(capsys, ["-q", "bench", "edgetam", *flags, "-o", str(tmp_path)])
    assert message in err


def test_no_model_with_video(capsys):
    assert "sam2.1_hiera_tiny" in _one_line_error(capsys, ["-q", "bench", "--video"])


def test_clip_with_too_few_objects():
    with pytest.raises(InputError, match=r"shows only \d+ objects to prompt"):
        make_clip((96, 64), 40)
    clip = make_clip((640, 480), 8)
    assert len(clip.object_ids) == len(set(clip.object_ids)) == 8
    assert clip.frames(2)[1].shape == (480, 640, 3)
    assert VideoClip.from_dict(json.loads(json.dumps(clip.to_dict()))) == clip


@pytest.mark.parametrize(
    ("field", "value"),
    [("objects", ()), ("objects", (True,)), ("frames", 0), ("warmup", -1), ("threads", 0),
     ("backends", ("cuda",)), ("precisions", ("fp64",)), ("frame_size", (32, 32))],
)  # fmt: skip
def test_config_validation(field, value):
    with pytest.raises(InputError, match=field):
        VideoBenchConfig(**{field: value})


# -- ratios from rows --------------------------------------------------------------------


def _row(suite: str, objects: int, frame_ms: list[float], first: int, **kw: object) -> VideoRow:
    return VideoRow(
        suite=suite,
        model="m",
        backend=kw.pop("backend", "torch" if suite == "pytorch" else "onnxruntime"),  # type: ignore[arg-type]
        precision="fp32",
        objects=objects,
        total=Timing.from_seconds([ms / 1e3 for ms in frame_ms]),
        frame_ms=tuple(frame_ms),
        first_frame=first,
        **kw,  # type: ignore[arg-type]
    )


def _report(rows: list[VideoRow]) -> VideoReport:
    return VideoReport(
        machine={"name": "x"},
        versions={},
        command="c",
        timestamp="t",
        settings={"warmup": 6, "frames": 4},
        clip=make_clip((640, 480), 1),
        rows=tuple(rows),
    )


def test_scaling_is_each_count_over_the_fewest():
    report = _report(
        [
            _row("samedge", 8, [40.0, 44.0, 42.0], 7),
            _row("samedge", 1, [10.0, 12.0, 11.0], 7),
            _row("samedge", 3, [20.0, 20.0, 20.0], 7),
            _row("samedge", 1, [5.0, 5.0, 5.0], 7, backend="openvino"),
            _row("samedge", 8, [30.0, 30.0, 30.0], 7, backend="openvino"),
        ]
    )
    got = {(s.backend, s.objects): (s.base_objects, s.ratio) for s in report.scaling()}
    assert got == {
        ("onnxruntime", 3): (1, 20.0 / 11.0),
        ("onnxruntime", 8): (1, 42.0 / 11.0),
        ("openvino", 8): (1, 6.0),
    }


def test_peer_ratio_uses_the_frames_both_timed():
    # samedge timed frames 7..12; the peer timed 7..9 only: samedge's later, faster
    # frames must not enter its median.
    ours = _row("samedge", 3, [100.0, 110.0, 120.0, 1.0, 1.0, 1.0], 7, default=True)
    other = _row("samedge", 3, [50.0] * 6, 7, backend="openvino")
    peer = _row("pytorch", 3, [900.0, 1100.0, 1000.0], 7)
    unmatched = _row("pytorch", 8, [1.0], 7)  # no samedge row with 8 objects
    ratios = _report([ours, other, peer, unmatched]).peer_ratios()
    assert [(r.backend, r.default, r.frames) for r in ratios] == [
        ("onnxruntime", True, (7, 9)),
        ("openvino", False, (7, 9)),
    ]
    assert (ratios[0].peer_ms, ratios[0].samedge_ms) == (1000.0, 110.0)
    assert ratios[0].ratio == pytest.approx(1000.0 / 110.0)
    assert ratios[1].ratio == pytest.approx(20.0)
    data = _report([ours, peer]).to_json()
    assert data["peer_ratios"][0]["ratio"] == pytest.approx(1000.0 / 110.0)
    assert "## Against the peers" in _report([ours, peer]).markdown()


def test_row_and_report_checks(tmp_path):
    with pytest.raises(InputError, match="graphs"):
        _row("samedge", 1, [1.0], 1, graphs={"vision": Timing.from_seconds([1.0])})
    with pytest.raises(InputError, match="frame times"):
        VideoRow("samedge", "m", "onnxruntime", "fp32", 1, Timing.from_seconds([1.0, 2.0]),
                 frame_ms=(1.0,))  # fmt: skip
    path = tmp_path / "bench.json"
    path.write_text(json.dumps({"format": 1, "measurements": []}))
    with pytest.raises(InputError, match="not a video bench report"):
        VideoReport.load(path)
    with pytest.raises(InputError, match="is a file"):
        _report([]).save(path, "x")
