"""Choose a trained-here model's "segment everything" score thresholds by measurement.

SAM's generator keeps masks whose predicted IoU is above 0.88 and whose stability
score is at least 0.95, numbers tuned on ViT-H. A model trained here (samedge_tiny,
samedge_tiny_track) scores lower: at SAM's numbers it keeps no mask on most images.
This script runs :class:`samedge.MaskGenerator` on held-out procedural scenes, whose
objects come with ground truth, for a grid of threshold pairs and reports per pair:

- recall: the fraction of ground-truth objects that some kept mask covers with
  IoU >= 0.5;
- precision: the fraction of kept masks that match an object or the background
  (IoU >= 0.5 with either; a background mask is a correct segment, not a false one);
- masks per image.

The pair with the highest F1 (ties: the stricter pair) is the model's
``ModelSpec.mask_thresholds`` (samedge/models.py).

    python benchmarks/generator_thresholds.py --model samedge_tiny --scenes 16 \\
        --output benchmarks/results/<machine>/generator_thresholds_samedge_tiny.md
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from samedge import GeneratorConfig, MaskGenerator
from samedge._image_prompter import ImagePrompter, open_prompter
from samedge.bench import machine_info
from samedge.scenes import Scene

IOU_GRID = (0.88, 0.8, 0.7, 0.6, 0.5, 0.4)
STABILITY_GRID = (0.95, 0.9, 0.8, 0.7, 0.6, 0.5)
MATCH_IOU = 0.5


@dataclass(frozen=True)
class Row:
    pred_iou_thresh: float
    stability_score_thresh: float
    recall: float
    precision: float
    masks_per_image: float

    @property
    def f1(self) -> float:
        total = self.recall + self.precision
        return 0.0 if total == 0 else 2 * self.recall * self.precision / total


def _iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every mask in ``a`` [n, HW] with every mask in ``b`` [m, HW], as [n, m]."""
    a = a.astype(np.float32)
    b = b.astype(np.float32)
    inter = a @ b.T
    union = a.sum(1)[:, None] + b.sum(1)[None, :] - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def sweep(
    model: str,
    scenes: int,
    points_per_side: int,
    iou_grid: tuple[float, ...] = IOU_GRID,
    stability_grid: tuple[float, ...] = STABILITY_GRID,
) -> list[Row]:
    from samedge.evaluate import EvalConfig, heldout_scenes

    images, _ = heldout_scenes(EvalConfig(scenes=scenes))
    with open_prompter(model, backend="onnxruntime") as prompter:
        return [
            _row(prompter, images, iou_t, stab_t, points_per_side)
            for iou_t in iou_grid
            for stab_t in stability_grid
        ]


def _row(
    prompter: ImagePrompter, images: list[Scene], iou_t: float, stab_t: float, per_side: int
) -> Row:
    config = GeneratorConfig(
        points_per_side=per_side, pred_iou_thresh=iou_t, stability_score_thresh=stab_t
    )
    generator = MaskGenerator(prompter, config)
    matched_objects = objects = matched_masks = masks = 0
    for scene in images:
        records = generator.generate(scene.image)
        masks += len(records)
        objects += len(scene.masks)
        if not records:
            continue
        kept = np.stack([r["segmentation"] for r in records]).reshape(len(records), -1)
        truth = scene.masks.reshape(len(scene.masks), kept.shape[1])
        background = ~truth.any(0, keepdims=True)
        iou = _iou(kept, np.concatenate([truth, background]))
        matched_objects += int((iou[:, :-1].max(0) >= MATCH_IOU).sum())
        matched_masks += int((iou.max(1) >= MATCH_IOU).sum())
    row = Row(
        iou_t,
        stab_t,
        recall=matched_objects / max(objects, 1),
        precision=matched_masks / masks if masks else 0.0,
        masks_per_image=masks / len(images),
    )
    print(
        f"iou>{iou_t} stability>={stab_t}: recall {row.recall:.3f} "
        f"precision {row.precision:.3f} masks/image {row.masks_per_image:.1f}",
        file=sys.stderr,
    )
    return row


def best(rows: list[Row]) -> Row:
    return max(rows, key=lambda r: (round(r.f1, 3), r.pred_iou_thresh, r.stability_score_thresh))


def markdown(model: str, rows: list[Row], command: str, scenes: int) -> str:
    chosen = best(rows)
    lines = [
        f"# Segment-everything thresholds for {model}",
        "",
        f"`{command}` ({time.strftime('%Y-%m-%dT%H:%M:%S%z')})",
        "",
        f"- machine: {machine_info()['cpu']}, {machine_info()['cores']} logical CPUs",
        f"- {scenes} held-out procedural scenes (samedge.evaluate's seed), ONNX Runtime; a GT "
        f"object is found when a kept mask has IoU >= {MATCH_IOU} with it; a kept mask is "
        "right when it matches an object or the background at that IoU",
        f"- chosen (highest F1, ties to the stricter pair): pred_iou_thresh "
        f"{chosen.pred_iou_thresh}, stability_score_thresh {chosen.stability_score_thresh} "
        f"(recall {chosen.recall:.3f}, precision {chosen.precision:.3f})",
        "",
        "| pred_iou_thresh | stability_score_thresh | recall | precision | F1 | masks/image |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        mark = " **(chosen)**" if r is chosen else ""
        lines.append(
            f"| {r.pred_iou_thresh} | {r.stability_score_thresh}{mark} | {r.recall:.3f} | "
            f"{r.precision:.3f} | {r.f1:.3f} | {r.masks_per_image:.1f} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="samedge_tiny", help="model name or directory")
    p.add_argument("--scenes", type=int, default=16)
    p.add_argument("--points-per-side", type=int, default=16)
    p.add_argument("--iou-grid", default=",".join(map(str, IOU_GRID)))
    p.add_argument("--stability-grid", default=",".join(map(str, STABILITY_GRID)))
    p.add_argument("--output", type=Path, required=True, help="markdown file (JSON beside it)")
    args = p.parse_args(argv)

    def grid(text: str) -> tuple[float, ...]:
        return tuple(float(x) for x in text.split(",") if x)

    rows = sweep(
        args.model,
        args.scenes,
        args.points_per_side,
        grid(args.iou_grid),
        grid(args.stability_grid),
    )
    command = "python benchmarks/generator_thresholds.py " + " ".join(argv or sys.argv[1:])
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(markdown(args.model, rows, command, args.scenes))
    chosen = best(rows)
    args.output.with_suffix(".json").write_text(
        json.dumps(
            {
                "model": args.model,
                "command": command,
                "chosen": [chosen.pred_iou_thresh, chosen.stability_score_thresh],
                "rows": [{**r.__dict__, "f1": r.f1} for r in rows],
            },
            indent=2,
        )
        + "\n"
    )
    print(args.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
