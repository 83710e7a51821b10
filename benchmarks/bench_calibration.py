"""Compare the INT8 calibration engines (and FP16) on accuracy, cost and speed.

For each model: the FP32 encoder, its FP16 conversion, and one INT8 Q/DQ
encoder per calibration engine (NNCF, ONNX Runtime's quantize_static), all
calibrated on the same synthetic frames and measured against FP32 on the same
held-out frames with :class:`samedge.calibration.Reference` (embedding cosine
and SQNR, mask IoU of the FP32 decoder over the fixed prompt set: the gate's
numbers). Each engine runs in its own process so its peak resident memory is
its own. Encoder latency (median of ``--runs`` after a warm-up) on ONNX
Runtime, on OpenVINO with its CPU default (bf16 where the CPU has bf16 units)
and with an f32 hint, and, with ``--vnni-cap``, on OpenVINO with oneDNN capped
to AVX-512 VNNI (``ONEDNN_MAX_CPU_ISA=AVX512_CORE_VNNI``, f32 hint): the
edge-x86 case without bf16/AMX units.

Results: ``benchmarks/results/<machine>/calibration.json`` and ``.md``. With
``--builds`` it instead runs the whole ``samedge build`` (FP16 and INT8) per
model, checks each directory loads in ``samedge.Predictor`` on ONNX Runtime and
OpenVINO, and records the build reports (``--name calibration_builds``).

Example:
    python benchmarks/bench_calibration.py --models samedge_tiny mobile_sam --vnni-cap

Weights are random unless a model directory is passed (``--model-dir NAME=DIR``)
or ``samedge_tiny``'s trained weights ship in the package.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import logging
import multiprocessing as mp
import os
import shlex
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _files import write_atomic

import samedge
from samedge import graph_names
from samedge.bench import machine_name
from samedge.calibration import (
    GateConfig,
    Int8Config,
    Int8Method,
    Reference,
    convert_fp16,
    encoder_inputs,
    quantize_int8,
    read_frames,
)
from samedge.model_dir import read_model_dir

log = logging.getLogger("bench_calibration")
RESULTS = Path(__file__).resolve().parent / "results"


def _model_dir(name: str, given: dict[str, Path], work: Path) -> tuple[Path, str]:
    """The FP32 directory of ``name`` and where its weights come from."""
    if name in given:
        return given[name], f"directory {given[name]}"
    if name == "samedge_tiny":
        from samedge.predictor import BUILTIN_MODELS

        shipped = Path(samedge.__file__).resolve().parent / BUILTIN_MODELS[name]
        if (shipped / "samedge.json").is_file():
            return shipped, "shipped trained weights"
    out = work / name
    if not (out / "samedge.json").is_file():
        from samedge.exporters import ExportConfig, export_model

        export_model(name, None, out, config=ExportConfig(progress=False), force=True)
    return out, "random weights (seed 0)"


def _peak_rss_gb() -> float | None:
    """This process's peak resident memory (VmHWM).

    Not ``ru_maxrss``: Linux carries that across fork and exec, so a spawned
    child would report its parent's peak.
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 2**20, 2)
    except OSError:
        pass
    return None


def _reset_peak_rss() -> None:
    """Restart this process's VmHWM from its current RSS (Linux >= 4.0)."""
    with contextlib.suppress(OSError):
        Path("/proc/self/clear_refs").write_text("5")


def _quantize_child(src: str, dst: str, inputs_path: str, method: str, queue: Any) -> None:
    try:
        inputs = list(np.load(inputs_path)["x"])
        t0 = time.perf_counter()
        result = quantize_int8(src, dst, inputs, Int8Config(method=Int8Method(method)))
        queue.put(
            {
                "seconds": round(time.perf_counter() - t0, 1),
                "peak_rss_gb": _peak_rss_gb(),
                "qdq": result.qdq.to_dict(),
            }
        )
    except Exception as e:  # reported in the results, not raised: other engines still run
        queue.put({"error": f"{type(e).__name__}: {e}"})


def _quantize(src: Path, dst: Path, inputs_path: Path, method: str) -> dict[str, Any]:
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(
        target=_quantize_child, args=(str(src), str(dst), str(inputs_path), method, queue)
    )
    proc.start()
    result = queue.get()
    proc.join()
    return result


