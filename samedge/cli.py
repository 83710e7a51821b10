"""The ``samedge`` command line.

The CLI only turns flags into a config and calls the library; heavy imports
(torch, backend SDKs) happen after parsing. Errors are one line and a non-zero
exit; ``-v`` adds the traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import signal
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from samedge._version import __version__
from samedge.errors import SamedgeError
from samedge.models import list_models

if TYPE_CHECKING:
    from samedge.stream.reconnect import ReconnectPolicy

log = logging.getLogger("samedge")

# One list for every subcommand that opens a model (eval, run, serve, build).
_BACKEND_CHOICES = ["auto", "onnxruntime", "openvino", "tensorrt"]

EXIT_ERROR = 1
EXIT_USAGE = 2


def _cmd_info(args: argparse.Namespace) -> int:
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


class _Terminated(KeyboardInterrupt):
    """SIGTERM, raised where Ctrl-C's KeyboardInterrupt would be."""


@contextlib.contextmanager
def _sigterm_unwinds() -> Iterator[None]:
    """Turn SIGTERM into :class:`_Terminated` for the block, then restore the previous handler.

    A build stages its output in hidden folders beside DIR and removes them
    while an exception unwinds; SIGTERM's default action ends the process
    without unwinding and leaves them behind. Only the first SIGTERM raises: a
    second one must not cut the cleanup short.
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
            raise _Terminated

    previous = signal.signal(signal.SIGTERM, raise_once)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


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
        with _sigterm_unwinds():
            report = build(args.model, args.output, config, force=args.force)
    except _Terminated:
        print("samedge build: terminated by SIGTERM; partial output removed", file=sys.stderr)
        return 128 + signal.SIGTERM
    except GateError as e:
        fid = e.report.get("fidelity", {})
        gate = e.report.get("gate", {})
        gt = e.report.get("ground_truth") or {}
        measured = (
            f"ground-truth mIoU fp32 {gt.get('fp32')}, build {gt.get('build')}; "
            if gate.get("applied") == "ground_truth"
            else ""
        )
        print(
            f"samedge build: gate ({gate.get('applied', 'fp32')}) FAILED: {measured}"
            f"vs fp32 mask IoU mean {fid.get('mean_iou')}, p5 {fid.get('p5_iou')}, "
            f"worst {fid.get('worst_iou')}; embedding cosine {fid.get('cosine_mean')}",
            file=sys.stderr,
        )
        raise
    print(report.summary())
    if args.json:
        print(json.dumps(report.to_dict(), indent=2))
    return 0


def _cmd_eval(args: argparse.Namespace) -> int:
    from samedge.errors import InputError
    from samedge.evaluate import (
        CocoConfig,
        EvalConfig,
        Protocol,
        evaluate,
        evaluate_coco,
        evaluate_fidelity,
        save_eval,
    )

    if args.output is not None and args.output.is_dir():
        # Refused before the evaluation, which can take minutes.
        raise InputError(f"--output: {args.output} is a directory, expected a JSON file path")
    coco = args.coco_images is not None or args.coco_annotations is not None
    fidelity = args.fidelity or args.reference is not None
    if coco and fidelity:
        raise InputError(
            "--coco-* and --reference/--fidelity measure different things; run them as two commands"
        )
    if coco and (args.coco_images is None or args.coco_annotations is None):
        raise InputError("COCO needs both --coco-images DIR and --coco-annotations FILE")
    mode = "COCO" if coco else "fidelity" if fidelity else "procedural scenes"
    # Flags given for another mode are refused rather than ignored.
    given = {
        "--scenes": (args.scenes, "procedural scenes"),
        "--max-images": (args.max_images, "COCO"),
        "--categories": (args.categories, "COCO"),
        "--min-area": (args.min_area, "COCO"),
        "--include-crowd": (args.include_crowd or None, "COCO"),
        "--frames": (args.frames, "fidelity"),
        "--source": (args.source, "fidelity"),
        "--clicks": (args.clicks, "procedural scenes or COCO"),
        "--protocol": (args.protocol, "procedural scenes or COCO"),
        "--backend": (
            None if args.backend == "auto" else args.backend,
            "procedural scenes or COCO",
        ),
        "--seed": (args.seed, "procedural scenes or fidelity"),
    }
    wrong = [
        f"{flag} (for {modes})"
        for flag, (value, modes) in given.items()
        if value is not None and mode not in modes
    ]
    if wrong:
        raise InputError(f"{', '.join(wrong)}: not used with {mode}")
    clicks = 3 if args.clicks is None else args.clicks
    protocol = Protocol(args.protocol or "samedge")
    if fidelity:
        fid = evaluate_fidelity(
            args.model,
            args.reference,
            frames=8 if args.frames is None else args.frames,
            source=args.source or "synthetic",
            seed=args.seed,
        )
        summary, data = fid.summary(), fid.to_dict()
    elif coco:
        categories = tuple(
            int(c) if c.strip().isdigit() else c.strip()
            for c in (args.categories or "").split(",")
            if c.strip()
        )
        config = CocoConfig(
            max_images=args.max_images,
            categories=categories,
            include_crowd=args.include_crowd,
            min_area=args.min_area or 0.0,
            clicks=clicks,
            protocol=protocol,
        )
        report = evaluate_coco(
            args.model,
            args.coco_images,
            args.coco_annotations,
            backend=args.backend,
            config=config,
        )
        summary, data = report.summary(), report.to_dict()
    else:
        eval_config = EvalConfig(
            scenes=200 if args.scenes is None else args.scenes,
            seed=args.seed,
            clicks=clicks,
            protocol=protocol,
        )
        report = evaluate(args.model, backend=args.backend, config=eval_config)
        summary, data = report.summary(), report.to_dict()
    print(summary)
    if args.json:
        print(json.dumps(data, indent=2))
    if args.output is not None:
        path = save_eval(data, args.output, command=_eval_command(args))
        print(f"wrote {path}")
    return 0


def _eval_command(args: argparse.Namespace) -> str:
    """``samedge eval`` as it reproduces this run: the model and every flag given."""
    import shlex

    words = ["samedge", "eval", str(args.model)]
    words += [] if args.backend == "auto" else ["--backend", args.backend]
    for flag, value in (
        ("--scenes", args.scenes),
        ("--seed", args.seed),
        ("--clicks", args.clicks),
        ("--protocol", args.protocol),
        ("--coco-images", args.coco_images),
        ("--coco-annotations", args.coco_annotations),
        ("--max-images", args.max_images),
        ("--categories", args.categories),
        ("--min-area", args.min_area),
        ("--reference", args.reference),
        ("--frames", args.frames),
        ("--source", args.source),
        ("--output", args.output),
    ):
        words += [] if value is None else [flag, str(value)]
    words += ["--include-crowd"] if args.include_crowd else []
    words += ["--fidelity"] if args.fidelity else []
    return shlex.join(words)


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
        reconnect=_reconnect_policy(args),
        overlap=_OVERLAP[args.overlap],
    )
    report = run_demo(config)
    print(report.format())
    if args.json:
        print(json.dumps(report.to_dict(), indent=2))
    if report.interrupted:
        print("samedge run: interrupted", file=sys.stderr)
        return 130
    return 0


def _reconnect_policy(args: argparse.Namespace) -> ReconnectPolicy:
    from samedge.stream.reconnect import ReconnectPolicy

    return ReconnectPolicy(
        initial_delay=args.reconnect_delay,
        max_delay=args.reconnect_max_delay,
        max_reconnect=args.max_reconnect,
    )


_OVERLAP = {"auto": None, "on": True, "off": False}


def _add_overlap_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--overlap",
        choices=("auto", "on", "off"),
        default="auto",
        help="encode frame k+1 on a worker thread while frame k is decoded (auto: only "
        "when the encoder runs off the CPU, e.g. TensorRT or an OpenVINO GPU/NPU; on a "
        "CPU it costs latency for little or no FPS)",
    )


def _add_reconnect_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--reconnect-delay",
        type=float,
        default=0.5,
        metavar="S",
        help="a camera/stream that drops out is reopened after S seconds, doubling (default 0.5)",
    )
    p.add_argument(
        "--reconnect-max-delay",
        type=float,
        default=30.0,
        metavar="S",
        help="longest wait between reopen attempts (default 30)",
    )
    p.add_argument(
        "--max-reconnect",
        type=int,
        default=None,
        metavar="N",
        help="give up after N failed attempts in a row (default: never; 0: do not reconnect)",
    )


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
        reconnect=_reconnect_policy(args),
        overlap=_OVERLAP[args.overlap],
    )
    signum = serve(config)
    print(f"samedge serve: stopped{' by signal ' + str(signum) if signum else ''}", file=sys.stderr)
    return 0


def _csv(text: str, what: str, convert: Callable[[str], object] = str) -> tuple[Any, ...]:
    from samedge.errors import InputError

    try:
        values = tuple(convert(v.strip()) for v in text.split(",") if v.strip())
    except ValueError:
        values = ()
    if not values:
        raise InputError(f"{what}: got {text!r}, expected a comma-separated list such as 1,4,16")
    return values


def _cmd_bench(args: argparse.Namespace) -> int:
    import shlex

    from samedge.bench import (
        BenchConfig,
        machine_name,
        rerender_markdown,
        run_bench,
        update_readme,
    )
    from samedge.errors import InputError

    if not args.models and not args.update_readme:
        raise InputError(
            "got no model; pass model directories or names (samedge_tiny, mobile_sam, "
            "sam_vit_b), or only --update-readme to regenerate the README's table"
        )
    machine = args.machine or machine_name()
    output = args.output or Path("benchmarks") / "results" / machine
    if output.exists() and not output.is_dir():
        raise InputError(
            f"--output: {output} is a file, expected a directory for the results; "
            "pass a directory path"
        )
    if args.models:
        config = BenchConfig(
            backends=tuple(args.backend) if args.backend else None,
            precisions=tuple(args.precision) if args.precision else None,
            objects=_csv(args.objects, "--objects", int),
            points=args.points,
            runs=args.runs,
            warmup=args.warmup,
            threads=args.threads,
            isa_cap=args.isa_cap,
            peers=args.peers,
            parts=_csv(args.parts, "--parts") if args.parts else BenchConfig.parts,
            peak_size=args.peak_size,
            accuracy_frames=args.accuracy_frames,
            work_dir=args.work_dir,
            job_timeout_s=args.timeout,
            builds=_csv(args.builds, "--builds") if args.builds is not None else (),
            build_args=tuple(args.build_arg),
        )
        # The command as it reproduces this run: every setting spelled out.
        words = ["samedge", "bench", *map(str, args.models)]
        words += ["--objects", ",".join(map(str, config.objects)), "--points", str(config.points)]
        words += ["--runs", str(config.runs), "--warmup", str(config.warmup)]
        words += ["--threads", str(args.threads)] if args.threads else []
        words += ["--backend", *config.backends] if config.backends else []
        words += ["--precision", *config.precisions] if config.precisions else []
        words += ["--parts", ",".join(config.parts)] if args.parts else []
        words += ["--peak-size", str(config.peak_size)]
        words += ["--accuracy-frames", str(config.accuracy_frames)]
        words += ["--isa-cap"] if config.isa_cap else []
        words += ["--peers"] if config.peers else []
        words += ["--builds", ",".join(config.builds)] if config.builds else []
        # `--build-arg=ARG`: a separate ARG that starts with "-" would read as a flag.
        words += [f"--build-arg={arg}" for arg in config.build_args]
        words += ["--machine", machine]
        for note in args.note:
            words += ["--note", note]
        report = run_bench(
            args.models, config, command=shlex.join(words), machine=machine, notes=args.note
        )
        name = args.name or "bench_" + "_".join(dict.fromkeys(m["name"] for m in report.models))
        paths = report.save(output, name)
        for row in report.rows("encoder"):
            cap = f" [{row.isa}]" if row.isa else ""
            peak = f", {100 * row.fraction_of_peak:.0f}% of peak" if row.fraction_of_peak else ""
            print(
                f"{row.model} ({row.model_precision}) encoder {row.backend} {row.precision}{cap}: "
                f"{row.timing.median_ms:.2f} ms median{peak}"
            )
        for ratio in report.ratios:
            print(
                f"{ratio['model']} {ratio['part']}: {ratio['peer_suite']} / samedge "
                f"{ratio['against']} ({ratio['samedge']}) = {ratio['ratio']:.2f}x"
            )
        for failure in report.failures:
            print(f"FAILED {failure['what']}: {failure['error']}", file=sys.stderr)
        print("wrote " + ", ".join(str(p) for p in paths.values()))
        if args.json:
            print(json.dumps(report.to_json(), indent=2))
    if args.update_readme:
        # The markdown files are views of the JSON too: a new section reaches
        # the committed results without measuring again.
        for path in rerender_markdown(output.parent):
            print(f"{path}: re-rendered from {path.with_suffix('.json').name}")
        changed = update_readme(args.readme, output.parent)
        print(f"{args.readme}: {'updated' if changed else 'already up to date'}")
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
        "FP32 on held-out frames (samedge_tiny: also against ground truth, which is then the "
        "default gate), and writes DIR only if it passes the gate; a failing build "
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
        help="int8: keep attention MatMuls in float (ViT-B int8 fits in 12 GB without it)",
    )
    p.add_argument(
        "--min-mean-iou",
        type=float,
        default=None,
        help="fp32 gate: mean mask IoU vs fp32 (default 0.95); setting it or --min-p5-iou "
        "makes the fp32 gate decide for samedge_tiny too",
    )
    p.add_argument(
        "--min-p5-iou",
        type=float,
        default=None,
        help="fp32 gate: 5th-percentile mask IoU vs fp32 (default 0.85)",
    )
    p.add_argument(
        "--max-gt-miou-drop",
        type=float,
        default=None,
        help="ground-truth gate (the default gate for samedge_tiny, whose procedural scenes "
        "have ground truth): largest drop of mIoU vs ground truth from fp32's, per prompt "
        "type (default 0.01); with --min-mean-iou/--min-p5-iou it also accepts a build "
        "the fp32 gate refused",
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
        "eval",
        help="mIoU vs ground truth (procedural scenes or a COCO folder: box, click, "
        "corrective clicks), or a build's fidelity vs fp32",
        description="Without dataset flags: mIoU on held-out procedural scenes. With "
        "--coco-images/--coco-annotations: mIoU on a COCO-format set by COCO object size "
        "(needs samedge[eval]). With --reference FP32_DIR or --fidelity: an fp16/int8 "
        "build against its fp32 pipeline (embedding cosine/SQNR, mask IoU mean/p5/worst).",
    )
    p.add_argument("model", help="model directory or built-in name (e.g. samedge_tiny)")
    p.add_argument("--backend", default="auto", choices=_BACKEND_CHOICES)
    p.add_argument(
        "--scenes", type=int, default=None, help="held-out procedural scenes (default 200)"
    )
    p.add_argument(
        "--seed", type=int, default=None, help="seed of scenes / synthetic frames (default 2026)"
    )
    p.add_argument("--clicks", type=int, default=None, help="clicks incl. corrective (default 3)")
    p.add_argument(
        "--protocol",
        default=None,
        choices=["samedge", "efficientvit-sam"],
        help="outputs scored after box and corrective clicks: samedge (default; single-mask, "
        "previous logits fed back) or efficientvit-sam (best of 3 by predicted IoU)",
    )
    g = p.add_argument_group("COCO-format dataset")
    g.add_argument(
        "--coco-images",
        type=Path,
        default=None,
        metavar="DIR",
        help="folder the JSON's file_name entries are relative to (coco/val2017)",
    )
    g.add_argument(
        "--coco-annotations",
        type=Path,
        default=None,
        metavar="FILE",
        help="instances JSON (coco/annotations/instances_val2017.json)",
    )
    g.add_argument("--max-images", type=int, default=None, help="first N images only")
    g.add_argument(
        "--categories",
        default=None,
        metavar="A,B",
        help="category names or ids to keep (comma-separated)",
    )
    g.add_argument(
        "--include-crowd", action="store_true", help="keep iscrowd annotations (left out)"
    )
    g.add_argument("--min-area", type=float, default=None, help="leave out smaller annotations")
    g = p.add_argument_group("fidelity of an fp16/int8 build")
    g.add_argument(
        "--reference",
        default=None,
        metavar="FP32_DIR",
        help="fp32 model directory to compare the build with",
    )
    g.add_argument(
        "--fidelity",
        action="store_true",
        help="compare with the fp32 directory recorded in the build's samedge.json",
    )
    g.add_argument("--frames", type=int, default=None, help="frames measured (default 8)")
    g.add_argument(
        "--source",
        default=None,
        help="'synthetic' (default), a folder of images, a video file or a camera",
    )
    p.add_argument("--json", action="store_true", help="also print the numbers as JSON")
    p.add_argument(
        "--output",
        "-o",
        type=Path,
        default=None,
        metavar="FILE",
        help="also write the numbers (--json's schema, plus the command, samedge version and "
        "time) to FILE, atomically; benchmarks/results/<machine>/eval_samedge_tiny.json feeds "
        "README's samedge-tiny table (`samedge bench --update-readme`)",
    )
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
        "rtsp:// or http(s):// URL, or a GStreamer pipeline (contains '!'); for a Jetson "
        "CSI camera: \"$(python3 -c 'import samedge.stream as s; "
        "print(s.jetson_csi_pipeline(0, 1280, 720, 30))')\"",
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
    p.add_argument(
        "--loop",
        action="store_true",
        help="loop video files and image folders (default: end cleanly at their end)",
    )
    _add_reconnect_flags(p)
    _add_overlap_flag(p)
    p.add_argument("--seed", type=int, default=0, help="seed of the synthetic scene")
    p.add_argument("--json", action="store_true", help="also print the report as JSON")
    p.set_defaults(func=_cmd_run)

    p = sub.add_parser(
        "serve",
        help="HTTP/WebSocket server with a click-to-segment page (needs samedge[serve])",
        description="Serve live segmentation: a web page (click to segment, drag a box), a "
        "JSON prompt API, a WebSocket stream of per-frame masks, /health and /metrics. Binds "
        "127.0.0.1 unless --host says otherwise; with --token (or SAMEDGE_TOKEN) every "
        "endpoint, /health included, needs it (open the page as /?token=TOKEN).",
    )
    p.add_argument(
        "--source",
        default=None,
        help="'synthetic' (default), camera index (0), video file, image folder, "
        "rtsp:// or http(s):// URL, or a GStreamer pipeline (contains '!'); for a Jetson "
        "CSI camera: \"$(python3 -c 'import samedge.stream as s; "
        "print(s.jetson_csi_pipeline(0, 1280, 720, 30))')\"",
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
        help="require this token on every endpoint, /health included (default: $SAMEDGE_TOKEN; "
        "prefer the variable: arguments are visible to other users in `ps`)",
    )
    p.add_argument(
        "--loop",
        action="store_true",
        help="loop video files and image folders (default: the stream ends with them)",
    )
    _add_reconnect_flags(p)
    _add_overlap_flag(p)
    p.add_argument("--seed", type=int, default=0, help="seed of the synthetic scene")
    p.add_argument(
        "--max-objects", type=int, default=16, help="most objects tracked at once (default 16)"
    )
    p.add_argument(
        "--jpeg-quality", type=int, default=80, help="quality of the streamed frames (1-100)"
    )
    p.set_defaults(func=_cmd_serve)

    p = sub.add_parser(
        "bench",
        help="time every backend x precision here, beside the machine's peak GEMM rate",
        description="Times encoder, decoder (B objects per call) and the full predictor of "
        "each model on every backend and precision this machine has, each configuration in "
        "its own process with a cold engine cache; measures the peak GEMM rate through the "
        "same backends and the models' FLOPs; writes JSON, markdown and a PNG plot into "
        "benchmarks/results/<machine>/. Registry names (mobile_sam, sam_vit_b) are exported "
        "with random weights first (needs the export extra).",
    )
    p.add_argument(
        "models",
        nargs="*",
        metavar="MODEL_OR_DIR",
        help="model directories (fp32, or fp16/int8 built by `samedge build`) or names",
    )
    p.add_argument("--backend", nargs="+", choices=["onnxruntime", "openvino", "tensorrt"])
    p.add_argument(
        "--precision",
        nargs="+",
        choices=["fp32", "bf16", "fp16", "int8"],
        help="keep configurations computing in these (default: all)",
    )
    p.add_argument("--objects", default="1,4,16", help="decoder batch sizes (default 1,4,16)")
    p.add_argument("--points", type=int, default=1, help="clicks per object (default 1)")
    p.add_argument("--runs", type=int, default=20, help="timed runs per row (default 20)")
    p.add_argument("--warmup", type=int, default=3, help="untimed runs first (default 3)")
    p.add_argument(
        "--threads", type=int, default=None, help="CPU threads (default: all this process may use)"
    )
    p.add_argument("--parts", default=None, help="encoder,decoder,predictor (default: all three)")
    p.add_argument(
        "--isa-cap",
        action="store_true",
        help="also run OpenVINO f32 under ONEDNN_MAX_CPU_ISA=AVX512_CORE_VNNI (no bf16/AMX)",
    )
    p.add_argument(
        "--peers",
        action="store_true",
        help="also time PyTorch, samexporter and the OpenVINO notebook recipe; print ratios",
    )
    p.add_argument(
        "--peak-size", type=int, default=2048, help="peak GEMM side (default 2048; 0 skips)"
    )
    p.add_argument(
        "--output", "-o", type=Path, default=None, help="default benchmarks/results/<machine>"
    )
    p.add_argument(
        "--accuracy-frames",
        type=int,
        default=2,
        help="held-out frames for each configuration's mask IoU vs fp32 (default 2; 0: only "
        "the build's report.json)",
    )
    p.add_argument("--machine", default=None, help="machine name (default: from the hardware)")
    p.add_argument("--name", default=None, help="file name stem (default bench_<models>)")
    p.add_argument(
        "--note", action="append", default=[], help="a line recorded with the results (repeatable)"
    )
    p.add_argument(
        "--work-dir",
        type=Path,
        default=None,
        help="random-weight exports and --builds builds (default <samedge cache>/bench; reused)",
    )
    p.add_argument(
        "--builds",
        default=None,
        metavar="fp16,int8",
        help="also build each fp32 model at these precisions with `samedge build` (in a "
        "process of its own, --speed-runs 0) into <work-dir>/<model>-<seed or encoder hash>/"
        "<precision>, reusing a "
        "finished build made the same way, and time the builds beside it; a failed build is "
        "listed with the failures",
    )
    p.add_argument(
        "--build-arg",
        action="append",
        default=[],
        metavar="ARG",
        help="one extra `samedge build` argument for every --builds build (repeatable; write "
        "--build-arg=--no-attention-int8, --build-arg=--frames=16)",
    )
    p.add_argument(
        "--timeout", type=float, default=1800.0, help="seconds before a job or build is killed"
    )
    p.add_argument(
        "--update-readme",
        action="store_true",
        help="regenerate README.md's performance block (and each bench*.md and .png) from "
        "benchmarks/results/*/bench*.json and its samedge-tiny accuracy table from "
        "benchmarks/results/*/eval_samedge_tiny.json",
    )
    p.add_argument("--readme", type=Path, default=Path("README.md"), help=argparse.SUPPRESS)
    p.add_argument("--json", action="store_true", help="also print the report as JSON")
    p.set_defaults(func=_cmd_bench)
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
