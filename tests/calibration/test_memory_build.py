"""``samedge build`` of a memory model (SAM 2 family): four graphs, a video gate over a clip.

The reduced SAM 2.1 (Meta's classes at 256 px, random weights) is exported once
for the module; the builds use short clips passed explicitly (the 30-frame
default is tested as the default), two objects and no timing.
"""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest

from samedge.calibration import (
    BuildConfig,
    BuildReport,
    GateConfig,
    GateError,
    GateKind,
    Precision,
    memory_build,
)
from samedge.calibration import build as build_fn
from samedge.calibration.build import failed_report_path
from samedge.calibration.gate import MIN_CLIP_FRAMES, GateVerdict
from samedge.calibration.report import VideoFidelity
from samedge.calibration.video_gate import (
    GATE_SEED,
    ClipTrack,
    calibration_seeds,
    compare_tracks,
    logit_correlation,
    scene_clip,
    split_clips,
)
from samedge.cli import main
from samedge.errors import InputError
from samedge.model_dir import read_model_dir

pytest.importorskip("sam2", reason="the export extra (edgetam-dimos) is not installed")
pytest.importorskip("torch")

# Short clips: 4 calibration frames (one clip), a 6-frame gate clip, 2 objects.
FAST = BuildConfig(precision=Precision.FP16, frames=4, clip_frames=6, clip_objects=2, speed_runs=0)


@pytest.fixture(scope="module")
def sam2_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from samedge.exporters import export_model
    from samedge.exporters.export import ExportConfig

    out = tmp_path_factory.mktemp("sam2") / "sam2_reduced"
    export_model("sam2_reduced", None, out, config=ExportConfig(progress=False))
    return out


@pytest.fixture(scope="module")
def fp16_build(sam2_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, int]:
    """An FP16 build through the CLI (flags -> config -> library)."""
    out = tmp_path_factory.mktemp("built") / "sam2_fp16"
    argv = ["-q", "build", str(sam2_dir), "--precision", "fp16", "-o", str(out), "--frames", "4"]
    argv += ["--clip-frames", "6", "--clip-objects", "2", "--speed-runs", "0"]
    return out, main(argv)


def _graph_precision(path: Path) -> str:
    props = {p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props}
    return str(json.loads(props["samedge.precision"]))


def test_fp16_build_records_each_graphs_precision(fp16_build: tuple[Path, int]) -> None:
    out, code = fp16_build
    assert code == 0
    card = read_model_dir(out)
    assert (card.family, card.precision) == ("sam2", "fp16")
    report = BuildReport.from_dict(json.loads((out / "report.json").read_text()))
    assert report.passed
    assert report.gate.kind is GateKind.VIDEO
    assert [(g.graph, g.precision) for g in report.graphs] == [
        ("encoder", "fp16"),
        ("memory_attention", "fp16"),
        ("decoder", "fp32"),
        ("memory_encoder", "fp32"),
    ]
    assert all(g.why for g in report.graphs)
    # Each graph's own tag is what the runtimes read.
    files = {"encoder": card.encoder, "memory_attention": card.memory_attention,
             "decoder": card.decoder, "memory_encoder": card.memory_encoder}  # fmt: skip
    for graph, name in files.items():
        assert _graph_precision(out / str(name)) == report.graph_precision(graph)
    video = report.video
    assert video is not None
    assert (video.frames, video.objects) == (6, 2)
    assert len(video.frame_iou) == len(video.frame_logit_corr) == 6
    assert video.mean_iou > 0.95
    assert video.p5_frame_logit_corr > 0.95
    assert report.fidelity.frames == 6
    assert report.fidelity.mean_iou == pytest.approx(video.mean_iou)
    assert [t.passed for t in report.trials] == [True]
    assert "memory_attention" in report.summary()
    assert report.calibration.heldout == 6
    assert not failed_report_path(out).exists()


def test_info_shows_each_graphs_precision(
    fp16_build: tuple[Path, int], capsys: pytest.CaptureFixture[str]
) -> None:
    out, _ = fp16_build
    assert main(["info", str(out)]) == 0
    lines = capsys.readouterr().out.splitlines()
    shown = {line.split()[0]: line for line in lines if line.startswith("  ") and ".onnx:" in line}
    assert "fp16  (fp16 as asked)" in shown["encoder"]
    assert "memory_attention.onnx: fp16" in shown["memory_attention"]
    assert "decoder.onnx: fp32  (kept fp32" in shown["decoder"]
    assert "memory_encoder.onnx: fp32  (kept fp32" in shown["memory_encoder"]


