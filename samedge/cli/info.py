"""``samedge info``: version, backends and devices, ONNX metadata."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

HELP = "version, backends and devices, ONNX metadata"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "onnx",
        nargs="*",
        default=[],
        help=".onnx files whose samedge metadata to print, or model directories (each "
        "graph's precision, and why where samedge build chose it)",
    )


def run(args: argparse.Namespace) -> int:
    from samedge._version import __version__
    from samedge.models import list_models
    from samedge.runtimes import available_backends, select_backend

    print(f"samedge {__version__}")
    print(f"python {sys.version.split()[0]}")
    print("backends:")
    for info in available_backends():
        state = f"{info.version}" if info.installed else f"not installed ({info.hint})"
        print(f"  {info.name:<12} {state}")
        for device in info.devices:
            print(f"  {'':<12}   device: {device}")
    # select_backend logs its choice at INFO; info prints it itself, once.
    logging.getLogger("samedge.runtimes.select").setLevel(logging.WARNING)
    choice = select_backend("auto")
    print(f"auto choice: {choice.name} ({choice.reason})")
    print(f"models: {', '.join(list_models())}")
    for path in args.onnx:
        if Path(path).is_dir():
            _print_model_dir(Path(path))
        else:
            _print_onnx_metadata(Path(path))
    return 0


def _print_model_dir(path: Path) -> None:
    """A model directory's card, and each graph's precision (from its own tag)."""
    from samedge.model_dir import read_model_dir
    from samedge.runtimes._graph import read_onnx_summary

    card = read_model_dir(path)
    print(f"{path}: {card.model} ({card.family} family), {card.precision}")
    report = card.details.get("report") if isinstance(card.details, dict) else None
    why = {}
    if isinstance(report, dict):
        from samedge.calibration.report import BuildReport

        why = {g.graph: g.why for g in BuildReport.from_dict(report).graphs}
    graphs = {"encoder": card.encoder, "decoder": card.decoder}
    if card.memory_attention and card.memory_encoder:
        graphs = {"encoder": card.encoder, "memory_attention": card.memory_attention,
                  "decoder": card.decoder, "memory_encoder": card.memory_encoder}  # fmt: skip
    for graph, name in graphs.items():
        precision = read_onnx_summary(path / str(name)).precision
        reason = f"  ({why[graph]})" if why.get(graph) else ""
        print(f"  {graph:<17} {name}: {precision}{reason}")
    if card.encoder_input is not None:
        agreement = card.details.get("frame_size") if isinstance(card.details, dict) else None
        h, w = card.encoder_input
        line = f"  encoder input     {h}x{w} (frames of one size, `--frame-size`)"
        if isinstance(agreement, dict):
            line += (
                f"; masks vs the {card.image_size} square: IoU mean {agreement.get('mean_iou')}, "
                f"p5 {agreement.get('p5_iou')}"
            )
        print(line)


def _print_onnx_metadata(path: Path) -> None:
    from samedge.runtimes._graph import read_onnx_metadata

    meta = read_onnx_metadata(path)
    print(f"{path}:")
    if not meta:
        print("  (no samedge metadata: not written by samedge)")
    for key, value in sorted(meta.items()):
        print(f"  {key} = {value}")
