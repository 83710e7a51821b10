"""``samedge export``: PyTorch checkpoint -> verified encoder.onnx + decoder.onnx."""

from __future__ import annotations

import argparse
import json
import signal
import sys
from pathlib import Path

from samedge.cli._common import Terminated, given, sigterm_unwinds

HELP = "PyTorch checkpoint -> encoder.onnx + decoder.onnx, verified against PyTorch"


def add_arguments(p: argparse.ArgumentParser) -> None:
    from samedge.cli._common import default
    from samedge.exporters.export import ExportConfig
    from samedge.models import list_models

    p.add_argument("model", choices=list_models(), help="architecture of the checkpoint")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--checkpoint", type=Path, help="the .pth/.pt checkpoint file")
    src.add_argument(
        "--random-weights",
        action="store_true",
        help="random weights instead of a checkpoint (speed and parity tests only)",
    )
    p.add_argument("--output", "-o", type=Path, required=True, help="model directory to write")
    p.add_argument(
        "--opset", type=int, help=f"ONNX opset (>= 17; default {default(ExportConfig, 'opset')})"
    )
    p.add_argument("--force", action="store_true", help="replace an existing output directory")
    p.add_argument(
        "--no-verify",
        action="store_false",
        dest="verify",
        help="skip the parity check (not advised)",
    )
    p.add_argument(
        "--frame-size",
        metavar="WxH",
        help="camera frame size, e.g. 640x480: the encoder runs on the frame's content "
        "instead of the padded square (mobile_sam, samedge_tiny; checked against the square "
        "encoder and refused past the precision gate; other frame shapes must fit inside)",
    )
    p.add_argument("--json", action="store_true", help="also print the report as JSON")


def run(args: argparse.Namespace) -> int:
    from samedge.exporters import ExportConfig, export_model
    from samedge.exporters.frame_size import parse_frame_size

    frame = getattr(args, "frame_size", None)
    config = ExportConfig(
        **given(args, "opset", "verify"),
        progress=not args.quiet,
        frame_size=parse_frame_size(frame) if frame is not None else None,
    )
    checkpoint = getattr(args, "checkpoint", None)
    try:
        with sigterm_unwinds():
            report = export_model(
                args.model,
                checkpoint,
                args.output,
                config=config,
                force=getattr(args, "force", False),
            )
    except Terminated:
        print("samedge export: terminated by SIGTERM; partial output removed", file=sys.stderr)
        return 128 + signal.SIGTERM
    print(report.summary())
    if getattr(args, "json", False):
        print(json.dumps(report.to_dict(), indent=2))
    return 0
