"""FP16 graphs that keep FP32 where half precision breaks SAM.

The conversion is onnxconverter-common's ``convert_float_to_float16`` (a
maintained converter that inserts the Casts), with ``keep_io_types=True`` so
the graph's inputs and outputs stay float32: the Predictor's contract is
unchanged, TensorRT can build the graph strongly typed, and OpenVINO / ONNX
Runtime run it as is. What stays in FP32, and why:

* ``LayerNormalization`` and LayerNorm written out by hand (SAM's
  ``LayerNorm2d`` in the neck and the mask decoder exports as
  ReduceMean → Sub → Pow → ReduceMean → Add → Sqrt → Div): the mean of squares
  overflows FP16 (65504) as soon as activations pass ~256, and the division
  by a small standard deviation magnifies FP16's rounding; this is the
  failure behind FP16 SAM encoders that score mIoU 0 (efficientvit#113, #142).
* ``Softmax``: its exp/sum over thousands of attention keys loses the small
  probabilities in half precision.
* The converter's own list (``DEFAULT_OP_BLOCK_LIST``: Resize, Range, TopK,
  Min/Max, ...): ops whose FP16 kernels ONNX Runtime lacks or that compute indices.
* Every node that reads or writes a tensor larger than ``range_fraction`` of
  the FP16 maximum on the measured frames (default 1/4, i.e. |x| > 16376, leaving
  headroom for frames brighter than the measured ones). Large ViTs have such
  outlier channels in their MLP outputs; a value past 65504 becomes ``inf``.
* For the decoder (``heads=True``): the final mask and IoU heads (the nodes
  from the two-way transformer's output to ``low_res_masks`` /
  ``iou_predictions``): the masks are thresholded at 0, so their logits
  near 0 decide every border pixel.

Example:
    >>> from samedge.calibration.fp16 import Fp16Config, convert_fp16
    >>> result = convert_fp16("m/encoder.onnx", "out/encoder.onnx", feeds)  # doctest: +SKIP
    >>> sorted(set(result.blocked.values()))                                # doctest: +SKIP
    ['LayerNorm (decomposed)', 'LayerNormalization', 'Softmax']
"""

from __future__ import annotations

import copy
import logging
import os
import tempfile
import warnings
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx

from samedge import graph_names
from samedge.calibration._onnx import (
    float_tensor_ranges,
    load_model,
    optimize_basic,
    retag_precision,
    save_model,
)
from samedge.errors import ExportError, InputError

__all__ = [
    "FP16_MAX",
    "Fp16Config",
    "Fp16Result",
    "convert_fp16",
    "head_nodes",
    "layernorm_nodes",
]

log = logging.getLogger(__name__)

FP16_MAX = float(np.finfo(np.float16).max)  # 65504

# Op types always kept in FP32 (see the module docstring for why).
_ALWAYS_FP32 = ("LayerNormalization", "Softmax")
_REDUCE_MEAN = "ReduceMean"
# Module paths of the heads of segment_anything's MaskDecoder, as exported into node names.
_HEAD_MODULES = ("/output_upscaling", "/output_hypernetworks_mlps", "/iou_prediction_head")


@dataclass(frozen=True)
class Fp16Config:
    """How to convert a graph to FP16.

    Attributes:
        range_fraction: Keep in FP32 every node reading or writing a tensor whose
            measured max |value| exceeds this fraction of 65504.
        heads: Keep the decoder's final mask/IoU heads in FP32 (no effect on
            a graph without ``low_res_masks`` / ``iou_predictions`` outputs).
        block_op_types: Extra op types to keep in FP32.
        block_nodes: Extra node names to keep in FP32.
        optimize: Fold the exporter's shape arithmetic first (see
            :func:`samedge.calibration._onnx.optimize_basic`).
    """

    range_fraction: float = 0.25
    heads: bool = True
    block_op_types: tuple[str, ...] = ()
    block_nodes: tuple[str, ...] = ()
    optimize: bool = True

    def __post_init__(self) -> None:
        if not isinstance(self.range_fraction, (int, float)) or not (0 < self.range_fraction <= 1):
            raise InputError(
                f"range_fraction: got {self.range_fraction!r}, expected a number in (0, 1]"
            )
        for name in ("block_op_types", "block_nodes"):
            value = getattr(self, name)
            if not isinstance(value, tuple) or not all(isinstance(v, str) for v in value):
                raise InputError(f"{name}: got {value!r}, expected a tuple of strings")


@dataclass(frozen=True)
class Fp16Result:
    """What :func:`convert_fp16` kept in FP32.

    Attributes:
        output: The FP16 graph written.
        blocked: Node name -> why it stays FP32.
        nodes: Nodes in the converted graph (before the converter's Casts).
        max_abs: Largest |activation| seen on the measured frames.
    """

    output: Path
    blocked: Mapping[str, str] = field(default_factory=dict)
    nodes: int = 0
    max_abs: float = 0.0

    def summary(self) -> dict[str, int]:
        """Reason -> number of nodes kept in FP32."""
        return dict(Counter(self.blocked.values()))


