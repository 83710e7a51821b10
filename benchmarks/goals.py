"""The goals of issues #7 and #18, checked against benchmark reports: met, missed, not measured.

Repository tooling, not installed (a user's README shows measurements, not
this project's goals). ``python benchmarks/goals.py`` writes
``benchmarks/results/<machine>/goals.md`` for every machine's ``bench*.json``
and ``eval_samedge_tiny.json``; :func:`check_goals` is the check itself.

A :class:`~samedge.bench.report.BenchReport` holds the rows; this module
reads the project's goals off them, so every results file says where samedge
stands instead of leaving the reader to do the arithmetic:

* encoder and whole predictor of samedge's default choice >= 8x faster than
  the PyTorch predictor, >= 4x samexporter and >= 1.3x the OpenVINO notebook
  recipe (each peer held to its fastest engine, its own INT8 included), for
  ``sam_vit_b`` and ``mobile_sam``, at the accuracy gate (:data:`SPEED_GOALS`);
  when the run measured fp16/int8 builds (``samedge bench --builds``), the
  same for the fastest build that passes the gate, which is what a user who
  runs ``samedge build`` gets;
* the same on a CPU without AMX/bf16 (the ``--isa-cap`` rows, OpenVINO under
  ``ONEDNN_MAX_CPU_ISA=AVX512_CORE_VNNI``), where any build may carry the
  speed (INT8 must): the fastest capped configuration that passes the gate;
* INT8 that pays (:data:`INT8_GOALS`): the INT8 build's encoder >= 1.5x the
  FP32 directory's on a VNNI-only CPU (the capped rows), and >= 1.6x bf16 on
  a CPU with AMX (listed only there);
* decoder: 16 objects in one call <= 4x the time of one object, and per
  object <= 0.7x one object's on OpenVINO and ONNX Runtime
  (:data:`DECODER_PER_OBJECT_GOAL`);
* encoder at >= 40% of the measured peak GEMM rate (50% for SAM ViT-B,
  :data:`PEAK_GOALS`).

"Not measured" says what is missing (no peers in the run, no capped rows, a
fraction of peak above 100%, which means the peak GEMM was measured too low).

Example:
    >>> from samedge.bench import BenchReport
    >>> path = "benchmarks/results/amd-epyc-2c/bench_mobile_sam.json"
    >>> report = BenchReport.load(path)                             # doctest: +SKIP
    >>> print("\n".join(goals_markdown(check_goals(report))))        # doctest: +SKIP
    | goal | model | verdict | numbers |
    ...
"""

from __future__ import annotations

import argparse
import enum
import json
import logging
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from _files import write_atomic

from samedge.bench import BenchReport, Measurement
from samedge.calibration.gate import GateConfig
from samedge.errors import InputError

log = logging.getLogger("goals")

__all__ = [
    "ACCURACY_GATE",
    "DECODER_GOAL",
    "DECODER_PER_OBJECT_GOAL",
    "GOAL_MODELS",
    "INT8_GOALS",
    "PEAK_GOAL",
    "PEAK_GOALS",
    "SPEED_GOALS",
    "TINY_GOALS",
    "GoalResult",
    "Verdict",
    "check_goals",
    "goals_markdown",
    "main",
    "tiny_goals_line",
]