_MODELOPT_RUNNER = """
import runpy, sys
sys.argv = ["modelopt.onnx.quantization", *sys.argv[1:]]
try:
    runpy.run_module("modelopt.onnx.quantization", run_name="__main__")
finally:
    hwm = [l for l in open("/proc/self/status") if l.startswith("VmHWM:")]
    print("PEAK_RSS_KB", hwm[0].split()[1] if hwm else 0)
"""


def _quantize_modelopt(python: str, src: Path, dst: Path, inputs_path: Path) -> dict[str, Any]:
    """NVIDIA ModelOpt's ONNX INT8 PTQ, run in its own environment.

    nvidia-modelopt[onnx] pins onnx and onnxruntime-gpu versions that conflict
    with samedge's, so it cannot share the environment; its output file is
    measured here like the others, and checked against TensorRT's Q/DQ rules.
    """
    import shutil
    import subprocess

    from samedge.calibration import check_qdq

    # ModelOpt writes shape-inference results back into its --onnx_path: give
    # it a copy, never the model directory (it once rewrote the shipped
    # samedge_tiny encoder this way).
    copy = dst.with_name(dst.stem + ".input.onnx")
    shutil.copyfile(src, copy)
    src = copy
    data = dst.with_suffix(".calib.npz")
    x = np.load(inputs_path)["x"]
    np.savez(data, image=x.reshape(-1, *x.shape[2:]))
    cmd = [
        python, "-c", _MODELOPT_RUNNER, "--onnx_path", str(src), "--quantize_mode", "int8",
        "--calibration_data_path", str(data), "--calibration_method", "max",
        "--calibration_eps", "cpu", "--high_precision_dtype", "fp32", "--output_path", str(dst),
    ]  # fmt: skip
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    seconds = round(time.perf_counter() - t0, 1)
    if proc.returncode != 0 or not dst.is_file():
        return {"error": f"modelopt exited {proc.returncode}: {proc.stderr.strip()[-300:]}"}
    rss = [ln.split()[1] for ln in proc.stdout.splitlines() if ln.startswith("PEAK_RSS_KB")]
    out: dict[str, Any] = {"seconds": seconds}
    if rss:
        out["peak_rss_gb"] = round(int(rss[0]) / 2**20, 2)
    import onnx

    try:
        out["qdq"] = check_qdq(onnx.load(str(dst)), str(dst)).to_dict()
    except Exception as e:  # recorded: the file is measured even if TensorRT would refuse it
        out["tensorrt_rules"] = f"violated: {e}"
    return out


def _time_child(paths: dict[str, str], runs: int, threads: int, queue: Any) -> None:
    """Time encoders on OpenVINO with an f32 hint (run under a capped oneDNN ISA).

    Puts ``{variant: (median ms, precision it ran in)}`` on ``queue``.
    """
    from samedge.runtimes import InferencePrecision, OpenVinoConfig, open_backend

    out = {}
    x = np.random.default_rng(0).uniform(0, 255, (1, 3, 1024, 1024)).astype(np.float32)
    for key, path in paths.items():
        config = OpenVinoConfig(
            inference_precision=InferencePrecision.FP32, num_threads=threads, use_cache=False
        )
        with open_backend(path, "openvino", config=config) as engine:
            size = engine.inputs[0].shape[-1]
            xs = x[:, :, :size, :size].copy()
            out[key] = (_median_ms(engine, xs, runs), ran_in("openvino", engine.precision, path))
    queue.put(out)


def _median_ms(engine: Any, x: np.ndarray, runs: int) -> float:
    engine.infer({graph_names.IMAGE: x})
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        engine.infer({graph_names.IMAGE: x})
        times.append((time.perf_counter() - t0) * 1000)
    return round(statistics.median(times), 2)


def _latencies(path: Path, x: np.ndarray, runs: int, threads: int) -> dict[str, float]:
    from samedge.runtimes import InferencePrecision, OpenVinoConfig, OrtConfig, open_backend

    out = {}
    variants = [
        ("onnxruntime", "onnxruntime", OrtConfig(intra_op_threads=threads)),
        ("openvino/default", "openvino", OpenVinoConfig(num_threads=threads, use_cache=False)),
        (
            "openvino/f32",
            "openvino",
            OpenVinoConfig(
                num_threads=threads, inference_precision=InferencePrecision.FP32, use_cache=False
            ),
        ),
    ]
    for label, backend, config in variants:
        with open_backend(path, backend, config=config) as engine:
            out[label] = _median_ms(engine, x, runs)
            out[f"{label} precision"] = ran_in(backend, engine.precision, path)
    return out


