"""benchmarks/bench_backends.py runs end to end and records what it promises."""

from __future__ import annotations

import json
from pathlib import Path
from types import ModuleType

import pytest

from tests._factories import load_benchmark_script
from tests.runtimes._graphs import contract_model_dir


@pytest.fixture(scope="module")
def bench() -> ModuleType:
    return load_benchmark_script("bench_backends")


def test_writes_the_record(tmp_path: Path, bench: ModuleType) -> None:
    model_dir = contract_model_dir(tmp_path / "model")
    out = tmp_path / "results" / "backends.json"
    argv = ["--model-dir", str(model_dir), "--runs", "2", "--warmup", "1", "--output", str(out)]
    assert bench.main([*argv, "--objects", "1", "3", "--machine-name", "test-box"]) == out
    record = json.loads(out.read_text())
    assert record["machine"]["name"] == "test-box"
    assert record["machine"]["cores"] >= 1
    assert record["machine"]["cpu"]
    assert record["versions"]["onnxruntime"]
    assert record["settings"] == {
        "threads": 2,
        "warmup": 1,
        "runs": 2,
        "objects": [1, 3],
        "points": 2,
    }
    assert "--model-dir" in record["command"]
    rows = record["results"]
    ort = [r for r in rows if r["backend"] == "onnxruntime"]
    assert [(r["graph"], r["objects"]) for r in ort] == [
        ("encoder", None),
        ("decoder", 1),
        ("decoder", 3),
    ]
    for row in rows:
        assert 0 < row["min_ms"] <= row["median_ms"] <= row["p90_ms"]
        assert row["precision"] in {"fp32", "fp16", "bf16", "int8"}
    installed = {i.name for i in bench.available_backends() if i.installed}
    assert {r["backend"] for r in rows} == installed & {"onnxruntime", "openvino", "tensorrt"}
    if "openvino" in installed:
        requested = {r["requested_precision"] for r in rows if r["backend"] == "openvino"}
        assert "default" in requested
        assert len(requested) == len({r["precision"] for r in rows if r["backend"] == "openvino"})
    assert {s["backend"] for s in record["skipped"]} == {
        "onnxruntime",
        "openvino",
        "tensorrt",
    } - installed


def test_default_output_is_under_results(bench: ModuleType) -> None:
    name = bench.machine_name()
    assert name.endswith("c")
    assert " " not in name
    assert Path(bench.__file__).parent / "results" == bench.RESULTS


def test_refuses_bad_counts(tmp_path: Path, bench: ModuleType) -> None:
    with pytest.raises(SystemExit, match="--runs"):
        bench.main(["--model-dir", str(tmp_path), "--runs", "0"])
