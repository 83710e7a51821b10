"""Whole-tracker parity report: samedge's MemoryTracker vs Meta's SAM2VideoPredictor.

Exports ``MODEL`` with random weights (seed 0), tracks the issue's clip (three
objects on frame 0, a fourth on frame 5, a correction on frame 6, a removal on
frame 8) with both, and writes the per-frame mask IoU and logit difference to
``benchmarks/results/<machine>/sam2_parity.{md,json}``.

Usage:
    nice python benchmarks/sam2_parity.py [MODEL] [--frames 16] [--machine amd-epyc-2c]
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import sys
import tempfile
import time
from pathlib import Path

from samedge._io import atomic_write_text
from samedge.exporters import export_model
from samedge.exporters._sam2_video_parity import VideoParityReport, standard_clip, video_parity
from samedge.exporters.export import ExportConfig, resolve_spec

RESULTS = Path(__file__).resolve().parent / "results"
CLIP = (
    "Clip: 16 frames of `samedge.scenes.MovingScene(seed=3, size=(480, 640), num_objects=4)`; "
    "objects 1 (a click), 2 (a box) and 3 (two clicks and a negative) prompted on frame 0, "
    "object 4 added on frame 5, a corrective click on object 2 on frame 6, object 3 removed "
    "on frame 8 (`standard_clip` in exporters/_sam2_video_parity.py). Per frame and object: "
    "mask IoU at frame resolution and max |difference| of the low-resolution logits."
)


def run(model: str, workdir: Path, frames: int = 16) -> VideoParityReport:
    """Export ``model`` into ``workdir`` and compare the trackers over the standard clip."""
    spec = resolve_spec(model)
    out = workdir / model
    export_model(spec, None, out, config=ExportConfig(progress=False))
    from samedge.exporters.builders import resolve_builder

    torch_model = resolve_builder(spec)(None, seed=0)
    images, script = standard_clip(frames)
    return video_parity(out, torch_model, images, script)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", nargs="?", default="sam2.1_hiera_tiny")
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--machine", default="amd-epyc-2c")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="sam2-parity-") as tmp:
        report = run(args.model, Path(tmp), args.frames)
    seconds = time.perf_counter() - start
    folder = RESULTS / args.machine
    folder.mkdir(parents=True, exist_ok=True)
    data = {
        **report.to_dict(),
        "frames_tracked": args.frames,
        "seconds": round(seconds, 1),
        "python": platform.python_version(),
        "command": f"python benchmarks/sam2_parity.py {args.model} --frames {args.frames}",
    }
    atomic_write_text(folder / "sam2_parity.json", json.dumps(data, indent=2) + "\n")
    md = [
        f"# SAM 2 memory tracker parity ({args.model}, random weights seed 0)",
        "",
        f"`{data['command']}` ({seconds:.0f} s on {args.machine}).",
        "",
        CLIP,
        "",
        *(f"- {note}" for note in report.notes),
        "",
        "```",
        report.summary(),
        "```",
        "",
    ]
    atomic_write_text(folder / "sam2_parity.md", "\n".join(md))
    print(report.summary())
    return 0 if report.passed else 1


if __name__ == "__main__":
    sys.exit(main())
