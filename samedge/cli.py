"""The ``samedge`` command line.

The CLI only turns flags into a config and calls the library; heavy imports
(torch, backend SDKs) happen after parsing. Errors are one line and a non-zero
exit; ``-v`` adds the traceback.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from samedge._version import __version__
from samedge.errors import SamedgeError
from samedge.models import list_models

log = logging.getLogger("samedge")

EXIT_ERROR = 1
EXIT_USAGE = 2


def _cmd_info(args: argparse.Namespace) -> int:
    from samedge import runtimes

    print(f"samedge {__version__}")
    print(f"python {sys.version.split()[0]}")
    print("backends:")
    for info in runtimes.available_backends():
        state = f"{info.version}" if info.installed else f"not installed ({info.hint})"
        print(f"  {info.name:<12} {state}")
        for device in info.devices:
            print(f"  {'':<12}   device: {device}")
    choice = runtimes.select_backend("auto")
    print(f"auto choice: {choice.name} ({choice.reason})")
    print(f"models: {', '.join(list_models())}")
    for path in args.onnx:
        _print_onnx_metadata(Path(path))
    return 0


def _print_onnx_metadata(path: Path) -> None:
    from samedge._onnx_meta import read_onnx_metadata

    meta = read_onnx_metadata(path)
    print(f"{path}:")
    if not meta:
        print("  (no samedge metadata: not written by samedge)")
    for key, value in sorted(meta.items()):
        print(f"  {key} = {value}")


def _cmd_export(args: argparse.Namespace) -> int:
    from samedge.exporters import ExportConfig, export_model

    config = ExportConfig(opset=args.opset, verify=not args.no_verify, progress=not args.quiet)
    checkpoint = None if args.random_weights else args.checkpoint
    report = export_model(args.model, checkpoint, args.output, config=config, force=args.force)
    print(report.summary())
    if args.json:
        print(json.dumps(report.to_dict(), indent=2))
    return 0


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="samedge",
        description="Segment Anything on edge hardware: export, build, run and serve.",
    )
    parser.add_argument("--version", action="version", version=f"samedge {__version__}")
    verbosity = parser.add_mutually_exclusive_group()
    verbosity.add_argument("-v", "--verbose", action="count", default=0, help="more logs, tracebacks")
    verbosity.add_argument("-q", "--quiet", action="store_true", help="only errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("info", help="version, backends and devices, ONNX metadata")
    p.add_argument("onnx", nargs="*", help=".onnx files whose samedge metadata to print")
    p.set_defaults(func=_cmd_info)

    p = sub.add_parser(
        "export",
        help="PyTorch checkpoint -> encoder.onnx + decoder.onnx, verified against PyTorch",
    )
    p.add_argument("model", choices=list_models(), help="architecture of the checkpoint")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--checkpoint", type=Path, help="the .pth/.pt checkpoint file")
    src.add_argument(
        "--random-weights",
        action="store_true",
        help="random weights instead of a checkpoint (speed and parity tests only)",
    )
    p.add_argument("--output", "-o", type=Path, required=True, help="model directory to write")
    p.add_argument("--opset", type=int, default=17, help="ONNX opset (>= 17; default 17)")
    p.add_argument("--force", action="store_true", help="replace an existing output directory")
    p.add_argument("--no-verify", action="store_true", help="skip the parity check (not advised)")
    p.add_argument("--json", action="store_true", help="also print the report as JSON")
    p.set_defaults(func=_cmd_export)
    return parser


def _configure_logging(verbose: int, quiet: bool) -> None:
    level = logging.ERROR if quiet else logging.DEBUG if verbose > 1 else logging.INFO
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``samedge`` console script."""
    parser = _build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return EXIT_USAGE
    _configure_logging(args.verbose, args.quiet)
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        return func(args)
    except SamedgeError as e:
        if args.verbose:
            log.exception("failed")
        print(f"samedge {args.command}: error: {e}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print(f"samedge {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
