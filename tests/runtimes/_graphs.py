"""Tiny ONNX graphs built with onnx.helper for the runtime tests.

Each builder writes one ``.onnx`` file and returns its path; the reference
results are plain numpy, so every backend is checked against the same truth.
Dynamic dimensions are named ``B`` and ``N`` like the decoder's.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from samedge.models import SAM_PIXEL_MEAN, SAM_PIXEL_STD

__all__ = [
    "BIAS",
    "W",
    "broadcast_mismatch",
    "contract_model_dir",
    "matmul_add",
    "matmul_add_ref",
    "qdq",
    "two_in_two_out",
    "two_in_two_out_ref",
]

# ORT 1.17 (our oldest supported) reads IR version 9; keep the files loadable there.
IR_VERSION = 9
OPSET = 17

W = np.arange(12, dtype=np.float32).reshape(4, 3) / 7.0 - 0.5
BIAS = np.array([0.25, -1.0, 2.0], dtype=np.float32)


def _save(graph: onnx.GraphProto, path: Path, metadata: Mapping[str, str] | None = None) -> Path:
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", OPSET)], ir_version=IR_VERSION
    )
    for key, value in (metadata or {}).items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def matmul_add(
    path: Path, *, fp16: bool = False, metadata: Mapping[str, str] | None = None
) -> Path:
    """``y = x @ W + BIAS``; ``x`` is ``[B, 4]``, ``y`` is ``[B, 3]``."""
    dtype = np.float16 if fp16 else np.float32
    elem = TensorProto.FLOAT16 if fp16 else TensorProto.FLOAT
    graph = helper.make_graph(
        [
            helper.make_node("MatMul", ["x", "W"], ["xw"]),
            helper.make_node("Add", ["xw", "bias"], ["y"]),
        ],
        "matmul_add",
        [helper.make_tensor_value_info("x", elem, ["B", 4])],
        [helper.make_tensor_value_info("y", elem, ["B", 3])],
        [
            numpy_helper.from_array(W.astype(dtype), "W"),
            numpy_helper.from_array(BIAS.astype(dtype), "bias"),
        ],
    )
    return _save(graph, path, metadata)


def matmul_add_ref(x: np.ndarray) -> np.ndarray:
    return x.astype(np.float32) @ W + BIAS


def two_in_two_out(path: Path) -> Path:
    """Inputs ``coords [B, N, 2]`` and ``labels [B, N]``; outputs
    ``shifted = coords * 2 + 1`` ``[B, N, 2]`` and ``weighted = labels * 3`` ``[B, N]``."""
    graph = helper.make_graph(
        [
            helper.make_node("Mul", ["coords", "two"], ["c2"]),
            helper.make_node("Add", ["c2", "one"], ["shifted"]),
            helper.make_node("Mul", ["labels", "three"], ["weighted"]),
        ],
        "two_in_two_out",
        [
            helper.make_tensor_value_info("coords", TensorProto.FLOAT, ["B", "N", 2]),
            helper.make_tensor_value_info("labels", TensorProto.FLOAT, ["B", "N"]),
        ],
        [
            helper.make_tensor_value_info("shifted", TensorProto.FLOAT, ["B", "N", 2]),
            helper.make_tensor_value_info("weighted", TensorProto.FLOAT, ["B", "N"]),
        ],
        [
            numpy_helper.from_array(np.array(2.0, np.float32), "two"),
            numpy_helper.from_array(np.array(1.0, np.float32), "one"),
            numpy_helper.from_array(np.array(3.0, np.float32), "three"),
        ],
    )
    return _save(graph, path)


def two_in_two_out_ref(coords: np.ndarray, labels: np.ndarray) -> dict[str, np.ndarray]:
    return {"shifted": coords * 2 + 1, "weighted": labels * 3}


def broadcast_mismatch(path: Path) -> Path:
    """``r = p + q`` with ``p [B, N]`` and ``q [B, M]``: valid specs, fails at run time when
    ``N != M`` (neither 1), so the library itself raises."""
    graph = helper.make_graph(
        [helper.make_node("Add", ["p", "q"], ["r"])],
        "broadcast_mismatch",
        [
            helper.make_tensor_value_info("p", TensorProto.FLOAT, ["B", "N"]),
            helper.make_tensor_value_info("q", TensorProto.FLOAT, ["B", "M"]),
        ],
        [helper.make_tensor_value_info("r", TensorProto.FLOAT, ["B", None])],
    )
    return _save(graph, path)


def qdq(path: Path, metadata: Mapping[str, str] | None = None) -> Path:
    """``y = DequantizeLinear(QuantizeLinear(x))`` with scale 0.5: an int8 Q/DQ graph."""
    graph = helper.make_graph(
        [
            helper.make_node("QuantizeLinear", ["x", "scale", "zero"], ["xq"]),
            helper.make_node("DequantizeLinear", ["xq", "scale", "zero"], ["y"]),
        ],
        "qdq",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["B", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["B", 4])],
        [
            numpy_helper.from_array(np.array(0.5, np.float32), "scale"),
            numpy_helper.from_array(np.array(0, np.int8), "zero"),
        ],
    )
    return _save(graph, path, metadata)


def contract_model_dir(
    directory: Path, *, image_size: int = 32, embedding: tuple[int, int, int] = (8, 2, 2)
) -> Path:
    """A model directory whose graphs have the encoder/decoder contract's names and
    shapes (cheap arithmetic instead of SAM), for tests of tools that take a model dir."""
    from samedge.model_dir import ModelCard, write_model_card

    c, h, w = embedding
    low = 4 * h
    directory.mkdir(parents=True, exist_ok=True)
    kernel = image_size // h
    encoder = helper.make_graph(
        [
            helper.make_node(
                "AveragePool",
                ["image"],
                ["pooled"],
                kernel_shape=[kernel, kernel],
                strides=[kernel, kernel],
            ),
            helper.make_node("Conv", ["pooled", "proj"], ["image_embeddings"]),
        ],
        "encoder",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 3, image_size, image_size])],
        [helper.make_tensor_value_info("image_embeddings", TensorProto.FLOAT, [1, c, h, w])],
        [numpy_helper.from_array(np.full((c, 3, 1, 1), 0.01, np.float32), "proj")],
    )
    _save(encoder, directory / "encoder.onnx")
    decoder = helper.make_graph(
        [
            helper.make_node("ReduceMean", ["image_embeddings"], ["emb_mean"], keepdims=1),
            helper.make_node("Tile", ["mask_input", "mask_repeats"], ["tiled"]),
            helper.make_node("Add", ["tiled", "emb_mean"], ["low_res_masks"]),
            helper.make_node("ReduceSum", ["point_coords", "axes_12"], ["coord_sum"], keepdims=0),
            helper.make_node("ReduceSum", ["point_labels", "axes_1"], ["label_sum"], keepdims=0),
            helper.make_node("Add", ["coord_sum", "label_sum"], ["per_object"]),
            helper.make_node("Add", ["per_object", "has_mask_input"], ["score"]),
            helper.make_node("Unsqueeze", ["score", "axes_1"], ["score_col"]),
            helper.make_node("Tile", ["score_col", "iou_repeats"], ["iou_predictions"]),
        ],
        "decoder",
        [
            helper.make_tensor_value_info("image_embeddings", TensorProto.FLOAT, [1, c, h, w]),
            helper.make_tensor_value_info("point_coords", TensorProto.FLOAT, ["B", "N", 2]),
            helper.make_tensor_value_info("point_labels", TensorProto.FLOAT, ["B", "N"]),
            helper.make_tensor_value_info("mask_input", TensorProto.FLOAT, ["B", 1, low, low]),
            helper.make_tensor_value_info("has_mask_input", TensorProto.FLOAT, ["B"]),
        ],
        [
            helper.make_tensor_value_info("low_res_masks", TensorProto.FLOAT, ["B", 4, low, low]),
            helper.make_tensor_value_info("iou_predictions", TensorProto.FLOAT, ["B", 4]),
        ],
        [
            numpy_helper.from_array(np.array([1, 4, 1, 1], np.int64), "mask_repeats"),
            numpy_helper.from_array(np.array([1, 4], np.int64), "iou_repeats"),
            numpy_helper.from_array(np.array([1, 2], np.int64), "axes_12"),
            numpy_helper.from_array(np.array([1], np.int64), "axes_1"),
        ],
    )
    _save(decoder, directory / "decoder.onnx")
    card = ModelCard(
        model="mobile_sam",
        image_size=image_size,
        pixel_mean=SAM_PIXEL_MEAN,
        pixel_std=SAM_PIXEL_STD,
        embedding_shape=embedding,
    )
    write_model_card(directory, card)
    return directory
