"""How close a build is to FP32 (private; re-exported by :mod:`samedge.calibration` and
:mod:`samedge.evaluate`).

The one home of the fidelity measurement, in the core so that both
``samedge build`` (:mod:`samedge.calibration`, which gates on it) and
``samedge eval --fidelity`` (:func:`evaluate_fidelity`, which measures a
build again on frames of the caller's choosing) use it without the core
importing calibration. It needs ONNX Runtime only.

Measured with ONNX Runtime on the CPU (deterministic, and FP32 there is the
exact reference the exporters verified against PyTorch), on held-out frames
that calibration never saw:

* encoder: cosine similarity and SQNR (signal-to-quantization-noise ratio,
  ``10·log10(Σ ref² / Σ (ref − build)²)`` dB) of ``image_embeddings`` per frame;
* pipeline: the build's encoder *and* decoder against the FP32 encoder and
  decoder over :func:`fixed_prompts` (a 4×4 grid of clicks, 4 boxes, 4
  click pairs with a background point), masks upsampled to the frame exactly
  as the Predictor does, IoU of every one of the decoder's K=4 masks per prompt
  (SAM's single-mask output and its three multimask outputs), with
  :mod:`samedge.masks`' convention (two empty masks count as IoU 1).

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
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np

from samedge._io import sha256_file
from samedge.errors import ExportError, InputError, ModelDirError
from samedge.graph_names import IMAGE, IMAGE_EMBEDDINGS, LOW_RES_MASKS
from samedge.masks import mask_ious
from samedge.model_dir import ModelCard
from samedge.postprocess import postprocess_masks
from samedge.preprocess import ResizeLongestSide, model_input
from samedge.prompts import ObjectPrompt, batch_prompts
from samedge.runtimes.ort import STOP_SPINNING_AFTER_RUN
from samedge.stream.sources import is_synthetic

__all__ = [
    "BuildSource",
    "Fidelity",
    "FidelityReport",
    "Reference",
    "SizeBin",
    "cosine",
    "evaluate_fidelity",
    "fixed_prompts",
    "sqnr_db",
]

log = logging.getLogger(__name__)

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


def _to_json(value: float | int) -> float | int | str:
    """A number for JSON: floats rounded; non-finite ones as "inf", "-inf" or "nan"."""
    if isinstance(value, float):
        return round(value, 6) if math.isfinite(value) else str(value)
    return value


def _from_json(value: Any, name: str) -> float:
    # Reports written before non-finite numbers were kept wrote them as null.
    if value is None:
        return math.nan
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise InputError(f"fidelity {name}: got {value!r}, expected a number")
    try:
        return float(value)
    except ValueError as e:
        raise InputError(f"fidelity {name}: got {value!r}, expected a number") from e


@dataclass(frozen=True)
class SizeBin:
    """Mask IoU of the masks whose FP32 area falls in one size bin.

    Attributes:
        masks: Masks in the bin.
        mean_iou: Their mean IoU.
        p5_iou: Their 5th-percentile IoU.
    """

    masks: int
    mean_iou: float
    p5_iou: float


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
        by_size: FP32 mask size bin (``"empty"``, ``"<1%"``, ``"1-10%"``,
            ``">10%"`` of the frame) -> IoU of its masks.
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
    by_size: Mapping[str, SizeBin] = field(default_factory=dict)

    @classmethod
    def identical(cls, frames: int) -> Fidelity:
        """The fidelity of FP32 against itself (nothing compared, everything equal)."""
        return cls(frames, 0, 1.0, 1.0, math.inf, math.inf, 1.0, 1.0, 1.0)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (non-finite numbers as ``"inf"``/``"-inf"``/``"nan"``)."""
        out: dict[str, Any] = {
            f.name: _to_json(getattr(self, f.name)) for f in fields(self) if f.name != "by_size"
        }
        out["by_size"] = {
            name: {"masks": b.masks, "mean_iou": _to_json(b.mean_iou), "p5_iou": _to_json(b.p5_iou)}
            for name, b in self.by_size.items()
        }
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Fidelity:
        """Read back :meth:`to_dict`.

        Raises:
            InputError: a field is missing or not a number.
        """
        if not isinstance(data, Mapping):
            raise InputError(f"fidelity: got {type(data).__name__}, expected a mapping")
        names = [f.name for f in fields(cls) if f.name != "by_size"]
        missing = [n for n in names if n not in data]
        if missing:
            raise InputError(f"fidelity: missing {', '.join(missing)}; not a build report's")
        values = {n: _from_json(data[n], n) for n in names}
        by_size = {}
        for name, stats in dict(data.get("by_size") or {}).items():
            if not isinstance(stats, Mapping):
                raise InputError(f"fidelity by_size[{name!r}]: got {stats!r}, expected a mapping")
            by_size[str(name)] = SizeBin(
                masks=int(_from_json(stats.get("masks"), "masks")),
                mean_iou=_from_json(stats.get("mean_iou"), "mean_iou"),
                p5_iou=_from_json(stats.get("p5_iou"), "p5_iou"),
            )
        counts = ("frames", "masks")
        numbers: dict[str, Any] = {n: int(v) if n in counts else v for n, v in values.items()}
        return cls(**numbers, by_size=by_size)

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
            f"{name}: {s.masks} masks, mean {s.mean_iou:.3f}, p5 {s.p5_iou:.3f}"
            for name, s in self.by_size.items()
        )


