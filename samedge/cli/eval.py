"""``samedge eval``: mIoU vs ground truth, on procedural scenes or COCO; a build's fidelity;
a tracker's J&F on DAVIS-format video."""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
from pathlib import Path

from samedge.cli._common import BACKEND_CHOICES, command_line, default, given, split_csv

HELP = (
    "mIoU vs ground truth (procedural scenes or a COCO folder: box, click, corrective "
    "clicks), a build's fidelity vs fp32, or a tracker's J&F on DAVIS-format video"
)
DESCRIPTION = (
    "Without dataset flags: mIoU on held-out procedural scenes. With --coco-images/"
    "--coco-annotations: mIoU on a COCO-format set by COCO object size (needs samedge[eval]). "
    "With --reference FP32_DIR or --fidelity: an fp16/int8 build against its fp32 pipeline "
    "(embedding cosine/SQNR, mask IoU mean/p5/worst). With --video DIR: a tracker prompted "
    "from the first frame's masks, scored with DAVIS 2017's J, F and J&F (by event on "
    "folders samedge wrote)."
)

# Arguments of evaluate_fidelity() that have flags.
_FIDELITY = ("reference", "frames", "source", "seed")


def _category(text: str) -> str | int:
    return int(text) if text.isdigit() else text


def add_arguments(p: argparse.ArgumentParser) -> None:
    from samedge.evaluate import EvalConfig
    from samedge.evaluate_video import TRACKERS, PromptKind

    p.add_argument("model", help="model directory or built-in name (e.g. samedge_tiny)")
    p.add_argument("--backend", choices=BACKEND_CHOICES, help="default auto")
    p.add_argument(
        "--scenes",
        type=int,
        help=f"held-out procedural scenes (default {default(EvalConfig, 'scenes')})",
    )
    p.add_argument("--seed", type=int, help="seed of scenes / synthetic frames (default 2026)")
    p.add_argument(
        "--clicks",
        type=int,
        help=f"clicks incl. corrective (default {default(EvalConfig, 'clicks')})",
    )
    p.add_argument(
        "--protocol",
        choices=["samedge", "efficientvit-sam"],
        help="outputs scored after box and corrective clicks: samedge (default; single-mask, "
        "previous logits fed back) or efficientvit-sam (best of 3 by predicted IoU)",
    )
    g = p.add_argument_group("COCO-format dataset")
    g.add_argument(
        "--coco-images",
        type=Path,
        metavar="DIR",
        help="folder the JSON's file_name entries are relative to (coco/val2017)",
    )
    g.add_argument(
        "--coco-annotations",
        type=Path,
        metavar="FILE",
        help="instances JSON (coco/annotations/instances_val2017.json)",
    )
    g.add_argument("--max-images", type=int, help="first N images only")
    g.add_argument(
        "--categories",
        metavar="A,B",
        help="category names or ids to keep (comma-separated)",
    )
    g.add_argument(
        "--include-crowd", action="store_true", help="keep iscrowd annotations (left out)"
    )
    g.add_argument("--min-area", type=float, help="leave out smaller annotations")
    g = p.add_argument_group("fidelity of an fp16/int8 build")
    g.add_argument("--reference", metavar="FP32_DIR", help="fp32 model directory to compare with")
    g.add_argument(
        "--fidelity",
        action="store_true",
        help="compare with the fp32 directory recorded in the build's samedge.json",
    )
    g.add_argument("--frames", type=int, help="frames measured (default 8)")
    g.add_argument(
        "--source", help="'synthetic' (default), a folder of images, a video file or a camera"
    )
    g = p.add_argument_group("video object segmentation (DAVIS-format folder)")
    g.add_argument(
        "--video",
        type=Path,
        metavar="DIR",
        help="folder with JPEGImages/<seq>/*.jpg and Annotations/<seq>/*.png (DAVIS 2017's "
        "layout; benchmarks/write_davis_scenes.py writes held-out procedural ones)",
    )
    g.add_argument(
        "--prompt",
        choices=[k.value for k in PromptKind],
        help="first-frame prompt per object from its mask: box (default; its extremes) or "
        "click (its deepest pixel)",
    )
    g.add_argument("--tracker", choices=TRACKERS, help=f"tracker to score (default {TRACKERS[0]})")
    g.add_argument(
        "--split", metavar="NAME", help="ImageSets list to evaluate (e.g. val); default: all"
    )
    p.add_argument("--json", action="store_true", help="also print the numbers as JSON")
    p.add_argument(
        "--output",
        "-o",
        type=Path,
        metavar="FILE",
        help="also write the numbers (--json's schema, plus the command, samedge version and "
        "time) to FILE, atomically",
    )


