"""The peers measured beside ``samedge bench``, on the same weights and machine (a script).

Repository tooling, not installed: ``python benchmarks/peers.py add
benchmarks/results/<machine>/bench_mobile_sam.json`` times the peers with the
settings and random-weight checkpoints a saved ``samedge bench`` report
records and rewrites that report (JSON, markdown, PNG) with the peers' rows
and peer/samedge ratios; ``run`` times them alone into a JSON file;
``setup-samexporter`` makes samexporter's environment.

Three ways people run SAM on a CPU today, each timed with its own code:

``"pytorch"``
    segment_anything's ``SamPredictor`` (MobileSAM's own package for
    ``mobile_sam``; the ``efficientsam`` package's ``EfficientViTSamPredictor``
    for EfficientViT-SAM, see ``benchmarks/peers_efficientvit.py``), fp32,
    threads set with ``torch.set_num_threads``.
``"samexporter"``
    `samexporter <https://pypi.org/project/samexporter/>`_ (pinned
    :data:`SAMEXPORTER_VERSION`): its exporter CLI (``samexporter.export_encoder
    --use-preprocess`` and ``samexporter.export_decoder --return-single-mask``,
    the commands its README gives) writes the ONNX graphs, and its
    ``SegmentAnythingONNX`` runs them on ONNX Runtime, fp32 and with the
    dynamic INT8 encoder of its ``--quantize-out``. It pins old torch, onnx
    and opencv, so it lives in its own virtual environment made by
    :func:`setup_samexporter`; nothing is installed at run time.
``"openvino-notebook"``
    The recipe of OpenVINO's segment-anything notebook
    (https://github.com/openvinotoolkit/openvino_notebooks/blob/latest/notebooks/segment-anything/segment-anything.ipynb,
    rendered at https://docs.openvino.ai/2024/notebooks/segment-anything-with-output.html):
    ``ov.convert_model`` of the PyTorch image encoder with an example input,
    its single-mask mask predictor, ``core.compile_model(model, "CPU")`` with
    the plugin's defaults (bf16 on a CPU with AMX), and its NNCF INT8 encoder
    (``nncf.quantize(..., model_type=ModelType.TRANSFORMER, subset_size=...)``).
    The notebook calibrates on 128 coco128 images; here the calibration frames
    are samedge's own (:data:`NOTEBOOK_SUBSET_SIZE` synthetic frames, what
    ``samedge build`` calibrates on): no download is possible, and the speed
    of the INT8 model does not depend on them.

Every peer runs in its own process (so peak RSS is its own and no thread pool
or import leaks between peers), on the same 640×480 frame. Each returns
:class:`~samedge.bench.records.Measurement` rows whose ``note`` starts with
``"engine:"`` (the network alone, tensors in and out, comparable with
samedge's ``encoder.onnx`` / ``decoder.onnx``) or ``"api:"`` (the peer's
user-facing call, its own pre/post-processing included); ``predictor`` rows
are frame in, masks at frame size out. See ``benchmarks/peer_workers.py``.

Example:
    >>> from peers import default_work_dir, run_peers, setup_samexporter
    >>> work = default_work_dir()                                 # where samedge bench looks
    >>> setup_samexporter(work)                                   # doctest: +SKIP
    >>> rows = run_peers(["mobile_sam"], threads=2, work_dir=work)  # doctest: +SKIP
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import logging
import os
import platform
import shlex
import subprocess
import sys
import sysconfig
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from _files import write_atomic
from peer_workers import API, ENGINE, FRAME_SIZE
from peers_efficientvit import is_efficientvit_sam

from samedge.bench import (
    BenchReport,
    Measurement,
    machine_info,
    peer_ratios,
    random_checkpoint,
)
from samedge.errors import BackendUnavailableError, CheckpointError, InputError

__all__ = [
    "API",
    "ENGINE",
    "FRAME_SIZE",
    "NOTEBOOK_SUBSET_SIZE",
    "NOTEBOOK_URL",
    "PEERS",
    "SAMEXPORTER_ENV",
    "SAMEXPORTER_MODEL_TYPES",
    "SAMEXPORTER_PYTHON_ENV",
    "SAMEXPORTER_VERSION",
    "PeerSkip",
    "PeersReport",
    "add_peers",
    "default_work_dir",
    "random_checkpoint",
    "run_peers",
    "run_peers_report",
    "samexporter_env_python",
    "setup_samexporter",
]

log = logging.getLogger(__name__)

PEERS = ("pytorch", "samexporter", "openvino-notebook")
#: The samexporter release the peer is measured with (its API is read from this one).
SAMEXPORTER_VERSION = "0.5.0"
#: samexporter's environment, inside the peers' work directory.
SAMEXPORTER_ENV = ".samexporter-venv"
#: An environment variable naming samexporter's python (instead of the work directory's).
SAMEXPORTER_PYTHON_ENV = "SAMEDGE_SAMEXPORTER_PYTHON"
#: Registry name -> samexporter's ``--model-type``; it has no other SAM-1 family models.
SAMEXPORTER_MODEL_TYPES = {
    "sam_vit_b": "vit_b",
    "sam_vit_l": "vit_l",
    "sam_vit_h": "vit_h",
    "mobile_sam": "mobile",
}
NOTEBOOK_URL = (
    "https://github.com/openvinotoolkit/openvino_notebooks/blob/latest/"
    "notebooks/segment-anything/segment-anything.ipynb"
)
#: Calibration frames of the notebook recipe's NNCF INT8 (= samedge build's default).
NOTEBOOK_SUBSET_SIZE = 32
# Generous: ViT-H conversion and calibration take many minutes on a small CPU.
_JOB_TIMEOUT_S = 3 * 3600
_SETUP_COMMAND = "python benchmarks/peers.py setup-samexporter --work-dir {work_dir}"
_WORKER = Path(__file__).resolve().with_name("peer_workers.py")
# Libraries whose versions go into the results, per interpreter.
_MAIN_PACKAGES = (
    "torch",
    "torchvision",
    "segment-anything",
    "mobilesam-mirror",
    "onnxruntime",
    "openvino",
    "nncf",
    "numpy",
    "opencv-python-headless",
    "pillow",
)
_SAMEXPORTER_PACKAGES = (
    "samexporter",
    "torch",
    "onnx",
    "onnxruntime",
    "segment-anything",
    "numpy",
    "opencv-python-headless",
    "pillow",
)


def default_work_dir() -> Path:
    """Where ``samedge bench`` runs the peers: ``<samedge cache>/bench/peers``.

    The cache root is ``$SAMEDGE_CACHE_DIR``, else ``$XDG_CACHE_HOME/samedge``,
    else ``~/.cache/samedge`` (:func:`samedge.runtimes.default_cache_root`).
    """
    from samedge.runtimes import default_cache_root

    return default_cache_root() / "bench" / "peers"


@dataclass(frozen=True)
class PeerSkip:
    """A peer (or one precision of it) that did not run for a model, and why."""

    suite: str
    model: str
    reason: str
    precision: str | None = None


@dataclass(frozen=True)
class PeersReport:
    """Everything :func:`run_peers_report` found.

    Attributes:
        measurements: The timed rows, in run order.
        skipped: Peers that could not run a model, with the reason.
        versions: Library versions per interpreter (``"main"``, ``"samexporter"``).
        details: Per job, what the peer reported about itself (load path,
            compile settings, providers, conversion times).
    """

    measurements: tuple[Measurement, ...]
    skipped: tuple[PeerSkip, ...] = ()
    versions: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    details: Mapping[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "measurements": [m.to_json() for m in self.measurements],
            "skipped": [vars(s) for s in self.skipped],
            "versions": {k: dict(v) for k, v in self.versions.items()},
            "details": dict(self.details),
        }


class _PeerFailedError(Exception):
    """A peer's job failed; the peer is recorded as skipped with this message."""


