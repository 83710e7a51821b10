"""Trace a wrapper module to ONNX, finish the file, and check the graph.

Choices made for TensorRT and OpenVINO (both must build these graphs later):

* The legacy TorchScript exporter (``dynamo=False``) at opset >= 17: it emits
  ``nn.LayerNorm`` as one ``LayerNormalization`` node (opset 17), which
  TensorRT >= 8.6 and OpenVINO map to a fused kernel and which FP16 builds
  keep in FP32. SAM's ``LayerNorm2d`` is hand-written upstream and stays
  ReduceMean/Sub/Pow/Sqrt/Div.
* GELU stays in its exact ``Erf`` form at the default opset 17: the ``Gelu``
  op only exists from opset 20, which TensorRT 8.6 (JetPack 6.0) cannot parse,
  and the tanh approximation would change SAM's numbers. Both backends fuse
  the Erf pattern. (Asking for opset 20 gets torch's ``Gelu`` op.)
* Only B and N of the decoder are dynamic; channels and spatial dims are
  static and declared on the graph outputs, so engines need one optimisation
  profile over (B, N) and nothing else.
* ``repeat_interleave`` of the single image embedding over the B prompts
  (inside SAM's ``MaskDecoder.predict_masks``) is emitted as one ``Expand``
  instead of torch's generic OneHot/Tile/Reshape construction (see
  :func:`_repeat_interleave_as_expand`); the result is the same because the
  repeated tensor has batch size 1.
* No graph input is a shape tensor (no ``orig_im_size``), no control flow,
  no data-dependent shapes: :data:`PORTABLE_OPS` lists what a graph may use.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import shutil
import warnings
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import onnx
import torch
from torch import nn

from samedge.errors import ExportError

__all__ = [
    "EXTERNAL_DATA_THRESHOLD",
    "PORTABLE_OPS",
    "check_graph",
    "check_ops",
    "exported_with",
    "finish_onnx",
    "trace_to_onnx",
]

log = logging.getLogger(__name__)


def exported_with() -> dict[str, str]:
    """What made an export: torch, onnx, and a SHA-256 of the exporters' own source.

    The source hash is what a cache of exports compares (``samedge bench``
    re-exports its random-weight models when it differs): the same
    checkpoint exported by changed exporter code is a different graph.
    """
    digest = hashlib.sha256()
    for path in sorted(Path(__file__).resolve().parent.glob("*.py")):
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return {
        "torch": torch.__version__,
        "onnx": onnx.__version__,
        "exporters_sha256": digest.hexdigest(),
    }


# Protobuf cannot serialise a message over 2 GiB; beyond ~1.8 GiB of weights
# (SAM ViT-H's encoder is 2.5 GB) the weights go to one ``<name>.data`` file.
EXTERNAL_DATA_THRESHOLD = 1_800_000_000

# Default-domain ops that TensorRT (8.6 .. 11, ONNX parser) and OpenVINO's ONNX
# frontend both build, for the static/(B, N)-dynamic shapes used here. Control
# flow (If, Loop, Scan), data-dependent shapes (NonZero, Unique, NonMaxSuppression),
# sequences and random ops are deliberately absent. ``Gelu`` only appears when
# the user asks for opset 20, which needs TensorRT >= 10 anyway.
PORTABLE_OPS = frozenset(
    {
        "Abs", "Add", "And", "ArgMax", "ArgMin", "AveragePool", "BatchNormalization",
        "Cast", "Ceil", "Clip", "Concat", "Constant", "ConstantOfShape", "Conv",
        "ConvTranspose", "Cos", "CumSum", "DepthToSpace", "Div", "Einsum", "Elu",
        "Equal", "Erf", "Exp", "Expand", "Flatten", "Floor", "Gather", "GatherElements",
        "GatherND", "Gelu", "Gemm", "GlobalAveragePool", "GlobalMaxPool", "Greater",
        "GreaterOrEqual", "GroupNormalization", "HardSigmoid", "HardSwish", "Identity",
        "InstanceNormalization", "LayerNormalization", "LeakyRelu", "Less", "LessOrEqual",
        "Log", "MatMul", "Max", "MaxPool", "Mean", "Min", "Mod", "Mul", "Neg", "Not",
        "OneHot", "Or", "PRelu", "Pad", "Pow", "Range", "Reciprocal", "ReduceL2",
        "ReduceMax", "ReduceMean", "ReduceMin", "ReduceProd", "ReduceSum", "Relu",
        "Reshape", "Resize", "Round", "ScatterElements", "ScatterND", "Shape", "Sigmoid",
        "Sign", "Sin", "Size", "Slice", "Softmax", "Softplus", "SpaceToDepth", "Split",
        "Sqrt", "Squeeze", "Sub", "Sum", "Tanh", "Tile", "TopK", "Transpose", "Unsqueeze",
        "Where", "Xor",
    }
)  # fmt: skip


# --------------------------------------------------------------------------- tracing


def _repeat_interleave_as_expand(
    g: Any, self: Any, repeats: Any, dim: Any = None, output_size: Any = None
) -> Any:
    """``repeat_interleave(x, n, dim=0)`` with ``x.shape[0] == 1`` as one ``Expand``.

    torch's own symbolic handles any repeats with OneHot/Tile/Reshape
    arithmetic on runtime shapes; TensorRT has to resolve that as shape-tensor
    math at every B. For a batch-1 input the result is simply a broadcast.
    Anything else falls back to torch's symbolic.
    """
    from torch.onnx import symbolic_helper as sh
    from torch.onnx import symbolic_opset13

    sizes = sh._get_tensor_sizes(self)
    axis = None if sh._is_none(dim) else sh._maybe_get_const(dim, "i")
    repeats_rank = sh._get_tensor_rank(repeats)
    if (
        axis == 0
        and sizes is not None
        and len(sizes) > 0
        and sizes[0] == 1
        and all(isinstance(s, int) for s in sizes[1:])
        and repeats_rank in (0, 1)
    ):
        count = g.op("Reshape", repeats, g.op("Constant", value_t=torch.tensor([1])))
        count = g.op("Cast", count, to_i=7)  # INT64, what Expand's shape input takes
        rest = g.op("Constant", value_t=torch.tensor(sizes[1:], dtype=torch.int64))
        return g.op("Expand", self, g.op("Concat", count, rest, axis_i=0))
    return symbolic_opset13.repeat_interleave(g, self, repeats, dim, output_size)


@contextlib.contextmanager
def _custom_symbolics(opset: int) -> Iterator[None]:
    name = "aten::repeat_interleave"
    torch.onnx.register_custom_op_symbolic(name, _repeat_interleave_as_expand, opset)
    try:
        yield
    finally:
        torch.onnx.unregister_custom_op_symbolic(name, opset)


def trace_to_onnx(
    module: nn.Module,
    args: tuple[torch.Tensor, ...],
    path: Path,
    *,
    input_names: Sequence[str],
    output_names: Sequence[str],
    dynamic_axes: Mapping[str, Mapping[int, str]] | None,
    opset: int,
) -> Path:
    """Export ``module`` with the legacy exporter to ``path`` (raw, before :func:`finish_onnx`).

    The exporter writes weights over 2 GiB as loose files beside ``path``, so
    ``path`` should sit in a directory of its own.

    Raises:
        ExportError: tracing or conversion failed.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        with torch.no_grad(), _custom_symbolics(opset), warnings.catch_warnings():
            # TracerWarnings about Python ints in SAM's code are expected: the
            # spatial sizes they freeze are static by design.
            warnings.simplefilter("ignore", torch.jit.TracerWarning)
            warnings.filterwarnings("ignore", category=DeprecationWarning)
            # Strided slices in TinyViT are left to the runtime; nothing to act on.
            warnings.filterwarnings("ignore", message="Constant folding - Only steps=1")
            torch.onnx.export(
                module,
                args,
                str(path),  # a str, not a Path: the exporter only writes >2 GiB models for str
                dynamo=False,
                opset_version=opset,
                input_names=list(input_names),
                output_names=list(output_names),
                dynamic_axes={k: dict(v) for k, v in (dynamic_axes or {}).items()},
                do_constant_folding=True,
            )
    except ExportError:
        raise
    except Exception as e:  # the exporter raises many untyped errors
        raise ExportError(
            f"torch.onnx.export of {type(module).__name__} failed ({type(e).__name__}: {e})"
        ) from e
    return path


