"""``samedge serve``: the HTTP/WebSocket server with a click-to-segment page."""

from __future__ import annotations

import argparse
import os
import sys

from samedge.cli._common import add_model_flags, add_source_flags, default, given, session_fields

HELP = "HTTP/WebSocket server with a click-to-segment page (needs samedge[serve])"
DESCRIPTION = (
    "Serve live segmentation: a web page (click to segment, drag a box), a JSON prompt API, "
    "a WebSocket stream of per-frame masks, /health and /metrics. Binds 127.0.0.1 unless "
    "--host says otherwise; a --host beyond this machine needs --token (or --insecure). With "
    "--token (or SAMEDGE_TOKEN) every endpoint, /health included, needs it (open the page "
    "as /?token=TOKEN)."
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    from samedge.serve.config import ServeConfig

    add_source_flags(p, ServeConfig)
    add_model_flags(p, ServeConfig)
    p.add_argument(
        "--host",
        help=f"interface to bind (default {default(ServeConfig, 'host')}: this machine only)",
    )
    p.add_argument(
        "--port",
        type=int,
        help=f"TCP port (default {default(ServeConfig, 'port')}; 0 = any free)",
    )
    p.add_argument(
        "--token",
        help="require this token on every endpoint, /health included (default: $SAMEDGE_TOKEN; "
        "prefer the variable: arguments are visible to other users in `ps`)",
    )
    p.add_argument(
        "--insecure",
        action="store_true",
        help="allow a --host beyond this machine without a token (anyone who can reach it "
        "can watch and prompt); without it such a --host needs --token",
    )
    p.add_argument(
        "--allowed-host",
        action="append",
        dest="allowed_hosts",
        metavar="NAME",
        help="a Host header name to accept (repeatable), e.g. the DNS name or reverse proxy "
        "the server is reached through (default: this machine's names and the bound address)",
    )
    p.add_argument(
        "--max-objects",
        type=int,
        help=f"most objects tracked at once (default {default(ServeConfig, 'max_objects')})",
    )
    p.add_argument(
        "--jpeg-quality",
        type=int,
        help="quality of the streamed frames, 1-100 "
        f"(default {default(ServeConfig, 'jpeg_quality')})",
    )


def run(args: argparse.Namespace) -> int:
    from samedge.serve import ServeConfig, serve

    fields = {
        **session_fields(args),
        **given(args, "host", "port", "insecure", "max_objects", "jpeg_quality"),
    }
    # An explicit --token, even an empty one (refused by ServeConfig), wins over the variable.
    token = args.token if hasattr(args, "token") else os.environ.get("SAMEDGE_TOKEN") or None
    if token is not None:
        fields["token"] = token
    if hasattr(args, "allowed_hosts"):
        fields["allowed_hosts"] = tuple(args.allowed_hosts)
    signum = serve(ServeConfig(**fields))
    print(f"samedge serve: stopped{' by signal ' + str(signum) if signum else ''}", file=sys.stderr)
    return 0
