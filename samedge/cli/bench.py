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
    "the export extra)."
)

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

    def d(name: str) -> str:
        value = default(BenchConfig, name)
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
        help=f"decoder batch sizes (default {d('objects')})",
    )
    p.add_argument("--points", type=int, help=f"clicks per object (default {d('points')})")
    p.add_argument("--runs", type=int, help=f"timed runs per row (default {d('runs')})")
    p.add_argument("--warmup", type=int, help=f"untimed runs first (default {d('warmup')})")
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
    p.add_argument("--json", action="store_true", help="also print the report as JSON")


def run(args: argparse.Namespace) -> int:
    from samedge.bench import BenchConfig, default_output_dir, machine_name, run_bench
    from samedge.errors import InputError

    if not args.models:
        raise InputError(
            "got no model; pass model directories or names (samedge_tiny, mobile_sam, sam_vit_b)"
        )
    machine = getattr(args, "machine", None) or machine_name()
    output = getattr(args, "output", None) or default_output_dir(machine)
    if output.exists() and not output.is_dir():
        raise InputError(
            f"--output: {output} is a file, expected a directory for the results; "
            "pass a directory path"
        )
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
