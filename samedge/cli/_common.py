"""What the commands share: flag groups, reading defaults off config classes, exits.

Flags are declared with ``argparse.SUPPRESS`` as their default, so a flag the
user did not give is absent from the namespace; :func:`given` collects the
ones that are present and the config class supplies every other value. The
help texts read the defaults off the config classes (:func:`default`), so no
default is written twice.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import shlex
import signal
import threading
from collections.abc import Callable, Iterator
from typing import Any

EXIT_ERROR = 1
EXIT_USAGE = 2

# One list for every subcommand that opens a model (eval, run, serve, build).
BACKEND_CHOICES = ("auto", "onnxruntime", "openvino", "tensorrt")
OVERLAP = {"auto": None, "on": True, "off": False}
SOURCE_HELP = (
    "'synthetic' (default), camera index (0), video file, image folder, rtsp:// or "
    "http(s):// URL, or a GStreamer pipeline (contains '!'); for a Jetson CSI camera: "
    "\"$(python3 -c 'import samedge.stream as s; print(s.jetson_csi_pipeline(0, 1280, 720, 30))')\""
)


def default(cls: type, name: str) -> Any:
    """The default of field ``name`` of dataclass ``cls`` (its factory called)."""
    for f in dataclasses.fields(cls):
        if f.name == name:
            if f.default is not dataclasses.MISSING:
                return f.default
            if f.default_factory is not dataclasses.MISSING:
                return f.default_factory()
            raise KeyError(f"{cls.__name__}.{name} has no default")
    raise KeyError(f"{cls.__name__} has no field {name!r}")


def given(args: argparse.Namespace, *names: str) -> dict[str, Any]:
    """The flags among ``names`` that were given on the command line, by name."""
    return {name: getattr(args, name) for name in names if hasattr(args, name)}


def command_line(args: argparse.Namespace) -> str:
    """The command as it was typed (recorded with results so they can be reproduced)."""
    return shlex.join(["samedge", *args.argv])


def parse_floats(count: int, what: str) -> Callable[[str], tuple[float, ...]]:
    """An argparse ``type`` for ``count`` comma-separated numbers."""

    def parse(text: str) -> tuple[float, ...]:
        try:
            values = tuple(float(v) for v in text.split(","))
        except ValueError:
            values = ()
        if len(values) != count:
            raise argparse.ArgumentTypeError(f"got {text!r}, expected {what}")
        return values

    return parse


def split_csv(text: str, what: str, convert: Callable[[str], Any] = str) -> tuple[Any, ...]:
    """A non-empty comma-separated list (``--objects 1,4,16``) as a tuple.

    Raises:
        InputError: ``text`` holds no item, or an item ``convert`` refuses.
    """
    from samedge.errors import InputError

    try:
        values = tuple(convert(v.strip()) for v in text.split(",") if v.strip())
    except ValueError:
        values = ()
    if not values:
        raise InputError(f"{what}: got {text!r}, expected a comma-separated list such as 1,4,16")
    return values


def add_model_flags(p: argparse.ArgumentParser, cls: type) -> None:
    """``--model --backend --precision --device`` for a config with those fields."""
    builtin = default(cls, "model")
    if builtin is None:  # RunConfig: the built-in model for the tracker
        from samedge.stream.demo import BUILTIN_MEMORY_MODEL, BUILTIN_REPROMPT_MODEL

        builtin = f"{BUILTIN_MEMORY_MODEL}; {BUILTIN_REPROMPT_MODEL} with --tracker reprompt"
    p.add_argument("--model", help=f"model directory or built-in name (default {builtin})")
    p.add_argument(
        "--backend",
        choices=BACKEND_CHOICES,
        help="default auto: the fastest installed for this hardware (see `samedge info`)",
    )
    p.add_argument(
        "--precision",
        choices=("fp32", "fp16", "int8"),
        help="fail unless the model directory holds this precision",
    )
    p.add_argument("--device", help="cpu, gpu, gpu:N, cuda:N, npu (default: the best)")


def add_source_flags(p: argparse.ArgumentParser, cls: type) -> None:
    """Source, looping, synthetic seed, reconnection and overlap flags of a session."""
    from samedge.stream.reconnect import ReconnectPolicy

    p.add_argument("--source", help=SOURCE_HELP)
    p.add_argument(
        "--loop",
        action="store_true",
        help="loop video files and image folders (default: end with them)",
    )
    p.add_argument(
        "--seed", type=int, help=f"seed of the synthetic scene (default {default(cls, 'seed')})"
    )
    p.add_argument(
        "--reconnect-delay",
        type=float,
        metavar="S",
        dest="initial_delay",
        help="a camera/stream that drops out is reopened after S seconds, doubling "
        f"(default {default(ReconnectPolicy, 'initial_delay')})",
    )
    p.add_argument(
        "--reconnect-max-delay",
        type=float,
        metavar="S",
        dest="max_delay",
        help="longest wait between reopen attempts "
        f"(default {default(ReconnectPolicy, 'max_delay')})",
    )
    p.add_argument(
        "--max-reconnect",
        type=int,
        metavar="N",
        dest="max_reconnect",
        help="give up after N failed attempts in a row (default: never; 0: do not reconnect)",
    )
    p.add_argument(
        "--tracker",
        choices=("auto", "memory", "reprompt"),
        dest="tracking",
        help="how objects are followed (default auto: SAM 2's memory for SAM 2.1 / EdgeTAM "
        "model directories, re-prompting from the previous mask for the others)",
    )
    p.add_argument(
        "--overlap",
        choices=tuple(OVERLAP),
        help="encode frame k+1 on a worker thread while frame k is decoded (default auto: "
        "only when the encoder runs off the CPU, e.g. TensorRT or an OpenVINO GPU/NPU; on a "
        "CPU it costs latency for little or no FPS)",
    )


def session_fields(args: argparse.Namespace) -> dict[str, Any]:
    """The session's fields given by :func:`add_model_flags` and :func:`add_source_flags`."""
    from samedge.stream.reconnect import ReconnectPolicy

    fields = given(args, "model", "backend", "precision", "device", "source", "loop", "seed")
    policy = given(args, "initial_delay", "max_delay", "max_reconnect")
    if policy:
        fields["reconnect"] = ReconnectPolicy(**policy)
    if hasattr(args, "overlap"):
        fields["overlap"] = OVERLAP[args.overlap]
    if hasattr(args, "tracking"):
        from samedge.session import Tracking

        fields["tracking"] = Tracking(args.tracking)
    return fields


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where Ctrl-C's KeyboardInterrupt would be."""


@contextlib.contextmanager
def sigterm_unwinds() -> Iterator[None]:
    """Turn SIGTERM into :class:`Terminated` for the block, then restore the previous handler.

    A build or an export stages its output in hidden folders beside DIR and
    removes them while an exception unwinds; SIGTERM's default action ends the
    process without unwinding and leaves them behind. Only the first SIGTERM
    raises: a second one must not cut the cleanup short.
    """
    if threading.current_thread() is not threading.main_thread():
        # Python sets signal handlers only from the main thread (main() called
        # from a worker thread, e.g. by an embedding application).
        yield
        return
    fired = False

    def raise_once(signum: int, frame: object) -> None:
        nonlocal fired
        if not fired:
            fired = True
            raise Terminated

    previous = signal.signal(signal.SIGTERM, raise_once)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
