"""benchmarks/bench_calibration.py labels each latency by what ran, not by the FP32 source."""

from __future__ import annotations

from pathlib import Path
from types import ModuleType

import bench_calibration
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper


@pytest.fixture(scope="module")
def bench() -> ModuleType:
    return bench_calibration


def _encoder(path: Path, kind: str) -> Path:
    """A one-MatMul encoder as convert_fp16 / quantize_int8 leave it: tagged fp32 by its source."""
    dtype = TensorProto.FLOAT16 if kind == "fp16" else TensorProto.FLOAT
    weight = np.ones((4, 4), np.float16 if kind == "fp16" else np.float32)
    inits = [numpy_helper.from_array(weight, "w")]
    nodes = []
    x = "image"
    if kind == "int8":
        inits += [
            numpy_helper.from_array(np.array(0.1, np.float32), "scale"),
            numpy_helper.from_array(np.array(0, np.int8), "zero"),
        ]
        nodes += [
            helper.make_node("QuantizeLinear", ["image", "scale", "zero"], ["q"]),
            helper.make_node("DequantizeLinear", ["q", "scale", "zero"], ["dq"]),
        ]
        x = "dq"
    nodes.append(helper.make_node("MatMul", [x, "w"], ["embedding"]))
    graph = helper.make_graph(
        nodes,
        "encoder",
        [helper.make_tensor_value_info("image", dtype, [1, 4])],
        [helper.make_tensor_value_info("embedding", dtype, [1, 4])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 19)])
    helper.set_model_props(model, {"samedge.precision": '"fp32"'})
    onnx.save(model, path)
    return path


@pytest.mark.parametrize("kind", ["fp32", "fp16", "int8"])
def test_onnxruntime_latency_is_labelled_by_the_graph(tmp_path, bench, kind):
    path = _encoder(tmp_path / f"{kind}.onnx", kind)
    # The backend reports the source's "fp32" tag; the graph says what ran.
    assert bench.ran_in("onnxruntime", "fp32", path) == kind


def test_openvino_latency_keeps_what_openvino_compiled(tmp_path, bench):
    path = _encoder(tmp_path / "int8.onnx", "int8")
    assert bench.ran_in("openvino", "int8", path) == "int8"
    assert bench.ran_in("openvino", "bf16", _encoder(tmp_path / "fp32.onnx", "fp32")) == "bf16"
