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

# One list for every subcommand that opens a model (eval, run, serve, build).
_BACKEND_CHOICES = ["auto", "onnxruntime", "openvino", "tensorrt"]

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
    # select_backend logs its choice at INFO; info prints it itself, once.
    logging.getLogger("samedge.runtimes.select").setLevel(logging.WARNING)
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


def _cmd_build(args: argparse.Namespace) -> int:
    from samedge.calibration import (
        BuildConfig,
        GateConfig,
        GateError,
        Int8Method,
        Precision,
        build,
    )

    config = BuildConfig(
        precision=Precision(args.precision),
        calibration=args.calibration,
        frames=args.frames,
        heldout=args.heldout,
        seed=args.seed,
        method=Int8Method(args.method) if args.method else None,
        decoder_fp16=args.decoder_fp16,
        attention_int8=not args.no_attention_int8,
        gate=GateConfig(
            min_mean_iou=args.min_mean_iou,
            min_p5_iou=args.min_p5_iou,
            max_gt_miou_drop=args.max_gt_miou_drop,
        ),
        fallback=not args.no_fallback,
        max_fallback_layers=args.max_fallback_layers,
        eval_scenes=args.eval_scenes,
        speed_runs=args.speed_runs,
        backend=args.backend,
    )
    try:
        report = build(args.model, args.output, config, force=args.force)
    except GateError as e:
        fid = e.report.get("fidelity", {})
        print(
            f"samedge build: gate FAILED vs fp32: mask IoU mean {fid.get('mean_iou')}, "
            f"p5 {fid.get('p5_iou')}, worst {fid.get('worst_iou')}; embedding cosine "
            f"{fid.get('cosine_mean')}",
            file=sys.stderr,
        )
        raise
    print(report.summary())
    if args.json:
        print(json.dumps(report.to_dict(), indent=2))
    return 0


def _cmd_eval(args: argparse.Namespace) -> int:
    from samedge.evaluate import EvalConfig, evaluate

    config = EvalConfig(scenes=args.scenes, seed=args.seed, clicks=args.clicks)
    report = evaluate(args.model, backend=args.backend, config=config)
    print(report.summary())
    if args.json:
        print(json.dumps(report.to_dict(), indent=2))
    return 0


def _parse_floats(count: int, what: str) -> Callable[[str], tuple[float, ...]]:
    def parse(text: str) -> tuple[float, ...]:
        try:
            values = tuple(float(v) for v in text.split(","))
        except ValueError:
            values = ()
        if len(values) != count:
            raise argparse.ArgumentTypeError(f"got {text!r}, expected {what}")
        return values

    return parse


def _cmd_run(args: argparse.Namespace) -> int:
    from samedge.stream import DEFAULT_OUTPUT, RunConfig, run_demo

    config = RunConfig(
        source=args.source,
        model=args.model,
        backend=args.backend,
        precision=args.precision,
        device=args.device,
        frames=args.frames or None,
        objects=args.objects,
        points=tuple(args.point),
        boxes=tuple(args.box),
        output=None if args.no_video else (args.output or DEFAULT_OUTPUT),
        force=args.force,
        loop=args.loop,
        seed=args.seed,
    )
    report = run_demo(config)
    print(report.format())
    if args.json:
        print(json.dumps(report.to_dict(), indent=2))
    if report.interrupted:
        print("samedge run: interrupted", file=sys.stderr)
        return 130
    return 0


def _cmd_serve(args: argparse.Namespace) -> int:
    import os

    from samedge.serve import ServeConfig, serve

    token = args.token if args.token is not None else os.environ.get("SAMEDGE_TOKEN") or None
    config = ServeConfig(
        source=args.source,
        model=args.model,
        backend=args.backend,
        precision=args.precision,
        device=args.device,
        host=args.host,
        port=args.port,
        token=token,
        loop=args.loop,
        seed=args.seed,
        max_objects=args.max_objects,
        jpeg_quality=args.jpeg_quality,
    )
    signum = serve(config)
    print(f"samedge serve: stopped{' by signal ' + str(signum) if signum else ''}", file=sys.stderr)
    return 0


