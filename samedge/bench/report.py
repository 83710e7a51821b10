"""A benchmark run's record and its three views: JSON, a markdown table, a PNG plot.

:class:`BenchReport` holds everything one ``samedge bench`` run measured and
where: the machine, library versions, the exact command, the settings, every
:class:`~samedge.bench.records.Measurement` (samedge's and the peers'), the
measured peak GEMM rates, the models' FLOP counts, peer/samedge ratios and the
jobs that failed. :meth:`BenchReport.save` writes ``NAME.json``, ``NAME.md``
and ``NAME.png`` into ``benchmarks/results/<machine>/``; the JSON is the
source of truth and the other two are derived from it, as is the README's
performance block (the repository's ``benchmarks/readme.py`` builds it from
:meth:`BenchReport.overview_markdown`).

Example:
    >>> path = "benchmarks/results/amd-epyc-2c/bench_mobile_sam.json"
    >>> report = BenchReport.load(path)                       # doctest: +SKIP
    >>> print(report.markdown())                              # doctest: +SKIP
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from samedge._io import atomic_write_bytes, atomic_write_text
from samedge.bench.peak import PeakRate
from samedge.bench.records import ENGINE, Measurement
from samedge.errors import InputError

__all__ = ["BenchReport", "peer_ratios", "with_fraction_of_peak"]

log = logging.getLogger(__name__)

REPORT_FORMAT = 1


@dataclass(frozen=True)
class BenchReport:
    """Everything one benchmark run measured.

    Attributes:
        machine: Name, CPU, cores, ISA flags, GPUs, OS, load (see ``_machine.machine_info``).
        versions: Library versions.
        command: The exact command line that made it.
        timestamp: UTC time the run ended (ISO 8601).
        settings: Threads, runs, warm-up, objects, frame size, ISA cap, ...
        models: Per model directory: name, path, precision, weights, FLOPs.
        measurements: Every timed row, samedge's and the peers'.
        peaks: Measured peak GEMM rates.
        ratios: Peer time / samedge time, same model and part (see :func:`peer_ratios`).
        failures: Jobs that failed: what and the error.
        skipped: What was not measured and why.
        default: samedge's default choice on this machine (``backend="auto"``) and why.
        notes: Free-form lines from whoever ran it (how the builds were made, load, ...).
    """

    machine: dict[str, Any]
    versions: dict[str, str]
    command: str
    timestamp: str
    settings: dict[str, Any]
    models: tuple[dict[str, Any], ...] = ()
    measurements: tuple[Measurement, ...] = ()
    peaks: tuple[PeakRate, ...] = ()
    ratios: tuple[dict[str, Any], ...] = ()
    failures: tuple[dict[str, str], ...] = ()
    skipped: tuple[str, ...] = ()
    default: dict[str, str] = field(default_factory=dict)
    notes: tuple[str, ...] = ()

    # -- JSON -----------------------------------------------------------------------

    def to_json(self) -> dict[str, Any]:
        return {
            "format": REPORT_FORMAT,
            "machine": self.machine,
            "versions": self.versions,
            "command": self.command,
            "timestamp": self.timestamp,
            "settings": self.settings,
            "default": self.default,
            "models": list(self.models),
            "measurements": [m.to_json() for m in self.measurements],
            "peaks": [p.to_json() for p in self.peaks],
            "ratios": list(self.ratios),
            "failures": list(self.failures),
            "skipped": list(self.skipped),
            "notes": list(self.notes),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> BenchReport:
        if data.get("kind") is not None:  # e.g. "video": samedge.bench.video_report's
            raise TypeError(
                f"a {data['kind']!r} report, not an image bench report; read it with its own "
                "reader (samedge.bench.video_report for `samedge bench --video`)"
            )
        return cls(
            machine=data["machine"],
            versions=data["versions"],
            command=data["command"],
            timestamp=data["timestamp"],
            settings=data["settings"],
            models=tuple(data.get("models", [])),
            measurements=tuple(Measurement.from_json(m) for m in data.get("measurements", [])),
            peaks=tuple(PeakRate.from_json(p) for p in data.get("peaks", [])),
            ratios=tuple(data.get("ratios", [])),
            failures=tuple(data.get("failures", [])),
            skipped=tuple(data.get("skipped", [])),
            default=data.get("default", {}),
            notes=tuple(data.get("notes", [])),
        )

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> BenchReport:
        """Read a report written by :meth:`save`.

        Raises:
            InputError: the file is missing or is not a benchmark report.
        """
        path = Path(path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            return cls.from_json(data)
        except (OSError, json.JSONDecodeError, KeyError, TypeError) as e:
            raise InputError(
                f"{path}: not a samedge bench report ({type(e).__name__}: {e}); "
                "pass a JSON file written by `samedge bench`"
            ) from e

    # -- files ------------------------------------------------------------------------

    def save(self, directory: str | os.PathLike[str], name: str) -> dict[str, Path]:
        """Write ``NAME.json``, ``NAME.md`` and ``NAME.png`` into ``directory``.

        Returns:
            ``{"json": ..., "markdown": ..., "plot": ...}``; no ``"plot"`` when
            matplotlib is not installed (``pip install samedge[bench]``), which is logged.

        Raises:
            InputError: ``directory`` exists and is not a directory.
        """
        directory = Path(directory)
        if directory.exists() and not directory.is_dir():
            raise InputError(
                f"output: {directory} is a file, expected a directory for the results; "
                "pass a directory path"
            )
        directory.mkdir(parents=True, exist_ok=True)
        paths = {
            "json": directory / f"{name}.json",
            "markdown": directory / f"{name}.md",
            "plot": directory / f"{name}.png",
        }
        atomic_write_text(paths["json"], json.dumps(self.to_json(), indent=2) + "\n")
        try:
            png = self.plot_png()
        except ImportError as e:
            log.warning("no plot: matplotlib is missing (%s); `pip install samedge[bench]`", e)
            del paths["plot"]
        else:
            atomic_write_bytes(paths["plot"], png)
        plot = paths["plot"].name if "plot" in paths else None
        atomic_write_text(paths["markdown"], self.markdown(plot=plot))
        return paths

    # -- views ------------------------------------------------------------------------

    def rows(
        self, part: str, suite: str | None = "samedge", objects: int | None = None
    ) -> list[Measurement]:
        return [
            m
            for m in self.measurements
            if m.part == part
            and (suite is None or m.suite == suite)
            and (objects is None or m.objects == objects)
        ]

    def markdown(self, plot: str | None = None) -> str:
        """The run as markdown: context, then encoder, decoder, predictor, peaks, peers."""
        m = self.machine
        threads = self.settings.get("threads")
        lines = [
            f"# samedge bench on {m.get('name')}",
            "",
            f"`{self.command}` ({self.timestamp})",
            "",
            f"- machine: {m.get('cpu')} ({m.get('arch')}), {m.get('cores')} logical CPUs, "
            f"flags {', '.join(m.get('cpu_flags', [])) or 'n/a'}"
            + (f"; GPUs: {', '.join(m['gpus'])}" if m.get("gpus") else "; no GPU")
            + (
                f"; 1-min load average {m['load_average_1min']} at the start, "
                f"{m.get('load_average_1min_at_end', '?')} at the end"
                if "load_average_1min" in m
                else ""
            ),
            f"- threads {threads}, {self.settings.get('warmup')} warm-up + "
            f"{self.settings.get('runs')} timed runs per row"
            + (
                " (the decoder's batch sizes round-robin)"
                if self.settings.get("decoder_batches") == "round-robin"
                else ""
            )
            + "; medians (p90, p99) in ms",
            "- versions: " + ", ".join(f"{k} {v}" for k, v in self.versions.items()),
        ]
        if self.default:
            lines.append(f"- samedge's default here: {self.default.get('choice')}")
        for model in self.models:
            flops = model.get("encoder_gflops")
            lines.append(
                f"- {model['name']} ({model['precision']}): {model.get('weights', '')}"
                + (f"; encoder {flops:.1f} GFLOP" if flops else "")
            )
        lines += ["", "## Encoder", ""]
        lines += _table(
            [
                "model",
                "build",
                "backend",
                "device",
                "ran in",
                "ISA cap",
                "median ms",
                "p90",
                "p99",
                "img/s",
                "build s",
                "engine MiB",
                "peak RSS MiB",
                "GFLOP",
                "% of peak",
                "mask IoU vs fp32",
            ],
            [
                [
                    r.model,
                    r.model_precision or "",
                    r.backend,
                    r.device,
                    r.precision,
                    r.isa or "",
                    _f(r.timing.median_ms),
                    _f(r.timing.p90_ms),
                    _f(r.timing.p99_ms),
                    _f(r.throughput_per_s),
                    _f(r.build_s),
                    _f(r.engine_mib),
                    _f(r.peak_rss_mib, 0),
                    _f(r.gflops),
                    _pct(r.fraction_of_peak),
                    _acc(r),
                ]
                for r in self.rows("encoder")
            ],
        )
        lines += _peak_note(self.rows("encoder"))
        objects = sorted({r.objects for r in self.rows("decoder") if r.objects is not None})
        if objects:
            lines += ["", "## Decoder (B objects in one call)", ""]
            head = ["model", "build", "backend", "ran in", "ISA cap"]
            head += [f"B={b} ms" for b in objects]
            if len(objects) > 1:
                head.append(f"B={objects[-1]} / B={objects[0]}")
            body = []
            for key, group in _group(self.rows("decoder")).items():
                by_b = {r.objects: r for r in group}
                row = [*key[:2], key[2], group[0].precision, key[5] or ""]
                row += [
                    f"{_f(by_b[b].timing.median_ms)} ({_f(by_b[b].timing.p90_ms)})"
                    if b in by_b
                    else ""
                    for b in objects
                ]
                if len(objects) > 1:
                    lo, hi = by_b.get(objects[0]), by_b.get(objects[-1])
                    ratio = hi.timing.median_ms / lo.timing.median_ms if lo and hi else None
                    row.append(f"{ratio:.2f}×" if ratio else "")
                body.append(row)
            lines += _table(head, body)
        predictor = self.rows("predictor")
        if predictor:
            size = self.settings.get("frame_size", ["?", "?"])
            lines += [
                "",
                f"## Predictor ({size[0]}×{size[1]} frame in, masks at frame size out)",
                "",
            ]
            lines += _table(
                [
                    "model",
                    "build",
                    "backend",
                    "ran in",
                    "ISA cap",
                    "objects",
                    "median ms",
                    "p90",
                    "frames/s",
                    "first frame s",
                    "peak RSS MiB",
                ],
                [
                    [
                        r.model,
                        r.model_precision or "",
                        r.backend,
                        r.precision,
                        r.isa or "",
                        str(r.objects),
                        _f(r.timing.median_ms),
                        _f(r.timing.p90_ms),
                        _f(r.throughput_per_s),
                        _f(r.build_s),
                        _f(r.peak_rss_mib, 0),
                    ]
                    for r in predictor
                ],
            )
        if self.peaks:
            lines += ["", "## Measured peak GEMM rate", ""]
            lines += _table(
                ["backend", "device", "precision", "ISA cap", "graph", "size", "GFLOP/s", "best"],
                [
                    [
                        p.backend,
                        p.device,
                        p.precision,
                        p.isa or "",
                        p.graph,
                        f"{p.size}³",
                        _f(p.gflops_per_s, 0),
                        _f(p.best_gflops_per_s, 0),
                    ]
                    for p in self.peaks
                ],
            )
        peers = [r for r in self.measurements if r.suite != "samedge"]
        if peers:
            lines += ["", "## Peers", ""]
            lines += _table(
                ["suite", "model", "part", "backend", "ran in", "objects", "median ms", "p90"],
                [
                    [
                        r.suite,
                        r.model,
                        r.part,
                        r.backend,
                        r.precision,
                        str(r.objects or ""),
                        _f(r.timing.median_ms),
                        _f(r.timing.p90_ms),
                    ]
                    for r in peers
                ],
            )
        if self.ratios:
            lines += ["", "## Peer time / samedge time (same model, part, objects)", ""]
            lines += _table(
                ["model", "part", "objects", "peer", "peer ms", "samedge", "samedge ms", "ratio"],
                [
                    [
                        r["model"],
                        r["part"],
                        str(r.get("objects") or ""),
                        f"{r['peer_suite']} ({r['peer_backend']} {r['peer_precision']})",
                        _f(r["peer_ms"]),
                        f"{r['against']}: {r['samedge']}",
                        _f(r["samedge_ms"]),
                        f"{r['ratio']:.2f}×",
                    ]
                    for r in _distinct_ratios(self.ratios)
                ],
            )
        if plot:
            lines += ["", f"![latency vs accuracy]({plot})"]
        if self.notes:
            lines += ["", "## Notes", ""] + [f"- {n}" for n in self.notes]
        notes = [*self.skipped, *(f"FAILED {f['what']}: {f['error']}" for f in self.failures)]
        if notes:
            lines += ["", "## Not measured", ""] + [f"- {n}" for n in notes]
        lines += [
            "",
            "FLOPs: 2 × multiply-accumulates of Conv/ConvTranspose/MatMul/Gemm/Einsum counted "
            "from the ONNX graph (elementwise, normalisation and softmax not counted). % of "
            "peak: encoder GFLOP / median time over the best run of the peak GEMM measured "
            "through the same backend, precision and ISA cap. Mask IoU vs fp32: this "
            "configuration's encoder and decoder against the fp32 directory on ONNX Runtime "
            "(the reference), "
            "over the build report's 24 prompts × 4 masks per held-out frame "
            f"({self.settings.get('accuracy_frames', 0)} frames); where that was not "
            "measured, the build's report.json, or 1.0 for an fp32 directory computing in "
            "fp32 (each row's note says which).",
            "",
        ]
        return "\n".join(lines)

    def overview_markdown(self) -> list[str]:
        """One compact table of the run, as markdown lines (what a README shows).

        One row per model build × backend × precision: the encoder's median,
        the decoder for the smallest and largest object count, the predictor
        for one object, the fraction of peak and the accuracy; then, when
        other tools were timed beside samedge, their time over samedge's
        default choice's.
        """
        decoder = self.rows("decoder")
        objects = sorted({r.objects for r in decoder if r.objects is not None})
        lo, hi = (objects[0], objects[-1]) if objects else (None, None)
        head = ["model", "build", "backend", "ran in", "encoder ms", "% of peak"]
        if lo is not None:
            head.append(f"decoder B={lo} ms")
        if hi is not None and hi != lo:
            head.append(f"decoder B={hi} ms")
        head += ["predictor ms", "mask IoU vs fp32"]
        body = []
        for key, group in _group([r for r in self.measurements if r.suite == "samedge"]).items():
            by = {(r.part, r.objects): r for r in group}
            enc = by.get(("encoder", None))
            pred = by.get(("predictor", 1)) or by.get(("predictor", lo))
            first = enc or group[0]
            ran_in = first.precision
            others = sorted({r.precision for r in group if r.part == "decoder"} - {ran_in})
            if others:
                ran_in += f" (decoder {', '.join(others)})"
            ran_in += f" ({key[5]} cap)" if key[5] else ""
            row = [key[0], key[1], key[2], ran_in]
            row += [
                _f(enc.timing.median_ms) if enc else "",
                _pct(enc.fraction_of_peak) if enc else "",
            ]
            if lo is not None:
                d = by.get(("decoder", lo))
                row.append(_f(d.timing.median_ms) if d else "")
            if hi is not None and hi != lo:
                d = by.get(("decoder", hi))
                row.append(_f(d.timing.median_ms) if d else "")
            row.append(_f(pred.timing.median_ms) if pred else "")
            row.append(_acc(enc) if enc else (_acc(pred) if pred else ""))
            body.append(row)
        lines = _table(head, body)
        lines += _peak_note(self.rows("encoder"))
        default = [r for r in self.ratios if r.get("against") == "default"]
        if default:
            lines += ["", "Peer time / samedge default time (higher: samedge faster):", ""]
            lines += _table(
                ["model", "part", "objects", "peer", "peer ms", "samedge ms", "ratio"],
                [
                    [
                        r["model"],
                        r["part"],
                        str(r.get("objects") or ""),
                        f"{r['peer_suite']} ({r['peer_backend']} {r['peer_precision']})",
                        _f(r["peer_ms"]),
                        _f(r["samedge_ms"]),
                        f"{r['ratio']:.1f}×",
                    ]
                    for r in default
                ],
            )
        return lines

    def plot_png(self) -> bytes:
        """Latency vs accuracy per precision, samedge's variants and the peers', as PNG bytes.

        One row of panels per model: the encoder (the network alone) and the
        predictor for one object, median latency on a log axis against mean
        mask IoU vs FP32; colour is the precision that ran, samedge's marker
        its backend, each peer its own marker. Rows without a measured
        accuracy sit at their latency in a strip under the panel. See
        :mod:`samedge.bench._plot`.

        Raises:
            ImportError: matplotlib is not installed (``pip install samedge[bench]``).
        """
        from samedge.bench._plot import plot_png

        return plot_png(self)


# -- helpers for the tables ----------------------------------------------------------


def _f(value: float | None, digits: int | None = None) -> str:
    if value is None:
        return ""
    if digits is None:
        digits = 2 if abs(value) < 10 else 1 if abs(value) < 100 else 0
    return f"{value:.{digits}f}"


def _pct(value: float | None) -> str:
    if value is None:
        return ""
    # Above 100% the encoder outran the "peak": that GEMM run was slowed, and
    # the fraction means nothing; say so where the number stands.
    return f"{100 * value:.0f}% (!)" if value > 1.0 else f"{100 * value:.0f}%"


def _peak_note(rows: Iterable[Measurement]) -> list[str]:
    """A line under a table whose fraction of peak is above 100%, else nothing."""
    if not any(r.fraction_of_peak is not None and r.fraction_of_peak > 1.0 for r in rows):
        return []
    return [
        "",
        "(!) above 100% of peak: the peak GEMM was measured too low (a run slowed by other "
        "processes), so that fraction is not meaningful; rerun on a quieter machine.",
    ]


def _acc(row: Measurement) -> str:
    iou = row.accuracy.get("mean_iou_vs_fp32")
    return "" if iou is None else f"{iou:.3f}"


def _table(head: Sequence[str], body: Iterable[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(head) + " |", "| " + " | ".join("---" for _ in head) + " |"]
    lines += ["| " + " | ".join(row) + " |" for row in body]
    return lines


def _group(
    rows: Iterable[Measurement],
) -> dict[tuple[str, str, str, str, str, str | None], list[Measurement]]:
    """Rows of one configuration (model directory × backend × device × hint × ISA cap).

    An FP32 directory can run in two precisions on one backend (OpenVINO's
    bf16 default and its f32 hint), told apart by the precision every part
    reports. A build runs once per backend, device and ISA cap, but its parts
    report different precisions (an INT8 encoder beside a float decoder).
    """
    groups: dict[tuple[str, str, str, str, str, str | None], list[Measurement]] = {}
    for r in rows:
        split = r.precision if r.model_precision in (None, "fp32") else ""
        key = (r.model, r.model_precision or "", r.backend, r.device, split, r.isa)
        groups.setdefault(key, []).append(r)
    return groups


# -- peers ---------------------------------------------------------------------------


def _distinct_ratios(ratios: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The ratios, less a ``fastest`` row that is the same samedge row as its ``default``."""

    def key(r: dict[str, Any]) -> tuple[Any, ...]:
        return tuple(r.get(k) for k in r if k != "against")

    defaults = {key(r) for r in ratios if r.get("against") == "default"}
    return [r for r in ratios if r.get("against") != "fastest" or key(r) not in defaults]


