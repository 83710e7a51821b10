"""Where an encoder's time goes on OpenVINO's CPU plugin: per op type, per kernel precision.

For each model directory and inference-precision hint, compiles the directory's
``encoder.onnx`` the way samedge's OpenVINO backend does (LATENCY hint, the
thread count given) with performance counters on, runs it, and sums each
executed node's time by

- the precision its kernel ran in (the tail of OpenVINO's ``exec_type``:
  ``..._I8`` / ``_U8`` int8, ``_BF16``, ``_FP32``, ``_F16``), split into GEMM-class
  nodes (``FullyConnected``, ``MatMul``, ``Convolution``, ``GroupConvolution``,
  ``ConvolutionBackpropData``) and everything else;
- op type (the top ones, with the layout conversions ``Reorder`` / ``Transpose``
  / ``Convert`` always shown);

and lists the GEMM-class nodes of a quantized graph that did **not** run in
int8 (what stays float, with their share of the time). The GFLOP of the graph
divided by the GEMM-class time gives the rate the GEMMs themselves reach; the
same over the whole time is the encoder's rate, which `samedge bench` compares
with the measured peak.

``--isa-cap AVX512_CORE_VNNI`` runs every configuration again in a child
process with oneDNN / OpenVINO capped to that ISA (``ONEDNN_MAX_CPU_ISA``,
``OV_CPU_MAX_ISA``): a CPU with VNNI but no AMX and no bf16, as `samedge bench
--isa-cap` does.

    python benchmarks/profile_encoder.py DIR/fp32 DIR/int8 --hint default,f32 \\
        --isa-cap AVX512_CORE_VNNI --runs 5 --output benchmarks/results/<machine>/profile_encoder.md

Repository tooling (not installed with samedge).
"""

from __future__ import annotations

import argparse
import collections
import datetime
import json
import os
import shlex
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

# Node types (and their quantized forms, e.g. FullyConnectedQuantizedLegacy) whose
# time is matrix products. OpenVINO's Snippets fuse attention (MatMul-Softmax-MatMul)
# with the elementwise ops around it into `Subgraph` nodes: those count as other.
GEMM_TYPES = ("FullyConnected", "MatMul", "Convolution", "GroupConvolution")


def is_gemm(node_type: str) -> bool:
    """``FullyConnectedQuantizedLegacy`` -> True; ``Subgraph``, ``Transpose`` -> False."""
    return node_type.startswith(GEMM_TYPES)


LAYOUT_TYPES = ("Reorder", "Transpose", "Convert")
_PRECISION_TAILS = (
    ("I8", "int8"),
    ("U8", "int8"),
    ("BF16", "bf16"),
    ("F16", "fp16"),
    ("FP16", "fp16"),
    ("FP32", "fp32"),
    ("F32", "fp32"),
    ("I32", "int32"),
)


@dataclass
class Profile:
    """One (directory, hint, ISA cap): times in ms per inference."""

    model_dir: str
    label: str
    hint: str
    isa: str | None
    wall_ms: float
    counted_ms: float
    gflop: float | None
    by_precision: dict[str, float] = field(default_factory=dict)  # "gemm int8" -> ms
    by_type: dict[str, float] = field(default_factory=dict)
    float_gemms: list[tuple[str, str, str, float]] = field(default_factory=list)
    gemm_nodes: dict[str, int] = field(default_factory=dict)  # precision -> executed count

    @property
    def gemm_ms(self) -> float:
        return sum(v for k, v in self.by_precision.items() if k.startswith("gemm "))


def kernel_precision(exec_type: str) -> str:
    """``brgemm_avx512_amx_I8`` -> ``int8``; the tail after the last ``_``."""
    tail = exec_type.rsplit("_", 1)[-1].upper()
    for suffix, name in _PRECISION_TAILS:
        if tail == suffix:
            return name
    return tail.lower() or "?"


def _feeds(compiled: Any, rng: np.random.Generator) -> dict[str, np.ndarray]:
    feeds = {}
    for port in compiled.inputs:
        shape = [int(d) for d in port.get_partial_shape().to_shape()]
        feeds[port.any_name] = rng.uniform(0, 255, shape).astype(np.float32)
    return feeds


