"""Benchmarks with their context: ``samedge bench`` (installed as ``samedge.bench``).

Every number comes with the machine, the library versions, the exact command,
the machine's measured peak GEMM rate and the model's FLOPs beside it, so a
reader can reproduce it and judge it. One :class:`Measurement` per timed
configuration (samedge's and the peers'), gathered in a :class:`BenchReport`
that saves JSON, markdown and a PNG plot, checked against the project's goals
(:func:`check_goals`).

Example:
    >>> from samedge.bench import BenchConfig, run_bench                  # doctest: +SKIP
    >>> report = run_bench(["samedge_tiny", "mobile_sam"], BenchConfig(isa_cap=True))
    >>> report.save("benchmarks/results/amd-epyc-2c", "bench")
"""

from __future__ import annotations

from samedge.bench._machine import library_versions, machine_info, machine_name
from samedge.bench.builds import BuildResult, make_builds
from samedge.bench.flops import COUNTED_OPS, FlopCount, count_flops, count_flops_model
from samedge.bench.goals import GoalResult, Verdict, check_goals
from samedge.bench.measure import ISA_CAP, PartJob, Variant, measure_part, plan_variants, run_job
from samedge.bench.peak import PeakJob, PeakRate, gemm_graph, measure_peak
from samedge.bench.readme import readme_block, rerender_markdown, update_readme
from samedge.bench.records import PARTS, Measurement, Timing
from samedge.bench.report import BenchReport, peer_ratios
from samedge.bench.run import BenchConfig, BenchModel, resolve_models, run_bench

__all__ = [
    "COUNTED_OPS",
    "ISA_CAP",
    "PARTS",
    "BenchConfig",
    "BenchModel",
    "BenchReport",
    "BuildResult",
    "FlopCount",
    "GoalResult",
    "Measurement",
    "PartJob",
    "PeakJob",
    "PeakRate",
    "Timing",
    "Variant",
    "Verdict",
    "check_goals",
    "count_flops",
    "count_flops_model",
    "gemm_graph",
    "library_versions",
    "machine_info",
    "machine_name",
    "make_builds",
    "measure_part",
    "measure_peak",
    "peer_ratios",
    "plan_variants",
    "readme_block",
    "rerender_markdown",
    "resolve_models",
    "run_bench",
    "run_job",
    "update_readme",
]
