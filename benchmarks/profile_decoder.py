"""Decoder cost per object at B = 1, 4, 16: variants side by side, interleaved, per backend.

Times one or more ``decoder.onnx`` files through samedge's own backends
(ONNX Runtime CPU, OpenVINO CPU in bf16 and fp32) with the same random
embedding and one point per object (``--points N`` for more). Runs of all
variants and backends are interleaved (round-robin), so load from other
processes hits every row alike and the ratios hold better than the absolute
times. ``--ops`` adds the slowest nodes' times (ONNX Runtime's profiler,
OpenVINO's performance counters) at the smallest and the largest B, side by
side per object: which nodes' work is shared over the batch and which costs
the same per object at any size.

    python benchmarks/profile_decoder.py \\
        --decoder upstream=work/upstream/decoder.onnx --decoder batched=work/batched/decoder.onnx \\
        --objects 1,4,16 --runs 9 --ops --output benchmarks/results/<machine>/decoder_batch.md

``--export mobile_sam --work DIR`` first exports the model with random
weights twice, with SAM's own ``predict_masks`` (``upstream``) and with the
batched decoder (``batched``, samedge's default), and compares those two.

Repository tooling (not installed with samedge).
"""

from __future__ import annotations

import argparse
import bisect
import collections
import datetime
import json
import os
import platform
import shlex
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

BACKENDS = ("ort", "ov-bf16", "ov-fp32")


@dataclass
class Row:
    """One (variant, backend): its loaded backends per B and the times collected."""

    variant: str
    backend: str
    times: dict[int, list[float]] = field(default_factory=dict)


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _feeds(
    batch: int, embedding_shape: tuple[int, ...], image_size: int, points: int = 1
) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    low = 4 * embedding_shape[-1]
    return {
        "image_embeddings": rng.standard_normal((1, *embedding_shape), dtype=np.float32),
        "point_coords": rng.uniform(0, image_size, (batch, points, 2)).astype(np.float32),
        "point_labels": np.ones((batch, points), np.float32),
        "mask_input": np.zeros((batch, 1, low, low), np.float32),
        "has_mask_input": np.zeros((batch,), np.float32),
    }


def _decoder_path(path: Path) -> str:
    """The decoder graph ``path`` names: an ``.onnx`` file, or a model directory's decoder."""
    from samedge.errors import ModelDirError
    from samedge.model_dir import read_model_dir

    if path.is_dir():
        try:
            return str(path / read_model_dir(path).decoder)
        except ModelDirError as e:
            raise ValueError(f"{path} is a folder but not a samedge model directory ({e})") from e
    if not path.is_file():
        raise ValueError(f"{path}: no such file; give a decoder .onnx or a model directory")
    return str(path)


def _export_variants(model: str, work: Path) -> dict[str, str]:
    """Random-weight exports of ``model`` with SAM's own and with the batched decoder."""
    from samedge.errors import ModelDirError
    from samedge.exporters.export import ExportConfig, export_model
    from samedge.exporters.graphs import exported_with
    from samedge.model_dir import read_model_dir

    def current(out: Path) -> bool:
        # Made by these exporters (a change of the decoder's code is another graph).
        try:
            made_by = dict(read_model_dir(out).details.get("exported_with") or {})
        except ModelDirError:
            return False
        return made_by.get("exporters_sha256") == exported_with()["exporters_sha256"]

    paths = {}
    for name, batched in (("upstream", False), ("batched", True)):
        out = work / f"{model}-decoder-{name}"
        if not current(out):
            export_model(
                model,
                None,
                out,
                config=ExportConfig(progress=False, batched_decoder=batched),
                force=True,
            )
        paths[name] = str(out / "decoder.onnx")
    return paths


