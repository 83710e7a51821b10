"""``samedge bench``: time every backend x precision here, beside the machine's peak GEMM rate."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from samedge.cli._common import command_line, default, given, split_csv

HELP = "time every backend x precision here, beside the machine's peak GEMM rate"
DESCRIPTION = (
    "Times encoder, decoder (B objects per call) and the full predictor of each model on "
    "every backend and precision this machine has, each configuration in its own process "
    "with a cold engine cache; measures the peak GEMM rate through the same backends and the "
    "models' FLOPs; writes JSON, markdown and a PNG plot into samedge-bench/<machine>/ "
    "(or --output). "
    "Registry names (mobile_sam, sam_vit_b) are exported with random weights first (needs "
    "the export extra). "
    "With --video, times memory tracking of SAM 2-family models (sam2.1_*, edgetam) instead: "
    "per-frame latency with 1, 3 and 8 objects (--objects) on the same procedural clip, split "
    "by graph, and the memory each object holds; writes bench_video_<models>.json and .md."
)

# Flags whose dest is a VideoBenchConfig field of the same name (--video).
_VIDEO_CONFIG = (
    "backends",
    "precisions",
    "objects",
    "frames",
    "warmup",
    "threads",
    "scene_seed",
    "work_dir",
    "job_timeout_s",
)
# Flags that only the --video mode reads, and those it does not.
_VIDEO_ONLY = ("frames", "scene_seed")
_IMAGE_ONLY = (
    "points", "runs", "parts", "isa_cap", "peak_size", "accuracy_frames", "builds", "build_args",
)  # fmt: skip

# Flags whose dest is a BenchConfig field of the same name.
_CONFIG = (
    "backends",
    "precisions",
    "objects",
    "points",
    "runs",
    "warmup",
    "threads",
    "isa_cap",
    "parts",
    "peak_size",
    "accuracy_frames",
    "work_dir",
    "job_timeout_s",
    "builds",
    "build_args",
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    from samedge.bench.run import BenchConfig
    from samedge.bench.video import VideoBenchConfig

    def d(name: str, cls: type = BenchConfig) -> str:
        value = default(cls, name)
        return ",".join(map(str, value)) if isinstance(value, tuple) else str(value)

    p.add_argument(
        "models",
        nargs="*",
        default=[],
        metavar="MODEL_OR_DIR",
        help="model directories (fp32, or fp16/int8 built by `samedge build`) or names",
    )
    p.add_argument(
        "--backend", nargs="+", dest="backends", choices=["onnxruntime", "openvino", "tensorrt"]
    )
    p.add_argument(
        "--precision",
        nargs="+",
        dest="precisions",
        choices=["fp32", "bf16", "fp16", "int8"],
        help="keep configurations computing in these (default: all)",
    )
    p.add_argument(
        "--objects",
        help=f"decoder batch sizes (default {d('objects')}); with --video, objects tracked, "
        f"one row each (default {d('objects', VideoBenchConfig)})",
    )
    p.add_argument("--points", type=int, help=f"clicks per object (default {d('points')})")
    p.add_argument("--runs", type=int, help=f"timed runs per row (default {d('runs')})")
    p.add_argument(
        "--warmup",
        type=int,
        help=f"untimed runs first (default {d('warmup')}); with --video, untimed frames after "
        f"the prompted one (default {d('warmup', VideoBenchConfig)}: the memory bank fills)",
    )
    p.add_argument("--threads", type=int, help="CPU threads (default: all this process may use)")
    p.add_argument("--parts", help=f"parts to time (default {d('parts')})")
    p.add_argument(
        "--isa-cap",
        action="store_true",
        help="also run OpenVINO f32 under ONEDNN_MAX_CPU_ISA=AVX512_CORE_VNNI (no bf16/AMX)",
    )
    p.add_argument(
        "--peak-size", type=int, help=f"peak GEMM side (0 skips; default {d('peak_size')})"
    )
    p.add_argument("--output", "-o", type=Path, help="default samedge-bench/<machine>")
    p.add_argument(
        "--accuracy-frames",
        type=int,
        help="held-out frames for each configuration's mask IoU vs fp32 (0: only the build's "
        f"report.json; default {d('accuracy_frames')})",
    )
    p.add_argument("--machine", help="machine name (default: from the hardware)")
    p.add_argument("--name", help="file name stem (default bench_<models>)")
    p.add_argument(
        "--note", action="append", default=[], help="a line recorded with the results (repeatable)"
    )
    p.add_argument(
        "--work-dir",
        type=Path,
        help="random-weight exports and --builds builds (default <samedge cache>/bench; reused)",
    )
    p.add_argument(
        "--builds",
        metavar="fp16,int8",
        help="also build each fp32 model at these precisions with `samedge build` (in a "
        "process of its own, --speed-runs 0) into <work-dir>/<model>-<seed or encoder hash>/"
        "<precision>, reusing a finished build made the same way, and time the builds beside "
        "it; a failed build is listed with the failures",
    )
    p.add_argument(
        "--build-arg",
        action="append",
        dest="build_args",
        metavar="ARG",
        help="one extra `samedge build` argument for every --builds build (repeatable; write "
        "--build-arg=--no-attention-int8, --build-arg=--frames=16)",
    )
    p.add_argument(
        "--timeout",
        type=float,
        dest="job_timeout_s",
        help=f"seconds before a job or build is killed (default {d('job_timeout_s')})",
    )
    video = p.add_argument_group("video (SAM 2-family memory tracking)")
    video.add_argument(
        "--video",
        action="store_true",
        help="time memory tracking per frame, split by graph, instead of encoder/decoder calls",
    )
    video.add_argument(
        "--frames",
        type=int,
        help=f"timed frames per row (default {d('frames', VideoBenchConfig)})",
    )
    video.add_argument(
        "--scene-seed",
        type=int,
        help=f"seed of the procedural clip (default {d('scene_seed', VideoBenchConfig)})",
    )
    p.add_argument("--json", action="store_true", help="also print the report as JSON")


def run(args: argparse.Namespace) -> int:
    from samedge.bench import BenchConfig, default_output_dir, machine_name, run_bench
    from samedge.errors import InputError

    video = getattr(args, "video", False)
    if not args.models:
        names = "sam2.1_hiera_tiny, edgetam" if video else "samedge_tiny, mobile_sam, sam_vit_b"
        raise InputError(f"got no model; pass model directories or names ({names})")
    unused = _IMAGE_ONLY if video else _VIDEO_ONLY
    wrong = [name for name in unused if hasattr(args, name)]
    if wrong:
        flag = "--" + wrong[0].replace("_", "-").replace("build-args", "build-arg")
        raise InputError(
            f"{flag}: not used {'with' if video else 'without'} --video; drop it"
            + ("" if video else " or add --video")
        )
    machine = getattr(args, "machine", None) or machine_name()
    output = getattr(args, "output", None) or default_output_dir(machine)
    if output.exists() and not output.is_dir():
        raise InputError(
            f"--output: {output} is a file, expected a directory for the results; "
            "pass a directory path"
        )
    if video:
        return _run_video(args, machine, output)
    fields = given(args, *_CONFIG)
    for name, convert in (("objects", int), ("parts", str), ("builds", str)):
        if name in fields:
            fields[name] = split_csv(fields[name], f"--{name}", convert)
    for name in ("backends", "precisions", "build_args"):
        if name in fields:
            fields[name] = tuple(fields[name])
    config = BenchConfig(**fields)
    report = run_bench(
        args.models, config, command=command_line(args), machine=machine, notes=args.note
    )
    name = getattr(args, "name", None) or "bench_" + "_".join(
        dict.fromkeys(m["name"] for m in report.models)
    )
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
    if getattr(args, "json", False):
        print(json.dumps(report.to_json(), indent=2))
    return 0


def _run_video(args: argparse.Namespace, machine: str, output: Path) -> int:
    from samedge.bench.video import VideoBenchConfig, run_video_bench

    fields = given(args, *_VIDEO_CONFIG)
    if "objects" in fields:
        fields["objects"] = split_csv(fields["objects"], "--objects", int)
    for name in ("backends", "precisions"):
        if name in fields:
            fields[name] = tuple(fields[name])
    config = VideoBenchConfig(**fields)
    report = run_video_bench(
        args.models, config, command=command_line(args), machine=machine, notes=args.note
    )
    name = getattr(args, "name", None) or "bench_video_" + "_".join(
        dict.fromkeys(m["name"] for m in report.models)
    )
    paths = report.save(output, name)
    for row in report.rows:
        print(
            f"{row.model} {row.backend} {row.precision}{' (default)' if row.default else ''} "
            f"{row.objects} object(s): {row.total.median_ms:.1f} ms per frame median "
            f"(p99 {row.total.p99_ms:.1f})"
        )
    for s in report.scaling():
        print(
            f"{s.model} {s.backend} {s.precision}: {s.objects} vs {s.base_objects} objects "
            f"= {s.ratio:.2f}x"
        )
    for failure in report.failures:
        print(f"FAILED {failure['what']}: {failure['error']}", file=sys.stderr)
    print("wrote " + ", ".join(str(p) for p in paths.values()))
    if getattr(args, "json", False):
        print(json.dumps(report.to_json(), indent=2))
    return 1 if report.failures and not report.rows else 0
