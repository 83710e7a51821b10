"""``samedge bench --builds fp16,int8``: the FP16/INT8 builds bench measures, made by bench.

For each FP32 model bench resolves, :func:`make_builds` runs ``samedge build``
once per requested precision into ``<work_dir>/<key>/<precision>``, where
``<key>`` is the folder of bench's own random-weight export
(``<name>-seed<seed>``, so the builds sit beside its ``fp32``), and
``<model name>-<first 8 hex digits of the FP32 encoder's SHA-256>`` for the
built-in model or a user's directory. Each build runs in a process of its own
(``python -m samedge build ... --speed-runs 0 --force [build_args]``), which
keeps the calibration's memory out of the bench process and reuses the CLI's
SIGTERM cleanup and output lock.

A folder that already holds a finished build of the same source encoder,
precision and build arguments is reused: its ``samedge.json`` has the
precision, its ``report.json`` the source encoder's SHA-256, and the
``bench-build.json`` bench wrote beside them the same arguments. Anything
else is rebuilt.

A build never raises: a missed accuracy gate, a crash or a timeout comes back
as a :class:`BuildResult` with ``error`` set, which bench records in its
report's ``failures`` while the other builds and every measurement go on.

Example:
    >>> from samedge.bench.builds import make_builds
    >>> from samedge.bench.run import resolve_models
    >>> (tiny,) = resolve_models(["samedge_tiny"], Path("work"))            # doctest: +SKIP
    >>> [r.output.name for r in make_builds(tiny, ("fp16",), Path("work"))]  # doctest: +SKIP
    ['fp16']
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from samedge._io import atomic_write_text, sha256_file
from samedge.errors import InputError, ModelDirError

if TYPE_CHECKING:
    from samedge.bench.run import BenchModel
    from samedge.calibration.report import BuildReport

__all__ = [
    "BUILD_PRECISIONS",
    "RECORD_NAME",
    "BuildResult",
    "build_dir",
    "check_build_args",
    "make_builds",
]

log = logging.getLogger(__name__)

BUILD_PRECISIONS = ("fp16", "int8")
RECORD_NAME = "bench-build.json"  # what bench writes into a build it made
_REPORT_NAME = "report.json"  # what `samedge build` writes into a built directory
# Flags bench sets itself on every build (``--precision`` and ``-o`` name the
# folder bench reads back); a build argument that sets them again is refused.
# argparse takes any unambiguous prefix of a long flag, hence the prefix check.
_OWN_FLAGS = ("--precision", "--output")
# How long a timed-out build may take to remove its staging folders after
# SIGTERM before its process group is killed outright.
_TERM_GRACE_S = 30.0


@dataclass(frozen=True)
class BuildResult:
    """One build bench asked for: made, reused, or failed.

    Attributes:
        model: Architecture name of the source (the card's ``model``).
        precision: ``"fp16"`` or ``"int8"``.
        source: The FP32 model directory it is built from.
        output: The folder it is (or would have been) written to.
        build_args: Extra arguments passed to ``samedge build``.
        reused: The folder already held this build; nothing ran.
        seconds: Wall time of the build process (0 when reused).
        error: Why there is no build (one line); None when there is one.
    """

    model: str
    precision: str
    source: Path
    output: Path
    build_args: tuple[str, ...] = ()
    reused: bool = False
    seconds: float = 0.0
    error: str | None = None

    @property
    def ok(self) -> bool:
        """Whether ``output`` holds the build."""
        return self.error is None

    @property
    def command(self) -> str:
        """The ``samedge build`` command a user would type to make the same folder."""
        words = ["samedge", "build", str(self.source), "--precision", self.precision]
        words += ["-o", str(self.output), "--speed-runs", "0", *self.build_args]
        return shlex.join(words)

    @property
    def what(self) -> str:
        """The name of this build in bench's ``failures``: ``build/<model>/<precision>``."""
        return f"build/{self.model}/{self.precision}"

    def built_by(self) -> dict[str, Any]:
        """What bench records in its report's ``models`` entry of the build."""
        return {"command": self.command, "reused": self.reused, "seconds": round(self.seconds, 1)}


def check_build_args(build_args: object) -> None:
    """Refuse build arguments that are not a tuple of strings or that set bench's own flags.

    Raises:
        InputError: says which argument and why.
    """
    if not isinstance(build_args, tuple) or not all(isinstance(a, str) for a in build_args):
        raise InputError(f"build_args: got {build_args!r}, expected a tuple of strings")
    for arg in build_args:
        name = arg.split("=", 1)[0]
        long_flag = name.startswith("--") and len(name) > 2
        if (long_flag and any(flag.startswith(name) for flag in _OWN_FLAGS)) or (
            arg.startswith("-o") and not arg.startswith("--")
        ):
            raise InputError(
                f"build_args: got {arg!r}; bench sets --precision and -o/--output of each "
                "build itself (from builds and the work folder); remove it"
            )


def build_dir(model: BenchModel, precision: str, work_dir: Path, encoder_sha256: str) -> Path:
    """Where bench builds ``model`` at ``precision``: ``<work_dir>/<key>/<precision>``.

    Args:
        model: The FP32 source.
        precision: ``"fp16"`` or ``"int8"``.
        work_dir: Bench's work folder.
        encoder_sha256: SHA-256 of the source's encoder.
    """
    if model.checkpoint is not None:
        # Bench's own export, <work_dir>/<name>-seed<seed>/fp32: builds go beside it.
        key = model.directory.parent.name
    else:
        key = f"{model.name}-{encoder_sha256[:8]}"
    return work_dir / key / precision


def make_builds(
    model: BenchModel,
    precisions: Sequence[str],
    work_dir: Path,
    build_args: Sequence[str] = (),
    timeout_s: float | None = None,
) -> list[BuildResult]:
    """Build (or reuse) ``model`` at each of ``precisions``; never raises for a failed build.

    Args:
        model: The source; one that is not FP32 is skipped with a log line
            (a build is made from FP32 only).
        precisions: Values from :data:`BUILD_PRECISIONS`, built in this order.
        work_dir: Bench's work folder (see :func:`build_dir`).
        build_args: Extra ``samedge build`` arguments, one string each
            (``("--frames", "16")``), also part of what reuse compares.
        timeout_s: Stop a build after this long (SIGTERM, then SIGKILL to its
            process group) and record it as failed; None = no limit.

    Returns:
        One result per precision, in order; empty when ``model`` is not FP32.

    Raises:
        InputError: a precision is not in :data:`BUILD_PRECISIONS`, or
            ``build_args`` sets ``--precision`` or ``-o``.
    """
    from samedge.model_dir import read_model_dir

    bad = [p for p in precisions if p not in BUILD_PRECISIONS]
    if bad:
        raise InputError(f"builds: got {bad}, expected values from {', '.join(BUILD_PRECISIONS)}")
    args = tuple(build_args)
    check_build_args(args)
    if model.precision != "fp32":
        log.info(
            "bench: --builds skips %s: it is %s, and builds are made from fp32 directories only",
            model.directory,
            model.precision,
        )
        return []
    card = read_model_dir(model.directory)
    source_sha = sha256_file(model.directory / card.encoder)
    # The build carries the source's decoder along: a re-exported decoder
    # (same encoder) must not reuse a build made with the old one.
    decoder_sha = sha256_file(model.directory / card.decoder)
    results = []
    for precision in precisions:
        out = build_dir(model, precision, work_dir, source_sha)
        result = BuildResult(model.name, precision, model.directory, out, args)
        if _is_finished(out, precision, source_sha, decoder_sha, args):
            log.info("bench: reusing %s (%s)", out, result.command)
            results.append(replace(result, reused=True))
            continue
        results.append(_build(result, source_sha, decoder_sha, timeout_s))
    return results


def _read_json(path: Path) -> Any:
    with contextlib.suppress(OSError, ValueError):
        return json.loads(path.read_text(encoding="utf-8"))
    return None


def _is_finished(
    out: Path, precision: str, source_sha: str, decoder_sha: str, build_args: tuple[str, ...]
) -> bool:
    """Whether ``out`` holds a passing ``precision`` build of this source made with these args."""
    from samedge.model_dir import read_model_dir

    try:
        if read_model_dir(out).precision != precision:
            return False
    except ModelDirError:
        return False
    report = _read_report(out / _REPORT_NAME)
    record = _read_json(out / RECORD_NAME)
    if report is None or not isinstance(record, dict):
        return False
    return (
        report.passed
        and report.precision == precision
        and report.calibration.source_encoder_sha256 == source_sha
        # The build's own report says what and from what; bench's record adds how.
        and record.get("build_args") == list(build_args)
        and record.get("source_decoder_sha256") == decoder_sha
    )


def _read_report(path: Path) -> BuildReport | None:
    """The build report at ``path``, or None when it is missing or not one."""
    from samedge.calibration.report import BuildReport

    data = _read_json(path)
    if data is None:
        return None
    try:
        return BuildReport.from_dict(data)
    except InputError as e:
        log.warning("%s: not a build report (%s)", path, e)
        return None


def _build(
    result: BuildResult, source_sha: str, decoder_sha: str, timeout_s: float | None
) -> BuildResult:
    """Run ``samedge build`` for ``result`` and return it with the time and any error."""
    from samedge.calibration.build import failed_report_path

    out = result.output
    cmd = [sys.executable, "-m", "samedge", "build", str(result.source)]
    cmd += ["--precision", result.precision, "-o", str(out), "--speed-runs", "0", "--force"]
    cmd += list(result.build_args)
    failed = failed_report_path(out)
    # A report left by an earlier failed build must not pass for this one's.
    failed.unlink(missing_ok=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    log.info("bench: building %s %s: %s", result.model, result.precision, shlex.join(cmd))
    start = time.perf_counter()
    try:
        code, stderr = _run(cmd, timeout_s)
    except OSError as e:
        return replace(result, error=f"could not start samedge build ({e})")
    seconds = time.perf_counter() - start
    for line in stderr.splitlines():
        log.debug("build: %s", line)
    error = None
    if code is None:
        error = f"timed out after {timeout_s:.0f} s (process group killed)"
    elif code != 0:
        report = _read_report(failed) if failed.is_file() else None
        if report is not None:
            reasons = "; ".join(report.gate_reasons) or "no reason given"
            error = f"gate failed: {reasons} (report: {failed})"
        else:
            lines = [ln.strip() for ln in stderr.splitlines() if ln.strip()]
            how = f"killed by signal {-code}" if code < 0 else f"exit code {code}"
            error = f"{how}: {lines[-1]}" if lines else f"{how} and no error output"
    if error is None:
        record = {
            "precision": result.precision,
            "source": str(result.source),
            "source_encoder_sha256": source_sha,
            "source_decoder_sha256": decoder_sha,
            "build_args": list(result.build_args),
            "command": result.command,
        }
        atomic_write_text(out / RECORD_NAME, json.dumps(record, indent=2) + "\n")
        log.info("bench: built %s in %.1f s (%s)", out, seconds, result.command)
    else:
        log.warning("bench: build of %s %s failed after %.1f s: %s", result.model,
                    result.precision, seconds, error)  # fmt: skip
    return replace(result, seconds=seconds, error=error)


def _run(cmd: Sequence[str], timeout_s: float | None) -> tuple[int | None, str]:
    """Run ``cmd`` in a session of its own; its exit code (None: timed out) and stderr.

    On a timeout, or when the caller is interrupted, the whole process group
    gets SIGTERM (``samedge build`` then removes its staging folders) and,
    after a grace period, SIGKILL.
    """
    proc = subprocess.Popen(
        list(cmd),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        errors="replace",
        start_new_session=True,
    )
    try:
        _, stderr = proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        return None, _stop(proc)
    except BaseException:
        _stop(proc)
        raise
    return proc.returncode, stderr


def _stop(proc: subprocess.Popen[str]) -> str:
    """SIGTERM ``proc``'s process group, SIGKILL it after a grace period; the stderr left."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        _, stderr = proc.communicate(timeout=_TERM_GRACE_S)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        _, stderr = proc.communicate()
    return stderr or ""
