"""Floating-point work of an ONNX graph, counted from its shapes.

What is counted: 2 × the multiply-accumulates (MACs) of every node that is a
matrix product or a convolution: ``Conv``, ``ConvTranspose``, ``MatMul``,
``Gemm``, ``Einsum`` (two operands or more: the product of every index's size),
and their integer forms ``ConvInteger``, ``MatMulInteger``, ``QLinearConv``,
``QLinearMatMul`` (an INT8 Q/DQ graph keeps float ``MatMul``/``Conv`` nodes fed
by ``DequantizeLinear``, so it counts the same work as its FP32 source). What
is not counted: elementwise ops, normalisation, softmax, resize, pooling and
data movement. Those are memory-bound and a few percent of the arithmetic of
SAM's encoders; leaving them out keeps "achieved fraction of peak GEMM rate"
a statement about the work a GEMM unit can do. Bias additions are not counted.

Shapes come from ONNX shape inference with data propagation, after the graph's
symbolic input dimensions (the decoder's ``B`` objects and ``N`` points) are
fixed to the values given. Where that leaves a counted node's shapes unknown
(shapes computed at run time, e.g. ViT-B's window padding), the graph is first
constant-folded by ONNX Runtime's basic optimisations (standard ONNX ops only;
its fusions merge a bias into a ``Conv`` or a ``MatMul`` + ``Add`` into a
``Gemm``, which does not change the count) and inferred again. A counted node
whose shapes stay unknown even then is listed in :attr:`FlopCount.unresolved`
rather than guessed.

Example:
    >>> count = count_flops("model/decoder.onnx", dims={"B": 4, "N": 2})   # doctest: +SKIP
    >>> round(count.gflops, 2), count.unresolved                           # doctest: +SKIP
    (3.12, ())
"""

from __future__ import annotations

import logging
import math
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from samedge.errors import InputError, ModelDirError

__all__ = ["COUNTED_OPS", "FlopCount", "count_flops", "count_flops_model"]

log = logging.getLogger(__name__)

#: Node types whose work is counted.
COUNTED_OPS = (
    "Conv",
    "ConvTranspose",
    "ConvInteger",
    "QLinearConv",
    "MatMul",
    "MatMulInteger",
    "QLinearMatMul",
    "Gemm",
    "Einsum",
)
# Which input holds the convolution weight, per op (QLinearConv: x, x_scale, x_zp, w, ...).
_CONV_WEIGHT = {"Conv": 1, "ConvInteger": 1, "QLinearConv": 3, "ConvTranspose": 1}
# Which inputs are the two matrix operands.
_MATMUL_OPERANDS = {"MatMul": (0, 1), "MatMulInteger": (0, 1), "QLinearMatMul": (0, 3)}

Shape = tuple[int, ...]


@dataclass(frozen=True)
class FlopCount:
    """Arithmetic of one graph at fixed input shapes.

    Attributes:
        flops: 2 × MACs of the counted nodes.
        by_op: The same split by node type.
        nodes: Counted nodes whose shapes were known.
        unresolved: Names of counted nodes whose shapes shape inference could not fix.
        dims: Symbolic input dimensions and the values they were fixed to.
    """

    flops: int
    by_op: Mapping[str, int] = field(default_factory=dict)
    nodes: int = 0
    unresolved: tuple[str, ...] = ()
    dims: Mapping[str, int] = field(default_factory=dict)

    @property
    def gflops(self) -> float:
        """:attr:`flops` in units of 10⁹."""
        return self.flops / 1e9

    def to_json(self) -> dict[str, Any]:
        return {
            "flops": self.flops,
            "gflops": round(self.gflops, 6),
            "by_op": dict(self.by_op),
            "nodes": self.nodes,
            "unresolved": list(self.unresolved),
            "dims": dict(self.dims),
        }


