"""INT8 encoders as explicit QuantizeLinear/DequantizeLinear (Q/DQ) ONNX.

One file serves every backend: TensorRT builds the Q/DQ graph strongly typed
(its implicit INT8 calibrators are gone in TensorRT 11), OpenVINO turns the
Q/DQ pairs into its own low-precision ops, ONNX Runtime runs them as they are.
TensorRT's rules decide the format: activations **symmetric signed int8**
(zero point 0) and weights **per-channel symmetric int8**; :func:`check_qdq`
verifies both on every file written.

Two maintained calibration engines do the work (:class:`Int8Method`):

* ``nncf`` (the default): NNCF's post-training quantization of ONNX models
  with the ``PERFORMANCE`` (symmetric) preset, ``ModelType.TRANSFORMER`` for
  graphs with attention (it keeps LayerNorm/Softmax/GELU inputs in float and
  applies SmoothQuant) and fast bias correction. NNCF quantizes a
  non-negative activation (after ReLU) as *unsigned* uint8 with zero point 0,
  which TensorRT cannot build; :func:`check_qdq`'s companion
  ``_force_signed`` rewrites those to int8 with zero point 0 and twice the
  step, which is exactly the quantizer NNCF would have chosen had it been told
  the tensor is signed (its ``signedness_to_force`` option conflicts with its
  own hardware configs).
* ``onnxruntime``: ``onnxruntime.quantization.quantize_static`` in QDQ format,
  int8 symmetric activations (MinMax calibration), per-channel int8 weights,
  biases kept float (TensorRT does not take int32 bias DQ).

Measured here (benchmarks/results/amd-epyc-2c/calibration.md; random-weight
MobileSAM, 16 synthetic calibration frames, 4 held out, OpenVINO CPU, 2 threads):

=============  ==================  ===========================  ==========  ============
engine         embedding cos/SQNR  mask IoU mean / p5 (gate)    OV int8 ms  calibration
=============  ==================  ===========================  ==========  ============
NNCF           0.9967 / 21.9 dB    0.965 / 0.896 (pass)         300         68 s, 4.2 GB
ORT static     0.9845 / 15.3 dB    0.956 / 0.834 (fail)         249         38 s, 4.8 GB
ModelOpt 0.47  0.8575 /  5.5 dB    0.807 / 0.455 (fail)         276         62 s, 4.9 GB
=============  ==================  ===========================  ==========  ============

(FP32 on the same OpenVINO: 356 ms in its bf16 default, 584 ms in f32; the
machine is shared, timings move by ~20% between runs.) The three files run
at about the same speed; NNCF is the only one that passes the gate, so it is
the default. On the trained samedge_tiny CNN all three miss the mask-IoU gate
(NNCF 0.893 / 0.566, ModelOpt 0.912 / 0.681, ORT 0.836 / 0.327) while NNCF's
build keeps FP32's ground-truth mIoU (see :mod:`.gate`). ONNX Runtime's CPU
provider runs the Q/DQ files slower than FP32 here: on CPUs, OpenVINO is the
INT8 runtime.

SAM ViT-B (random weights): ``samedge build --precision int8`` with its
defaults (32 frames, attention MatMuls quantized) fits in 12 GB
(benchmarks/results/amd-epyc-2c/calibration_memory.md). NNCF streams the
frames: each runs through ONNX Runtime with the activations NNCF needs as
extra outputs (1.1 GB for SmoothQuant, 3.3 GB for min/max and bias
correction) and is reduced to statistics before the next. The 805 MB
global-attention maps are not among them: the transformer preset leaves
``softmax·v`` in float and quantizes ``q·kᵀ``. What once made ViT-B need
more than 22 GB was ONNX Runtime's arena and memory pattern (twice a run's
activations kept) and freed memory never returned between steps; see
:mod:`._onnx` and :func:`_lean_nncf_sessions`.

Weights are quantized to 7 bits (-64..63 of int8's range; NNCF's
``OverflowFix.ENABLE``, ONNX Runtime's ``reduce_range``). CPUs without VNNI
(AVX2, and AVX-512 before Cascade Lake / Zen 4) multiply uint8 activations by
int8 weights with ``vpmaddubsw``, which adds pairs of products into int16 and
saturates; OpenVINO runs Q/DQ files that way. Measured on a 2-core AMD EPYC
with AVX2 only (OpenVINO 2026.4, the reduced test SAM, NNCF's default overflow
fix on the first layer only): embedding cosine vs FP32 0.978 on OpenVINO
against 0.9998 on ONNX Runtime; with 7-bit weights 0.99968 on both. The file
is one artifact for every CPU and TensorRT, so it is made safe for the
oldest; the half bit of weight precision it costs is inside the gate.
``Int8Config(full_range_weights=True)`` (``samedge build --int8-full-range``)
keeps all 8 bits for files meant only for TensorRT or VNNI/AMX CPUs.

ModelOpt is not offered as a method: ``nvidia-modelopt[onnx]`` pins onnx and
onnxruntime-gpu versions that conflict with samedge's, so the benchmark runs
it in its own environment.

Example:
    >>> from samedge.calibration.int8 import Int8Config, quantize_int8
    >>> result = quantize_int8("m/encoder.onnx", "out/encoder.onnx", frames)  # doctest: +SKIP
    >>> result.qdq.activations_symmetric                                     # doctest: +SKIP
    True
"""

