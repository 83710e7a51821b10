"""Render saved ``samedge eval --video`` files as one markdown table, trackers side by side.

Reads each file back as a :class:`samedge.evaluate_video.VideoEvalReport` and
writes J&F, J and F overall, then J&F by event and "id kept", one column per
file (e.g. the re-prompt and the memory tracker on the same folder), with the
command that made each file.

Example:
    python benchmarks/video_eval_table.py results/amd-epyc-2c/eval_video_samedge_tiny.json \\
        --output results/amd-epyc-2c/eval_video_samedge_tiny.md
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _files import write_atomic

from samedge.davis import EVENTS
from samedge.evaluate_video import VideoEvalReport


def _cell(v: float) -> str:
    return "–" if math.isnan(v) else f"{v:.3f}"


def render(paths: list[Path]) -> str:
    """The markdown for the eval files at ``paths``."""
    raw = [json.loads(p.read_text()) for p in paths]
    reports = [VideoEvalReport.from_dict(d) for d in raw]
    head = [f"{r.tracker} ({r.prompt})" for r in reports]
    lines = [
        f"# Video object segmentation: {reports[0].model}",
        "",
        f"DAVIS 2017 protocol (J: region IoU, F: boundary F-measure at "
        f"{reports[0].bound_th:g} of the diagonal, J&F their mean; frames between the first "
        "and the last, per object, then averaged over objects), prompted from the first "
        "frame's masks.",
        "",
        "| | " + " | ".join(head) + " |",
        "| --- |" + " ---: |" * len(reports),
    ]

    def row(name: str, values: list[str]) -> None:
        lines.append(f"| {name} | " + " | ".join(values) + " |")

    row("**J&F**", [f"**{_cell(r.jf)}**" for r in reports])
    row("J", [_cell(r.j) for r in reports])
    row("F", [_cell(r.f) for r in reports])
    row(
        "id kept (J ≥ 0.5 after occlusion / re-entry)",
        [f"{_cell(r.id_kept)} ({r.id_kept_frames})" for r in reports],
    )
    if any(r.by_event for r in reports):
        lines += [
            "",
            "J&F by event (object-frames pooled; in brackets: object-frames):",
            "",
            "| event | " + " | ".join(head) + " |",
            "| --- |" + " ---: |" * len(reports),
        ]
        for name in (*EVENTS, "none", "all"):
            cells = []
            for r in reports:
                e = r.by_event.get(name)
                cells.append("–" if e is None else f"{_cell(e.jf)} ({e.frames})")
            row(name.replace("_", " "), cells)
    lines += [""]
    for r, d, p in zip(reports, raw, paths, strict=True):
        lines += [
            f"`{p.name}`: {r.sequences} sequences, {len(r.objects)} objects, {r.frames} frames "
            f"of `{r.dataset}`, {r.backend}, {r.seconds:.0f} s, samedge {d.get('samedge', '?')}, "
            f"{d.get('timestamp', '?')}:",
            "",
            f"    {d.get('command', '(no command recorded)')}",
            "",
        ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("files", nargs="+", type=Path, help="samedge eval --video --output files")
    p.add_argument("--output", type=Path, help="markdown file to write (default: print)")
    p.add_argument("--preamble", type=Path, help="markdown to put before the table")
    args = p.parse_args(argv)
    text = render(args.files)
    if args.preamble is not None:
        text = args.preamble.read_text().rstrip() + "\n\n" + text
    if args.output is None:
        print(text)
    else:
        write_atomic(args.output, text)
        print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