def count_flops(path: str | os.PathLike[str], dims: Mapping[str, int] | None = None) -> FlopCount:
    """Count the FLOPs of the ONNX file at ``path``.

    Args:
        path: An ``.onnx`` file.
        dims: Values for the graph inputs' symbolic dimensions (``{"B": 4, "N": 2}``);
            every symbolic input dimension must be given one.

    Returns:
        The count (see the module docstring for what is counted).

    Raises:
        ModelDirError: the file is missing or is not ONNX.
        InputError: a symbolic input dimension has no value in ``dims``, or a value is < 1.

    Example:
        >>> count_flops("samedge/assets/samedge_tiny/encoder.onnx").gflops  # doctest: +SKIP
        0.41
    """
    import onnx

    path = Path(path)
    if not path.is_file():
        raise ModelDirError(f"count_flops: {path} is not a file; pass an .onnx file")
    try:
        # Weights are not needed, only their shapes (which a TensorProto keeps
        # even when its data lives in an external file).
        model = onnx.load(str(path), load_external_data=False)
    except Exception as e:  # onnx raises DecodeError, google.protobuf errors, OSError
        raise ModelDirError(f"count_flops: {path} is not a readable ONNX file ({e})") from e
    return _count(model, dims, path)


def count_flops_model(model: Any, dims: Mapping[str, int] | None = None) -> FlopCount:
    """Count the FLOPs of an in-memory ``onnx.ModelProto`` (see :func:`count_flops`)."""
    return _count(model, dims, None)


def _count(model: Any, dims: Mapping[str, int] | None, path: Path | None) -> FlopCount:
    import onnx

    dims = dict(dims or {})
    for name, value in dims.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise InputError(f"dims[{name!r}]: got {value!r}, expected an int >= 1")
    fixed = onnx.ModelProto()
    fixed.CopyFrom(model)
    _fix_input_dims(fixed, dims)
    by_op, nodes, unresolved = _tally(_infer(fixed))
    if unresolved:
        folded = _ort_folded(path if path is not None else fixed, dims)
        if folded is not None:
            by_op, nodes, unresolved = _tally(_infer(folded))
    if unresolved:
        log.warning(
            "FLOP count: %d node(s) with unknown shapes left out: %s",
            len(unresolved),
            ", ".join(unresolved[:5]),
        )
    return FlopCount(
        flops=sum(by_op.values()),
        by_op=dict(sorted(by_op.items())),
        nodes=nodes,
        unresolved=tuple(unresolved),
        dims=dims,
    )


def _infer(model: Any) -> Any:
    from onnx import shape_inference

    try:
        return shape_inference.infer_shapes(model, data_prop=True)
    except Exception as e:  # an op or opset the installed onnx cannot infer: count what is known
        log.warning("shape inference failed (%s); counting from declared shapes only", e)
        return model


def _tally(model: Any) -> tuple[dict[str, int], int, list[str]]:
    shapes = _known_shapes(model)
    by_op: dict[str, int] = {}
    unresolved: list[str] = []
    nodes = 0
    for node in _all_nodes(model.graph):
        if node.op_type not in COUNTED_OPS:
            continue
        macs = _node_macs(node, shapes)
        if macs is None:
            unresolved.append(node.name or f"{node.op_type}:{node.output[0]}")
            continue
        nodes += 1
        by_op[node.op_type] = by_op.get(node.op_type, 0) + 2 * macs
    return by_op, nodes, unresolved


def _ort_folded(source: Path | Any, dims: Mapping[str, int]) -> Any | None:
    """The graph after ONNX Runtime's basic (constant-folding) optimisations, or None."""
    import tempfile

    import onnx

    try:
        import onnxruntime as ort
    except ImportError:
        return None
    with tempfile.TemporaryDirectory(prefix="samedge-flops-") as tmp:
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
        options.optimized_model_filepath = str(Path(tmp) / "folded.onnx")
        # Weights go to a side file: only their shapes are read back.
        options.add_session_config_entry(
            "session.optimized_model_external_initializers_file_name", "folded.data"
        )
        options.log_severity_level = 3
        for name, value in dims.items():
            options.add_free_dimension_override_by_name(name, value)
        model = str(source) if isinstance(source, Path) else source.SerializeToString()
        try:
            ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
            return onnx.load(str(Path(tmp) / "folded.onnx"), load_external_data=False)
        except Exception as e:  # ORT cannot load it: keep the unfolded count
            log.warning("constant folding with ONNX Runtime failed (%s)", e)
            return None


def _fix_input_dims(model: Any, dims: Mapping[str, int]) -> None:
    initializers = {t.name for t in model.graph.initializer}
    missing: set[str] = set()
    for value in model.graph.input:
        if value.name in initializers:
            continue
        for dim in value.type.tensor_type.shape.dim:
            if dim.HasField("dim_value"):
                continue
            if dim.dim_param in dims:
                dim.dim_value = dims[dim.dim_param]  # clears dim_param (a oneof)
            else:
                missing.add(dim.dim_param or f"{value.name}[?]")
    if missing:
        example = "{" + ", ".join(f"{m!r}: 1" for m in sorted(missing)) + "}"
        raise InputError(
            f"dims: the graph's inputs have symbolic dimensions {sorted(missing)} without a "
            f"value; got {dict(dims)}, pass e.g. dims={example}"
        )