def profile(model_dir: Path, hint: str, threads: int, runs: int, isa: str | None) -> Profile:
    import openvino as ov
    import openvino.properties as props
    import openvino.properties.hint as hints

    from samedge.bench import count_flops
    from samedge.model_dir import read_model_dir

    if model_dir.is_file():  # a bare graph (e.g. a peer's OpenVINO IR)
        path, label = model_dir, f"{model_dir.parent.name}/{model_dir.name}"
    else:
        card = read_model_dir(model_dir)
        path, label = model_dir / card.encoder, f"{card.precision} {model_dir.name}"
    config: dict[Any, Any] = {
        hints.performance_mode: hints.PerformanceMode.LATENCY,
        props.inference_num_threads: threads,
        props.enable_profiling: True,
    }
    if hint != "default":
        config[hints.inference_precision] = getattr(ov.Type, hint)
    compiled = ov.Core().compile_model(str(path), "CPU", config)
    request = compiled.create_infer_request()
    feeds = _feeds(compiled, np.random.default_rng(0))
    request.infer(feeds)  # warm-up: first-run allocations
    walls: list[float] = []
    by_precision: collections.Counter[str] = collections.Counter()
    by_type: collections.Counter[str] = collections.Counter()
    floats: collections.Counter[tuple[str, str, str]] = collections.Counter()
    gemm_nodes: collections.Counter[str] = collections.Counter()
    for i in range(runs):
        t0 = time.perf_counter()
        request.infer(feeds)
        walls.append((time.perf_counter() - t0) * 1e3)
        for p in request.profiling_info:
            if str(p.status).rsplit(".", 1)[-1] != "EXECUTED":
                continue
            ms = p.real_time.total_seconds() * 1e3 / runs
            precision = kernel_precision(p.exec_type)
            gemm = is_gemm(p.node_type)
            by_precision[f"{'gemm' if gemm else 'other'} {precision}"] += ms
            by_type[p.node_type] += ms
            if gemm and i == 0:
                gemm_nodes[precision] += 1
            if gemm and precision != "int8":
                floats[(p.node_name, p.node_type, p.exec_type)] += ms
    gflop = count_flops(path).flops / 1e9 if path.suffix == ".onnx" else None
    return Profile(
        model_dir=str(model_dir),
        label=label,
        hint=hint,
        isa=isa,
        wall_ms=statistics.median(walls),
        counted_ms=sum(by_type.values()),
        gflop=gflop,
        by_precision=dict(by_precision),
        by_type=dict(by_type),
        float_gemms=[(*k, v) for k, v in floats.most_common(12)] if gemm_nodes.get("int8") else [],
        gemm_nodes=dict(gemm_nodes),
    )


def _in_child(args: argparse.Namespace, isa: str) -> list[Profile]:
    """The same profiles under an ISA cap (oneDNN reads it at load: a fresh process)."""
    env = dict(os.environ, ONEDNN_MAX_CPU_ISA=isa, OV_CPU_MAX_ISA=isa)
    cmd = [
        sys.executable,
        __file__,
        *map(str, args.dirs),
        "--hint",
        args.hint,
        "--threads",
        str(args.threads),
        "--runs",
        str(args.runs),
        "--child-json",
        isa,
    ]
    out = subprocess.run(cmd, env=env, check=True, capture_output=True, text=True).stdout
    return [Profile(**p) for p in json.loads(out)]


def _share(part: float, whole: float) -> str:
    return f"{100 * part / whole:.0f}%" if whole > 0 else "-"