def _consumers(graph: onnx.GraphProto) -> dict[str, list[onnx.NodeProto]]:
    out: dict[str, list[onnx.NodeProto]] = {}
    for node in graph.node:
        for name in node.input:
            if name:
                out.setdefault(name, []).append(node)
    return out


def layernorm_nodes(graph: onnx.GraphProto) -> dict[str, str]:
    """Nodes that compute a LayerNorm by hand: ``(x - mean(x)) / sqrt(mean((x - mean)^2) + eps)``.

    Matched from each ``Sub(x, ReduceMean(x))``: its variance branch
    (``Pow(d, 2)`` or ``Mul(d, d)`` → ReduceMean → Add(eps) → Sqrt) and the
    normalising ``Div(d, sqrt)`` (or ``Reciprocal`` + ``Mul``).

    Returns:
        Node name -> ``"LayerNorm (decomposed)"``.
    """
    producers = {o: n for n in graph.node for o in n.output}
    consumers = _consumers(graph)
    found: dict[str, str] = {}
    for sub in graph.node:
        if sub.op_type != "Sub" or len(sub.input) != 2:
            continue
        mean = producers.get(sub.input[1])
        if mean is None or mean.op_type != _REDUCE_MEAN or mean.input[0] != sub.input[0]:
            continue
        d = sub.output[0]
        group = [mean, sub]
        normalised = False
        for square in consumers.get(d, []):
            is_square = square.op_type == "Pow" or (
                square.op_type == "Mul" and list(square.input) == [d, d]
            )
            if not is_square:
                continue
            chain = [square]
            nxt = consumers.get(square.output[0], [])
            if len(nxt) != 1 or nxt[0].op_type != _REDUCE_MEAN:
                continue
            chain.append(nxt[0])
            tail = consumers.get(nxt[0].output[0], [])
            # Optional "+ eps" before the square root.
            if len(tail) == 1 and tail[0].op_type == "Add":
                chain.append(tail[0])
                tail = consumers.get(tail[0].output[0], [])
            if len(tail) != 1 or tail[0].op_type != "Sqrt":
                continue
            chain.append(tail[0])
            for div in consumers.get(tail[0].output[0], []):
                if div.op_type == "Div" and d in div.input:
                    chain.append(div)
                    normalised = True
                elif div.op_type == "Reciprocal":
                    chain.append(div)
                    for mul in consumers.get(div.output[0], []):
                        if mul.op_type == "Mul" and d in mul.input:
                            chain.append(mul)
                            normalised = True
            group += chain
        if normalised:
            for node in group:
                found[node.name] = "LayerNorm (decomposed)"
    return found


def head_nodes(graph: onnx.GraphProto, outputs: Iterable[str]) -> dict[str, str]:
    """Nodes of SAM's mask and IoU heads, and everything between them and ``outputs``.

    The heads are found by the module paths the exporter writes into node
    names (``output_upscaling``, ``output_hypernetworks_mlps``,
    ``iou_prediction_head`` of Meta's ``MaskDecoder``), then every node
    downstream of them is added (the final hypernetwork × upscaled-embedding
    MatMul, the reshapes and the output concatenation). A decoder without
    those names gets the nodes that produce ``outputs`` back to the last
    MatMul/Gemm/Conv before each.

    Returns:
        Node name -> ``"output head"``.
    """
    consumers = _consumers(graph)
    producers = {o: n for n in graph.node for o in n.output}
    seeds = [n for n in graph.node if any(m in n.name for m in _HEAD_MODULES)]
    if not seeds:
        for name in outputs:
            node = producers.get(name)
            while node is not None:
                seeds.append(node)
                if node.op_type in ("MatMul", "Gemm", "Conv"):
                    break
                data = [i for i in node.input if i in producers]
                node = producers[data[0]] if len(data) == 1 else None
    found: dict[str, str] = {}
    stack = list(seeds)
    while stack:
        node = stack.pop()
        if node.name in found:
            continue
        found[node.name] = "output head"
        for out in node.output:
            stack.extend(consumers.get(out, []))
    return found


def _overflow_nodes(graph: onnx.GraphProto, ranges: Mapping[str, float], limit: float):
    big = {name for name, peak in ranges.items() if peak > limit}
    found: dict[str, str] = {}
    for node in graph.node:
        if any(name in big for name in (*node.input, *node.output)):
            found[node.name] = f"range > {limit:g}"
    return found


