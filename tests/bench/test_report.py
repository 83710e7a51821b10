"""The report's views: JSON round trip, markdown, plot, ratios, and the README block."""

from __future__ import annotations

import dataclasses
import json

import pytest

from samedge.bench._plot import plot_points
from samedge.bench.records import Measurement
from samedge.bench.report import BenchReport, peer_ratios, with_fraction_of_peak
from samedge.errors import InputError
from tests.bench._rows import _peak, _report, _row


def test_fraction_of_peak_matches_backend_precision_and_isa():
    rows = [
        _row(gflops=4.0, ms=20.0),  # 200 GFLOP/s achieved
        _row(gflops=4.0, ms=20.0, isa="AVX512_CORE_VNNI"),  # no capped peak measured
        _row(backend="onnxruntime", precision="fp32", device="CPUExecutionProvider", gflops=4.0),
    ]
    peaks = [_peak(), _peak("onnxruntime", "fp32", 100.0, "CPUExecutionProvider")]
    out = with_fraction_of_peak(rows, peaks)
    assert out[0].fraction_of_peak == pytest.approx(0.5)
    assert out[1].fraction_of_peak is None
    assert out[2].fraction_of_peak == pytest.approx(4.0)  # 400 GFLOP/s over a 100 peak


def test_peer_ratios_against_default_and_fastest():
    rows = [
        _row(ms=10.0),  # openvino bf16: the default backend
        _row(backend="onnxruntime", precision="fp32", ms=40.0),
        _row(precision="int8", ms=5.0, model_precision="int8"),  # a build: not compared
        _row(suite="pytorch", backend="torch", precision="fp32", ms=80.0, model_precision=None,
             note="engine: image_encoder"),
        # The peer's API call includes its pre/post-processing: not against samedge's engine.
        _row(suite="pytorch", backend="torch", precision="fp32", ms=95.0, model_precision=None,
             note="api: SamPredictor.set_image"),
        _row(suite="pytorch", part="decoder", backend="torch", ms=3.0, objects=1,
             note="engine: mask_decoder"),
    ]  # fmt: skip
    ratios = peer_ratios(rows, "openvino")
    assert [(r["against"], r["ratio"]) for r in ratios] == [("default", 8.0), ("fastest", 8.0)]
    assert ratios[0]["samedge"] == "openvino bf16"
    assert peer_ratios(rows, "tensorrt")[0]["against"] == "fastest"
    # The markdown lists a "fastest" row only where it is not the default's own row.
    table = _report(rows, ratios=ratios).markdown().split("## Peer time / samedge time")[1]
    assert "| default: openvino bf16 |" in table
    assert "fastest:" not in table
    faster = [*rows, _row(backend="onnxruntime", precision="fp32", ms=4.0)]
    table = _report(faster, ratios=peer_ratios(faster, "openvino")).markdown()
    assert "| fastest: onnxruntime fp32 | 4.00 | 20.00× |" in table