# --------------------------------------------------------------------------- checkpoints


# --------------------------------------------------------------------------- samexporter env


def _env_python(env: Path) -> Path:
    return env / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def samexporter_env_python(work_dir: Path, given: Path | None = None) -> Path:
    """samexporter's interpreter: ``given``, else ``$SAMEDGE_SAMEXPORTER_PYTHON``, else the
    one :func:`setup_samexporter` made in ``work_dir``.

    Raises:
        InputError: ``given`` (or the environment variable) is not a file.
        BackendUnavailableError: no environment in ``work_dir``; the message
            gives the one command that creates it.
    """
    command = _SETUP_COMMAND.format(work_dir=shlex.quote(str(work_dir)))
    explicit = given if given is not None else os.environ.get(SAMEXPORTER_PYTHON_ENV) or None
    if explicit is not None:
        source = "samexporter_python" if given is not None else f"${SAMEXPORTER_PYTHON_ENV}"
        if not Path(explicit).is_file():
            raise InputError(
                f"{source}: {explicit} is not a file; pass the python of an environment "
                f"made by `{command}`"
            )
        return Path(explicit)
    python = _env_python(Path(work_dir) / SAMEXPORTER_ENV)
    if not python.is_file():
        raise BackendUnavailableError(
            f"samexporter peer: no samexporter environment at {python.parent.parent}; create "
            f"it once with `{command}` (a venv with samexporter=={SAMEXPORTER_VERSION} "
            "installed --no-deps, borrowing this environment's torch/onnx/onnxruntime), "
            f"or pass samexporter_python= / set ${SAMEXPORTER_PYTHON_ENV}"
        )
    return python


