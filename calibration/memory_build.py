"""``samedge build`` for a memory model (SAM 2.1, EdgeTAM): four graphs, gated over a clip.

:func:`samedge.calibration.build` hands a SAM 2-family directory here. The
steps:

1. **Clips.** Calibration clips and the gate's clip (:mod:`.video_gate`).
   From ``"synthetic"``: ``frames`` frames of procedural moving scenes, cut
   into clips of at most 16 frames (one scene seed each), for memory
   attention; the image encoder calibrates on frame 0 of ``frames`` scenes
   instead (one clip's frames are near copies of each other, and an encoder
   calibrated on them clips another scene's activations, see
   :func:`~.video_gate.scene_frames`). The gate's clip is a moving scene of its
   own seed (:data:`~.video_gate.GATE_SEED`). From a video, folder or camera:
   the first ``frames`` frames read calibrate both (cut into clips the same
   way), the last ``clip_frames`` are the gate's clip, never calibrated on;
   objects are prompted at fixed places there.
2. **FP32 reference.** The FP32 tracker runs over every clip. On the
   calibration clips it records memory attention's inputs (the frame's
   features and each object's memory bank, as tracking produces them): that
   is memory attention's calibration data. On the gate's clip it keeps the
   masks, logits, object scores and features the builds are compared with.
3. **Graphs.** The image encoder calibrates on the calibration clips' frames
   (as the SAM 1 builder does, with the SAM 2 preprocessing), memory attention
   on the recorded inputs; FP16 with :func:`.fp16.convert_fp16`, INT8 with
   :func:`.int8.quantize_int8`.
4. **Trials, graph by graph.** First the encoder and memory attention both in
   the requested precision; if the video gate (:meth:`.gate.GateConfig.judge_video`)
   fails, memory attention goes back to FP32; if that fails too, an INT8
   encoder keeps its most sensitive layers in float (ranked by the SQNR of
   ``vision_features``, as :mod:`.sensitivity` does for SAM 1), doubling
   the count until the gate passes or ``max_fallback_layers`` is reached; the
   chosen count is then re-quantized with those layers excluded and judged
   again. Every trial is recorded in the report.
5. **Decoder and memory encoder stay FP32** (the decoder FP16 only with
   ``decoder_fp16``, then judged with the rest): both run once per object per
   frame and are small next to the encoder and memory attention, so a lower
   precision buys little; the decoder's mask logits are thresholded at 0 and
   its object score decides occlusion, and the memory encoder's output is
   every later frame's memory, so its error is the one that compounds along
   the clip.
6. **Write** only a passing build, atomically, as the SAM 1 builder does;
   each graph's ``samedge.precision`` metadata says its own precision, the
   card's ``precision`` is the encoder's, and the report lists all four.

Example:
    >>> from samedge.calibration import BuildConfig, Precision, build
    >>> report = build("out/sam2.1_hiera_tiny", "out/tiny_fp16",
    ...                BuildConfig(precision=Precision.FP16))           # doctest: +SKIP
    >>> [(g.graph, g.precision) for g in report.graphs]                 # doctest: +SKIP
    [('encoder', 'fp16'), ('memory_attention', 'fp16'), ('decoder', 'fp32'), ...]
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import statistics
import tempfile
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from samedge import graph_names
from samedge import memory_model as mm
from samedge._io import atomic_directory, atomic_write_text, claim_output, sha256_file
from samedge.calibration._onnx import give_back_memory, load_model, save_model
from samedge.calibration.build import (
    BuildConfig,
    Precision,
    _open,
    _speed_backends,
    _write_graph,
    failed_report_path,
)
from samedge.calibration.fp16 import convert_fp16
from samedge.calibration.frames import (
    CALIBRATION_SEED,
    SYNTHETIC,
    memory_encoder_inputs,
    read_frames,
)
from samedge.calibration.gate import MIN_CLIP_FRAMES, GateError, GateVerdict
from samedge.calibration.int8 import Int8Config, quantize_int8
from samedge.calibration.report import (
    BuildReport,
    CalibrationSettings,
    GraphPrecision,
    MemoryTrial,
    VideoFidelity,
)
from samedge.calibration.sensitivity import drop_quantization, layer_sensitivity
from samedge.calibration.video_gate import (
    GATE_SEED,
    Clip,
    ClipTrack,
    attention_summary,
    calibration_seeds,
    compare_tracks,
    fixed_clip,
    scene_clip,
    scene_frames,
    split_clips,
    track_clip,
)
from samedge.errors import InputError
from samedge.model_dir import CARD_NAME, DECODER_NAME, ENCODER_NAME, ModelCard
from samedge.stream.sources import is_synthetic

__all__ = ["GRAPHS", "build_memory"]

log = logging.getLogger(__name__)

#: A memory model's graphs, in the order the report lists them.
GRAPHS = ("encoder", "memory_attention", "decoder", "memory_encoder")
_FILES = {
    "encoder": ENCODER_NAME,
    "memory_attention": mm.MEMORY_ATTENTION_NAME,
    "decoder": DECODER_NAME,
    "memory_encoder": mm.MEMORY_ENCODER_NAME,
}
_KEPT_FP32 = {
    "decoder": "kept fp32: small and run once per object per frame; its mask logits are "
    "thresholded at 0 and its object score decides occlusion",
    "memory_encoder": "kept fp32: small and run once per object per frame; its output is "
    "every later frame's memory, so its error is the one that compounds along a clip",
}


@dataclass
class _Graph:
    """One graph of a trial: its file and precision label."""

    path: Path
    precision: str  # "fp32", "fp16", "int8"
    label: str = ""  # "int8+4": with 4 layers in float

    def __post_init__(self) -> None:
        self.label = self.label or self.precision


@dataclass
class _Trial:
    graphs: dict[str, _Graph]
    video: VideoFidelity
    verdict: GateVerdict

    def record(self) -> MemoryTrial:
        return MemoryTrial(
            graphs={g: self.graphs[g].label for g in GRAPHS},
            passed=self.verdict.passed,
            reasons=tuple(self.verdict.reasons),
            video=self.video,
        )


@dataclass
class _Data:
    """The clips and what the FP32 tracker did on them."""

    calibration: list[Clip]
    gate: Clip
    description: str
    skipped: int
    encoder_frames: list[np.ndarray]
    reference: ClipTrack | None = None
    encoder_feeds: list[dict[str, np.ndarray]] = field(default_factory=list)
    attention_feeds: list[dict[str, np.ndarray]] = field(default_factory=list)
    decoder_feeds: list[dict[str, np.ndarray]] = field(default_factory=list)


def _clips(config: BuildConfig, frames: Iterable[np.ndarray] | None) -> _Data:
    source: Any = frames if frames is not None else (config.calibration or SYNTHETIC)
    if frames is None and is_synthetic(source):
        base = config.seed if config.seed is not None else CALIBRATION_SEED
        cuts = split_clips(list(range(config.frames)))
        seeds = calibration_seeds(base, len(cuts))
        calibration = [
            scene_clip(s, len(c), config.clip_objects) for s, c in zip(seeds, cuts, strict=True)
        ]
        # The encoder calibrates on one frame of each of `frames` scenes: variety.
        encoder_seeds = calibration_seeds(base, config.frames)
        encoder_frames = scene_frames(encoder_seeds, config.clip_objects)
        gate = scene_clip(GATE_SEED, config.clip_frames, config.clip_objects)
        what = (
            f"synthetic moving scenes: encoder on frame 0 of seeds {encoder_seeds[0]}.."
            f"{encoder_seeds[-1]}, memory attention on clips of seeds {seeds[0]}..{seeds[-1]}; "
            f"gate clip seed {GATE_SEED}"
        )
        return _Data(calibration, gate, what, 0, encoder_frames)
    frame_set = read_frames(source, config.frames, heldout=config.clip_frames, seed=config.seed)
    calibration = [
        fixed_clip(list(part), config.clip_objects, f"{frame_set.description} frames")
        for part in split_clips(list(frame_set.calibration))
    ]
    gate = fixed_clip(
        list(frame_set.heldout),
        config.clip_objects,
        f"last {len(frame_set.heldout)} frames of {frame_set.description}",
    )
    return _Data(
        calibration, gate, frame_set.description, frame_set.skipped, list(frame_set.calibration)
    )


def _reference(src_dir: Path, card: ModelCard, data: _Data) -> None:
    """Run the FP32 tracker: record memory attention's inputs, keep the gate clip's track."""
    for i, clip in enumerate(data.calibration):
        track = track_clip(src_dir, clip, record_attention=True)
        data.attention_feeds += track.attention_feeds
        data.decoder_feeds += track.decoder_feeds[: 2 - len(data.decoder_feeds)]
        log.info(
            "calibration clip %d/%d tracked (%.1f s)", i + 1, len(data.calibration), track.seconds
        )
    data.encoder_feeds = [
        {graph_names.IMAGE: x} for x in memory_encoder_inputs(data.encoder_frames, card)
    ]
    if not data.attention_feeds:
        raise InputError(
            "calibration clips: too short to run memory attention (it runs from each clip's "
            "second frame on); pass --frames 2 or more"
        )
    log.info("memory attention calibration data: %s", attention_summary(data.attention_feeds))
    data.reference = track_clip(src_dir, data.gate)
    log.info("fp32 tracker over the gate clip: %.1f s", data.reference.seconds)


# ----------------------------------------------------------------------------- graphs


def _fp16(src: Path, dst: Path, feeds: Sequence[Mapping[str, np.ndarray]], config: BuildConfig,
          blocked: dict[str, dict[str, int]], graph: str) -> _Graph:  # fmt: skip
    if not dst.is_file():
        result = convert_fp16(src, dst, list(feeds[:2]), config.fp16)
        blocked[graph] = result.summary()
    return _Graph(dst, "fp16")


def _int8_config(config: BuildConfig, exclude: tuple[str, ...] = ()) -> Int8Config:
    return Int8Config(
        method=config.method,
        attention=config.attention_int8,
        exclude=exclude,
        full_range_weights=config.int8_full_range,
    )


@dataclass
class _Builder:
    """The graphs of one build, made lazily and cached in the work directory."""

    card: ModelCard
    src_dir: Path
    work: Path
    config: BuildConfig
    data: _Data
    precision: str
    blocked: dict[str, dict[str, int]] = field(default_factory=dict)
    qdq: dict[str, Any] = field(default_factory=dict)
    method: str | None = None
    trials: list[_Trial] = field(default_factory=list)
    _made: dict[str, _Graph] = field(default_factory=dict)

    def fp32(self, graph: str) -> _Graph:
        return _Graph(self.src_dir / str(_file_of(self.card, graph)), "fp32")

    def lowered(self, graph: str) -> _Graph:
        """``graph`` in the requested precision."""
        if graph in self._made:
            return self._made[graph]
        src = self.fp32(graph).path
        feeds = self.data.encoder_feeds if graph == "encoder" else self.data.attention_feeds
        dst = self.work / f"{graph}.{self.precision}.onnx"
        if self.precision == "fp16":
            made = _fp16(src, dst, feeds, self.config, self.blocked, graph)
        else:
            result = quantize_int8(src, dst, feeds, _int8_config(self.config))
            self.method = result.method.value
            self.qdq[graph] = result.qdq.to_dict()
            made = _Graph(result.output, "int8")
        give_back_memory()
        self._made[graph] = made
        return made

    def decoder(self) -> _Graph:
        if not self.config.decoder_fp16:
            return self.fp32("decoder")
        feeds = self.data.decoder_feeds
        return _fp16(self.fp32("decoder").path, self.work / "decoder.fp16.onnx", feeds,
                     self.config, self.blocked, "decoder")  # fmt: skip

    def judge(self, graphs: dict[str, _Graph]) -> _Trial:
        directory = self.work / f"trial{len(self.trials) + 1}"
        directory.mkdir()
        for graph, g in graphs.items():
            _link(g.path, directory / _FILES[graph])
        card = _card_for(self.card, graphs, {})
        (directory / CARD_NAME).write_text(card.to_json(), encoding="utf-8")
        if self.data.reference is None:
            raise RuntimeError("the fp32 reference track is missing: _reference runs first")
        track = track_clip(directory, self.data.gate)
        video = compare_tracks(self.data.reference, track, self.data.gate.source)
        trial = _Trial(graphs, video, self.config.gate.judge_video(video))
        log.info(
            "trial %s: %s; gate %s (%.1f s)",
            ", ".join(f"{k} {v.label}" for k, v in graphs.items()),
            trial.video.line(),
            trial.verdict,
            track.seconds,
        )
        self.trials.append(trial)
        shutil.rmtree(directory, ignore_errors=True)
        return trial


def _file_of(card: ModelCard, graph: str) -> str:
    return str(
        {
            "encoder": card.encoder,
            "memory_attention": card.memory_attention,
            "decoder": card.decoder,
            "memory_encoder": card.memory_encoder,
        }[graph]
    )


def _link(src: Path, dst: Path) -> None:
    """``dst`` names ``src``'s bytes: a hard link where the filesystem allows, else a copy."""
    try:
        os.link(src, dst)
    except OSError:
        shutil.copyfile(src, dst)


