"""``samedge export --frame-size``: the encoder traced on the frame's content box."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from samedge.errors import ExportError, ImageError, InputError, ModelDirError
from samedge.model_dir import ModelCard, read_model_dir
from samedge.preprocess import preprocess_image

pytest.importorskip("torch")

from samedge.exporters import ExportConfig, export_model, verify_export
from samedge.exporters.frame_size import encoder_box, parse_frame_size

TINY_CHECKPOINT = Path(__file__).resolve().parents[2] / "training" / "samedge_tiny.pt"


def test_parse_frame_size() -> None:
    assert parse_frame_size("640x480") == (640, 480)
    assert parse_frame_size("1280×720") == (1280, 720)
    for bad in ("640", "640x", "ax480", "0x480", "640x480x3"):
        with pytest.raises(InputError, match="WIDTHxHEIGHT"):
            parse_frame_size(bad)


def test_box_is_the_content_rounded_to_the_stride() -> None:
    from samedge.exporters.export import build_model, resolve_spec

    spec = resolve_spec("samedge_tiny")
    sam = build_model(spec, None)
    assert encoder_box(spec, (640, 480), sam) == (192, 256)
    # 1280x720 -> 256x144 resized, rounded up to samedge_tiny's stride of 32.
    assert encoder_box(spec, (1280, 720), sam) == (160, 256)
    assert encoder_box(spec, (480, 640), sam) == (256, 192)
    assert encoder_box(spec, (1280, 720), sam, margin=2) == (224, 256)
    with pytest.raises(InputError, match="fills the 256 square"):
        encoder_box(spec, (500, 500), sam)


def test_unsupported_models_are_refused_before_building(tmp_path: Path) -> None:
    config = ExportConfig(progress=False, frame_size=(640, 480))
    with pytest.raises(InputError, match="supported: mobile_sam, samedge_tiny"):
        export_model("sam_vit_h", None, tmp_path / "out", config=config)
    with pytest.raises(InputError, match="frame_size"):
        ExportConfig(frame_size=(640, 0))
    assert not (tmp_path / "out").exists()


def test_card_records_the_encoder_input(tmp_path: Path) -> None:
    card = ModelCard(
        model="samedge_tiny",
        image_size=256,
        pixel_mean=(1.0, 2.0, 3.0),
        pixel_std=(1.0, 1.0, 1.0),
        embedding_shape=(128, 16, 16),
        encoder_input=(192, 256),
    )
    back = ModelCard.from_mapping(json.loads(card.to_json()), "card")
    assert back.encoder_input == (192, 256)
    assert back.input_box == (192, 256)
    assert ModelCard.from_mapping(
        {**json.loads(card.to_json()), "encoder_input": None}, "c"
    ).input_box == (256, 256)
    with pytest.raises(ModelDirError, match="within the 256 square"):
        ModelCard.from_mapping({**json.loads(card.to_json()), "encoder_input": [300, 256]}, "c")


def test_preprocess_pads_to_the_box_and_refuses_frames_that_do_not_fit() -> None:
    frame = np.full((480, 640, 3), 7, np.uint8)
    x, size = preprocess_image(frame, 256, (1.0, 2.0, 3.0), box=(192, 256))
    assert x.shape == (1, 3, 192, 256)
    assert size == (192, 256)
    x, size = preprocess_image(np.zeros((720, 1280, 3), np.uint8), 256, (1, 2, 3), box=(192, 256))
    assert size == (144, 256)
    assert float(x[0, 2, 150, 0]) == 3.0  # padding is the mean
    with pytest.raises(ImageError, match="--frame-size"):
        preprocess_image(np.zeros((640, 480, 3), np.uint8), 256, (1, 2, 3), box=(192, 256))


def test_export_runs_on_frames_and_matches_the_square(tmp_path: Path) -> None:
    """Random-weight samedge_tiny passes the gate; the predictor runs on its frames."""
    from samedge import Predictor

    config = ExportConfig(progress=False, frame_size=(640, 480))
    report = export_model("samedge_tiny", None, tmp_path / "content", config=config)
    assert report.frame_size is not None
    assert report.frame_size.passed
    assert report.frame_size.encoder_input == (192, 256)
    assert "frame size 640x480" in report.summary()
    card = read_model_dir(tmp_path / "content")
    assert card.encoder_input == (192, 256)
    assert card.details["frame_size"]["passed"] is True
    # Re-verifiable later against the same weights, like any export.
    assert verify_export(tmp_path / "content", "samedge_tiny", None).passed
    square = export_model(
        "samedge_tiny", None, tmp_path / "square", config=ExportConfig(progress=False)
    )
    assert square.frame_size is None

    from samedge.scenes import make_scene

    scene = make_scene(np.random.default_rng(5), (480, 640))
    results = []
    for d in ("square", "content"):
        p = Predictor(tmp_path / d, backend="onnxruntime")
        p.set_image(scene.image)
        masks, scores, _ = p.predict(
            point_coords=np.array([[320.0, 200.0]]), point_labels=np.array([1])
        )
        assert masks.shape[-2:] == (480, 640)
        assert np.isfinite(scores).all()
        results.append(masks)
        if d == "content":
            with pytest.raises(ImageError, match="--frame-size"):
                p.set_image(np.zeros((640, 480, 3), np.uint8))
    inter = np.logical_and(results[0], results[1]).sum()
    union = np.logical_or(results[0], results[1]).sum()
    assert union == 0 or inter / union > 0.9


@pytest.mark.skipif(
    not TINY_CHECKPOINT.is_file(), reason="training/samedge_tiny.pt not in the tree"
)
def test_the_gate_refuses_an_encoder_that_segments_differently(tmp_path: Path) -> None:
    """Trained samedge_tiny sees the whole 256-px square: the content box fails the gate."""
    config = ExportConfig(progress=False, frame_size=(640, 480))
    with pytest.raises(ExportError, match="export without --frame-size") as err:
        export_model("samedge_tiny", TINY_CHECKPOINT, tmp_path / "out", config=config)
    assert "gate FAILED" in str(err.value)
    assert not (tmp_path / "out").exists()
