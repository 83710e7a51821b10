"""Tiny model directories built with ``onnx.helper`` for the calibration tests.

``write_sensitive_model`` makes a 32-px "SAM" whose encoder has one layer
that per-tensor INT8 cannot quantize: the input of ``/sensitive/Conv`` has a
single huge outlier (one pixel of one channel at 5000 while everything else
is within a few units), so an int8 scale that holds the outlier rounds every
other value to 0. The outlier's pixel is masked out right after, so the FP32
embedding is ordinary. Everything else quantizes well; the decoder turns the
embedding into 4 masks per prompt with the decoder I/O contract.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from samedge.model_dir import ModelCard, write_model_card
from samedge.models import SAM_PIXEL_MEAN, SAM_PIXEL_STD

__all__ = ["SENSITIVE_NODE", "TOY_CARD", "write_sensitive_model"]

SENSITIVE_NODE = "/sensitive/Conv"
TOY_CARD = ModelCard(
    model="toy_sensitive",
    image_size=32,
    pixel_mean=SAM_PIXEL_MEAN,
    pixel_std=SAM_PIXEL_STD,
    embedding_shape=(8, 8, 8),
    num_mask_outputs=4,
)


def _init(name: str, arr: np.ndarray) -> TensorProto:
    return numpy_helper.from_array(np.asarray(arr, np.float32), name)


def _encoder(rng: np.random.Generator, outlier: float) -> onnx.ModelProto:
    S, C = 32, 8
    mean = np.array(TOY_CARD.pixel_mean, np.float32).reshape(1, 3, 1, 1)
    std = np.array(TOY_CARD.pixel_std, np.float32).reshape(1, 3, 1, 1)
    spike = np.zeros((1, C, S, S), np.float32)
    spike[0, 0, 0, 0] = outlier
    keep = np.ones((1, 1, S, S), np.float32)
    keep[0, 0, 0, 0] = 0.0
    inits = [
        _init("mean", mean),
        _init("std", std),
        _init("w1", rng.normal(0, 0.4, (C, 3, 3, 3))),
        _init("b1", rng.normal(0, 0.1, C)),
        _init("spike", spike),
        _init("w2", rng.normal(0, 0.5, (C, C, 1, 1))),
        _init("b2", rng.normal(0, 0.1, C)),
        _init("keep", keep),
        _init("w3", rng.normal(0, 0.15, (C, C, 4, 4))),
        _init("b3", rng.normal(0, 0.1, C)),
    ]
    nodes = [
        helper.make_node("Sub", ["image", "mean"], ["centred"], name="/norm/Sub"),
        helper.make_node("Div", ["centred", "std"], ["x"], name="/norm/Div"),
        helper.make_node("Conv", ["x", "w1", "b1"], ["h1"], name="/stem/Conv", pads=[1, 1, 1, 1]),
        helper.make_node("Add", ["h1", "spike"], ["h2"], name="/outlier/Add"),
        helper.make_node("Conv", ["h2", "w2", "b2"], ["h3"], name=SENSITIVE_NODE),
        helper.make_node("Mul", ["h3", "keep"], ["h4"], name="/mask/Mul"),
        helper.make_node(
            "Conv", ["h4", "w3", "b3"], ["image_embeddings"], name="/down/Conv", strides=[4, 4]
        ),
    ]
    graph = helper.make_graph(
        nodes,
        "toy_encoder",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 3, S, S])],
        [helper.make_tensor_value_info("image_embeddings", TensorProto.FLOAT, [1, C, 8, 8])],
        inits,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def _decoder(rng: np.random.Generator) -> onnx.ModelProto:
    C, L = 8, 32
    inits = [
        _init("wd", rng.normal(0, 0.5, (4, C, 1, 1))),
        _init("bd", np.zeros(4)),
        _init("scales", np.array([1, 1, 4, 4])),
        _init("zero", np.zeros(1)),
        numpy_helper.from_array(np.array([-1, 1, 1, 1], np.int64), "shape_b"),
        numpy_helper.from_array(np.array([1], np.int64), "ax1"),
        numpy_helper.from_array(np.array([1, 2], np.int64), "ax12"),
        numpy_helper.from_array(np.array([1, 2, 3], np.int64), "ax123"),
        numpy_helper.from_array(np.array([2, 3], np.int64), "ax23"),
    ]
    nodes = [
        helper.make_node("Conv", ["image_embeddings", "wd", "bd"], ["d1"], name="/head/Conv"),
        helper.make_node("Resize", ["d1", "", "scales"], ["d2"], name="/head/Resize"),
    ]
    # Zero-weighted terms tie the batch dimension B and every prompt input in,
    # so the graph has the decoder contract's inputs and [B, 4, L, L] outputs.
    nodes += [
        helper.make_node("ReduceSum", ["point_labels", "ax1"], ["lab"], keepdims=0),
        helper.make_node("ReduceSum", ["point_coords", "ax12"], ["crd"], keepdims=0),
        helper.make_node("ReduceSum", ["mask_input", "ax123"], ["msk"], keepdims=0),
        helper.make_node("Add", ["lab", "crd"], ["t1"]),
        helper.make_node("Add", ["t1", "msk"], ["t2"]),
        helper.make_node("Add", ["t2", "has_mask_input"], ["t3"]),
        helper.make_node("Mul", ["t3", "zero"], ["t4"]),
        helper.make_node("Reshape", ["t4", "shape_b"], ["tb"]),
        helper.make_node("Add", ["d2", "tb"], ["low_res_masks"], name="/out/Add"),
        helper.make_node("ReduceMean", ["low_res_masks", "ax23"], ["iou_predictions"], keepdims=0),
    ]
    inputs = [
        helper.make_tensor_value_info("image_embeddings", TensorProto.FLOAT, [1, C, 8, 8]),
        helper.make_tensor_value_info("point_coords", TensorProto.FLOAT, ["B", "N", 2]),
        helper.make_tensor_value_info("point_labels", TensorProto.FLOAT, ["B", "N"]),
        helper.make_tensor_value_info("mask_input", TensorProto.FLOAT, ["B", 1, L, L]),
        helper.make_tensor_value_info("has_mask_input", TensorProto.FLOAT, ["B"]),
    ]
    outputs = [
        helper.make_tensor_value_info("low_res_masks", TensorProto.FLOAT, ["B", 4, L, L]),
        helper.make_tensor_value_info("iou_predictions", TensorProto.FLOAT, ["B", 4]),
    ]
    graph = helper.make_graph(nodes, "toy_decoder", inputs, outputs, inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])


def write_sensitive_model(directory: Path, *, seed: int = 0, outlier: float = 5000.0) -> Path:
    """Write the toy model directory (encoder.onnx, decoder.onnx, samedge.json)."""
    rng = np.random.default_rng(seed)
    directory.mkdir(parents=True, exist_ok=True)
    for name, model in (("encoder.onnx", _encoder(rng, outlier)), ("decoder.onnx", _decoder(rng))):
        onnx.checker.check_model(model, full_check=True)
        onnx.save(model, str(directory / name))
    write_model_card(directory, TOY_CARD)
    return directory