def cpu_session(model: str | os.PathLike[str] | bytes) -> Any:
    """An ONNX Runtime CPU session (quiet, no memory arena) on a path or serialized graph.

    Raises:
        ExportError: ONNX Runtime cannot load the graph.
    """
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    # Several sessions, a quantizer's statistics and the report live at once
    # during a build: hold weights between runs, not the largest run's activations.
    options.enable_mem_pattern = False
    options.enable_cpu_mem_arena = False
    # The reference's encoder and decoder sessions take turns: an idle one must not spin.
    options.add_session_config_entry(*STOP_SPINNING_AFTER_RUN)
    source = model if isinstance(model, bytes) else os.fspath(model)
    try:
        return ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])
    except Exception as e:  # ORT raises untyped errors for graphs it cannot load
        raise ExportError(f"ONNX Runtime cannot load the graph ({type(e).__name__}: {e})") from e


def _run(session: Any, feeds: Mapping[str, np.ndarray], name: str) -> np.ndarray:
    try:
        return session.run([name], dict(feeds))[0]
    except Exception as e:
        raise ExportError(f"ONNX Runtime failed to run the graph ({type(e).__name__}: {e})") from e


def encode(session: Any, x: np.ndarray) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """The image embedding and the encoder's other outputs (e.g. SAM-HQ's ``hq_features``).

    Every encoder output besides ``image_embeddings`` is a decoder input of the
    same name (:mod:`samedge.graph_names`), so the second value is added to
    every decoder call of the frame.
    """
    names = [o.name for o in session.get_outputs()]
    try:
        outputs = dict(zip(names, session.run(names, {IMAGE: x}), strict=True))
    except Exception as e:
        raise ExportError(f"ONNX Runtime failed to run the graph ({type(e).__name__}: {e})") from e
    return outputs.pop(IMAGE_EMBEDDINGS), outputs


@dataclass
class _Frame:
    x: np.ndarray
    input_size: tuple[int, int]
    original_size: tuple[int, int]
    prompt_feeds: dict[str, np.ndarray]
    embedding: np.ndarray
    masks: np.ndarray  # [B, K, H, W] bool from the FP32 pipeline
    extras: dict[str, np.ndarray]  # the encoder's other outputs, fed to the decoder


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
            x, input_size = model_input(frame, card)
            original = (int(frame.shape[0]), int(frame.shape[1]))
            feeds = batch_prompts(
                fixed_prompts(original), original, transform, card.low_res_mask_size
            ).feeds()
            embedding, extras = encode(enc, x)
            masks = _decode(dec, card, embedding, {**feeds, **extras}, input_size, original)
            data.append(_Frame(x, input_size, original, feeds, embedding, masks, extras))
        return cls(card, data)

    @property
    def inputs(self) -> list[np.ndarray]:
        """The held-out frames as encoder inputs."""
        return [f.x for f in self._frames]

    def decoder_feeds(self) -> list[dict[str, np.ndarray]]:
        """Decoder inputs (FP32 embedding + the prompt set) of every held-out frame."""
        return [{IMAGE_EMBEDDINGS: f.embedding, **f.extras, **f.prompt_feeds} for f in self._frames]

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
            emb, extras = encode(enc, f.x)
            cosines.append(cosine(f.embedding, emb))
            sqnrs.append(sqnr_db(f.embedding, emb))
            feeds = {**f.prompt_feeds, **extras}
            masks = _decode(dec, self.card, emb, feeds, f.input_size, f.original_size)
            ious.append(mask_ious(f.masks, masks).ravel())
            frame_px = f.original_size[0] * f.original_size[1]
            areas.append(np.count_nonzero(f.masks, axis=(-2, -1)).ravel() / frame_px)
        iou = np.concatenate(ious) if ious else np.zeros(0)
        area = np.concatenate(areas) if areas else np.zeros(0)
        by_size = {}
        for name, lo, hi in _SIZE_BINS:
            sel = (area >= lo) & (area < hi)
            if sel.any():
                by_size[name] = SizeBin(
                    masks=int(sel.sum()),
                    mean_iou=float(iou[sel].mean()),
                    p5_iou=float(np.percentile(iou[sel], 5)),
                )
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
    low_res = _run(session, {IMAGE_EMBEDDINGS: embedding, **prompt_feeds}, LOW_RES_MASKS)
    return postprocess_masks(low_res, card.image_size, input_size, original_size)