# --------------------------------------------------------------------------- finishing


def finish_onnx(
    raw: Path,
    out: Path,
    *,
    metadata: Mapping[str, str],
    output_shapes: Mapping[str, Sequence[int | str]],
    external_data: bool | None,
    producer: str,
) -> list[Path]:
    """Write the final graph: metadata, declared output shapes, weights inline or external.

    Args:
        raw: What :func:`trace_to_onnx` wrote (its directory is removed afterwards).
        out: Final ``.onnx`` path.
        metadata: ``metadata_props`` to set (the model card's).
        output_shapes: Contract shape per output (ints static, strings dynamic);
            the exporter leaves some dims symbolic where SAM's code reshapes.
        external_data: Weights in ``<out>.data``; ``None`` decides by size.
        producer: Value of ``producer_name``.

    Returns:
        The files written (``out`` and possibly ``out.data``).
    """
    model = onnx.load(str(raw), load_external_data=True)
    for key, value in metadata.items():
        entry = next((p for p in model.metadata_props if p.key == key), None)
        if entry is None:
            entry = model.metadata_props.add()
            entry.key = key
        entry.value = value
    model.producer_name = producer
    for output in model.graph.output:
        if output.name in output_shapes:
            _declare_shape(output, output_shapes[output.name])
    weight_bytes = sum(len(t.raw_data) for t in model.graph.initializer)
    if external_data is None:
        external_data = weight_bytes > EXTERNAL_DATA_THRESHOLD
    out.parent.mkdir(parents=True, exist_ok=True)
    data_name = out.name + ".data"
    if external_data:
        onnx.save_model(
            model,
            str(out),
            save_as_external_data=True,
            all_tensors_to_one_file=True,
            location=data_name,
            size_threshold=1024,
        )
        written = [out, out.parent / data_name]
    else:
        onnx.save_model(model, str(out))
        written = [out]
    del model
    if raw.parent != out.parent:
        shutil.rmtree(raw.parent, ignore_errors=True)
    return written