def _run(cmd: Sequence[str | Path], what: str, timeout: float = _JOB_TIMEOUT_S) -> float:
    """Run ``cmd``; return its wall time. Raises _PeerFailedError with the output's tail."""
    start = time.perf_counter()
    try:
        proc = subprocess.run(
            [str(c) for c in cmd], capture_output=True, text=True, timeout=timeout, check=False
        )
    except subprocess.TimeoutExpired as e:
        raise _PeerFailedError(f"{what}: no result after {timeout:.0f} s") from e
    seconds = time.perf_counter() - start
    if proc.stderr:
        log.debug("%s stderr:\n%s", what, proc.stderr)
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        raise _PeerFailedError(f"{what}: exit status {proc.returncode}: {' | '.join(tail)}")
    return seconds


def setup_samexporter(
    work_dir: Path, *, version: str = SAMEXPORTER_VERSION, force: bool = False
) -> Path:
    """Create samexporter's environment in ``work_dir`` (once) and return its python.

    samexporter pins torch, torchvision, onnx and opencv to older releases, so
    it is installed with ``pip install --no-deps`` into a virtual environment
    of its own, ``work_dir/.samexporter-venv``. That environment holds only
    samexporter; a ``.pth`` file adds this environment's site-packages *after*
    its own, so it imports the torch, onnx, onnxruntime, segment_anything and
    OpenCV installed here and its pins can neither downgrade nor shadow them.
    This is the only function of the bench that installs anything, and only
    when called.

    Args:
        work_dir: The bench's work directory.
        version: samexporter release to install.
        force: Recreate the environment even if it exists.

    Returns:
        The environment's python.

    Raises:
        BackendUnavailableError: Python older than 3.11 (samexporter's minimum),
            or the venv, the install or the import check failed.

    Example:
        >>> setup_samexporter(default_work_dir())               # doctest: +SKIP
        PosixPath('/root/.cache/samedge/bench/peers/.samexporter-venv/bin/python')
    """
    if sys.version_info < (3, 11):
        raise BackendUnavailableError(
            f"samexporter {version} needs Python >= 3.11; this is {platform.python_version()}"
        )
    env = Path(work_dir).resolve() / SAMEXPORTER_ENV
    python = _env_python(env)
    check = "import samexporter.sam_onnx, torch, onnxruntime, segment_anything, cv2"
    if python.is_file() and not force:
        with contextlib.suppress(_PeerFailedError):
            _run([python, "-W", "ignore", "-c", check], "samexporter env check")
            log.info("samexporter environment %s is ready", env)
            return python
    try:
        # The base interpreter of this one, so the borrowed compiled packages fit.
        _run([sys.executable, "-m", "venv", "--clear", env], "create the samexporter venv")
        pip = [python, "-m", "pip", "install", "--disable-pip-version-check", "--no-deps"]
        _run([*pip, f"samexporter=={version}"], f"pip install --no-deps samexporter=={version}")
        site_dir = subprocess.run(
            [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        ours = dict.fromkeys(sysconfig.get_paths()[k] for k in ("purelib", "platlib"))
        # addsitedir (not a bare path) so this environment's own .pth files, such
        # as samedge's editable install, are processed too. "zz": after any other
        # .pth of the venv, so its own packages stay first on sys.path.
        lines = [f"import site; site.addsitedir({d!r})" for d in ours]
        (Path(site_dir) / "zz_samedge_main_env.pth").write_text("\n".join(lines) + "\n")
        _run([python, "-W", "ignore", "-c", check], "samexporter env check")
    except (_PeerFailedError, subprocess.CalledProcessError, OSError) as e:
        raise BackendUnavailableError(f"samexporter environment {env}: setup failed: {e}") from e
    log.info("samexporter %s installed in %s", version, env)
    return python


# --------------------------------------------------------------------------- running jobs


@dataclass(frozen=True)
class _Context:
    runs: int
    warmup: int
    threads: int | None
    objects: tuple[int, ...]
    work_dir: Path
    samexporter_python: Path | None


def _job(python: Path, job: dict[str, Any], ctx: _Context) -> dict[str, Any]:
    """Run one worker job in its own process; return its result."""
    scratch = ctx.work_dir / "peers" / "jobs"
    scratch.mkdir(parents=True, exist_ok=True)
    name = "-".join(str(job[k]) for k in ("kind", "model", "precision") if k in job)
    job_file, result_file = scratch / f"{name}.job.json", scratch / f"{name}.result.json"
    job_file.write_text(json.dumps(job, indent=1, default=str))
    result_file.unlink(missing_ok=True)
    try:
        _run([python, _WORKER, job_file, result_file], name)
    except _PeerFailedError as e:
        if not result_file.is_file():
            raise
        failed = json.loads(result_file.read_text())
        raise _PeerFailedError(f"{name}: {failed.get('error', e)}") from e
    result: dict[str, Any] = json.loads(result_file.read_text())
    return result


def _timing_job(suite: str, model: str, ctx: _Context, **extra: Any) -> dict[str, Any]:
    return {
        "suite": suite,
        "model": model,
        "runs": ctx.runs,
        "warmup": ctx.warmup,
        "threads": ctx.threads,
        "objects": list(ctx.objects),
        **extra,
    }


def _measurements(result: dict[str, Any]) -> list[Measurement]:
    return [Measurement.from_json(m) for m in result["measurements"]]


def _pytorch(
    model: str, checkpoint: Path, ctx: _Context, details: dict[str, Any]
) -> list[Measurement]:
    job = _timing_job("pytorch", model, ctx, kind="pytorch", checkpoint=str(checkpoint))
    result = _job(Path(sys.executable), job, ctx)
    details[f"pytorch/{model}"] = result["info"]
    return _measurements(result)


def _samexporter(
    model: str, checkpoint: Path, ctx: _Context, details: dict[str, Any], skipped: list[PeerSkip]
) -> list[Measurement]:
    python = ctx.samexporter_python
    if python is None:  # run_peers_report resolves it whenever a model needs it
        raise _PeerFailedError("no samexporter environment")
    model_type = SAMEXPORTER_MODEL_TYPES[model]
    out = ctx.work_dir / "peers" / "samexporter" / f"{model}-{checkpoint.stem}"
    out.mkdir(parents=True, exist_ok=True)
    encoder, decoder, quant = (
        out / f"{model}.encoder.onnx",
        out / f"{model}.decoder.onnx",
        out / f"{model}.encoder.quant.onnx",
    )
    common: list[str | Path] = ["--checkpoint", checkpoint, "--model-type", model_type]
    # The commands of samexporter's README (encoder with its preprocessing
    # in-graph, decoder returning the best mask), run with its own interpreter.
    export: list[str | Path] = [python, "-m"]
    build = {
        "encoder": _run(
            [
                *export,
                "samexporter.export_encoder",
                *common,
                "--output",
                encoder,
                "--use-preprocess",
            ],
            f"samexporter.export_encoder {model}",
        ),
        "decoder": _run(
            [
                *export,
                "samexporter.export_decoder",
                *common,
                "--output",
                decoder,
                "--return-single-mask",
            ],
            f"samexporter.export_decoder {model}",
        ),
    }
    details[f"samexporter/{model}/export_s"] = {k: round(v, 3) for k, v in build.items()}
    files = {"encoder": str(encoder), "decoder": str(decoder)}
    job = _timing_job("samexporter", model, ctx, kind="samexporter", **files)
    result = _job(python, {**job, "precision": "fp32", "decoder_rows": True, "build_s": build}, ctx)
    details[f"samexporter/{model}/fp32"] = result["info"]
    rows = _measurements(result)
    try:
        q = _job(
            python,
            {"kind": "samexporter-quantize", "model": model, "source": encoder, "output": quant},
            ctx,
        )
        int8_build = {**build, "encoder": build["encoder"] + q["seconds"]}
        result = _job(
            python,
            {
                **job,
                "encoder": str(quant),
                "reference_encoder": str(encoder),
                "precision": "int8",
                "decoder_rows": False,
                "build_s": int8_build,
            },
            ctx,
        )
        details[f"samexporter/{model}/int8"] = result["info"]
        rows += _measurements(result)
    except _PeerFailedError as e:
        log.warning("samexporter %s int8: %s", model, e)
        skipped.append(PeerSkip("samexporter", model, f"--quantize-out failed: {e}", "int8"))
    return rows


def _notebook(
    model: str, checkpoint: Path, ctx: _Context, details: dict[str, Any], skipped: list[PeerSkip]
) -> list[Measurement]:
    python = Path(sys.executable)
    out = ctx.work_dir / "peers" / "openvino-notebook" / f"{model}-{checkpoint.stem}"
    built = _job(
        python,
        {"kind": "notebook-build", "model": model, "checkpoint": str(checkpoint), "out": out},
        ctx,
    )
    build = built["seconds"]
    details[f"openvino-notebook/{model}/build"] = {**built["info"], "seconds": build}
    job = _timing_job("openvino-notebook", model, ctx, kind="notebook-time", out=str(out))
    result = _job(
        python, {**job, "precision": "default", "decoder_rows": True, "build_s": build}, ctx
    )
    details[f"openvino-notebook/{model}/default"] = result["info"]
    rows = _measurements(result)
    try:
        q = _job(
            python,
            {
                "kind": "notebook-quantize",
                "model": model,
                "out": out,
                "subset_size": NOTEBOOK_SUBSET_SIZE,
            },
            ctx,
        )
        int8_build = {**build, "encoder": build["encoder"] + q["seconds"]}
        result = _job(
            python, {**job, "precision": "int8", "decoder_rows": False, "build_s": int8_build}, ctx
        )
        details[f"openvino-notebook/{model}/int8"] = {
            **result["info"],
            "nncf_quantize_s": q["seconds"],
            "subset_size": NOTEBOOK_SUBSET_SIZE,
        }
        rows += _measurements(result)
    except _PeerFailedError as e:
        log.warning("openvino-notebook %s int8: %s", model, e)
        skipped.append(PeerSkip("openvino-notebook", model, f"NNCF INT8 failed: {e}", "int8"))
    return rows


# --------------------------------------------------------------------------- entry points


def _check_args(
    models: Sequence[str],
    checkpoints: Mapping[str, Path] | None,
    runs: int,
    warmup: int,
    threads: int | None,
    objects: Sequence[int],
    peers: Sequence[str],
) -> None:
    from samedge.exporters.export import resolve_spec

    if isinstance(models, str) or not models:
        raise InputError(f"models: got {models!r}, expected a non-empty list of model names")
    for name in models:
        resolve_spec(name)  # UnknownNameError with the valid names
    for name, value, low in (("runs", runs, 1), ("warmup", warmup, 0)):
        if not isinstance(value, int) or isinstance(value, bool) or value < low:
            raise InputError(f"{name}: got {value!r}, expected an int >= {low}")
    if threads is not None and (not isinstance(threads, int) or threads < 1):
        raise InputError(f"threads: got {threads!r}, expected an int >= 1 or None (default)")
    if not objects or any(not isinstance(b, int) or b < 1 for b in objects):
        raise InputError(f"objects: got {objects!r}, expected decoder batch sizes >= 1")
    unknown = [p for p in peers if p not in PEERS]
    if unknown or not peers:
        raise InputError(f"peers: got {list(peers)!r}, expected a non-empty subset of {PEERS}")
    for name, path in (checkpoints or {}).items():
        if name not in models:
            raise InputError(
                f"checkpoints: got one for {name!r}, which is not among models {list(models)}"
            )
        if not Path(path).is_file():
            raise CheckpointError(f"checkpoint {path} (for {name}): no such file")


def run_peers_report(
    models: Sequence[str],
    *,
    checkpoints: Mapping[str, Path] | None = None,
    runs: int = 10,
    warmup: int = 2,
    threads: int | None = None,
    work_dir: Path,
    samexporter_python: Path | None = None,
    objects: Sequence[int] = (1,),
    peers: Sequence[str] = PEERS,
) -> PeersReport:
    """:func:`run_peers`, plus what was skipped and why, versions and per-job details.

    ``peers`` selects which of :data:`PEERS` run. See :func:`run_peers` for the rest.
    """
    _check_args(models, checkpoints, runs, warmup, threads, objects, peers)
    work_dir = Path(work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    sx_python = None
    if "samexporter" in peers and any(m in SAMEXPORTER_MODEL_TYPES for m in models):
        sx_python = samexporter_env_python(work_dir, samexporter_python)
    ctx = _Context(runs, warmup, threads, tuple(objects), work_dir, sx_python)
    ckpts = {m: Path((checkpoints or {}).get(m) or random_checkpoint(m, work_dir)) for m in models}
    rows: list[Measurement] = []
    skipped: list[PeerSkip] = []
    details: dict[str, Any] = {}
    for model in models:
        details[f"checkpoint/{model}"] = str(ckpts[model])
        for peer in peers:
            if peer == "samexporter" and model not in SAMEXPORTER_MODEL_TYPES:
                reason = f"samexporter exports only {sorted(SAMEXPORTER_MODEL_TYPES)}"
                skipped.append(PeerSkip(peer, model, reason))
                continue
            if peer == "openvino-notebook" and is_efficientvit_sam(model):
                reason = (
                    "the notebook's recipe converts SAM's encoder and mask predictor; "
                    "EfficientViT-SAM's own predictor is the pytorch peer"
                )
                skipped.append(PeerSkip(peer, model, reason))
                continue
            log.info("peer %s on %s ...", peer, model)
            try:
                if peer == "pytorch":
                    rows += _pytorch(model, ckpts[model], ctx, details)
                elif peer == "samexporter":
                    rows += _samexporter(model, ckpts[model], ctx, details, skipped)
                else:
                    rows += _notebook(model, ckpts[model], ctx, details, skipped)
            except _PeerFailedError as e:
                log.warning("peer %s on %s did not run: %s", peer, model, e)
                skipped.append(PeerSkip(peer, model, str(e)))
    versions = {"main": _versions(Path(sys.executable), _MAIN_PACKAGES, ctx)}
    if sx_python is not None:
        versions["samexporter"] = _versions(sx_python, _SAMEXPORTER_PACKAGES, ctx)
    return PeersReport(tuple(rows), tuple(skipped), versions, details)


def _versions(python: Path, packages: Sequence[str], ctx: _Context) -> dict[str, Any]:
    try:
        result = _job(python, {"kind": "versions", "packages": list(packages)}, ctx)
    except _PeerFailedError as e:
        return {"error": str(e)}
    return {k: v for k, v in result.items() if k != "ok"}


def run_peers(
    models: Sequence[str],
    *,
    checkpoints: dict[str, Path] | None = None,
    runs: int = 10,
    warmup: int = 2,
    threads: int | None = None,
    work_dir: Path,
    samexporter_python: Path | None = None,
    objects: Sequence[int] = (1,),
) -> list[Measurement]:
    """Time every peer (:data:`PEERS`) on ``models``, each in its own process.

    A peer that cannot run a model (samexporter has no samedge_tiny; an INT8
    step that fails in this environment) is left out with a logged warning;
    :func:`run_peers_report` returns the reasons too.

    Args:
        models: Registry names (``"mobile_sam"``, ``"sam_vit_b"``, ``"samedge_tiny"``).
        checkpoints: Model -> ``.pth`` file; models without one get
            :func:`random_checkpoint` (seed 0), the weights samedge times too.
        runs: Timed calls per row, after ``warmup`` untimed ones.
        warmup: Untimed calls first.
        threads: Intra-op threads for every peer; ``None`` leaves each at its default.
        work_dir: Where checkpoints, exported graphs and job files go; also
            where :func:`setup_samexporter` put samexporter's environment.
        samexporter_python: samexporter's interpreter; ``None`` uses the one
            in ``work_dir``.
        objects: Decoder batch sizes (objects per decoder call) to time.

    Returns:
        The rows, ``suite`` naming the peer; ``note`` starts with ``"engine:"``
        or ``"api:"`` (see the module docstring).

    Raises:
        InputError / UnknownNameError: bad arguments.
        CheckpointError: a given checkpoint does not exist.
        BackendUnavailableError: a model needs samexporter and it has no
            environment; the message names the command that makes one.

    Example:
        >>> work = default_work_dir()
        >>> rows = run_peers(["mobile_sam"], threads=2, work_dir=work)  # doctest: +SKIP
        >>> {(r.suite, r.precision) for r in rows if r.part == "encoder"}  # doctest: +SKIP
    """
    return list(
        run_peers_report(
            models,
            checkpoints=checkpoints,
            runs=runs,
            warmup=warmup,
            threads=threads,
            work_dir=work_dir,
            samexporter_python=samexporter_python,
            objects=objects,
        ).measurements
    )


def add_peers(
    report: BenchReport,
    *,
    peers: Sequence[str] = PEERS,
    samexporter_python: Path | None = None,
    command: str = "",
) -> BenchReport:
    """``report`` with the peers timed beside it, and peer/samedge ratios.

    The peers run with the report's own settings (runs, warm-up, threads,
    decoder batch sizes) on the random-weight checkpoints its models were
    exported from, in the peers' folder of its work directory. Peer rows the
    report already had are replaced. A peer that cannot run is recorded in
    ``failures``; samexporter without its environment is left out (the
    failure names the setup command) and the others still run.

    Args:
        report: A saved ``samedge bench`` report (:meth:`BenchReport.load`).
        peers: Which peers to run.
        samexporter_python: samexporter's interpreter; ``None`` looks in the work directory.
        command: This script's command line, recorded after the report's own.
    """
    settings = report.settings
    names = list(dict.fromkeys(m["name"] for m in report.models if m["precision"] == "fp32"))
    checkpoints = {m["name"]: Path(m["checkpoint"]) for m in report.models if m.get("checkpoint")}
    failures = [f for f in report.failures if not f["what"].startswith("peers")]
    rows: list[Measurement] = []
    left = list(peers)
    while left and names:
        try:
            found = run_peers_report(
                names,
                checkpoints=checkpoints or None,
                runs=int(settings["runs"]),
                warmup=int(settings["warmup"]),
                threads=settings.get("threads"),
                work_dir=Path(settings["work_dir"]) / "peers",
                samexporter_python=samexporter_python,
                objects=tuple(settings["objects"]),  # decoder rows at the same batch sizes
                peers=left,
            )
        except BackendUnavailableError as e:
            if "samexporter" not in left:
                failures.append({"what": "peers", "error": str(e)})
                break
            log.warning("samexporter left out: %s", e)
            failures.append({"what": "peers/samexporter", "error": str(e)})
            left.remove("samexporter")
            continue
        except Exception as e:  # third-party code: keep samedge's rows whatever it raises
            log.warning("peers failed: %s", e)
            failures.append({"what": "peers", "error": f"{type(e).__name__}: {e}"})
            break
        rows = list(found.measurements)
        for skip in found.skipped:
            parts = ["peers", skip.suite, skip.model, *([skip.precision] if skip.precision else [])]
            failures.append({"what": "/".join(parts), "error": skip.reason})
        break
    measurements = [m for m in report.measurements if m.suite == "samedge"] + rows
    return replace(
        report,
        command=f"{report.command} && {command}" if command else report.command,
        measurements=tuple(measurements),
        ratios=tuple(peer_ratios(measurements, report.default.get("backend"))),
        failures=tuple(failures),
    )


# --------------------------------------------------------------------------- command line


def _machine() -> dict[str, Any]:
    info = machine_info()
    # Other processes compete for the cores; read the numbers with this in mind.
    info["load_average_1min_at_end"] = round(os.getloadavg()[0], 2)
    return info


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python benchmarks/peers.py", description="the peers beside samedge bench"
    )
    sub = parser.add_subparsers(dest="command", required=True)
    setup = sub.add_parser("setup-samexporter", help="create samexporter's own environment")
    setup.add_argument(
        "--work-dir", type=Path, default=None, help="default: samedge bench's, <cache>/bench/peers"
    )
    setup.add_argument("--force", action="store_true", help="recreate it")
    run = sub.add_parser("run", help="time the peers and write their JSON")
    run.add_argument("--models", nargs="+", default=["mobile_sam"])
    run.add_argument("--peers", nargs="+", default=list(PEERS), choices=PEERS)
    run.add_argument(
        "--work-dir", type=Path, default=None, help="default: samedge bench's, <cache>/bench/peers"
    )
    run.add_argument("--runs", type=int, default=10)
    run.add_argument("--warmup", type=int, default=2)
    run.add_argument("--threads", type=int, default=None)
    run.add_argument("--objects", type=int, nargs="+", default=[1])
    run.add_argument("--samexporter-python", type=Path, default=None)
    run.add_argument("--output", type=Path, required=True, help="JSON file to write")
    add = sub.add_parser(
        "add", help="time the peers beside a saved samedge bench report and rewrite it"
    )
    add.add_argument("report", type=Path, help="a bench*.json written by samedge bench")
    add.add_argument("--peers", nargs="+", default=list(PEERS), choices=PEERS)
    add.add_argument("--samexporter-python", type=Path, default=None)
    parser.add_argument("-v", "--verbose", action="store_true")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """``python benchmarks/peers.py {setup-samexporter,run,add} ...``."""
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO, format="%(name)s: %(message)s"
    )
    # `add` has no --work-dir: the report names its own.
    work_dir = getattr(args, "work_dir", None) or default_work_dir()
    if args.command == "setup-samexporter":
        python = setup_samexporter(work_dir, force=args.force)
        sys.stdout.write(f"{python}\n")
        return 0
    given = list(sys.argv[1:] if argv is None else argv)
    if args.command == "add":
        report = add_peers(
            BenchReport.load(args.report),
            peers=args.peers,
            samexporter_python=args.samexporter_python,
            command=shlex.join(["python", "benchmarks/peers.py", *given]),
        )
        paths = report.save(args.report.parent, args.report.stem)
        for ratio in report.ratios:
            sys.stdout.write(
                f"{ratio['model']} {ratio['part']}: {ratio['peer_suite']} / samedge "
                f"{ratio['against']} ({ratio['samedge']}) = {ratio['ratio']:.2f}x\n"
            )
        for failure in report.failures:
            sys.stderr.write(f"FAILED {failure['what']}: {failure['error']}\n")
        sys.stdout.write("wrote " + ", ".join(str(p) for p in paths.values()) + "\n")
        return 0
    report = run_peers_report(
        args.models,
        runs=args.runs,
        warmup=args.warmup,
        threads=args.threads,
        work_dir=work_dir,
        samexporter_python=args.samexporter_python,
        objects=args.objects,
        peers=args.peers,
    )
    record = {
        "command": shlex.join(["python", "benchmarks/peers.py", *given]),
        "timestamp": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": _machine(),
        "settings": {
            "models": args.models,
            "peers": args.peers,
            "runs": args.runs,
            "warmup": args.warmup,
            "threads": args.threads,
            "objects": args.objects,
            "frame": list(FRAME_SIZE),
            "notebook_subset_size": NOTEBOOK_SUBSET_SIZE,
            "notebook_url": NOTEBOOK_URL,
        },
        **report.to_json(),
    }
    write_atomic(args.output, json.dumps(record, indent=2) + "\n")
    for m in report.measurements:
        sys.stdout.write(
            f"{m.suite:18} {m.model:12} {m.precision:5} {m.part:9} B={m.objects or '-':<3} "
            f"{m.timing.median_ms:9.2f} ms  {m.note}\n"
        )
    for s in report.skipped:
        sys.stdout.write(f"skipped {s.suite} {s.model} {s.precision or ''}: {s.reason}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