def _all_nodes(graph: Any) -> list[Any]:
    """Nodes of ``graph`` and of its subgraphs (If/Loop bodies)."""
    nodes = []
    for node in graph.node:
        nodes.append(node)
        for attr in node.attribute:
            if attr.g is not None and attr.g.node:
                nodes.extend(_all_nodes(attr.g))
            for sub in attr.graphs:
                nodes.extend(_all_nodes(sub))
    return nodes


def _known_shapes(model: Any) -> dict[str, Shape]:
    shapes: dict[str, Shape] = {}
    for tensor in model.graph.initializer:
        shapes[tensor.name] = tuple(int(d) for d in tensor.dims)
    for node in model.graph.node:  # Constant nodes carry their shape in the attribute
        if node.op_type == "Constant":
            for attr in node.attribute:
                if attr.name == "value":
                    shapes[node.output[0]] = tuple(int(d) for d in attr.t.dims)
    values = [*model.graph.input, *model.graph.value_info, *model.graph.output]
    for value in values:
        tensor_type = value.type.tensor_type
        if not tensor_type.HasField("shape"):
            continue
        dims = tensor_type.shape.dim
        if all(d.HasField("dim_value") for d in dims):
            shapes[value.name] = tuple(int(d.dim_value) for d in dims)
    return shapes


def _node_macs(node: Any, shapes: Mapping[str, Shape]) -> int | None:
    """Multiply-accumulates of one counted node, or None where a shape is unknown."""

    def shape(index: int) -> Shape | None:
        if index >= len(node.input) or not node.input[index]:
            return None
        return shapes.get(node.input[index])

    out = shapes.get(node.output[0]) if node.output else None
    op = node.op_type
    if op in ("Conv", "ConvInteger", "QLinearConv"):
        weight = shape(_CONV_WEIGHT[op])
        if out is None or weight is None or len(weight) < 2:
            return None
        # Each output element is a dot product over Cin/group × kernel.
        return math.prod(out) * math.prod(weight[1:])
    if op == "ConvTranspose":
        x, weight = shape(0), shape(1)
        if x is None or weight is None or len(weight) < 2:
            return None
        # Each input element is scattered through Cout/group × kernel weights.
        return math.prod(x) * math.prod(weight[1:])
    if op in _MATMUL_OPERANDS:
        a = shape(_MATMUL_OPERANDS[op][0])
        if out is None or a is None or not a:
            return None
        return math.prod(out) * a[-1]
    if op == "Gemm":
        a = shape(0)
        if out is None or a is None or len(a) != 2:
            return None
        trans_a = next((attr.i for attr in node.attribute if attr.name == "transA"), 0)
        return math.prod(out) * (a[0] if trans_a else a[1])
    if op == "Einsum":
        equation = next((attr.s.decode() for attr in node.attribute if attr.name == "equation"), "")
        operands = [shape(i) for i in range(len(node.input))]
        if not equation or any(s is None for s in operands):
            return None
        return _einsum_macs(equation, [s for s in operands if s is not None])
    return None


def _einsum_macs(equation: str, operands: Sequence[Shape]) -> int | None:
    """Product of the sizes of every index in ``equation`` (the naive contraction's MACs)."""
    lhs = equation.replace(" ", "").split("->")[0]
    terms = lhs.split(",")
    if len(terms) != len(operands):
        return None
    sizes: dict[str, int] = {}
    for term, dims in zip(terms, operands, strict=True):
        letters = re.findall(r"\.\.\.|[A-Za-z]", term)
        if "..." in letters:
            # The ellipsis stands for the dims the letters do not name; give
            # each a name of its own, aligned from the right as numpy broadcasts.
            named = len(letters) - 1
            extra = len(dims) - named
            if extra < 0:
                return None
            at = letters.index("...")
            ellipsis = [f"...{extra - i}" for i in range(extra)]
            letters = letters[:at] + ellipsis + letters[at + 1 :]
        if len(letters) != len(dims):
            return None
        for letter, size in zip(letters, dims, strict=True):
            sizes[letter] = max(sizes.get(letter, 1), size)
    return math.prod(sizes.values())
