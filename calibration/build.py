"""``samedge build``: an FP32 model directory -> an FP16 or INT8 one that passed its gate.

The steps, each a function from files to files (see :mod:`.fp16`, :mod:`.int8`):

1. read the FP32 directory (a built directory is refused: quantizing twice
   compounds the error and loses the FP32 reference);
2. read calibration frames and held-out frames (:mod:`.frames`) and run the
   FP32 pipeline on the held-out ones once (:class:`.report.Reference`);
3. convert the encoder (FP16, or INT8 Q/DQ calibrated on the frames); the
   decoder stays FP32 unless ``decoder_fp16`` (it is small, runs once per
   prompt batch, and its mask logits are thresholded at 0, so it is both cheap
   and sensitive); FP16 decoders keep their mask/IoU heads in FP32;
4. measure the build against FP32 and, for ``samedge_tiny`` (procedural
   scenes), its mIoU against ground truth next to FP32's; apply the gate
   (:mod:`.gate`, the report says which and why): by default the ground-truth
   one where there is ground truth, mask IoU vs FP32 elsewhere. An INT8 build
   that misses ranks its layers by sensitivity and keeps the most sensitive
   in float until it passes (:mod:`.sensitivity`);
5. only a passing build is written, atomically: ``encoder.onnx``,
   ``decoder.onnx``, ``samedge.json`` (precision, calibration settings and the
   report under ``details``), ``report.json``; provenance goes into each
   graph's ``metadata_props``. A failing build raises :class:`.gate.GateError`
   and leaves only ``<output>.failed-report.json`` beside the output, a file
   no loader mistakes for a model. An interrupted build removes its hidden
   staging folders as it unwinds; one killed outright leaves them, and the
   next build of the same output sweeps them (:func:`samedge._io.claim_output`).

``precision=AUTO`` builds the candidates the selected backend's device runs
natively (OpenVINO's ``OPTIMIZATION_CAPABILITIES``; INT8 on any CPU through
ONNX Runtime; FP16 and INT8 with CUDA), times each encoder next to FP32 on
that backend, and keeps the fastest that passes; FP32 itself (which OpenVINO
runs in bf16 on CPUs with bf16 units) is the baseline a build must beat.

Example:
    >>> from samedge.calibration import BuildConfig, Precision, build
    >>> config = BuildConfig(precision=Precision.INT8, calibration="synthetic")
    >>> report = build("samedge_tiny", "out/tiny_int8", config)   # doctest: +SKIP
    >>> print(report.summary())                                   # doctest: +SKIP
"""

from __future__ import annotations

import enum
import json
import logging
import os
import statistics
import tempfile
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from samedge import graph_names
from samedge._fidelity import encode
from samedge._frames import check_frame_counts
from samedge._io import (
    atomic_directory,
    atomic_write_text,
    check_output_dir,
    claim_output,
    sha256_file,
)
from samedge._signals import import_module
from samedge._version import __version__
from samedge.calibration._onnx import (
    cpu_session,
    give_back_memory,
    load_model,
    save_model,
    set_metadata,
)
from samedge.calibration.fp16 import Fp16Config, Fp16Result, convert_fp16
from samedge.calibration.frames import (
    SYNTHETIC,
    FrameSet,
    encoder_inputs,
    read_frames,
)
from samedge.calibration.gate import MIN_CLIP_FRAMES, GateConfig, GateError, GateResult, GateVerdict
from samedge.calibration.int8 import Int8Config, Int8Method, quantize_int8
from samedge.calibration.report import (
    BuildReport,
    CalibrationSettings,
    Candidate,
    Fidelity,
    GraphPrecision,
    GroundTruth,
    LayerFallback,
    Reference,
    fixed_prompts,
)
from samedge.calibration.sensitivity import drop_quantization, find_fallback, layer_sensitivity
from samedge.errors import InputError, ModelDirError, SamedgeError
from samedge.memory_model import FAMILY_SAM2
from samedge.model_dir import (
    CARD_NAME,
    DECODER_NAME,
    ENCODER_NAME,
    ModelCard,
    read_model_dir,
    write_model_card,
)
from samedge.predictor import resolve_model
from samedge.preprocess import ResizeLongestSide
from samedge.prompts import batch_prompts
from samedge.stream.sources import is_synthetic