def _build_parser() -> argparse.ArgumentParser:
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

    p = sub.add_parser(
        "build",
        help="fp32 model directory -> fp16 / int8 model directory that passed an accuracy gate",
        description="Converts the encoder to FP16 (LayerNorm/Softmax/overflowing nodes kept "
        "FP32) or explicit INT8 Q/DQ calibrated on --calibration frames, measures it against "
        "FP32 on held-out frames, and writes DIR only if it passes the gate; a failing build "
        "exits non-zero and leaves DIR.failed-report.json.",
    )
    p.add_argument("model", help="fp32 model directory or built-in name (e.g. samedge_tiny)")
    p.add_argument("--precision", required=True, choices=["fp16", "int8", "auto"])
    p.add_argument("--output", "-o", type=Path, required=True, help="model directory to write")
    p.add_argument(
        "--calibration",
        default=None,
        metavar="SOURCE",
        help="'synthetic' (default), a folder of images, a video file or a camera index",
    )
    p.add_argument("--frames", type=int, default=32, help="calibration frames (default 32)")
    p.add_argument(
        "--heldout", type=int, default=8, help="held-out frames for the report (default 8)"
    )
    p.add_argument("--seed", type=int, default=None, help="seed of synthetic frames")
    p.add_argument(
        "--method",
        choices=["nncf", "onnxruntime"],
        default=None,
        help="int8 calibration engine (default nncf, chosen by measurement)",
    )
    p.add_argument("--decoder-fp16", action="store_true", help="convert the decoder to fp16 too")
    p.add_argument(
        "--no-attention-int8",
        action="store_true",
        help="int8: keep attention MatMuls in float (ViT-B/L/H calibration in < 32 GB)",
    )
    p.add_argument("--min-mean-iou", type=float, default=0.95, help="gate: mean mask IoU")
    p.add_argument("--min-p5-iou", type=float, default=0.85, help="gate: 5th-percentile IoU")
    p.add_argument(
        "--max-gt-miou-drop",
        type=float,
        default=None,
        help="samedge_tiny: also accept a build whose ground-truth mIoU is within this of fp32's",
    )
    p.add_argument(
        "--no-fallback", action="store_true", help="int8: no layer fallback when the gate fails"
    )
    p.add_argument(
        "--max-fallback-layers", type=int, default=32, help="int8: most layers kept in float"
    )
    p.add_argument(
        "--eval-scenes",
        type=int,
        default=100,
        help="samedge_tiny: ground-truth scenes in the report (0 skips)",
    )
    p.add_argument(
        "--speed-runs", type=int, default=5, help="timed encoder runs per backend (0 skips)"
    )
    p.add_argument(
        "--backend",
        default="auto",
        choices=_BACKEND_CHOICES,
        help="backend --precision auto picks for",
    )
    p.add_argument("--force", action="store_true", help="replace an existing output directory")
    p.add_argument("--json", action="store_true", help="also print the report as JSON")
    p.set_defaults(func=_cmd_build)

    p = sub.add_parser(
        "eval", help="mIoU on held-out procedural scenes: click, corrective clicks, box"
    )
    p.add_argument("model", help="model directory or built-in name (e.g. samedge_tiny)")
    p.add_argument("--backend", default="auto", choices=_BACKEND_CHOICES)
    p.add_argument("--scenes", type=int, default=200, help="held-out scenes (default 200)")
    p.add_argument("--seed", type=int, default=None, help="scene seed (default: the eval seed)")
    p.add_argument("--clicks", type=int, default=3, help="clicks incl. corrective (default 3)")
    p.add_argument("--json", action="store_true", help="also print the numbers as JSON")
    p.set_defaults(func=_cmd_eval)

    p = sub.add_parser(
        "run",
        help="track objects on a source (default: the built-in moving scene), write a video",
        description="With no arguments: samedge_tiny on the built-in moving scene; clicks "
        "--objects objects on the first frame, tracks them, writes out/run.mp4 and prints "
        "FPS and per-stage latency. Other sources need prompts: --point / --box.",
    )
    p.add_argument(
        "--source",
        default=None,
        help="'synthetic' (default), camera index (0), video file, image folder, "
        "rtsp:// or http(s):// URL, or a GStreamer pipeline (contains '!')",
    )
    p.add_argument("--model", default="samedge_tiny", help="model directory or built-in name")
    p.add_argument(
        "--backend",
        default="auto",
        choices=_BACKEND_CHOICES,
        help="default auto: the fastest installed for this hardware (see `samedge info`)",
    )
    p.add_argument(
        "--precision",
        default=None,
        choices=["fp32", "fp16", "int8"],
        help="fail unless the model directory holds this precision",
    )
    p.add_argument("--device", default=None, help="cpu, gpu, gpu:N, cuda:N, npu (default: best)")
    p.add_argument(
        "--frames", type=int, default=150, help="frames to process; 0 = until the source ends"
    )
    p.add_argument(
        "--objects", type=int, default=3, help="objects the demo clicks on the synthetic scene"
    )
    p.add_argument(
        "--point",
        action="append",
        default=[],
        metavar="X,Y",
        type=_parse_floats(2, "X,Y pixel coordinates"),
        help="track the object under this pixel (repeatable; one object each)",
    )
    p.add_argument(
        "--box",
        action="append",
        default=[],
        metavar="X0,Y0,X1,Y1",
        type=_parse_floats(4, "X0,Y0,X1,Y1 pixel coordinates"),
        help="track the object in this box (repeatable; one object each)",
    )
    out = p.add_mutually_exclusive_group()
    out.add_argument(
        "--output",
        "-o",
        type=Path,
        default=None,
        help="annotated video (.mp4, .avi) or a folder for PNG frames; default out/run.mp4, "
        "replaced on every run (an explicit --output needs --force to be replaced)",
    )
    out.add_argument("--no-video", action="store_true", help="write no video")
    p.add_argument("--force", action="store_true", help="replace an existing --output")
    p.add_argument("--loop", action="store_true", help="loop video files and image folders")
    p.add_argument("--seed", type=int, default=0, help="seed of the synthetic scene")
    p.add_argument("--json", action="store_true", help="also print the report as JSON")
    p.set_defaults(func=_cmd_run)

    p = sub.add_parser(
        "serve",
        help="HTTP/WebSocket server with a click-to-segment page (needs samedge[serve])",
        description="Serve live segmentation: a web page (click to segment, drag a box), a "
        "JSON prompt API, a WebSocket stream of per-frame masks, /health and /metrics. Binds "
        "127.0.0.1 unless --host says otherwise; with --token (or SAMEDGE_TOKEN) every "
        "endpoint but /health needs it (open the page as /?token=TOKEN).",
    )
    p.add_argument(
        "--source",
        default=None,
        help="'synthetic' (default), camera index (0), video file, image folder, "
        "rtsp:// or http(s):// URL, or a GStreamer pipeline (contains '!')",
    )
    p.add_argument("--model", default="samedge_tiny", help="model directory or built-in name")
    p.add_argument("--backend", default="auto", choices=_BACKEND_CHOICES)
    p.add_argument(
        "--precision", default=None, choices=["fp32", "fp16", "int8"], help="insist on one"
    )
    p.add_argument("--device", default=None, help="cpu, gpu, gpu:N, cuda:N, npu (default: best)")
    p.add_argument(
        "--host", default="127.0.0.1", help="interface to bind (default 127.0.0.1: this machine)"
    )
    p.add_argument("--port", type=int, default=8000, help="TCP port (default 8000; 0 = any free)")
    p.add_argument(
        "--token",
        default=None,
        help="require this token on every endpoint but /health (default: $SAMEDGE_TOKEN; "
        "prefer the variable: arguments are visible to other users in `ps`)",
    )
    p.add_argument("--loop", action="store_true", help="loop video files and image folders")
    p.add_argument("--seed", type=int, default=0, help="seed of the synthetic scene")
    p.add_argument(
        "--max-objects", type=int, default=16, help="most objects tracked at once (default 16)"
    )
    p.add_argument(
        "--jpeg-quality", type=int, default=80, help="quality of the streamed frames (1-100)"
    )
    p.set_defaults(func=_cmd_serve)
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