def ran_in(backend: str, reported: str, path: str | os.PathLike[str]) -> str:
    """The precision an encoder's latency on ``backend`` was measured in, for its label.

    OpenVINO reports what it compiled (bf16 by default on CPUs with bf16
    units, int8 for a Q/DQ graph): ``reported`` is kept. ONNX Runtime computes
    in the graph's own types, but its backend reads samedge's
    ``samedge.precision`` metadata first, and ``convert_fp16`` and
    ``quantize_int8`` carry the FP32 source's metadata into their output: the
    graph itself (Q/DQ nodes, initializer types) decides here, as it does for
    a ``samedge build`` directory, whose metadata says what it holds.
    """
    if backend != "onnxruntime":
        return reported
    from samedge.runtimes._graph import read_onnx_summary

    summary = read_onnx_summary(path)
    untagged = {k: v for k, v in summary.metadata.items() if k != "samedge.precision"}
    return replace(summary, metadata=untagged).precision


def _capped(paths: dict[str, Path], runs: int, threads: int) -> dict[str, tuple[float, str]]:
    env_before = os.environ.get("ONEDNN_MAX_CPU_ISA")
    os.environ["ONEDNN_MAX_CPU_ISA"] = "AVX512_CORE_VNNI"
    try:
        ctx = mp.get_context("spawn")
        queue = ctx.Queue()
        proc = ctx.Process(
            target=_time_child, args=({k: str(v) for k, v in paths.items()}, runs, threads, queue)
        )
        proc.start()
        result = queue.get()
        proc.join()
        return result
    finally:
        if env_before is None:
            os.environ.pop("ONEDNN_MAX_CPU_ISA", None)
        else:
            os.environ["ONEDNN_MAX_CPU_ISA"] = env_before


def bench_model(name: str, args: argparse.Namespace, given: dict[str, Path]) -> dict[str, Any]:
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    src, weights = _model_dir(name, given, work)
    card = read_model_dir(src)
    frames = read_frames("synthetic", args.frames, heldout=args.heldout)
    inputs = encoder_inputs(frames.calibration, card)
    inputs_path = work / f"{name}.calib.npz"
    np.savez(inputs_path, x=np.stack(inputs))
    ref = Reference.compute(card, src / card.encoder, src / card.decoder, frames.heldout)
    gate = GateConfig()
    rows: list[dict[str, Any]] = []
    files: dict[str, Path] = {"fp32": src / card.encoder}

    t0 = time.perf_counter()
    feeds = [{graph_names.IMAGE: inputs[0]}]
    fp16 = convert_fp16(src / card.encoder, work / f"{name}.fp16.onnx", feeds)
    rows.append({"variant": "fp16", "seconds": round(time.perf_counter() - t0, 1),
                 "fp32_kept": fp16.summary()})  # fmt: skip
    files["fp16"] = fp16.output
    for method in args.methods:
        dst = work / f"{name}.int8.{method}.onnx"
        if method == "modelopt":
            if not args.modelopt_python:
                continue
            result = _quantize_modelopt(args.modelopt_python, src / card.encoder, dst, inputs_path)
        else:
            result = _quantize(src / card.encoder, dst, inputs_path, method)
        rows.append({"variant": f"int8/{method}", **result})
        if "error" not in result:
            files[f"int8/{method}"] = dst
    rows.insert(0, {"variant": "fp32"})
    x = inputs[0]
    for row in rows:
        path = files.get(row["variant"])
        if path is None:
            continue
        if row["variant"] != "fp32":
            fid = ref.compare(path, src / card.decoder)
            verdict = gate.check(fid.mean_iou, fid.p5_iou, fid.cosine_min)
            row.update(fidelity=fid.to_dict(), gate_passed=verdict.passed)
        row["latency_ms"] = _latencies(path, x, args.runs, args.threads)
    if args.vnni_cap:
        capped = _capped({k: v for k, v in files.items() if k != "fp16"}, args.runs, args.threads)
        for row in rows:
            if row["variant"] in capped:
                ms, precision = capped[row["variant"]]
                row["latency_ms"]["openvino/f32 VNNI-cap"] = ms
                row["latency_ms"]["openvino/f32 VNNI-cap precision"] = precision
    return {
        "model": name,
        "weights": weights,
        "image_size": card.image_size,
        "calibration_frames": args.frames,
        "heldout_frames": args.heldout,
        "rows": rows,
    }