from __future__ import annotations

import contextlib
import enum
import logging
import os
import tempfile
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import numpy_helper

from samedge.calibration._onnx import (
    cpu_session,
    give_back_memory,
    load_model,
    optimize_basic,
    retag_precision,
    run_session,
    save_model,
    session_options,
)
from samedge.errors import BackendUnavailableError, ExportError, InputError

__all__ = [
    "DEFAULT_METHOD",
    "QUANTIZED_OP_TYPES",
    "Int8Config",
    "Int8Method",
    "Int8Result",
    "QdqSummary",
    "attention_matmuls",
    "check_qdq",
    "quantize_int8",
    "quantized_nodes",
]

log = logging.getLogger(__name__)


class Int8Method(enum.Enum):
    """Calibration engine."""

    NNCF = "nncf"
    ONNXRUNTIME = "onnxruntime"


#: Chosen by measurement (module docstring, benchmarks/results/).
DEFAULT_METHOD = Int8Method.NNCF
#: Ops whose inputs ONNX Runtime's quantizer quantizes (TensorRT runs these in int8).
#: Not ConvTranspose: ONNX Runtime quantizes its weight per output channel (axis 1), which
#: TensorRT does not support ("We don't support per-output-channel quant for
#: ConvTranspose", NVIDIA/TensorRT#2380); NNCF is told to skip it too.
QUANTIZED_OP_TYPES = ("Conv", "MatMul", "Gemm")
#: Op types kept in float by every engine (see QUANTIZED_OP_TYPES).
_FLOAT_OP_TYPES = ("ConvTranspose",)
#: The weight axis TensorRT takes per-channel scales on: Conv's output channels (KCRS),
#: ConvTranspose's input channels (its kernels assume per-input-channel scales,
#: NVIDIA/TensorRT#2380 and #1694).
_WEIGHT_AXIS = {"Conv": 0, "ConvTranspose": 0}
_Q, _DQ = "QuantizeLinear", "DequantizeLinear"