@dataclass(frozen=True)
class BuildSource:
    """Where a built model directory came from, as its card's provenance records it.

    ``samedge build`` writes it into the card's ``details`` (``source`` and
    ``calibration.source_encoder_sha256``); the build report itself carries
    no path.

    Attributes:
        model_dir: The FP32 directory it was built from, as recorded; ``None`` if none.
        encoder_sha256: SHA-256 of that directory's encoder at build time; ``None`` if none.
    """

    model_dir: Path | None = None
    encoder_sha256: str | None = None

    @classmethod
    def of(cls, card: ModelCard) -> BuildSource:
        """Read it from a card (nothing recorded gives ``BuildSource()``)."""
        details = card.details if isinstance(card.details, Mapping) else {}
        source = details.get("source")
        calibration = details.get("calibration")
        recorded = source.get("model_dir") if isinstance(source, Mapping) else None
        sha = calibration.get("source_encoder_sha256") if isinstance(calibration, Mapping) else None
        return cls(
            model_dir=Path(str(recorded)) if recorded else None,
            encoder_sha256=str(sha) if sha else None,
        )

    def matches(self, directory: Path, card: ModelCard) -> bool | None:
        """Whether ``directory``'s encoder is the recorded one; ``None`` when none is recorded."""
        if self.encoder_sha256 is None:
            return None
        return sha256_file(directory / card.encoder) == self.encoder_sha256


