"""The weight-free ONNX reader, checked against the onnx package itself."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from samedge.errors import InputError
from samedge.runtimes._graph import (
    OnnxSummary,
    ValueInfo,
    onnx_content_hash,
    read_onnx_summary,
    unnamed_dim,
)
from tests.runtimes._graphs import matmul_add, qdq, two_in_two_out


def _onnx_dims(value: onnx.ValueInfoProto) -> tuple[int | str, ...]:
    dims = value.type.tensor_type.shape.dim
    return tuple(
        d.dim_value if d.HasField("dim_value") else (d.dim_param or unnamed_dim(value.name, i))
        for i, d in enumerate(dims)
    )


@pytest.mark.parametrize("build", [matmul_add, two_in_two_out, qdq])
def test_agrees_with_onnx(tmp_path: Path, build: object) -> None:
    path = build(tmp_path / "g.onnx")  # type: ignore[operator]
    model = onnx.load(str(path))
    summary = read_onnx_summary(path)
    assert [(v.name, v.elem_type, v.shape) for v in summary.inputs] == [
        (v.name, v.type.tensor_type.elem_type, _onnx_dims(v)) for v in model.graph.input
    ]
    assert [(v.name, v.shape) for v in summary.outputs] == [
        (v.name, _onnx_dims(v)) for v in model.graph.output
    ]
    assert summary.opsets == {o.domain: o.version for o in model.opset_import}
    total = sum(int(np.prod(t.dims)) for t in model.graph.initializer)
    assert sum(summary.initializer_elements.values()) == total


def test_metadata_unnamed_dims_and_initializers_listed_as_inputs(tmp_path: Path) -> None:
    weight = numpy_helper.from_array(np.ones((4, 2), np.float32), "weight")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "weight"], ["y"])],
        "old_style",
        # IR < 4 listed initializers among the graph inputs; they are not fed.
        [
            helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 4]),
            helper.make_tensor_value_info("weight", TensorProto.FLOAT, [4, 2]),
        ],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [-1, 2])],
        [weight],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=9)
    entry = model.metadata_props.add()
    entry.key, entry.value = "samedge.model", '"mobile_sam"'
    path = tmp_path / "old.onnx"
    onnx.save(model, str(path))
    summary = read_onnx_summary(path)
    assert summary.inputs == (ValueInfo("x", TensorProto.FLOAT, ("x_dim0", 4)),)
    assert summary.outputs[0].shape == (-1, 2)  # negative dim_value survives as signed
    assert summary.metadata == {"samedge.model": '"mobile_sam"'}
    assert summary.dims("y") == (-1, 2)
    assert summary.dims("nope") is None


def test_precision_rules() -> None:
    def summary(**kwargs: object) -> OnnxSummary:
        return OnnxSummary(inputs=(), outputs=(), **kwargs)  # type: ignore[arg-type]

    assert summary().precision == "fp32"
    assert summary(initializer_elements={1: 10, 10: 1000}).precision == "fp16"
    assert summary(initializer_elements={1: 1000, 10: 10}).precision == "fp32"
    assert summary(initializer_elements={16: 10}).precision == "bf16"
    assert summary(quantized=True, initializer_elements={1: 10}).precision == "int8"
    fp16_input = (ValueInfo("x", 10, (1,)),)
    assert OnnxSummary(inputs=fp16_input, outputs=()).precision == "fp16"
    assert summary(metadata={"samedge.precision": '"fp16"'}, quantized=True).precision == "fp16"
    # An unknown tag is ignored rather than trusted.
    assert summary(metadata={"samedge.precision": '"fp8"'}).precision == "fp32"


def test_external_data_is_listed_and_hashed(tmp_path: Path) -> None:
    path = matmul_add(tmp_path / "source.onnx")
    model = onnx.load(str(path))
    out = tmp_path / "ext" / "model.onnx"
    out.parent.mkdir()
    onnx.save(
        model,
        str(out),
        save_as_external_data=True,
        all_tensors_to_one_file=True,
        location="model.weights",
        size_threshold=0,
    )
    summary = read_onnx_summary(out)
    assert summary.external_data == ("model.weights",)
    assert summary.initializer_elements == {TensorProto.FLOAT: 15}
    before = onnx_content_hash(out)
    weights = out.parent / "model.weights"
    data = bytearray(weights.read_bytes())
    data[0] ^= 0x01
    weights.write_bytes(bytes(data))
    # Same .onnx, other weights: the hash must change though the .onnx did not.
    assert onnx_content_hash(out) != before
    weights.unlink()
    with pytest.raises(InputError, match=r"external-data file model\.weights is missing"):
        onnx_content_hash(out)


def test_not_onnx_is_an_input_error(tmp_path: Path) -> None:
    empty = tmp_path / "empty.onnx"
    empty.write_bytes(b"")
    with pytest.raises(InputError, match="empty file"):
        read_onnx_summary(empty)
    text = tmp_path / "text.onnx"
    text.write_text("this is not protobuf at all\n" * 10)
    with pytest.raises(InputError, match="not an ONNX model"):
        read_onnx_summary(text)
    with pytest.raises(InputError, match="cannot read"):
        read_onnx_summary(tmp_path / "absent.onnx")