@dataclass(frozen=True)
class Int8Config:
    """How to quantize.

    Attributes:
        method: Calibration engine; ``None`` means :data:`DEFAULT_METHOD`.
        exclude: Names of nodes to keep in float (layer fallback), as named in
            the graph after :func:`~samedge.calibration._onnx.optimize_basic`.
        optimize: Fold the exporter's shape arithmetic before quantizing.
        transformer: NNCF's ``ModelType.TRANSFORMER``; ``None`` decides by the
            graph (it has a Softmax).
        fast_bias_correction: NNCF's bias correction after quantizing.
        attention: Quantize the attention MatMuls (activation × activation).
            NNCF's transformer preset then quantizes ``q·kᵀ`` and, by its own
            rule, leaves ``softmax·v`` in float; the ONNX Runtime engine
            quantizes both. Off keeps both in float (less speed-up; with
            NNCF, 24 fewer activations to collect on a ViT-B).
        full_range_weights: Weights in all 8 bits instead of 7. Half a bit
            more weight precision on TensorRT and on CPUs with VNNI or AMX;
            wrong on OpenVINO on CPUs without VNNI (int16 overflow, see the
            module notes), so off by default.
    """

    method: Int8Method | None = None
    exclude: tuple[str, ...] = ()
    optimize: bool = True
    transformer: bool | None = None
    fast_bias_correction: bool = True
    attention: bool = True
    full_range_weights: bool = False

    def __post_init__(self) -> None:
        if self.method is not None and not isinstance(self.method, Int8Method):
            raise InputError(
                f"method: got {self.method!r}, expected an Int8Method "
                f"({', '.join(m.value for m in Int8Method)}) or None"
            )
        if not isinstance(self.exclude, tuple) or not all(isinstance(n, str) for n in self.exclude):
            raise InputError(f"exclude: got {self.exclude!r}, expected a tuple of node names")

    @property
    def resolved_method(self) -> Int8Method:
        return self.method or DEFAULT_METHOD


@dataclass(frozen=True)
class QdqSummary:
    """The Q/DQ layout of a quantized graph (what :func:`check_qdq` verified).

    Attributes:
        quantizers: QuantizeLinear nodes.
        dequantizers: DequantizeLinear nodes.
        weights_per_channel: Weight dequantizers with one scale per output channel.
        weights_per_tensor: Weight dequantizers with a single scale.
        activations_symmetric: Every zero point is an int8 zero.
        quantized_nodes: Compute nodes that read a dequantized input.
    """

    quantizers: int
    dequantizers: int
    weights_per_channel: int
    weights_per_tensor: int
    activations_symmetric: bool
    quantized_nodes: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        d = dict(self.__dict__)
        d["quantized_nodes"] = len(self.quantized_nodes)
        return d


@dataclass(frozen=True)
class Int8Result:
    """What :func:`quantize_int8` wrote.

    Attributes:
        output: The Q/DQ ``.onnx``.
        method: Engine used.
        qdq: Its verified layout.
        excluded: Nodes kept in float on request.
        frames: Calibration inputs used.
        seconds: Wall time.
    """

    output: Path
    method: Int8Method
    qdq: QdqSummary
    excluded: tuple[str, ...] = ()
    frames: int = 0
    seconds: float = 0.0
    notes: tuple[str, ...] = field(default_factory=tuple)


def _feeds(
    frames: Iterable[np.ndarray | Mapping[str, np.ndarray]], input_name: str
) -> list[dict[str, np.ndarray]]:
    out = []
    for i, item in enumerate(frames):
        if isinstance(item, Mapping):
            out.append(dict(item))
        elif isinstance(item, np.ndarray) and item.dtype == np.float32:
            out.append({input_name: item})
        else:
            got = f"{item.dtype} array" if isinstance(item, np.ndarray) else type(item).__name__
            raise InputError(
                f"calibration input {i}: got {got}, expected a float32 encoder input "
                "(see samedge.calibration.frames.encoder_inputs) or a name -> array dict"
            )
    if not out:
        raise InputError("frames: got no calibration inputs, expected at least 1")
    return out


def _is_transformer(model: onnx.ModelProto) -> bool:
    return any(n.op_type == "Softmax" for n in model.graph.node)


def attention_matmuls(model: onnx.ModelProto) -> list[str]:
    """MatMul nodes that multiply two activations (no weight input): attention's products."""
    inits = {i.name for i in model.graph.initializer}
    return [
        n.name
        for n in model.graph.node
        if n.op_type == "MatMul" and not any(i in inits for i in n.input)
    ]