#: Models the speed goals are set for (the peers run them).
GOAL_MODELS = ("sam_vit_b", "mobile_sam")
#: Peer suite -> smallest peer time / samedge time, for the encoder and the whole predictor.
SPEED_GOALS = (("pytorch", 8.0), ("samexporter", 4.0), ("openvino-notebook", 1.3))
#: Parts the speed goals are checked on (the predictor: a frame in, one object's mask out).
SPEED_PARTS = ("encoder", "predictor")
#: (objects, largest time of that many objects in one call over one object).
DECODER_GOAL = (16, 4.0)
#: (objects, largest per-object time at that many objects over one object's), and the
#: backends it is checked on (each at the precision it runs an FP32 directory in).
DECODER_PER_OBJECT_GOAL = (16, 0.7)
DECODER_PER_OBJECT_BACKENDS = ("openvino", "onnxruntime")
#: Smallest INT8-build encoder speed-up: over FP32 under the VNNI cap (a CPU with int8
#: dot products but no AMX or bf16), and over bf16 on a CPU with AMX.
INT8_GOALS = {"vnni": 1.5, "amx": 1.6}
#: Smallest fraction of the measured peak GEMM rate the encoder should reach.
PEAK_GOAL = 0.40
#: Models held to another fraction than :data:`PEAK_GOAL`.
PEAK_GOALS = {"sam_vit_b": 0.50}
#: The accuracy gate a row must pass to count: ``samedge build``'s default FP32
#: gate (the one that decides for the models the speed goals are set for,
#: which have no ground truth), taken from the gate itself.
GATE = GateConfig()
#: (mean, 5th-percentile) mask IoU against FP32 of :data:`GATE`.
ACCURACY_GATE = (GATE.mean_iou_threshold, GATE.p5_iou_threshold)
#: samedge-tiny's accuracy goal: (prompt, smallest held-out mIoU).
TINY_GOALS = (("click", 0.75), ("box", 0.85))

_PEER_NAMES = {
    "pytorch": "PyTorch predictor",
    "samexporter": "samexporter",
    "openvino-notebook": "OpenVINO notebook",
}
_AMX_FLAGS = ("amx_int8", "amx_bf16", "amx_tile")


class Verdict(enum.Enum):
    MET = "met"
    MISSED = "missed"
    NOT_MEASURED = "not measured"


@dataclass(frozen=True)
class GoalResult:
    """One goal for one model.

    Attributes:
        goal: The goal in words (``"encoder ≥ 8× PyTorch predictor"``).
        model: Registry name.
        verdict: Met, missed, or not measured.
        numbers: The numbers behind the verdict, or what is missing.
        value: The measured quantity (a ratio or a fraction), when there is one.
        target: The goal's threshold.
    """

    goal: str
    model: str
    verdict: Verdict
    numbers: str
    value: float | None = None
    target: float | None = None


def check_goals(report: BenchReport) -> tuple[GoalResult, ...]:
    """Every goal for every model of ``report`` that it applies to.

    Speed goals apply to :data:`GOAL_MODELS` present in the report (samedge's
    rows); the decoder, INT8 and peak goals to every model with samedge rows.
    """
    models = list(dict.fromkeys(m.model for m in report.measurements if m.suite == "samedge"))
    out: list[GoalResult] = []
    for model in models:
        default = _default_encoder(report, model)
        capped = _fastest_capped(report, model)
        if model in GOAL_MODELS:
            selections: list[tuple[str, Measurement | str | None]] = [
                ("", default),
                (", fastest build", _fastest_built(report, model)),
                (", no AMX (ISA cap)", capped),
            ]
            for suffix, row in selections:
                if row is None:  # no fp16/int8 build measured: not listed
                    continue
                for part in SPEED_PARTS:
                    for suite, target in SPEED_GOALS:
                        goal = f"{part} ≥ {target:g}× {_PEER_NAMES[suite]}{suffix}"
                        out.append(_speed_row(report, model, suite, target, row, goal, part))
        out.extend(_int8(report, model))
        out.append(_decoder(report, model, default))
        out.extend(_decoder_per_object(report, model))
        target = PEAK_GOALS.get(model, PEAK_GOAL)
        goal = f"encoder at ≥ {100 * target:.0f}% of peak GEMM"
        out.append(_peak(model, default, goal, target))
        if isinstance(capped, Measurement):
            out.append(_peak(model, capped, f"{goal}, no AMX (ISA cap)", target))
    return tuple(out)


def goals_markdown(goals: Sequence[GoalResult]) -> list[str]:
    """The goals as a markdown table (no heading), or one line when there are none."""
    if not goals:
        return ["No goals apply: the report has no samedge rows."]
    lines = ["| goal | model | verdict | numbers |", "| --- | --- | --- | --- |"]
    for g in goals:
        verdict = f"**{g.verdict.value}**" if g.verdict is Verdict.MISSED else g.verdict.value
        lines.append(f"| {g.goal} | {g.model} | {verdict} | {g.numbers} |")
    return lines


# -- selection -----------------------------------------------------------------------