def _loads_on(model_dir: Path) -> dict[str, str]:
    """Run one frame and one click through ``samedge.Predictor`` on each CPU backend."""
    from samedge import Predictor

    frame = np.random.default_rng(0).integers(0, 255, (480, 640, 3), np.uint8)
    out = {}
    for backend in ("onnxruntime", "openvino"):
        try:
            with Predictor(model_dir, backend=backend) as predictor:
                predictor.set_image(frame)
                masks, _, _ = predictor.predict(
                    point_coords=np.array([[320, 240]]), point_labels=np.array([1])
                )
                out[backend] = f"ok ({predictor.precision}, masks {list(masks.shape)})"
        except Exception as e:  # recorded, not raised: the table shows what failed
            out[backend] = f"failed: {type(e).__name__}: {e}"
    return out


def run_builds(args: argparse.Namespace, given: dict[str, Path]) -> dict[str, Any]:
    """``samedge build`` for each model and precision, with its report and a load check."""
    from samedge.calibration import BuildConfig, BuildReport, GateError, Precision, build

    work = Path(args.work)
    records = []
    for name in args.models:
        src, weights = _model_dir(name, given, work)
        for precision in ("fp16", "int8"):
            out = work / "builds" / f"{name}_{precision}"
            config = BuildConfig(
                precision=Precision(precision),
                frames=args.frames,
                heldout=args.heldout,
                speed_runs=args.runs,
                attention_int8=not args.no_attention_int8,
                gate=GateConfig(max_gt_miou_drop=args.max_gt_miou_drop),
            )
            _reset_peak_rss()
            t0 = time.perf_counter()
            try:
                report = build(src, out, config, force=True)
                record = {"report": report.to_dict(), "summary": report.summary()}
                record["loads_on"] = _loads_on(out)
            except GateError as e:
                # The gate's message says which gate, what it missed and what was measured.
                failed = BuildReport.from_dict(e.report)
                record = {"report": e.report, "summary": f"{e}\n{failed.summary()}"}
            record.update(model=name, weights=weights, precision=precision,
                          seconds=round(time.perf_counter() - t0, 1),
                          peak_rss_gb=_peak_rss_gb())  # fmt: skip
            records.append(record)
    return {"builds": records}


def _builds_markdown(result: dict[str, Any]) -> str:
    lines = [
        f"# samedge build on {result['machine']}",
        "",
        f"`{result['command']}` ({result['date']})",
        "",
    ]
    for rec in result["builds"]:
        lines += [
            f"## {rec['model']} {rec['precision']} ({rec['weights']}, {rec['seconds']} s, "
            f"peak RSS {rec.get('peak_rss_gb')} GB)",
            "",
        ]
        lines += ["```", rec["summary"], "```", ""]
        for backend, state in rec.get("loads_on", {}).items():
            lines.append(f"- Predictor on {backend}: {state}")
        lines.append("")
    if result.get("notes"):
        lines += ["## Notes", "", *[f"- {n}" for n in result["notes"]], ""]
    return "\n".join(lines)