def _name_nodes(graph: onnx.GraphProto) -> None:
    """Give unnamed nodes a name: the converter's node block list works by name."""
    used = {n.name for n in graph.node if n.name}
    for i, node in enumerate(graph.node):
        if not node.name:
            name = f"{node.op_type}_{i}"
            while name in used:
                name += "_"
            node.name = name
            used.add(name)


def _unshare_initializers(graph: onnx.GraphProto, blocked: set[str], block_ops: set[str]) -> None:
    """Give FP32 nodes their own copy of initializers they share with FP16 nodes.

    Exporters deduplicate equal weights (e.g. the zero biases of a Conv and of
    a LayerNorm); the converter then has to pick one type for the shared
    tensor and the graph no longer type-checks.
    """
    inits = {i.name: i for i in graph.initializer}
    readers: dict[str, list[onnx.NodeProto]] = {}
    for node in graph.node:
        for name in node.input:
            if name in inits:
                readers.setdefault(name, []).append(node)

    def fp32(n: onnx.NodeProto) -> bool:
        return n.name in blocked or n.op_type in block_ops

    for name, nodes in readers.items():
        if len({fp32(n) for n in nodes}) < 2:
            continue
        twin = copy.deepcopy(inits[name])
        twin.name = f"{name}__fp32"
        graph.initializer.append(twin)
        for node in nodes:
            if fp32(node):
                for k, inp in enumerate(node.input):
                    if inp == name:
                        node.input[k] = twin.name


def _restore_float_outputs(model: onnx.ModelProto, original: Mapping[str, int]) -> None:
    """Make graph outputs float32 again where the converter left them float16.

    With ``keep_io_types=True`` onnxconverter-common 1.16 still ends a graph
    in ``Cast(to=float16)`` when the node producing an output is kept in FP32
    (e.g. the decoder's blocked mask head). A Cast whose only reader is the
    graph output is turned into a float32 Cast (a no-op, so no rounding);
    otherwise a Cast back to float32 is appended.
    """
    graph = model.graph
    producers = {o: n for n in graph.node for o in n.output}
    consumers = _consumers(graph)
    for value in graph.output:
        tensor = value.type.tensor_type
        if original.get(value.name) != onnx.TensorProto.FLOAT:
            continue
        if tensor.elem_type != onnx.TensorProto.FLOAT16:
            continue
        node = producers.get(value.name)
        to = {a.name: a for a in node.attribute}.get("to") if node is not None else None
        if node is not None and node.op_type == "Cast" and not consumers.get(value.name):
            if to is not None:
                to.i = onnx.TensorProto.FLOAT
        else:
            half = f"{value.name}__fp16"
            if node is not None:
                node.output[list(node.output).index(value.name)] = half
            for reader in consumers.get(value.name, []):
                for k, name in enumerate(reader.input):
                    if name == value.name:
                        reader.input[k] = half
            graph.node.append(
                onnx.helper.make_node(
                    "Cast",
                    [half],
                    [value.name],
                    name=f"{value.name}__to_fp32",
                    to=onnx.TensorProto.FLOAT,
                )
            )
        tensor.elem_type = onnx.TensorProto.FLOAT


def _fp16_readers_of_outputs(model: onnx.ModelProto, blocked: set[str], block_ops: set[str]) -> int:
    """Point converted (FP16) nodes that read a graph output at its FP16 value.

    With ``keep_io_types=True`` onnxconverter-common 1.16 ends an output in
    ``Cast(to=float)`` but leaves the graph's own readers of that output on the
    float32 value, so a converted reader gets mixed types (SAM-HQ's encoder
    feeds ``image_embeddings`` to its FP16 ``ConvTranspose``, which ONNX
    Runtime refuses). Those readers are given the Cast's FP16 input instead.
    """
    graph = model.graph
    producers = {o: n for n in graph.node for o in n.output}
    consumers = _consumers(graph)
    rewired = 0
    for value in graph.output:
        cast = producers.get(value.name)
        if cast is None or cast.op_type != "Cast":
            continue
        to = {a.name: a.i for a in cast.attribute}.get("to")
        if to != onnx.TensorProto.FLOAT:
            continue
        for reader in consumers.get(value.name, []):
            if reader.name in blocked or reader.op_type in block_ops or reader.op_type == "Cast":
                continue  # kept in FP32: the float32 value is what it needs
            for k, name in enumerate(reader.input):
                if name == value.name:
                    reader.input[k] = cast.input[0]
                    rewired += 1
    return rewired


def _fix_float_casts(model: onnx.ModelProto) -> int:
    """Point ``Cast(to=float)`` nodes at float16 where the converter typed their output fp16.

    onnxconverter-common 1.16 retypes a converted Cast's output to float16 but
    leaves its ``to`` attribute at float (SAM's decoder casts its label masks
    with ``Cast(Equal(...), to=float)``), which ONNX Runtime rejects.
    """
    types = {
        v.name: v.type.tensor_type.elem_type for v in (*model.graph.value_info, *model.graph.output)
    }
    fixed = 0
    for node in model.graph.node:
        if node.op_type != "Cast" or types.get(node.output[0]) != onnx.TensorProto.FLOAT16:
            continue
        for attr in node.attribute:
            if attr.name == "to" and attr.i == onnx.TensorProto.FLOAT:
                attr.i = onnx.TensorProto.FLOAT16
                fixed += 1
    return fixed