def _uncapped_fp32_dir(report: BenchReport, model: str, part: str) -> list[Measurement]:
    return [
        m
        for m in report.rows(part)
        if m.model == model and m.isa is None and m.model_precision in (None, "fp32")
    ]


def _default_encoder(report: BenchReport, model: str) -> Measurement | str:
    """The encoder row ``backend="auto"`` runs for an FP32 directory, or why there is none.

    The same choice as :func:`~samedge.bench.report.peer_ratios`' ``default``:
    the default backend's fastest row of an FP32 directory, uncapped.
    """
    backend = report.default.get("backend")
    if not backend:
        return "the run recorded no default backend"
    rows = [m for m in _uncapped_fp32_dir(report, model, "encoder") if m.backend == backend]
    if not rows:
        return f"no encoder row of the default backend ({backend}) for an fp32 directory"
    return min(rows, key=lambda m: m.timing.median_ms)


def _passes_gate(row: Measurement) -> bool | None:
    mean, p5 = row.accuracy.get("mean_iou_vs_fp32"), row.accuracy.get("p5_iou_vs_fp32")
    if mean is None or p5 is None:
        return None
    # The worst-frame cosine is not gated by default (GATE.min_cosine is None).
    return GATE.check(mean, p5, min_cosine=1.0).passed


def _fastest_passing(rows: Sequence[Measurement], none_pass: str) -> Measurement | str:
    """The fastest of ``rows`` that passes the accuracy gate, or ``none_pass``."""
    passing = [m for m in rows if _passes_gate(m)]
    return min(passing, key=lambda m: m.timing.median_ms) if passing else none_pass


def _fastest_capped(report: BenchReport, model: str) -> Measurement | str:
    """The fastest ISA-capped encoder row (any build) that passes the gate, or why there is none."""
    rows = [m for m in report.rows("encoder") if m.model == model and m.isa is not None]
    if not rows:
        return "no ISA-capped rows in this run (`samedge bench --isa-cap`)"
    return _fastest_passing(rows, "no ISA-capped configuration passes the accuracy gate")


def _fastest_built(report: BenchReport, model: str) -> Measurement | str | None:
    """The fastest uncapped encoder row of an fp16/int8 build that passes the gate.

    None when the run measured no such build (``samedge bench --builds``): the
    goal is then not listed, rather than "not measured" in every report.
    """
    rows = [
        m
        for m in report.rows("encoder")
        if m.model == model and m.isa is None and m.model_precision not in (None, "fp32")
    ]
    if not rows:
        return None
    return _fastest_passing(rows, "no fp16/int8 build passes the accuracy gate")


def _label(row: Measurement) -> str:
    build = f"{row.model_precision} build, " if row.model_precision else ""
    cap = f" [{row.isa}]" if row.isa else ""
    return f"{build}{row.backend} {row.precision}{cap} {_ms(row.timing.median_ms)} ms"


def _ms(value: float) -> str:
    return f"{value:.{2 if value < 10 else 1 if value < 100 else 0}f}"


def _accuracy(row: Measurement) -> str:
    mean, p5 = row.accuracy.get("mean_iou_vs_fp32"), row.accuracy.get("p5_iou_vs_fp32")
    if mean is None or p5 is None:
        return "no mask IoU vs fp32"
    return f"mask IoU vs fp32 {mean:.3f} (p5 {p5:.3f})"


_GATE_TEXT = f"gate: mean ≥ {ACCURACY_GATE[0]:g}, p5 ≥ {ACCURACY_GATE[1]:g}"


# -- goals ---------------------------------------------------------------------------


def _companion(report: BenchReport, row: Measurement, part: str) -> Measurement | None:
    """The ``part`` row (one object) of the configuration ``row`` (an encoder row) times."""
    if part == row.part:
        return row
    same = (row.model, row.backend, row.device, row.precision, row.model_precision, row.isa)
    return next(
        (
            m
            for m in report.rows(part)
            if (m.model, m.backend, m.device, m.precision, m.model_precision, m.isa) == same
            and m.objects in (None, 1)
        ),
        None,
    )


