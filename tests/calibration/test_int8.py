"""INT8 Q/DQ: TensorRT's symmetric/per-channel rules, both engines, ORT and OpenVINO."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from samedge.calibration._onnx import cpu_session
from samedge.calibration.frames import encoder_inputs, read_frames
from samedge.calibration.int8 import (
    Int8Config,
    Int8Method,
    _force_signed,
    check_qdq,
    quantize_int8,
)
from samedge.calibration.report import cosine
from samedge.errors import ExportError, InputError
from samedge.model_dir import read_model_dir
from samedge.runtimes._graph import read_onnx_summary

if TYPE_CHECKING:
    from tests._factories import ExportedModel


@pytest.fixture(scope="module")
def reduced_inputs(reduced_sam_dir: ExportedModel) -> list[np.ndarray]:
    card = read_model_dir(reduced_sam_dir.dir)
    return encoder_inputs(read_frames("synthetic", 6).calibration, card)


def _initializers_read(
    model: onnx.ModelProto, ops: tuple[str, ...], index: int
) -> list[np.ndarray]:
    """The initializers that nodes of ``ops`` read as their input ``index``."""
    inits = {i.name: i for i in model.graph.initializer}
    return [
        numpy_helper.to_array(inits[n.input[index]])
        for n in model.graph.node
        if n.op_type in ops and len(n.input) > index and n.input[index] in inits
    ]


def _zero_points(model: onnx.ModelProto) -> list[np.ndarray]:
    return _initializers_read(model, ("QuantizeLinear", "DequantizeLinear"), 2)


@pytest.mark.parametrize("method", [Int8Method.NNCF, Int8Method.ONNXRUNTIME])
def test_qdq_is_symmetric_int8_with_per_channel_weights(
    method: Int8Method,
    reduced_sam_dir: ExportedModel,
    reduced_inputs: list[np.ndarray],
    tmp_path: Path,
) -> None:
    src = reduced_sam_dir.dir / "encoder.onnx"
    result = quantize_int8(src, tmp_path / "int8.onnx", reduced_inputs, Int8Config(method=method))
    model = onnx.load(str(result.output))
    zps = _zero_points(model)
    assert zps
    assert all(z.dtype == np.int8 and not z.any() for z in zps)
    assert result.qdq.weights_per_channel > 0
    assert result.qdq.weights_per_tensor == 0
    assert result.qdq.quantizers > 0
    assert result.qdq.quantized_nodes
    # The source's provenance is kept, but its precision tag is the output's own
    # (runtimes believe the tag before the graph).
    assert read_onnx_summary(result.output).precision == "int8"
    assert read_onnx_summary(src).metadata["samedge.precision"] == '"fp32"'
    # The same file runs on ONNX Runtime (and below, OpenVINO) close to FP32.
    x = reduced_inputs[0]
    ref = cpu_session(src).run(None, {"image": x})[0]
    got = cpu_session(result.output).run(None, {"image": x})[0]
    assert cosine(ref, got) > 0.9


@pytest.mark.parametrize("method", [Int8Method.NNCF, Int8Method.ONNXRUNTIME])
def test_weights_use_7_bits_unless_full_range_is_asked(
    method: Int8Method,
    reduced_sam_dir: ExportedModel,
    reduced_inputs: list[np.ndarray],
    tmp_path: Path,
) -> None:
    """7 bits: no int16 overflow on CPUs without VNNI (OpenVINO's u8 x s8 pairs)."""
    src = reduced_sam_dir.dir / "encoder.onnx"
    peaks = {}
    for full in (False, True):
        config = Int8Config(method=method, full_range_weights=full)
        result = quantize_int8(src, tmp_path / f"int8_{full}.onnx", reduced_inputs, config)
        # The stored int8 weights: initializers a DequantizeLinear reads directly.
        weights = _initializers_read(onnx.load(str(result.output)), ("DequantizeLinear",), 0)
        assert weights
        peaks[full] = max(int(np.abs(w.astype(np.int16)).max()) for w in weights)
    assert peaks[False] <= 64
    assert peaks[True] > 100


@pytest.mark.openvino
def test_int8_file_runs_on_openvino(
    reduced_sam_dir: ExportedModel, reduced_inputs: list[np.ndarray], tmp_path: Path
) -> None:
    from samedge.runtimes import OpenVinoBackend, OpenVinoConfig

    src = reduced_sam_dir.dir / "encoder.onnx"
    result = quantize_int8(src, tmp_path / "int8.onnx", reduced_inputs)
    x = reduced_inputs[1]
    ort_out = cpu_session(result.output).run(None, {"image": x})[0]
    with OpenVinoBackend(result.output, OpenVinoConfig(use_cache=False)) as backend:
        ov_out = backend.infer({"image": x})["image_embeddings"]
        assert backend.precision in ("int8", "bf16", "fp32")
    assert cosine(ort_out, ov_out) > 0.99


def _uint8_qdq_graph(zero_point: int) -> onnx.ModelProto:
    inits = [
        numpy_helper.from_array(np.array(0.02, np.float32), "s"),
        numpy_helper.from_array(np.array(zero_point, np.uint8), "z"),
    ]
    nodes = [
        helper.make_node("Relu", ["x"], ["r"]),
        helper.make_node("QuantizeLinear", ["r", "s", "z"], ["q"], name="q"),
        helper.make_node("DequantizeLinear", ["q", "s", "z"], ["y"], name="dq"),
    ]
    graph = helper.make_graph(
        nodes,
        "u8",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4])],
        inits,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_unsigned_quantizers_become_symmetric_int8() -> None:
    model = _uint8_qdq_graph(0)
    assert _force_signed(model) == 2
    summary = check_qdq(model)
    assert summary.activations_symmetric
    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    scale = inits[model.graph.node[1].input[1]]
    assert scale == pytest.approx(0.02 * 255 / 127)
    # Covers the same maximum: 255 uint8 steps of 0.02 = 127 int8 steps of the new scale.
    y = cpu_session(model).run(None, {"x": np.array([-1.0, 0.0, 2.5, 5.1], np.float32)})[0]
    assert y[0] == 0.0
    assert y[2] == pytest.approx(2.5, abs=0.021)
    assert y[3] == pytest.approx(5.1)