@pytest.mark.parametrize(
    "backend", ["onnxruntime", pytest.param("openvino", marks=pytest.mark.openvino)]
)
def test_built_memory_model_tracks(fp16_build: tuple[Path, int], backend: str) -> None:
    from samedge.memory_predictor import MemoryPredictor
    from samedge.stream.memory import MemoryTracker

    out, _ = fp16_build
    clip = scene_clip(GATE_SEED, 3, 2, size=(96, 128))
    with MemoryPredictor(out, backend=backend, precision="fp16") as predictor:
        assert predictor.backend_name == backend
        tracker = MemoryTracker()
        for prompt in clip.prompts:
            tracker.add_prompt(prompt)
        for frame in clip.frames:
            predictor.set_image(frame)
            objects = tracker.step(predictor)
        assert sorted(objects) == [1, 2]
        masks = [o.mask for o in objects.values() if o.mask is not None]
        assert masks
        assert all(m.shape == (96, 128) for m in masks)


def test_failed_video_gate_tries_memory_attention_in_fp32_and_writes_nothing(
    sam2_dir: Path, tmp_path: Path
) -> None:
    out = tmp_path / "never"
    # A correlation of more than 1 cannot be reached: every trial misses.
    config = replace(FAST, gate=GateConfig(min_logit_corr=1.0, min_mean_iou=1.0))
    with pytest.raises(GateError, match="video") as info:
        build_fn(sam2_dir, out, config)
    assert "\n" not in str(info.value)
    assert not out.exists()
    report = BuildReport.from_dict(json.loads(failed_report_path(out).read_text()))
    assert [dict(t.graphs)["memory_attention"] for t in report.trials] == ["fp16", "fp32"]
    assert all(dict(t.graphs)["encoder"] == "fp16" for t in report.trials)
    assert not report.passed
    # Nothing of the work directory is left beside the output.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["never.failed-report.json"]