def _takes() -> dict[str, frozenset[str]]:
    """The flags (by dest) each kind of evaluation takes: its config's fields and inputs."""
    from samedge.evaluate import CocoConfig, EvalConfig

    common = {"model", "json", "output"}
    scenes = {f.name for f in dataclasses.fields(EvalConfig)} | {"backend"}
    coco = {f.name for f in dataclasses.fields(CocoConfig)} | {"backend"}
    return {
        "procedural scenes": frozenset(scenes | common),
        "COCO": frozenset(coco | common | {"coco_images", "coco_annotations"}),
        "fidelity": frozenset({*_FIDELITY, "fidelity"} | common),
        "video": frozenset({"video", "prompt", "tracker", "split", "backend"} | common),
    }


def _mode(args: argparse.Namespace) -> str:
    """Which evaluation the flags ask for."""
    from samedge.errors import InputError

    coco = bool(given(args, "coco_images", "coco_annotations"))
    fidelity = bool(given(args, "reference", "fidelity"))
    video = bool(given(args, "video"))
    if coco + fidelity + video > 1:
        raise InputError(
            "--coco-*, --reference/--fidelity and --video measure different things; "
            "run them as separate commands"
        )
    if coco and not (hasattr(args, "coco_images") and hasattr(args, "coco_annotations")):
        raise InputError("COCO needs both --coco-images DIR and --coco-annotations FILE")
    return "video" if video else "COCO" if coco else "fidelity" if fidelity else "procedural scenes"


def _refuse_other_modes_flags(args: argparse.Namespace, mode: str) -> None:
    """Flags given for another kind of evaluation are refused rather than ignored."""
    from samedge.errors import InputError

    takes = _takes()
    # In the order they were given.
    flags = [k for k in vars(args) if k not in ("command", "verbose", "quiet", "run", "argv")]
    wrong = []
    for dest in (k for k in flags if k not in takes[mode]):
        modes = " or ".join(m for m, names in takes.items() if dest in names)
        wrong.append(f"--{dest.replace('_', '-')}" + (f" (for {modes})" if modes else ""))
    if wrong:
        raise InputError(f"{', '.join(wrong)}: not used with {mode}")


def run(args: argparse.Namespace) -> int:
    from samedge._io import check_output_file
    from samedge.evaluate import (
        CocoConfig,
        EvalConfig,
        Protocol,
        evaluate,
        evaluate_coco,
        evaluate_fidelity,
        save_eval,
    )

    output = getattr(args, "output", None)
    if output is not None:
        check_output_file(output, force=True, what="--output")  # before the evaluation
    mode = _mode(args)
    _refuse_other_modes_flags(args, mode)
    backend = getattr(args, "backend", "auto")
    if hasattr(args, "protocol"):
        args.protocol = Protocol(args.protocol)
    if mode == "video":
        from samedge.evaluate_video import PromptKind, VideoEvalConfig, evaluate_video

        if not args.verbose:
            # One INFO line per object lost per sequence would bury the table.
            logging.getLogger("samedge.stream.tracking").setLevel(logging.WARNING)
        config = (
            VideoEvalConfig(prompt=PromptKind(args.prompt))
            if hasattr(args, "prompt")
            else VideoEvalConfig()
        )
        video = evaluate_video(
            args.model,
            args.video,
            backend=backend,
            config=config,
            **given(args, "tracker", "split"),
        )
        summary, data = video.summary(sequences=True), video.to_dict()
    elif mode == "fidelity":
        fid = evaluate_fidelity(args.model, **given(args, *_FIDELITY))
        summary, data = fid.summary(), fid.to_dict()
    elif mode == "COCO":
        fields = {f.name for f in dataclasses.fields(CocoConfig)}
        if hasattr(args, "categories"):
            args.categories = split_csv(args.categories, "--categories", _category)
        report = evaluate_coco(
            args.model,
            args.coco_images,
            args.coco_annotations,
            backend=backend,
            config=CocoConfig(**given(args, *fields)),
        )
        summary, data = report.summary(), report.to_dict()
    else:
        fields = {f.name for f in dataclasses.fields(EvalConfig)}
        report = evaluate(args.model, backend=backend, config=EvalConfig(**given(args, *fields)))
        summary, data = report.summary(), report.to_dict()
    print(summary)
    if getattr(args, "json", False):
        print(json.dumps(data, indent=2))
    if output is not None:
        path = save_eval(data, output, command=command_line(args))
        print(f"wrote {path}")
    return 0