# ----------------------------------------------------------------------------- trials


def _trials(b: _Builder) -> _Trial:
    """Try graph precisions in order until the video gate passes; the last trial otherwise."""
    decoder = b.decoder()
    base = {"decoder": decoder, "memory_encoder": b.fp32("memory_encoder")}
    both = {"encoder": b.lowered("encoder"), "memory_attention": b.lowered("memory_attention")}
    trial = b.judge({**both, **base})
    if trial.verdict.passed:
        return trial
    trial = b.judge({"encoder": both["encoder"], "memory_attention": b.fp32("memory_attention"),
                     **base})  # fmt: skip
    if (trial.verdict.passed) or b.precision != "int8" or not b.config.fallback:
        return trial
    return _encoder_fallback(b, base)


def _encoder_fallback(b: _Builder, base: dict[str, _Graph]) -> _Trial:
    """Keep the INT8 encoder's most sensitive layers in float until the clip passes."""
    encoder = b.lowered("encoder")
    model = load_model(encoder.path)
    inputs = [f[graph_names.IMAGE] for f in b.data.encoder_feeds[: b.config.sensitivity_frames]]
    ranked = layer_sensitivity(b.fp32("encoder").path, model, inputs, output=mm.VISION_FEATURES)
    order = [s.node for s in ranked]
    limit = min(b.config.max_fallback_layers, len(order))
    ma = b.fp32("memory_attention")
    if limit < 1:
        return b.trials[-1]
    k = 1
    while True:
        # The quick estimate: the Q/DQ pairs of the top-k layers removed from the
        # calibrated graph (no re-calibration), judged over the clip. Doubling
        # only, no bisection: each step costs a whole clip.
        path = b.work / f"encoder.int8.drop{k}.onnx"
        save_model(drop_quantization(model, order[:k]), path)
        trial = b.judge({"encoder": _Graph(path, "int8", f"int8+{k}"), "memory_attention": ma,
                         **base})  # fmt: skip
        if trial.verdict.passed:
            break
        if k >= limit:
            return trial
        k = min(2 * k, limit)
    result = quantize_int8(
        b.fp32("encoder").path,
        b.work / f"encoder.int8.keep{k}.onnx",
        b.data.encoder_feeds,
        _int8_config(b.config, tuple(order[:k])),
    )
    b.qdq["encoder"] = result.qdq.to_dict()
    return b.judge({"encoder": _Graph(result.output, "int8", f"int8+{k}"), "memory_attention": ma,
                    **base})  # fmt: skip


