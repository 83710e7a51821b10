"""A predictor's frame on ONNX Runtime with and without the threads spinning after a run.

ONNX Runtime's intra-op threads keep busy-waiting for a while after a run
returns. A predictor has two sessions, the encoder's and the decoder's, each
with its own threads; the one that has just finished spins on the cores the
other needs. samedge stops them at the end of every run
(``OrtConfig.spin_after_run=False``, ONNX Runtime's
``session.force_spinning_stop``); this script measures both settings through
the public calls a stream makes per frame:

* ``encoder``: ``set_image`` (the encoder, after the previous frame's decoder);
* ``decoder after encoder``: ``predict`` with one click right after it;
* ``decoder again``: the same ``predict`` once more (no session switch, the control);
* ``frame``: ``set_image`` + the first ``predict``, in wall time and in this
  process's CPU time (spinning burns CPU without doing work).

Each setting runs in its own process (two predictors in one process would
disturb each other the same way); the processes alternate, in swapped order
from round to round, so drift in the machine's load hits both alike.

    python benchmarks/profile_ort_spinning.py --model work/mobile_sam --threads 2 \\
        --rounds 4 --frames 6 --output benchmarks/results/<machine>/ort_spinning.md

Repository tooling (not installed with samedge).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shlex
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from _files import write_json_and_markdown

SETTINGS = {"stop": False, "spin": True}  # name -> OrtConfig.spin_after_run
STAGES = ("encoder", "decoder after encoder", "decoder again", "frame", "frame cpu")


def _child(model: str, spin: bool, threads: int, frames: int) -> dict[str, list[float]]:
    """Time ``frames`` frames (after two warm-up ones) in this process; ms per stage."""
    from profile_prepost import _frame

    from samedge.predictor import Predictor
    from samedge.runtimes import OrtConfig

    config = OrtConfig(
        intra_op_threads=threads, providers=("CPUExecutionProvider",), spin_after_run=spin
    )
    frame = _frame(640, 480)
    coords, labels = np.array([[320.0, 240.0]]), np.array([1])
    times: dict[str, list[float]] = {s: [] for s in STAGES}
    with Predictor(model, backend="onnxruntime", config=config) as predictor:
        for i in range(frames + 2):
            c0, t0 = time.process_time(), time.perf_counter()
            predictor.set_image(frame)
            t1 = time.perf_counter()
            predictor.predict(coords, labels, multimask_output=False)
            t2, c2 = time.perf_counter(), time.process_time()
            predictor.predict(coords, labels, multimask_output=False)
            t3 = time.perf_counter()
            if i < 2:
                continue  # warm-up: the first calls allocate
            times["encoder"].append((t1 - t0) * 1e3)
            times["decoder after encoder"].append((t2 - t1) * 1e3)
            times["decoder again"].append((t3 - t2) * 1e3)
            times["frame"].append((t2 - t0) * 1e3)
            times["frame cpu"].append((c2 - c0) * 1e3)
    return times


def _run_child(model: str, setting: str, threads: int, frames: int) -> dict[str, list[float]]:
    command = [sys.executable, __file__, "--model", model, "--child", setting]
    command += ["--threads", str(threads), "--frames", str(frames)]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(
            f"profile_ort_spinning: the {setting!r} process failed (exit {done.returncode}):\n"
            + done.stderr[-2000:]
        )
    result: dict[str, list[float]] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def markdown(record: dict[str, Any]) -> str:
    """The report: medians per setting and stage, and spin / stop per stage."""
    times = record["times_ms"]
    med = {s: {k: statistics.median(v) for k, v in times[s].items()} for s in SETTINGS}
    lines = [
        "# ONNX Runtime: threads that stop spinning after a run vs that keep spinning",
        "",
        f"`python {record['command']}` ({record['started']})",
        "",
        f"- machine: {record['cpu']}, {record['cpus']} logical CPUs; {record['threads']} "
        f"intra-op threads per session; 1-min load average {record['load'][0]:.2f} at the "
        f"start, {record['load'][1]:.2f} at the end",
        f"- model: {record['model']}; one 640×480 frame, one click, `multimask_output=False`",
        f"- {record['rounds']} rounds × {record['frames']} frames per setting, each setting in "
        "its own process, alternating (order swapped every round); medians over all frames, "
        "in ms of wall time (`frame cpu`: this process's CPU time)",
        "- `stop`: samedge's default (`OrtConfig(spin_after_run=False)`, ONNX Runtime's "
        "`session.force_spinning_stop`); `spin`: ONNX Runtime's own default",
        "",
        "| setting | " + " | ".join(STAGES) + " |",
        "| --- | " + " | ".join("---" for _ in STAGES) + " |",
    ]
    for s in SETTINGS:
        lines.append(f"| {s} | " + " | ".join(f"{med[s][k]:.1f}" for k in STAGES) + " |")
    lines.append(
        "| spin / stop | "
        + " | ".join(f"{med['spin'][k] / med['stop'][k]:.2f}×" for k in STAGES)
        + " |"
    )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", required=True, help="model directory or name")
    parser.add_argument("--threads", type=int, default=2, help="intra-op threads per session")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--frames", type=int, default=6, help="timed frames per process")
    parser.add_argument("--output", type=Path, help="markdown file (a .json beside it)")
    parser.add_argument("--child", choices=tuple(SETTINGS), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.threads < 1 or args.rounds < 1 or args.frames < 1:
        parser.error("--threads, --rounds and --frames must be at least 1")
    if args.child:
        print(json.dumps(_child(args.model, SETTINGS[args.child], args.threads, args.frames)))
        return 0
    if args.output is not None and args.output.suffix != ".md":
        parser.error(f"--output: got {args.output}, expected a .md file (the .json goes beside it)")

    started = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    load_start = os.getloadavg()[0]
    times: dict[str, dict[str, list[float]]] = {s: {k: [] for k in STAGES} for s in SETTINGS}
    for r in range(args.rounds):
        order = list(SETTINGS) if r % 2 == 0 else list(reversed(SETTINGS))
        for setting in order:
            print(f"round {r + 1}/{args.rounds}: {setting}", file=sys.stderr)
            for stage, values in _run_child(args.model, setting, args.threads, args.frames).items():
                times[setting][stage] += values
    command = " ".join(
        shlex.quote(a)
        for a in [
            "benchmarks/profile_ort_spinning.py",
            *(argv if argv is not None else sys.argv[1:]),
        ]
    )
    from samedge.bench import library_versions, machine_info

    record = {
        "command": command,
        "started": started,
        "cpu": machine_info()["cpu"],
        "cpus": os.cpu_count(),
        "versions": library_versions(),
        "threads": args.threads,
        "model": args.model,
        "rounds": args.rounds,
        "frames": args.frames,
        "load": [load_start, os.getloadavg()[0]],
        "times_ms": times,
    }
    text = markdown(record)
    print(text)
    if args.output is not None:
        write_json_and_markdown(args.output.with_suffix(".json"), record, text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
