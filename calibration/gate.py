"""The accuracy gate every FP16/INT8 build must pass before it is written.

The gate compares the build's masks with the FP32 pipeline's on held-out
frames and a fixed prompt set (:mod:`samedge.calibration.report`): the mean
mask IoU and its 5th percentile must reach the thresholds. The 5th percentile
is what catches the failure users report (a few prompts whose masks fall
apart) while the mean still looks fine.

Example:
    >>> from samedge.calibration.gate import GateConfig
    >>> GateConfig().min_mean_iou, GateConfig(min_p5_iou=0.9).min_p5_iou
    (0.95, 0.9)
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

# GateError lives in samedge.errors with every other error; re-exported so that
# ``from samedge.calibration.gate import GateError`` keeps working.
from samedge.errors import GateError, InputError

__all__ = ["GateConfig", "GateError", "GateResult"]


@dataclass(frozen=True)
class GateConfig:
    """Pass/fail thresholds of a build, against the FP32 pipeline.

    Attributes:
        min_mean_iou: Smallest acceptable mean mask IoU.
        min_p5_iou: Smallest acceptable 5th percentile of mask IoU.
        min_cosine: Smallest acceptable per-frame cosine similarity of the
            encoder embedding; ``None`` does not check it (masks are what
            users see; the embedding is reported either way).
        max_gt_miou_drop: For models with ground truth (``samedge_tiny``):
            also accept a build whose mIoU against ground truth is within this
            of FP32's for every prompt type, even if its masks differ from
            FP32's past the thresholds above. ``None`` (default): off.
    """

    min_mean_iou: float = 0.95
    min_p5_iou: float = 0.85
    min_cosine: float | None = None
    max_gt_miou_drop: float | None = None

    def __post_init__(self) -> None:
        for name in ("min_mean_iou", "min_p5_iou", "min_cosine", "max_gt_miou_drop"):
            value = getattr(self, name)
            if value is None and name in ("min_cosine", "max_gt_miou_drop"):
                continue
            if (
                isinstance(value, bool)
                or not isinstance(value, (int, float))
                or not (0.0 <= value <= 1.0)
                or math.isnan(value)
            ):
                raise InputError(f"{name}: got {value!r}, expected a number in [0, 1]")

    def check(self, mean_iou: float, p5_iou: float, min_cosine: float) -> GateResult:
        """Apply the thresholds to measured values."""
        reasons = []
        if not mean_iou >= self.min_mean_iou:
            reasons.append(f"mean mask IoU {mean_iou:.4f} < {self.min_mean_iou:g}")
        if not p5_iou >= self.min_p5_iou:
            reasons.append(f"5th-percentile mask IoU {p5_iou:.4f} < {self.min_p5_iou:g}")
        if self.min_cosine is not None and not min_cosine >= self.min_cosine:
            reasons.append(f"worst embedding cosine {min_cosine:.4f} < {self.min_cosine:g}")
        return GateResult(not reasons, tuple(reasons))

    def check_ground_truth(
        self, fp32: Mapping[str, float], build: Mapping[str, float]
    ) -> GateResult:
        """Compare mIoU against ground truth per prompt type (``max_gt_miou_drop``)."""
        if self.max_gt_miou_drop is None:
            return GateResult(False, ("no ground-truth gate configured",))
        reasons = [
            f"{prompt} mIoU {build[prompt]:.4f} < fp32 {ref:.4f} - {self.max_gt_miou_drop:g}"
            for prompt, ref in fp32.items()
            if not build.get(prompt, -math.inf) >= ref - self.max_gt_miou_drop
        ]
        return GateResult(not reasons, tuple(reasons))

    def to_dict(self) -> dict[str, float | None]:
        return {
            "min_mean_iou": self.min_mean_iou,
            "min_p5_iou": self.min_p5_iou,
            "min_cosine": self.min_cosine,
            "max_gt_miou_drop": self.max_gt_miou_drop,
        }


@dataclass(frozen=True)
class GateResult:
    """Outcome of the gate.

    Attributes:
        passed: Every threshold was met.
        reasons: One line per missed threshold (empty when passed).
    """

    passed: bool
    reasons: tuple[str, ...] = ()

    def __str__(self) -> str:
        return "passed" if self.passed else "FAILED: " + "; ".join(self.reasons)