__all__ = ["BuildConfig", "Precision", "build", "failed_report_path", "has_ground_truth"]

log = logging.getLogger(__name__)

REPORT_NAME = "report.json"


class Precision(enum.Enum):
    """What ``samedge build`` makes."""

    FP16 = "fp16"
    INT8 = "int8"
    AUTO = "auto"


@dataclass(frozen=True)
class BuildConfig:
    """Settings of a build; ``None`` means the default.

    Attributes:
        precision: FP16, INT8, or AUTO (fastest candidate that passes).
        calibration: Calibration source (see :func:`~.frames.read_frames`);
            ``None`` means ``"synthetic"``.
        frames: Calibration frames (INT8), or frames measured for FP16 ranges.
        heldout: Held-out frames the report and gate measure on (>= 1).
        seed: Seed of synthetic frames.
        method: INT8 engine; ``None`` means :data:`~.int8.DEFAULT_METHOD`.
        decoder_fp16: Convert the decoder to FP16 too (default: keep it FP32).
        gate: Pass/fail thresholds; the default decides on ground truth for
            a model that has it and on mask IoU vs FP32 otherwise
            (:meth:`~.gate.GateConfig.applies`).
        attention_int8: Quantize the attention MatMuls too (see
            :attr:`~.int8.Int8Config.attention`; a ViT-B build with it fits
            in 12 GB, benchmarks/results/amd-epyc-2c/calibration_memory.md).
        int8_full_range: INT8 weights in all 8 bits, for TensorRT and VNNI/AMX
            CPUs only (:attr:`~.int8.Int8Config.full_range_weights`).
        fallback: Let INT8 keep its most sensitive layers in float to pass the gate.
        max_fallback_layers: Most layers fallback may keep in float.
        sensitivity_frames: Frames the per-layer sensitivity is measured on.
        fp16: What FP16 keeps in FP32.
        eval_scenes: For ``samedge_tiny``: held-out scenes of the ground-truth
            mIoU in the report (0 skips it).
        speed_runs: Timed encoder runs per backend for the report (0 skips timing;
            AUTO needs timing and uses at least 1).
        backend: Backend AUTO picks for (``"auto"`` = what the Predictor would use).
        clip_frames: Memory models: frames of the video gate's clip (default
            and recommended at least :data:`~.gate.MIN_CLIP_FRAMES`; fewer
            is allowed, with a warning, for quick checks).
        clip_objects: Memory models: objects tracked through the clips.
    """

    precision: Precision = Precision.INT8
    calibration: str | int | os.PathLike[str] | None = None
    frames: int = 32
    heldout: int = 8
    seed: int | None = None
    method: Int8Method | None = None
    decoder_fp16: bool = False
    attention_int8: bool = True
    int8_full_range: bool = False
    gate: GateConfig = field(default_factory=GateConfig)
    fallback: bool = True
    max_fallback_layers: int = 32
    sensitivity_frames: int = 4
    fp16: Fp16Config = field(default_factory=Fp16Config)
    eval_scenes: int = 100
    speed_runs: int = 5
    backend: str = "auto"
    clip_frames: int = MIN_CLIP_FRAMES
    clip_objects: int = 3

    def __post_init__(self) -> None:
        if not isinstance(self.precision, Precision):
            raise InputError(
                f"precision: got {self.precision!r}, expected Precision.FP16, INT8 or AUTO"
            )
        for name, low in (
            ("frames", 1),
            ("heldout", 1),
            ("max_fallback_layers", 1),
            ("sensitivity_frames", 1),
            ("eval_scenes", 0),
            ("speed_runs", 0),
            ("clip_frames", 2),
            ("clip_objects", 1),
        ):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise InputError(f"{name}: got {value!r}, expected an int >= {low}")
        # Bounded here too, so `build --frames 100000000` fails before anything loads.
        check_frame_counts(self.frames, self.heldout)
        check_frame_counts(self.frames, self.clip_frames)
        if self.method is not None and not isinstance(self.method, Int8Method):
            raise InputError(
                f"method: got {self.method!r}, expected an Int8Method "
                f"({', '.join(m.value for m in Int8Method)}) or None"
            )
        if not isinstance(self.gate, GateConfig):
            raise InputError(f"gate: got {self.gate!r}, expected a GateConfig")
        if not isinstance(self.fp16, Fp16Config):
            raise InputError(f"fp16: got {self.fp16!r}, expected an Fp16Config")
        for name in ("decoder_fp16", "fallback", "attention_int8", "int8_full_range"):
            if not isinstance(getattr(self, name), bool):
                raise InputError(f"{name}: got {getattr(self, name)!r}, expected True or False")