# ----------------------------------------------------------------------------- report + write


def _graph_reasons(b: _Builder, chosen: _Trial) -> tuple[GraphPrecision, ...]:
    asked = b.precision
    first = b.trials[0]
    out = []
    for graph in GRAPHS:
        g = chosen.graphs[graph]
        if graph == "encoder":
            why = f"{asked} as asked"
            if g.label != g.precision:
                kept = g.label.split("+")[1]
                why = f"int8 with {kept} layer(s) kept in float: the clip gate failed without"
        elif graph == "memory_attention":
            if g.precision == asked:
                why = f"{asked}: passed the video gate with the encoder"
            else:
                missed = "; ".join(first.verdict.reasons)
                why = f"kept fp32: with it in {asked} the video gate failed ({missed})"
        elif graph == "decoder" and g.precision == "fp16":
            why = "fp16 as asked (decoder_fp16); mask and IoU heads kept fp32"
        else:
            why = _KEPT_FP32[graph]
        out.append(GraphPrecision(graph, g.precision, why))
    return tuple(out)


def _card_for(
    card: ModelCard, graphs: Mapping[str, _Graph], details: Mapping[str, Any]
) -> ModelCard:
    from samedge._version import __version__

    return replace(
        card,
        precision=graphs["encoder"].precision,
        samedge_version=__version__,
        details=dict(details),
        encoder=ENCODER_NAME,
        decoder=DECODER_NAME,
        memory_attention=mm.MEMORY_ATTENTION_NAME,
        memory_encoder=mm.MEMORY_ENCODER_NAME,
    )


