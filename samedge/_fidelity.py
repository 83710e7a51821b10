"""An FP16/INT8 build against the FP32 pipeline it came from (private; see :mod:`samedge.evaluate`).

:func:`evaluate_fidelity` is ``samedge eval BUILD --reference FP32`` (or
``--fidelity``, which finds the FP32 directory in the build's ``samedge.json``):
the build report's metrics (:class:`samedge.calibration.Reference`) measured
again, on frames of the caller's choosing, so a speed table can put accuracy
beside every precision.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from samedge._io import sha256_file
from samedge.errors import BackendUnavailableError, InputError, ModelDirError

__all__ = ["FidelityReport", "evaluate_fidelity"]

log = logging.getLogger(__name__)


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
        fidelity: The calibration report's metrics
            (:class:`samedge.calibration.Fidelity`).
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
    fidelity: Any
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


def _reference_dir(build_dir: Path, card: Any, reference: Any) -> tuple[Path, str]:
    from samedge.predictor import resolve_model

    if reference is not None:
        return resolve_model(reference), "argument"
    recorded = (card.details.get("source") or {}).get("model_dir")
    if not recorded:
        raise ModelDirError(
            f"model {build_dir}: records no fp32 source ({card.precision}, not made by "
            "`samedge build`); pass the fp32 model directory with --reference"
        )
    path = Path(recorded)
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

    The metrics are the build report's (:class:`samedge.calibration.Reference`,
    run on ONNX Runtime's CPU provider): embedding cosine and SQNR per frame,
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
        BackendUnavailableError: the ``calibration`` extra (onnx) is missing.
        CalibrationDataError: the frame source gives too few frames.

    Example:
        >>> report = evaluate_fidelity("out/mobile_sam_int8")             # doctest: +SKIP
        >>> report.fidelity.mean_iou, report.fidelity.p5_iou              # doctest: +SKIP
        (0.991, 0.962)
    """
    from samedge.evaluate import EVAL_SEED
    from samedge.model_dir import read_model_dir
    from samedge.predictor import resolve_model

    try:
        from samedge.calibration.frames import read_frames
        from samedge.calibration.report import Reference
    except ImportError as e:
        raise BackendUnavailableError(
            f"fidelity needs the 'calibration' extra ({e.name} is not installed): "
            "pip install 'samedge[calibration]'"
        ) from e
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
    recorded = (card.details.get("calibration") or {}).get("source_encoder_sha256")
    matches = None
    if recorded:
        matches = sha256_file(ref_dir / ref_card.encoder) == recorded
        if not matches:
            log.warning(
                "reference %s: its encoder is not the one %s was built from (SHA-256 differs)",
                ref_dir,
                build_dir,
            )
    synthetic = isinstance(source, str) and source.strip().lower() == "synthetic"
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