def _declare_shape(value: onnx.ValueInfoProto, shape: Sequence[int | str]) -> None:
    dims = value.type.tensor_type.shape.dim
    if len(dims) != len(shape):
        raise ExportError(
            f"output {value.name}: the graph has rank {len(dims)}, the contract {len(shape)}"
        )
    for dim, want in zip(dims, shape, strict=True):
        if isinstance(want, str):
            dim.dim_param = want
        else:
            dim.dim_value = want


# --------------------------------------------------------------------------- checks


def check_ops(model: onnx.ModelProto, source: str) -> set[str]:
    """Raise if ``model`` uses an op outside :data:`PORTABLE_OPS` or a non-default domain.

    Returns:
        The op types used.

    Raises:
        ExportError: naming the offending ops.
    """
    used = {(n.domain or "", n.op_type) for n in model.graph.node}
    foreign = sorted(f"{d}::{op}" if d else op for d, op in used if d or op not in PORTABLE_OPS)
    if foreign:
        raise ExportError(
            f"{source}: uses ops that TensorRT or OpenVINO may not build: {', '.join(foreign)}; "
            "this export is not portable (please report it with the model name)"
        )
    return {op for _, op in used}


def check_graph(
    path: Path,
    *,
    inputs: Mapping[str, Sequence[int | str]],
    outputs: Mapping[str, Sequence[int | str]],
) -> set[str]:
    """``onnx.checker`` (full, with shape inference), the I/O contract, and the op list.

    Args:
        path: The finished ``.onnx`` (external data is resolved beside it).
        inputs: Expected input names and shapes (ints static, strings dynamic).
        outputs: Expected output names and shapes.

    Returns:
        The op types the graph uses.

    Raises:
        ExportError: the checker fails, names/shapes differ, or an op is not portable.
    """
    try:
        onnx.checker.check_model(str(path), full_check=True)
    except Exception as e:  # checker and shape inference raise several error types
        raise ExportError(f"{path.name}: onnx.checker rejected the graph ({e})") from e
    model = onnx.load(str(path), load_external_data=False)
    for kind, values, expected in (
        ("input", model.graph.input, inputs),
        ("output", model.graph.output, outputs),
    ):
        got = {v.name: _shape_of(v) for v in values}
        want = {k: list(v) for k, v in expected.items()}
        if got != want:
            raise ExportError(
                f"{path.name}: {kind}s are {got}, the samedge contract expects {want}"
            )
        for v in values:
            if v.type.tensor_type.elem_type != onnx.TensorProto.FLOAT:
                raise ExportError(f"{path.name}: {kind} {v.name} is not float32")
    return check_ops(model, path.name)


def _shape_of(value: onnx.ValueInfoProto) -> list[int | str]:
    return [
        d.dim_param if d.HasField("dim_param") else d.dim_value
        for d in value.type.tensor_type.shape.dim
    ]