def _latency(
    path: Path, backend: str, feeds: Mapping[str, np.ndarray], runs: int
) -> tuple[float, str]:
    with _open(path, backend) as engine:
        engine.infer(dict(feeds))
        times = []
        for _ in range(runs):
            t0 = time.perf_counter()
            engine.infer(dict(feeds))
            times.append((time.perf_counter() - t0) * 1000.0)
        return statistics.median(times), str(engine.precision)


def _speed(b: _Builder, chosen: _Trial) -> dict[str, dict[str, float]]:
    """Latency of the encoder and memory attention, fp32 and built, per backend."""
    table: dict[str, dict[str, float]] = {}
    runs = b.config.speed_runs
    if runs < 1:
        return table
    feeds = {"encoder": b.data.encoder_feeds[0], "memory_attention": b.data.attention_feeds[-1]}
    for graph, feed in feeds.items():
        for which, g in (("fp32", b.fp32(graph)), ("build", chosen.graphs[graph])):
            for backend in _speed_backends():
                try:
                    ms, precision = _latency(g.path, backend, feed, runs)
                except Exception as e:  # timing is a report extra, never fatal
                    log.warning("timing %s %s on %s failed: %s", graph, which, backend, e)
                    continue
                table.setdefault(f"{graph} {which}", {})[f"{backend}/{precision}"] = round(ms, 2)
    return table


