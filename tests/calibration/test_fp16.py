"""FP16 conversion: what stays FP32, overflow blocking, and the reduced SAM's encoder."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from samedge.calibration._onnx import cpu_session
from samedge.calibration.fp16 import Fp16Config, convert_fp16, layernorm_nodes
from samedge.calibration.frames import encoder_inputs, read_frames
from samedge.errors import InputError
from samedge.model_dir import read_model_dir
from samedge.runtimes._graph import read_onnx_summary

if TYPE_CHECKING:
    from tests._factories import ExportedModel


def _layernorm2d_graph() -> onnx.ModelProto:
    """SAM's LayerNorm2d as the exporter writes it, plus an unrelated Sub and Div."""
    inits = [
        numpy_helper.from_array(np.array([1], np.int64), "axes"),
        numpy_helper.from_array(np.array(2.0, np.float32), "two"),
        numpy_helper.from_array(np.array(1e-6, np.float32), "eps"),
        numpy_helper.from_array(np.array(3.0, np.float32), "three"),
    ]
    nodes = [
        helper.make_node("ReduceMean", ["x", "axes"], ["u"], name="ln/ReduceMean"),
        helper.make_node("Sub", ["x", "u"], ["d"], name="ln/Sub"),
        helper.make_node("Pow", ["d", "two"], ["sq"], name="ln/Pow"),
        helper.make_node("ReduceMean", ["sq", "axes"], ["var"], name="ln/ReduceMean_1"),
        helper.make_node("Add", ["var", "eps"], ["ve"], name="ln/Add"),
        helper.make_node("Sqrt", ["ve"], ["sd"], name="ln/Sqrt"),
        helper.make_node("Div", ["d", "sd"], ["n"], name="ln/Div"),
        helper.make_node("Sub", ["n", "three"], ["m"], name="other/Sub"),
        helper.make_node("Div", ["m", "three"], ["y"], name="other/Div"),
    ]
    graph = helper.make_graph(
        nodes,
        "ln",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 3, 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 3, 3])],
        inits,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])


def test_decomposed_layernorm_is_found_and_nothing_else() -> None:
    found = layernorm_nodes(_layernorm2d_graph().graph)
    assert set(found) == {
        "ln/ReduceMean",
        "ln/Sub",
        "ln/Pow",
        "ln/ReduceMean_1",
        "ln/Add",
        "ln/Sqrt",
        "ln/Div",
    }


def _overflow_graph() -> onnx.ModelProto:
    """x * 3000 overflows FP16 for |x| > ~22; the Mul and its reader must stay FP32."""
    inits = [
        numpy_helper.from_array(np.array(3000.0, np.float32), "big"),
        numpy_helper.from_array(np.array(1e-3, np.float32), "small"),
        numpy_helper.from_array(np.full((4, 4), 0.25, np.float32), "w"),
    ]
    nodes = [
        helper.make_node("MatMul", ["x", "w"], ["h"], name="mm"),
        helper.make_node("Mul", ["h", "big"], ["huge"], name="scale_up"),
        helper.make_node("Mul", ["huge", "small"], ["y"], name="scale_down"),
    ]
    graph = helper.make_graph(
        nodes,
        "overflow",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 4])],
        inits,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_nodes_touching_overflowing_tensors_stay_fp32(tmp_path: Path) -> None:
    src = tmp_path / "overflow.onnx"
    onnx.save(_overflow_graph(), str(src))
    x = np.full((2, 4), 40.0, np.float32)  # h = 40, huge = 120000 > 65504
    result = convert_fp16(src, tmp_path / "fp16.onnx", [{"x": x}])
    assert result.blocked == {"scale_up": "range > 16376", "scale_down": "range > 16376"}
    y = cpu_session(result.output).run(None, {"x": x})[0]
    assert y.dtype == np.float32
    assert np.allclose(y, 120.0, rtol=1e-3)
    # The threshold is a fraction of the FP16 maximum: with 1.0, 120000 is still past it;
    # measured on small inputs nothing is past it and nothing is blocked.
    full = convert_fp16(src, tmp_path / "full.onnx", [{"x": x}], Fp16Config(range_fraction=1.0))
    assert set(full.blocked) == {"scale_up", "scale_down"}
    small = convert_fp16(src, tmp_path / "small.onnx", [{"x": np.ones((2, 4), np.float32)}])
    assert not small.blocked


