"""How close a build is to FP32: embedding fidelity, mask IoU, and the build report.

Measured with ONNX Runtime on the CPU (deterministic, and FP32 there is the
exact reference the exporters verified against PyTorch), on held-out frames
that calibration never saw:

* encoder: cosine similarity and SQNR (signal-to-quantization-noise ratio,
  ``10·log10(Σ ref² / Σ (ref − build)²)`` dB) of ``image_embeddings`` per frame;
* pipeline: the build's encoder *and* decoder against the FP32 encoder and
  decoder over :func:`fixed_prompts` (a 4×4 grid of clicks, 4 boxes, 4
  click pairs with a background point), masks upsampled to the frame exactly
  as the Predictor does, IoU of every one of the decoder's K=4 masks per prompt
  (SAM's single-mask output and its three multimask outputs). Two empty
  masks count as IoU 1.

Example:
    >>> ref = Reference.compute(card, "m/encoder.onnx", "m/decoder.onnx", frames)  # doctest: +SKIP
    >>> fid = ref.compare("b/encoder.onnx", "b/decoder.onnx")                       # doctest: +SKIP
    >>> fid.mean_iou, fid.p5_iou                                                    # doctest: +SKIP
    (0.991, 0.962)
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from samedge.calibration._onnx import cpu_session, run_session
from samedge.model_dir import ModelCard
from samedge.postprocess import postprocess_masks
from samedge.preprocess import Resample, ResizeLongestSide, preprocess_image
from samedge.prompts import ObjectPrompt, batch_prompts

__all__ = [
    "BuildReport",
    "Fidelity",
    "Reference",
    "cosine",
    "fixed_prompts",
    "mask_iou",
    "sqnr_db",
]

log = logging.getLogger(__name__)

_ENC_IN, _ENC_OUT = "image", "image_embeddings"
# FP32 mask area as a fraction of the frame. Small masks lose IoU fastest: a
# one-pixel shift of the decoder's low-resolution boundary is several frame pixels.
_SIZE_BINS = (("empty", 0.0, 1e-9), ("<1%", 1e-9, 0.01), ("1-10%", 0.01, 0.1), (">10%", 0.1, 2.0))


def cosine(ref: np.ndarray, test: np.ndarray) -> float:
    """Cosine similarity of two tensors, flattened (1.0 when both are zero)."""
    a = ref.astype(np.float64).ravel()
    b = test.astype(np.float64).ravel()
    na, nb = np.linalg.norm(a), np.linalg.norm(b)
    if na == 0.0 and nb == 0.0:
        return 1.0
    if na == 0.0 or nb == 0.0 or not np.isfinite(na * nb):
        return 0.0
    return float(np.dot(a, b) / (na * nb))


def sqnr_db(ref: np.ndarray, test: np.ndarray) -> float:
    """SQNR of ``test`` against ``ref`` in dB (``inf`` when identical, ``-inf`` for NaN/inf)."""
    a = ref.astype(np.float64)
    noise = float(np.sum((a - test.astype(np.float64)) ** 2))
    signal = float(np.sum(a**2))
    if not math.isfinite(noise):
        return -math.inf
    if noise == 0.0:
        return math.inf
    return 10.0 * math.log10(max(signal, 1e-30) / noise)


def mask_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of bool masks ``[..., H, W]`` pairwise over leading dims (1.0 where both are empty)."""
    inter = np.count_nonzero(a & b, axis=(-2, -1))
    union = np.count_nonzero(a | b, axis=(-2, -1))
    return np.where(union == 0, 1.0, inter / np.maximum(union, 1))


def fixed_prompts(original_size: tuple[int, int]) -> list[ObjectPrompt]:
    """The report's prompt set for a frame of ``(H, W)``: 24 objects, the same for every build.

    A 4×4 grid of single foreground clicks; 4 boxes (the four quadrants'
    central halves); 4 foreground clicks each paired with a background click
    a quarter of the frame away.
    """
    H, W = original_size
    prompts = []
    for j in range(4):
        for i in range(4):
            x, y = (i + 0.5) * W / 4, (j + 0.5) * H / 4
            prompts.append(ObjectPrompt(point_coords=[[x, y]], point_labels=[1]))
    for cx, cy in ((0.25, 0.25), (0.75, 0.25), (0.25, 0.75), (0.75, 0.75)):
        box = [(cx - 0.125) * W, (cy - 0.125) * H, (cx + 0.125) * W, (cy + 0.125) * H]
        prompts.append(ObjectPrompt(box=box))
    for fx, fy, bx, by in ((0.3, 0.3, 0.55, 0.3), (0.7, 0.3, 0.7, 0.55), (0.3, 0.7, 0.3, 0.45),
                           (0.7, 0.7, 0.45, 0.7)):  # fmt: skip
        prompts.append(
            ObjectPrompt(
                point_coords=[[fx * (W - 1), fy * (H - 1)], [bx * (W - 1), by * (H - 1)]],
                point_labels=[1, 0],
            )
        )
    return prompts


