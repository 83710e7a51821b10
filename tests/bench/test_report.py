"""The report's views: JSON round trip, markdown, plot, ratios, and the README block."""

from __future__ import annotations

import json

import pytest

from samedge.bench.peak import PeakRate
from samedge.bench.records import Measurement, Timing
from samedge.bench.report import (
    README_BEGIN,
    README_END,
    BenchReport,
    peer_ratios,
    update_readme,
    with_fraction_of_peak,
)
from samedge.errors import InputError


def _t(ms: float) -> Timing:
    return Timing.from_seconds([ms / 1e3] * 3)


def _row(part="encoder", backend="openvino", precision="bf16", ms=10.0, **kw) -> Measurement:
    fields = {
        "suite": "samedge",
        "model": "mobile_sam",
        "backend": backend,
        "precision": precision,
        "part": part,
        "timing": _t(ms),
        "device": "CPU",
        "model_precision": "fp32",
    }
    fields.update(kw)
    return Measurement(**fields)


def _report(rows, peaks=(), ratios=()) -> BenchReport:
    return BenchReport(
        machine={"name": "test-2c", "cpu": "Test CPU", "cores": 2, "cpu_flags": ["avx2"]},
        versions={"samedge": "0.1.0"},
        command="samedge bench mobile_sam --runs 3",
        timestamp="2026-11-25T03:30:00+00:00",
        settings={"threads": 2, "runs": 3, "warmup": 1, "frame_size": [640, 480]},
        models=({"name": "mobile_sam", "precision": "fp32", "encoder_gflops": 77.5},),
        measurements=tuple(rows),
        peaks=tuple(peaks),
        ratios=tuple(ratios),
        default={"choice": "openvino on cpu", "backend": "openvino"},
    )


def _peak(backend="openvino", precision="bf16", rate=400.0, device="CPU") -> PeakRate:
    return PeakRate(backend, precision, device, None, 2, 64, rate, rate, "MatMul fp32", precision,
                    _t(1.0))  # fmt: skip


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


def test_save_refuses_a_file_as_directory(tmp_path):
    (tmp_path / "out").write_text("x")
    with pytest.raises(InputError, match="is a file"):
        _report([_row()]).save(tmp_path / "out", "bench")


def test_load_refuses_other_json(tmp_path):
    (tmp_path / "x.json").write_text('{"a": 1}')
    with pytest.raises(InputError, match="not a samedge bench report"):
        BenchReport.load(tmp_path / "x.json")


README = """# project

Intro text.

## Performance

Numbers below.

{begin}
old table
{end}

## After

More text, untouched.
"""


def test_readme_block_rewrite_is_idempotent_and_local(tmp_path):
    results = tmp_path / "benchmarks" / "results"
    rows = [
        _row(gflops=77.5, fraction_of_peak=0.4, accuracy={"mean_iou_vs_fp32": 0.97}),
        _row(part="decoder", objects=1, ms=2.0),
        _row(part="decoder", objects=16, ms=6.0),
        _row(part="predictor", objects=1, ms=15.0),
    ]
    _report(rows).save(results / "test-2c", "bench_mobile_sam")
    readme = tmp_path / "README.md"
    readme.write_text(README.format(begin=README_BEGIN, end=README_END))
    before, after = (
        readme.read_text().split(README_BEGIN)[0],
        readme.read_text().split(README_END)[1],
    )
    assert update_readme(readme, results) is True
    text = readme.read_text()
    assert text.split(README_BEGIN)[0] == before
    assert text.split(README_END)[1] == after
    block = text.split(README_BEGIN)[1].split(README_END)[0]
    assert "old table" not in block
    assert (
        "| mobile_sam | fp32 | openvino | bf16 | 10.0 | 40% | 2.00 | 6.00 | 15.0 | 0.970 |" in block
    )
    assert "[bench_mobile_sam.json](benchmarks/results/test-2c/bench_mobile_sam.json)" in block
    assert update_readme(readme, results) is False
    assert readme.read_text() == text


def test_readme_without_markers_is_refused(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text("# no markers\n")
    with pytest.raises(InputError, match="marker"):
        update_readme(readme, tmp_path)
    readme.write_text(f"{README_END}\n{README_BEGIN}\n")
    with pytest.raises(InputError, match="before"):
        update_readme(readme, tmp_path)
    with pytest.raises(InputError, match="not a file"):
        update_readme(tmp_path / "missing.md", tmp_path)
