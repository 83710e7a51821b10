"""Q/DQ weight axes TensorRT accepts: Conv per output channel, never ConvTranspose's.

TensorRT's kernels take per-channel ConvTranspose weight scales on axis 0 only
("We don't support per-output-channel quant for ConvTranspose",
NVIDIA/TensorRT#2380), while ONNX Runtime's quantizer puts them on axis 1. So
ConvTranspose stays in float in both engines, and :func:`check_qdq` refuses a
file that quantizes a weight on an axis TensorRT does not take.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from samedge.calibration.int8 import (
    QUANTIZED_OP_TYPES,
    Int8Config,
    Int8Method,
    check_qdq,
    quantize_int8,
)
from samedge.errors import ExportError


def _weight_qdq_graph(op: str, axis: int | None) -> onnx.ModelProto:
    """``op(x, DQ(Q(w)))`` with per-channel scales on ``axis`` (None: the ONNX default, 1)."""
    rng = np.random.default_rng(0)
    weight = rng.normal(0, 0.3, (4, 4, 3, 3)).astype(np.float32)
    inits = [
        numpy_helper.from_array(weight, "w"),
        numpy_helper.from_array(np.full(4, 0.01, np.float32), "w_scale"),
        numpy_helper.from_array(np.zeros(4, np.int8), "w_zero"),
    ]
    attrs = {} if axis is None else {"axis": axis}
    nodes = [
        helper.make_node("QuantizeLinear", ["w", "w_scale", "w_zero"], ["wq"], "wq", **attrs),
        helper.make_node("DequantizeLinear", ["wq", "w_scale", "w_zero"], ["wdq"], "wdq", **attrs),
        helper.make_node(op, ["x", "wdq"], ["y"], name="layer"),
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        inits,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


@pytest.mark.parametrize(
    ("op", "axis"),
    [("Conv", 0), ("Conv", -4), ("ConvTranspose", 0), ("ConvTranspose", -4)],
)
def test_weight_axes_tensorrt_takes_pass(op: str, axis: int) -> None:
    summary = check_qdq(_weight_qdq_graph(op, axis))
    assert summary.weights_per_channel == 1


@pytest.mark.parametrize(
    ("op", "axis"),
    [("ConvTranspose", 1), ("ConvTranspose", None), ("Conv", 1), ("Conv", -3)],
)
def test_weight_axes_tensorrt_refuses_are_reported(op: str, axis: int | None) -> None:
    with pytest.raises(ExportError, match=rf"{op} 'layer'.*on axis 1; TensorRT.*axis 0") as info:
        check_qdq(_weight_qdq_graph(op, axis), "m.onnx")
    assert str(info.value).startswith("m.onnx: ")
    assert "exclude=('layer',)" in str(info.value)


def test_convtranspose_is_not_among_the_quantized_ops() -> None:
    assert "ConvTranspose" not in QUANTIZED_OP_TYPES
    assert "Conv" in QUANTIZED_OP_TYPES


@pytest.mark.parametrize("method", [Int8Method.ONNXRUNTIME, Int8Method.NNCF])
def test_both_engines_keep_convtranspose_in_float(method: Int8Method, tmp_path: Path) -> None:
    """A Conv followed by an upsampling ConvTranspose: only the Conv gets Q/DQ weights."""
    if method is Int8Method.NNCF:
        pytest.importorskip("nncf")
    rng = np.random.default_rng(1)
    inits = [
        numpy_helper.from_array(rng.normal(0, 0.3, (8, 3, 3, 3)).astype(np.float32), "w1"),
        numpy_helper.from_array(rng.normal(0, 0.3, (8, 4, 2, 2)).astype(np.float32), "w2"),
    ]
    nodes = [
        helper.make_node("Conv", ["image", "w1"], ["a"], name="conv", pads=[1, 1, 1, 1]),
        helper.make_node(
            "ConvTranspose", ["a", "w2"], ["image_embeddings"], name="up", strides=[2, 2]
        ),
    ]
    graph = helper.make_graph(
        nodes,
        "up_net",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 3, 16, 16])],
        [helper.make_tensor_value_info("image_embeddings", TensorProto.FLOAT, [1, 4, 32, 32])],
        inits,
    )
    src = tmp_path / "up.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(src))
    xs = [rng.normal(0, 1, (1, 3, 16, 16)).astype(np.float32) for _ in range(4)]
    result = quantize_int8(src, tmp_path / "int8.onnx", xs, Int8Config(method=method))
    model = onnx.load(str(result.output))
    producers = {o: n for n in model.graph.node for o in n.output}
    (up,) = [n for n in model.graph.node if n.op_type == "ConvTranspose"]
    assert (
        producers.get(up.input[1]) is None or producers[up.input[1]].op_type != "DequantizeLinear"
    )
    (conv,) = [n for n in model.graph.node if n.op_type == "Conv"]
    assert producers[conv.input[1]].op_type == "DequantizeLinear"