def convert_fp16(
    src: str | os.PathLike[str],
    dst: str | os.PathLike[str],
    feeds: Iterable[Mapping[str, np.ndarray]],
    config: Fp16Config | None = None,
) -> Fp16Result:
    """Convert an FP32 ONNX graph to FP16, keeping the sensitive nodes in FP32.

    Args:
        src: The FP32 ``.onnx``.
        dst: Where to write the FP16 ``.onnx``.
        feeds: A few representative inputs (name -> array), used to find
            activations too large for FP16; two frames are enough.
        config: What to keep in FP32; ``None`` for the defaults.

    Returns:
        What was kept in FP32 and why.

    Raises:
        InputError: ``src`` is missing or unreadable, or ``feeds`` is empty.
        ExportError: the converted graph does not pass ``onnx.checker``.

    Example:
        >>> r = convert_fp16("encoder.onnx", "encoder.fp16.onnx", [{"image": x}])  # doctest: +SKIP
        >>> r.summary()                                                            # doctest: +SKIP
        {'LayerNormalization': 24, 'Softmax': 12, 'LayerNorm (decomposed)': 14}
    """
    from onnxconverter_common import float16

    config = config or Fp16Config()
    feeds = list(feeds)
    if not feeds:
        raise InputError("feeds: got none, expected at least one input to measure ranges on")
    src, dst = Path(src), Path(dst)
    load_model(src)  # a clear error for a missing or broken file
    with tempfile.TemporaryDirectory(prefix="samedge-fp16-", dir=dst.parent) as tmp:
        work = Path(tmp) / "basic.onnx"
        if config.optimize:
            optimize_basic(src, work)
        else:
            work = src
        model = onnx.load(str(work))
    graph = model.graph
    _name_nodes(graph)
    limit = config.range_fraction * FP16_MAX
    ranges = float_tensor_ranges(model, feeds)
    blocked: dict[str, str] = {}
    block_ops = set(float16.DEFAULT_OP_BLOCK_LIST) | set(_ALWAYS_FP32) | set(config.block_op_types)
    for node in graph.node:
        if node.op_type in _ALWAYS_FP32 or node.op_type in config.block_op_types:
            blocked[node.name] = node.op_type
        elif node.op_type in float16.DEFAULT_OP_BLOCK_LIST:
            blocked[node.name] = f"{node.op_type} (converter default)"
    blocked.update(layernorm_nodes(graph))
    outputs = [o.name for o in graph.output]
    if config.heads and set(graph_names.DECODER_OUTPUTS) <= set(outputs):
        blocked.update(head_nodes(graph, list(graph_names.DECODER_OUTPUTS)))
    blocked.update(_overflow_nodes(graph, ranges, limit))
    for name in config.block_nodes:
        blocked[name] = "asked"
    _unshare_initializers(graph, set(blocked), block_ops)
    original_types = {o.name: o.type.tensor_type.elem_type for o in graph.output}
    with warnings.catch_warnings(record=True) as caught:
        # The converter warns once per weight tensor it clamps into FP16's range
        # (|w| < 1e-7 -> 1e-7, |w| > 1e4 -> 1e4); hundreds for a ViT. Count them instead.
        warnings.simplefilter("always")
        converted = float16.convert_float_to_float16(
            model,
            keep_io_types=True,
            op_block_list=sorted(block_ops),
            node_block_list=sorted(blocked),
        )
    clamped = sum("truncated" in str(w.message) for w in caught)
    if clamped:
        log.debug(
            "fp16 %s: %d weight tensors had values clamped into fp16 range", src.name, clamped
        )
    _fix_float_casts(converted)
    _restore_float_outputs(converted, original_types)
    _fp16_readers_of_outputs(converted, set(blocked), block_ops)
    try:
        onnx.checker.check_model(converted)
    except onnx.checker.ValidationError as e:
        raise ExportError(f"{src}: the FP16 graph is invalid ({e})") from e
    retag_precision(converted, "fp16")
    save_model(converted, dst)
    max_abs = max((v for v in ranges.values() if np.isfinite(v)), default=0.0)
    log.info(
        "fp16 %s: %d of %d nodes kept in fp32 (%s); largest activation %.3g",
        src.name,
        len(blocked),
        len(graph.node),
        ", ".join(f"{k} {v}" for k, v in Counter(blocked.values()).items()),
        max_abs,
    )
    return Fp16Result(dst, blocked, len(graph.node), max_abs)