def test_reduced_sam_encoder_keeps_sensitive_ops_fp32(
    reduced_sam_dir: ExportedModel, tmp_path: Path
) -> None:
    card = read_model_dir(reduced_sam_dir.dir)
    inputs = encoder_inputs(read_frames("synthetic", 2).calibration, card)
    result = convert_fp16(
        reduced_sam_dir.dir / "encoder.onnx", tmp_path / "enc16.onnx", [{"image": inputs[0]}]
    )
    reasons = result.summary()
    assert reasons.get("LayerNormalization", 0) > 0
    assert reasons.get("Softmax", 0) > 0
    assert reasons.get("LayerNorm (decomposed)", 0) >= 7  # the neck's two LayerNorm2d
    model = onnx.shape_inference.infer_shapes(onnx.load(str(result.output)))
    types = {
        v.name: v.type.tensor_type.elem_type
        for v in (*model.graph.value_info, *model.graph.output, *model.graph.input)
    }
    by_name = {n.name: n for n in model.graph.node}
    for name in result.blocked:
        node = by_name[name]
        for out in node.output:
            if out in types:
                assert types[out] == TensorProto.FLOAT, f"{name} ({node.op_type}) is not fp32"
    half = [
        n.name
        for n in model.graph.node
        if n.op_type in ("Gemm", "MatMul", "Conv") and types.get(n.output[0]) == TensorProto.FLOAT16
    ]
    assert half, "no compute node was converted to fp16"
    assert types["image"] == TensorProto.FLOAT
    assert types["image_embeddings"] == TensorProto.FLOAT
    # Provenance kept, precision tag the output's own (runtimes believe it first).
    assert read_onnx_summary(result.output).precision == "fp16"


def test_fp16_config_validation() -> None:
    with pytest.raises(InputError, match="range_fraction"):
        Fp16Config(range_fraction=0.0)
    with pytest.raises(InputError, match="block_nodes"):
        Fp16Config(block_nodes=["a"])  # type: ignore[arg-type]


def test_fp16_decoder_keeps_heads_fp32_and_float_outputs(
    reduced_sam_dir: ExportedModel, tmp_path: Path
) -> None:
    from samedge.calibration import BuildConfig, Precision, build

    out = tmp_path / "fp16_both"
    config = BuildConfig(precision=Precision.FP16, frames=2, heldout=1, speed_runs=0,
                         decoder_fp16=True)  # fmt: skip
    report = build(reduced_sam_dir.dir, out, config)
    assert report.passed
    assert report.decoder_precision == "fp16"
    assert report.fp16_blocked["decoder"]["output head"] > 0
    model = onnx.load(str(out / "decoder.onnx"))
    outputs = {o.name: o.type.tensor_type.elem_type for o in model.graph.output}
    assert outputs == {"low_res_masks": TensorProto.FLOAT, "iou_predictions": TensorProto.FLOAT}
    inits = {i.data_type for i in model.graph.initializer}
    assert TensorProto.FLOAT16 in inits


def test_an_output_read_inside_the_graph_feeds_fp16_readers(tmp_path: Path) -> None:
    # SAM-HQ's encoder: image_embeddings is a graph output and the input of a converted
    # ConvTranspose. The converter's float32 output Cast must not feed the fp16 reader.
    rng = np.random.default_rng(0)
    w1 = numpy_helper.from_array(rng.standard_normal((4, 4)).astype(np.float32), "w1")
    w2 = numpy_helper.from_array(rng.standard_normal((4, 3)).astype(np.float32), "w2")
    graph = helper.make_graph(
        [
            helper.make_node("MatMul", ["x", "w1"], ["emb"], name="first"),
            helper.make_node("MatMul", ["emb", "w2"], ["extra"], name="second"),
        ],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 4])],
        [
            helper.make_tensor_value_info("emb", TensorProto.FLOAT, [2, 4]),
            helper.make_tensor_value_info("extra", TensorProto.FLOAT, [2, 3]),
        ],
        [w1, w2],
    )
    src, dst = tmp_path / "g.onnx", tmp_path / "g16.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), src)
    x = rng.standard_normal((2, 4)).astype(np.float32)
    convert_fp16(src, dst, [{"x": x}], Fp16Config(optimize=False))
    emb, extra = cpu_session(dst).run(None, {"x": x})  # loads: no mixed-type node
    assert emb.dtype == extra.dtype == np.float32
    np.testing.assert_allclose(
        extra, (x @ numpy_helper.to_array(w1)) @ numpy_helper.to_array(w2), rtol=2e-2, atol=2e-2
    )
