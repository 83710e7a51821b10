"""The build report: everything ``samedge build`` measured and decided, typed.

:class:`BuildReport` is what :func:`samedge.calibration.build` returns and
what ``report.json`` (and the ``report`` entry of the built card) holds:
:meth:`BuildReport.to_dict` writes it and :meth:`BuildReport.from_dict`
reads it back, so nobody outside this module reads a report by string key.
No file path travels inside a report: where a build came from is the card's
provenance (:class:`samedge._fidelity.BuildSource`), where it went is the
caller's.

The measurement against FP32 (:class:`Fidelity`, :class:`Reference`,
:func:`fixed_prompts`) lives in the core (:mod:`samedge._fidelity`), where
``samedge eval --fidelity`` uses it too; it is re-exported here. The verdict
is the gate's (:class:`~samedge.calibration.gate.GateVerdict`). Importing this
module needs neither onnx nor the backends.

Example:
    >>> import json
    >>> from samedge.calibration.report import BuildReport
    >>> data = json.load(open("out/tiny_int8/report.json"))        # doctest: +SKIP
    >>> report = BuildReport.from_dict(data)                         # doctest: +SKIP
    >>> report.passed, report.gate.kind, report.fidelity.p5_iou      # doctest: +SKIP
    (True, <GateKind.GROUND_TRUTH: 'ground_truth'>, 0.564)
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from samedge._fidelity import Fidelity, Reference, SizeBin, cosine, fixed_prompts, sqnr_db
from samedge.calibration.gate import GateVerdict
from samedge.errors import InputError
from samedge.masks import mask_ious

__all__ = [
    "BuildReport",
    "CalibrationSettings",
    "Candidate",
    "Fidelity",
    "GraphPrecision",
    "GroundTruth",
    "LayerFallback",
    "LayerSensitivity",
    "MemoryTrial",
    "Reference",
    "SizeBin",
    "VideoFidelity",
    "cosine",
    "fixed_prompts",
    "mask_iou",
    "sqnr_db",
]

#: IoU of bool masks ``[..., H, W]`` over leading dims (1.0 where both are empty);
#: :func:`samedge.masks.mask_ious` under its former name here.
mask_iou = mask_ious


def _finite(value: float, digits: int = 3) -> float | None:
    return round(value, digits) if math.isfinite(value) else None


def _num(value: Any) -> float:
    return math.nan if value is None else float(value)


def _bad(what: str, data: Any, error: Exception) -> InputError:
    return InputError(
        f"build report {what}: got {data!r}, expected what `samedge build` writes "
        f"({type(error).__name__}: {error}); rebuild, or pass a report.json it wrote"
    )


@dataclass(frozen=True)
class LayerSensitivity:
    """How much one layer's quantization costs.

    Attributes:
        node: Node name in the Q/DQ graph.
        op_type: Its op type.
        sqnr_db: Mean embedding SQNR with only this layer un-quantized.
        gain_db: ``sqnr_db`` minus the fully quantized graph's SQNR.
    """

    node: str
    op_type: str
    sqnr_db: float
    gain_db: float

    def to_dict(self) -> dict[str, object]:
        return {
            "node": self.node,
            "op_type": self.op_type,
            "sqnr_db": _finite(self.sqnr_db),
            "gain_db": _finite(self.gain_db),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> LayerSensitivity:
        return cls(
            str(data["node"]), str(data["op_type"]), _num(data["sqnr_db"]), _num(data["gain_db"])
        )


@dataclass(frozen=True)
class CalibrationSettings:
    """How a build was calibrated and with what.

    Attributes:
        source: Where the frames came from, in words.
        frames: Calibration frames used.
        heldout: Held-out frames the report and gate measured on.
        skipped: Frames the source could not give.
        method: INT8 engine (``"nncf"``, ``"ort"``); ``None`` for FP16.
        precision: The precision built.
        decoder_fp16: The decoder was converted to FP16.
        attention_int8: The attention MatMuls were quantized.
        int8_full_range: INT8 weights use all 8 bits (not safe for OpenVINO on
            CPUs without VNNI); ``False``: 7 bits.
        fallback: Layer fallback was allowed.
        fp16_range_fraction: FP16's range margin (:class:`~.fp16.Fp16Config`).
        source_encoder_sha256: SHA-256 of the FP32 encoder built from.
        versions: Library versions that made it.
        qdq: For INT8: the Q/DQ layout's counts (:class:`~.int8.QdqSummary`).
    """

    source: str
    frames: int
    heldout: int
    skipped: int
    method: str | None
    precision: str
    decoder_fp16: bool
    attention_int8: bool
    fallback: bool
    fp16_range_fraction: float
    source_encoder_sha256: str
    versions: Mapping[str, str] = field(default_factory=dict)
    qdq: Mapping[str, Any] | None = None
    int8_full_range: bool = False

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "source": self.source,
            "frames": self.frames,
            "heldout": self.heldout,
            "skipped": self.skipped,
            "method": self.method,
            "precision": self.precision,
            "decoder_fp16": self.decoder_fp16,
            "attention_int8": self.attention_int8,
            "int8_full_range": self.int8_full_range,
            "fallback": self.fallback,
            "fp16_range_fraction": self.fp16_range_fraction,
            "source_encoder_sha256": self.source_encoder_sha256,
            "versions": dict(self.versions),
        }
        if self.qdq is not None:
            out["qdq"] = dict(self.qdq)
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CalibrationSettings:
        qdq = data.get("qdq")
        return cls(
            source=str(data["source"]),
            frames=int(data["frames"]),
            heldout=int(data["heldout"]),
            skipped=int(data.get("skipped", 0)),
            method=None if data.get("method") is None else str(data["method"]),
            precision=str(data["precision"]),
            decoder_fp16=bool(data["decoder_fp16"]),
            attention_int8=bool(data["attention_int8"]),
            # Files built before the flag existed used NNCF's default, 8-bit weights.
            int8_full_range=bool(data.get("int8_full_range", True)),
            fallback=bool(data["fallback"]),
            fp16_range_fraction=float(data["fp16_range_fraction"]),
            source_encoder_sha256=str(data["source_encoder_sha256"]),
            versions={str(k): str(v) for k, v in dict(data.get("versions") or {}).items()},
            qdq=None if qdq is None else dict(qdq),
        )


@dataclass(frozen=True)
class LayerFallback:
    """INT8 layer fallback: which layers were kept in float and what it cost.

    Attributes:
        sensitivity: The most sensitive layers measured (up to 20), most sensitive first.
        tried: Layer counts tried with the quick estimate.
        limit: Most layers fallback could keep.
        without_fallback: The plain INT8 build's fidelity.
        kept: Layers kept in float (empty when no count within the limit passed).
        kept_sensitivity: Their sensitivity.
        speed_ms: Encoder latency per backend, ``{"int8": ..., "int8+fallback": ...}``.
        speed_cost: That comparison in words.
        result: Why nothing was kept, when nothing was.
    """

    sensitivity: tuple[LayerSensitivity, ...]
    tried: tuple[int, ...]
    limit: int
    without_fallback: Fidelity
    kept: tuple[str, ...] = ()
    kept_sensitivity: tuple[LayerSensitivity, ...] = ()
    speed_ms: Mapping[str, Mapping[str, float]] = field(default_factory=dict)
    speed_cost: str = ""
    result: str = ""

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "sensitivity": [s.to_dict() for s in self.sensitivity],
            "tried": list(self.tried),
            "limit": self.limit,
            "without_fallback": self.without_fallback.to_dict(),
            "kept": list(self.kept),
        }
        if self.kept_sensitivity:
            out["kept_sensitivity"] = [s.to_dict() for s in self.kept_sensitivity]
        if self.speed_ms:
            out["speed_ms"] = {k: dict(v) for k, v in self.speed_ms.items()}
        if self.speed_cost:
            out["speed_cost"] = self.speed_cost
        if self.result:
            out["result"] = self.result
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> LayerFallback:
        return cls(
            sensitivity=tuple(LayerSensitivity.from_dict(s) for s in data.get("sensitivity", ())),
            tried=tuple(int(k) for k in data.get("tried", ())),
            limit=int(data["limit"]),
            without_fallback=Fidelity.from_dict(data["without_fallback"]),
            kept=tuple(str(k) for k in data.get("kept", ())),
            kept_sensitivity=tuple(
                LayerSensitivity.from_dict(s) for s in data.get("kept_sensitivity", ())
            ),
            speed_ms=_speed(data.get("speed_ms")),
            speed_cost=str(data.get("speed_cost") or ""),
            result=str(data.get("result") or ""),
        )


@dataclass(frozen=True)
class GroundTruth:
    """mIoU against ground truth (samedge_tiny's procedural scenes), FP32 and the build.

    Attributes:
        scenes: Held-out scenes evaluated.
        objects: Objects in them.
        fp32: Prompt type -> FP32's mIoU.
        build: Prompt type -> the build's mIoU.
        backend: Backend that ran both.
    """

    scenes: int
    objects: int
    fp32: Mapping[str, float]
    build: Mapping[str, float]
    backend: str = "onnxruntime"

    def to_dict(self) -> dict[str, Any]:
        return {
            "scenes": self.scenes,
            "backend": self.backend,
            "objects": self.objects,
            "fp32": dict(self.fp32),
            "build": dict(self.build),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> GroundTruth:
        return cls(
            scenes=int(data["scenes"]),
            objects=int(data["objects"]),
            fp32={str(k): float(v) for k, v in dict(data["fp32"]).items()},
            build={str(k): float(v) for k, v in dict(data["build"]).items()},
            backend=str(data.get("backend", "onnxruntime")),
        )


@dataclass(frozen=True)
class Candidate:
    """One precision ``--precision auto`` built and timed.

    Attributes:
        precision: ``"fp32"`` (the baseline), ``"fp16"`` or ``"int8"``.
        backend: ``"<backend>/<precision it computed in>"``.
        latency_ms: Median encoder latency there.
        passed: Its gate verdict (FP32 always passes).
        mean_iou: Mean mask IoU vs FP32 (``None`` for FP32 itself).
        p5_iou: 5th-percentile mask IoU vs FP32.
    """

    precision: str
    backend: str
    latency_ms: float
    passed: bool
    mean_iou: float | None = None
    p5_iou: float | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "precision": self.precision,
            "backend": self.backend,
            "latency_ms": round(self.latency_ms, 2),
            "passed": self.passed,
        }
        if self.mean_iou is not None:
            out["mean_iou"] = round(self.mean_iou, 4)
        if self.p5_iou is not None:
            out["p5_iou"] = round(self.p5_iou, 4)
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Candidate:
        mean, p5 = data.get("mean_iou"), data.get("p5_iou")
        return cls(
            precision=str(data["precision"]),
            backend=str(data["backend"]),
            latency_ms=float(data["latency_ms"]),
            passed=bool(data["passed"]),
            mean_iou=None if mean is None else float(mean),
            p5_iou=None if p5 is None else float(p5),
        )


def _curve(values: Any) -> tuple[float, ...]:
    return tuple(_num(v) for v in values or ())


@dataclass(frozen=True)
class VideoFidelity:
    """A memory model's build against FP32 over a clip: both trackers, frame by frame.

    The FP32 tracker and the build's tracker (ONNX Runtime, CPU) follow the
    same objects, prompted the same way on the clip's first frame; every later
    frame goes through memory attention, so an error that the memory carries
    forward shows as a falling curve.

    Attributes:
        source: The clip, in words.
        frames: Frames in the clip.
        objects: Objects tracked.
        frame_iou: Per frame, the mean over objects of the mask IoU at frame
            resolution (:func:`samedge.masks.mask_iou`; an object that one
            tracker calls occluded and the other does not counts 0).
        frame_logit_corr: Per frame, the mean over objects of the Pearson
            correlation of the low-resolution mask logits (threshold-free: it
            sees drift that a mask covering most of the frame hides).
        mean_iou: Mean mask IoU over every (frame, object).
        worst_iou: Smallest mask IoU of one object on one frame.
        presence_agreement: Fraction of (frame, object) where both trackers
            agree whether the object is present (object score > 0).
        cosine_mean: Mean per-frame cosine of the encoder's ``vision_features``.
        cosine_min: Worst frame's cosine.
        sqnr_mean_db: Mean per-frame SQNR of ``vision_features``.
        sqnr_min_db: Worst frame's SQNR.
        score_diff_mean: Mean |difference| of the object score logits (presence,
            continuous: where both trackers call an object absent its masks say
            nothing, and this still shows how far apart the two trackers are).
        score_diff_max: Largest such difference.
    """

    source: str
    frames: int
    objects: int
    frame_iou: tuple[float, ...]
    frame_logit_corr: tuple[float, ...]
    mean_iou: float
    worst_iou: float
    presence_agreement: float
    cosine_mean: float
    cosine_min: float
    sqnr_mean_db: float
    sqnr_min_db: float
    score_diff_mean: float = 0.0
    score_diff_max: float = 0.0

    @property
    def p5_frame_iou(self) -> float:
        """5th percentile over frames of the per-frame mask IoU."""
        return _percentile(self.frame_iou, 5)

    @property
    def worst_frame_iou(self) -> float:
        """The worst frame's mask IoU."""
        return min(self.frame_iou, default=math.nan)

    @property
    def p5_frame_logit_corr(self) -> float:
        """5th percentile over frames of the per-frame logit correlation."""
        return _percentile(self.frame_logit_corr, 5)

    @property
    def drift(self) -> float:
        """Mean mask IoU of the clip's last third minus its first third (< 0: drifting away)."""
        n = len(self.frame_iou) // 3
        if n == 0:
            return 0.0
        return sum(self.frame_iou[-n:]) / n - sum(self.frame_iou[:n]) / n

    def as_fidelity(self) -> Fidelity:
        """The clip's numbers as the :class:`Fidelity` every build report carries."""
        return Fidelity(
            frames=self.frames,
            masks=self.frames * self.objects,
            cosine_mean=self.cosine_mean,
            cosine_min=self.cosine_min,
            sqnr_mean_db=self.sqnr_mean_db,
            sqnr_min_db=self.sqnr_min_db,
            mean_iou=self.mean_iou,
            p5_iou=self.p5_frame_iou,
            worst_iou=self.worst_iou,
        )

    def line(self) -> str:
        """One line for a terminal."""
        return (
            f"{self.frames} frames x {self.objects} objects: mask IoU mean {self.mean_iou:.4f}, "
            f"p5 frame {self.p5_frame_iou:.4f}, worst frame {self.worst_frame_iou:.4f} "
            f"(drift {self.drift:+.4f}); logit corr p5 frame {self.p5_frame_logit_corr:.4f}; "
            f"presence agreement {self.presence_agreement:.3f} (score diff mean "
            f"{self.score_diff_mean:.3f}, max {self.score_diff_max:.3f}); features cosine "
            f"{self.cosine_mean:.5f} (worst {self.cosine_min:.5f})"
        )

    def curve_line(self, width: int = 10) -> str:
        """The per-frame IoU curve, ``width`` frames per group (min of each group)."""
        groups = [self.frame_iou[i : i + width] for i in range(0, len(self.frame_iou), width)]
        return ", ".join(
            f"{i * width}-{i * width + len(g) - 1}: {min(g):.3f}" for i, g in enumerate(groups)
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "frames": self.frames,
            "objects": self.objects,
            "mean_iou": _finite(self.mean_iou, 6),
            "p5_frame_iou": _finite(self.p5_frame_iou, 6),
            "worst_frame_iou": _finite(self.worst_frame_iou, 6),
            "worst_iou": _finite(self.worst_iou, 6),
            "p5_frame_logit_corr": _finite(self.p5_frame_logit_corr, 6),
            "drift": _finite(self.drift, 6),
            "presence_agreement": _finite(self.presence_agreement, 6),
            "cosine_mean": _finite(self.cosine_mean, 6),
            "cosine_min": _finite(self.cosine_min, 6),
            "sqnr_mean_db": _finite(self.sqnr_mean_db, 2),
            "sqnr_min_db": _finite(self.sqnr_min_db, 2),
            "score_diff_mean": _finite(self.score_diff_mean, 6),
            "score_diff_max": _finite(self.score_diff_max, 6),
            "frame_iou": [_finite(v, 5) for v in self.frame_iou],
            "frame_logit_corr": [_finite(v, 5) for v in self.frame_logit_corr],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> VideoFidelity:
        """Read back :meth:`to_dict` (the derived numbers are recomputed)."""
        return cls(
            source=str(data["source"]),
            frames=int(data["frames"]),
            objects=int(data["objects"]),
            frame_iou=_curve(data["frame_iou"]),
            frame_logit_corr=_curve(data["frame_logit_corr"]),
            mean_iou=_num(data["mean_iou"]),
            worst_iou=_num(data["worst_iou"]),
            presence_agreement=_num(data["presence_agreement"]),
            cosine_mean=_num(data["cosine_mean"]),
            cosine_min=_num(data["cosine_min"]),
            sqnr_mean_db=_num(data["sqnr_mean_db"]),
            sqnr_min_db=_num(data["sqnr_min_db"]),
            score_diff_mean=_num(data.get("score_diff_mean", 0.0)),
            score_diff_max=_num(data.get("score_diff_max", 0.0)),
        )


def _percentile(values: tuple[float, ...], q: float) -> float:
    finite = [v for v in values if math.isfinite(v)]
    if len(finite) != len(values) or not values:
        return math.nan
    ordered = sorted(finite)
    # Linear interpolation between closest ranks, as numpy's default.
    pos = (len(ordered) - 1) * q / 100.0
    lo = math.floor(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


@dataclass(frozen=True)
class GraphPrecision:
    """One graph of a build: the precision it was written in, and why.

    Attributes:
        graph: ``"encoder"``, ``"decoder"``, ``"memory_attention"`` or ``"memory_encoder"``.
        precision: ``"fp32"``, ``"fp16"`` or ``"int8"``.
        why: Why this precision (kept higher by design, by the gate, or as asked).
    """

    graph: str
    precision: str
    why: str = ""

    def to_dict(self) -> dict[str, str]:
        return {"graph": self.graph, "precision": self.precision, "why": self.why}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> GraphPrecision:
        return cls(str(data["graph"]), str(data["precision"]), str(data.get("why") or ""))


@dataclass(frozen=True)
class MemoryTrial:
    """One combination of graph precisions a memory-model build tried on the clip.

    Attributes:
        graphs: Graph -> precision tried (``"int8+k"``: INT8 with k layers in float).
        passed: The video gate's verdict on it.
        reasons: Thresholds it missed.
        video: What the clip measured.
    """

    graphs: Mapping[str, str]
    passed: bool
    reasons: tuple[str, ...]
    video: VideoFidelity

    def label(self) -> str:
        """The combination in words: ``encoder int8, memory_attention fp32``."""
        return ", ".join(f"{g} {p}" for g, p in self.graphs.items())

    def to_dict(self) -> dict[str, Any]:
        return {
            "graphs": dict(self.graphs),
            "passed": self.passed,
            "reasons": list(self.reasons),
            "video": self.video.to_dict(),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> MemoryTrial:
        return cls(
            graphs={str(k): str(v) for k, v in dict(data["graphs"]).items()},
            passed=bool(data["passed"]),
            reasons=tuple(str(r) for r in data.get("reasons") or ()),
            video=VideoFidelity.from_dict(data["video"]),
        )


def _speed(data: Any) -> dict[str, dict[str, float]]:
    return {
        str(k): {str(b): float(ms) for b, ms in dict(v).items()}
        for k, v in dict(data or {}).items()
    }


@dataclass(frozen=True)
class BuildReport:
    """Everything a build measured and decided; ``report.json`` is :meth:`to_dict`.

    Attributes:
        model: Architecture name from the card.
        precision: ``"fp16"``, ``"int8"`` or ``"fp32"`` (``auto`` found nothing faster).
        decoder_precision: ``"fp32"`` or ``"fp16"``.
        gate: The gate's verdict: which gate decided and why, its thresholds,
            pass or fail and the reasons (:class:`~.gate.GateVerdict`).
        fidelity: The build against FP32.
        calibration: Calibration settings, source encoder hash and versions.
        fp16_blocked: For FP16 graphs, graph -> reason -> nodes kept in FP32.
        fallback: For INT8 with layer fallback: the layers kept in float,
            their measured sensitivity, and the speed it cost.
        speed_ms: Encoder latency per backend, ``{"fp32": {...}, "build": {...}}``.
        ground_truth: For samedge_tiny, mIoU against ground truth of FP32 and the build.
        candidates: For ``--precision auto``: each candidate's gate and speed.
        decision: Why this precision was chosen.
        seconds: Wall time of the build.
        graphs: Each graph's precision and why (every build; a memory model has four).
        video: For a memory model (SAM 2 family): the chosen build against the
            FP32 tracker over the gate's clip, with the per-frame curve; then
            ``fidelity`` holds the same clip's numbers (:meth:`VideoFidelity.as_fidelity`).
        trials: For a memory model: every graph-precision combination tried, in order.
    """

    model: str
    precision: str
    decoder_precision: str
    gate: GateVerdict
    fidelity: Fidelity
    calibration: CalibrationSettings
    fp16_blocked: Mapping[str, Mapping[str, int]] = field(default_factory=dict)
    fallback: LayerFallback | None = None
    speed_ms: Mapping[str, Mapping[str, float]] = field(default_factory=dict)
    ground_truth: GroundTruth | None = None
    candidates: tuple[Candidate, ...] = ()
    decision: str = ""
    seconds: float = 0.0
    graphs: tuple[GraphPrecision, ...] = ()
    video: VideoFidelity | None = None
    trials: tuple[MemoryTrial, ...] = ()

    def graph_precision(self, graph: str) -> str | None:
        """The precision ``graph`` was written in (``None``: not in this build)."""
        return next((g.precision for g in self.graphs if g.graph == graph), None)

    @property
    def passed(self) -> bool:
        """The gate's verdict."""
        return self.gate.passed

    @property
    def gate_reasons(self) -> tuple[str, ...]:
        """Missed thresholds, or on a pass the gate's notes."""
        return self.gate.reasons

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (what ``report.json`` holds)."""
        ground_truth = None
        if self.ground_truth is not None:
            ground_truth = self.ground_truth.to_dict()
            if self.gate.ground_truth is not None:
                ground_truth["gate"] = str(self.gate.ground_truth)
        return {
            "model": self.model,
            "precision": self.precision,
            "decoder_precision": self.decoder_precision,
            "passed": self.passed,
            "gate": self.gate.thresholds(),
            "gate_reasons": list(self.gate.reasons),
            "fidelity": self.fidelity.to_dict(),
            "calibration": self.calibration.to_dict(),
            "fp16_blocked": {k: dict(v) for k, v in self.fp16_blocked.items()},
            "fallback": None if self.fallback is None else self.fallback.to_dict(),
            "speed_ms": {k: dict(v) for k, v in self.speed_ms.items()},
            "ground_truth": ground_truth,
            "candidates": [c.to_dict() for c in self.candidates],
            "decision": self.decision,
            "seconds": round(self.seconds, 2),
            "graphs": [g.to_dict() for g in self.graphs],
            "video": None if self.video is None else self.video.to_dict(),
            "trials": [t.to_dict() for t in self.trials],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> BuildReport:
        """Read back :meth:`to_dict` (a ``report.json``; older ones' paths are ignored).

        Raises:
            InputError: ``data`` is not a build report (the message says which part).
        """
        if not isinstance(data, Mapping):
            raise InputError(f"build report: got {type(data).__name__}, expected a mapping")
        parts: dict[str, Any] = {}
        readers: dict[str, Any] = {
            "fidelity": Fidelity.from_dict,
            "calibration": CalibrationSettings.from_dict,
            "fallback": lambda d: None if d is None else LayerFallback.from_dict(d),
            "ground_truth": lambda d: None if d is None else GroundTruth.from_dict(d),
            "candidates": lambda d: tuple(Candidate.from_dict(c) for c in d or ()),
            "speed_ms": _speed,
            "graphs": lambda d: tuple(GraphPrecision.from_dict(g) for g in d or ()),
            "video": lambda d: None if d is None else VideoFidelity.from_dict(d),
            "trials": lambda d: tuple(MemoryTrial.from_dict(t) for t in d or ()),
            "fp16_blocked": lambda d: {
                str(g): {str(k): int(v) for k, v in dict(c).items()}
                for g, c in dict(d or {}).items()
            },
        }
        for name, read in readers.items():
            try:
                parts[name] = read(data.get(name) if name != "fidelity" else data[name])
            except InputError:
                raise
            except (KeyError, TypeError, ValueError, AttributeError) as e:
                raise _bad(name, data.get(name), e) from e
        gt_gate = (data.get("ground_truth") or {}).get("gate")
        gate = GateVerdict.from_record(
            data.get("gate") or {},
            bool(data.get("passed")),
            tuple(data.get("gate_reasons") or ()),
            None if gt_gate is None else str(gt_gate),
        )
        try:
            return cls(
                model=str(data["model"]),
                precision=str(data["precision"]),
                decoder_precision=str(data["decoder_precision"]),
                gate=gate,
                decision=str(data.get("decision") or ""),
                seconds=float(data.get("seconds") or 0.0),
                **parts,
            )
        except KeyError as e:
            raise _bad("fields", sorted(data), e) from e

    def summary(self, output: str | None = None) -> str:
        """The lines ``samedge build`` prints (``output``: the directory written, if given)."""
        verdict = "PASSED" if self.passed else "FAILED"
        where = f" -> {output}" if output is not None else ""
        if self.video is not None:
            graphs = " + ".join(f"{g.precision} {g.graph}" for g in self.graphs)
            lines = [
                f"{self.model}: {graphs}{where}  [gate {verdict}]",
                f"  vs fp32 tracker: {self.video.line()}",
                f"  per-frame mask IoU (min per 10 frames): {self.video.curve_line()}",
                f"  {self.gate.line()}",
            ]
            lines += [f"  {g.graph}: {g.precision} ({g.why})" for g in self.graphs if g.why]
            for trial in self.trials:
                state = "passed" if trial.passed else "FAILED: " + "; ".join(trial.reasons)
                lines.append(f"  tried {trial.label()}: {state}")
        else:
            lines = [
                f"{self.model}: {self.precision} encoder + {self.decoder_precision} decoder"
                f"{where}  [gate {verdict}]",
                f"  vs fp32: {self.fidelity.line()}",
                f"  mask IoU by fp32 mask size: {self.fidelity.size_line()}",
                f"  {self.gate.line()}",
            ]
        cal = self.calibration
        if cal.method:
            lines.append(
                f"  calibration: {cal.method} on {cal.frames} frames from "
                f"{cal.source} ({cal.heldout} held out)"
            )
        for graph, counts in self.fp16_blocked.items():
            kept = ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))
            lines.append(f"  fp16 {graph}: kept in fp32: {kept or 'nothing'}")
        if self.fallback is not None:
            kept_layers = self.fallback.kept
            if kept_layers:
                lines.append(
                    f"  layer fallback: kept {len(kept_layers)} layer(s) in float: "
                    + ", ".join(kept_layers[:6])
                    + (" ..." if len(kept_layers) > 6 else "")
                )
            else:
                lines.append(
                    "  layer fallback: tried keeping the top "
                    + ", ".join(str(k) for k in self.fallback.tried)
                    + " most sensitive layers in float; none passed, none kept"
                )
            if self.fallback.speed_cost:
                lines.append(f"  fallback speed cost: {self.fallback.speed_cost}")
        for which, per_backend in self.speed_ms.items():
            cells = ", ".join(f"{b} {ms:.1f} ms" for b, ms in per_backend.items())
            # A memory build's rows name their graph ("memory_attention build").
            what = "latency" if self.video is not None else "encoder latency"
            lines.append(f"  {what} {which}: {cells}")
        if self.ground_truth is not None:
            gt = self.ground_truth
            lines.append(
                f"  ground truth mIoU ({gt.scenes} scenes): "
                + ", ".join(
                    f"{which} " + " ".join(f"{p} {v:.3f}" for p, v in miou.items())
                    for which, miou in (("fp32", gt.fp32), ("build", gt.build))
                )
            )
        for c in self.candidates:
            lines.append(
                f"  candidate {c.precision}: gate {'passed' if c.passed else 'FAILED'}, "
                f"{c.latency_ms:.1f} ms on {c.backend}"
            )
        if self.decision:
            lines.append(f"  decision: {self.decision}")
        return "\n".join(lines)

    def failure(self) -> str:
        """The gate's one-line message when this build missed it."""
        return self.gate.failure(
            f"{self.model} {self.precision} build", self.fidelity, self.ground_truth
        )