def _peer_rows(report: BenchReport, model: str, suite: str, part: str) -> list[Measurement]:
    """A peer's rows comparable with samedge's ``part`` rows (one object).

    Encoder rows time the network alone (``note`` ``"engine: ..."``); predictor rows
    are the peer's own API, a frame in and a mask out, like samedge's.
    """
    return [
        m
        for m in report.measurements
        if m.suite == suite
        and m.model == model
        and m.part == part
        and m.objects in (None, 1)
        and (part == "predictor" or m.note.startswith("engine:"))
    ]


def _speed_row(
    report: BenchReport,
    model: str,
    suite: str,
    target: float,
    row: Measurement | str,
    goal: str,
    part: str = "encoder",
) -> GoalResult:
    """``goal`` for one chosen samedge configuration against the peer's fastest engine.

    ``row`` is the configuration's encoder row: it carries the accuracy the gate
    judges; for ``part="predictor"`` the same configuration's predictor row is timed.
    """
    if isinstance(row, str):
        return GoalResult(goal, model, Verdict.NOT_MEASURED, row, target=target)
    timed = _companion(report, row, part)
    if timed is None:
        return GoalResult(
            goal,
            model,
            Verdict.NOT_MEASURED,
            f"no {part} row for {_label(row)} in this run (`samedge bench --parts`)",
            target=target,
        )
    # For the capped rows: the peers run uncapped, but PyTorch and samexporter
    # compute in fp32, which uses neither bf16 nor AMX, so their times stand for
    # a CPU without them (the OpenVINO notebook's bf16 does use them: a capped
    # comparison with it is pessimistic for samedge).
    peers = _peer_rows(report, model, suite, part)
    if not peers:
        return GoalResult(
            goal,
            model,
            Verdict.NOT_MEASURED,
            f"no {suite} {part} row in this run (`samedge bench --peers`); samedge: "
            f"{_label(timed)}",
            target=target,
        )
    # A peer with several engine rows (fp32 and its own INT8) is held to its fastest.
    peer = min(peers, key=lambda m: m.timing.median_ms)
    ratio = peer.timing.median_ms / timed.timing.median_ms
    return _speed_verdict(
        goal, model, target, ratio, peer.timing.median_ms, peer.precision, timed, row
    )


def _speed_verdict(
    goal: str,
    model: str,
    target: float,
    ratio: float,
    peer_ms: float,
    peer_precision: str,
    timed: Measurement,
    gated: Measurement,
) -> GoalResult:
    numbers = (
        f"peer {peer_precision} {_ms(peer_ms)} ms / samedge {_label(timed)} = {ratio:.1f}×; "
        f"{_accuracy(gated)}, {_GATE_TEXT}"
    )
    gate = _passes_gate(gated)
    if gate is None:
        return GoalResult(goal, model, Verdict.NOT_MEASURED, numbers, ratio, target)
    met = gate and ratio >= target
    return GoalResult(goal, model, Verdict.MET if met else Verdict.MISSED, numbers, ratio, target)


def _decoder(report: BenchReport, model: str, default: Measurement | str) -> GoalResult:
    many, target = DECODER_GOAL
    goal = f"decoder: {many} objects in one call ≤ {target:g}× one object"
    if isinstance(default, str):
        return GoalResult(goal, model, Verdict.NOT_MEASURED, default, target=target)
    # The decoder of the configuration whose encoder is the default: same
    # backend, device and precision.
    same = (default.backend, default.device, default.precision)
    rows = {
        m.objects: m
        for m in _uncapped_fp32_dir(report, model, "decoder")
        if (m.backend, m.device, m.precision) == same
    }
    one, lots = rows.get(1), rows.get(many)
    if one is None or lots is None:
        measured = ", ".join(f"B={b}" for b in sorted(b for b in rows if b is not None))
        return GoalResult(
            goal,
            model,
            Verdict.NOT_MEASURED,
            f"needs decoder rows for B=1 and B={many} ({default.backend} {default.precision}); "
            f"measured: {measured or 'none'}",
            target=target,
        )
    ratio = lots.timing.median_ms / one.timing.median_ms
    numbers = (
        f"{default.backend} {default.precision}: B={many} {_ms(lots.timing.median_ms)} ms / "
        f"B=1 {_ms(one.timing.median_ms)} ms = {ratio:.2f}×"
    )
    verdict = Verdict.MET if ratio <= target else Verdict.MISSED
    return GoalResult(goal, model, verdict, numbers, ratio, target)


