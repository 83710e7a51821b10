"""FLOP counts of tiny hand-made graphs against hand-computed numbers."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from samedge.bench.flops import count_flops, count_flops_model
from samedge.bench.peak import gemm_graph
from samedge.errors import InputError, ModelDirError


def _model(nodes, inputs, outputs, inits=()):
    graph = helper.make_graph(nodes, "g", inputs, outputs, initializer=list(inits))
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


def _weight(name, *shape):
    return numpy_helper.from_array(np.zeros(shape, np.float32), name)


def _value(name, shape):
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, shape)


def test_conv_counts_output_elements_times_kernel_volume():
    # 1x3x16x16 -> 8 channels, 3x3, padding 1: 8*16*16 outputs, each 3*3*3 MACs.
    model = _model(
        [helper.make_node("Conv", ["x", "w"], ["y"], pads=[1, 1, 1, 1])],
        [_value("x", [1, 3, 16, 16])],
        [_value("y", None)],
        [_weight("w", 8, 3, 3, 3)],
    )
    count = count_flops_model(model)
    assert count.flops == 2 * (8 * 16 * 16) * (3 * 3 * 3)
    assert count.by_op == {"Conv": count.flops}
    assert count.nodes == 1
    assert count.unresolved == ()


def test_grouped_and_strided_conv():
    # groups=4: each output sees Cin/groups = 2 channels; stride 2 halves 8x8 -> 4x4.
    model = _model(
        [helper.make_node("Conv", ["x", "w"], ["y"], group=4, strides=[2, 2])],
        [_value("x", [2, 8, 9, 9])],
        [_value("y", None)],
        [_weight("w", 16, 2, 3, 3)],
    )
    assert count_flops_model(model).flops == 2 * (2 * 16 * 4 * 4) * (2 * 3 * 3)


def test_conv_transpose_counts_input_elements_times_kernel():
    # SAM's upscaling: each input element is scattered through Cout*k*k weights.
    model = _model(
        [helper.make_node("ConvTranspose", ["x", "w"], ["y"], strides=[2, 2])],
        [_value("x", [1, 4, 5, 5])],
        [_value("y", None)],
        [_weight("w", 4, 6, 2, 2)],
    )
    assert count_flops_model(model).flops == 2 * (4 * 5 * 5) * (6 * 2 * 2)


def test_batched_matmul_and_gemm_with_transpose():
    model = _model(
        [
            helper.make_node("MatMul", ["a", "b"], ["ab"]),
            helper.make_node("Gemm", ["g", "h"], ["gh"], transA=1),
        ],
        [_value("a", [3, 2, 4, 5]), _value("g", [7, 6])],
        [_value("ab", None), _value("gh", None)],
        [_weight("b", 5, 6), _weight("h", 7, 9)],
    )
    count = count_flops_model(model)
    # MatMul: 3*2 batches of (4x5)@(5x6). Gemm: A is stored (K, M) = (7, 6), so K = 7.
    assert count.by_op["MatMul"] == 2 * (3 * 2 * 4 * 6) * 5
    assert count.by_op["Gemm"] == 2 * (6 * 9) * 7
    assert count.flops == count.by_op["MatMul"] + count.by_op["Gemm"]


def test_einsum_counts_every_index_once():
    model = _model(
        [helper.make_node("Einsum", ["q", "r"], ["y"], equation="bhwc,hkc->bhwk")],
        [_value("q", [2, 3, 4, 5]), _value("r", [3, 7, 5])],
        [_value("y", None)],
    )
    assert count_flops_model(model).flops == 2 * (2 * 3 * 4 * 5 * 7)


def test_elementwise_work_is_not_counted():
    model = _model(
        [helper.make_node("Relu", ["x"], ["r"]), helper.make_node("Softmax", ["r"], ["y"])],
        [_value("x", [1, 64, 64])],
        [_value("y", None)],
    )
    count = count_flops_model(model)
    assert count.flops == 0
    assert count.nodes == 0


def test_symbolic_dims_are_fixed_from_dims_and_required():
    model = _model(
        [helper.make_node("MatMul", ["a", "b"], ["y"])],
        [_value("a", ["B", "N", 8])],
        [_value("y", None)],
        [_weight("b", 8, 3)],
    )
    assert count_flops_model(model, {"B": 4, "N": 2}).flops == 2 * 4 * 2 * 3 * 8
    assert count_flops_model(model, {"B": 1, "N": 2}).flops == 2 * 1 * 2 * 3 * 8
    with pytest.raises(InputError, match="'B'"):
        count_flops_model(model, {"N": 2})
    with pytest.raises(InputError, match="expected an int >= 1"):
        count_flops_model(model, {"B": 0, "N": 2})


def test_shapes_computed_at_run_time_are_folded():
    # Reshape's target comes from Shape -> Mul -> Concat: ONNX inference alone
    # cannot fix it, ONNX Runtime's constant folding can.
    two = numpy_helper.from_array(np.array([2], np.int64), "two")
    minus = numpy_helper.from_array(np.array([-1], np.int64), "minus")
    model = _model(
        [
            helper.make_node("Shape", ["x"], ["s"], start=0, end=1),
            helper.make_node("Mul", ["s", "two"], ["s2"]),
            helper.make_node("Concat", ["s2", "minus"], ["target"], axis=0),
            helper.make_node("Reshape", ["x", "target"], ["r"]),
            helper.make_node("MatMul", ["r", "w"], ["y"]),
        ],
        [_value("x", [3, 8])],
        [_value("y", None)],
        [two, minus, _weight("w", 4, 5)],
    )
    count = count_flops_model(model)
    assert count.unresolved == ()
    assert count.flops == 2 * (6 * 5) * 4


def test_gemm_graphs_count_2n3():
    for form in ("MatMul fp32", "MatMul fp16", "Q/DQ MatMul", "MatMulInteger"):
        assert count_flops_model(gemm_graph(form, 64)).flops == 2 * 64**3, form


def test_count_flops_reads_files(tmp_path):
    path = tmp_path / "g.onnx"
    onnx.save(gemm_graph("MatMul fp32", 32), str(path))
    assert count_flops(path).gflops == pytest.approx(2 * 32**3 / 1e9)
    with pytest.raises(ModelDirError, match="not a file"):
        count_flops(tmp_path / "missing.onnx")
    (tmp_path / "bad.onnx").write_bytes(b"not onnx")
    with pytest.raises(ModelDirError, match="not a readable ONNX file"):
        count_flops(tmp_path / "bad.onnx")
