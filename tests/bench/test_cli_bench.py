"""``samedge bench`` end to end on samedge_tiny, and its one-line errors."""

from __future__ import annotations

import json

import pytest

from samedge.bench.records import Measurement
from samedge.bench.report import BenchReport
from samedge.cli import main


def _one_line_error(capsys: pytest.CaptureFixture[str], argv: list[str]) -> str:
    assert main(argv) == 1
    err = capsys.readouterr().err.strip()
    assert "\n" not in err, err
    assert err.startswith("samedge bench: error: ")
    return err


def test_unknown_model_suggests_the_closest_name(capsys, tmp_path):
    err = _one_line_error(capsys, ["-q", "bench", "mobile_sm", "--output", str(tmp_path)])
    assert "Did you mean 'mobile_sam'?" in err


def test_a_file_is_not_a_model(capsys, tmp_path):
    (tmp_path / "model.onnx").write_bytes(b"x")
    err = _one_line_error(capsys, ["-q", "bench", str(tmp_path / "model.onnx")])
    assert "is a file" in err


@pytest.mark.parametrize(("objects", "message"), [("0", "counts >= 1"), ("1,x", "1,4,16")])
def test_bad_objects(capsys, tmp_path, objects, message):
    err = _one_line_error(
        capsys, ["-q", "bench", "samedge_tiny", "--objects", objects, "--output", str(tmp_path)]
    )
    assert message in err


def test_output_that_is_a_file(capsys, tmp_path):
    (tmp_path / "results").write_text("x")
    err = _one_line_error(
        capsys, ["-q", "bench", "samedge_tiny", "--output", str(tmp_path / "results")]
    )
    assert "is a file" in err


def test_no_model(capsys):
    assert "got no model" in _one_line_error(capsys, ["-q", "bench"])


def test_bench_samedge_tiny_writes_json_markdown_and_plot(capsys, tmp_path, monkeypatch):
    out = tmp_path / "results" / "test-machine"
    argv = [
        "-q", "bench", "samedge_tiny", "--backend", "onnxruntime", "--runs", "2",
        "--warmup", "0", "--objects", "1,2", "--peak-size", "64", "--output", str(out),
        "--machine", "test-machine",
    ]  # fmt: skip
    assert main(argv) == 0
    stdout = capsys.readouterr().out
    assert "samedge_tiny (fp32) encoder onnxruntime fp32:" in stdout
    files = {p.name for p in out.iterdir()}
    assert files == {"bench_samedge_tiny.json", "bench_samedge_tiny.md", "bench_samedge_tiny.png"}

    data = json.loads((out / "bench_samedge_tiny.json").read_text())
    report = BenchReport.from_json(data)
    assert report.to_json() == data
    assert report.failures == ()
    assert report.machine["name"] == "test-machine"
    assert "bench samedge_tiny" in report.command  # the exact command line, recorded
    assert "--runs 2" in report.command
    assert {"samedge", "onnxruntime", "numpy"} <= set(report.versions)
    parts = sorted((m.part, m.objects) for m in report.measurements)
    assert parts == [("decoder", 1), ("decoder", 2), ("encoder", None), ("predictor", 1),
                     ("predictor", 2)]  # fmt: skip
    for row in report.measurements:
        assert Measurement.from_json(row.to_json()) == row
        assert row.suite == "samedge"
        assert row.backend == "onnxruntime"
        assert row.threads is not None
        assert row.timing.runs == 2
        assert row.peak_rss_mib > 0
        assert row.build_s > 0
        assert row.engine_mib > 0
        assert row.gflops > 0
        # ONNX Runtime fp32 on the fp32 directory is the reference itself.
        assert row.accuracy["mean_iou_vs_fp32"] == 1.0
    (encoder,) = report.rows("encoder")
    (peak,) = report.peaks
    assert (peak.backend, peak.precision, peak.size) == ("onnxruntime", "fp32", 64)
    assert encoder.fraction_of_peak == pytest.approx(
        encoder.gflops / (encoder.timing.median_ms * 1e-3) / peak.best_gflops_per_s
    )
    assert report.models[0]["encoder_gflops"] == pytest.approx(encoder.gflops)

    text = (out / "bench_samedge_tiny.md").read_text()
    assert "## Encoder" in text
    assert "## Decoder (B objects in one call)" in text
    assert "## Measured peak GEMM rate" in text
    assert (out / "bench_samedge_tiny.png").read_bytes()[:4] == b"\x89PNG"
    assert "| samedge_tiny | fp32 | onnxruntime | fp32 |" in "\n".join(report.overview_markdown())
    # Without --output, results go under the current directory, wherever that is.
    monkeypatch.chdir(tmp_path)
    assert main([*argv[:-4], "--machine", "elsewhere", "--parts", "encoder"]) == 0
    assert (tmp_path / "samedge-bench" / "elsewhere" / "bench_samedge_tiny.json").is_file()
