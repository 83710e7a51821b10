"""Benchmarks with their context: ``samedge bench`` (installed as ``samedge.bench``).

Every number comes with the machine, the library versions, the exact command,
the machine's measured peak GEMM rate and the model's FLOPs beside it, so a
reader can reproduce it and judge it. One :class:`Measurement` per timed
configuration, gathered in a :class:`BenchReport` that saves JSON, markdown
and a PNG plot (by default into :func:`default_output_dir`, under the current
directory). Rows of other tools timed beside samedge (the repository's peers,
``benchmarks/peers.py``) fit in the same report, with :func:`peer_ratios`.

Example:
    >>> from samedge.bench import BenchConfig, run_bench                  # doctest: +SKIP
    >>> report = run_bench(["samedge_tiny", "mobile_sam"], BenchConfig(isa_cap=True))
    >>> report.save(default_output_dir(report.machine["name"]), "bench")
"""

from __future__ import annotations

from samedge.bench._machine import library_versions, machine_info, machine_name
from samedge.bench.builds import BuildResult, make_builds
from samedge.bench.checkpoints import random_checkpoint
from samedge.bench.flops import COUNTED_OPS, FlopCount, count_flops, count_flops_model
from samedge.bench.measure import ISA_CAP, PartJob, Variant, measure_part, plan_variants, run_job
from samedge.bench.peak import PeakJob, PeakRate, gemm_graph, measure_peak
from samedge.bench.records import ENGINE, PARTS, Measurement, Timing
from samedge.bench.report import BenchReport, peer_ratios
from samedge.bench.run import (
    BenchConfig,
    BenchModel,
    default_output_dir,
    resolve_models,
    run_bench,
)
from samedge.bench.video import VideoBenchConfig, run_video_bench
from samedge.bench.video_report import VideoClip, VideoReport, VideoRow

__all__ = [
    "COUNTED_OPS",
    "ENGINE",
    "ISA_CAP",
    "PARTS",
    "BenchConfig",
    "BenchModel",
    "BenchReport",
    "BuildResult",
    "FlopCount",
    "Measurement",
    "PartJob",
    "PeakJob",
    "PeakRate",
    "Timing",
    "Variant",
    "VideoBenchConfig",
    "VideoClip",
    "VideoReport",
    "VideoRow",
    "count_flops",
    "count_flops_model",
    "default_output_dir",
    "gemm_graph",
    "library_versions",
    "machine_info",
    "machine_name",
    "make_builds",
    "measure_part",
    "measure_peak",
    "peer_ratios",
    "plan_variants",
    "random_checkpoint",
    "resolve_models",
    "run_bench",
    "run_job",
    "run_video_bench",
]