@dataclass(frozen=True)
class Fidelity:
    """A build against FP32 on held-out frames.

    Attributes:
        frames: Held-out frames measured.
        masks: Masks compared (frames × prompts × 4).
        cosine_mean: Mean per-frame cosine similarity of the embedding.
        cosine_min: Worst frame's cosine similarity.
        sqnr_mean_db: Mean per-frame embedding SQNR.
        sqnr_min_db: Worst frame's SQNR.
        mean_iou: Mean mask IoU.
        p5_iou: 5th percentile of mask IoU.
        worst_iou: Smallest mask IoU.
    """

    frames: int
    masks: int
    cosine_mean: float
    cosine_min: float
    sqnr_mean_db: float
    sqnr_min_db: float
    mean_iou: float
    p5_iou: float
    worst_iou: float
    by_size: Mapping[str, Mapping[str, float]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        def clean(v: float | int) -> float | int | None:
            if isinstance(v, float):
                return round(v, 6) if math.isfinite(v) else None
            return v

        out: dict[str, Any] = {k: clean(v) for k, v in self.__dict__.items() if k != "by_size"}
        out["by_size"] = {
            name: {k: clean(v) for k, v in stats.items()} for name, stats in self.by_size.items()
        }
        return out

    def line(self) -> str:
        """One line for a terminal."""
        return (
            f"embedding cosine {self.cosine_mean:.5f} (worst {self.cosine_min:.5f}), "
            f"SQNR {self.sqnr_mean_db:.1f} dB (worst {self.sqnr_min_db:.1f}); "
            f"mask IoU mean {self.mean_iou:.4f}, p5 {self.p5_iou:.4f}, worst {self.worst_iou:.4f} "
            f"({self.masks} masks, {self.frames} frames)"
        )

    def size_line(self) -> str:
        """Mask IoU by FP32 mask size, one line."""
        return "; ".join(
            f"{name}: {int(s['masks'])} masks, mean {s['mean_iou']:.3f}, p5 {s['p5_iou']:.3f}"
            for name, s in self.by_size.items()
        )


@dataclass
class _Frame:
    x: np.ndarray
    input_size: tuple[int, int]
    original_size: tuple[int, int]
    prompt_feeds: dict[str, np.ndarray]
    embedding: np.ndarray
    masks: np.ndarray  # [B, K, H, W] bool from the FP32 pipeline


class Reference:
    """FP32 outputs on held-out frames, computed once and compared with any number of builds.

    Build it with :meth:`compute`; the constructor takes the per-frame data
    :meth:`compute` prepares.
    """

    def __init__(self, card: ModelCard, frames_data: list[_Frame]) -> None:
        self.card = card
        self._frames = frames_data

    @classmethod
    def compute(
        cls,
        card: ModelCard,
        encoder: str | os.PathLike[str],
        decoder: str | os.PathLike[str],
        frames: Sequence[np.ndarray],
    ) -> Reference:
        """Run the FP32 pipeline on ``frames`` and keep embeddings and masks."""
        transform = ResizeLongestSide(card.image_size)
        enc, dec = cpu_session(encoder), cpu_session(decoder)
        data = []
        for frame in frames:
            x, input_size = preprocess_image(
                frame, card.image_size, card.pixel_mean, "RGB", None, Resample.EXACT
            )
            original = (int(frame.shape[0]), int(frame.shape[1]))
            feeds = batch_prompts(
                fixed_prompts(original), original, transform, card.low_res_mask_size
            ).feeds()
            embedding = run_session(enc, {_ENC_IN: x}, [_ENC_OUT])[0]
            masks = _decode(dec, card, embedding, feeds, input_size, original)
            data.append(_Frame(x, input_size, original, feeds, embedding, masks))
        return cls(card, data)

    @property
    def inputs(self) -> list[np.ndarray]:
        """The held-out frames as encoder inputs."""
        return [f.x for f in self._frames]

    def decoder_feeds(self) -> list[dict[str, np.ndarray]]:
        """Decoder inputs (FP32 embedding + the prompt set) of every held-out frame."""
        return [{_ENC_OUT: f.embedding, **f.prompt_feeds} for f in self._frames]

    def embeddings(self) -> list[np.ndarray]:
        """The FP32 embeddings of the held-out frames."""
        return [f.embedding for f in self._frames]

    def compare(
        self,
        encoder: str | os.PathLike[str] | Any,
        decoder: str | os.PathLike[str] | Any,
    ) -> Fidelity:
        """Measure a build (encoder and decoder paths, or ONNX Runtime sessions)."""
        enc = encoder if hasattr(encoder, "run") else cpu_session(encoder)
        dec = decoder if hasattr(decoder, "run") else cpu_session(decoder)
        cosines, sqnrs, ious, areas = [], [], [], []
        for f in self._frames:
            emb = run_session(enc, {_ENC_IN: f.x}, [_ENC_OUT])[0]
            cosines.append(cosine(f.embedding, emb))
            sqnrs.append(sqnr_db(f.embedding, emb))
            masks = _decode(dec, self.card, emb, f.prompt_feeds, f.input_size, f.original_size)
            ious.append(mask_iou(f.masks, masks).ravel())
            frame_px = f.original_size[0] * f.original_size[1]
            areas.append(np.count_nonzero(f.masks, axis=(-2, -1)).ravel() / frame_px)
        iou = np.concatenate(ious) if ious else np.zeros(0)
        area = np.concatenate(areas) if areas else np.zeros(0)
        by_size = {}
        for name, lo, hi in _SIZE_BINS:
            sel = (area >= lo) & (area < hi)
            if sel.any():
                by_size[name] = {
                    "masks": float(sel.sum()),
                    "mean_iou": float(iou[sel].mean()),
                    "p5_iou": float(np.percentile(iou[sel], 5)),
                }
        return Fidelity(
            frames=len(self._frames),
            masks=int(iou.size),
            cosine_mean=float(np.mean(cosines)),
            cosine_min=float(np.min(cosines)),
            sqnr_mean_db=float(np.mean(sqnrs)),
            sqnr_min_db=float(np.min(sqnrs)),
            mean_iou=float(iou.mean()),
            p5_iou=float(np.percentile(iou, 5)),
            worst_iou=float(iou.min()),
            by_size=by_size,
        )


def _decode(
    session: Any,
    card: ModelCard,
    embedding: np.ndarray,
    prompt_feeds: Mapping[str, np.ndarray],
    input_size: tuple[int, int],
    original_size: tuple[int, int],
) -> np.ndarray:
    low_res = run_session(session, {_ENC_OUT: embedding, **prompt_feeds}, ["low_res_masks"])[0]
    return postprocess_masks(low_res, card.image_size, input_size, original_size)


@dataclass(frozen=True)
class BuildReport:
    """Everything a build measured and decided; ``report.json`` is :meth:`to_dict`.

    Attributes:
        model: Architecture name from the card.
        source: The FP32 model directory the build started from.
        output: The directory written (or that would have been written).
        precision: ``"fp16"``, ``"int8"`` or ``"fp32"`` (``auto`` found nothing faster).
        decoder_precision: ``"fp32"`` or ``"fp16"``.
        passed: The gate's verdict.
        gate: Thresholds in effect, ``applied`` (``"fp32"`` or
            ``"ground_truth"``: which gate decided) and ``why``.
        gate_reasons: Missed thresholds, or on a pass notes (FP32 thresholds
            a ground-truth-gated build missed, which are reported, not gating).
        fidelity: The build against FP32.
        calibration: Settings: source, frames, method, seeds, versions.
        fp16_blocked: For FP16 graphs, reason -> nodes kept in FP32, per graph.
        fallback: For INT8 with layer fallback: the layers kept in float,
            their measured sensitivity, and the speed it cost.
        speed_ms: Encoder latency per backend, ``{"fp32": {...}, "build": {...}}``.
        ground_truth: For samedge_tiny, mIoU against ground truth of FP32 and the build.
        candidates: For ``--precision auto``: each candidate's gate and speed.
        decision: Why this precision was chosen.
        seconds: Wall time of the build.
    """

    model: str
    source: str
    output: str
    precision: str
    decoder_precision: str
    passed: bool
    gate: Mapping[str, Any]
    gate_reasons: tuple[str, ...]
    fidelity: Fidelity
    calibration: Mapping[str, Any]
    fp16_blocked: Mapping[str, Mapping[str, int]] = field(default_factory=dict)
    fallback: Mapping[str, Any] | None = None
    speed_ms: Mapping[str, Mapping[str, float]] = field(default_factory=dict)
    ground_truth: Mapping[str, Any] | None = None
    candidates: tuple[Mapping[str, Any], ...] = ()
    decision: str = ""
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (what ``report.json`` holds)."""
        return {
            "model": self.model,
            "source": self.source,
            "output": self.output,
            "precision": self.precision,
            "decoder_precision": self.decoder_precision,
            "passed": self.passed,
            "gate": dict(self.gate),
            "gate_reasons": list(self.gate_reasons),
            "fidelity": self.fidelity.to_dict(),
            "calibration": dict(self.calibration),
            "fp16_blocked": {k: dict(v) for k, v in self.fp16_blocked.items()},
            "fallback": None if self.fallback is None else dict(self.fallback),
            "speed_ms": {k: dict(v) for k, v in self.speed_ms.items()},
            "ground_truth": None if self.ground_truth is None else dict(self.ground_truth),
            "candidates": [dict(c) for c in self.candidates],
            "decision": self.decision,
            "seconds": round(self.seconds, 2),
        }

    def _gate_line(self) -> str:
        gate = self.gate
        fp32 = f"mean IoU >= {gate['min_mean_iou']:g}, p5 IoU >= {gate['min_p5_iou']:g}"
        if gate.get("applied") == "ground_truth":
            line = (
                f"  gate: ground truth, mIoU within {gate['max_gt_miou_drop']:g} of fp32's for "
                f"every prompt type ({gate.get('why')}; vs fp32 thresholds {fp32})"
            )
        else:
            line = f"  gate: vs fp32, {fp32}" + (f" ({gate['why']})" if gate.get("why") else "")
        if self.gate_reasons:
            line += f"; {'notes' if self.passed else 'missed'}: {'; '.join(self.gate_reasons)}"
        return line

    def summary(self) -> str:
        """The lines ``samedge build`` prints."""
        verdict = "PASSED" if self.passed else "FAILED"
        lines = [
            f"{self.model}: {self.precision} encoder + {self.decoder_precision} decoder "
            f"-> {self.output}  [gate {verdict}]",
            f"  vs fp32: {self.fidelity.line()}",
            f"  mask IoU by fp32 mask size: {self.fidelity.size_line()}",
            self._gate_line(),
        ]
        cal = self.calibration
        if cal.get("method"):
            lines.append(
                f"  calibration: {cal.get('method')} on {cal.get('frames')} frames from "
                f"{cal.get('source')} ({cal.get('heldout')} held out)"
            )
        for graph, counts in self.fp16_blocked.items():
            kept = ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))
            lines.append(f"  fp16 {graph}: kept in fp32: {kept or 'nothing'}")
        if self.fallback:
            kept = self.fallback.get("kept", [])
            if kept:
                lines.append(
                    f"  layer fallback: kept {len(kept)} layer(s) in float: "
                    + ", ".join(kept[:6])
                    + (" ..." if len(kept) > 6 else "")
                )
            else:
                lines.append(
                    "  layer fallback: tried keeping the top "
                    + ", ".join(str(k) for k in self.fallback.get("tried", []))
                    + " most sensitive layers in float; none passed, none kept"
                )
            cost = self.fallback.get("speed_cost")
            if cost:
                lines.append(f"  fallback speed cost: {cost}")
        for which, per_backend in self.speed_ms.items():
            cells = ", ".join(f"{b} {ms:.1f} ms" for b, ms in per_backend.items())
            lines.append(f"  encoder latency {which}: {cells}")
        if self.ground_truth:
            gt = self.ground_truth
            lines.append(
                f"  ground truth mIoU ({gt.get('scenes')} scenes): "
                + ", ".join(
                    f"{which} "
                    + " ".join(f"{p} {v:.3f}" for p, v in gt[which].items() if v is not None)
                    for which in ("fp32", "build")
                    if which in gt
                )
            )
        for c in self.candidates:
            lines.append(
                f"  candidate {c['precision']}: gate {'passed' if c['passed'] else 'FAILED'}, "
                f"{c.get('latency_ms', float('nan')):.1f} ms on {c.get('backend', '?')}"
            )
        if self.decision:
            lines.append(f"  decision: {self.decision}")
        return "\n".join(lines)