class _LeanOrt:
    """``onnxruntime`` as NNCF's ONNX engine sees it, with :func:`session_options`.

    NNCF builds its statistics sessions from ``onnxruntime.SessionOptions()``
    with no way to pass options. Measured on ViT-B, a frame of its second
    statistics pass peaked 9.8 GiB above the pass's start with ONNX Runtime's
    defaults (CPU arena + memory pattern) and 5.5 GiB with ours, which free a
    frame's activations before the next (the whole build: 13.0 vs 9.7 GiB).
    """

    def __init__(self, ort: Any) -> None:
        self._ort = ort

    def __getattr__(self, name: str) -> Any:
        return getattr(self._ort, name)

    @staticmethod
    def SessionOptions() -> Any:  # noqa: N802  # stands in for onnxruntime.SessionOptions
        return session_options()


@contextlib.contextmanager
def _lean_nncf_sessions() -> Iterator[None]:
    """While quantizing, NNCF's ONNX engine creates its sessions with our options."""
    from samedge._signals import import_module

    try:
        # import_module: a Ctrl-C inside NNCF's import interrupts the build.
        engine = import_module("nncf.onnx.engine")
    except ImportError:  # NNCF without its ONNX backend fails later, with its own message
        yield
        return
    ort = getattr(engine, "rt", None)
    if ort is None or not hasattr(ort, "InferenceSession"):
        # A later NNCF may build sessions differently; it still works, with
        # ONNX Runtime's default (larger) memory use.
        log.debug("nncf.onnx.engine has no 'rt' module; its sessions keep ORT's defaults")
        yield
        return
    engine.rt = _LeanOrt(ort)  # type: ignore[attr-defined]
    try:
        yield
    finally:
        engine.rt = ort  # type: ignore[attr-defined]


def _quantize_nncf(
    model: onnx.ModelProto, feeds: list[dict[str, np.ndarray]], config: Int8Config
) -> onnx.ModelProto:
    try:
        import nncf
    except ImportError as e:
        raise BackendUnavailableError(
            f"int8 method 'nncf' needs NNCF ({e}); install it with `pip install samedge[openvino]` "
            "or `pip install nncf`, or pass --method onnxruntime"
        ) from e
    # NNCF logs every ignored node and quantizer decision at INFO; keep that
    # for -vv (DEBUG) runs only.
    if not log.isEnabledFor(logging.DEBUG):
        logging.getLogger("nncf").setLevel(logging.WARNING)
    transformer = _is_transformer(model) if config.transformer is None else config.transformer
    ignored = nncf.IgnoredScope(
        names=list(config.exclude), types=list(_FLOAT_OP_TYPES), validate=False
    )
    # NNCF already streams: one frame at a time through ONNX Runtime, reduced to
    # its statistics before the next. A frame's peak is the run's activations
    # plus the activations NNCF asked for as outputs (ViT-B: 1.1 GB for
    # SmoothQuant, 3.3 GB for min/max + bias correction), whatever subset_size.
    with _lean_nncf_sessions():
        return nncf.quantize(
            model,
            nncf.Dataset(feeds),
            preset=nncf.QuantizationPreset.PERFORMANCE,
            model_type=nncf.ModelType.TRANSFORMER if transformer else None,
            subset_size=len(feeds),
            fast_bias_correction=config.fast_bias_correction,
            ignored_scope=ignored,
            # 7-bit weights in every layer: accurate on pre-VNNI CPUs too (module notes).
            advanced_parameters=nncf.AdvancedQuantizationParameters(
                overflow_fix=nncf.OverflowFix.DISABLE
                if config.full_range_weights
                else nncf.OverflowFix.ENABLE
            ),
        )


class _Reader:
    """ONNX Runtime's CalibrationDataReader over a list of feeds (one pass)."""

    def __init__(self, feeds: list[dict[str, np.ndarray]]) -> None:
        self._it = iter(feeds)

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._it, None)