def peer_ratios(
    measurements: Sequence[Measurement], default_backend: str | None
) -> list[dict[str, Any]]:
    """Peer time / samedge time for every peer row, against two samedge rows.

    For each peer row, the samedge rows of the same model, part and objects are
    taken from FP32 model directories with no ISA cap: ``default`` is the one
    samedge's ``backend="auto"`` runs (``default_backend`` with its default
    precision: the fastest row of that backend), ``fastest`` the fastest of
    all. A ratio above 1 means samedge is faster. Peer encoder/decoder rows are
    compared only when they time the network alone (``note`` starting with
    ``"engine:"``), like samedge's; their ``"api:"`` rows include the peer's
    pre/post-processing, which samedge's ``predictor`` rows are the match for.
    """
    ratios = []
    samedge = [
        m
        for m in measurements
        if m.suite == "samedge" and m.isa is None and m.model_precision in (None, "fp32")
    ]
    for peer in (m for m in measurements if m.suite != "samedge"):
        if peer.part != "predictor" and not (peer.note or "").startswith(f"{ENGINE}:"):
            continue
        same = [
            m
            for m in samedge
            if m.model == peer.model and m.part == peer.part and m.objects == peer.objects
        ]
        if not same:
            continue
        choices = {"fastest": min(same, key=lambda m: m.timing.median_ms)}
        mine = [m for m in same if m.backend == default_backend]
        if mine:
            choices["default"] = min(mine, key=lambda m: m.timing.median_ms)
        for against, row in sorted(choices.items()):
            ratios.append(
                {
                    "model": peer.model,
                    "part": peer.part,
                    "objects": peer.objects,
                    "peer_suite": peer.suite,
                    "peer_backend": peer.backend,
                    "peer_precision": peer.precision,
                    "peer_ms": round(peer.timing.median_ms, 3),
                    "against": against,
                    "samedge": f"{row.backend} {row.precision}",
                    "samedge_ms": round(row.timing.median_ms, 3),
                    "ratio": round(peer.timing.median_ms / row.timing.median_ms, 3),
                }
            )
    return ratios


def with_fraction_of_peak(
    rows: Sequence[Measurement], peaks: Sequence[PeakRate]
) -> list[Measurement]:
    """Fill ``fraction_of_peak`` of rows with ``gflops``: median rate over the best peak run."""
    out = []
    for row in rows:
        peak = next(
            (
                p
                for p in peaks
                if p.backend == row.backend
                and p.precision == row.precision
                and p.isa == row.isa
                and _same_device(p.device, row.device)
            ),
            None,
        )
        if row.gflops is None or peak is None or peak.best_gflops_per_s <= 0:
            out.append(row)
            continue
        achieved = row.gflops / (row.timing.median_ms * 1e-3)
        # The limit is the best run: on a shared machine the median GEMM run is
        # itself slowed by other processes, which would flatter the fraction.
        out.append(replace(row, fraction_of_peak=achieved / peak.best_gflops_per_s))
    return out


def _same_device(a: str, b: str) -> bool:
    # OpenVINO reports "CPU"; ORT the provider (with ":0" on CUDA).
    return a.split(":")[0].split(".")[0] == b.split(":")[0].split(".")[0]