def _backend(kind: str, path: Path, threads: int) -> Any:
    if kind == "ort":
        from samedge.runtimes.ort import OrtBackend, OrtConfig

        return OrtBackend(
            path, OrtConfig(intra_op_threads=threads, providers=("CPUExecutionProvider",))
        )
    from samedge.runtimes.ov import InferencePrecision, OpenVinoBackend, OpenVinoConfig

    precision = InferencePrecision.BF16 if kind == "ov-bf16" else InferencePrecision.FP32
    return OpenVinoBackend(
        path, OpenVinoConfig(inference_precision=precision, num_threads=threads, use_cache=False)
    )


def _node_times_ort(
    path: Path, feeds: dict[str, np.ndarray], threads: int, runs: int
) -> dict[str, float]:
    """ms per call per node (``"OpType name"``): the median over ``runs`` runs after a warm-up."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.enable_profiling = True
    with tempfile.TemporaryDirectory() as tmp:
        options.profile_file_prefix = str(Path(tmp) / "ort")
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        for _ in range(runs + 1):
            session.run(None, feeds)
        events = json.loads(Path(session.end_profiling()).read_text())
    starts = sorted(
        e["ts"] for e in events if e.get("cat") == "Session" and e["name"] == "model_run"
    )
    per_run = [collections.Counter[str]() for _ in starts]
    for e in events:
        if e.get("cat") == "Node" and e["name"].endswith("_kernel_time"):
            run = bisect.bisect_right(starts, e["ts"]) - 1
            if run >= 0:
                node = f"{e['args']['op_name']} {e['name'].removesuffix('_kernel_time')}"
                per_run[run][node] += e["dur"] / 1e3
    return _median_per_node(per_run[1:])


def _node_times_ov(
    path: Path, feeds: dict[str, np.ndarray], precision: str, threads: int, runs: int
) -> dict[str, float]:
    """ms per call per node (``"OpType name"``): the median over ``runs`` runs after a warm-up."""
    import openvino as ov

    core = ov.Core()
    compiled = core.compile_model(
        str(path),
        "CPU",
        {
            "PERFORMANCE_HINT": "LATENCY",
            "INFERENCE_NUM_THREADS": threads,
            "INFERENCE_PRECISION_HINT": precision,
            "PERF_COUNT": True,
        },
    )
    request = compiled.create_infer_request()
    request.infer(feeds)
    per_run = []
    for _ in range(runs):
        request.infer(feeds)
        per_node: collections.Counter[str] = collections.Counter()
        for p in request.profiling_info:
            per_node[f"{p.node_type} {p.node_name}"] += p.real_time.total_seconds() * 1e3
        per_run.append(per_node)
    return _median_per_node(per_run)


def _median_per_node(per_run: list[collections.Counter[str]]) -> dict[str, float]:
    nodes = {node for run in per_run for node in run}
    return {node: statistics.median(run[node] for run in per_run) for node in sorted(nodes)}


OpTimes = dict[str, dict[str, dict[int, dict[str, float]]]]  # variant -> backend -> B -> node -> ms


def nodes_markdown(ops: OpTimes, top: int = 12) -> list[str]:
    """Per variant and backend: the slowest nodes at the smallest and largest B, per object."""
    lines: list[str] = []
    for name, per_backend in ops.items():
        for b, by_batch in per_backend.items():
            one, most = min(by_batch), max(by_batch)
            small, big = by_batch[one], by_batch[most]
            lines += [
                "",
                f"### {name}, {b}",
                "",
                f"| node | B={one} ms | B={most} ms | B={most} per object | per object / B={one} |",
                "| --- | --- | --- | --- | --- |",
            ]
            order = sorted(set(small) | set(big), key=lambda node: -big.get(node, 0.0))
            rows = [("{} `{}`".format(*node.split(" ", 1)), node) for node in order[:top]]
            cells = [(label, small.get(node, 0.0), big.get(node, 0.0)) for label, node in rows]
            rest = order[top:]
            if rest:
                cells.append(
                    (
                        f"{len(rest)} other nodes",
                        sum(small.get(node, 0.0) for node in rest),
                        sum(big.get(node, 0.0) for node in rest),
                    )
                )
            cells.append(("**all**", sum(small.values()), sum(big.values())))
            for label, a, c in cells:
                # One batch size only: nothing to compare per object.
                ratio = f"{c / most / a:.2f}×" if a > 0 and most > one else "–"
                lines.append(f"| {label} | {a:.1f} | {c:.1f} | {c / most:.2f} | {ratio} |")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--decoder", action="append", default=[], metavar="NAME=PATH")
    parser.add_argument("--export", metavar="MODEL", help="export MODEL's two decoder variants")
    parser.add_argument(
        "--work",
        type=Path,
        default=Path.home() / ".cache/samedge/bench/profile",
        help="for --export",
    )
    parser.add_argument("--backends", default=",".join(BACKENDS))
    parser.add_argument("--objects", default="1,4,16")
    parser.add_argument("--runs", type=int, default=9)
    parser.add_argument("--points", type=int, default=1, help="clicks per object")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--embedding", default="256,64,64", help="C,h,w of the image embedding")
    parser.add_argument("--image-size", type=int, default=1024)
    parser.add_argument(
        "--ops", action="store_true", help="per-node times at the smallest and largest B"
    )
    parser.add_argument(
        "--clock",
        choices=("wall", "cpu"),
        default="wall",
        help="wall time, or this process's CPU time (use with --threads 1 on a busy machine)",
    )
    parser.add_argument("--output", type=Path, help="markdown file (a .json beside it)")
    args = parser.parse_args(argv)

    variants = {}
    for item in args.decoder:
        name, sep, path = item.partition("=")
        if not sep or not name or not path:
            parser.error(f"--decoder: got {item!r}, expected NAME=PATH")
        try:
            variants[name] = _decoder_path(Path(path))
        except ValueError as e:
            parser.error(f"--decoder {name}: {e}")
    if args.export:
        variants.update(_export_variants(args.export, args.work))
    if not variants:
        parser.error("give --decoder NAME=PATH (repeatable) or --export MODEL")
    backends = [b for b in args.backends.split(",") if b]
    for b in backends:
        if b not in BACKENDS:
            parser.error(f"--backends: got {b!r}, expected some of {', '.join(BACKENDS)}")
    objects = [int(x) for x in args.objects.split(",")]
    if args.points < 1:
        parser.error(f"--points: got {args.points}, expected 1 or more clicks per object")
    embedding = tuple(int(x) for x in args.embedding.split(","))
    feeds = {b: _feeds(b, embedding, args.image_size, args.points) for b in objects}
    started = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    load_start = os.getloadavg()[0]

    # CPU time of this process: on a shared machine, with --threads 1, the
    # compute a call needs, whatever else waits for the cores.
    clock = time.process_time if args.clock == "cpu" else time.perf_counter
    rows = [Row(v, b, {n: [] for n in objects}) for v in variants for b in backends]
    sessions = {
        (r.variant, r.backend): _backend(r.backend, Path(variants[r.variant]), args.threads)
        for r in rows
    }
    for s in sessions.values():
        s.load()
    for r in rows:  # warm-up: one call per B (first-shape allocations)
        for n in objects:
            sessions[r.variant, r.backend].infer(feeds[n])
    for _ in range(args.runs):
        for n in objects:
            for r in rows:
                t0 = clock()
                sessions[r.variant, r.backend].infer(feeds[n])
                r.times[n].append((clock() - t0) * 1e3)
    for s in sessions.values():
        s.close()
    load_end = os.getloadavg()[0]

    # Per node at the smallest and the largest B: which nodes amortise and which do not.
    ops: OpTimes = {}
    if args.ops:
        for name, path in variants.items():
            ops[name] = {b: {} for b in backends}
            for n in sorted({min(objects), max(objects)}):
                for b in backends:
                    if b == "ort":
                        ops[name][b][n] = _node_times_ort(Path(path), feeds[n], args.threads, 5)
                    else:
                        precision = "bf16" if b == "ov-bf16" else "f32"
                        ops[name][b][n] = _node_times_ov(
                            Path(path), feeds[n], precision, args.threads, 5
                        )

    med = {(r.variant, r.backend, n): statistics.median(r.times[n]) for r in rows for n in objects}
    given = argv if argv is not None else sys.argv[1:]
    command = " ".join(shlex.quote(a) for a in ["benchmarks/profile_decoder.py", *given])
    one, most = min(objects), max(objects)
    lines = [
        "# Decoder cost per object",
        "",
        f"`python {command}` ({started})",
        "",
        f"- machine: {_cpu_name()}, {os.cpu_count()} logical CPUs, "
        f"{args.threads} threads; 1-min load average {load_start:.2f} at the start, "
        f"{load_end:.2f} at the end",
        f"- {args.runs} timed runs per cell after one warm-up per B, all cells interleaved "
        f"round-robin; medians in ms of {args.clock} time"
        + (" (process CPU time: compute, not waiting for a core)" if args.clock == "cpu" else ""),
        f"- {args.points} point(s) per object, no mask input, random embedding; "
        "per object = median / B",
        "",
        "| variant | backend | "
        + " | ".join(f"B={n} ms" for n in objects)
        + " | "
        + " | ".join(f"per object B={n}" for n in objects if n != one)
        + f" | per object B={most} / B={one} |",
        "| --- | --- | "
        + " | ".join("---" for _ in objects)
        + " | "
        + " | ".join("---" for n in objects if n != one)
        + " | --- |",
    ]
    for r in rows:
        cells = [f"{med[r.variant, r.backend, n]:.1f}" for n in objects]
        per = [f"{med[r.variant, r.backend, n] / n:.1f}" for n in objects if n != one]
        ratio = med[r.variant, r.backend, most] / most / med[r.variant, r.backend, one]
        lines.append(
            f"| {r.variant} | {r.backend} | "
            + " | ".join(cells)
            + " | "
            + " | ".join(per)
            + f" | {ratio:.2f}× |"
        )
    if len(variants) > 1:
        base = next(iter(variants))
        lines += [
            "",
            f"Speed-up over `{base}` (its median / the variant's, same backend and B):",
            "",
        ]
        lines.append("| variant | backend | " + " | ".join(f"B={n}" for n in objects) + " |")
        lines.append("| --- | --- | " + " | ".join("---" for _ in objects) + " |")
        for r in rows:
            if r.variant == base:
                continue
            cells = [
                f"{med[base, r.backend, n] / med[r.variant, r.backend, n]:.2f}×" for n in objects
            ]
            lines.append(f"| {r.variant} | {r.backend} | " + " | ".join(cells) + " |")
    if ops:
        lines += [
            "",
            f"## The slowest nodes at B={one} and B={most}",
            "",
            "ms per call, the median of 5 profiled runs after a warm-up one (ONNX Runtime's "
            "profiler, OpenVINO's performance counters; profiling adds its own overhead, so "
            f"totals differ from the table above). `per object / B={one}` well under 1 is a "
            "node whose work is shared over the batch; near 1, a node that costs the same per "
            f"object at both sizes; – a node with no namesake at B={one} (OpenVINO names the "
            "nodes it makes itself anew in each compile).",
        ]
        lines += nodes_markdown(ops)
    text = "\n".join(lines) + "\n"
    print(text)
    if args.output:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(text)
        record = {
            "started": started,
            "argv": sys.argv,
            "threads": args.threads,
            "points": args.points,
            "load": [load_start, load_end],
            "variants": variants,
            "times_ms": {
                f"{r.variant}/{r.backend}": {str(n): r.times[n] for n in objects} for r in rows
            },
            "ops_ms": {
                name: {b: {str(n): v for n, v in by_n.items()} for b, by_n in per_b.items()}
                for name, per_b in ops.items()
            },
        }
        args.output.with_suffix(".json").write_text(json.dumps(record, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