def test_asymmetric_or_nonzero_zero_points_are_refused() -> None:
    with pytest.raises(ExportError, match="asymmetric"):
        _force_signed(_uint8_qdq_graph(3))
    with pytest.raises(ExportError, match="expected int8 zeros"):
        check_qdq(_uint8_qdq_graph(0))


def test_bad_calibration_inputs(reduced_sam_dir: ExportedModel, tmp_path: Path) -> None:
    src = reduced_sam_dir.dir / "encoder.onnx"
    with pytest.raises(InputError, match="no calibration inputs"):
        quantize_int8(src, tmp_path / "a.onnx", [])
    with pytest.raises(InputError, match="calibration input 0: got uint8 array"):
        quantize_int8(src, tmp_path / "a.onnx", [np.zeros((1, 3, 8, 8), np.uint8)])
    with pytest.raises(InputError, match="method"):
        Int8Config(method="nncf")  # type: ignore[arg-type]


def test_relu_network_quantizes_to_int8_not_uint8(tmp_path: Path) -> None:
    """ReLU outputs are non-negative: NNCF makes them uint8, samedge makes them int8."""
    rng = np.random.default_rng(0)
    inits = [
        numpy_helper.from_array(rng.normal(0, 0.3, (8, 3, 3, 3)).astype(np.float32), "w1"),
        numpy_helper.from_array(rng.normal(0, 0.3, (8, 8, 3, 3)).astype(np.float32), "w2"),
    ]
    nodes = [
        helper.make_node("Conv", ["image", "w1"], ["a"], name="c1", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["a"], ["r"], name="relu"),
        helper.make_node("Conv", ["r", "w2"], ["image_embeddings"], name="c2", pads=[1, 1, 1, 1]),
    ]
    graph = helper.make_graph(
        nodes,
        "relu_net",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 3, 16, 16])],
        [helper.make_tensor_value_info("image_embeddings", TensorProto.FLOAT, [1, 8, 16, 16])],
        inits,
    )
    src = tmp_path / "relu.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(src))
    xs = [rng.normal(0, 1, (1, 3, 16, 16)).astype(np.float32) for _ in range(4)]
    result = quantize_int8(src, tmp_path / "int8.onnx", xs)
    assert any("uint8" in note for note in result.notes)  # NNCF chose uint8 for the ReLU
    model = onnx.load(str(result.output))
    assert all(z.dtype == np.int8 and not z.any() for z in _zero_points(model))
    ref = cpu_session(src).run(None, {"image": xs[0]})[0]
    got = cpu_session(model).run(None, {"image": xs[0]})[0]
    assert cosine(ref, got) > 0.99


def test_attention_can_stay_in_float(
    reduced_sam_dir: ExportedModel, reduced_inputs: list[np.ndarray], tmp_path: Path
) -> None:
    from samedge.calibration.int8 import attention_matmuls

    src = reduced_sam_dir.dir / "encoder.onnx"
    result = quantize_int8(
        src, tmp_path / "int8.onnx", reduced_inputs[:3], Int8Config(attention=False)
    )
    model = onnx.load(str(result.output))
    attention = set(attention_matmuls(model))
    assert attention
    assert attention <= set(result.excluded)
    assert not attention & set(result.qdq.quantized_nodes)
    assert result.qdq.weights_per_channel > 0


def test_nncf_statistics_sessions_give_memory_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """NNCF's statistics sessions run without ORT's arena and memory pattern.

    With ORT's defaults a ViT-B statistics run keeps about twice its
    activations after the second frame (calibration/_onnx.py); the options
    reach NNCF's sessions through a hook that an NNCF upgrade could break,
    which this test would show.
    """
    import sys

    import onnxruntime
    from nncf.onnx import engine

    from tests.calibration._toy import TOY_CARD, write_sensitive_model

    real = onnxruntime.InferenceSession
    made_by_nncf: list[onnxruntime.SessionOptions] = []

    def recording(model: object, options: onnxruntime.SessionOptions, **kwargs: object) -> object:
        if sys._getframe(1).f_globals["__name__"] == engine.__name__:
            made_by_nncf.append(options)
        return real(model, options, **kwargs)

    monkeypatch.setattr(onnxruntime, "InferenceSession", recording)
    src = write_sensitive_model(tmp_path / "toy") / "encoder.onnx"
    frames = read_frames("synthetic", 3).calibration
    result = quantize_int8(
        src, tmp_path / "int8.onnx", encoder_inputs(frames, TOY_CARD), Int8Config()
    )
    assert result.method is Int8Method.NNCF
    assert made_by_nncf, "NNCF created no ONNX Runtime session: the hook no longer applies"
    for options in made_by_nncf:
        assert not options.enable_cpu_mem_arena
        assert not options.enable_mem_pattern
    assert engine.rt is onnxruntime  # restored after quantizing
