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
    "GroundTruth",
    "LayerFallback",
    "LayerSensitivity",
    "Reference",
    "SizeBin",
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
            lines.append(f"  encoder latency {which}: {cells}")
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
