"""``samedge segment IMAGE... --everything -o OUT``: every mask of each image, as COCO RLE."""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path
from typing import Any

from samedge.cli._common import add_model_flags, default, given

HELP = "segment everything in images: a COCO-style JSON of RLE masks and an overlay per image"
DESCRIPTION = (
    "Runs the automatic mask generator (SamAutomaticMaskGenerator's parameters and "
    "defaults) on each image file, or each image of a folder, and writes OUT/segments.json "
    "(COCO: images, annotations with compressed RLE, area, bbox, predicted IoU, stability "
    "score) and OUT/<image>.png with the masks drawn over the image. An image that cannot "
    "be decoded is skipped with a warning and counted. Any exported model works, SAM 2.1 and "
    "EdgeTAM included (decoded without memory). The two score thresholds default to the "
    "model's own (see --pred-iou-thresh)."
)

_MODELS_OWN = "the model's: SAM {sam}, SAM 2 {sam2}, samedge_tiny {tiny}"

# GeneratorConfig fields with a flag of their own (same name, kebab-case).
_GENERATOR_FLAGS: dict[str, tuple[type, str]] = {
    "points_per_side": (int, "grid points along each side"),
    "points_per_batch": (int, "points per decoder call (default: measured per backend)"),
    "pred_iou_thresh": (float, "keep masks whose predicted IoU is above this"),
    "stability_score_thresh": (float, "keep masks at least this stable"),
    "stability_score_offset": (float, "logit offset of the stability score"),
    "box_nms_thresh": (float, "box IoU above which duplicates are dropped"),
    "crop_n_layers": (int, "crop layers beside the whole image"),
    "crop_nms_thresh": (float, "box IoU for duplicates between crops"),
    "crop_overlap_ratio": (float, "overlap of the first layer's crops"),
    "crop_n_points_downscale_factor": (int, "points per side shrink by this per layer"),
    "min_mask_region_area": (int, "fill holes / drop islands smaller than this (pixels)"),
}


_THRESHOLDS = ("pred_iou_thresh", "stability_score_thresh")


def _models_own(i: int) -> str:
    """The default of threshold ``i`` per model kind, for --help."""
    from samedge.models import get_model_spec

    def at(name: str) -> str:
        return f"{get_model_spec(name).mask_thresholds[i]:g}"

    return _MODELS_OWN.format(
        sam=at("sam_vit_b"), sam2=at("sam2.1_hiera_tiny"), tiny=at("samedge_tiny")
    )


def add_arguments(p: argparse.ArgumentParser) -> None:
    from samedge.generator import GeneratorConfig
    from samedge.segment import SegmentConfig

    p.add_argument("images", nargs="+", metavar="IMAGE", help="image files or folders of images")
    p.add_argument(
        "--everything",
        action="store_true",
        help="every mask of each image from a grid of point prompts (required: the only mode)",
    )
    p.add_argument("-o", "--output", type=Path, metavar="OUT", help="output folder (required)")
    p.add_argument(
        "--force", action="store_true", help="replace an output folder an earlier run wrote"
    )
    add_model_flags(p, SegmentConfig)
    g = p.add_argument_group("mask generator (SamAutomaticMaskGenerator's parameters)")
    for name, (kind, text) in _GENERATOR_FLAGS.items():
        value = default(GeneratorConfig, name)
        shown = f"{value:.4g}" if isinstance(value, float) else value
        suffix = "" if value is None else f" (default {shown})"
        if name in _THRESHOLDS:
            suffix = f" (default {_models_own(_THRESHOLDS.index(name))})"
        g.add_argument(f"--{name.replace('_', '-')}", type=kind, help=f"{text}{suffix}")


class _Progress:
    """A one-line progress counter on stderr (a bar with tqdm when it is installed)."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.bar: Any = None

    def __call__(self, done: int, total: int, path: Path, masks: int | None) -> None:
        if not self.enabled or total < 2:
            return
        if self.bar is None:
            try:
                from tqdm import tqdm
            except ImportError:
                self.bar = False
            else:
                self.bar = tqdm(total=total, unit="image", leave=False, disable=None)
        if self.bar:
            self.bar.update(1)
            self.bar.set_postfix_str(path.name if masks is not None else f"{path.name} skipped")
        elif sys.stderr.isatty():
            print(f"\r{done}/{total} {path.name}", end="", file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.bar:
            self.bar.close()
        elif self.bar is False and sys.stderr.isatty():
            print(file=sys.stderr)


def run(args: argparse.Namespace) -> int:
    from samedge._io import check_output_dir
    from samedge.errors import InputError
    from samedge.generator import GeneratorConfig
    from samedge.segment import SEGMENTS_FILE, SegmentConfig, segment_everything

    if not getattr(args, "everything", False):
        raise InputError(
            "segment: pass --everything (every mask of each image; the only mode so far)"
        )
    output = getattr(args, "output", None)
    if output is None:
        raise InputError("segment: pass -o/--output OUT, the folder to write")
    force = getattr(args, "force", False)
    check_output_dir(output, force=force, marker=SEGMENTS_FILE)  # before loading a model
    fields = {f.name for f in dataclasses.fields(SegmentConfig)} - {"generator", "force"}
    config = SegmentConfig(
        **given(args, *fields),
        generator=GeneratorConfig(**given(args, *_GENERATOR_FLAGS)),
        force=force,
    )
    progress = _Progress(enabled=not args.quiet)
    try:
        report = segment_everything(args.images, output, config, on_image=progress)
    finally:
        progress.close()
    print(report.summary())
    for path, reason in report.skipped:
        print(f"  skipped {path}: {reason}")
    if not report.images:
        # Every image was skipped: a run that segmented nothing is a failure.
        print(
            f"samedge segment: error: none of the {len(report.skipped)} image(s) could be "
            "decoded; pass image files OpenCV reads (PNG, JPEG, BMP, TIFF, WebP)",
            file=sys.stderr,
        )
        return 1
    if not report.masks:
        print(
            "  no mask passed the thresholds; lower --pred-iou-thresh / "
            "--stability-score-thresh (see --help for the model's defaults)"
        )
    return 0