def _markdown(result: dict[str, Any]) -> str:
    lines = [
        f"# Calibration engines on {result['machine']}",
        "",
        f"`{result['command']}` ({result['date']}); {result['threads']} threads; "
        f"synthetic calibration frames, accuracy vs FP32 on held-out frames "
        f"(mask IoU: FP32 decoder, 24 prompts × 4 masks per frame).",
        "",
    ]
    for model in result["models"]:
        if model.get("superseded"):
            # Rows kept in the JSON for the record, no longer current: say where the current are.
            lines += [f"## {model['model']}", "", model["superseded"], ""]
            continue
        lines += [
            f"## {model['model']} ({model['weights']}, {model['image_size']} px, "
            f"{model['calibration_frames']} calibration / {model['heldout_frames']} held-out)",
            "",
        ]
        keys: list[str] = []
        for row in model["rows"]:
            for k in row.get("latency_ms", {}):
                if k not in keys and not k.endswith(" precision"):
                    keys.append(k)
        head = (
            "| variant | cos mean / min | SQNR dB | IoU mean / p5 / worst | gate "
            "| TensorRT Q/DQ rules | calib s | peak GB |"
        )
        lines += [head + "".join(f" {k} ms |" for k in keys)]
        lines += ["|" + " --- |" * (8 + len(keys))]
        for row in model["rows"]:
            f = row.get("fidelity")
            if "error" in row:
                lines.append(f"| {row['variant']} | error: {row['error'][:80]} |")
                continue
            acc = (
                f"{f['cosine_mean']:.4f} / {f['cosine_min']:.4f} | {f['sqnr_mean_db']:.1f} | "
                f"{f['mean_iou']:.3f} / {f['p5_iou']:.3f} / {f['worst_iou']:.3f} | "
                f"{'pass' if row['gate_passed'] else 'FAIL'}"
                if f
                else "reference | | | "
            )
            rules = "ok" if "qdq" in row else row.get("tensorrt_rules", "")
            lat = row.get("latency_ms", {})
            cells = "".join(
                f" {lat.get(k, '')}"
                + (f" ({lat[k + ' precision']})" if k + " precision" in lat else "")
                + " |"
                for k in keys
            )
            lines.append(
                f"| {row['variant']} | {acc} | {rules} | {row.get('seconds', '')} | "
                f"{row.get('peak_rss_gb', '')} |{cells}"
            )
        lines.append("")
    if result.get("notes"):
        lines += ["## Notes", "", *[f"- {n}" for n in result["notes"]], ""]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", nargs="+", default=["samedge_tiny", "mobile_sam"])
    parser.add_argument(
        "--model-dir", action="append", default=[], metavar="NAME=DIR", help="use this fp32 dir"
    )
    parser.add_argument("--methods", nargs="+", default=["nncf", "onnxruntime", "modelopt"])
    parser.add_argument(
        "--modelopt-python",
        default=None,
        help="python of an environment with nvidia-modelopt[onnx] (it conflicts with "
        "samedge's onnx/onnxruntime pins); without it ModelOpt is skipped",
    )
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--heldout", type=int, default=4)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--vnni-cap", action="store_true", help="also time with oneDNN capped")
    parser.add_argument("--work", default="/tmp/samedge-bench-calibration")
    parser.add_argument("--name", default="calibration", help="results file stem")
    parser.add_argument("--note", action="append", default=[], help="note for the results")
    parser.add_argument(
        "--no-attention-int8", action="store_true", help="--builds: keep attention in float"
    )
    parser.add_argument(
        "--max-gt-miou-drop", type=float, default=None, help="--builds: ground-truth gate"
    )
    parser.add_argument(
        "--builds",
        action="store_true",
        help="instead: run `samedge build` fp16 and int8 per model, record reports and loads",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    given = {k: Path(v) for k, v in (s.split("=", 1) for s in args.model_dir)}
    import nncf
    import onnxruntime
    import openvino

    result: dict[str, Any] = {
        "machine": machine_name(),
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "command": shlex.join(["python", "benchmarks/bench_calibration.py", *sys.argv[1:]]),
        "threads": args.threads,
        "versions": {
            "samedge": samedge.__version__,
            "nncf": nncf.__version__,
            "onnxruntime": onnxruntime.__version__,
            "openvino": openvino.__version__,
        },
        "notes": args.note,
        "models": [],
    }
    out_dir = RESULTS / result["machine"]
    out_dir.mkdir(parents=True, exist_ok=True)
    if args.builds:
        result.pop("models")
        result.update(run_builds(args, given))
        path = out_dir / f"{args.name}.json"
        write_atomic(path, json.dumps(result, indent=2) + "\n")
        write_atomic(out_dir / f"{args.name}.md", _builds_markdown(result))
        print(_builds_markdown(result))
        return path
    for name in args.models:
        log.info("benchmarking %s", name)
        result["models"].append(bench_model(name, args, given))
    path = out_dir / f"{args.name}.json"
    write_atomic(path, json.dumps(result, indent=2) + "\n")
    write_atomic(out_dir / f"{args.name}.md", _markdown(result))
    print(_markdown(result))
    return path


if __name__ == "__main__":
    main()
