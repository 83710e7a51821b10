"""Per-layer INT8 sensitivity and the layer fallback search.

When an INT8 build misses its gate, a few layers usually carry most of the
error (an activation with outliers that a per-tensor int8 scale cannot hold).
Sensitivity is measured *drop-one-at-a-time* on the calibrated Q/DQ graph
itself, so no layer is re-calibrated: for each quantized layer, its inputs are
rewired past their DequantizeLinear to the float tensor (the activation
before its QuantizeLinear, or the dequantized weight), and the encoder
embedding's SQNR against FP32 is measured on a few frames. The layers whose
un-quantizing gains the most dB are the most sensitive.

:func:`find_fallback` then keeps the top-k sensitive layers in float for the
smallest k (doubling, then bisection) whose gate passes; the build
re-quantizes with those layers excluded, so the final file holds their
original FP32 weights.

Example:
    >>> ranked = layer_sensitivity("fp32.onnx", "int8.onnx", inputs[:4])     # doctest: +SKIP
    >>> ranked[0].node, round(ranked[0].gain_db, 1)                          # doctest: +SKIP
    ('/image_encoder/blocks.3/mlp/lin2/Gemm', 9.4)
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Callable, Iterable, Sequence

import numpy as np
import onnx
from onnx import numpy_helper

from samedge import graph_names
from samedge.calibration._onnx import cpu_session, load_model, run_session
from samedge.calibration.int8 import quantized_nodes
from samedge.calibration.report import LayerSensitivity, sqnr_db
from samedge.errors import InputError

__all__ = ["LayerSensitivity", "drop_quantization", "find_fallback", "layer_sensitivity"]

log = logging.getLogger(__name__)

_Q, _DQ = "QuantizeLinear", "DequantizeLinear"


def _dequantized_weight(graph: onnx.GraphProto, dq: onnx.NodeProto) -> onnx.TensorProto:
    inits = {i.name: i for i in graph.initializer}
    q = numpy_helper.to_array(inits[dq.input[0]]).astype(np.float32)
    scale = numpy_helper.to_array(inits[dq.input[1]]).astype(np.float32)
    zp = (
        numpy_helper.to_array(inits[dq.input[2]]).astype(np.float32)
        if len(dq.input) > 2 and dq.input[2]
        else np.zeros_like(scale)
    )
    axis = next((a.i for a in dq.attribute if a.name == "axis"), 1)
    if scale.ndim == 1 and scale.size > 1:
        shape = [1] * q.ndim
        shape[axis] = scale.size
        scale, zp = scale.reshape(shape), zp.reshape(shape)
    return numpy_helper.from_array(((q - zp) * scale).astype(np.float32), f"{dq.input[0]}__float")


def drop_quantization(model: onnx.ModelProto, nodes: Iterable[str]) -> onnx.ModelProto:
    """A copy of the Q/DQ ``model`` where ``nodes`` read their inputs in float.

    Each input of those nodes that comes from a DequantizeLinear is rewired to
    the float tensor before its QuantizeLinear, or, for a weight stored as
    int8, to a float initializer holding the dequantized weight. Q/DQ nodes
    left without readers are removed.

    Raises:
        InputError: a name that is not a node of the graph.
    """
    out = onnx.ModelProto()
    out.CopyFrom(model)
    graph = out.graph
    by_name = {n.name: n for n in graph.node}
    producers = {o: n for n in graph.node for o in n.output}
    inits = {i.name for i in graph.initializer}
    added: dict[str, str] = {}
    for name in nodes:
        node = by_name.get(name)
        if node is None:
            raise InputError(f"drop_quantization: no node named {name!r} in the graph")
        for k, inp in enumerate(node.input):
            dq = producers.get(inp)
            if dq is None or dq.op_type != _DQ:
                continue
            src = dq.input[0]
            q = producers.get(src)
            if q is not None and q.op_type == _Q:
                node.input[k] = q.input[0]
            elif src in inits:
                if src not in added:
                    tensor = _dequantized_weight(graph, dq)
                    graph.initializer.append(tensor)
                    added[src] = tensor.name
                node.input[k] = added[src]
    _prune(graph)
    return out


def _prune(graph: onnx.GraphProto) -> None:
    """Remove Q/DQ nodes (and initializers) that nothing reads any more."""
    outputs = {o.name for o in graph.output}
    while True:
        read = {i for n in graph.node for i in n.input} | outputs
        dead = [
            n for n in graph.node if n.op_type in (_Q, _DQ) and not any(o in read for o in n.output)
        ]
        if not dead:
            break
        for n in dead:
            graph.node.remove(n)
    read = {i for n in graph.node for i in n.input}
    keep = [i for i in graph.initializer if i.name in read]
    del graph.initializer[:]
    graph.initializer.extend(keep)


def _embedding(
    session: object, x: np.ndarray, output: str = graph_names.IMAGE_EMBEDDINGS
) -> np.ndarray:
    return run_session(session, {graph_names.IMAGE: x}, [output])[0]


def _mean_sqnr(
    session: object,
    inputs: Sequence[np.ndarray],
    refs: Sequence[np.ndarray],
    output: str = graph_names.IMAGE_EMBEDDINGS,
) -> float:
    values = [
        sqnr_db(ref, _embedding(session, x, output)) for x, ref in zip(inputs, refs, strict=True)
    ]
    finite = [v for v in values if math.isfinite(v)]
    if len(finite) != len(values):
        # inf = identical to FP32 (the best possible), -inf = NaN/overflow (the worst).
        if any(v == -math.inf for v in values):
            return -math.inf
        return math.inf if not finite else max(finite) + 100.0
    return float(np.mean(finite))


def layer_sensitivity(
    fp32_encoder: str | os.PathLike[str],
    int8_encoder: str | os.PathLike[str] | onnx.ModelProto,
    inputs: Sequence[np.ndarray],
    *,
    max_layers: int | None = None,
    progress: Callable[[int, int], None] | None = None,
    output: str = graph_names.IMAGE_EMBEDDINGS,
) -> list[LayerSensitivity]:
    """Rank the quantized layers of an encoder by how much un-quantizing each one helps.

    Args:
        fp32_encoder: The FP32 encoder (reference embeddings).
        int8_encoder: The Q/DQ encoder (path or model).
        inputs: A few float32 encoder inputs (calibration frames are fine).
        max_layers: Measure at most this many layers (in graph order); ``None`` for all.
        progress: Called with ``(done, total)`` after each layer.
        output: The encoder output whose SQNR ranks the layers (a SAM 2
            encoder's ``vision_features``).

    Returns:
        One entry per measured layer, most sensitive (largest gain) first.
    """
    if not inputs:
        raise InputError("inputs: got none, expected a few encoder inputs")
    model = int8_encoder if isinstance(int8_encoder, onnx.ModelProto) else load_model(int8_encoder)
    ref_session = cpu_session(fp32_encoder)
    refs = [_embedding(ref_session, x, output) for x in inputs]
    del ref_session
    base = _mean_sqnr(cpu_session(model), inputs, refs, output)
    layers = quantized_nodes(model)
    if max_layers is not None:
        layers = layers[:max_layers]
    op_types = {n.name: n.op_type for n in model.graph.node}
    ranked = []
    for i, name in enumerate(layers):
        value = _mean_sqnr(cpu_session(drop_quantization(model, [name])), inputs, refs, output)
        ranked.append(LayerSensitivity(name, op_types[name], value, value - base))
        if progress is not None:
            progress(i + 1, len(layers))
    ranked.sort(key=lambda s: s.gain_db, reverse=True)
    log.info(
        "sensitivity: %d layers, base SQNR %.1f dB, top: %s",
        len(ranked),
        base,
        ", ".join(f"{s.node} (+{s.gain_db:.1f} dB)" for s in ranked[:3]),
    )
    return ranked


def find_fallback(passes: Callable[[int], bool], limit: int) -> int | None:
    """Smallest k in ``1..limit`` with ``passes(k)``, assuming more kept layers never hurt.

    Tries k = 1, 2, 4, ... up to ``limit``, then bisects between the last
    failing and the first passing k.

    Returns:
        The smallest passing k, or ``None`` when even ``limit`` fails.
    """
    if limit < 1:
        return None
    lo, k = 0, 1  # passes(lo) is False (lo = 0: the plain build already failed)
    while True:
        k = min(k, limit)
        if passes(k):
            break
        if k == limit:
            return None
        lo, k = k, 2 * k
    hi = k
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if passes(mid):
            hi = mid
        else:
            lo = mid
    return hi
