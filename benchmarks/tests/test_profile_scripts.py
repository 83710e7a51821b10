"""The profiling scripts: encoder per-precision profile and the generator threshold sweep."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from generator_thresholds import Row, _iou, best
from generator_thresholds import markdown as thresholds_markdown
from profile_decoder import _decoder_path, nodes_markdown
from profile_decoder import main as decoder_main
from profile_encoder import is_gemm, kernel_precision, markdown, profile
from profile_ort_spinning import main as spinning_main

TINY = Path(__file__).resolve().parents[2] / "samedge" / "assets" / "samedge_tiny"


@pytest.mark.parametrize(
    ("exec_type", "precision"),
    [
        ("brgemm_avx512_amx_I8", "int8"),
        ("jit_avx512_U8", "int8"),
        ("brgconv_avx512_dw_bf16", "bf16"),
        ("brgemm_avx2_FP32", "fp32"),
        ("ref_any_f32", "fp32"),
        ("unknown_I32", "int32"),
        ("undef", "undef"),
    ],
)
def test_kernel_precision_reads_the_exec_type_tail(exec_type: str, precision: str) -> None:
    assert kernel_precision(exec_type) == precision


def test_gemm_class_covers_quantized_forms_but_not_fused_subgraphs() -> None:
    assert is_gemm("FullyConnectedQuantizedLegacy")
    assert is_gemm("ConvolutionBackpropData")
    assert is_gemm("GroupConvolution")
    assert not is_gemm("Subgraph")
    assert not is_gemm("Transpose")


@pytest.mark.openvino
def test_profile_of_the_shipped_encoder_adds_up() -> None:
    pytest.importorskip("openvino")
    p = profile(TINY, "f32", threads=1, runs=1, isa=None)
    assert p.wall_ms > 0
    assert p.gflop is not None
    assert p.gflop > 0
    assert p.counted_ms == pytest.approx(sum(p.by_type.values()))
    assert p.counted_ms == pytest.approx(sum(p.by_precision.values()))
    # A float graph under an f32 hint: every executed kernel is fp32, none int8.
    assert all(k.endswith(("fp32", "int32")) for k in p.by_precision), p.by_precision
    assert p.gemm_ms > 0
    assert sum(p.gemm_nodes.values()) > 0
    assert p.float_gemms == []  # listed only for quantized graphs
    text = markdown([p], "cmd", ["header"])
    assert "| fp32 samedge_tiny | f32 |" in text


def test_profile_decoder_takes_a_decoder_file_or_a_model_directory(tmp_path: Path) -> None:
    assert _decoder_path(TINY) == str(TINY / "decoder.onnx")
    assert _decoder_path(TINY / "decoder.onnx") == str(TINY / "decoder.onnx")
    with pytest.raises(ValueError, match="not a samedge model directory"):
        _decoder_path(tmp_path)
    with pytest.raises(ValueError, match="no such file"):
        _decoder_path(tmp_path / "missing.onnx")


def test_nodes_markdown_shows_which_nodes_amortise() -> None:
    ops = {
        "batched": {
            "ort": {
                1: {"Gemm shared": 9.0, "Gemm up1": 6.0, "Add a": 0.5, "Add b": 0.25},
                16: {"Gemm shared": 9.6, "Gemm up1": 96.0, "Add a": 8.0, "Add b": 4.0},
            }
        }
    }
    lines = nodes_markdown(ops, top=2)
    assert "### batched, ort" in lines
    assert "| node | B=1 ms | B=16 ms | B=16 per object | per object / B=1 |" in lines
    assert "| Gemm `up1` | 6.0 | 96.0 | 6.00 | 1.00× |" in lines
    assert "| Gemm `shared` | 9.0 | 9.6 | 0.60 | 0.07× |" in lines
    assert "| 2 other nodes | 0.8 | 12.0 | 0.75 | 1.00× |" in lines
    assert "| **all** | 15.8 | 117.6 | 7.35 | 0.47× |" in lines
    # One batch size: no per-object ratio to show.
    single = nodes_markdown({"v": {"ort": {16: {"Gemm up1": 96.0}}}})
    assert "| Gemm `up1` | 96.0 | 96.0 | 6.00 | – |" in single


@pytest.mark.openvino
def test_profile_decoder_ops_on_the_shipped_decoder(tmp_path: Path) -> None:
    pytest.importorskip("openvino")
    out = tmp_path / "d.md"
    args = ["--decoder", f"tiny={TINY}", "--objects", "1,2", "--runs", "1", "--threads", "1"]
    args += ["--embedding", "128,16,16", "--image-size", "256"]
    assert decoder_main([*args, "--points", "2", "--ops", "--output", str(out)]) == 0
    text = out.read_text()
    assert "- 2 point(s) per object" in text
    assert "### tiny, ort" in text
    assert "### tiny, ov-bf16" in text
    record = json.loads(out.with_suffix(".json").read_text())
    assert record["points"] == 2
    assert set(record["ops_ms"]["tiny"]["ort"]) == {"1", "2"}


def test_ort_spinning_times_both_settings_in_their_own_processes(tmp_path: Path) -> None:
    out = tmp_path / "ort_spinning.md"
    assert (
        spinning_main(
            ["--model", str(TINY), "--rounds", "1", "--frames", "1", "--output", str(out)]
        )
        == 0
    )
    record = json.loads(out.with_suffix(".json").read_text())
    for setting in ("stop", "spin"):
        stages = record["times_ms"][setting]
        assert set(stages) == {
            "encoder",
            "decoder after encoder",
            "decoder again",
            "frame",
            "frame cpu",
        }
        assert all(len(v) == 1 and v[0] > 0 for v in stages.values())
        assert stages["frame"][0] >= stages["encoder"][0]
    text = out.read_text()
    assert "| spin / stop |" in text
    assert "1 rounds × 1 frames" in text
    with pytest.raises(SystemExit):
        spinning_main(["--model", str(TINY), "--output", str(tmp_path / "x.json")])


def test_threshold_sweep_scores_and_choice() -> None:
    a = np.zeros((2, 16), bool)
    a[0, :8] = True
    a[1, 4:12] = True
    b = np.zeros((1, 16), bool)
    b[0, :8] = True
    np.testing.assert_allclose(_iou(a, b), [[1.0], [4 / 12]])
    rows = [
        Row(0.88, 0.95, recall=0.1, precision=1.0, masks_per_image=1),
        Row(0.6, 0.6, recall=0.6, precision=0.7, masks_per_image=8),
        Row(0.5, 0.6, recall=0.7, precision=0.5, masks_per_image=12),
    ]
    assert best(rows) is rows[1]
    # Equal F1: the stricter pair.
    tie = [Row(0.5, 0.6, 0.6, 0.7, 8), Row(0.6, 0.6, 0.7, 0.6, 8)]
    assert best(tie) is tie[1]
    text = thresholds_markdown("m", rows, "cmd", 4)
    assert "| 0.6 | 0.6 **(chosen)** |" in text
