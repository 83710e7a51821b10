"""``samedge info``: version, backends and devices, ONNX metadata."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

HELP = "version, backends and devices, ONNX metadata"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "onnx", nargs="*", default=[], help=".onnx files whose samedge metadata to print"
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
        _print_onnx_metadata(Path(path))
    return 0


def _print_onnx_metadata(path: Path) -> None:
    from samedge.runtimes._graph import read_onnx_metadata

    meta = read_onnx_metadata(path)
    print(f"{path}:")
    if not meta:
        print("  (no samedge metadata: not written by samedge)")
    for key, value in sorted(meta.items()):
        print(f"  {key} = {value}")