@dataclass
class _Artifact:
    """One candidate build in the work directory."""

    precision: str
    encoder: Path
    decoder: Path
    fidelity: Fidelity
    method: str | None = None
    fp16_blocked: dict[str, dict[str, int]] = field(default_factory=dict)
    fallback: LayerFallback | None = None
    # The INT8 encoder without fallback, to time against the one with it.
    plain_encoder: Path | None = None
    qdq: dict[str, Any] | None = None
    # The gate's verdict (see _Judge), once judged.
    verdict: GateVerdict | None = None
    ground_truth: GroundTruth | None = None


def failed_report_path(output: str | os.PathLike[str]) -> Path:
    """Where a build that misses its gate leaves its report: ``<output>.failed-report.json``."""
    out = Path(output)
    return out.with_name(out.name + ".failed-report.json")


# ----------------------------------------------------------------------------- timing


def _open(path: Path, backend: str) -> Any:
    from samedge.runtimes import OpenVinoConfig, open_backend

    config = OpenVinoConfig(use_cache=False) if backend == "openvino" else None
    return open_backend(path, backend, config=config)


def _latency_ms(path: Path, backend: str, x: np.ndarray, runs: int) -> tuple[float, str]:
    """Median encoder latency on ``backend`` after one warm-up run, and its compute precision."""
    with _open(path, backend) as engine:
        engine.infer({graph_names.IMAGE: x})
        times = []
        for _ in range(runs):
            t0 = time.perf_counter()
            engine.infer({graph_names.IMAGE: x})
            times.append((time.perf_counter() - t0) * 1000.0)
        return statistics.median(times), engine.precision


def _speed_backends() -> list[str]:
    from samedge.runtimes import available_backends

    usable = {"onnxruntime", "openvino"}
    return [b.name for b in available_backends() if b.installed and b.name in usable]


def _speed_table(
    paths: Mapping[str, Path], x: np.ndarray, runs: int
) -> dict[str, dict[str, float]]:
    table: dict[str, dict[str, float]] = {}
    if runs < 1:
        return table
    for which, path in paths.items():
        for backend in _speed_backends():
            try:
                ms, precision = _latency_ms(path, backend, x, runs)
            except SamedgeError as e:
                log.warning("timing %s on %s failed: %s", which, backend, e)
                continue
            table.setdefault(which, {})[f"{backend}/{precision}"] = round(ms, 2)
    return table


# ----------------------------------------------------------------------------- steps


def _decoder_feeds(
    card: ModelCard, encoder: Path, frames: Sequence[np.ndarray], inputs: Sequence[np.ndarray]
) -> list[dict[str, np.ndarray]]:
    """Decoder inputs on calibration frames: FP32 embeddings + the fixed prompt set."""
    session = cpu_session(encoder)
    transform = ResizeLongestSide(card.image_size)
    feeds = []
    for frame, x in zip(frames, inputs, strict=True):
        original = (int(frame.shape[0]), int(frame.shape[1]))
        prompts = batch_prompts(
            fixed_prompts(original), original, transform, card.low_res_mask_size
        )
        emb, extras = encode(session, x)  # SAM-HQ's hq_features go to the decoder too
        feeds.append({graph_names.IMAGE_EMBEDDINGS: emb, **extras, **prompts.feeds()})
    return feeds


