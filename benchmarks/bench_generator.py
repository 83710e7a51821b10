"""Segment everything: samedge's MaskGenerator against SamAutomaticMaskGenerator, and chunk sizes.

Two measurements, both on one 480×640 procedural scene and random weights
(speed does not depend on weight values; models are exported once into
``--work`` and reused):

``chunks``
    Whole-image generation time per ``points_per_batch`` (16 ... 256) for each
    model and backend, SAM's default thresholds on a 16×16 grid (256 points, a
    multiple of every size), the sizes interleaved round after round so that
    other load on the machine spreads over all of them. The fastest size
    per backend is what :data:`samedge.generator.DEFAULT_POINTS_PER_BATCH`
    holds. Writes ``generator_chunks.md`` / ``.json``.

``peers``
    Whole-image generation time of samedge (ONNX Runtime and OpenVINO, the
    backends' measured default chunk) and of segment_anything's
    ``SamAutomaticMaskGenerator`` in PyTorch, in the same process, on the same
    weights and image. Two parameter sets: SAM's defaults (random weights'
    predicted IoUs are low, so nearly every mask is filtered: this times the
    grid's decoding) and relaxed thresholds that keep masks (this also times
    upsampling, stability, NMS and RLE of what survives). SAM ViT-B runs a
    16×16 grid (``--vit-b-points``): its PyTorch generator takes minutes per
    image at 32×32 on a 2-core CPU. samedge's time is split by where it goes
    (encoder, decoder calls, upsampling of the masks that can survive, and the
    rest: stability scores, boxes, NMS, records). Writes ``bench_generator.md`` / ``.json``.

Examples::

    nice python benchmarks/bench_generator.py chunks --results benchmarks/results/amd-epyc-2c
    nice python benchmarks/bench_generator.py peers --results benchmarks/results/amd-epyc-2c
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import shlex
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from _files import write_atomic

import samedge
from samedge import GeneratorConfig, MaskGenerator, Predictor
from samedge._image_prompter import ImagePrompter, as_prompter
from samedge.bench import library_versions, machine_info
from samedge.predictor import resolve_model
from samedge.scenes import make_scene

CHUNKS = (16, 32, 64, 128, 256)
BACKENDS = ("onnxruntime", "openvino")
FRAME = (480, 640)
# Random weights' scores: masks survive with a small stability offset and no box NMS.
RELAXED: dict[str, Any] = {
    "pred_iou_thresh": 0.0,
    "stability_score_offset": 0.05,
    "stability_score_thresh": 0.5,
    "box_nms_thresh": 1.0,
}


def _image() -> np.ndarray:
    return make_scene(np.random.default_rng(2026), FRAME, num_objects=8).image


def _model_dir(name: str, work: Path) -> tuple[Path, Path | None]:
    """An exported random-weight model directory (made once) and its checkpoint."""
    if name == "samedge_tiny":
        return resolve_model(name), Path("training/samedge_tiny.pt")
    import torch

    from samedge.exporters import ExportConfig, export_model
    from samedge.exporters.builders import resolve_builder

    out = work / name
    ckpt = work / f"{name}.pth"
    if not (out / "samedge.json").is_file():
        spec = samedge.get_model_spec(name)
        torch.save(resolve_builder(spec)(None, seed=0).state_dict(), ckpt)
        export_model(spec, ckpt, out, config=ExportConfig(progress=False, verify=False))
    return out, ckpt


class _TimedPrompter(ImagePrompter):
    """A prompter that adds up the seconds spent encoding, decoding and upsampling."""

    def __init__(self, predictor: Any) -> None:
        self.inner = as_prompter(predictor)
        self.predictor = self.inner.predictor
        self.seconds: dict[str, float] = {}

    def _add(self, what: str, start: float) -> None:
        self.seconds[what] = self.seconds.get(what, 0.0) + time.perf_counter() - start

    def set_image(self, image: np.ndarray) -> None:
        start = time.perf_counter()
        self.inner.set_image(image)
        self._add("encoder", start)

    def decode_points(self, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        start = time.perf_counter()
        out = self.inner.decode_points(points)
        self._add("decoder", start)
        return out

    def upscale(self, low_res: np.ndarray) -> np.ndarray:
        start = time.perf_counter()
        out = self.inner.upscale(low_res)
        self._add("upsample", start)
        return out


def _time(fn: Callable[[], Any], runs: int) -> tuple[float, Any]:
    times, result = [], None
    for _ in range(runs):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def _header(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "command": shlex.join(["python", "benchmarks/bench_generator.py", *sys.argv[1:]]),
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": machine_info(),
        "versions": {"samedge": samedge.__version__, **library_versions()},
        "frame": list(FRAME),
        "runs": args.runs,
    }


def run_chunks(args: argparse.Namespace) -> dict[str, Any]:
    """Each chunk size in turn, round after round, so other load spreads over all of them."""
    header = _header(args)  # the machine's load before this run adds its own
    image = _image()
    rows: list[dict[str, Any]] = []
    notes: list[str] = []
    for name in args.models:
        directory, _ = _model_dir(name, args.work)
        for backend in args.backends:
            with Predictor(directory, backend=backend) as predictor:
                encode, _ = _time(lambda p=predictor: p.set_image(image), args.runs)
                # ONNX Runtime's decoder needs ~14 embeddings' worth of memory per point
                # (55 MiB for MobileSAM): larger calls than --max-gib allows are left out.
                per_point = 14 * 4 * math.prod(predictor.card.embedding_shape)
                sizes = [c for c in args.chunks if c * per_point <= args.max_gib * 2**30]
                skipped = sorted(set(args.chunks) - set(sizes))
                if skipped:
                    notes.append(
                        f"{name}: {', '.join(map(str, skipped))} points per call left out "
                        f"(over {args.max_gib:g} GiB of decoder memory at "
                        f"{per_point / 2**20:.0f} MiB per point)"
                    )
                generators = {
                    chunk: MaskGenerator(
                        predictor,
                        GeneratorConfig(points_per_side=args.grid, points_per_batch=chunk),
                    )
                    for chunk in sizes
                }
                for gen in generators.values():
                    gen.generate(image)  # warm-up: this batch size's shapes
                times: dict[int, list[float]] = {chunk: [] for chunk in sizes}
                for _ in range(args.runs):
                    for chunk, gen in generators.items():
                        start = time.perf_counter()
                        gen.generate(image)
                        times[chunk].append(time.perf_counter() - start)
                for chunk, seconds in times.items():
                    rows.append(
                        {
                            "model": name,
                            "backend": backend,
                            "points_per_batch": chunk,
                            "min_s": round(min(seconds), 3),
                            "median_s": round(statistics.median(seconds), 3),
                            "decode_min_s": round(min(seconds) - encode, 3),
                        }
                    )
                    print(rows[-1], flush=True)
    return {**header, "grid": args.grid, "rows": rows, "notes": sorted(set(notes)), **_end()}


def run_peers(args: argparse.Namespace) -> dict[str, Any]:
    import torch
    from segment_anything import SamAutomaticMaskGenerator

    from samedge.exporters.builders import resolve_builder

    torch.set_num_threads(args.threads)
    header = _header(args)  # the machine's load before this run adds its own
    image = _image()
    rows = []
    for name in args.models:
        directory, ckpt = _model_dir(name, args.work)
        points = args.vit_b_points if name.startswith("sam_vit") else args.mobile_points
        sam = resolve_builder(samedge.get_model_spec(name))(ckpt).eval()
        sets = [("SAM defaults", {}), ("relaxed", RELAXED)]
        for label, params in sets if name not in args.defaults_only else sets[:1]:
            cfg = {"points_per_side": points, **params}
            with torch.no_grad():
                ref = SamAutomaticMaskGenerator(sam, **cfg)
                ref.predictor.set_image(image)  # warm-up
                peer, peer_masks = _time(lambda r=ref: r.generate(image), args.runs)
            row: dict[str, Any] = {
                "model": name,
                "params": label,
                "points_per_side": points,
                "segment_anything_s": round(peer, 2),
                "segment_anything_masks": len(peer_masks),
            }
            for backend in args.backends:
                with Predictor(directory, backend=backend) as predictor:
                    timed = _TimedPrompter(predictor)
                    gen = MaskGenerator(timed, GeneratorConfig(**cfg))
                    gen.generate(image)  # warm-up: engine load and compile
                    timed.seconds.clear()
                    ours, our_masks = _time(lambda g=gen: g.generate(image), args.runs)
                    parts = {k: v / args.runs for k, v in timed.seconds.items()}
                    parts["rest"] = max(0.0, ours - sum(parts.values()))
                    row[f"{backend}_s"] = round(ours, 2)
                    for part in ("encoder", "decoder", "upsample", "rest"):
                        row[f"{backend}_{part}_s"] = round(parts.get(part, 0.0), 2)
                    row[f"{backend}_masks"] = len(our_masks)
                    row[f"{backend}_speedup"] = round(peer / ours, 1)
                    row[f"{backend}_points_per_batch"] = gen.points_per_batch
            rows.append(row)
            print(row, flush=True)
            if args.results is not None:  # each row as it comes: a long run keeps what it did
                _write(args, {**header, "torch_threads": args.threads, "rows": rows, **_end()})
    return {**header, "torch_threads": args.threads, "rows": rows, **_end()}


def _end() -> dict[str, Any]:
    """The machine's load when the run ended (others' jobs show here)."""
    return {"load_average_1min_at_end": round(os.getloadavg()[0], 2)}


def _table(rows: list[dict[str, Any]], columns: list[tuple[str, str]]) -> list[str]:
    lines = [
        "| " + " | ".join(title for _, title in columns) + " |",
        "|" + "---|" * len(columns),
    ]
    for r in rows:
        lines.append("| " + " | ".join(str(r.get(key, "")) for key, _ in columns) + " |")
    return lines


def _setup(record: dict[str, Any]) -> list[str]:
    m = record["machine"]
    versions = ", ".join(f"{k} {v}" for k, v in record["versions"].items())
    return [
        f"Machine: {m['name']} ({m['cpu']}, {m['cores']} cores, load average "
        f"{m.get('load_average_1min', '?')} at the start, "
        f"{record.get('load_average_1min_at_end', '?')} at the end), {record['date']}.",
        f"Versions: {versions}.",
        f"Command: `{record['command']}`",
        "",
        f"Frame {record['frame'][0]}×{record['frame'][1]}, procedural scene, random weights "
        f"(samedge_tiny: its trained weights); median of {record['runs']} run(s) after one "
        "warm-up.",
        "",
    ]


def markdown_chunks(record: dict[str, Any]) -> str:
    grid = record["grid"]
    lines = [
        "# Automatic mask generation: points per decoder call",
        "",
        *_setup(record),
        f"Whole-image `MaskGenerator.generate`, SAM's default thresholds, a {grid}×{grid} "
        f"grid ({grid * grid} points, a multiple of every size), the sizes interleaved round "
        "after round; `decode` subtracts the encoder's time. The minimum is the number to "
        "compare: other processes shared the 2 cores (see the load average).",
        "",
        *_table(
            record["rows"],
            [
                ("model", "model"),
                ("backend", "backend"),
                ("points_per_batch", "points per batch"),
                ("min_s", "min s"),
                ("median_s", "median s"),
                ("decode_min_s", "decode (min) s"),
            ],
        ),
        "",
        *[f"Note: {n}." for n in record.get("notes", [])],
        "",
        "Fastest (minimum) per model and backend:",
        "",
    ]
    best: dict[tuple[str, str], dict[str, Any]] = {}
    for r in record["rows"]:
        key = (r["model"], r["backend"])
        if key not in best or r["min_s"] < best[key]["min_s"]:
            best[key] = r
    for (model, backend), r in sorted(best.items()):
        lines.append(f"- {model} on {backend}: {r['points_per_batch']} ({r['min_s']} s)")
    return "\n".join(lines) + "\n"


def markdown_peers(record: dict[str, Any]) -> str:
    columns = [
        ("model", "model"),
        ("params", "parameters"),
        ("points_per_side", "grid"),
        ("segment_anything_s", "SamAutomaticMaskGenerator s"),
    ]
    for backend in BACKENDS:
        if any(f"{backend}_s" in r for r in record["rows"]):
            columns += [
                (f"{backend}_s", f"samedge {backend} s"),
                (f"{backend}_speedup", "speed-up"),
            ]
    columns += [(f"{b}_points_per_batch", f"chunk ({b})") for b in BACKENDS]
    columns += [("segment_anything_masks", "masks (SAM)")]
    columns += [(f"{b}_masks", f"masks ({b})") for b in BACKENDS]
    relaxed = ", ".join(f"{k}={v}" for k, v in RELAXED.items())
    breakdown = [("model", "model"), ("params", "parameters")]
    for backend in BACKENDS:
        if any(f"{backend}_decoder_s" in r for r in record["rows"]):
            breakdown += [
                (f"{backend}_{part}_s", f"{backend} {part} s")
                for part in ("encoder", "decoder", "upsample", "rest")
            ]
    lines = [
        "# Automatic mask generation: samedge vs SamAutomaticMaskGenerator",
        "",
        *_setup(record),
        f"PyTorch with {record['torch_threads']} threads. 'relaxed' = {relaxed} (random "
        "weights' scores fall below SAM's defaults). Grids as in the table: smaller than "
        "SAM's 32×32 because SamAutomaticMaskGenerator takes minutes per image at 32×32 on "
        "this 2-core CPU (SAM ViT-B in particular). samedge uses its default points per "
        "decoder call for the backend and model (the `chunk` columns).",
        "",
        *_table(record["rows"], columns),
        "",
        "Where samedge's time goes (per image): the encoder, the decoder calls, upsampling "
        "the masks that can survive the filters to the frame, and the rest (stability "
        "scores, boxes, NMS, records).",
        "",
        *_table(record["rows"], breakdown),
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=("chunks", "peers"))
    parser.add_argument("--models", nargs="+", help="default: chunks samedge_tiny mobile_sam, "
                        "peers mobile_sam sam_vit_b")  # fmt: skip
    parser.add_argument("--backends", nargs="+", default=list(BACKENDS), choices=BACKENDS)
    parser.add_argument("--chunks", nargs="+", type=int, default=list(CHUNKS))
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2, help="PyTorch threads (peers)")
    parser.add_argument("--vit-b-points", type=int, default=16)
    parser.add_argument("--mobile-points", type=int, default=32)
    parser.add_argument(
        "--defaults-only", nargs="*", default=[], help="models timed with SAM's defaults only"
    )
    parser.add_argument("--grid", type=int, default=16, help="points per side (chunks)")
    parser.add_argument("--max-gib", type=float, default=4.0, help="decoder memory cap (chunks)")
    parser.add_argument("--work", type=Path, default=Path("/tmp/samedge-bench-generator"))
    parser.add_argument("--results", type=Path, help="write the .md/.json into this folder")
    args = parser.parse_args(argv)
    if args.models is None:
        args.models = (
            ["samedge_tiny", "mobile_sam"] if args.what == "chunks" else ["mobile_sam", "sam_vit_b"]
        )
    args.work.mkdir(parents=True, exist_ok=True)
    if args.what == "chunks":
        record, page = run_chunks(args), markdown_chunks
    else:
        record, page = run_peers(args), markdown_peers
    print(page(record))
    if args.results is not None:
        _write(args, record)
    return 0


def _write(args: argparse.Namespace, record: dict[str, Any]) -> None:
    if args.what == "chunks":
        page, stem = markdown_chunks, "generator_chunks"
    else:
        page, stem = markdown_peers, "bench_generator"
    write_atomic(args.results / f"{stem}.json", json.dumps(record, indent=2) + "\n")
    write_atomic(args.results / f"{stem}.md", page(record))


if __name__ == "__main__":
    raise SystemExit(main())
