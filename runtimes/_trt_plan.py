"""What to build: the graph's precision, TensorRT's version differences, the profile.

The planning half of the TensorRT backend (:mod:`samedge.runtimes.trt`), kept
apart from the half that drives TensorRT: nothing here imports TensorRT, so
every decision (which network-creation and builder flags a version takes for a
graph, which optimisation profile the decoder gets) is a pure function of
version strings, ONNX summaries and :class:`~samedge.runtimes.trt.TensorRTConfig`
that tests can run on any machine.

Every difference between the supported TensorRT versions (8.6, 10.x, 11.x)
lives in :class:`_TrtCompat`, each branch citing the NVIDIA page it follows.
The public names (:class:`GraphPrecision`, :class:`BuildPlan`,
:class:`ProfileShape`, :func:`profile_shapes`) are re-exported by
:mod:`samedge.runtimes.trt`; import them from there.

Example:
    >>> from samedge.runtimes._trt_plan import GraphPrecision, _TrtCompat
    >>> _TrtCompat.parse("10.13.0").plan(GraphPrecision(int8=True), None).precision
    'strongly-typed (int8)'
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from samedge.errors import BackendError, BackendUnavailableError, InputError
from samedge.runtimes._graph import BFLOAT16, FLOAT16, OnnxSummary, ValueInfo
from samedge.runtimes.base import Dim

if TYPE_CHECKING:  # the config is defined beside the backend, which imports this module
    from samedge.runtimes.trt import TensorRTConfig

__all__ = [
    "BuildPlan",
    "GraphPrecision",
    "ProfileShape",
    "profile_shapes",
]

# Named ``samedge.runtimes.trt`` so that the backend's records keep one logger
# name however its code is split between modules.
logger = logging.getLogger("samedge.runtimes.trt")

_INSTALL_HINT = (
    "on x86-64 or an SBSA server (Grace, GH200) install NVIDIA's wheels with "
    "`pip install samedge[tensorrt]` (brings cuda-python; pin `cuda-python==12.*` under a "
    "CUDA 12 driver); on Jetson, TensorRT comes with JetPack (apt `python3-libnvinfer`): "
    "create the virtual environment with --system-site-packages so Python sees it and "
    "install `pip install samedge[jetson]` (pycuda, JetPack 6) or `pip install cuda-python` "
    "(JetPack 7), not the [tensorrt] extra, whose PyPI aarch64 wheels would shadow JetPack's "
    "TensorRT (on JetPack 6 those SBSA builds do not run at all)"
)

# onnx-tensorrt 8.6 parses opsets up to 17 (onnx-tensorrt release/8.6-GA docs/operators.md:
# "TensorRT 8.6 supports operators up to Opset 17"); 10.x and 11.x parse newer ones.
_MAX_OPSET_8X = 17


# -- what the graph carries -----------------------------------------------------------


@dataclass(frozen=True)
class GraphPrecision:
    """The precision an ONNX graph carries in itself.

    Attributes:
        fp16: It holds FP16 (or BF16) initializers.
        int8: It holds QuantizeLinear/DequantizeLinear nodes (explicit quantization).
    """

    fp16: bool = False
    int8: bool = False

    @property
    def carried(self) -> bool:
        """True when the graph fixes its own precision (TensorRT builds it strongly typed)."""
        return self.fp16 or self.int8

    @classmethod
    def of(cls, summary: OnnxSummary) -> GraphPrecision:
        """Read it from the graph's content: initializer and input types, Q/DQ nodes.

        Any FP16 weight counts, not the majority: samedge's FP16 graphs keep
        LayerNorm/Softmax weights in FP32 on purpose.
        """
        half = (FLOAT16, BFLOAT16)
        fp16 = any(summary.initializer_elements.get(t, 0) > 0 for t in half) or any(
            v.elem_type in half for v in summary.inputs
        )
        return cls(fp16=fp16, int8=summary.quantized)

    def describe(self) -> str:
        parts = [p for p, on in (("int8", self.int8), ("fp16", self.fp16)) if on]
        return "+".join(parts) or "fp32"


# -- version differences: the one place ------------------------------------------------


@dataclass(frozen=True)
class BuildPlan:
    """Network-creation and builder flags for one build, decided by :class:`_TrtCompat`.

    Attributes:
        explicit_batch: Pass ``NetworkDefinitionCreationFlag.EXPLICIT_BATCH``.
        strongly_typed: Pass ``NetworkDefinitionCreationFlag.STRONGLY_TYPED``.
        fp16_flag: Set ``BuilderFlag.FP16``.
        int8_flag: Set ``BuilderFlag.INT8``.
        precision: What the engine computes in, as :attr:`TensorRTBackend.precision` reports it.
        obey_precision: Set ``BuilderFlag.OBEY_PRECISION_CONSTRAINTS`` and pin every layer
            whose parsed output is FP32 to FP32 (TensorRT 8.x building a graph that carries
            FP16: the graph's FP32 islands stay FP32).
    """

    explicit_batch: bool
    strongly_typed: bool
    fp16_flag: bool
    int8_flag: bool
    precision: str
    obey_precision: bool = False


@dataclass(frozen=True, order=True)
class _TrtCompat:
    """Everything that differs between the supported TensorRT versions.

    Built from ``tensorrt.__version__`` (tests pass fake version strings).
    """

    major: int
    minor: int
    patch: int = 0

    @classmethod
    def parse(cls, version: str) -> _TrtCompat:
        match = re.match(r"^\s*(\d+)\.(\d+)(?:\.(\d+))?", version)
        if match is None:
            raise BackendError(f"cannot read TensorRT's version {version!r}")
        return cls(int(match.group(1)), int(match.group(2)), int(match.group(3) or 0))

    def __str__(self) -> str:
        return f"{self.major}.{self.minor}.{self.patch}"

    def check_supported(self) -> None:
        """Raise :class:`BackendUnavailableError` for versions samedge does not drive."""
        # The named-tensor API (set_input_shape/set_tensor_address/execute_async_v3) is in
        # 8.5+ and IBuilderConfig.builder_optimization_level in 8.6+ (8.6.1 Python API,
        # archives/tensorrt-861/api/python_api/infer/Core/ExecutionContext.html).
        if (self.major, self.minor) < (8, 6):
            raise BackendUnavailableError(
                f"TensorRT {self} is too old; samedge needs 8.6 or newer (JetPack 6+); "
                + _INSTALL_HINT
            )
        # 9.x was a limited early-access line for LLMs, never a JetPack or GA release.
        if self.major == 9:
            raise BackendUnavailableError(
                f"TensorRT {self} (9.x early access) is not supported; use 8.6, 10.x or 11.x"
            )
        if self.major > 11:
            logger.warning("TensorRT %s is newer than samedge knows (11.x); assuming 11.x", self)

    def check_opset(self, opsets: Mapping[str, int], model: str) -> None:
        """Refuse a graph whose default-domain opset this TensorRT's ONNX parser cannot read.

        Raises:
            InputError: TensorRT 8.x and an opset above 17.
        """
        opset = opsets.get("", opsets.get("ai.onnx"))
        if self.major == 8 and opset is not None and opset > _MAX_OPSET_8X:
            raise InputError(
                f"{model}: ONNX opset {opset}, but TensorRT {self}'s ONNX parser reads opsets up "
                f"to {_MAX_OPSET_8X}; re-export it with `samedge export --opset {_MAX_OPSET_8X}` "
                "(the default), or run it on TensorRT 10.x (JetPack 6.1+)"
            )

    def plan(self, graph: GraphPrecision, fp16: bool | None) -> BuildPlan:
        """Decide the creation and builder flags for ``graph`` under the ``fp16`` policy.

        Raises:
            InputError: ``fp16`` contradicts what the graph carries, or asks for the
                FP16 builder flag on a version that removed it.
        """
        if fp16 is False and graph.carried:
            raise InputError(
                f"fp16=False insists on FP32, but the graph carries {graph.describe()} "
                "precision; pass its FP32 ONNX, or fp16=None to build what the graph carries"
            )
        if self.major == 8:
            # 8.x: a network is implicit-batch unless EXPLICIT_BATCH is passed ("creating a
            # network without this flag has been deprecated", archives/tensorrt-843/api/
            # python_api/infer/Core/Builder.html) and the ONNX parser needs explicit batch;
            # STRONGLY_TYPED does not exist yet. Explicit quantization still needs the INT8
            # flag in 8.x ("to enable any quantization operations, the INT8 flag must be
            # set", 8.x developer guide, "Working with INT8"), and an FP16 graph the FP16
            # flag for TensorRT to keep its layers in FP16.
            int8 = graph.int8
            half = graph.fp16 or bool(fp16)
            label = "int8" if int8 else ("fp16" if half else "fp32")
            # Weakly typed, the graph's Casts are only hints: with the FP16 flag TensorRT may
            # run the FP32 islands (LayerNorm, Softmax, the heads) in FP16, the overflow the
            # FP16 conversion exists to prevent (NVIDIA/TensorRT#3692, #2781). Pinning them
            # needs OBEY_PRECISION_CONSTRAINTS plus layer.precision / set_output_type
            # (8.6 developer guide, "Layer-Level Control of Precision"; Polygraphy example
            # cli/run/08_adding_precision_constraints).
            obey = graph.fp16
            if fp16 and not graph.carried:
                _warn_fp16_flag(self)
            return BuildPlan(True, False, half, int8, label, obey_precision=obey)
        if self.major == 10:
            # 10.x: EXPLICIT_BATCH is deprecated and ignored, networks are always explicit
            # batch; STRONGLY_TYPED builds a graph in the types it declares, and precision
            # flags must not be combined with it (latest/_static/python-api/infer/Core/
            # Builder.html; inference-library/quantized-types-explicit-quantization.html:
            # "Use explicit quantization with Strong Typing. Precision-control build flags
            # are not required and should not be specified"). Weak typing is deprecated
            # since 10.12 (ILayer.set_output_type and friends: "Deprecated in TensorRT
            # 10.12. Superseded by strong typing"), so every build is strongly typed except
            # the one weak typing exists for: a user's explicit FP16 flag on an FP32 graph.
            if graph.carried:
                if fp16 and not graph.fp16:
                    raise InputError(
                        "fp16=True cannot add FP16 to a strongly typed INT8 graph on "
                        f"TensorRT {self}; quantize the FP16 ONNX instead, or pass fp16=None"
                    )
                return BuildPlan(False, True, False, False, f"strongly-typed ({graph.describe()})")
            if fp16:
                _warn_fp16_flag(self)
                return BuildPlan(False, False, True, False, "fp16")
            return BuildPlan(False, True, False, False, "fp32")
        # 11.x: every network is strongly typed; the STRONGLY_TYPED flag is deprecated and
        # ignored, and BuilderFlag.FP16/INT8 are removed (11.0.0 Builder page,
        # 11.0.0/_static/python-api/infer/Core/Builder.html; "Removed Python APIs and
        # Replacements", api/migration/tensorrt-10x-to-11x-python-api-reference.html).
        if fp16 and not graph.fp16:
            raise InputError(
                f"fp16=True needs the FP16 builder flag, which TensorRT {self} removed; "
                "convert the ONNX to FP16 with samedge's FP16 step and load that, "
                "or pass fp16=None to build FP32"
            )
        label = f"strongly-typed ({graph.describe()})" if graph.carried else "fp32"
        return BuildPlan(False, False, False, False, label)


def _warn_fp16_flag(version: _TrtCompat) -> None:
    logger.warning(
        "TensorRT %s: fp16=True builds the FP32 graph with the FP16 builder flag, which lets "
        "TensorRT run LayerNorm and Softmax in FP16 where they can overflow; samedge's FP16 "
        "step (`samedge build --precision fp16`) keeps them in FP32 and builds strongly typed",
        version,
    )


# -- optimisation profile ---------------------------------------------------------------


@dataclass(frozen=True)
class ProfileShape:
    """``min``/``opt``/``max`` shape of one dynamic input in the optimisation profile."""

    min: tuple[int, ...]
    opt: tuple[int, ...]
    max: tuple[int, ...]


# Dynamic axis -> (what it counts, TensorRTConfig field that bounds it).
_AXIS_ROLES: dict[int, tuple[str, str]] = {
    0: ("objects", "max_objects"),
    1: ("points", "max_points"),
}

# The memory graphs' axis 1 counts memory frames (M) or object pointers (P), bounded
# by the export's memory settings rather than by a TensorRTConfig field.
_MEMORY_AXIS_1: dict[str, str] = {
    "memory_bank": "memory frames",
    "memory_bank_tpos": "memory frames",
    "pointer_bank": "object pointers",
    "pointer_bank_offsets": "object pointers",
}
MEMORY_LIMIT_HINT = (
    "the engine's memory profile is the export's maximum; lower "
    "MemoryTrackerConfig.max_conditioning_frames (the tracker's memory-bank bound)"
)


def axis_role(name: str, axis: int) -> tuple[str, str]:
    """What a dynamic axis of input ``name`` counts, and the TensorRTConfig field bounding it.

    The field is ``""`` where no TensorRTConfig field bounds the axis (the memory
    graphs' M and P axes, bounded by the export; see :data:`MEMORY_LIMIT_HINT`).

    Example:
        >>> axis_role("point_coords", 1)
        ('points', 'max_points')
        >>> axis_role("memory_bank", 1)
        ('memory frames', '')
    """
    if axis == 1 and name in _MEMORY_AXIS_1:
        return _MEMORY_AXIS_1[name], ""
    return _AXIS_ROLES.get(axis, (f"size on axis {axis}", ""))


def _static(dim: Dim) -> int | None:
    """The size of a fixed dimension; None for a dynamic (named or negative) one."""
    return dim if isinstance(dim, int) and dim >= 0 else None


def memory_dims(metadata: Mapping[str, str]) -> dict[str, tuple[int, int]]:
    """Profile ``(opt, max)`` of a SAM 2 memory graph's named dims, from its metadata.

    ``M`` (memory frames) and ``P`` (object pointers) are dynamic up to the
    maxima the export recorded (``samedge.memory``, see
    :class:`samedge.memory_model.MemorySettings`); the optimum is the steady
    state of a long video (``num_maskmem`` frames, ``max_pointers_in_encoder``
    pointers). Empty for graphs without memory.

    Example:
        >>> meta = {"samedge.memory": '{"num_maskmem": 7, "max_pointers_in_encoder": 16,'
        ...         ' "max_memory_frames": 10, "max_pointers": 19}'}
        >>> memory_dims(meta)
        {'M': (7, 10), 'P': (16, 19)}
    """
    raw = metadata.get("samedge.memory")
    if not raw:
        return {}
    try:
        memory = json.loads(raw)
        return {
            "M": (int(memory["num_maskmem"]), int(memory["max_memory_frames"])),
            "P": (int(memory["max_pointers_in_encoder"]), int(memory["max_pointers"])),
        }
    except (ValueError, KeyError, TypeError) as e:
        raise BackendError(
            f"samedge.memory metadata is unreadable ({e}); re-export the model with samedge"
        ) from None


def profile_shapes(
    inputs: Sequence[ValueInfo],
    config: TensorRTConfig,
    named: Mapping[str, tuple[int, int]] | None = None,
) -> dict[str, ProfileShape]:
    """The optimisation profile for every input with a dynamic axis.

    A dynamic dim named in ``named`` gets its ``(opt, max)`` from there (the
    memory graphs' ``M`` and ``P``, :func:`memory_dims`); otherwise a dynamic
    axis 0 counts objects (``1..max_objects``), a dynamic axis 1 prompt points
    (``1..max_points``); static axes are copied. Inputs with no dynamic axis
    (the encoder's) need no profile and are left out.

    Raises:
        BackendError: any other dynamic axis (samedge's graphs have none).

    Example:
        >>> point = ValueInfo("point_coords", 1, ("B", "N", 2))
        >>> profile_shapes([point], TensorRTConfig())["point_coords"].max
        (16, 10, 2)
    """
    limits = {
        0: (config.objects_opt, config.max_objects),
        1: (config.points_opt, config.max_points),
    }
    shapes: dict[str, ProfileShape] = {}
    for info in inputs:
        if all(_static(d) is not None for d in info.shape):
            continue
        low: list[int] = []
        opt: list[int] = []
        high: list[int] = []
        for axis, dim in enumerate(info.shape):
            size = _static(dim)
            if size is not None:
                low.append(size)
                opt.append(size)
                high.append(size)
            elif isinstance(dim, str) and named and dim in named:
                low.append(1)
                opt.append(min(named[dim][0], named[dim][1]))
                high.append(named[dim][1])
            elif axis in limits:
                low.append(1)
                opt.append(limits[axis][0])
                high.append(limits[axis][1])
            else:
                raise BackendError(
                    f"{info.name}: axis {axis} ({dim}) is dynamic; the TensorRT profile covers "
                    "objects (axis 0) and points (axis 1) only; export the graph with it fixed"
                )
        shapes[info.name] = ProfileShape(tuple(low), tuple(opt), tuple(high))
    return shapes


def _profile_text(shapes: Mapping[str, ProfileShape]) -> str:
    return ";".join(
        f"{name}={list(s.min)}..{list(s.opt)}..{list(s.max)}" for name, s in sorted(shapes.items())
    )