def _make_decoder(
    card: ModelCard,
    src_dir: Path,
    work: Path,
    config: BuildConfig,
    frames: FrameSet,
    inputs: Sequence[np.ndarray],
    blocked: dict[str, dict[str, int]],
) -> Path:
    src = src_dir / card.decoder
    if not config.decoder_fp16:
        return src
    dst = work / "decoder.fp16.onnx"
    if dst.is_file():
        return dst
    feeds = _decoder_feeds(card, src_dir / card.encoder, frames.calibration[:2], inputs[:2])
    result = convert_fp16(src, dst, feeds, config.fp16)
    blocked["decoder"] = result.summary()
    return dst


def _fp16_candidate(
    card: ModelCard,
    src_dir: Path,
    work: Path,
    config: BuildConfig,
    frames: FrameSet,
    inputs: Sequence[np.ndarray],
    ref: Reference,
    judge: _Judge,
) -> _Artifact:
    blocked: dict[str, dict[str, int]] = {}
    enc: Fp16Result = convert_fp16(
        src_dir / card.encoder,
        work / "encoder.fp16.onnx",
        [{graph_names.IMAGE: x} for x in inputs[:2]],
        config.fp16,
    )
    blocked["encoder"] = enc.summary()
    decoder = _make_decoder(card, src_dir, work, config, frames, inputs, blocked)
    fid = ref.compare(enc.output, decoder)
    log.info("fp16: %s", fid.line())
    art = _Artifact("fp16", enc.output, decoder, fid, fp16_blocked=blocked)
    judge(art)
    return art


def _int8_candidate(
    card: ModelCard,
    src_dir: Path,
    work: Path,
    config: BuildConfig,
    frames: FrameSet,
    inputs: Sequence[np.ndarray],
    ref: Reference,
    judge: _Judge,
) -> _Artifact:
    blocked: dict[str, dict[str, int]] = {}
    int8_config = Int8Config(
        method=config.method,
        attention=config.attention_int8,
        full_range_weights=config.int8_full_range,
    )
    result = quantize_int8(src_dir / card.encoder, work / "encoder.int8.onnx", inputs, int8_config)
    decoder = _make_decoder(card, src_dir, work, config, frames, inputs, blocked)
    fid = ref.compare(result.output, decoder)
    log.info("int8 (%s): %s", result.method.value, fid.line())
    art = _Artifact(
        "int8",
        result.output,
        decoder,
        fid,
        method=result.method.value,
        fp16_blocked=blocked,
        qdq=result.qdq.to_dict(),
    )
    if judge(art).passed or not config.fallback:
        return art
    rescued = _fallback(card, src_dir, work, config, inputs, ref, art, int8_config)
    if rescued is not art:
        judge(rescued)
    return rescued


