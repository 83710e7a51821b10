"""``samedge run``: track objects on a source (default: the built-in scene), write a video."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from samedge.cli._common import (
    add_model_flags,
    add_source_flags,
    default,
    given,
    parse_floats,
    session_fields,
)

HELP = "track objects on a source (default: the built-in moving scene), write a video"
DESCRIPTION = (
    "With no arguments: samedge_tiny on the built-in moving scene; clicks --objects objects "
    "on the first frame, tracks them, writes out/run.mp4 and prints FPS and per-stage "
    "latency. Other sources need prompts: --point / --box."
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    from samedge.stream.demo import DEFAULT_OUTPUT, RunConfig

    add_source_flags(p, RunConfig)
    add_model_flags(p, RunConfig)
    p.add_argument(
        "--frames",
        type=int,
        help="frames to process; 0 = until the source ends "
        f"(default {default(RunConfig, 'frames')})",
    )
    p.add_argument(
        "--objects",
        type=int,
        help="objects the demo clicks on the synthetic scene "
        f"(default {default(RunConfig, 'objects')})",
    )
    p.add_argument(
        "--point",
        action="append",
        dest="points",
        metavar="X,Y",
        type=parse_floats(2, "X,Y pixel coordinates"),
        help="track the object under this pixel (repeatable; one object each)",
    )
    p.add_argument(
        "--box",
        action="append",
        dest="boxes",
        metavar="X0,Y0,X1,Y1",
        type=parse_floats(4, "X0,Y0,X1,Y1 pixel coordinates"),
        help="track the object in this box (repeatable; one object each)",
    )
    out = p.add_mutually_exclusive_group()
    out.add_argument(
        "--output",
        "-o",
        type=Path,
        help="annotated video (.mp4, .avi) or a folder for PNG frames; default "
        f"{DEFAULT_OUTPUT}, replaced on every run (an explicit --output needs --force to be "
        "replaced)",
    )
    out.add_argument("--no-video", action="store_true", help="write no video")
    p.add_argument("--force", action="store_true", help="replace an existing --output")
    p.add_argument("--json", action="store_true", help="also print the report as JSON")


def run(args: argparse.Namespace) -> int:
    from samedge.stream.demo import RunConfig, run_demo

    fields = {**session_fields(args), **given(args, "objects", "force", "output")}
    if hasattr(args, "frames"):
        fields["frames"] = args.frames or None  # 0: until the source ends
    for name in ("points", "boxes"):
        if hasattr(args, name):
            fields[name] = tuple(getattr(args, name))
    if getattr(args, "no_video", False):
        fields["output"] = None
    report = run_demo(RunConfig(**fields))
    print(report.format())
    if getattr(args, "json", False):
        print(json.dumps(report.to_dict(), indent=2))
    if report.interrupted:
        print("samedge run: interrupted", file=sys.stderr)
        return 128 + (report.signal or 2)  # 130 for Ctrl-C, 143 for SIGTERM
    return 0
