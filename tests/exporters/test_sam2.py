"""SAM 2.1 / EdgeTAM export: registry, checkpoints, per-graph and whole-tracker parity.

Fast tests use the reduced SAM 2.1 (Meta's classes at 256 px, random weights);
the full-size tracker parity over a 16-frame clip is marked ``slow`` (its report
is written by benchmarks/sam2_parity.py).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("sam2", reason="the export extra (edgetam-dimos) is not installed")
torch = pytest.importorskip("torch")

from samedge.errors import CheckpointError, InputError  # noqa: E402
from samedge.exporters import export_model  # noqa: E402
from samedge.exporters._sam2_build import build_sam2_reduced  # noqa: E402
from samedge.exporters._sam2_video_parity import Action, video_parity  # noqa: E402
from samedge.exporters.builders import build_sam_reduced  # noqa: E402
from samedge.exporters.export import ExportConfig, export_encoder  # noqa: E402
from samedge.memory_model import MEMORY_ATTENTION_NAME, MemorySettings  # noqa: E402
from samedge.model_dir import read_model_dir  # noqa: E402
from samedge.models import MODELS  # noqa: E402
from samedge.scenes import MovingScene  # noqa: E402


@pytest.fixture(scope="module")
def reduced_export(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, object]:
    out = tmp_path_factory.mktemp("sam2") / "sam2_reduced"
    report = export_model("sam2_reduced", None, out, config=ExportConfig(progress=False))
    return out, report


def test_registry_has_the_sam2_family() -> None:
    names = {"sam2.1_hiera_tiny", "sam2.1_hiera_small", "sam2.1_hiera_base_plus"}
    names |= {"sam2.1_hiera_large", "edgetam"}
    assert names <= set(MODELS)
    assert all(MODELS[n].family == "sam2" for n in names)
    assert MODELS["sam_vit_b"].family == "sam"


def test_export_writes_four_verified_graphs(reduced_export: tuple[Path, object]) -> None:
    out, report = reduced_export
    card = read_model_dir(out)
    assert card.family == "sam2"
    assert (out / MEMORY_ATTENTION_NAME).is_file()
    settings = MemorySettings.from_dict(card.memory or {})
    assert (settings.max_memory_frames, settings.max_pointers) == (10, 19)
    parity = json.loads((out / "samedge.json").read_text())["details"]["parity"]
    assert parity["passed"] is True
    graphs = {c["graph"] for c in parity["cases"]}
    assert graphs == {"encoder", "memory_attention", "decoder", "memory_encoder"}
    assert report.verified  # type: ignore[attr-defined]


def test_tracker_matches_meta_video_predictor(reduced_export: tuple[Path, object]) -> None:
    out, _ = reduced_export
    frames = [s.image for s in MovingScene(seed=3, size=(96, 128), num_objects=3).frames(3)]
    script = {
        0: [
            Action("add", 1, points=((40.0, 30.0),), labels=(1,)),
            Action("add", 2, box=(60.0, 40.0, 110.0, 90.0)),
            Action("add", 3, points=((20.0, 70.0), (30.0, 75.0), (90.0, 20.0)), labels=(1, 1, 0)),
        ],
        1: [Action("correct", 2, points=((80.0, 60.0),), labels=(1,))],
        2: [Action("remove", 3), Action("add", 4, points=((100.0, 20.0),), labels=(1,))],
    }
    report = video_parity(out, build_sam2_reduced(None), frames, script, max_logit_diff=1e-2)
    assert report.passed, report.summary()
    assert [sorted(f.mask_iou) for f in report.frames] == [[1, 2, 3], [1, 2, 3], [1, 2, 4]]


def test_sam1_checkpoint_for_a_sam2_model_is_named(tmp_path: Path) -> None:
    path = tmp_path / "sam1.pth"
    torch.save(build_sam_reduced(None).state_dict(), path)
    with pytest.raises(CheckpointError, match="looks like samedge's reduced test SAM"):
        build_sam2_reduced(path)


def test_sam2_checkpoint_for_a_sam1_model_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "sam2.pt"
    torch.save({"model": build_sam2_reduced(None).state_dict()}, path)
    with pytest.raises(CheckpointError, match="does not fit sam_reduced"):
        build_sam_reduced(path)


def test_single_graph_export_of_a_sam2_model_is_refused(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="four graphs"):
        export_encoder("sam2.1_hiera_tiny", None, tmp_path / "e.onnx")


@pytest.mark.slow
def test_tiny_tracker_parity_over_a_clip(tmp_path: Path) -> None:
    """SAM 2.1-T at 1024 px over 16 frames (minutes; benchmarks/sam2_parity.py records it)."""
    from samedge.exporters._sam2_build import build_sam2_1_hiera_tiny
    from samedge.exporters._sam2_video_parity import standard_clip

    out = tmp_path / "tiny"
    export_model("sam2.1_hiera_tiny", None, out, config=ExportConfig(progress=False))
    frames, script = standard_clip(16)
    report = video_parity(out, build_sam2_1_hiera_tiny(None), frames, script)
    assert report.passed, report.summary()
    assert np.isfinite(report.worst_logit_diff)


def test_sam2_sizes_are_told_apart_before_building() -> None:
    from samedge.exporters.builders import _plausible

    def keys(blocks: int) -> dict[str, tuple[int, ...]]:
        got = {f"image_encoder.trunk.blocks.{i}.norm1.weight": (96,) for i in range(blocks)}
        return {**got, "memory_attention.norm.weight": (256,)}

    sizes = {"sam2.1_hiera_tiny": 12, "sam2.1_hiera_small": 16, "sam2.1_hiera_large": 48}
    for name, blocks in sizes.items():
        assert [n for n in sizes if _plausible(n, keys(blocks))] == [name]
    assert _plausible("edgetam", {"memory_attention.norm.weight": (256,)})
    assert not _plausible("sam2.1_hiera_tiny", {"image_encoder.patch_embed.proj.weight": (768,)})


@pytest.mark.slow
def test_a_checkpoint_of_another_size_is_named(tmp_path: Path) -> None:
    from samedge.exporters._sam2_build import build_sam2_1_hiera_small, build_sam2_1_hiera_tiny

    path = tmp_path / "tiny.pt"
    torch.save({"model": build_sam2_1_hiera_tiny(None).state_dict()}, path)
    with pytest.raises(CheckpointError, match=r"looks like a sam2\.1_hiera_tiny checkpoint"):
        build_sam2_1_hiera_small(path)


@pytest.mark.openvino
def test_openvino_runs_the_four_graphs_like_onnxruntime(
    reduced_export: tuple[Path, object],
) -> None:
    from samedge.memory_predictor import MemoryPredictor
    from samedge.stream.memory import MemoryTracker

    out, _ = reduced_export
    frames = [s.image for s in MovingScene(seed=3, size=(96, 128), num_objects=3).frames(3)]
    logits = {}
    for backend in ("onnxruntime", "openvino"):
        with MemoryPredictor(out, backend=backend) as predictor:
            tracker = MemoryTracker()
            tracker.add(point_coords=[[40, 30]], point_labels=[1])
            tracker.add(box=[60, 40, 110, 90])
            for frame in frames:
                predictor.set_image(frame)
                tracker.step(predictor)
            logits[backend] = [tracker.objects[k].low_res_logits for k in (1, 2)]
    for ort_logits, ov_logits in zip(logits["onnxruntime"], logits["openvino"], strict=True):
        # OpenVINO computes in bf16 on CPUs that have it: logits agree to a fraction of a unit.
        assert float(np.abs(np.asarray(ort_logits) - np.asarray(ov_logits)).max()) < 0.5


def test_a_session_on_a_sam2_model_tracks_with_memory(reduced_export: tuple[Path, object]) -> None:
    # samedge run / serve / stream() open sessions this way: auto picks the memory tracker.
    from samedge.errors import InputError, ModelDirError
    from samedge.predictor import Predictor
    from samedge.prompts import ObjectPrompt
    from samedge.session import SessionConfig, Tracking, open_session
    from samedge.stream import MemoryTracker, TrackState
    from samedge.stream.demo import RunConfig, run_demo

    model, _ = reduced_export
    config = SessionConfig(model=model, backend="onnxruntime", frames=3, synthetic_size=(96, 128))
    box = ObjectPrompt(box=[20, 20, 80, 70])
    with open_session(config, box) as stream:
        assert isinstance(stream.tracker, MemoryTracker)
        assert stream.predictor.backend_reason
        results = list(stream)
    assert [r.frame_id for r in results] == [0, 1, 2]
    for result in results:  # random weights: present or occluded, as the score says
        obj = result.objects[1]
        assert obj.state in (TrackState.TRACKING, TrackState.OCCLUDED)
        assert (obj.mask is None) == (obj.state is TrackState.OCCLUDED)
        if obj.mask is not None:
            assert obj.mask.shape == (96, 128)

    with pytest.raises(InputError, match="memory"):
        open_session(SessionConfig(model=model, tracking=Tracking.REPROMPT))
    with pytest.raises(ModelDirError, match="MemoryPredictor"):
        Predictor(model)

    # samedge.stream() with an open MemoryPredictor (kept open by the stream).
    from samedge.memory_predictor import MemoryPredictor
    from samedge.stream import open_stream

    with MemoryPredictor(model, backend="onnxruntime") as predictor:
        results = list(open_stream("synthetic", box, model=predictor, max_frames=2))
        assert [r.frame_id for r in results] == [0, 1]
        predictor.set_image(np.zeros((32, 32, 3), np.uint8))  # still open

    report = run_demo(
        RunConfig(model=model, backend="onnxruntime", frames=2, output=None, objects=1)
    )
    assert report.tracker == "memory"
    assert "tracker:   memory" in report.format()