def _fallback(
    card: ModelCard,
    src_dir: Path,
    work: Path,
    config: BuildConfig,
    inputs: Sequence[np.ndarray],
    ref: Reference,
    art: _Artifact,
    int8_config: Int8Config,
) -> _Artifact:
    """Keep the most sensitive layers in float until the FP32 gate passes.

    The search aims at the FP32 thresholds even where the ground-truth gate
    decides: they are cheap to measure for every trial, and every layer kept
    in float brings the build closer to FP32 and so to FP32's ground-truth
    mIoU; the deciding gate then judges the result (``_int8_candidate``).
    """
    log.info("int8 missed the gate (%s); measuring per-layer sensitivity", art.verdict)
    model = load_model(art.encoder)
    ranked = layer_sensitivity(
        src_dir / card.encoder, model, list(inputs[: config.sensitivity_frames])
    )
    order = [s.node for s in ranked]
    limit = min(config.max_fallback_layers, len(order))
    decoder_session = cpu_session(art.decoder)
    verdicts: dict[int, tuple[Fidelity, GateResult]] = {}

    def passes(k: int) -> bool:
        session = cpu_session(drop_quantization(model, order[:k]))
        fid = ref.compare(session, decoder_session)
        verdicts[k] = (fid, config.gate.check_fidelity(fid))
        log.info("fallback k=%d: %s; gate %s", k, fid.line(), verdicts[k][1])
        return verdicts[k][1].passed

    k = find_fallback(passes, limit)
    info = LayerFallback(
        sensitivity=tuple(ranked[:20]),
        tried=tuple(sorted(verdicts)),
        limit=limit,
        without_fallback=art.fidelity,
    )
    # Re-quantize with the chosen layers excluded (their FP32 weights, no Q/DQ),
    # and check the real file: the surgery above only estimates it. If the
    # re-quantized file still misses, widen the exclusion within the limit.
    while k is not None:
        kept = tuple(order[:k])
        result = quantize_int8(
            src_dir / card.encoder,
            work / f"encoder.int8.keep{k}.onnx",
            inputs,
            replace(int8_config, exclude=kept),
        )
        fid = ref.compare(result.output, art.decoder)
        gate = config.gate.check_fidelity(fid)
        log.info("int8 with %d layer(s) in float: %s; gate %s", k, fid.line(), gate)
        if gate.passed or k >= limit:
            return _Artifact(
                "int8",
                result.output,
                art.decoder,
                fid,
                method=result.method.value,
                fp16_blocked=art.fp16_blocked,
                fallback=replace(info, kept=kept, kept_sensitivity=tuple(ranked[:k])),
                plain_encoder=art.encoder,
                qdq=result.qdq.to_dict(),
            )
        k = min(2 * k, limit)
    art.fallback = replace(info, result=f"no k <= {limit} passes the fp32 gate")
    return art


# ----------------------------------------------------------------------------- auto


def _auto_candidates(backend: str) -> tuple[str, list[str], str]:
    """(backend, candidate precisions, why) for the device the backend would use."""
    from samedge.runtimes import native_precisions, select_backend

    choice = select_backend(backend)
    precisions, why = native_precisions(choice)
    return choice.name, list(precisions), why


# ----------------------------------------------------------------------------- write


def _card_for(card: ModelCard, precision: str, details: Mapping[str, Any]) -> ModelCard:
    return replace(card, precision=precision, samedge_version=__version__, details=dict(details))


def _write_graph(
    src: Path,
    dst: Path,
    card: ModelCard,
    calibration: Mapping[str, Any],
    precision: str | None = None,
) -> None:
    # `precision`: the graph's own, where it differs from the card's (runtimes read the tag).
    model = load_model(src)
    props = card.to_metadata()
    if precision is not None:
        props["samedge.precision"] = json.dumps(precision)
    props["samedge.calibration"] = json.dumps(calibration, sort_keys=True, default=str)
    set_metadata(model, props)
    save_model(model, dst)


def _miou(directory: Path, scenes: int) -> tuple[dict[str, float], int]:
    """mIoU against ground truth per prompt type on held-out procedural scenes, and objects."""
    from samedge.evaluate import EvalConfig, evaluate

    report = evaluate(directory, backend="onnxruntime", config=EvalConfig(scenes=scenes))
    return {k: round(v, 4) for k, v in report.miou.items()}, report.objects


def has_ground_truth(model: str) -> bool:
    """Whether a build of ``model`` can be measured against ground truth.

    Only samedge_tiny's procedural scenes come with ground truth here; other
    models are judged against their FP32 pipeline.
    """
    return model == "samedge_tiny"