def _quantize_ort(
    src: Path, dst: Path, feeds: list[dict[str, np.ndarray]], config: Int8Config
) -> onnx.ModelProto:
    root = logging.getLogger()
    root.addFilter(_drop_preprocess_advice)
    try:
        _quantize_static(src, dst, feeds, config)
    finally:
        root.removeFilter(_drop_preprocess_advice)
    return onnx.load(str(dst))


def _drop_preprocess_advice(record: logging.LogRecord) -> bool:
    # quantize_static logs (on the root logger) advice to run its pre-processing;
    # optimize_basic already did the equivalent graph clean-up.
    return "pre-processing before quantization" not in record.getMessage()


def _quantize_static(
    src: Path, dst: Path, feeds: list[dict[str, np.ndarray]], config: Int8Config
) -> None:
    from onnxruntime.quantization import (
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    quantize_static(
        str(src),
        str(dst),
        _Reader(feeds),  # type: ignore[arg-type]  # duck-typed CalibrationDataReader
        quant_format=QuantFormat.QDQ,
        activation_type=QuantType.QInt8,
        weight_type=QuantType.QInt8,
        per_channel=True,
        reduce_range=not config.full_range_weights,  # 7-bit weights (module notes)
        op_types_to_quantize=list(QUANTIZED_OP_TYPES),
        nodes_to_exclude=list(config.exclude),
        calibrate_method=CalibrationMethod.MinMax,
        extra_options={
            "ActivationSymmetric": True,
            "WeightSymmetric": True,
            # TensorRT takes no int32 bias dequantization; biases stay float.
            "QuantizeBias": False,
        },
    )


def _force_signed(model: onnx.ModelProto) -> int:
    """Rewrite uint8 zero-point-0 quantizers as int8 zero-point-0 ones covering the same max.

    A uint8 quantizer with zero point 0 and scale ``s`` covers ``[0, 255·s]``;
    the int8 one covering the same maximum has scale ``255·s/127``. Returns how
    many Q/DQ nodes were rewritten.
    """
    graph = model.graph
    inits = {i.name: i for i in graph.initializer}
    rewritten: dict[tuple[str, str], tuple[str, str]] = {}
    retyped: set[str] = set()
    count = 0
    for node in graph.node:
        if node.op_type not in (_Q, _DQ) or len(node.input) < 3:
            continue
        zp = inits.get(node.input[2])
        scale = inits.get(node.input[1])
        if zp is None or scale is None or zp.data_type != onnx.TensorProto.UINT8:
            continue
        zp_arr = numpy_helper.to_array(zp)
        if np.any(zp_arr != 0):
            raise ExportError(
                f"{node.name}: asymmetric uint8 quantizer (zero point {zp_arr.ravel()[:4]}...); "
                "samedge needs symmetric quantization for TensorRT"
            )
        key = (scale.name, zp.name)
        if key not in rewritten:
            new_scale = numpy_helper.from_array(
                (numpy_helper.to_array(scale).astype(np.float32) * (255.0 / 127.0)).astype(
                    np.float32
                ),
                f"{scale.name}__int8",
            )
            new_zp = numpy_helper.from_array(zp_arr.astype(np.int8), f"{zp.name}__int8")
            graph.initializer.extend([new_scale, new_zp])
            rewritten[key] = (new_scale.name, new_zp.name)
        node.input[1], node.input[2] = rewritten[key]
        if node.op_type == _Q:
            retyped.add(node.output[0])
        count += 1
    # The engine declared the quantized tensors uint8; they are int8 now.
    for value in (*graph.value_info, *graph.output):
        if value.name in retyped:
            value.type.tensor_type.elem_type = onnx.TensorProto.INT8
    # Drop the uint8 initializers nothing reads any more.
    used = {i for n in graph.node for i in n.input}
    keep = [i for i in graph.initializer if i.name in used]
    del graph.initializer[:]
    graph.initializer.extend(keep)
    return count


def quantized_nodes(model: onnx.ModelProto) -> list[str]:
    """Compute nodes (not Q/DQ) that read at least one DequantizeLinear output, in graph order."""
    dq_out = {o for n in model.graph.node if n.op_type == _DQ for o in n.output}
    return [
        n.name
        for n in model.graph.node
        if n.op_type not in (_Q, _DQ) and any(i in dq_out for i in n.input)
    ]


def check_qdq(model: onnx.ModelProto, source: str = "graph") -> QdqSummary:
    """Verify a Q/DQ graph follows TensorRT's rules and summarise it.

    Raises:
        ExportError: a zero point that is not an int8 zero, a zero point or
            scale computed at run time, a per-channel weight scale on an axis
            TensorRT does not support (Conv and ConvTranspose: axis 0), or no
            quantizer at all.
    """
    graph = model.graph
    inits = {i.name: i for i in graph.initializer}
    producers = {o: n for n in graph.node for o in n.output}
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for n in graph.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    n_q = n_dq = per_channel = per_tensor = 0
    for node in graph.node:
        if node.op_type not in (_Q, _DQ):
            continue
        if node.op_type == _Q:
            n_q += 1
        else:
            n_dq += 1
        if len(node.input) < 3 or node.input[2] not in inits or node.input[1] not in inits:
            raise ExportError(
                f"{source}: {node.op_type} {node.name!r} has no constant zero point/scale; "
                "TensorRT needs explicit symmetric int8 zero points"
            )
        zp = inits[node.input[2]]
        if zp.data_type != onnx.TensorProto.INT8 or np.any(numpy_helper.to_array(zp) != 0):
            raise ExportError(
                f"{source}: {node.op_type} {node.name!r} has zero point "
                f"{numpy_helper.to_array(zp).ravel()[:4]} of type "
                f"{onnx.TensorProto.DataType.Name(zp.data_type)}; expected int8 zeros (symmetric)"
            )
        if node.op_type != _DQ:
            continue
        src = node.input[0]
        is_weight = src in inits or (
            src in producers and producers[src].op_type == _Q and producers[src].input[0] in inits
        )
        if is_weight:
            scale = numpy_helper.to_array(inits[node.input[1]])
            if scale.ndim == 1 and scale.size > 1:
                per_channel += 1
                weight = inits[src] if src in inits else inits[producers[src].input[0]]
                users = consumers.get(node.output[0], [])
                _check_weight_axis(node, len(weight.dims), users, source)
            else:
                per_tensor += 1
    if n_q + n_dq == 0:
        raise ExportError(
            f"{source}: no QuantizeLinear/DequantizeLinear nodes; nothing was quantized"
        )
    return QdqSummary(
        quantizers=n_q,
        dequantizers=n_dq,
        weights_per_channel=per_channel,
        weights_per_tensor=per_tensor,
        activations_symmetric=True,
        quantized_nodes=tuple(quantized_nodes(model)),
    )


def _check_weight_axis(
    dq: onnx.NodeProto, rank: int, users: list[onnx.NodeProto], source: str
) -> None:
    """Raise when a per-channel weight dequantizer's axis is not the one TensorRT takes."""
    # DequantizeLinear's axis attribute defaults to 1 and may count from the end
    # (ONNX operator spec, DequantizeLinear).
    axis = next((a.i for a in dq.attribute if a.name == "axis"), 1)
    if axis < 0:
        axis += rank
    for user in users:
        expected = _WEIGHT_AXIS.get(user.op_type)
        if expected is None or axis == expected:
            continue
        raise ExportError(
            f"{source}: {user.op_type} {user.name!r} has weights quantized per channel on "
            f"axis {axis}; TensorRT takes per-channel {user.op_type} weight scales on axis "
            f"{expected} only (ConvTranspose: no per-output-channel scales, NVIDIA/TensorRT"
            f"#2380); keep it in float (Int8Config(exclude=({user.name!r},)))"
        )


def quantize_int8(
    src: str | os.PathLike[str],
    dst: str | os.PathLike[str],
    frames: Iterable[np.ndarray | Mapping[str, np.ndarray]],
    config: Int8Config | None = None,
) -> Int8Result:
    """Quantize an FP32 encoder to explicit Q/DQ INT8, calibrated on ``frames``.

    Args:
        src: The FP32 ``.onnx``.
        dst: Where to write the INT8 ``.onnx``.
        frames: Calibration inputs: float32 encoder inputs (from
            :func:`samedge.calibration.frames.encoder_inputs`) or name -> array
            dicts; any re-iterable (a list) works, it is read once.
        config: Engine and exclusions; ``None`` for the defaults.

    Returns:
        The output path, the engine, and the verified Q/DQ layout.

    Raises:
        InputError: no frames, or frames of the wrong type.
        BackendUnavailableError: the engine's package is not installed.
        ExportError: the engine failed, or its output breaks TensorRT's Q/DQ rules.

    Example:
        >>> from samedge.calibration.frames import read_frames, encoder_inputs  # doctest: +SKIP
        >>> xs = encoder_inputs(read_frames("synthetic", 32).calibration, card)  # doctest: +SKIP
        >>> quantize_int8("m/encoder.onnx", "out/encoder.onnx", xs)             # doctest: +SKIP
    """
    config = config or Int8Config()
    src, dst = Path(src), Path(dst)
    # Only the names and provenance are needed from the source; not holding its
    # weights (a ViT-B's 360 MB) through quantization lowers the peak.
    model = load_model(src)
    input_name, output_name = model.graph.input[0].name, model.graph.output[0].name
    # Plain strings: a protobuf sub-message would keep the whole model alive.
    provenance = [(p.key, p.value) for p in model.metadata_props]
    del model
    feeds = _feeds(frames, input_name)
    method = config.resolved_method
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="samedge-int8-", dir=dst.parent) as tmp:
        work = Path(tmp) / "basic.onnx"
        if config.optimize:
            optimize_basic(src, work)
        else:
            # A copy even so: ONNX Runtime's quantizer writes a scratch file
            # next to its input, which must not be the user's model directory.
            save_model(load_model(src), work)
        if not config.attention:
            skip = attention_matmuls(onnx.load(str(work), load_external_data=False))
            config = replace(config, exclude=(*config.exclude, *skip))
            log.info("int8: keeping %d attention MatMuls in float", len(skip))
        try:
            if method is Int8Method.NNCF:
                quantized = _quantize_nncf(onnx.load(str(work)), feeds, config)
            else:
                quantized = _quantize_ort(work, Path(tmp) / "ort.onnx", feeds, config)
        except (BackendUnavailableError, InputError):
            raise
        except Exception as e:  # the engines raise their own untyped errors
            raise ExportError(
                f"{src}: {method.value} quantization failed ({type(e).__name__}: {e})"
            ) from e
    notes = []
    signed = _force_signed(quantized)
    if signed:
        notes.append(f"{signed} unsigned (uint8) quantizers rewritten as symmetric int8")
    summary = check_qdq(quantized, str(dst))
    del quantized.metadata_props[:]
    for key, value in provenance:
        entry = quantized.metadata_props.add()
        entry.key, entry.value = key, value
    retag_precision(quantized, "int8")
    save_model(quantized, dst)
    del quantized
    give_back_memory()
    # Fail here, naming the engine, rather than later in a backend: the file
    # must load and run on ONNX Runtime.
    run_session(cpu_session(dst), feeds[0], [output_name])
    seconds = time.perf_counter() - t0
    log.info(
        "int8 %s with %s: %d Q/DQ pairs, %d layers quantized, %d kept in float, %.1f s",
        src.name,
        method.value,
        summary.quantizers,
        len(summary.quantized_nodes),
        len(config.exclude),
        seconds,
    )
    return Int8Result(dst, method, summary, config.exclude, len(feeds), seconds, tuple(notes))
