"""Timing one model part on one backend configuration, each in a process of its own.

A *variant* is a way to run a model directory: a backend, a device, the
precision asked of it (OpenVINO's inference-precision hint, TensorRT's FP16
flag; ``"default"`` leaves the backend's own choice) and an optional CPU ISA
cap. :func:`plan_variants` lists the variants this machine has for a model
directory; a :class:`PartJob` is one variant × one part (encoder, decoder,
predictor); :func:`run_job` runs it in a fresh Python process
(``python -m samedge.bench._worker``) with a fresh, empty engine cache, so

* the build/compile time is a cold first load,
* the peak resident memory (``VmHWM``) is that part's alone, and
* a backend that crashes ends its job, not the benchmark.

Inside the worker, :func:`measure_part` loads the part, runs ``warmup``
untimed calls and ``runs`` timed ones (``Backend.infer`` / the Predictor's
calls, input validation included: that is what a user pays), and returns
:class:`~samedge.bench.records.Measurement` rows. Throughput is items per
second at the median latency of one stream (images for the encoder and the
predictor, objects for the decoder).

Example:
    >>> variants, skipped = plan_variants("fp32")                            # doctest: +SKIP
    >>> job = PartJob("encoder", "out/mobile_sam", variants[0], threads=2)   # doctest: +SKIP
    >>> rows = run_job(job).measurements                                     # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from samedge import graph_names
from samedge.bench.peak import PeakJob, PeakRate, measure_peak
from samedge.bench.records import PARTS, Measurement, Timing
from samedge.errors import InputError

__all__ = [
    "ISA_CAP",
    "AccuracyJob",
    "JobResult",
    "PartJob",
    "Variant",
    "measure_accuracy",
    "measure_part",
    "plan_variants",
    "run_job",
]

log = logging.getLogger(__name__)

_K = TypeVar("_K", bound=Hashable)

#: The ISA cap of ``--isa-cap``: AVX-512 with VNNI (INT8 dot products) but no
#: bf16 and no AMX, i.e. an edge x86 CPU where INT8 must carry the speed.
ISA_CAP = "AVX512_CORE_VNNI"
# oneDNN reads ONEDNN_MAX_CPU_ISA; OpenVINO's own kernels read OV_CPU_MAX_ISA
# (openvinotoolkit/openvino#36980 asks for both to be set to the same value).
_ISA_ENV = ("ONEDNN_MAX_CPU_ISA", "OV_CPU_MAX_ISA")
_HINTS = ("default", "fp32", "bf16", "fp16")
_BF16_FLAGS = frozenset({"avx512_bf16", "amx_bf16"})
_CPU_EP = "CPUExecutionProvider"
_CUDA_EP = "CUDAExecutionProvider"
_TRT_EP = "TensorrtExecutionProvider"


@dataclass(frozen=True)
class Variant:
    """One way to run a model directory.

    Attributes:
        backend: ``"onnxruntime"``, ``"openvino"`` or ``"tensorrt"``.
        device: samedge device words: ``"cpu"``, ``"gpu"`` (Intel, OpenVINO), ``"cuda:0"``.
        hint: Precision asked of the backend: ``"default"`` (its own choice),
            ``"fp32"``, ``"bf16"`` or ``"fp16"``.
        providers: ONNX Runtime execution providers (None = the CPU provider).
        isa: CPU ISA cap (``ONEDNN_MAX_CPU_ISA``) the job runs under, or None.
        expected: The precision it is expected to compute in (for ``--precision``
            filtering; what actually ran is read back from the backend).
    """

    backend: str
    device: str = "cpu"
    hint: str = "default"
    providers: tuple[str, ...] | None = None
    isa: str | None = None
    expected: str = "fp32"

    def __post_init__(self) -> None:
        if self.hint not in _HINTS:
            raise InputError(f"Variant.hint: got {self.hint!r}, expected one of {_HINTS}")

    @property
    def label(self) -> str:
        """Short human name: ``"openvino/cpu/default"``, ``"onnxruntime/CUDAExecutionProvider"``."""
        where = self.providers[0] if self.providers else self.device
        cap = f" [{self.isa}]" if self.isa else ""
        return f"{self.backend}/{where}/{self.hint}{cap}"

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["providers"] = list(self.providers) if self.providers else None
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Variant:
        fields = dict(data)
        if fields.get("providers"):
            fields["providers"] = tuple(fields["providers"])
        return cls(**fields)


@dataclass(frozen=True)
class PartJob:
    """One part of one model directory on one variant.

    Attributes:
        part: One of :data:`~samedge.bench.records.PARTS`.
        model_dir: The model directory.
        variant: How to run it.
        model: Name recorded in the rows (defaults to the card's model name).
        threads: CPU threads given to the backend (None = the backend's default).
        runs: Timed runs.
        warmup: Untimed runs first.
        objects: Decoder batch sizes (objects per call).
        points: Clicks per object (SAM's padding point comes on top).
        frame_size: ``(width, height)`` of the predictor's frame.
        seed: Seed of the inputs.
    """

    part: str
    model_dir: str
    variant: Variant
    model: str | None = None
    threads: int | None = None
    runs: int = 20
    warmup: int = 3
    objects: tuple[int, ...] = (1, 4, 16)
    points: int = 1
    frame_size: tuple[int, int] = (640, 480)
    seed: int = 0

    def __post_init__(self) -> None:
        if self.part not in PARTS:
            raise InputError(f"PartJob.part: got {self.part!r}, expected one of {PARTS}")
        if self.runs < 1 or self.warmup < 0:
            raise InputError(
                f"PartJob: got runs={self.runs}, warmup={self.warmup}; "
                "expected runs >= 1 and warmup >= 0"
            )
        if not self.objects or min(self.objects) < 1:
            raise InputError(f"PartJob.objects: got {self.objects}, expected counts >= 1")
        if len(set(self.objects)) != len(self.objects):
            raise InputError(f"PartJob.objects: got {self.objects}, expected each count once")

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["variant"] = self.variant.to_json()
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> PartJob:
        fields = dict(data)
        fields["variant"] = Variant.from_json(fields["variant"])
        fields["objects"] = tuple(fields["objects"])
        fields["frame_size"] = tuple(fields["frame_size"])
        return cls(**fields)


@dataclass(frozen=True)
class AccuracyJob:
    """Mask accuracy of a model directory run by a variant, against the FP32 pipeline.

    The reference is the FP32 directory on ONNX Runtime's CPU provider (what
    the exporters verified against PyTorch); the metrics are the build
    report's (:class:`samedge.calibration.Reference`: 24 prompts × 4 masks per
    frame, upsampled to the frame), on held-out synthetic frames.

    Attributes:
        model_dir: The directory under test.
        reference_dir: Its FP32 source (the directory itself when it is FP32).
        variant: How the directory under test runs.
        threads: CPU threads.
        frames: Held-out frames.
        seed: Seed of the synthetic frames (apart from calibration's).
    """

    model_dir: str
    reference_dir: str
    variant: Variant
    threads: int | None = None
    frames: int = 2
    seed: int = 2026

    def __post_init__(self) -> None:
        if self.frames < 1:
            raise InputError(f"AccuracyJob.frames: got {self.frames}, expected >= 1")

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["variant"] = self.variant.to_json()
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> AccuracyJob:
        fields = dict(data)
        fields["variant"] = Variant.from_json(fields["variant"])
        return cls(**fields)


@dataclass(frozen=True)
class JobResult:
    """What a worker process returned: rows, or a peak rate, or the error that ended it."""

    measurements: tuple[Measurement, ...] = ()
    peak: PeakRate | None = None
    accuracy: dict[str, float] | None = None
    error: str | None = None
    seconds: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.error is None


# -- what this machine can run -------------------------------------------------------


def plan_variants(
    model_precision: str,
    *,
    backends: Sequence[str] | None = None,
    precisions: Sequence[str] | None = None,
    isa_cap: bool = False,
) -> tuple[list[Variant], list[str]]:
    """The variants this machine has for a model directory of ``model_precision``.

    Args:
        model_precision: ``"fp32"``, ``"fp16"`` or ``"int8"`` (the directory's card).
        backends: Backends to use; None = every installed one.
        precisions: Keep variants expected to compute in one of these
            (``"fp32"``, ``"bf16"``, ``"fp16"``, ``"int8"``); None = all.
        isa_cap: Add OpenVINO CPU runs with an f32 hint under :data:`ISA_CAP`.

    Returns:
        The variants, and one line per backend or mode that was skipped and why.
    """
    from samedge.runtimes import available_backends
    from samedge.runtimes._hw import cpu_info, cuda_devices

    infos = {info.name: info for info in available_backends()}
    wanted = list(backends) if backends is not None else list(infos)
    gpus = cuda_devices()
    cpu = cpu_info()
    skipped: list[str] = []
    variants: list[Variant] = []
    mp = model_precision
    for name in wanted:
        info = infos[name]
        if not info.installed:
            skipped.append(f"{name}: not installed ({info.hint})")
            continue
        if name == "onnxruntime":
            variants.append(Variant(name, "cpu", expected=mp))
            if gpus:
                for providers in ((_CUDA_EP, _CPU_EP), (_TRT_EP, _CUDA_EP, _CPU_EP)):
                    if providers[0] in info.devices:
                        variants.append(Variant(name, "cuda:0", providers=providers, expected=mp))
                    else:
                        skipped.append(f"onnxruntime: no {providers[0]} in this build")
        elif name == "openvino":
            kinds = {d.split(":")[0].split(".")[0] for d in info.devices}
            if "CPU" in kinds:
                bf16 = bool(_BF16_FLAGS & cpu.flags)
                default = mp if mp == "int8" else ("bf16" if bf16 else "fp32")
                variants.append(Variant(name, "cpu", expected=default))
                if mp != "int8" and default != "fp32" and mp != "fp16":
                    variants.append(Variant(name, "cpu", "fp32", expected="fp32"))
            if "GPU" in kinds:
                variants.append(Variant(name, "gpu", expected=mp if mp == "int8" else "fp16"))
                if mp == "fp32":
                    variants.append(Variant(name, "gpu", "fp32", expected="fp32"))
        elif name == "tensorrt":
            if not gpus:
                skipped.append("tensorrt: installed, but this machine has no CUDA GPU")
                continue
            variants.append(Variant(name, "cuda:0", expected=mp))
            major = int((info.version or "0").split(".")[0] or 0)
            # TensorRT 11 removed the FP16 builder flag: FP16 comes from an fp16 directory.
            if mp == "fp32" and major < 11:
                variants.append(Variant(name, "cuda:0", "fp16", expected="fp16"))
    if isa_cap:
        ov = infos.get("openvino")
        if cpu.arch not in ("x86_64", "AMD64"):
            skipped.append(f"--isa-cap: {ISA_CAP} is an x86 cap; this CPU is {cpu.arch}")
        elif ov is None or not ov.installed or "openvino" not in wanted:
            skipped.append("--isa-cap: needs the openvino backend (oneDNN reads the cap)")
        else:
            expected = "int8" if mp == "int8" else "fp32"
            variants.append(Variant("openvino", "cpu", "fp32", isa=ISA_CAP, expected=expected))
    if precisions is not None:
        dropped = [v.label for v in variants if v.expected not in precisions]
        if dropped:
            skipped.append(f"--precision {','.join(precisions)}: left out {', '.join(dropped)}")
        variants = [v for v in variants if v.expected in precisions]
    return variants, skipped


# -- running a job in its own process ------------------------------------------------


def run_job(
    job: PartJob | PeakJob | AccuracyJob,
    *,
    timeout_s: float | None = None,
    python: str | None = None,
) -> JobResult:
    """Run ``job`` in a new Python process with an empty engine cache; never raises for its failure.

    Args:
        job: A model part, a peak-rate or an accuracy measurement.
        timeout_s: Kill the process after this long (None = no limit).
        python: Interpreter to run (default: this one).

    Returns:
        The rows or the rate, or ``error`` holding the last lines the process wrote.
    """
    isa = job.isa if isinstance(job, PeakJob) else job.variant.isa
    kind = {PartJob: "part", PeakJob: "peak", AccuracyJob: "accuracy"}[type(job)]
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="samedge-bench-") as tmp:
        job_path, out_path = Path(tmp) / "job.json", Path(tmp) / "result.json"
        job_path.write_text(json.dumps({"kind": kind, "job": job.to_json()}), encoding="utf-8")
        env = dict(os.environ)
        # A cold cache per job: the first load is a real build/compile.
        env["SAMEDGE_CACHE_DIR"] = str(Path(tmp) / "cache")
        if isa is not None:
            for key in _ISA_ENV:
                env[key] = isa
        cmd = [
            python or sys.executable,
            "-m",
            "samedge.bench._worker",
            str(job_path),
            str(out_path),
        ]
        try:
            proc = subprocess.run(
                cmd, env=env, capture_output=True, text=True, timeout=timeout_s, check=False
            )
        except subprocess.TimeoutExpired:
            return JobResult(
                error=f"timed out after {timeout_s:.0f} s", seconds=time.perf_counter() - start
            )
        seconds = time.perf_counter() - start
        for line in proc.stderr.splitlines():
            log.debug("worker: %s", line)
        if out_path.is_file():
            data = json.loads(out_path.read_text(encoding="utf-8"))
            if data.get("error"):
                return JobResult(error=data["error"], seconds=seconds)
            return JobResult(
                measurements=tuple(Measurement.from_json(m) for m in data.get("measurements", [])),
                peak=PeakRate.from_json(data["peak"]) if data.get("peak") else None,
                accuracy=data.get("accuracy"),
                seconds=seconds,
                extra=data.get("extra", {}),
            )
        tail = [ln for ln in proc.stderr.strip().splitlines() if ln.strip()][-3:]
        return JobResult(
            error=f"worker exited with code {proc.returncode}"
            + (f": {' | '.join(tail)}" if tail else " and wrote nothing"),
            seconds=seconds,
        )


def worker_main(argv: Sequence[str]) -> int:
    """Entry point of ``python -m samedge.bench._worker JOB.json RESULT.json``."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if len(argv) != 2:
        print("usage: python -m samedge.bench._worker JOB.json RESULT.json", file=sys.stderr)
        return 2
    job_path, out_path = Path(argv[0]), Path(argv[1])
    spec = json.loads(job_path.read_text(encoding="utf-8"))
    result: dict[str, Any]
    try:
        if spec["kind"] == "peak":
            result = {"peak": measure_peak(PeakJob.from_json(spec["job"])).to_json()}
        elif spec["kind"] == "accuracy":
            result = {"accuracy": measure_accuracy(AccuracyJob.from_json(spec["job"]))}
        else:
            rows = measure_part(PartJob.from_json(spec["job"]))
            result = {"measurements": [m.to_json() for m in rows]}
        code = 0
    except Exception as e:  # reported to the parent, which records it and goes on
        log.debug("job failed", exc_info=True)
        result = {"error": f"{type(e).__name__}: {e}"}
        code = 1
    out_path.write_text(json.dumps(result), encoding="utf-8")
    return code


# -- inside the worker ---------------------------------------------------------------


def _peak_rss_mib() -> float | None:
    """This process's peak resident memory (``VmHWM``), Linux only.

    Not ``ru_maxrss``: Linux can carry it across fork and exec, so a child
    would report its parent's peak.
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def _files_mib(paths: Sequence[Path]) -> float:
    total = 0
    for path in paths:
        if path.is_dir():
            total += sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
        elif path.is_file():
            total += path.stat().st_size
    return total / 2**20


def _onnx_files(path: Path) -> list[Path]:
    """The graph and any external-data files beside it that it names."""
    files = [path]
    with contextlib.suppress(Exception):  # an unreadable graph fails at load with a real error
        import onnx

        model = onnx.load(str(path), load_external_data=False)
        for tensor in model.graph.initializer:
            for entry in tensor.external_data:
                if entry.key == "location":
                    files.append(path.parent / entry.value)
    return list(dict.fromkeys(files))


def _engine_mib(cache_root: Path | None, graphs: Sequence[Path]) -> tuple[float, str]:
    """Size of what the backend runs: its cached engine/blob, else the ONNX file(s)."""
    if cache_root is not None and cache_root.is_dir():
        cached = _files_mib([cache_root])
        if cached > 0:
            return cached, "engine = the backend's cached build"
    files = [f for g in graphs for f in _onnx_files(g)]
    return _files_mib(files), "engine = the ONNX file(s) the backend reads"


def _config(variant: Variant, threads: int | None, max_objects: int) -> tuple[Any, str | None]:
    """Backend config and device for ``variant``."""
    if variant.backend == "onnxruntime":
        from samedge.runtimes import OrtConfig

        on_cpu = variant.providers is None
        config = OrtConfig(
            providers=variant.providers, intra_op_threads=threads if on_cpu else None
        )
        return config, "cpu" if on_cpu else None
    if variant.backend == "openvino":
        from samedge.runtimes import InferencePrecision, OpenVinoConfig

        hint = {
            "default": None,
            "fp32": InferencePrecision.FP32,
            "bf16": InferencePrecision.BF16,
            "fp16": InferencePrecision.FP16,
        }[variant.hint]
        on_cpu = variant.device == "cpu"
        config = OpenVinoConfig(inference_precision=hint, num_threads=threads if on_cpu else None)
        return config, variant.device
    if variant.backend == "tensorrt":
        from samedge.runtimes.trt import TensorRTConfig

        fp16 = True if variant.hint == "fp16" else None
        return TensorRTConfig(max_objects=max(max_objects, 1), fp16=fp16), variant.device
    raise InputError(f"Variant.backend: got {variant.backend!r}")


def _time_calls(call: Callable[[], object], warmup: int, runs: int) -> Timing:
    return _time_interleaved({0: call}, warmup, runs)[0]


def _time_interleaved(
    calls: Mapping[_K, Callable[[], object]], warmup: int, runs: int
) -> dict[_K, Timing]:
    """Each call warmed up, then timed once per round, all calls round-robin.

    Interleaving puts the calls under the same machine conditions: a ratio
    between them (the decoder's 16 objects against one) is not moved by a
    burst of load that hit only one of them, as timing them one after the
    other would be.
    """
    for call in calls.values():
        for _ in range(warmup):
            call()
    seconds: dict[_K, list[float]] = {key: [] for key in calls}
    for _ in range(runs):
        for key, call in calls.items():
            start = time.perf_counter()
            call()
            seconds[key].append(time.perf_counter() - start)
    return {key: Timing.from_seconds(s) for key, s in seconds.items()}


def _prompts(job: PartJob, objects: int, rng: np.random.Generator) -> list[Any]:
    from samedge.prompts import ObjectPrompt

    width, height = job.frame_size
    prompts = []
    for _ in range(objects):
        xy = rng.uniform((0, 0), (width - 1, height - 1), size=(job.points, 2))
        prompts.append(ObjectPrompt(point_coords=xy, point_labels=np.ones(job.points)))
    return prompts


def measure_part(job: PartJob) -> list[Measurement]:
    """Load and time one part in this process (the worker's body; see :func:`run_job`).

    Raises:
        ModelDirError: the model directory is unreadable.
        BackendError and its subclasses: the backend cannot load or run the graph.
    """
    from samedge.model_dir import read_model_dir
    from samedge.runtimes import default_cache_root

    model_dir = Path(job.model_dir)
    card = read_model_dir(model_dir)
    cache_root = default_cache_root()
    # Only a cache root the parent made fresh for this job says how big the engine is.
    fresh_cache = cache_root if not any(cache_root.glob("**/*")) else None
    rng = np.random.default_rng(job.seed)
    common = {
        "suite": "samedge",
        "model": job.model or card.model,
        "backend": job.variant.backend,
        "threads": job.threads,
        "model_precision": card.precision,
        "isa": job.variant.isa,
    }
    if job.part == "encoder":
        return _measure_encoder(job, model_dir / card.encoder, card, rng, fresh_cache, common)
    if job.part == "decoder":
        return _measure_decoder(job, model_dir / card.decoder, card, rng, fresh_cache, common)
    return _measure_predictor(job, model_dir, card, rng, fresh_cache, common)


def _open(path: Path, job: PartJob) -> Any:
    from samedge.runtimes import open_backend

    config, device = _config(job.variant, job.threads, max(job.objects))
    return open_backend(path, job.variant.backend, config=config, device=device)


class _AsSession:
    """A backend with ONNX Runtime's ``run(names, feeds)``, as the calibration report calls it."""

    def __init__(self, backend: Any) -> None:
        self._backend = backend

    def get_outputs(self) -> tuple[Any, ...]:
        """The output specs (each has ``.name``), as ONNX Runtime's session lists them."""
        return tuple(self._backend.outputs)

    def run(self, names: Sequence[str] | None, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        out = self._backend.infer(feeds)
        return [out[n] for n in (names or list(out))]


# The calibration report's prompt set: 24 objects in one decoder call.
_REPORT_OBJECTS = 24


def measure_accuracy(job: AccuracyJob) -> dict[str, float]:
    """Run the accuracy comparison in this process (the worker's body; see :class:`AccuracyJob`).

    Returns:
        ``mean_iou_vs_fp32``, ``p5_iou_vs_fp32``, ``worst_iou_vs_fp32``,
        ``cosine_vs_fp32`` and the number of ``frames``.

    Raises:
        ModelDirError: a directory is unreadable, or the two are different models.
        BackendUnavailableError: the ``calibration`` extra (onnx) is missing.
    """
    from samedge.model_dir import read_model_dir
    from samedge.runtimes import open_backend

    try:
        from samedge.calibration.frames import read_frames
        from samedge.calibration.report import Reference
    except ImportError as e:
        from samedge.errors import BackendUnavailableError

        raise BackendUnavailableError(
            f"accuracy needs the calibration extra ({e}): pip install 'samedge[calibration]'"
        ) from e
    from samedge.errors import ModelDirError

    model_dir, ref_dir = Path(job.model_dir), Path(job.reference_dir)
    card, ref_card = read_model_dir(model_dir), read_model_dir(ref_dir)
    if (card.model, card.image_size) != (ref_card.model, ref_card.image_size):
        raise ModelDirError(
            f"accuracy: {model_dir} is {card.model} ({card.image_size} px), its reference "
            f"{ref_dir} is {ref_card.model} ({ref_card.image_size} px)"
        )
    frames = read_frames("synthetic", 1, heldout=job.frames, seed=job.seed).heldout
    reference = Reference.compute(
        ref_card, ref_dir / ref_card.encoder, ref_dir / ref_card.decoder, frames
    )
    config, device = _config(job.variant, job.threads, _REPORT_OBJECTS)
    name = job.variant.backend
    with (
        open_backend(model_dir / card.encoder, name, config=config, device=device) as encoder,
        open_backend(model_dir / card.decoder, name, config=config, device=device) as decoder,
    ):
        fidelity = reference.compare(_AsSession(encoder), _AsSession(decoder))
    return {
        "mean_iou_vs_fp32": fidelity.mean_iou,
        "p5_iou_vs_fp32": fidelity.p5_iou,
        "worst_iou_vs_fp32": fidelity.worst_iou,
        "cosine_vs_fp32": fidelity.cosine_mean,
        "frames": float(fidelity.frames),
    }


def _measure_encoder(
    job: PartJob,
    path: Path,
    card: Any,
    rng: np.random.Generator,
    cache: Path | None,
    common: dict[str, Any],
) -> list[Measurement]:
    feeds = {graph_names.IMAGE: rng.uniform(0, 255, (1, 3, *card.input_box)).astype(np.float32)}
    backend = _open(path, job)
    try:
        start = time.perf_counter()
        backend.load()
        build_s = time.perf_counter() - start
        engine_mib, engine_note = _engine_mib(cache, [path])
        timing = _time_calls(lambda: backend.infer(feeds), job.warmup, job.runs)
        precision, device = backend.precision, backend.device
        rss = _peak_rss_mib()
    finally:
        backend.close()
    # A second load shows what a restart costs once the engine is cached.
    again = _open(path, job)
    try:
        start = time.perf_counter()
        again.load()
        cached_s = time.perf_counter() - start
    finally:
        again.close()
    return [
        Measurement(
            **common,
            precision=precision,
            part="encoder",
            timing=timing,
            device=device,
            throughput_per_s=1e3 / timing.median_ms,
            peak_rss_mib=rss,
            build_s=build_s,
            engine_mib=engine_mib,
            note=f"{engine_note}; second load (warm engine cache) {cached_s:.2f} s",
        )
    ]


def _measure_decoder(
    job: PartJob,
    path: Path,
    card: Any,
    rng: np.random.Generator,
    cache: Path | None,
    common: dict[str, Any],
) -> list[Measurement]:
    from samedge.preprocess import ResizeLongestSide
    from samedge.prompts import batch_prompts

    c, h, w = card.embedding_shape
    embedding = rng.standard_normal((1, c, h, w)).astype(np.float32)
    transform = ResizeLongestSide(card.image_size)
    original = (job.frame_size[1], job.frame_size[0])
    backend = _open(path, job)
    try:
        start = time.perf_counter()
        backend.load()
        build_s = time.perf_counter() - start
        engine_mib, engine_note = _engine_mib(cache, [path])
        calls: dict[int, Callable[[], object]] = {}
        for objects in job.objects:
            batch = batch_prompts(
                _prompts(job, objects, rng), original, transform, card.low_res_mask_size
            )
            feeds = {graph_names.IMAGE_EMBEDDINGS: embedding, **batch.feeds()}
            calls[objects] = partial(backend.infer, feeds)
        # Round-robin over the batch sizes, so their ratio is measured under one load.
        rows = list(_time_interleaved(calls, job.warmup, job.runs).items())
        precision, device = backend.precision, backend.device
        rss = _peak_rss_mib()
    finally:
        backend.close()
    return [
        Measurement(
            **common,
            precision=precision,
            part="decoder",
            timing=timing,
            objects=objects,
            device=device,
            throughput_per_s=objects * 1e3 / timing.median_ms,
            peak_rss_mib=rss,
            build_s=build_s,
            engine_mib=engine_mib,
            note=f"{engine_note}; {job.points} click(s) per object",
        )
        for objects, timing in rows
    ]


def _measure_predictor(
    job: PartJob,
    model_dir: Path,
    card: Any,
    rng: np.random.Generator,
    cache: Path | None,
    common: dict[str, Any],
) -> list[Measurement]:
    from samedge.predictor import Predictor

    width, height = job.frame_size
    frame = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    prompts = {b: _prompts(job, b, rng) for b in job.objects}
    config, device = _config(job.variant, job.threads, max(job.objects))
    predictor = Predictor(model_dir, backend=job.variant.backend, device=device, config=config)
    try:
        # The first frame pays both engines' build/compile: a user's cold start.
        start = time.perf_counter()
        predictor.set_image(frame)
        predictor.predict_batch(prompts[job.objects[0]])
        cold_s = time.perf_counter() - start
        engine_mib, engine_note = _engine_mib(
            cache, [model_dir / card.encoder, model_dir / card.decoder]
        )
        # One iteration: set_image, then each batch size on that embedding. The
        # latency for B objects is set_image + predict_batch(B) of the same iteration.
        set_times: list[float] = []
        batch_times: dict[int, list[float]] = {b: [] for b in job.objects}
        for i in range(job.warmup + job.runs):
            start = time.perf_counter()
            predictor.set_image(frame)
            set_s = time.perf_counter() - start
            per_batch = {}
            for b in job.objects:
                start = time.perf_counter()
                predictor.predict_batch(prompts[b], multimask_output=True)
                per_batch[b] = time.perf_counter() - start
            if i >= job.warmup:
                set_times.append(set_s)
                for b, t in per_batch.items():
                    batch_times[b].append(t)
        precision, device_name = predictor.precision, predictor.device
        rss = _peak_rss_mib()
    finally:
        predictor.close()
    rows = []
    for b in job.objects:
        total = [s + t for s, t in zip(set_times, batch_times[b], strict=True)]
        timing = Timing.from_seconds(total)
        rows.append(
            Measurement(
                **common,
                precision=precision,
                part="predictor",
                timing=timing,
                objects=b,
                device=device_name,
                throughput_per_s=1e3 / timing.median_ms,
                peak_rss_mib=rss,
                build_s=cold_s,
                engine_mib=engine_mib,
                note=(
                    f"{width}x{height} RGB frame in, {b}x3 masks at frame size out "
                    f"(set_image + predict_batch); build = first frame incl. both engines' "
                    f"build; {engine_note}"
                ),
            )
        )
    return rows