class _Judge:
    """Gives a candidate its verdict (:meth:`GateConfig.judge`), measuring ground truth lazily.

    FP32 ground-truth mIoU is measured once and shared by every candidate.
    """

    def __init__(self, card: ModelCard, src_dir: Path, work: Path, config: BuildConfig) -> None:
        self.card, self.src_dir, self.work, self.gate = card, src_dir, work, config.gate
        self.scenes = config.eval_scenes if has_ground_truth(card.model) else 0
        self._fp32: tuple[dict[str, float], int] | None = None
        self._measured = 0

    def ground_truth(self, art: _Artifact) -> GroundTruth:
        """Ground-truth mIoU of FP32 and of the candidate (measured once per candidate)."""
        if art.ground_truth is None:
            if self._fp32 is None:
                self._fp32 = _miou(self.src_dir, self.scenes)
            self._measured += 1
            directory = self.work / f"candidate{self._measured}"
            directory.mkdir()
            card = replace(
                _card_for(self.card, art.precision, {}), encoder=ENCODER_NAME, decoder=DECODER_NAME
            )
            _write_graph(art.encoder, directory / ENCODER_NAME, card, {})
            _write_graph(art.decoder, directory / DECODER_NAME, card, {})
            write_model_card(directory, card)
            miou, objects = _miou(directory, self.scenes)
            art.ground_truth = GroundTruth(
                scenes=self.scenes, objects=objects, fp32=self._fp32[0], build=miou
            )
        return art.ground_truth

    def __call__(self, art: _Artifact) -> GateVerdict:
        measure = (lambda: self.ground_truth(art)) if self.scenes else None
        verdict = self.gate.judge(art.fidelity, measure)
        log.info("%s %s: %s gate %s", self.card.model, art.precision, verdict.kind.value, verdict)
        art.verdict = verdict
        return verdict