def markdown(profiles: list[Profile], command: str, header: list[str]) -> str:
    lines = ["# Encoder profile (OpenVINO CPU performance counters)", "", f"`{command}`", ""]
    lines += [f"- {h}" for h in header]
    lines += [
        "- ms per inference: `wall` is the median wall time with counters on; the columns "
        "split the counted node time (`counted`) by kernel precision, GEMM-class nodes "
        f"({', '.join(GEMM_TYPES)}, ConvolutionBackpropData and their quantized forms) "
        "first; GFLOP/s = graph GFLOP / time. Attention that OpenVINO fuses into `Subgraph` "
        "nodes (with the elementwise ops around it) counts as other",
        "",
        "| encoder | hint | ISA cap | wall ms | counted ms | GEMM ms (share) | GEMM precisions "
        "(ms) | other precisions (ms) | layout ms (Reorder/Transpose/Convert) | GEMM GFLOP/s | "
        "encoder GFLOP/s |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for p in profiles:
        gemm = ", ".join(
            f"{k.split(' ', 1)[1]} {v:.3g}"
            for k, v in sorted(p.by_precision.items(), key=lambda kv: -kv[1])
            if k.startswith("gemm ")
        )
        other = ", ".join(
            f"{k.split(' ', 1)[1]} {v:.3g}"
            for k, v in sorted(p.by_precision.items(), key=lambda kv: -kv[1])
            if k.startswith("other ")
        )
        layout = sum(p.by_type.get(t, 0.0) for t in LAYOUT_TYPES)
        rate = f"{p.gflop / p.gemm_ms * 1e3:.0f}" if p.gflop and p.gemm_ms else "-"
        whole = f"{p.gflop / p.wall_ms * 1e3:.0f}" if p.gflop else "-"
        lines.append(
            f"| {p.label} | {p.hint} | {p.isa or ''} | {p.wall_ms:.1f} | {p.counted_ms:.1f} | "
            f"{p.gemm_ms:.1f} ({_share(p.gemm_ms, p.counted_ms)}) | {gemm} | {other} | "
            f"{layout:.1f} ({_share(layout, p.counted_ms)}) | {rate} | {whole} |"
        )
    lines += ["", "## Time by op type (ms per inference, top 10 and the layout conversions)", ""]
    for p in profiles:
        top = sorted(p.by_type.items(), key=lambda kv: -kv[1])
        shown = top[:10] + [(t, p.by_type[t]) for t in LAYOUT_TYPES if t in dict(top[10:])]
        text = ", ".join(f"{t} {v:.1f} ({_share(v, p.counted_ms)})" for t, v in shown)
        cap = f" [{p.isa}]" if p.isa else ""
        lines.append(f"- {p.label}, hint {p.hint}{cap}: {text}")
    quantized = [p for p in profiles if p.float_gemms or p.gemm_nodes.get("int8")]
    if quantized:
        lines += ["", "## GEMM-class nodes of quantized graphs that ran in float", ""]
        for p in quantized:
            cap = f" [{p.isa}]" if p.isa else ""
            counts = ", ".join(f"{k} {v}" for k, v in sorted(p.gemm_nodes.items()))
            lines.append(
                f"- {p.label}, hint {p.hint}{cap}: executed GEMM nodes by precision: {counts}"
            )
            for name, kind, exec_type, ms in p.float_gemms:
                lines.append(
                    f"  - `{name}` {kind} `{exec_type}` {ms:.1f} ms ({_share(ms, p.counted_ms)})"
                )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "dirs",
        nargs="+",
        type=Path,
        metavar="DIR",
        help="model directories (their encoder), or graph files (.onnx, OpenVINO .xml)",
    )
    parser.add_argument(
        "--hint",
        default="default,f32",
        help="inference precision hints, comma-separated: default (the CPU's native: bf16 "
        "where it has it), f32, bf16",
    )
    parser.add_argument("--isa-cap", metavar="ISA", help="also profile under this oneDNN ISA cap")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--note", action="append", default=[], help="a line for the header")
    parser.add_argument("--output", type=Path, help="markdown file (a .json beside it)")
    parser.add_argument("--child-json", metavar="ISA", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    hints = [h for h in args.hint.split(",") if h]
    if args.child_json:
        found = [
            profile(d, h, args.threads, args.runs, args.child_json)
            for d in args.dirs
            for h in hints
        ]
        print(json.dumps([asdict(p) for p in found]))
        return 0
    from samedge.bench import library_versions, machine_info

    started = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    load_start = os.getloadavg()[0]
    profiles = [profile(d, h, args.threads, args.runs, None) for d in args.dirs for h in hints]
    if args.isa_cap:
        profiles += _in_child(args, args.isa_cap)
    load_end = os.getloadavg()[0]
    machine = machine_info()
    versions = library_versions()
    command = "python benchmarks/profile_encoder.py " + shlex.join(argv or sys.argv[1:])
    header = [
        f"{started}; machine: {machine['cpu']}, {machine['cores']} logical CPUs, flags "
        f"{', '.join(machine['cpu_flags'])}; {args.threads} threads, {args.runs} profiled runs "
        f"after one warm-up; 1-min load average {load_start:.2f} at the start, {load_end:.2f} "
        "at the end",
        f"versions: openvino {versions.get('openvino', '?')}, samedge {versions.get('samedge')}",
        *args.note,
    ]
    text = markdown(profiles, command, header)
    if args.output:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(text)
        args.output.with_suffix(".json").write_text(
            json.dumps(
                {"command": command, "header": header, "profiles": [asdict(p) for p in profiles]},
                indent=2,
            )
            + "\n"
        )
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
