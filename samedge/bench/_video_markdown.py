"""Markdown view of a :class:`~samedge.bench.video_report.VideoReport` (derived from its JSON)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

from samedge.bench.report import _f, _table

if TYPE_CHECKING:
    from samedge.bench.video_report import VideoReport, VideoRow

__all__ = ["render"]

_GRAPH_TITLES = {
    "encoder": "encoder",
    "memory_attention": "memory attn",
    "decoder": "decoder",
    "memory_encoder": "memory enc",
    "tracker": "tracker (numpy)",
}


def _mib(value: int | None) -> str:
    return "" if value is None else f"{value / 2**20:.2f}"


def _context(report: VideoReport) -> list[str]:
    from samedge.bench.video_report import VIDEO_GRAPHS

    m, s, clip = report.machine, report.settings, report.clip
    lines = [
        f"# samedge bench --video on {m.get('name')}",
        "",
        f"`{report.command}` ({report.timestamp})",
        "",
        f"- machine: {m.get('cpu')} ({m.get('arch')}), {m.get('cores')} logical CPUs"
        + (f"; GPUs: {', '.join(m['gpus'])}" if m.get("gpus") else "; no GPU")
        + (
            f"; 1-min load average {m['load_average_1min']} at the start, "
            f"{m.get('load_average_1min_at_end', '?')} at the end"
            if "load_average_1min" in m
            else ""
        ),
        f"- clip: `MovingScene(seed={clip.seed}, size={tuple(clip.size)}, "
        f"num_objects={clip.scene_objects})`; the N largest objects of frame 0 prompted there "
        "with one click each (the deepest point of the ground-truth mask); frame 0 is the "
        f"prompted frame, then {s.get('warmup')} untimed frames (the memory bank fills), then "
        f"{s.get('frames')} timed frames per row",
        f"- samedge: `MemoryPredictor` + `MemoryTracker`, threads {s.get('threads')}, each "
        "backend in a process of its own; a frame is `set_image` (encoder) + `step` (every "
        "object's memory attention, decoder and memory encoder, batched, and its mask at frame "
        "size); per graph: " + ", ".join(VIDEO_GRAPHS),
        "- medians (p99) in ms; p99 over few frames is close to the slowest frame",
        "- versions: " + ", ".join(f"{k} {v}" for k, v in report.versions.items()),
    ]
    if report.default:
        lines.append(f"- samedge's default here: {report.default.get('choice')}")
    for model in report.models:
        bound = model.get("memory_bytes_per_object_max")
        lines.append(
            f"- {model['name']} ({model['precision']}): {model.get('weights', '')}"
            + (f"; a full memory bank holds {_mib(bound)} MiB per object" if bound else "")
        )
    return lines


def _rows_table(rows: Sequence[VideoRow]) -> list[str]:
    from samedge.bench.video_report import VIDEO_GRAPHS

    head = ["model", "suite", "backend", "ran in", "objects", "frames", "per frame ms"]
    head += [f"{_GRAPH_TITLES[g]} ms" for g in VIDEO_GRAPHS]
    head += ["memory / object MiB", "peak RSS MiB", "first frame s"]
    body = []
    for r in rows:
        cells = [
            r.model,
            r.suite,
            r.backend + (" (default)" if r.default else ""),
            r.precision,
            str(r.objects),
            f"{r.frames.start}-{r.frames.stop - 1}" if r.frame_ms else "",
            f"{_f(r.total.median_ms)} ({_f(r.total.p99_ms)})",
        ]
        cells += [
            f"{_f(r.graphs[g].median_ms)} ({_f(r.graphs[g].p99_ms)})" if g in r.graphs else ""
            for g in VIDEO_GRAPHS
        ]
        cells += [_mib(r.memory_bytes_per_object), _f(r.peak_rss_mib, 0), _f(r.build_s)]
        body.append(cells)
    return _table(head, body)


def _profile(rows: Iterable[VideoRow]) -> list[str]:
    """Each graph's share of the frame's median, and its growth from the fewest objects."""
    from samedge.bench.video_report import VIDEO_GRAPHS

    split = [r for r in rows if r.graphs]
    if not split:
        return []
    head = ["model", "backend", "objects", *(_GRAPH_TITLES[g] for g in VIDEO_GRAPHS)]
    body = []
    fewest: dict[tuple[str, ...], VideoRow] = {}
    for r in sorted(split, key=lambda r: r.objects):
        fewest.setdefault((r.model, r.suite, r.backend, r.precision), r)
    for r in split:
        base = fewest[(r.model, r.suite, r.backend, r.precision)]
        cells = [r.model, f"{r.backend} {r.precision}", str(r.objects)]
        for g in VIDEO_GRAPHS:
            share = r.graphs[g].median_ms / r.total.median_ms
            text = f"{100 * share:.0f}%"
            if base is not r and base.graphs[g].median_ms > 0:
                text += f" ({r.graphs[g].median_ms / base.graphs[g].median_ms:.1f}x)"
            cells.append(text)
        body.append(cells)
    return [
        "",
        "## Per-graph profile",
        "",
        "Each graph's share of the per-frame median; in brackets, its time over the same "
        "graph's with the fewest objects.",
        "",
        *_table(head, body),
    ]


def render(report: VideoReport) -> str:
    """The report as markdown."""
    lines = _context(report)
    lines += ["", "## Per-frame latency", ""]
    lines += _rows_table(report.rows)
    scaling = report.scaling()
    if scaling:
        lines += ["", "## Scaling with objects", ""]
        lines += _table(
            ["model", "suite", "backend", "ran in", "objects", "ms", "ratio"],
            [
                [
                    s.model, s.suite, s.backend, s.precision,
                    f"{s.objects} vs {s.base_objects}",
                    f"{_f(s.ms)} vs {_f(s.base_ms)}",
                    f"{s.ratio:.2f}x",
                ]
                for s in scaling
            ],
        )  # fmt: skip
    lines += _profile(report.rows)
    ratios = report.peer_ratios()
    if ratios:
        lines += [
            "",
            "## Against the peers",
            "",
            "Peer median over samedge's median on the same frames (the frames both timed).",
            "",
        ]
        lines += _table(
            ["model", "peer", "objects", "frames", "peer ms", "samedge", "samedge ms", "speed-up"],
            [
                [
                    p.model, p.peer, str(p.objects), f"{p.frames[0]}-{p.frames[1]}",
                    _f(p.peer_ms), f"{p.backend} {p.precision}" + (" (default)" * p.default),
                    _f(p.samedge_ms), f"{p.ratio:.2f}x",
                ]
                for p in ratios
            ],
        )  # fmt: skip
    for title, items in (
        ("Failures", [f"{f['what']}: {f['error']}" for f in report.failures]),
        ("Not measured", list(report.skipped)),
        ("Notes", list(report.notes)),
    ):
        if items:
            lines += ["", f"## {title}", "", *(f"- {item}" for item in items)]
    return "\n".join(lines) + "\n"