def build(
    model: str | os.PathLike[str],
    output: str | os.PathLike[str],
    config: BuildConfig | None = None,
    *,
    frames: Iterable[np.ndarray] | None = None,
    force: bool = False,
) -> BuildReport:
    """Build an FP16 or INT8 model directory from an FP32 one, gated on accuracy.

    Args:
        model: FP32 model directory or built-in name (``"samedge_tiny"``).
        output: Directory to write; loads with ``samedge.Predictor(output)``.
        config: Precision, calibration, gate; ``None`` for the defaults (INT8
            calibrated on synthetic scenes).
        frames: Calibration frames as ``H×W×3`` uint8 RGB arrays, instead of
            ``config.calibration``.
        force: Replace an existing, non-empty ``output``.

    Returns:
        The report (also in ``output/report.json``).

    Raises:
        ModelDirError: ``model`` is missing, or is already FP16/INT8.
        OutputExistsError: ``output`` exists and ``force`` is false, or another
            live build is writing it.
        CalibrationDataError: the source gave no, too few, or unusable frames.
        GateError: the build missed its gate (even with layer fallback);
            nothing was written but ``<output>.failed-report.json``.

    Example:
        >>> report = build("out/mobile_sam", "out/mobile_sam_int8",
        ...                BuildConfig(calibration="frames/"))        # doctest: +SKIP
        >>> Predictor("out/mobile_sam_int8").card.precision           # doctest: +SKIP
        'int8'
    """
    config = config or BuildConfig()
    t0 = time.perf_counter()
    src_dir = resolve_model(model)
    card = read_model_dir(src_dir)
    if card.precision != "fp32":
        raise ModelDirError(
            f"model {src_dir}: is already {card.precision} (built by samedge build); build "
            "from the fp32 directory written by `samedge export` instead"
        )
    out = Path(output)
    if out.exists() and out.resolve() == src_dir.resolve():
        raise InputError(f"output {out}: is the source model directory; choose another path")
    # Before the work: a file at ``out``, a directory samedge did not write
    # (--force replaces only a model directory), a read-only place.
    check_output_dir(out, force=force, marker=CARD_NAME)
    if card.family == FAMILY_SAM2:
        from samedge.calibration.memory_build import build_memory

        return build_memory(
            card, src_dir, out, config, frames=frames, force=force, t0=t0, versions=_versions()
        )
    source = frames if frames is not None else (config.calibration or SYNTHETIC)
    if (
        config.precision is not Precision.FP16
        and card.model != "samedge_tiny"
        and is_synthetic(source)
    ):
        log.warning(
            "calibrating %s on synthetic scenes; pass --calibration with frames from your "
            "camera for the best INT8 accuracy",
            card.model,
        )
    frame_set = read_frames(source, config.frames, heldout=config.heldout, seed=config.seed)
    inputs = encoder_inputs(frame_set.calibration, card)
    # claim_output sweeps what a killed build of `out` left, and keeps a
    # concurrent build of `out` from sweeping ours.
    with (
        claim_output(out),
        tempfile.TemporaryDirectory(prefix=f".{out.name}.", suffix=".work", dir=out.parent) as tmp,
    ):
        work = Path(tmp)
        ref = Reference.compute(
            card, src_dir / card.encoder, src_dir / card.decoder, frame_set.heldout
        )
        give_back_memory()
        judge = _Judge(card, src_dir, work, config)
        candidates: list[Candidate] = []
        decision = ""
        args = (card, src_dir, work, config, frame_set, inputs, ref, judge)
        if config.precision is Precision.AUTO:
            art, candidates, decision = _auto(*args)
        elif config.precision is Precision.FP16:
            art = _fp16_candidate(*args)
        else:
            art = _int8_candidate(*args)
        verdict = art.verdict if art.verdict is not None else judge(art)
        calibration = CalibrationSettings(
            source=frame_set.description,
            frames=len(frame_set.calibration),
            heldout=len(frame_set.heldout),
            skipped=frame_set.skipped,
            method=art.method,
            precision=art.precision,
            decoder_fp16=config.decoder_fp16,
            attention_int8=config.attention_int8,
            int8_full_range=config.int8_full_range,
            fallback=config.fallback,
            fp16_range_fraction=config.fp16.range_fraction,
            source_encoder_sha256=sha256_file(src_dir / card.encoder),
            versions=_versions(),
            qdq=art.qdq or None,
        )
        fallback = art.fallback
        if (
            fallback is not None
            and fallback.kept
            and art.plain_encoder is not None
            and verdict.passed
            and config.speed_runs
        ):
            cost = _speed_table({"int8": art.plain_encoder, "int8+fallback": art.encoder},
                                inputs[0], config.speed_runs)  # fmt: skip
            fallback = replace(
                fallback,
                speed_ms=cost,
                speed_cost=", ".join(
                    f"{b}: {cost['int8'][b]:.1f} -> {cost['int8+fallback'][b]:.1f} ms"
                    for b in cost.get("int8", {})
                    if b in cost.get("int8+fallback", {})
                ),
            )
        # Where the build came from is the card's provenance (samedge._fidelity.BuildSource),
        # never the report's.
        details = {
            "source": {"model_dir": str(src_dir), "export": dict(card.details)},
            "calibration": calibration.to_dict(),
        }
        new_card = replace(
            _card_for(card, art.precision, details), encoder=ENCODER_NAME, decoder=DECODER_NAME
        )
        # Measured whichever gate decided, so every samedge_tiny report (a
        # failing one too) carries it.
        ground_truth = judge.ground_truth(art) if judge.scenes else None
        decoder_precision = "fp16" if config.decoder_fp16 and art.precision != "fp32" else "fp32"
        report = BuildReport(
            model=card.model,
            precision=art.precision,
            decoder_precision=decoder_precision,
            graphs=(
                GraphPrecision("encoder", art.precision, decision or f"{art.precision} as asked"),
                GraphPrecision(
                    "decoder",
                    decoder_precision,
                    "fp16 as asked (decoder_fp16); mask and IoU heads kept fp32"
                    if decoder_precision == "fp16"
                    else "kept fp32: small, run once per prompt batch; its mask logits are "
                    "thresholded at 0",
                ),
            ),
            gate=verdict,
            fidelity=art.fidelity,
            calibration=calibration,
            fp16_blocked=art.fp16_blocked,
            fallback=fallback,
            candidates=tuple(candidates),
            decision=decision,
            ground_truth=ground_truth,
        )
        if not verdict.passed:
            report = replace(report, seconds=time.perf_counter() - t0)
            failed = failed_report_path(out)
            atomic_write_text(failed, json.dumps(report.to_dict(), indent=2) + "\n")
            raise GateError(
                f"{report.failure()}. Report: {failed}",
                report.to_dict(),
                str(failed),
            )
        give_back_memory()
        speed = _speed_table(
            {"fp32": src_dir / card.encoder, "build": art.encoder}, inputs[0], config.speed_runs
        )
        with atomic_directory(out, force=force, marker=CARD_NAME) as stage:
            _write_graph(art.encoder, stage / ENCODER_NAME, new_card, calibration.to_dict())
            _write_graph(art.decoder, stage / DECODER_NAME, new_card, calibration.to_dict(),
                         decoder_precision)  # fmt: skip
            report = replace(report, speed_ms=speed, seconds=time.perf_counter() - t0)
            final = replace(new_card, details={**details, "report": report.to_dict()})
            (stage / "samedge.json").write_text(final.to_json(), encoding="utf-8")
            (stage / REPORT_NAME).write_text(
                json.dumps(report.to_dict(), indent=2) + "\n", encoding="utf-8"
            )
        failed_report_path(out).unlink(missing_ok=True)
    log.info("built %s", out)
    return report


