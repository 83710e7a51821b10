"""The ``samedge`` command line: one module per command, flags turned into a config.

Each command module has ``HELP`` (its line in ``samedge --help``), optionally
``DESCRIPTION``, ``add_arguments(parser)`` and ``run(args) -> exit code``.
Only the command being run has its arguments declared, so ``samedge run``
never imports what ``samedge build`` needs; heavy imports (torch, backend
SDKs) happen inside ``run``. Errors are one line and a non-zero exit; ``-v``
adds the traceback.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence
from types import ModuleType

from samedge._version import __version__
from samedge.cli._common import EXIT_ERROR, EXIT_USAGE
from samedge.errors import SamedgeError

__all__ = ["COMMANDS", "main"]

log = logging.getLogger("samedge")

#: Command name -> module implementing it (a plain registry).
COMMANDS = {
    "info": "samedge.cli.info",
    "export": "samedge.cli.export",
    "build": "samedge.cli.build",
    "eval": "samedge.cli.eval",
    "segment": "samedge.cli.segment",
    "run": "samedge.cli.run",
    "serve": "samedge.cli.serve",
    "bench": "samedge.cli.bench",
    "cache": "samedge.cli.cache",
}


def _module(name: str) -> ModuleType:
    return importlib.import_module(COMMANDS[name])


def _build_parser(command: str | None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="samedge",
        description="Segment Anything on edge hardware: export, build, run and serve.",
    )
    parser.add_argument("--version", action="version", version=f"samedge {__version__}")
    verbosity = parser.add_mutually_exclusive_group()
    verbosity.add_argument(
        "-v", "--verbose", action="count", default=0, help="more logs, tracebacks"
    )
    verbosity.add_argument("-q", "--quiet", action="store_true", help="only errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        module = _module(name)
        p = sub.add_parser(
            name,
            help=module.HELP,
            description=getattr(module, "DESCRIPTION", None) or module.HELP,
            argument_default=argparse.SUPPRESS,
        )
        if name == command:
            module.add_arguments(p)
        p.set_defaults(run=module.run)
    return parser


def _configure_logging(verbose: int, quiet: bool) -> None:
    level = logging.ERROR if quiet else logging.DEBUG if verbose > 1 else logging.INFO
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``samedge`` console script."""
    argv = list(sys.argv[1:] if argv is None else argv)
    # The command is the first word that names one (the top-level flags take no value).
    command = next((word for word in argv if word in COMMANDS), None)
    try:
        parser = _build_parser(command)
    except SamedgeError as e:  # e.g. the command's extra is not installed
        print(f"samedge {command}: error: {e}", file=sys.stderr)
        return EXIT_ERROR
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return EXIT_USAGE
    args.argv = argv
    _configure_logging(args.verbose, args.quiet)
    try:
        code: int = args.run(args)
        return code
    except SamedgeError as e:
        if args.verbose:
            log.exception("failed")
        print(f"samedge {args.command}: error: {e}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print(f"samedge {args.command}: interrupted", file=sys.stderr)
        return 130