@dataclass(frozen=True)
class FidelityReport:
    """A built model directory against its FP32 source, on held-out frames.

    Attributes:
        build: The directory measured.
        reference: The FP32 directory it was compared with.
        reference_from: ``"argument"`` or ``"provenance"`` (the build's ``samedge.json``).
        model: Architecture name.
        precision: The build's precision.
        frames: Where the frames came from.
        fidelity: The build against the FP32 directory.
        source_matches: Whether the reference's encoder is the one the build
            was made from (its recorded SHA-256); ``None`` when not recorded.
        seconds: Wall time.
    """

    build: str
    reference: str
    reference_from: str
    model: str
    precision: str
    frames: str
    fidelity: Fidelity
    source_matches: bool | None = None
    seconds: float = 0.0

    def summary(self) -> str:
        """The lines ``samedge eval --reference`` prints."""
        lines = [
            f"{self.model} {self.precision} {self.build} vs fp32 {self.reference} "
            f"(reference from {self.reference_from}), {self.frames}:",
            f"  {self.fidelity.line()}",
            f"  mask IoU by fp32 mask size: {self.fidelity.size_line()}",
        ]
        if self.source_matches is False:
            lines.append("  warning: the reference is not the fp32 model this build was made from")
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly form."""
        return {
            "build": self.build,
            "reference": self.reference,
            "reference_from": self.reference_from,
            "model": self.model,
            "precision": self.precision,
            "frames": self.frames,
            "source_matches": self.source_matches,
            "fidelity": self.fidelity.to_dict(),
            "seconds": round(self.seconds, 2),
        }


def _reference_dir(build_dir: Path, card: ModelCard, reference: Any) -> tuple[Path, str]:
    from samedge.predictor import resolve_model

    if reference is not None:
        return resolve_model(reference), "argument"
    path = BuildSource.of(card).model_dir
    if path is None:
        raise ModelDirError(
            f"model {build_dir}: records no fp32 source ({card.precision}, not made by "
            "`samedge build`); pass the fp32 model directory with --reference"
        )
    if not path.is_dir():
        raise ModelDirError(
            f"model {build_dir}: was built from {path}, which no longer exists; pass the fp32 "
            "model directory with --reference"
        )
    return path, "provenance"


def evaluate_fidelity(
    build: str | os.PathLike[str],
    reference: str | os.PathLike[str] | None = None,
    *,
    frames: int = 8,
    source: str | int | os.PathLike[str] = "synthetic",
    seed: int | None = None,
) -> FidelityReport:
    """Measure an FP16/INT8 build against the FP32 pipeline it came from.

    The metrics are the build report's (:class:`Reference`, run on ONNX
    Runtime's CPU provider; no extra needed): embedding cosine and SQNR per frame,
    and IoU of every decoder output over the fixed prompt set, mean, 5th
    percentile and worst.

    Args:
        build: The built model directory.
        reference: The FP32 model directory (or built-in name); ``None`` reads
            it from the build's ``samedge.json`` (``details.source.model_dir``).
        frames: Frames to measure on.
        source: ``"synthetic"`` (scenes never used for calibration), a folder of
            images, a video file or a camera index; pass frames the build was
            not calibrated on.
        seed: Seed of synthetic frames; ``None`` means :data:`EVAL_SEED`, frames
            apart from the build's own gate frames (seed 4242, which the layer
            fallback tuned against; pass 4242 and the build's ``heldout`` count
            to reproduce its report).

    Returns:
        The report; ``report.summary()`` is what ``samedge eval --reference`` prints.

    Raises:
        ModelDirError: a missing directory, no recorded source and no
            ``reference``, a reference that is not FP32, or models of
            different architectures.
        CalibrationDataError: the frame source gives too few frames.

    Example:
        >>> report = evaluate_fidelity("out/mobile_sam_int8")             # doctest: +SKIP
        >>> report.fidelity.mean_iou, report.fidelity.p5_iou              # doctest: +SKIP
        (0.991, 0.962)
    """
    from samedge._frames import read_frames
    from samedge.evaluate import EVAL_SEED
    from samedge.model_dir import read_model_dir
    from samedge.predictor import resolve_model

    if isinstance(frames, bool) or not isinstance(frames, int) or frames < 1:
        raise InputError(f"frames: got {frames!r}, expected an int >= 1")
    t0 = time.perf_counter()
    build_dir = resolve_model(build)
    card = read_model_dir(build_dir)
    ref_dir, ref_from = _reference_dir(build_dir, card, reference)
    ref_card = read_model_dir(ref_dir)
    if ref_card.precision != "fp32":
        raise ModelDirError(
            f"reference {ref_dir}: is {ref_card.precision}; expected the fp32 model directory "
            "(from `samedge export`) the build was made from"
        )
    if (card.model, card.image_size, tuple(card.embedding_shape)) != (
        ref_card.model,
        ref_card.image_size,
        tuple(ref_card.embedding_shape),
    ):
        raise ModelDirError(
            f"reference {ref_dir}: is {ref_card.model} ({ref_card.image_size} px), the build "
            f"{build_dir} is {card.model} ({card.image_size} px); pass the fp32 directory of "
            "the same model"
        )
    matches = BuildSource.of(card).matches(ref_dir, ref_card)
    if matches is False:
        log.warning(
            "reference %s: its encoder is not the one %s was built from (SHA-256 differs)",
            ref_dir,
            build_dir,
        )
    synthetic = is_synthetic(source)
    if seed is not None and not synthetic:
        raise InputError(f"seed: got {seed}, but frames come from {source!r}, not 'synthetic'")
    if synthetic:
        frame_set = read_frames(source, 1, heldout=frames, seed=EVAL_SEED if seed is None else seed)
        measured = frame_set.heldout
    else:
        frame_set = read_frames(source, frames)
        measured = frame_set.calibration
    ref_graphs = (ref_dir / ref_card.encoder, ref_dir / ref_card.decoder)
    ref = Reference.compute(ref_card, *ref_graphs, measured)
    fidelity = ref.compare(build_dir / card.encoder, build_dir / card.decoder)
    return FidelityReport(
        build=str(build_dir),
        reference=str(ref_dir),
        reference_from=ref_from,
        model=card.model,
        precision=card.precision,
        frames=f"{len(measured)} frames from {frame_set.description}",
        fidelity=fidelity,
        source_matches=matches,
        seconds=time.perf_counter() - t0,
    )