def _auto(
    card: ModelCard,
    src_dir: Path,
    work: Path,
    config: BuildConfig,
    frames: FrameSet,
    inputs: Sequence[np.ndarray],
    ref: Reference,
    judge: _Judge,
) -> tuple[_Artifact, list[Candidate], str]:
    backend, names, why = _auto_candidates(config.backend)
    runs = max(config.speed_runs, 1)
    x = inputs[0]
    base_ms, base_precision = _latency_ms(src_dir / card.encoder, backend, x, runs)
    one = Fidelity.identical(len(ref.inputs))
    fp32 = _Artifact("fp32", src_dir / card.encoder, src_dir / card.decoder, one)
    fp32.verdict = config.gate.baseline(has_ground_truth=judge.scenes > 0)
    rows = [Candidate("fp32", f"{backend}/{base_precision}", base_ms, passed=True)]
    best, best_ms = fp32, base_ms
    for name in names:
        make = _fp16_candidate if name == "fp16" else _int8_candidate
        art = make(card, src_dir, work, config, frames, inputs, ref, judge)
        passed = art.verdict is not None and art.verdict.passed
        ms, precision = _latency_ms(art.encoder, backend, x, runs)
        rows.append(
            Candidate(
                name,
                f"{backend}/{precision}",
                ms,
                passed,
                mean_iou=art.fidelity.mean_iou,
                p5_iou=art.fidelity.p5_iou,
            )
        )
        if passed and ms < best_ms:
            best, best_ms = art, ms
    if best is fp32:
        decision = (
            f"fp32 kept: no candidate ({', '.join(names) or 'none'}; {why}) passed the gate "
            f"and ran faster than fp32 ({base_precision}, {base_ms:.1f} ms) on {backend}"
        )
    else:
        decision = (
            f"{best.precision}: fastest candidate that passed the gate on {backend} "
            f"({best_ms:.1f} ms vs fp32/{base_precision} {base_ms:.1f} ms; candidates from {why})"
        )
    log.info("auto: %s", decision)
    return best, rows, decision


def _versions() -> dict[str, str]:
    import onnx
    import onnxruntime

    versions = {
        "samedge": __version__,
        "onnx": onnx.__version__,
        "onnxruntime": onnxruntime.__version__,
    }
    for name in ("nncf", "onnxconverter_common", "openvino"):
        try:
            # A Ctrl-C inside these (OpenVINO's takes ~0.3 s) must stop the build,
            # not read as "not installed".
            module = import_module(name)
            versions[name] = str(getattr(module, "__version__", "?"))
        except ImportError:
            continue
    return versions