def _decoder_per_object(report: BenchReport, model: str) -> list[GoalResult]:
    """Per-object decoder cost at many objects over one object's, per backend of the run.

    Each backend at the precision it runs an FP32 directory in (its fastest
    encoder row's); a backend the run did not time is not listed.
    """
    many, target = DECODER_PER_OBJECT_GOAL
    out = []
    for backend in DECODER_PER_OBJECT_BACKENDS:
        encoders = [m for m in _uncapped_fp32_dir(report, model, "encoder") if m.backend == backend]
        if not encoders:
            continue
        precision = min(encoders, key=lambda m: m.timing.median_ms).precision
        goal = f"decoder per object at {many} objects ≤ {target:g}× one object's, {backend}"
        rows = {
            m.objects: m
            for m in _uncapped_fp32_dir(report, model, "decoder")
            if m.backend == backend and m.precision == precision
        }
        one, lots = rows.get(1), rows.get(many)
        if one is None or lots is None:
            out.append(
                GoalResult(
                    goal,
                    model,
                    Verdict.NOT_MEASURED,
                    f"needs decoder rows for B=1 and B={many} ({backend} {precision})",
                    target=target,
                )
            )
            continue
        ratio = lots.timing.median_ms / many / one.timing.median_ms
        numbers = (
            f"{backend} {precision}: B={many} {_ms(lots.timing.median_ms)} ms / {many} / "
            f"B=1 {_ms(one.timing.median_ms)} ms = {ratio:.2f}×"
        )
        if lots.gflops and one.gflops:
            # What the graph's FLOPs allow at an equal rate: below it only when the
            # bigger call runs faster per FLOP (or the per-object FLOPs shrink).
            floor = lots.gflops / many / one.gflops
            numbers += f" (FLOPs per object at B={many} / B=1: {floor:.2f}×)"
        verdict = Verdict.MET if ratio <= target else Verdict.MISSED
        out.append(GoalResult(goal, model, verdict, numbers, ratio, target))
    return out


def _int8(report: BenchReport, model: str) -> list[GoalResult]:
    """INT8 that pays, when the run measured an INT8 build of ``model`` (else not listed).

    The fastest INT8 encoder row that passes the gate against the FP32
    directory's fastest row on the same backend: both under the ISA cap (a
    VNNI-only CPU: against fp32), and, on a CPU with AMX, both uncapped (against
    bf16, what OpenVINO runs an FP32 directory in there).
    """
    int8 = [m for m in report.rows("encoder") if m.model == model and m.model_precision == "int8"]
    if not int8:
        return []
    out = [
        _int8_goal(
            report,
            model,
            f"INT8 encoder ≥ {INT8_GOALS['vnni']:g}× FP32, no AMX (ISA cap)",
            INT8_GOALS["vnni"],
            [m for m in int8 if m.isa is not None],
            capped=True,
        )
    ]
    flags = report.machine.get("cpu_flags") or ()
    if any(flag in flags for flag in _AMX_FLAGS):
        out.append(
            _int8_goal(
                report,
                model,
                f"INT8 encoder ≥ {INT8_GOALS['amx']:g}× bf16, AMX",
                INT8_GOALS["amx"],
                [m for m in int8 if m.isa is None],
                capped=False,
            )
        )
    return out


