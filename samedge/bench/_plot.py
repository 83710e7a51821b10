"""The bench plot: latency against accuracy, samedge's variants and the peers side by side.

:func:`plot_points` picks what is drawn (a pure function of the rows, so
tests can check it without matplotlib); :func:`plot_png` draws it. One row of
panels per model, one panel per part: the encoder (the network alone: samedge's
``encoder.onnx`` and the peers' ``"engine:"`` rows) and the predictor for one
object (frame in, masks at frame size out). Latency runs on a log axis (the
tiny model takes milliseconds, ViT-B seconds); a row without a measured
accuracy is drawn at its latency in a strip under its panel, never at a
made-up accuracy.
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from samedge.bench.records import ENGINE

if TYPE_CHECKING:
    from samedge.bench.records import Measurement
    from samedge.bench.report import BenchReport

__all__ = ["PlotPoint", "plot_png", "plot_points"]

#: Panel parts, in order, and their axis labels.
PANELS = {
    "encoder": "encoder (network alone): median latency, ms",
    "predictor": "predictor, 1 object (frame in, masks out): median latency, ms",
}
# How a peer is named on the plot, and how its INT8 model was made.
_PEER_NAMES = {
    "pytorch": "PyTorch predictor",
    "samexporter": "samexporter (ORT)",
    "openvino-notebook": "OV notebook",
}
_PEER_INT8 = {"samexporter": "dynamic INT8", "openvino-notebook": "NNCF INT8"}
_COLORS = {"fp32": "tab:blue", "bf16": "tab:orange", "fp16": "tab:green", "int8": "tab:red"}
_SAMEDGE_MARKERS = {"onnxruntime": "o", "openvino": "s", "tensorrt": "^"}
_PEER_MARKERS = {"pytorch": "P", "samexporter": "X", "openvino-notebook": "*"}


@dataclass(frozen=True)
class PlotPoint:
    """One drawn row.

    Attributes:
        model: Registry name; one row of panels each.
        part: ``"encoder"`` or ``"predictor"``; one panel each.
        suite: ``"samedge"`` or the peer's name.
        label: The legend's name for it.
        ms: Median latency.
        iou: Mean mask IoU against FP32 as measured, None where not measured.
        precision: What ran (the colour).
        backend: The backend (samedge's marker).
        capped: Ran under a CPU ISA cap (drawn hollow).
    """

    model: str
    part: str
    suite: str
    label: str
    ms: float
    iou: float | None
    precision: str
    backend: str
    capped: bool = False


def plot_points(measurements: Iterable[Measurement]) -> list[PlotPoint]:
    """The points the plot draws: samedge's rows first, then the peers', in record order.

    Encoder rows, and predictor rows for one object. A peer's encoder is taken
    from its ``"engine:"`` row (the network alone, as samedge's encoder row
    times it), not its ``"api:"`` row, which adds its pre-processing.
    """
    points = []
    for m in measurements:
        if m.part == "encoder":
            if m.suite != "samedge" and not m.note.startswith(f"{ENGINE}:"):
                continue
        elif m.part != "predictor" or m.objects != 1:
            continue
        # samedge records "mean_iou_vs_fp32" (against the fp32 ONNX on ONNX
        # Runtime), the peers "mask_iou_vs_fp32" (against their own fp32 path).
        iou = m.accuracy.get("mean_iou_vs_fp32", m.accuracy.get("mask_iou_vs_fp32"))
        points.append(
            PlotPoint(
                model=m.model,
                part=m.part,
                suite=m.suite,
                label=_label(m),
                ms=m.timing.median_ms,
                iou=None if iou is None else float(iou),
                precision=m.precision,
                backend=m.backend,
                capped=m.isa is not None,
            )
        )
    return sorted(points, key=lambda p: p.suite != "samedge")


def _label(m: Measurement) -> str:
    if m.suite == "samedge":
        label = f"samedge {m.backend} {m.precision}"
        if m.isa:
            label += f" [{m.isa} cap]"
        if m.model_precision and m.model_precision != "fp32":
            label += f" ({m.model_precision} build)"
        return label
    name = _PEER_NAMES.get(m.suite, m.suite)
    if m.precision == "int8":
        return f"{name} {_PEER_INT8.get(m.suite, 'INT8')}"
    return f"{name} {m.precision}"


def plot_png(report: BenchReport) -> bytes:
    """:func:`plot_points` of ``report`` drawn as a PNG (dpi 110).

    Raises:
        ImportError: matplotlib is not installed (``pip install samedge[bench]``).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    points = plot_points(report.measurements)
    models = list(dict.fromkeys(p.model for p in points))
    parts = [part for part in PANELS if any(p.part == part for p in points)]
    title = f"samedge bench on {report.machine.get('name')} ({report.timestamp})"
    if not points:
        fig = plt.figure(figsize=(6.0, 3.0))
        fig.text(0.5, 0.5, "no encoder or predictor rows", ha="center", va="center")
        fig.suptitle(title, fontsize=9)
        return _png(fig)
    # Each model's panels get a strip underneath when some row has no accuracy.
    strips = {
        model: max(
            sum(1 for p in points if p.model == model and p.part == part and p.iou is None)
            for part in parts
        )
        for model in models
    }
    heights: list[float] = []
    for model in models:
        heights.append(4.2)
        if strips[model]:
            heights.append(0.35 + 0.28 * strips[model])
    legend_rows = len({p.label for p in points}) // 2 + 2
    fig = plt.figure(
        figsize=(max(6.2 * len(parts), 8.0), sum(heights) + 1.0 + 0.16 * legend_rows),
        layout="constrained",
    )
    grid = fig.add_gridspec(len(heights), len(parts), height_ratios=heights)
    handles: dict[str, Any] = {}
    row = 0
    for model in models:
        first = None
        for col, part in enumerate(parts):
            ax = fig.add_subplot(grid[row, col], sharey=first)
            first = first or ax
            strip = fig.add_subplot(grid[row + 1, col], sharex=ax) if strips[model] else None
            here = [p for p in points if p.model == model and p.part == part]
            _panel(ax, strip, here, handles)
            ax.set_title(f"{model}: {part}", fontsize=9)
            if col == 0:
                ax.set_ylabel("mean mask IoU vs fp32", fontsize=8)
        row += 2 if strips[model] else 1
    order = list(dict.fromkeys(p.label for p in points))
    _legend(fig, {k: handles[k] for k in order}, {p.label for p in points if p.suite != "samedge"})
    fig.suptitle(
        f"{title}\nmask IoU vs fp32: samedge's against its fp32 ONNX on ONNX Runtime,\n"
        "a peer's against its own fp32 path; hollow: CPU ISA capped",
        fontsize=8,
    )
    return _png(fig)


def _legend(fig: Any, handles: dict[str, Any], peers: set[str]) -> None:
    """One legend under the panels: samedge's entries in the first column(s), the peers' last."""
    from matplotlib.lines import Line2D

    groups = [[k for k in handles if k not in peers], [k for k in handles if k in peers]]
    columns: list[list[str]] = []
    for name, labels in zip(("samedge", "peers"), groups, strict=True):
        if not labels:
            continue
        # More than 6 of samedge's variants (builds × backends × caps) take two columns.
        split = 2 if len(labels) > 6 else 1
        size = -(-len(labels) // split)
        for i in range(split):
            columns.append([f"{name}:" if i == 0 else "", *labels[i * size : (i + 1) * size]])
    rows = max(len(c) for c in columns)
    blank = Line2D([], [], linestyle="none")
    entries = [(handles.get(k, blank), k) for c in columns for k in c + [""] * (rows - len(c))]
    legend = fig.legend(
        [h for h, _ in entries],
        [k for _, k in entries],
        loc="outside lower center",
        ncol=len(columns),
        fontsize=7,
        frameon=False,
    )
    for text in legend.get_texts():
        if text.get_text() in ("samedge:", "peers:"):
            text.set_fontweight("bold")


def _panel(ax: Any, strip: Any, points: Sequence[PlotPoint], handles: dict[str, Any]) -> None:
    import matplotlib.ticker

    if not points:
        ax.text(0.5, 0.5, "not measured", ha="center", va="center", transform=ax.transAxes)
        ax.set_xscale("log")
        if strip is not None:
            strip.set_axis_off()
        return
    missing = [p for p in points if p.iou is None]
    for p in points:
        if p.iou is None:
            continue
        handles.setdefault(p.label, _scatter(ax, p, p.ms, p.iou))
    if missing and strip is not None:
        for i, p in enumerate(missing):
            y = (i + 1) / (len(missing) + 1)
            handles.setdefault(p.label, _scatter(strip, p, p.ms, y))
            strip.annotate(
                p.label, (p.ms, y), xytext=(6, 0), textcoords="offset points", fontsize=6,
                va="center",
            )  # fmt: skip
        strip.set_ylim(0, 1)
        strip.set_yticks([])
        strip.set_ylabel("accuracy\nnot measured", fontsize=6, rotation=0, ha="right", va="center")
        strip.grid(True, which="both", axis="x", alpha=0.3)
    elif strip is not None:
        strip.set_axis_off()
    times = [p.ms for p in points]
    lo, hi = min(times), max(times)
    ax.set_xscale("log")
    # Room on the right for the strip's labels, which sit right of their points.
    right = max([hi * 1.35, *(p.ms * 2.6 for p in missing)])
    ax.set_xlim(lo / 1.35, right)
    # Fine ticks where the span is short, or a log axis shows one label at best.
    subs = (1.0, 2.0, 5.0) if hi / lo > 4 else (1.0, 1.5, 2.0, 3.0, 4.0, 5.0, 7.0)
    ax.xaxis.set_major_locator(matplotlib.ticker.LogLocator(subs=subs))
    ax.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(_ms_tick))
    ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax.tick_params(labelsize=7)
    ax.grid(True, which="both", alpha=0.3)
    xlabel = next(text for part, text in PANELS.items() if part == points[0].part)
    if missing and strip is not None:
        ax.tick_params(labelbottom=False)
        strip.tick_params(labelsize=7)
        strip.set_xlabel(xlabel, fontsize=8)
    else:
        ax.set_xlabel(xlabel, fontsize=8)


def _scatter(ax: Any, p: PlotPoint, x: float, y: float) -> Any:
    color = _COLORS.get(p.precision, "tab:gray")
    if p.suite == "samedge":
        return ax.scatter(
            x, y, s=45, marker=_SAMEDGE_MARKERS.get(p.backend, "D"), color=color,
            facecolors="none" if p.capped else color, linewidths=1.2, label=p.label, zorder=3,
        )  # fmt: skip
    # Peers: their own markers, larger, edged in black.
    return ax.scatter(
        x, y, s=110, marker=_PEER_MARKERS.get(p.suite, "v"), color=color, edgecolors="black",
        linewidths=0.8, label=p.label, zorder=4,
    )  # fmt: skip


def _ms_tick(value: float, _: object) -> str:
    return f"{value:g}"


def _png(fig: Any) -> bytes:
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    plt.close(fig)
    return bytes(buffer.getvalue())