def build_memory(
    card: ModelCard,
    src_dir: Path,
    out: Path,
    config: BuildConfig,
    *,
    frames: Iterable[np.ndarray] | None,
    force: bool,
    t0: float,
    versions: Mapping[str, str],
) -> BuildReport:
    """Build a SAM 2-family directory (see the module docstring); called by :func:`.build.build`.

    Raises:
        InputError: ``precision=AUTO`` (not offered for memory models).
        CalibrationDataError: the source gave too few or unusable frames.
        GateError: no trial passed the video gate; only
            ``<output>.failed-report.json`` is written.
    """
    if config.precision is Precision.AUTO:
        raise InputError(
            f"precision: got auto for {card.model}, a memory model; auto is offered for SAM "
            "1-family models only: pass --precision fp16 or --precision int8"
        )
    if config.clip_frames < MIN_CLIP_FRAMES:
        log.warning(
            "video gate clip of %d frames, fewer than the %d that let drift through the "
            "memory show; the report records it",
            config.clip_frames,
            MIN_CLIP_FRAMES,
        )
    precision = config.precision.value
    if config.precision is Precision.INT8 and frames is None and is_synthetic(config.calibration):
        log.warning(
            "calibrating %s on synthetic scenes; pass --calibration with frames from your "
            "camera for the best INT8 accuracy",
            card.model,
        )
    data = _clips(config, frames)
    with (
        claim_output(out),
        tempfile.TemporaryDirectory(prefix=f".{out.name}.", suffix=".work", dir=out.parent) as tmp,
    ):
        work = Path(tmp)
        _reference(src_dir, card, data)
        b = _Builder(card, src_dir, work, config, data, precision)
        chosen = _trials(b)
        graphs = _graph_reasons(b, chosen)
        calibration = CalibrationSettings(
            source=data.description,
            frames=sum(len(c.frames) for c in data.calibration),
            heldout=len(data.gate.frames),
            skipped=data.skipped,
            method=b.method,
            precision=precision,
            decoder_fp16=config.decoder_fp16,
            attention_int8=config.attention_int8,
            int8_full_range=config.int8_full_range,
            fallback=config.fallback,
            fp16_range_fraction=config.fp16.range_fraction,
            source_encoder_sha256=sha256_file(src_dir / card.encoder),
            versions=dict(versions),
            qdq=b.qdq or None,
        )
        details = {
            "source": {"model_dir": str(src_dir), "export": dict(card.details)},
            "calibration": calibration.to_dict(),
            "graph_precision": {g.graph: g.precision for g in graphs},
        }
        report = BuildReport(
            model=card.model,
            precision=chosen.graphs["encoder"].precision,
            decoder_precision=chosen.graphs["decoder"].precision,
            gate=chosen.verdict,
            fidelity=chosen.video.as_fidelity(),
            calibration=calibration,
            fp16_blocked=b.blocked,
            graphs=graphs,
            video=chosen.video,
            trials=tuple(t.record() for t in b.trials),
            decision=(
                f"{chosen.record().label()}: first combination that passed the video gate"
                if chosen.verdict.passed
                else "no combination passed the video gate"
            ),
        )
        if not chosen.verdict.passed:
            report = replace(report, seconds=time.perf_counter() - t0)
            failed = failed_report_path(out)
            atomic_write_text(failed, json.dumps(report.to_dict(), indent=2) + "\n")
            raise GateError(f"{report.failure()}. Report: {failed}", report.to_dict(), str(failed))
        give_back_memory()
        speed = _speed(b, chosen)
        new_card = _card_for(card, chosen.graphs, details)
        with atomic_directory(out, force=force, marker=CARD_NAME) as stage:
            for graph in GRAPHS:
                g = chosen.graphs[graph]
                # Each graph's samedge.precision tag says its own precision.
                _write_graph(g.path, stage / _FILES[graph], new_card, calibration.to_dict(),
                             g.precision)  # fmt: skip
            report = replace(report, speed_ms=speed, seconds=time.perf_counter() - t0)
            final = replace(new_card, details={**details, "report": report.to_dict()})
            (stage / CARD_NAME).write_text(final.to_json(), encoding="utf-8")
            (stage / "report.json").write_text(
                json.dumps(report.to_dict(), indent=2) + "\n", encoding="utf-8"
            )
        failed_report_path(out).unlink(missing_ok=True)
    log.info("built %s", out)
    return report
