"""``samedge bench --video``: per-frame latency of memory tracking, split by graph.

For a SAM 2-family model directory (SAM 2.1, EdgeTAM: four stateless graphs,
:mod:`samedge.memory_model`), :func:`run_video_bench` tracks 1, 3, 8 (or
``VideoBenchConfig.objects``) objects through the same seeded procedural clip
with :class:`~samedge.memory_predictor.MemoryPredictor` and
:class:`~samedge.stream.memory.MemoryTracker`, on every backend this machine
has, each backend in a process of its own (a cold engine cache, its own
peak memory, a crash ends only its rows). Every timed frame is a user's frame:
``set_image`` (the image encoder, once per frame whatever the number of
objects) plus ``tracker.step`` (memory attention, decoder and memory encoder,
each one batched call for all objects, and the tracker's numpy work between
them); the graphs' times come from ``MemoryTracker.last_timings``. The objects
are the N largest of frame 0, each prompted there with one click.

SAM 2's bank fills over its first ``num_maskmem - 1`` tracked frames (6), so
those are untimed by default and every timed frame attends a full bank.

Example:
    >>> config = VideoBenchConfig(frames=10)
    >>> report = run_video_bench(["sam2.1_hiera_tiny"], config)           # doctest: +SKIP
    >>> report.save("samedge-bench/amd-epyc-2c", "bench_video_tiny")      # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from samedge.bench._machine import library_versions, machine_info
from samedge.bench.measure import Variant, _config, _peak_rss_mib, plan_variants
from samedge.bench.records import Timing
from samedge.bench.video_report import VIDEO_GRAPHS, VideoClip, VideoReport, VideoRow
from samedge.errors import InputError, ModelDirError, ProfileLimitError

__all__ = [
    "VIDEO_BACKENDS",
    "VideoBenchConfig",
    "VideoJob",
    "make_clip",
    "measure_video",
    "object_limit",
    "run_video_bench",
]

log = logging.getLogger(__name__)

VIDEO_BACKENDS = ("onnxruntime", "openvino", "tensorrt")
_PRECISIONS = ("fp32", "bf16", "fp16", "int8")
# Scene slots beyond the most objects asked for: a few shapes are too small or
# hidden on frame 0, and spare ones keep the largest N there to prompt.
_SPARE_SLOTS = 2
# (graph, input) whose axis 0 is the object batch of each per-object graph.
_BATCH_INPUTS = (
    ("memory_attention", "memory_bank"),
    ("decoder", "image_embeddings"),
    ("memory_encoder", "mask_logits"),
)


def _positive(name: str, value: object, minimum: int = 1) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise InputError(f"{name}: got {value!r}, expected an int >= {minimum}")


@dataclass(frozen=True)
class VideoBenchConfig:
    """What ``samedge bench --video`` measures; ``None`` means "the default".

    Attributes:
        backends: Backends to time; None = every installed one.
        precisions: Keep configurations computing in these; None = each
            backend's own default precision (what ``backend="auto"`` gives a user).
        objects: Object counts, one row each; every count tracks the same clip.
        frames: Timed frames per row.
        warmup: Untimed tracked frames after the prompted frame 0 (SAM 2's bank
            fills over ``num_maskmem - 1`` = 6 of them).
        threads: CPU threads per backend; None = the logical CPUs this process may use.
        frame_size: ``(width, height)`` of the clip's frames.
        scene_seed: Seed of the procedural clip (:class:`samedge.scenes.MovingScene`).
        seed: Seed of the random weights of registry models bench exports.
        work_dir: Where random-weight checkpoints and exports go (reused);
            None = ``<samedge cache>/bench``.
        job_timeout_s: Kill a backend's process after this long.
    """

    backends: tuple[str, ...] | None = None
    precisions: tuple[str, ...] | None = None
    objects: tuple[int, ...] = (1, 3, 8)
    frames: int = 20
    warmup: int = 6
    threads: int | None = None
    frame_size: tuple[int, int] = (640, 480)
    scene_seed: int = 0
    seed: int = 0
    work_dir: Path | None = None
    job_timeout_s: float = 1800.0

    def __post_init__(self) -> None:
        for name, allowed in (("backends", VIDEO_BACKENDS), ("precisions", _PRECISIONS)):
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
        if len(set(self.objects)) != len(self.objects):
            raise InputError(f"objects: got {self.objects}, expected each count once")
        _positive("frames", self.frames)
        _positive("warmup", self.warmup, 0)
        _positive("scene_seed", self.scene_seed, 0)
        _positive("seed", self.seed, 0)
        if self.threads is not None:
            _positive("threads", self.threads)
        w, h = self.frame_size
        if min(w, h) < 64:
            raise InputError(f"frame_size: got {self.frame_size}, expected (width, height) >= 64")
        if self.job_timeout_s <= 0:
            raise InputError(f"job_timeout_s: got {self.job_timeout_s}, expected > 0")


# -- the clip ------------------------------------------------------------------------


def make_clip(frame_size: tuple[int, int], objects: int, seed: int = 0) -> VideoClip:
    """The clip for up to ``objects`` objects: the largest of frame 0, one click each.

    Raises:
        InputError: frame 0 of that scene has fewer than ``objects`` objects to
            prompt (fewer objects, or another seed).
    """
    from samedge.masks import deep_point
    from samedge.scenes import MovingScene

    w, h = frame_size
    slots = objects + _SPARE_SLOTS
    first = MovingScene(seed=seed, size=(h, w), num_objects=slots).frame(0)
    areas = [int(m.sum()) for m in first.masks]
    order = sorted(range(len(first.ids)), key=lambda k: (-areas[k], first.ids[k]))
    if len(order) < objects:
        raise InputError(
            f"objects: got {objects}, but frame 0 of the clip (MovingScene seed {seed}, "
            f"{slots} slots) shows only {len(order)} objects to prompt; ask for fewer objects "
            "or another --scene-seed"
        )
    chosen = order[:objects]
    return VideoClip(
        seed=seed,
        size=(h, w),
        scene_objects=slots,
        object_ids=tuple(int(first.ids[k]) for k in chosen),
        points=tuple(deep_point(first.masks[k]) for k in chosen),
    )


# -- limits --------------------------------------------------------------------------


def object_limit(model_dir: Path) -> tuple[int | None, str]:
    """Most objects the directory's per-object graphs take per call, and which graph says so.

    ``None`` when the object axis is dynamic in all of them (ONNX Runtime and
    OpenVINO take any count; a TensorRT engine's profile is set from the
    largest count bench asks for).
    """
    from samedge.model_dir import read_model_dir
    from samedge.runtimes._graph import read_onnx_summary

    card = read_model_dir(model_dir)
    files = {
        "memory_attention": card.memory_attention,
        "decoder": card.decoder,
        "memory_encoder": card.memory_encoder,
    }
    limit: int | None = None
    where = ""
    for graph, name in _BATCH_INPUTS:
        try:
            dims = read_onnx_summary(model_dir / str(files[graph])).dims(name)
        except (InputError, KeyError) as e:
            raise ModelDirError(
                f"model {model_dir}: {files[graph]} has no readable {name} input ({e}); "
                "re-export it"
            ) from None
        if dims and isinstance(dims[0], int) and (limit is None or dims[0] < limit):
            limit, where = dims[0], f"{files[graph]} input {name} has a fixed batch of {dims[0]}"
    return limit, where


def _check_video_model(model: str | os.PathLike[str]) -> None:
    """Refuse, before any export or timing, a model that has no memory graphs."""
    from samedge.memory_model import FAMILY_SAM2
    from samedge.model_dir import read_model_dir
    from samedge.models import MODELS
    from samedge.predictor import BUILTIN_MODELS, resolve_model

    path, text = Path(model), os.fspath(model)
    if path.is_dir() or text in BUILTIN_MODELS:
        card = read_model_dir(resolve_model(text))
        family = card.family
        name = card.model
    elif text in MODELS:
        family, name = MODELS[text].family, text
    else:
        return  # resolve_models says what is wrong with it
    if family != FAMILY_SAM2:
        sam2 = sorted(n for n, s in MODELS.items() if s.family == FAMILY_SAM2)
        raise ModelDirError(
            f"--video: got {text} ({name}, family {family!r}), expected a SAM 2-family model "
            f"with memory graphs ({', '.join(sam2)}, or a directory exported from one); "
            "time SAM 1-family models without --video"
        )


# -- one backend in its own process ----------------------------------------------------


@dataclass(frozen=True)
class VideoJob:
    """Every object count of one model directory on one backend configuration.

    Attributes:
        model_dir: The model directory.
        variant: How to run it.
        clip: The frames and prompts.
        objects: Object counts, one row each.
        frames: Timed frames per row.
        warmup: Untimed frames after frame 0.
        threads: CPU threads (None = the backend's default).
        model: Name recorded in the rows (default: the card's).
    """

    model_dir: str
    variant: Variant
    clip: VideoClip
    objects: tuple[int, ...]
    frames: int
    warmup: int
    threads: int | None = None
    model: str | None = None

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["variant"] = self.variant.to_json()
        data["clip"] = self.clip.to_dict()
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> VideoJob:
        fields = dict(data)
        fields["variant"] = Variant.from_json(fields["variant"])
        fields["clip"] = VideoClip.from_dict(fields["clip"])
        fields["objects"] = tuple(fields["objects"])
        return cls(**fields)


def _track(
    predictor: Any, frames: Sequence[np.ndarray], job: VideoJob, objects: int
) -> tuple[float, list[float], dict[str, list[float]], int]:
    """Track ``objects`` objects through ``frames``.

    Returns:
        Frame 0's seconds, each timed frame's seconds, each graph's seconds
        per timed frame, and the most bytes one object's bank holds at the end.
    """
    from samedge.stream.memory import MemoryTracker, MemoryTrackerConfig

    tracker = MemoryTracker(MemoryTrackerConfig(max_objects=objects))
    for oid, point in zip(job.clip.object_ids[:objects], job.clip.points[:objects], strict=True):
        tracker.add(point_coords=[point], point_labels=[1], object_id=oid)
    totals: list[float] = []
    graphs: dict[str, list[float]] = {g: [] for g in VIDEO_GRAPHS}
    first_s = 0.0
    for k, frame in enumerate(frames):
        start = time.perf_counter()
        predictor.set_image(frame)
        encoded = time.perf_counter()
        tracker.step(predictor)
        end = time.perf_counter()
        if k == 0:
            first_s = end - start
        if k <= job.warmup:
            continue
        totals.append(end - start)
        spent = tracker.last_timings
        graphs["encoder"].append(encoded - start)
        for g in ("memory_attention", "decoder", "memory_encoder"):
            graphs[g].append(spent[g])
        graphs["tracker"].append(spent["postprocess"])
    memory = max((m.nbytes for m in tracker.memory_report()), default=0)
    return first_s, totals, graphs, memory


def measure_video(job: VideoJob) -> list[VideoRow]:
    """Time every object count of ``job`` in this process (the worker's body).

    Raises:
        ModelDirError: the directory is unreadable or has no memory graphs.
        BackendError and its subclasses: the backend cannot load or run a graph.
    """
    from samedge.memory_predictor import MemoryPredictor

    frames = job.clip.frames(1 + job.warmup + job.frames)
    config, device = _config(job.variant, job.threads, max(job.objects))
    predictor = MemoryPredictor(
        job.model_dir, backend=job.variant.backend, device=device, config=config
    )
    rows = []
    try:
        name = job.model or predictor.card.model
        build_s: float | None = None
        for objects in job.objects:
            first_s, totals, graphs, memory = _track(predictor, frames, job, objects)
            # The first frame of the first row pays every engine's build/compile.
            build_s = first_s if build_s is None else build_s
            rows.append(
                VideoRow(
                    suite="samedge",
                    model=name,
                    backend=job.variant.backend,
                    precision=predictor.precision,
                    objects=objects,
                    total=Timing.from_seconds(totals),
                    graphs={g: Timing.from_seconds(v) for g, v in graphs.items()},
                    frame_ms=tuple(1e3 * t for t in totals),
                    first_frame=1 + job.warmup,
                    memory_bytes_per_object=memory,
                    device=predictor.device,
                    threads=job.threads,
                    build_s=build_s,
                    note=f"variant {job.variant.label}",
                )
            )
            log.info(
                "bench --video: %s %s B=%d: median %.1f ms",
                name, job.variant.label, objects, rows[-1].total.median_ms,
            )  # fmt: skip
        rss = _peak_rss_mib()
    finally:
        predictor.close()
    return [replace(r, peak_rss_mib=rss) for r in rows]


def worker_main(argv: Sequence[str]) -> int:
    """Entry point of ``python -m samedge.bench._video_worker JOB.json RESULT.json``."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if len(argv) != 2:
        print("usage: python -m samedge.bench._video_worker JOB.json RESULT.json", file=sys.stderr)
        return 2
    job = VideoJob.from_json(json.loads(Path(argv[0]).read_text(encoding="utf-8")))
    try:
        result: dict[str, Any] = {"rows": [r.to_json() for r in measure_video(job)]}
        code = 0
    except Exception as e:  # reported to the parent, which records it and goes on
        log.debug("job failed", exc_info=True)
        result, code = {"error": f"{type(e).__name__}: {e}"}, 1
    Path(argv[1]).write_text(json.dumps(result), encoding="utf-8")
    return code


def run_video_job(
    job: VideoJob, *, timeout_s: float | None = None
) -> tuple[list[VideoRow], str | None]:
    """Run ``job`` in a new Python process with an empty engine cache; never raises for its failure.

    Returns:
        The rows, or no rows and the error (the worker's, or its last lines).
    """
    with tempfile.TemporaryDirectory(prefix="samedge-bench-video-") as tmp:
        job_path, out_path = Path(tmp) / "job.json", Path(tmp) / "result.json"
        job_path.write_text(json.dumps(job.to_json()), encoding="utf-8")
        env = dict(os.environ)
        env["SAMEDGE_CACHE_DIR"] = str(Path(tmp) / "cache")  # a cold first load
        cmd = [sys.executable, "-m", "samedge.bench._video_worker", str(job_path), str(out_path)]
        try:
            proc = subprocess.run(
                cmd, env=env, capture_output=True, text=True, timeout=timeout_s, check=False
            )
        except subprocess.TimeoutExpired:
            return [], f"timed out after {timeout_s:.0f} s"
        if out_path.is_file():
            data = json.loads(out_path.read_text(encoding="utf-8"))
            if data.get("error"):
                return [], str(data["error"])
            return [VideoRow.from_json(r) for r in data["rows"]], None
        tail = [ln for ln in proc.stderr.strip().splitlines() if ln.strip()][-3:]
        return [], f"worker exited with code {proc.returncode}" + (
            f": {' | '.join(tail)}" if tail else " and wrote nothing"
        )


# -- the run -------------------------------------------------------------------------


def _variants(model_precision: str, config: VideoBenchConfig) -> tuple[list[Variant], list[str]]:
    """The configurations to time: each backend's default, or those computing in ``precisions``."""
    variants, skipped = plan_variants(
        model_precision, backends=config.backends, precisions=config.precisions
    )
    if config.precisions is None:
        left = [v.label for v in variants if v.hint != "default"]
        variants = [v for v in variants if v.hint == "default"]
        if left:
            skipped.append(
                f"not the backend's default precision: {', '.join(left)} (--precision adds them)"
            )
    return variants, skipped


def _is_default(variant: Variant, default: Any) -> bool:
    if default is None or variant.backend != default.name or variant.hint != "default":
        return False
    return default.device in (None, variant.device) and not variant.providers


def run_video_bench(
    models: Sequence[str | os.PathLike[str]],
    config: VideoBenchConfig | None = None,
    *,
    command: str | None = None,
    machine: str | None = None,
    notes: Sequence[str] = (),
) -> VideoReport:
    """Time memory tracking of ``models`` as ``config`` says; the report is not yet saved.

    Args:
        models: SAM 2-family model directories or registry names
            (``"sam2.1_hiera_tiny"``, ``"edgetam"``: exported with seeded random
            weights from a checkpoint saved in the work directory, which the
            repository's PyTorch peer loads too).
        config: What to measure; None = the defaults.
        command: The command line to record (the CLI passes its own).
        machine: Machine name to record; None derives it.
        notes: Lines to record with the results.

    Returns:
        Every row; a backend that fails is recorded in ``failures`` and the run goes on.

    Raises:
        ModelDirError: a model has no memory graphs (a SAM 1-family model).
        ProfileLimitError: more objects than a model's graphs take per call.
        InputError: the clip shows fewer objects than asked for.
        UnknownNameError, BackendUnavailableError: as for ``samedge bench``.
    """
    from samedge.bench.run import resolve_models
    from samedge.memory_model import MemorySettings
    from samedge.model_dir import read_model_dir
    from samedge.runtimes import default_cache_root, select_backend
    from samedge.runtimes._hw import cpu_info

    config = config or VideoBenchConfig()
    if not models:
        raise InputError("models: got none, expected SAM 2-family model directories or names")
    for given in models:
        _check_video_model(given)
    # The clip first: a count the scene cannot show fails before minutes of export.
    clip = make_clip(config.frame_size, max(config.objects), config.scene_seed)
    work = Path(config.work_dir) if config.work_dir is not None else default_cache_root() / "bench"
    resolved = resolve_models(models, work, config.seed)
    threads = config.threads or cpu_info().cores
    info = machine_info(machine)
    try:
        auto = select_backend("auto")
        default = {"choice": str(auto), "backend": auto.name}
    except Exception as e:  # recorded, not fatal: the rows are still valid (none is marked)
        auto, default = None, {"choice": f"unavailable ({type(e).__name__}: {e})", "backend": ""}
    rows: list[VideoRow] = []
    failures: list[dict[str, str]] = []
    skipped: list[str] = []
    model_records = []
    for model in resolved:
        card = read_model_dir(model.directory)
        limit, where = object_limit(model.directory)
        if limit is not None and max(config.objects) > limit:
            raise ProfileLimitError(
                f"objects: got {max(config.objects)}, but {model.directory} takes at most "
                f"{limit} per call ({where}); ask for --objects up to {limit}, or re-export "
                "it with a dynamic object axis"
            )
        settings = MemorySettings.from_dict(card.memory or {}, f"{model.directory} memory")
        model_records.append(
            {
                "name": model.name,
                "directory": str(model.directory),
                "precision": model.precision,
                "weights": model.weights,
                "checkpoint": str(model.checkpoint) if model.checkpoint else None,
                "random_weights_seed": _random_seed(model.directory),
                "memory_bytes_per_object_max": settings.memory_bytes_per_object(),
                "memory": settings.to_dict(),
            }
        )
        variants, why = _variants(model.precision, config)
        skipped += [w for w in why if w not in skipped]
        for variant in variants:
            job = VideoJob(
                model_dir=str(model.directory),
                variant=variant,
                clip=clip,
                objects=config.objects,
                frames=config.frames,
                warmup=config.warmup,
                threads=threads if variant.device == "cpu" else None,
                model=model.name,
            )
            what = f"{model.name} ({model.precision}) video on {variant.label}"
            log.info("bench --video: %s ...", what)
            got, error = run_video_job(job, timeout_s=config.job_timeout_s)
            if error is not None:
                log.warning("bench --video: %s failed: %s", what, error)
                failures.append({"what": what, "error": error})
                continue
            rows += [replace(r, default=_is_default(variant, auto)) for r in got]
    with contextlib.suppress(OSError):
        info["load_average_1min_at_end"] = round(os.getloadavg()[0], 2)
    settings_out = {
        **{k: v for k, v in asdict(config).items() if k != "work_dir"},
        "threads": threads,
        "work_dir": str(work),
    }
    return VideoReport(
        machine=info,
        versions=library_versions(),
        command=command or f"samedge.bench.run_video_bench({[os.fspath(m) for m in models]!r})",
        timestamp=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        settings=json.loads(json.dumps(settings_out, default=str)),
        clip=clip,
        models=tuple(model_records),
        rows=tuple(rows),
        failures=tuple(failures),
        skipped=tuple(skipped),
        default=default,
        notes=tuple(notes),
    )


def _random_seed(model_dir: Path) -> int | None:
    """The seed of a ``--random-weights`` export (its card's provenance), else None."""
    from samedge.model_dir import read_model_dir

    seed = (read_model_dir(model_dir).details or {}).get("random_weights_seed")
    return seed if isinstance(seed, int) and not isinstance(seed, bool) else None
