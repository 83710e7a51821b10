"""samedge segment --everything: COCO JSON + overlays for files and folders, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from samedge.cli import main
from samedge.errors import InputError, OutputExistsError
from samedge.generator import GeneratorConfig, OutputMode
from samedge.masks import rle_area, rle_to_mask
from samedge.scenes import make_scene
from samedge.segment import SEGMENTS_FILE, SegmentConfig, find_images, segment_everything

FAST = ["--points-per-side", "6", "--pred-iou-thresh", "0.5", "--stability-score-thresh", "0.6"]


@pytest.fixture
def images(tmp_path: Path) -> Path:
    folder = tmp_path / "images"
    folder.mkdir()
    for i in range(2):
        rgb = make_scene(np.random.default_rng(i), (120, 160), num_objects=4).image
        cv2.imwrite(str(folder / f"scene{i}.png"), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    (folder / "broken.jpg").write_bytes(b"this is not a JPEG")
    (folder / "notes.txt").write_text("not an image suffix: not picked up")
    return folder


def test_cli_writes_coco_json_and_overlays_and_skips_a_broken_image(
    images: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    argv = ["segment", str(images), "--everything", "-o", str(out), "--backend", "onnxruntime"]
    assert main([*argv, *FAST]) == 0
    text = capsys.readouterr().out
    assert "segmented 2 images" in text
    assert "1 skipped" in text
    assert "broken.jpg" in text
    coco = json.loads((out / SEGMENTS_FILE).read_text())
    assert [im["file_name"] for im in coco["images"]] == [
        str(images / "scene0.png"),
        str(images / "scene1.png"),
    ]
    assert coco["annotations"], "relaxed thresholds keep masks on these scenes"
    assert coco["categories"] == [{"id": 1, "name": "object", "supercategory": "object"}]
    ids = [a["id"] for a in coco["annotations"]]
    assert ids == list(range(1, len(ids) + 1))
    for ann in coco["annotations"]:
        image = coco["images"][ann["image_id"] - 1]
        mask = rle_to_mask(ann["segmentation"])
        assert mask.shape == (image["height"], image["width"])
        assert isinstance(ann["segmentation"]["counts"], str)
        assert ann["area"] == rle_area(ann["segmentation"]) == int(mask.sum())
        ys, xs = np.nonzero(mask)
        x, y, w, h = ann["bbox"]  # COCO's extent
        assert (x, y, x + w, y + h) == (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1)
    for image in coco["images"]:
        overlay = cv2.imread(str(out / image["overlay"]))
        assert overlay.shape == (image["height"], image["width"], 3)
    # Only a folder this command wrote is replaced, and only with --force.
    assert main([*argv, *FAST]) == 1
    assert "--force" in capsys.readouterr().err
    assert main([*argv, *FAST, "--force"]) == 0


def test_pycocotools_reads_the_json(images: Path, tmp_path: Path) -> None:
    coco_api = pytest.importorskip("pycocotools.coco")
    mask_api = pytest.importorskip("pycocotools.mask")
    out = tmp_path / "out"
    config = SegmentConfig(
        backend="onnxruntime",
        generator=GeneratorConfig(
            points_per_side=6, pred_iou_thresh=0.5, stability_score_thresh=0.6
        ),
    )
    report = segment_everything([images / "scene1.png"], out, config)
    assert (report.images, report.skipped) == (1, ())
    coco = coco_api.COCO(str(out / SEGMENTS_FILE))
    for ann in coco.loadAnns(coco.getAnnIds()):
        np.testing.assert_array_equal(mask_api.toBbox(ann["segmentation"]), ann["bbox"])


def test_cli_bad_input_is_one_line(
    images: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = str(tmp_path / "out")
    assert main(["segment", str(images), "-o", out]) == 1
    assert "--everything" in capsys.readouterr().err
    assert main(["segment", str(images), "--everything"]) == 1
    assert "--output" in capsys.readouterr().err
    assert main(["segment", str(tmp_path / "missing"), "--everything", "-o", out]) == 1
    assert "no such file or folder" in capsys.readouterr().err
    bad = ["segment", str(images), "--everything", "-o", out, "--pred-iou-thresh", "2"]
    assert main(bad) == 1
    err = capsys.readouterr().err
    assert "pred_iou_thresh: got 2.0, expected a number in [0, 1]" in err
    assert len(err.strip().splitlines()) == 1
    assert not Path(out).exists()


def test_library_refuses_what_it_cannot_do(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no image files"):
        find_images([tmp_path])
    with pytest.raises(InputError, match="BINARY_MASK"):
        SegmentConfig(generator=GeneratorConfig(output_mode=OutputMode.COCO_RLE))
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "keep.txt").write_text("the user's")
    image = tmp_path / "one.png"
    cv2.imwrite(str(image), np.zeros((8, 8, 3), np.uint8))
    with pytest.raises(OutputExistsError):
        segment_everything([image], mine, SegmentConfig(force=True))
    assert (mine / "keep.txt").read_text() == "the user's"


def test_cli_fails_when_no_image_can_be_decoded(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    folder = tmp_path / "broken"
    folder.mkdir()
    (folder / "a.png").write_bytes(b"not a PNG")
    (folder / "b.jpg").write_bytes(b"")
    out = tmp_path / "out"
    argv = ["segment", str(folder), "--everything", "-o", str(out), "--backend", "onnxruntime"]
    with caplog.at_level("WARNING", logger="samedge.segment"):
        assert main([*argv, *FAST]) == 1
    captured = capsys.readouterr()
    assert "segmented 0 images: 0 masks (2 skipped: cannot be decoded)" in captured.out
    assert "none of the 2 image(s) could be decoded" in captured.err
    assert len(captured.err.strip().splitlines()) == 1
    warned = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert any("a.png" in w and "cannot decode" in w for w in warned)
    assert any("b.jpg" in w for w in warned)