def test_json_markdown_and_plot(tmp_path):
    rows = [
        _row(accuracy={"mean_iou_vs_fp32": 0.97}, gflops=77.5, fraction_of_peak=0.4),
        _row(part="decoder", objects=1, ms=2.0),
        _row(part="decoder", objects=16, ms=6.0),
        _row(part="predictor", objects=1, ms=15.0, accuracy={"mean_iou_vs_fp32": 0.97}),
        _row(part="predictor", objects=1, backend="onnxruntime", precision="fp32", ms=50.0),
    ]
    report = _report(rows, peaks=[_peak()])
    paths = report.save(tmp_path / "results" / "test-2c", "bench_mobile_sam")
    data = json.loads(paths["json"].read_text())
    assert BenchReport.from_json(data) == report
    assert BenchReport.load(paths["json"]).to_json() == data
    assert [Measurement.from_json(m) for m in data["measurements"]] == rows
    text = paths["markdown"].read_text()
    assert "`samedge bench mobile_sam --runs 3`" in text
    assert "| mobile_sam | fp32 | openvino | CPU | bf16 |  | 10.0 |" in text
    assert "3.00×" in text  # decoder B=16 / B=1
    assert "![latency vs accuracy](bench_mobile_sam.png)" in text
    assert paths["plot"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # The ONNX Runtime predictor row has no accuracy: named in the plot, not plotted.
    assert report.plot_png()[:4] == b"\x89PNG"


def test_markdown_says_how_the_decoder_batches_were_timed():
    rows = [_row(part="decoder", objects=1, ms=2.0), _row(part="decoder", objects=16, ms=6.0)]
    old = _report(rows)
    assert "1 warm-up + 3 timed runs per row; medians" in old.markdown()
    new = dataclasses.replace(old, settings={**old.settings, "decoder_batches": "round-robin"})
    assert "3 timed runs per row (the decoder's batch sizes round-robin); medians" in (
        new.markdown()
    )


def test_plot_draws_the_peers_beside_samedge():
    peer = {"model_precision": None, "device": "cpu"}
    rows = [
        _row(accuracy={"mean_iou_vs_fp32": 0.99}, ms=360.0),
        _row(precision="int8", model_precision="int8", ms=460.0, isa="AVX512_CORE_VNNI",
             accuracy={"mean_iou_vs_fp32": 0.97}),
        _row(part="predictor", objects=1, ms=1030.0, accuracy={"mean_iou_vs_fp32": 0.99}),
        _row(part="predictor", objects=4, ms=1300.0),  # more than one object: not drawn
        # PyTorch records no accuracy: drawn at its latency, not at a made-up IoU.
        _row(suite="pytorch", backend="torch", precision="fp32", ms=1620.0,
             note="engine: image_encoder forward", **peer),
        _row(suite="pytorch", backend="torch", precision="fp32", ms=1690.0,
             note="api: SamPredictor.set_image", **peer),  # its pre-processing: not drawn
        _row(suite="pytorch", part="predictor", objects=1, backend="torch", precision="fp32",
             ms=1610.0, note="api: set_image + predict", **peer),
        _row(suite="samexporter", backend="onnxruntime", precision="int8", ms=810.0,
             note="engine: encoder session.run", accuracy={"mask_iou_vs_fp32": 0.9859}, **peer),
        _row(suite="openvino-notebook", precision="bf16", ms=320.0, note="engine: compiled encoder",
             accuracy={"mask_iou_vs_fp32": 0.9948}, **peer),
        _row(suite="openvino-notebook", precision="int8", ms=228.0,
             note="engine: compiled encoder", accuracy={"mask_iou_vs_fp32": 0.9829}, **peer),
        _row(suite="openvino-notebook", part="predictor", objects=1, precision="int8", ms=364.0,
             note="api: preprocess + encoder + mask predictor + postprocess",
             accuracy={"mask_iou_vs_fp32": 0.9829}, **peer),
    ]  # fmt: skip
    points = plot_points(rows)
    assert [(p.part, p.label, p.ms, p.iou) for p in points] == [
        ("encoder", "samedge openvino bf16", 360.0, 0.99),
        ("encoder", "samedge openvino int8 [AVX512_CORE_VNNI cap] (int8 build)", 460.0, 0.97),
        ("predictor", "samedge openvino bf16", 1030.0, 0.99),
        ("encoder", "PyTorch predictor fp32", 1620.0, None),
        ("predictor", "PyTorch predictor fp32", 1610.0, None),
        ("encoder", "samexporter (ORT) dynamic INT8", 810.0, 0.9859),
        ("encoder", "OV notebook bf16", 320.0, 0.9948),
        ("encoder", "OV notebook NNCF INT8", 228.0, 0.9829),
        ("predictor", "OV notebook NNCF INT8", 364.0, 0.9829),
    ]
    assert [p.capped for p in points[:2]] == [False, True]
    assert _report(rows).plot_png()[:8] == b"\x89PNG\r\n\x1a\n"


def test_save_refuses_a_file_as_directory(tmp_path):
    (tmp_path / "out").write_text("x")
    with pytest.raises(InputError, match="is a file"):
        _report([_row()]).save(tmp_path / "out", "bench")


def test_load_refuses_other_json(tmp_path):
    (tmp_path / "x.json").write_text('{"a": 1}')
    with pytest.raises(InputError, match="not a samedge bench report"):
        BenchReport.load(tmp_path / "x.json")