def test_bad_inputs_are_one_line_typed_errors(sam2_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(InputError, match="auto is offered for SAM 1-family") as info:
        build_fn(sam2_dir, tmp_path / "a", replace(FAST, precision=Precision.AUTO))
    assert "\n" not in str(info.value)
    with pytest.raises(InputError, match="clip_frames: got 1"):
        BuildConfig(clip_frames=1)
    with pytest.raises(InputError, match="clip_objects"):
        BuildConfig(clip_objects=0)
    with pytest.raises(InputError, match="min_logit_corr"):
        GateConfig(min_logit_corr=1.5)
    assert not (tmp_path / "a").exists()


def test_the_video_gate_clip_defaults_to_30_frames() -> None:
    assert BuildConfig().clip_frames == MIN_CLIP_FRAMES == 30


# ----------------------------------------------------------------------------- decisions


class _FakeBuilder:
    """The trial logic without models: a verdict per combination of labels."""

    def __init__(self, precision: str, fails: set[tuple[str, str]], fallback: bool = True) -> None:
        self.precision = precision
        self.config = replace(FAST, precision=Precision(precision), fallback=fallback)
        self.fails = fails
        self.judged: list[tuple[str, str]] = []
        self.trials: list[Any] = []

    def fp32(self, graph: str) -> memory_build._Graph:
        return memory_build._Graph(Path(f"{graph}.onnx"), "fp32")

    def lowered(self, graph: str) -> memory_build._Graph:
        return memory_build._Graph(Path(f"{graph}.low.onnx"), self.precision)

    def decoder(self) -> memory_build._Graph:
        return self.fp32("decoder")

    def judge(self, graphs: dict[str, memory_build._Graph]) -> memory_build._Trial:
        key = (graphs["encoder"].label, graphs["memory_attention"].label)
        self.judged.append(key)
        passed = key not in self.fails
        verdict = GateVerdict(GateKind.VIDEO, "", passed, () if passed else ("missed",))
        trial = memory_build._Trial(graphs, _video([1.0]), verdict)
        self.trials.append(trial)
        return trial


def test_memory_attention_goes_back_to_fp32_first() -> None:
    b = _FakeBuilder("fp16", fails={("fp16", "fp16")})
    chosen = memory_build._trials(b)  # type: ignore[arg-type]
    assert b.judged == [("fp16", "fp16"), ("fp16", "fp32")]
    assert chosen.verdict.passed
    reasons = dict((g.graph, g) for g in memory_build._graph_reasons(b, chosen))  # type: ignore[arg-type]
    assert reasons["memory_attention"].precision == "fp32"
    assert "video gate failed (missed)" in reasons["memory_attention"].why


def test_fp16_has_no_layer_fallback_and_int8_without_fallback_stops() -> None:
    b = _FakeBuilder("fp16", fails={("fp16", "fp16"), ("fp16", "fp32")})
    assert not memory_build._trials(b).verdict.passed  # type: ignore[arg-type]
    assert len(b.judged) == 2
    b = _FakeBuilder("int8", fails={("int8", "int8"), ("int8", "fp32")}, fallback=False)
    assert not memory_build._trials(b).verdict.passed  # type: ignore[arg-type]
    assert len(b.judged) == 2


# ----------------------------------------------------------------------------- measurement


def _video(frame_iou: list[float], corr: list[float] | None = None) -> VideoFidelity:
    return VideoFidelity(
        source="test",
        frames=len(frame_iou),
        objects=1,
        frame_iou=tuple(frame_iou),
        frame_logit_corr=tuple(corr or frame_iou),
        mean_iou=float(np.mean(frame_iou)),
        worst_iou=min(frame_iou),
        presence_agreement=1.0,
        cosine_mean=1.0,
        cosine_min=1.0,
        sqnr_mean_db=math.inf,
        sqnr_min_db=math.inf,
    )


def test_video_fidelity_reads_back_and_its_gate_sees_one_drifting_stretch() -> None:
    curve = [1.0] * 20 + [0.5] * 10  # drifts away in the last third
    video = _video(curve, [1.0] * 30)
    back = VideoFidelity.from_dict(json.loads(json.dumps(video.to_dict())))
    assert back.frame_iou == video.frame_iou
    assert back.p5_frame_iou == video.p5_frame_iou
    assert video.p5_frame_iou == pytest.approx(np.percentile(curve, 5))
    assert video.drift == pytest.approx(-0.5)
    verdict = GateConfig().judge_video(video)
    assert verdict.kind is GateKind.VIDEO
    assert not verdict.passed
    assert any("5th-percentile frame mask IoU" in r for r in verdict.reasons)
    # One bad frame in 30 is within the 5th percentile; the logits gate still sees a bad stretch.
    assert GateConfig().judge_video(_video([1.0] * 29 + [0.0])).passed
    low_corr = _video([1.0] * 30, [0.5] * 5 + [1.0] * 25)
    assert not GateConfig().judge_video(low_corr).passed
    record = GateVerdict.from_record(verdict.thresholds(), verdict.passed, verdict.reasons)
    assert record.kind is GateKind.VIDEO
    assert record.min_logit_corr == 0.95


def test_compare_tracks_counts_a_presence_disagreement_as_zero() -> None:
    full = np.ones((4, 4), bool)
    logits = np.arange(16, dtype=np.float32).reshape(4, 4) - 8
    ref = ClipTrack(
        features=[np.ones((1, 2, 2, 2), np.float32)] * 2,
        masks=[{1: full}, {1: full}],
        logits=[{1: logits}, {1: logits}],
        scores=[{1: 1.0}, {1: 1.0}],
    )
    gone = ClipTrack(
        features=ref.features,
        masks=[{1: full}, {1: np.zeros((4, 4), bool)}],
        logits=[{1: logits}, {1: np.full((4, 4), -1024.0, np.float32)}],
        scores=[{1: 1.0}, {1: -2.0}],
    )
    video = compare_tracks(ref, gone, "test")
    assert video.frame_iou == (1.0, 0.0)
    assert video.frame_logit_corr == (pytest.approx(1.0), 0.0)
    assert video.presence_agreement == 0.5
    assert (video.score_diff_mean, video.score_diff_max) == (1.5, 3.0)
    assert logit_correlation(np.full((2, 2), -5.0), np.full((2, 2), -5.0)) == 1.0
    broken = ClipTrack(features=ref.features, masks=ref.masks, scores=ref.scores,
                       logits=[{1: logits}, {1: np.full((4, 4), np.nan, np.float32)}])  # fmt: skip
    assert compare_tracks(ref, broken, "test").frame_logit_corr[1] == 0.0


def test_clips_are_prompted_from_ground_truth_and_calibration_never_uses_the_gate_seed() -> None:
    clip = scene_clip(GATE_SEED, 2, 3, size=(96, 128))
    assert len(clip.frames) == 2
    assert 1 <= len(clip.prompts) <= 3
    assert clip.prompts[0].point_coords is not None
    assert GATE_SEED not in calibration_seeds(GATE_SEED - 1, 3)
    assert [len(c) for c in split_clips(list(range(32)))] == [16, 16]
    assert [len(c) for c in split_clips(list(range(20)))] == [10, 10]
