"""Image-encoder latency of exported model directories, side by side in one run.

The README's model table quotes these rows: each directory's encoder (the
graph every frame pays for, whatever the number of objects) timed on ONNX
Runtime (fp32) and OpenVINO (its default precision on this CPU, and f32),
with the encoder's FLOPs and parameters, the machine, its load and the library
versions. Weights are random (speed does not depend on them).

    python benchmarks/bench_encoders.py DIR [DIR ...] --threads 2 --runs 5 \
        --output benchmarks/results/<machine>/encoders.json

Uses samedge's public API only.
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
from samedge.runtimes import InferencePrecision, OpenVinoConfig, OrtConfig, open_backend

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _files import write_json_and_markdown


def _time(path: Path, backend: str, config: Any, x: np.ndarray, runs: int) -> tuple[float, str]:
    """Median milliseconds of ``runs`` encoder calls after one warm-up, and the precision."""
    with open_backend(path, backend, config=config) as b:
        b.load()
        b.infer({"image": x})
        times = []
        for _ in range(runs):
            t = time.perf_counter()
            b.infer({"image": x})
            times.append((time.perf_counter() - t) * 1e3)
        return float(np.median(times)), b.precision


def measure(model_dir: Path, threads: int, runs: int) -> dict[str, Any]:
    """One directory's row."""
    card = read_model_dir(model_dir)
    encoder = model_dir / card.encoder
    x = np.random.default_rng(0).uniform(0, 255, (1, 3, *card.input_box))
    x = x.astype(np.float32)
    row: dict[str, Any] = {
        "model": card.model,
        "input": card.image_size
        if card.encoder_input is None
        else "x".join(map(str, card.encoder_input)),
        "encoder_gflops": round(count_flops(encoder).gflops, 1),
        "encoder_mb": round(encoder.stat().st_size / 2**20, 1),
    }
    configs = {
        "onnxruntime": ("onnxruntime", OrtConfig(intra_op_threads=threads)),
        "openvino": ("openvino", OpenVinoConfig(num_threads=threads, use_cache=False)),
        "openvino_f32": (
            "openvino",
            OpenVinoConfig(
                num_threads=threads, use_cache=False, inference_precision=InferencePrecision.FP32
            ),
        ),
    }
    for key, (backend, config) in configs.items():
        ms, precision = _time(encoder, backend, config, x, runs)
        row[f"{key}_ms"] = round(ms, 1)
        row[f"{key}_precision"] = precision
    return row


def markdown(data: dict[str, Any]) -> str:
    lines = [
        f"# Encoder latency ({data['machine']['name']}, {data['threads']} threads, "
        f"median of {data['runs']})",
        "",
        f"`{data['command']}`",
        "",
        f"Load average before/after: {data['load_before']} / {data['load_after']}; "
        f"{data['timestamp']}.",
        "",
        "| model | input | encoder GFLOPs | ONNX Runtime ms | OpenVINO ms (precision) "
        "| OpenVINO f32 ms |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in data["rows"]:
        lines.append(
            f"| {r['model']} | {r['input']} | {r['encoder_gflops']} | {r['onnxruntime_ms']} "
            f"| {r['openvino_ms']} ({r['openvino_precision']}) | {r['openvino_f32_ms']} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("models", nargs="+", type=Path, help="exported model directories")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--output", type=Path, required=True, help="results .json (and .md)")
    args = parser.parse_args(argv)
    load_before = [round(v, 2) for v in os.getloadavg()]
    rows = []
    for model_dir in args.models:
        rows.append(measure(model_dir, args.threads, args.runs))
        print(json.dumps(rows[-1]), flush=True)
    data = {
        "command": shlex.join(
            ["python", "benchmarks/bench_encoders.py", *map(str, argv or sys.argv[1:])]
        ),
        "timestamp": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": machine_info(),
        "versions": library_versions(),
        "threads": args.threads,
        "runs": args.runs,
        "load_before": load_before,
        "load_after": [round(v, 2) for v in os.getloadavg()],
        "rows": rows,
    }
    write_json_and_markdown(args.output, data, markdown(data))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