def _int8_goal(
    report: BenchReport,
    model: str,
    goal: str,
    target: float,
    candidates: Sequence[Measurement],
    *,
    capped: bool,
) -> GoalResult:
    where = "ISA-capped" if capped else "uncapped"
    row = _fastest_passing(candidates, f"no {where} INT8 row passes the accuracy gate")
    if not candidates:
        row = f"no {where} INT8 encoder row in this run" + (" (`--isa-cap`)" if capped else "")
    if isinstance(row, str):
        return GoalResult(goal, model, Verdict.NOT_MEASURED, row, target=target)
    floats = [
        m
        for m in report.rows("encoder")
        if m.model == model
        and m.model_precision in (None, "fp32")
        and m.backend == row.backend
        and (m.isa is not None) == capped
        and (capped or m.precision == "bf16")
    ]
    if not floats:
        return GoalResult(
            goal,
            model,
            Verdict.NOT_MEASURED,
            f"no {where} FP32-directory {row.backend} row to compare {_label(row)} with",
            target=target,
        )
    ref = min(floats, key=lambda m: m.timing.median_ms)
    ratio = ref.timing.median_ms / row.timing.median_ms
    numbers = f"{_label(ref)} / {_label(row)} = {ratio:.2f}×; {_accuracy(row)}, {_GATE_TEXT}"
    verdict = Verdict.MET if ratio >= target else Verdict.MISSED
    return GoalResult(goal, model, verdict, numbers, ratio, target)


def _peak(model: str, row: Measurement | str, goal: str, target: float) -> GoalResult:
    if isinstance(row, str):
        return GoalResult(goal, model, Verdict.NOT_MEASURED, row, target=target)
    fraction = row.fraction_of_peak
    if fraction is None:
        return GoalResult(
            goal,
            model,
            Verdict.NOT_MEASURED,
            f"{_label(row)}: no peak GEMM rate for {row.backend} {row.precision} in this run",
            target=target,
        )
    if fraction > 1.0:
        # The encoder outran the "peak": that GEMM run was slowed (other
        # processes, frequency), so the fraction says nothing.
        return GoalResult(
            goal,
            model,
            Verdict.NOT_MEASURED,
            f"{_label(row)}: {100 * fraction:.0f}% of the measured peak, above 100%: the peak "
            "GEMM was measured too low (noise); rerun on a quieter machine",
            fraction,
            target,
        )
    verdict = Verdict.MET if fraction >= target else Verdict.MISSED
    return GoalResult(
        goal, model, verdict, f"{_label(row)}: {100 * fraction:.0f}% of peak", fraction, target
    )


def tiny_goals_line(miou: dict[str, float | None]) -> str:
    """samedge-tiny's held-out mIoU against :data:`TINY_GOALS`, one line."""
    parts = []
    for prompt, target in TINY_GOALS:
        value = miou.get(prompt)
        name = "1 click" if prompt == "click" else prompt
        if value is None:
            parts.append(f"{name}: not measured")
        else:
            parts.append(f"{name} {value:.3f}, {'met' if value >= target else 'missed'}")
    goal = ", ".join(f"{t:g} for {'one click' if p == 'click' else 'a box'}" for p, t in TINY_GOALS)
    return f"Goal (mIoU {goal}): {'; '.join(parts)}."


def _machine_goals(directory: Path) -> str | None:
    """``goals.md`` of one results folder, or None when it holds no report."""
    lines = [f"# Goals on {directory.name}", "", "Generated by `python benchmarks/goals.py`.", ""]
    found = False
    for path in sorted(directory.glob("bench*.json")):
        try:
            report = BenchReport.load(path)
        except InputError as e:
            log.warning("skipping %s: %s", path, e)
            continue
        found = True
        lines += [f"## {path.name}", "", f"`{report.command}`", ""]
        lines += [*goals_markdown(check_goals(report)), ""]
    tiny = directory / "eval_samedge_tiny.json"
    if tiny.is_file():
        data: Any = json.loads(tiny.read_text(encoding="utf-8"))
        found = True
        lines += [f"## {tiny.name}", "", tiny_goals_line(dict(data.get("miou") or {})), ""]
    return "\n".join(lines) if found else None


def main(argv: Sequence[str] | None = None) -> int:
    """``python benchmarks/goals.py [RESULTS]``: write ``<machine>/goals.md`` for each machine."""
    parser = argparse.ArgumentParser(
        prog="python benchmarks/goals.py", description=__doc__.split("\n")[0]
    )
    root = Path(__file__).resolve().parent / "results"
    parser.add_argument("results", type=Path, nargs="?", default=root)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    for directory in sorted(p for p in args.results.iterdir() if p.is_dir()):
        text = _machine_goals(directory)
        if text is not None:
            path = write_atomic(directory / "goals.md", text)
            print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
