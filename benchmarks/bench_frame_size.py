"""The encoder on the frame's content (``samedge export --frame-size``) against the padded square.

For each pair of model directories (the square export and the ``--frame-size``
export of the same weights), times both encoders on ONNX Runtime and OpenVINO
(its default precision on this CPU), round-robin in one run so the machine's
load hits both alike, and reads the masks' agreement with the square encoder
from the card (measured by the export, where the gate decided). Weights are
random (speed does not depend on them).

    python benchmarks/bench_frame_size.py SQUARE_DIR:CONTENT_DIR [...] --runs 7 \
        --output benchmarks/results/<machine>/frame_size.json

``--clock cpu`` times process CPU time instead of wall time: on a shared
machine that counts the compute a call needs, not the time it waits for a core.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shlex
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from samedge import read_model_dir
from samedge.bench import count_flops, library_versions, machine_info
from samedge.runtimes import OpenVinoConfig, OrtConfig, open_backend

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _files import write_json_and_markdown

_BACKENDS = ("onnxruntime", "openvino")


def _config(backend: str, threads: int) -> Any:
    if backend == "onnxruntime":
        return OrtConfig(intra_op_threads=threads)
    return OpenVinoConfig(num_threads=threads, use_cache=False)


def measure_pair(
    square: Path, content: Path, threads: int, runs: int, clock: str
) -> dict[str, Any]:
    """One row: both encoders on both backends, interleaved; medians in ms."""
    cards = {"square": read_model_dir(square), "content": read_model_dir(content)}
    if cards["square"].model != cards["content"].model or cards["square"].encoder_input:
        raise SystemExit(
            f"{square}:{content}: expected the square export and a --frame-size export "
            "of the same model"
        )
    if cards["content"].encoder_input is None:
        raise SystemExit(f"{content}: not exported with --frame-size")
    dirs = {"square": square, "content": content}
    rng = np.random.default_rng(0)
    now = time.process_time if clock == "cpu" else time.perf_counter
    row: dict[str, Any] = {"model": cards["square"].model}
    for kind, card in cards.items():
        row[f"{kind}_input"] = "x".join(map(str, card.input_box))
        row[f"{kind}_gflops"] = round(count_flops(dirs[kind] / card.encoder).gflops, 1)
    for backend in _BACKENDS:
        sessions = {}
        feeds = {}
        for kind, card in cards.items():
            b = open_backend(dirs[kind] / card.encoder, backend, config=_config(backend, threads))
            b.load()
            feeds[kind] = {"image": rng.uniform(0, 255, (1, 3, *card.input_box)).astype("f4")}
            b.infer(feeds[kind])  # warm-up
            sessions[kind] = b
        times: dict[str, list[float]] = {k: [] for k in sessions}
        try:
            for _ in range(runs):
                for kind, b in sessions.items():
                    t = now()
                    b.infer(feeds[kind])
                    times[kind].append((now() - t) * 1e3)
            precision = sessions["content"].precision
        finally:
            for b in sessions.values():
                b.close()
        for kind, ts in times.items():
            row[f"{backend}_{kind}_ms"] = round(float(np.median(ts)), 1)
        row[f"{backend}_precision"] = precision
        row[f"{backend}_speedup"] = round(
            row[f"{backend}_square_ms"] / row[f"{backend}_content_ms"], 2
        )
    agreement = dict(cards["content"].details).get("frame_size") or {}
    row["frame_size"] = "x".join(map(str, agreement.get("frame_size", [])))
    for key in ("mean_iou", "p5_iou", "worst_iou", "embedding_cosine", "passed"):
        row[key] = agreement.get(key)
    return row


def markdown(data: dict[str, Any]) -> str:
    lines = [
        f"# Encoder on the frame's content vs the padded square ({data['machine']['name']})",
        "",
        f"`{data['command']}`",
        "",
        f"- {data['threads']} threads, median of {data['runs']} runs per cell, square and "
        f"content interleaved; clock: {data['clock']}",
        f"- machine: {data['machine']['cpu']}, {data['machine']['cores']} logical CPUs, flags "
        f"{', '.join(data['machine']['cpu_flags']) or 'none of note'}; load average "
        f"{data['load_before']} before, {data['load_after']} after; {data['timestamp']}",
        "- agreement: masks of a 4x4 grid of clicks on 4 procedural scenes of the frame size, "
        "content encoder vs square encoder (same weights), measured by `samedge export "
        "--frame-size`, which refuses an encoder past the gate (mean IoU >= 0.95, p5 >= 0.85)",
        "",
        "| model | frame | input square -> content | GFLOPs | ORT ms square / content "
        "| ORT speed-up | OpenVINO ms square / content (precision) | OpenVINO speed-up "
        "| mask IoU mean / p5 | embedding cosine |",
        "| --- | --- | --- | --- | --- | ---: | --- | ---: | --- | ---: |",
    ]
    for r in data["rows"]:
        lines.append(
            f"| {r['model']} | {r['frame_size']} | {r['square_input']} -> {r['content_input']} "
            f"| {r['square_gflops']} -> {r['content_gflops']} "
            f"| {r['onnxruntime_square_ms']} / {r['onnxruntime_content_ms']} "
            f"| {r['onnxruntime_speedup']}x "
            f"| {r['openvino_square_ms']} / {r['openvino_content_ms']} "
            f"({r['openvino_precision']}) | {r['openvino_speedup']}x "
            f"| {r['mean_iou']} / {r['p5_iou']} | {r['embedding_cosine']} |"
        )
    if data.get("notes"):
        lines += ["", *[f"- {n}" for n in data["notes"]]]
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("pairs", nargs="+", help="SQUARE_DIR:CONTENT_DIR")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--clock", choices=("wall", "cpu"), default="wall")
    parser.add_argument("--note", action="append", default=[], help="a line for the notes")
    parser.add_argument("--machine", help="results directory name (default: derived)")
    parser.add_argument("--output", type=Path, required=True, help="results .json (and .md)")
    args = parser.parse_args(argv)
    load_before = [round(v, 2) for v in os.getloadavg()]
    rows = []
    for pair in args.pairs:
        square, sep, content = pair.partition(":")
        if not sep:
            parser.error(f"{pair!r}: expected SQUARE_DIR:CONTENT_DIR")
        rows.append(measure_pair(Path(square), Path(content), args.threads, args.runs, args.clock))
        print(json.dumps(rows[-1]), flush=True)
    data = {
        "command": shlex.join(
            ["python", "benchmarks/bench_frame_size.py", *map(str, argv or sys.argv[1:])]
        ),
        "timestamp": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": machine_info(args.machine),
        "versions": library_versions(),
        "threads": args.threads,
        "runs": args.runs,
        "clock": args.clock,
        "load_before": load_before,
        "load_after": [round(v, 2) for v in os.getloadavg()],
        "rows": rows,
        "notes": args.note,
    }
    write_json_and_markdown(args.output, data, markdown(data))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
