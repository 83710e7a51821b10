"""``samedge bench``: every model × backend × precision this machine has, beside its limit.

:func:`run_bench` resolves the models (a model directory, the built-in
``samedge_tiny``, or a registry name such as ``mobile_sam``, which it exports
with seeded random weights into a work directory, saving the checkpoint so the
peers can load the very same weights), builds the FP16/INT8 directories that
``BenchConfig.builds`` asks for from each FP32 one (:mod:`samedge.bench.builds`),
plans the variants each directory can run as
(:func:`samedge.bench.measure.plan_variants`), runs every variant × part in a
process of its own, measures the peak GEMM rate of every backend and
precision that ran an encoder (:mod:`samedge.bench.peak`), counts the graphs'
FLOPs (:mod:`samedge.bench.flops`), measures each variant's mask accuracy
against the FP32 pipeline on held-out frames (an OpenVINO bf16 run of an FP32
directory is not FP32; the report of ``samedge build`` is the fallback),
and returns a :class:`~samedge.bench.report.BenchReport`. Other tools'
rows (the repository's peers, ``benchmarks/peers.py``) can be added to a
saved report; :func:`~samedge.bench.report.peer_ratios` compares them.

Example:
    >>> report = run_bench(["samedge_tiny"], BenchConfig(runs=5))   # doctest: +SKIP
    >>> report.save(default_output_dir("amd-epyc-2c"), "bench_samedge_tiny")  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from samedge.bench._machine import library_versions, machine_info
from samedge.bench.builds import BUILD_PRECISIONS, check_build_args, make_builds
from samedge.bench.flops import count_flops
from samedge.bench.measure import (
    ISA_CAP,
    AccuracyJob,
    PartJob,
    Variant,
    plan_variants,
    run_job,
)
from samedge.bench.peak import PEAK_PRECISIONS, PeakJob, PeakRate
from samedge.bench.records import PARTS, Measurement
from samedge.bench.report import BenchReport, peer_ratios, with_fraction_of_peak
from samedge.errors import BackendUnavailableError, InputError, ModelDirError, UnknownNameError

__all__ = [
    "BENCH_BACKENDS",
    "BENCH_PRECISIONS",
    "BenchConfig",
    "BenchModel",
    "default_output_dir",
    "resolve_models",
    "run_bench",
]

log = logging.getLogger(__name__)

BENCH_BACKENDS = ("onnxruntime", "openvino", "tensorrt")
BENCH_PRECISIONS = ("fp32", "bf16", "fp16", "int8")
_REPORT_NAME = "report.json"  # what `samedge build` writes into a built directory


@dataclass(frozen=True)
class BenchConfig:
    """What ``samedge bench`` measures; ``None`` means "the default".

    Attributes:
        backends: Backends to measure; None = every installed one.
        precisions: Keep variants computing in these; None = all.
        objects: Decoder batch sizes, each timed as one call.
        points: Clicks per object.
        runs: Timed runs per row.
        warmup: Untimed runs before them.
        threads: CPU threads per backend; None = the logical CPUs this process may use.
        isa_cap: Also run OpenVINO on the CPU with an f32 hint under
            ``ONEDNN_MAX_CPU_ISA=AVX512_CORE_VNNI`` (a CPU without bf16/AMX).
        parts: Which parts to time.
        frame_size: ``(width, height)`` of the predictor's frame.
        peak_size: Side of the peak-rate GEMM (0 skips the peak rates).
        peak_repeats: Peak-rate measurements per backend and precision, each in
            a process of its own; the fastest is kept. One slowed by other
            processes makes the encoder's fraction of peak exceed 100%.
        accuracy_frames: Held-out frames for each variant's mask accuracy
            against FP32 (0: take it from the build's ``report.json`` only).
        work_dir: Where random-weight checkpoints, their exports and the
            ``builds`` go (reused across runs); None = ``<samedge cache>/bench``.
        job_timeout_s: Kill a job (or a build) after this long.
        seed: Seed of the random weights and inputs.
        builds: Also build each FP32 model at these precisions (``"fp16"``,
            ``"int8"``) with ``samedge build`` into ``<work_dir>/<key>/<precision>``
            (reused when already built the same way; :mod:`samedge.bench.builds`)
            and measure the builds right after their source. A failed build is
            recorded in ``failures``; a source that is not FP32 is skipped.
        build_args: Extra ``samedge build`` arguments for every build, one
            string each (``("--no-attention-int8",)``, ``("--frames", "16")``).
    """

    backends: tuple[str, ...] | None = None
    precisions: tuple[str, ...] | None = None
    objects: tuple[int, ...] = (1, 4, 16)
    points: int = 1
    runs: int = 20
    warmup: int = 3
    threads: int | None = None
    isa_cap: bool = False
    parts: tuple[str, ...] = PARTS
    frame_size: tuple[int, int] = (640, 480)
    peak_size: int = 2048
    peak_repeats: int = 3
    accuracy_frames: int = 2
    work_dir: Path | None = None
    job_timeout_s: float = 1800.0
    seed: int = 0
    builds: tuple[str, ...] = ()
    build_args: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        for name, allowed in (
            ("backends", BENCH_BACKENDS),
            ("precisions", BENCH_PRECISIONS),
            ("parts", PARTS),
        ):
            value = getattr(self, name)
            if value is None:
                continue
            if not isinstance(value, tuple) or not value:
                raise InputError(f"{name}: got {value!r}, expected a non-empty tuple or None")
            bad = [v for v in value if v not in allowed]
            if bad:
                raise InputError(f"{name}: got {bad}, expected values from {', '.join(allowed)}")
        if not isinstance(self.objects, tuple) or not self.objects:
            raise InputError(f"objects: got {self.objects!r}, expected a non-empty tuple of ints")
        for b in self.objects:
            if isinstance(b, bool) or not isinstance(b, int) or b < 1:
                raise InputError(f"objects: got {b!r}, expected object counts >= 1")
        twice = sorted({b for b in self.objects if self.objects.count(b) > 1})
        if twice:
            raise InputError(
                f"objects: {', '.join(map(str, twice))} listed more than once in "
                f"{','.join(map(str, self.objects))}; each batch size is one row, list it once"
            )
        for name in ("points", "runs"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise InputError(f"{name}: got {value!r}, expected an int >= 1")
        if isinstance(self.warmup, bool) or not isinstance(self.warmup, int) or self.warmup < 0:
            raise InputError(f"warmup: got {self.warmup!r}, expected an int >= 0")
        if self.threads is not None and (
            isinstance(self.threads, bool) or not isinstance(self.threads, int) or self.threads < 1
        ):
            raise InputError(f"threads: got {self.threads!r}, expected an int >= 1 or None")
        w, h = self.frame_size
        if min(w, h) < 1:
            raise InputError(f"frame_size: got {self.frame_size}, expected (width, height) >= 1")
        if self.peak_size != 0 and self.peak_size < 16:
            raise InputError(f"peak_size: got {self.peak_size}, expected 0 (skip) or >= 16")
        r = self.peak_repeats
        if isinstance(r, bool) or not isinstance(r, int) or r < 1:
            raise InputError(f"peak_repeats: got {r!r}, expected an int >= 1")
        if (
            isinstance(self.accuracy_frames, bool)
            or not isinstance(self.accuracy_frames, int)
            or self.accuracy_frames < 0
        ):
            raise InputError(f"accuracy_frames: got {self.accuracy_frames!r}, expected an int >= 0")
        if self.job_timeout_s <= 0:
            raise InputError(f"job_timeout_s: got {self.job_timeout_s}, expected > 0")
        if not isinstance(self.builds, tuple):
            raise InputError(
                f"builds: got {self.builds!r}, expected a tuple such as ('fp16', 'int8')"
            )
        bad = [b for b in self.builds if b not in BUILD_PRECISIONS]
        if bad:
            raise InputError(
                f"builds: got {bad}, expected values from {', '.join(BUILD_PRECISIONS)}"
            )
        if len(set(self.builds)) != len(self.builds):
            raise InputError(f"builds: got {self.builds!r}, expected each precision once")
        check_build_args(self.build_args)
        if self.build_args and not self.builds:
            raise InputError(
                f"build_args: got {self.build_args!r} without builds; they are passed to the "
                "builds bench makes, so set builds (--builds fp16,int8) too, or drop them"
            )


@dataclass(frozen=True)
class BenchModel:
    """A model directory to measure.

    Attributes:
        name: Architecture name recorded in the rows (the card's ``model``).
        directory: The model directory.
        precision: What it holds (``"fp32"``, ``"fp16"``, ``"int8"``).
        weights: Where its weights come from, in words.
        checkpoint: The checkpoint it was exported from, when bench made it.
        accuracy: Mean/p5 mask IoU against FP32 from its ``report.json``.
        reference: The FP32 directory its accuracy is measured against (itself
            when FP32; a build's recorded source), None when unknown.
        built_by: For a build bench made (``BenchConfig.builds``): the
            equivalent ``samedge build`` command and whether it was reused.
    """

    name: str
    directory: Path
    precision: str
    weights: str
    checkpoint: Path | None = None
    accuracy: dict[str, float] | None = None
    reference: Path | None = None
    built_by: dict[str, Any] | None = None


def _known_names() -> list[str]:
    from samedge.models import MODELS
    from samedge.predictor import BUILTIN_MODELS

    return sorted(set(MODELS) | set(BUILTIN_MODELS))


def _check_name(model: str | os.PathLike[str]) -> None:
    """Fail fast, before anything runs, on an argument that is neither a directory nor a name."""
    from samedge._registry import unknown_name_message

    path = Path(model)
    if path.is_dir() or os.fspath(model) in _known_names():
        return
    if path.exists():
        raise ModelDirError(
            f"model {path}: is a file, expected a model directory (encoder.onnx, decoder.onnx, "
            "samedge.json) or a model name"
        )
    message = unknown_name_message("model", os.fspath(model), _known_names())
    raise UnknownNameError(f"{message} Or pass a model directory (none exists at {path}).")


def _build_accuracy(directory: Path) -> dict[str, float] | None:
    from samedge.calibration.report import BuildReport

    path = directory / _REPORT_NAME
    if not path.is_file():
        return None
    try:
        fidelity = BuildReport.from_dict(json.loads(path.read_text(encoding="utf-8"))).fidelity
    except (OSError, ValueError) as e:  # InputError is a ValueError
        log.warning("%s: unreadable (%s); its rows get no accuracy number", path, e)
        return None
    return {"mean_iou_vs_fp32": fidelity.mean_iou, "p5_iou_vs_fp32": fidelity.p5_iou}


def _reference_dir(directory: Path, card: Any) -> Path | None:
    """The FP32 directory a build came from (its card's provenance), if still there."""
    from samedge._fidelity import BuildSource
    from samedge.model_dir import read_model_dir

    if card.precision == "fp32":
        return directory
    source = BuildSource.of(card)
    if source.model_dir is None:
        return None
    try:
        ref = read_model_dir(source.model_dir)
    except ModelDirError:
        return None
    if ref.precision != "fp32":
        return None
    if source.matches(source.model_dir, ref) is False:
        log.warning(
            "%s: its recorded source %s has changed since the build; accuracy comes from "
            "its report.json",
            directory,
            source.model_dir,
        )
        return None
    return source.model_dir


def _random_export(name: str, work: Path, seed: int) -> tuple[Path, Path]:
    """Export ``name`` from the peers' random-weight checkpoint (reused when already there).

    The checkpoint is :func:`samedge.bench.checkpoints.random_checkpoint`'s, so samedge
    and every peer in the same work directory time the same weights.
    """
    from samedge._io import sha256_file
    from samedge.model_dir import read_model_dir

    out = work / f"{name}-seed{seed}" / "fp32"
    try:
        import torch  # noqa: F401  (the checkpoint and the export need it)
    except ImportError as e:
        raise BackendUnavailableError(
            f"model {name!r}: bench exports it with random weights, which needs torch ({e}); "
            "install the export extra with `pip install samedge[export]`, or pass an exported "
            "model directory"
        ) from e
    from samedge.bench.checkpoints import random_checkpoint
    from samedge.exporters import ExportConfig, export_model
    from samedge.exporters.graphs import exported_with

    checkpoint = random_checkpoint(name, work, seed)
    # Reused only when made from this checkpoint by these exporters: changed
    # exporter code makes a different graph of the same weights.
    exporters = exported_with()["exporters_sha256"]
    if (out / "samedge.json").is_file():
        try:
            card = read_model_dir(out)
        except ModelDirError:
            card = None
        made_by = dict((card.details if card else {}).get("exported_with") or {})
        if card is not None and card.checkpoint_sha256 == sha256_file(checkpoint):
            if made_by.get("exporters_sha256") == exporters:
                log.info("bench: reusing %s (exported from %s)", out, checkpoint)
                return out, checkpoint
            log.info("bench: %s was exported by other exporter code; exporting again", out)
    log.info("bench: exporting %s with random weights (seed %d) into %s", name, seed, out)
    export_model(name, checkpoint, out, config=ExportConfig(progress=False, seed=seed), force=True)
    return out, checkpoint


def resolve_models(
    models: Sequence[str | os.PathLike[str]], work_dir: Path, seed: int = 0
) -> list[BenchModel]:
    """Turn ``samedge bench`` arguments into model directories (exporting where needed).

    Raises:
        UnknownNameError: an argument is neither a directory nor a known name
            (the message suggests the closest name).
        ModelDirError: a directory is not a model directory.
        BackendUnavailableError: a registry model must be exported and torch is missing.
    """
    from samedge.model_dir import read_model_dir
    from samedge.models import MODELS
    from samedge.predictor import BUILTIN_MODELS, resolve_model

    if not models:
        raise InputError("models: got none, expected model directories or names")
    for model in models:
        _check_name(model)
    resolved = []
    for model in models:
        path, text = Path(model), os.fspath(model)
        checkpoint = None
        if path.is_dir():
            directory, weights = path, f"directory {path}"
        elif text in BUILTIN_MODELS:
            directory, weights = resolve_model(text), "shipped weights"
        elif text in MODELS:
            directory, checkpoint = _random_export(text, work_dir, seed)
            weights = f"random weights (seed {seed}), checkpoint {checkpoint}"
        if path.is_dir() and read_model_dir(directory).checkpoint_sha256 is None:
            weights += " (random weights)"
        resolved.append(_bench_model(directory, weights, checkpoint))
    return resolved


def _bench_model(directory: Path, weights: str, checkpoint: Path | None = None) -> BenchModel:
    """A model directory with what its card and ``report.json`` say (accuracy, reference)."""
    from samedge.model_dir import read_model_dir

    card = read_model_dir(directory)
    _check_graphs(directory, (card.encoder, card.decoder))
    return BenchModel(
        name=card.model,
        directory=directory,
        precision=card.precision,
        weights=weights,
        checkpoint=checkpoint,
        accuracy=_build_accuracy(directory),
        reference=_reference_dir(directory, card),
    )


def _check_graphs(directory: Path, names: Sequence[str]) -> None:
    """Refuse a model directory whose graphs do not parse, before anything is timed.

    Without this a damaged graph became rows of failures in a results file
    and ``samedge bench`` exited 0.
    """
    from samedge.runtimes._graph import read_onnx_summary

    for name in names:
        try:
            read_onnx_summary(directory / name)
        except InputError as e:
            raise ModelDirError(
                f"model {directory}: {name} is damaged ({e}); re-export or rebuild it"
            ) from None


def _with_builds(
    resolved: Sequence[BenchModel],
    config: BenchConfig,
    work: Path,
    failures: list[dict[str, str]],
) -> list[BenchModel]:
    """``resolved`` with the builds ``config.builds`` asks for right after their FP32 source.

    A source given twice is built once. A failed build goes into ``failures``.
    """
    out: list[BenchModel] = []
    done: set[Path] = set()
    for model in resolved:
        out.append(model)
        if model.directory.resolve() in done:
            continue
        done.add(model.directory.resolve())
        for result in make_builds(
            model, config.builds, work, config.build_args, config.job_timeout_s
        ):
            if not result.ok:
                failures.append({"what": result.what, "error": str(result.error)})
                continue
            weights = f"{model.weights}; {result.precision} build of {model.directory} by bench"
            built = _bench_model(result.output, weights)
            out.append(replace(built, reference=model.directory, built_by=result.built_by()))
    return out


def _flops(model: BenchModel, objects: Sequence[int], points: int) -> dict[str, Any]:
    """GFLOP of the encoder and of the decoder per batch size (``None`` where uncountable)."""
    from samedge.model_dir import read_model_dir

    card = read_model_dir(model.directory)
    out: dict[str, Any] = {"encoder": None, "decoder": {}}
    try:
        enc = count_flops(model.directory / card.encoder)
        out["encoder"] = enc.gflops if not enc.unresolved else None
        for b in objects:
            # N counts SAM's padding point beside the clicks.
            dec = count_flops(model.directory / card.decoder, {"B": b, "N": points + 1})
            out["decoder"][b] = dec.gflops if not dec.unresolved else None
    except (InputError, ModelDirError) as e:
        log.warning("FLOP count of %s failed: %s", model.directory, e)
    return out


def _accuracy(
    model: BenchModel, precision: str, measured: dict[str, float] | None
) -> tuple[dict[str, float], str]:
    """The row's accuracy numbers and where they come from."""
    if measured is not None:
        return dict(measured), f"accuracy measured here on {int(measured['frames'])} frames"
    if model.accuracy is not None:
        return dict(model.accuracy), "accuracy from the build's report.json (ONNX Runtime)"
    if model.precision == "fp32" and precision == "fp32":
        return {"mean_iou_vs_fp32": 1.0, "p5_iou_vs_fp32": 1.0}, "fp32 reference"
    return {}, "accuracy not measured"


def _decorate(
    row: Measurement,
    model: BenchModel,
    flops: dict[str, Any],
    measured: dict[str, float] | None,
) -> Measurement:
    enc = flops["encoder"]
    dec = flops["decoder"].get(row.objects)
    gflops = {
        "encoder": enc,
        "decoder": dec,
        "predictor": enc + dec if enc is not None and dec is not None else None,
    }[row.part]
    accuracy, source = _accuracy(model, row.precision, measured)
    return replace(
        row,
        model=model.name,
        gflops=gflops,
        accuracy=accuracy,
        note=f"{row.note}; {source}" if row.note else source,
    )


def _peak_jobs(
    pairs: Sequence[tuple[Variant, str]], config: BenchConfig, threads: int
) -> list[PeakJob]:
    jobs: dict[tuple[Any, ...], PeakJob] = {}
    for variant, precision in pairs:
        if precision not in PEAK_PRECISIONS:
            continue
        key = (variant.backend, variant.device, variant.providers, variant.isa, precision)
        jobs.setdefault(
            key,
            PeakJob(
                backend=variant.backend,
                precision=precision,
                device=variant.device,
                providers=variant.providers,
                threads=threads if variant.device == "cpu" else None,
                size=config.peak_size,
                runs=max(3, min(config.runs, 10)),
                warmup=max(1, min(config.warmup, 2)),
                isa=variant.isa,
            ),
        )
    return list(jobs.values())


def _best_peak(job: PeakJob, repeats: int, timeout_s: float) -> tuple[PeakRate | None, str | None]:
    """The fastest of ``repeats`` measurements of ``job`` (by best run), or the last error.

    Each runs in a process of its own, so one slowed by other processes on a
    shared machine does not set the limit the encoder is measured against.
    """
    best: PeakRate | None = None
    error: str | None = None
    for _ in range(repeats):
        result = run_job(job, timeout_s=timeout_s)
        if result.peak is None:
            error = str(result.error)
            continue
        if best is None or result.peak.best_gflops_per_s > best.best_gflops_per_s:
            best = result.peak
    return best, None if best is not None else error


def _default_choice() -> dict[str, str]:
    from samedge.runtimes import select_backend

    try:
        choice = select_backend("auto")
    except Exception as e:  # recorded, not fatal: the rows are still valid
        return {"choice": f"unavailable ({type(e).__name__}: {e})", "backend": ""}
    return {"choice": str(choice), "backend": choice.name}


def default_output_dir(machine: str) -> Path:
    """Where ``samedge bench`` saves its results by default: ``samedge-bench/<machine>``.

    Relative to the current directory, wherever that is (the repository's
    own results go to ``benchmarks/results/<machine>``, which its
    ``benchmarks/reproduce.sh`` passes explicitly).
    """
    return Path("samedge-bench") / machine


def run_bench(
    models: Sequence[str | os.PathLike[str]],
    config: BenchConfig | None = None,
    *,
    command: str | None = None,
    machine: str | None = None,
    notes: Sequence[str] = (),
) -> BenchReport:
    """Measure ``models`` as ``config`` says and return the report (not yet saved).

    Args:
        models: Model directories, ``"samedge_tiny"``, or registry names
            (``"mobile_sam"``, ``"sam_vit_b"``: exported with random weights).
        config: What to measure; None = the defaults.
        command: The command line to record (the CLI passes its own).
        machine: Machine name to record; None derives it (``"amd-epyc-2c"``).
        notes: Lines to record with the results (how the builds were made, ...).

    Returns:
        Every measurement, peak rate, ratio and failure; jobs that fail are
        recorded in ``failures`` and the run goes on.

    Raises:
        UnknownNameError, ModelDirError: a model argument is wrong.
        BackendUnavailableError: torch is missing for a model that must be exported.

    Example:
        >>> config = BenchConfig(runs=5, isa_cap=True)
        >>> report = run_bench(["samedge_tiny"], config)                    # doctest: +SKIP
        >>> [round(r.timing.median_ms, 1) for r in report.rows("encoder")]  # doctest: +SKIP
        [2.1, 1.1, 3.3, 3.9]
    """
    from samedge.runtimes import default_cache_root
    from samedge.runtimes._hw import cpu_info

    config = config or BenchConfig()
    work = Path(config.work_dir) if config.work_dir is not None else default_cache_root() / "bench"
    resolved = resolve_models(models, work, config.seed)
    failures: list[dict[str, str]] = []
    if config.builds:
        resolved = _with_builds(resolved, config, work, failures)
    threads = config.threads or cpu_info().cores
    info = machine_info(machine)
    default = _default_choice()
    env_isa = os.environ.get("ONEDNN_MAX_CPU_ISA")
    skipped: list[str] = []
    if env_isa:
        skipped.append(
            f"ONEDNN_MAX_CPU_ISA={env_isa} is set in this environment: every OpenVINO row runs "
            "under it"
        )
    from samedge._io import sha256_file
    from samedge.model_dir import read_model_dir

    def fingerprint(model: BenchModel) -> str:
        card = read_model_dir(model.directory)
        return sha256_file(model.directory / card.encoder) + sha256_file(
            model.directory / card.decoder
        )

    before = {m.directory: fingerprint(m) for m in resolved}
    measurements: list[Measurement] = []
    encoder_pairs: list[tuple[Variant, str]] = []
    model_records = []
    for model in resolved:
        variants, why = plan_variants(
            model.precision,
            backends=config.backends,
            precisions=config.precisions,
            isa_cap=config.isa_cap,
        )
        skipped += [w for w in dict.fromkeys(why) if w not in skipped]
        flops = _flops(model, config.objects, config.points)
        model_records.append(
            {
                "name": model.name,
                "directory": str(model.directory),
                "precision": model.precision,
                "weights": model.weights,
                "checkpoint": str(model.checkpoint) if model.checkpoint else None,
                "accuracy": model.accuracy,
                "encoder_gflops": flops["encoder"],
                "decoder_gflops": {str(k): v for k, v in flops["decoder"].items()},
                "built_by": model.built_by,
            }
        )
        for variant in variants:
            measured = _measure_accuracy(model, variant, config, threads, failures)
            for part in config.parts:
                job = PartJob(
                    part=part,
                    model_dir=str(model.directory),
                    variant=variant,
                    model=model.name,
                    threads=threads if variant.device == "cpu" else None,
                    runs=config.runs,
                    warmup=config.warmup,
                    objects=config.objects,
                    points=config.points,
                    frame_size=config.frame_size,
                    seed=config.seed,
                )
                what = f"{model.name} ({model.precision}) {part} on {variant.label}"
                log.info("bench: %s ...", what)
                result = run_job(job, timeout_s=config.job_timeout_s)
                if not result.ok:
                    log.warning("bench: %s failed: %s", what, result.error)
                    failures.append({"what": what, "error": str(result.error)})
                    continue
                for row in result.measurements:
                    measurements.append(_decorate(row, model, flops, measured))
                    log.info(
                        "bench:   %s %s%s: median %.2f ms (p90 %.2f)",
                        row.precision,
                        part,
                        f" B={row.objects}" if row.objects else "",
                        row.timing.median_ms,
                        row.timing.p90_ms,
                    )
                    if part == "encoder":
                        encoder_pairs.append((variant, row.precision))
    peaks: list[PeakRate] = []
    if config.peak_size:
        for peak_job in _peak_jobs(encoder_pairs, config, threads):
            what = f"peak GEMM {peak_job.backend} {peak_job.precision}" + (
                f" [{peak_job.isa}]" if peak_job.isa else ""
            )
            log.info("bench: %s ...", what)
            peak, error = _best_peak(peak_job, config.peak_repeats, config.job_timeout_s)
            if peak is None:
                failures.append({"what": what, "error": str(error)})
                continue
            peaks.append(peak)
    encoders = with_fraction_of_peak([m for m in measurements if m.part == "encoder"], peaks)
    measurements = encoders + [m for m in measurements if m.part != "encoder"]
    ratios = peer_ratios(measurements, default.get("backend"))
    for model in resolved:
        # A model directory rewritten under a running benchmark (a re-export)
        # makes its rows a mix of two models: say so where nobody can miss it.
        if fingerprint(model) != before[model.directory]:
            log.warning("bench: %s changed during the run", model.directory)
            failures.append(
                {
                    "what": f"{model.name} ({model.precision}) {model.directory}",
                    "error": "its graphs changed during the run; its rows mix two models, "
                    "run again",
                }
            )
    with contextlib.suppress(OSError):  # other processes' load over the run, for the reader
        info["load_average_1min_at_end"] = round(os.getloadavg()[0], 2)
    settings = {
        **{k: v for k, v in asdict(config).items() if k not in ("work_dir",)},
        "threads": threads,
        "work_dir": str(work),
        "isa_cap_value": ISA_CAP if config.isa_cap else None,
        # Reports before this key timed the decoder's batch sizes one after another.
        "decoder_batches": "round-robin",
    }
    return BenchReport(
        machine=info,
        versions=library_versions(),
        command=command or f"samedge.bench.run_bench({[os.fspath(m) for m in models]!r})",
        timestamp=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        settings=json.loads(json.dumps(settings, default=str)),
        models=tuple(model_records),
        measurements=tuple(measurements),
        peaks=tuple(peaks),
        ratios=tuple(ratios),
        failures=tuple(failures),
        skipped=tuple(skipped),
        default=default,
        notes=tuple(notes),
    )


def _measure_accuracy(
    model: BenchModel,
    variant: Variant,
    config: BenchConfig,
    threads: int,
    failures: list[dict[str, str]],
) -> dict[str, float] | None:
    """The variant's mask accuracy against FP32, or None (not asked for, no reference, failed)."""
    if not config.accuracy_frames or model.reference is None:
        return None
    if model.precision == "fp32" and variant.backend == "onnxruntime" and not variant.providers:
        # This is the reference itself: identical by construction.
        return {"mean_iou_vs_fp32": 1.0, "p5_iou_vs_fp32": 1.0, "worst_iou_vs_fp32": 1.0,
                "cosine_vs_fp32": 1.0, "frames": float(config.accuracy_frames)}  # fmt: skip
    job = AccuracyJob(
        model_dir=str(model.directory),
        reference_dir=str(model.reference),
        variant=variant,
        threads=threads if variant.device == "cpu" else None,
        frames=config.accuracy_frames,
    )
    what = f"{model.name} ({model.precision}) accuracy on {variant.label}"
    log.info("bench: %s ...", what)
    result = run_job(job, timeout_s=config.job_timeout_s)
    if result.accuracy is None:
        failures.append({"what": what, "error": str(result.error)})
        return None
    log.info("bench:   mean mask IoU vs fp32 %.4f", result.accuracy["mean_iou_vs_fp32"])
    return result.accuracy
