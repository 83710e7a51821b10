"""Time a model directory's encoder and decoder on every backend and precision here.

For each backend (ONNX Runtime, OpenVINO, TensorRT where present) and each
precision it can run the graphs in (OpenVINO: its device default and every
float precision the CPU plugin advertises; ONNX Runtime and TensorRT: the
precision the graph carries), the encoder runs on one frame and the decoder on
B = 1 and B = 8 objects. After warm-up runs, ``--runs`` timed calls of
``Backend.infer`` (validation included: that is what a user pays) give the
median and p90. Results go to JSON with the machine, the library versions and
the exact command, under ``benchmarks/results/<machine>/backends.json``.

Example:
    samedge export mobile_sam --random-weights -o /tmp/ms
    python benchmarks/bench_backends.py --model-dir /tmp/ms

Weights are random (no checkpoint can be downloaded here); speed does not
depend on weight values.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime as dt
import functools
import json
import logging
import os
import platform
import re
import shlex
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

import samedge
from samedge._io import atomic_write_text
from samedge.model_dir import ModelCard, read_model_dir
from samedge.runtimes import (
    Backend,
    InferencePrecision,
    OpenVinoConfig,
    OrtConfig,
    available_backends,
    open_backend,
)
from samedge.runtimes._hw import cpu_info

log = logging.getLogger("bench_backends")

RESULTS = Path(__file__).resolve().parent / "results"
# CPU flags that explain a result (bf16/AMX/AVX-512 paths in OpenVINO and ORT).
_NOTABLE_FLAGS = (
    "avx2",
    "avx512f",
    "avx512_bf16",
    "avx512_vnni",
    "amx_bf16",
    "amx_tile",
    "avx_vnni",
)


@dataclasses.dataclass(frozen=True)
class Variant:
    """One way to run the graphs: a backend with one config."""

    backend: str
    requested: str  # "default", or the precision asked for ("f32", "bf16", ...)
    make: Callable[[Path], Backend]


def machine_name() -> str:
    """A stable directory name for this machine: CPU model slug + core count."""
    cpu = cpu_info()
    slug = re.sub(r"\((r|tm)\)|cpu|processor|@.*$", "", cpu.model.lower())
    slug = re.sub(r"[^a-z0-9]+", "-", slug).strip("-") or "unknown-cpu"
    return f"{slug}-{cpu.cores}c"


def _variants(backends: Sequence[str], threads: int) -> tuple[list[Variant], list[dict[str, str]]]:
    installed = {info.name: info for info in available_backends()}
    variants: list[Variant] = []
    skipped: list[dict[str, str]] = []
    for name in backends:
        info = installed[name]
        if not info.installed:
            skipped.append({"backend": name, "reason": f"not installed ({info.hint})"})
            continue
        if name == "onnxruntime":
            variants.append(
                Variant(
                    name,
                    "default",
                    functools.partial(
                        open_backend,
                        backend="onnxruntime",
                        config=OrtConfig(intra_op_threads=threads),
                    ),
                )
            )
        elif name == "openvino":
            import openvino as ov

            core = ov.Core()
            caps = set(core.get_property("CPU", "OPTIMIZATION_CAPABILITIES"))
            default = core.get_property("CPU", "INFERENCE_PRECISION_HINT").get_type_name()
            # The default run already covers the device's default precision.
            precisions: list[InferencePrecision | None] = [None]
            precisions += [
                p
                for p in InferencePrecision
                if (p is InferencePrecision.FP32 or p.name in caps) and p.value != default
            ]
            for precision in precisions:
                config = OpenVinoConfig(
                    num_threads=threads, inference_precision=precision, use_cache=False
                )
                variants.append(
                    Variant(
                        name,
                        "default" if precision is None else precision.value,
                        functools.partial(open_backend, backend="openvino", config=config),
                    )
                )
        else:
            variants.append(Variant(name, "default", functools.partial(open_backend, backend=name)))
    return variants, skipped


def _encoder_feeds(card: ModelCard, rng: np.random.Generator) -> dict[str, np.ndarray]:
    size = card.image_size
    return {"image": rng.uniform(0, 255, (1, 3, size, size)).astype(np.float32)}


def _decoder_feeds(
    card: ModelCard, objects: int, points: int, rng: np.random.Generator
) -> dict[str, np.ndarray]:
    c, h, w = card.embedding_shape
    low = card.low_res_mask_size
    coords = rng.uniform(0, card.image_size, (objects, points, 2)).astype(np.float32)
    labels = np.ones((objects, points), np.float32)
    labels[:, -1] = -1  # SAM pads a click-only prompt with one (0, 0) point labelled -1
    coords[:, -1] = 0
    return {
        "image_embeddings": rng.standard_normal((1, c, h, w)).astype(np.float32),
        "point_coords": coords,
        "point_labels": labels,
        "mask_input": np.zeros((objects, 1, low, low), np.float32),
        "has_mask_input": np.zeros((objects,), np.float32),
    }


def _time(backend: Backend, feeds: dict[str, np.ndarray], warmup: int, runs: int) -> dict[str, Any]:
    for _ in range(warmup):
        backend.infer(feeds)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        backend.infer(feeds)
        times.append((time.perf_counter() - start) * 1e3)
    ms = np.asarray(times)
    return {
        "median_ms": round(float(np.median(ms)), 3),
        "p90_ms": round(float(np.percentile(ms, 90)), 3),
        "mean_ms": round(float(ms.mean()), 3),
        "min_ms": round(float(ms.min()), 3),
        "runs": runs,
    }


def _versions() -> dict[str, str | None]:
    versions: dict[str, str | None] = {
        "samedge": samedge.__version__,
        "python": platform.python_version(),
        "numpy": np.__version__,
    }
    for info in available_backends():
        versions[info.name] = info.version
    return versions


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Benchmark as ``args`` says and return the JSON-ready record."""
    model_dir = Path(args.model_dir)
    card = read_model_dir(model_dir)
    rng = np.random.default_rng(0)
    variants, skipped = _variants(args.backends, args.threads)
    results: list[dict[str, Any]] = []
    for variant in variants:
        for graph in ("encoder", "decoder"):
            path = model_dir / (card.encoder if graph == "encoder" else card.decoder)
            backend = variant.make(path)
            start = time.perf_counter()
            backend.load()
            load_s = round(time.perf_counter() - start, 3)
            cases = (
                [(1, _encoder_feeds(card, rng))]
                if graph == "encoder"
                else [(b, _decoder_feeds(card, b, args.points, rng)) for b in args.objects]
            )
            for objects, feeds in cases:
                stats = _time(backend, feeds, args.warmup, args.runs)
                row = {
                    "backend": variant.backend,
                    "requested_precision": variant.requested,
                    "precision": backend.precision,
                    "device": backend.device,
                    "graph": graph,
                    "objects": objects if graph == "decoder" else None,
                    "points": args.points if graph == "decoder" else None,
                    "load_s": load_s,
                    **stats,
                }
                results.append(row)
                log.info(
                    "%-11s %-7s %-4s %-7s B=%-2s median %8.2f ms  p90 %8.2f ms",
                    variant.backend,
                    variant.requested,
                    backend.precision,
                    graph,
                    row["objects"] or "-",
                    stats["median_ms"],
                    stats["p90_ms"],
                )
            backend.close()
    cpu = cpu_info()
    return {
        "command": args.command,
        "timestamp": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": {
            "name": args.machine_name,
            "cpu": cpu.model,
            "vendor": cpu.vendor,
            "arch": cpu.arch,
            "cores": cpu.cores,
            "cpu_flags": sorted(f for f in _NOTABLE_FLAGS if f in cpu.flags),
            "platform": platform.platform(),
            # Other processes compete for the cores; read the numbers with this in mind.
            "load_average_1min_at_end": round(os.getloadavg()[0], 2),
        },
        "versions": _versions(),
        "model": {
            "dir": str(model_dir),
            "name": card.model,
            "image_size": card.image_size,
            "embedding_shape": list(card.embedding_shape),
            "precision": card.precision,
            "random_weights": card.checkpoint_sha256 is None,
        },
        "settings": {
            "threads": args.threads,
            "warmup": args.warmup,
            "runs": args.runs,
            "objects": list(args.objects),
            "points": args.points,
        },
        "results": results,
        "skipped": skipped,
    }


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model-dir", required=True, type=Path, help="exported model directory")
    parser.add_argument(
        "--backends",
        nargs="+",
        default=["onnxruntime", "openvino", "tensorrt"],
        choices=["onnxruntime", "openvino", "tensorrt"],
        help="backends to time (missing ones are recorded as skipped)",
    )
    parser.add_argument("--threads", type=int, default=2, help="CPU threads per backend (2)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed runs first (3)")
    parser.add_argument("--runs", type=int, default=20, help="timed runs (20)")
    parser.add_argument(
        "--objects", type=int, nargs="+", default=[1, 8], help="decoder batch sizes (1 8)"
    )
    parser.add_argument(
        "--points", type=int, default=2, help="points per object incl. SAM's padding point (2)"
    )
    parser.add_argument("--machine-name", default=None, help="results subdirectory name")
    parser.add_argument(
        "--output",
        type=Path,
        default=None,
        help="JSON path (default results/<machine>/backends.json)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> Path:
    """Run the benchmark and write its JSON; returns the JSON's path."""
    args = _parser().parse_args(argv)
    for flag in ("threads", "runs", "points"):
        if getattr(args, flag) < 1:
            raise SystemExit(f"--{flag}: got {getattr(args, flag)}, expected >= 1")
    if args.warmup < 0 or min(args.objects) < 1:
        raise SystemExit("--warmup must be >= 0 and --objects >= 1")
    args.machine_name = args.machine_name or machine_name()
    script = Path(__file__).resolve()
    with contextlib.suppress(ValueError):  # run from elsewhere: keep the absolute path
        script = script.relative_to(Path.cwd())
    given = list(sys.argv[1:] if argv is None else argv)
    args.command = shlex.join(["python", str(script), *given])
    output = args.output or RESULTS / args.machine_name / "backends.json"
    record = run(args)
    atomic_write_text(output, json.dumps(record, indent=2) + "\n")
    log.info("wrote %s", output)
    return output


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    main()
