"""COCO-format evaluation: a folder made from procedural scenes scores exactly like the scenes."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from samedge import Predictor
from samedge._coco import decode_segmentation, load_coco
from samedge.errors import ImageError, InputError, UnknownNameError
from samedge.evaluate import (
    COCO_SIZE_BINS,
    CocoConfig,
    EvalConfig,
    Protocol,
    Sample,
    _summarise,
    evaluate_coco,
    evaluate_predictor,
    heldout_scenes,
)
from samedge.scenes import Scene

mask_api = pytest.importorskip("pycocotools.mask")

CATEGORIES = [{"id": 1, "name": "blob"}, {"id": 7, "name": "polygon"}]


def _rle(mask: np.ndarray) -> dict[str, Any]:
    rle = mask_api.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": [int(v) for v in rle["size"]], "counts": rle["counts"].decode("ascii")}


def _uncompressed_rle(mask: np.ndarray) -> dict[str, Any]:
    """COCO's crowd format: run lengths of the column-major pixels, zeros first."""
    flat = mask.flatten(order="F").astype(np.int8)
    edges = np.flatnonzero(np.diff(flat)) + 1
    runs = np.diff(np.concatenate([[0], edges, [flat.size]])).tolist()
    if flat[0]:
        runs = [0, *runs]
    return {"size": list(mask.shape), "counts": runs}


def _polygons(mask: np.ndarray) -> list[list[float]]:
    contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL,
                                   cv2.CHAIN_APPROX_NONE)  # fmt: skip
    return [c.reshape(-1).astype(float).tolist() for c in contours if len(c) >= 3]


def write_coco(root: Path, scenes: list[Scene], segmentation: str = "rle") -> tuple[Path, Path]:
    """Images as PNG + an instances JSON; returns ``(images_dir, annotations)``.

    Each ``bbox`` is written so that ``[x, y, x + w, y + h]`` is the procedural
    protocol's inclusive box and each ``area`` is the visible pixel count: the
    COCO path then prompts exactly as the procedural one does.
    """
    images_dir = root / "images"
    images_dir.mkdir(parents=True)
    images, annotations = [], []
    for i, scene in enumerate(scenes):
        name = f"{i:04d}.png"
        cv2.imwrite(str(images_dir / name), cv2.cvtColor(scene.image, cv2.COLOR_RGB2BGR))
        h, w = scene.image.shape[:2]
        images.append({"id": 100 + i, "file_name": name, "height": h, "width": w})
        for k, mask in enumerate(scene.masks):
            ys, xs = np.nonzero(mask)
            seg = _polygons(mask) if segmentation == "polygons" else _rle(mask)
            annotations.append({
                "id": len(annotations) + 1,
                "image_id": 100 + i,
                "category_id": 7 if scene.kinds[k] == "polygon" else 1,
                "segmentation": seg,
                "area": int(mask.sum()),
                "bbox": [int(xs.min()), int(ys.min()), int(xs.max() - xs.min()),
                         int(ys.max() - ys.min())],
                "iscrowd": 0,
            })  # fmt: skip
    path = root / "instances.json"
    data = {"images": images, "annotations": annotations, "categories": CATEGORIES}
    path.write_text(json.dumps(data))
    return images_dir, path


@pytest.fixture(scope="module")
def scenes() -> list[Scene]:
    return heldout_scenes(EvalConfig(scenes=4, photos=False))[0]


def _expected(samples: list[Any], clicks: int, protocol: Protocol) -> tuple[Any, ...]:
    with Predictor("samedge_tiny", backend="onnxruntime") as predictor:
        ious, areas = evaluate_predictor(predictor, samples, clicks, protocol=protocol)
    return _summarise(ious, areas, COCO_SIZE_BINS)


def _same(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Equal, counting nan == nan (an empty size bin)."""
    if a.keys() != b.keys():
        return False
    for k in a:
        x, y = a[k], b[k]
        if isinstance(x, dict):
            if not _same(x, y):
                return False
        elif not (x == y or (math.isnan(x) and math.isnan(y))):
            return False
    return True


@pytest.mark.parametrize("protocol", list(Protocol))
def test_coco_folder_scores_exactly_like_the_procedural_scenes(
    tmp_path: Path, scenes: list[Scene], protocol: Protocol
) -> None:
    images, annotations = write_coco(tmp_path, scenes)
    config = CocoConfig(clicks=2, protocol=protocol)
    report = evaluate_coco("samedge_tiny", images, annotations, backend="onnxruntime",
                           config=config)  # fmt: skip
    miou, by_size, counts = _expected(scenes, 2, protocol)
    assert report.objects == sum(len(s.masks) for s in scenes) == sum(counts.values())
    assert report.scenes == len(scenes)
    assert report.counts == counts
    assert _same(report.miou, miou)
    assert _same(report.by_size, by_size)
    assert report.protocol == protocol.value
    assert report.size_bins == COCO_SIZE_BINS
    text = report.summary()
    assert "instances.json" in text
    assert "4 images" in text
    assert "small < 1024 px" in text
    assert report.to_dict()["size_bins"]["large"] == [96**2, None]


def test_polygon_annotations_decode_and_score_like_their_masks(
    tmp_path: Path, scenes: list[Scene]
) -> None:
    images, annotations = write_coco(tmp_path, scenes[:2], segmentation="polygons")
    data = json.loads(annotations.read_text())
    decoded: list[np.ndarray] = []
    for ann in data["annotations"]:
        scene = scenes[ann["image_id"] - 100]
        mask = decode_segmentation(ann, *scene.image.shape[:2])
        decoded.append(mask)
        # Polygons trace the outline through the pixel centres: the same object, at
        # most a boundary pixel apart (a swapped x/y or wrong shape would fail this).
        original = next(m for m in scene.masks if m[mask].mean() > 0.5)
        if original.sum() >= 100:
            assert (mask & original).sum() / (mask | original).sum() > 0.6
    report = evaluate_coco("samedge_tiny", images, annotations, backend="onnxruntime",
                           config=CocoConfig(clicks=1))  # fmt: skip
    samples, start = [], 0
    for scene in scenes[:2]:
        k = len(scene.masks)
        masks = np.stack(decoded[start : start + k])
        anns = data["annotations"][start : start + k]
        boxes = np.array([[b[0], b[1], b[0] + b[2], b[1] + b[3]] for b in
                          (a["bbox"] for a in anns)], float)  # fmt: skip
        areas = np.array([a["area"] for a in anns], float)
        samples.append(Sample(scene.image, masks, boxes, areas))
        start += k
    miou, _, counts = _expected(samples, 1, Protocol.SAMEDGE)
    assert report.counts == counts
    assert _same(report.miou, miou)


def test_filters_crowd_categories_area_and_max_images(tmp_path: Path, scenes: list[Scene]) -> None:
    images, annotations = write_coco(tmp_path, scenes)
    data = json.loads(annotations.read_text())
    crowd = data["annotations"][0]
    scene = scenes[0]
    crowd_mask = next(m for m in scene.masks if decode_segmentation(crowd, 256, 256)[m].all())
    crowd.update(iscrowd=1, segmentation=_uncompressed_rle(crowd_mask))
    annotations.write_text(json.dumps(data))
    total = len(data["annotations"])

    default = load_coco(images, annotations)
    assert default.objects == total - 1
    assert default.skipped == {"crowd": 1}
    with_crowd = load_coco(images, annotations, include_crowd=True)
    assert with_crowd.objects == total
    sample = next(with_crowd.samples())
    assert np.array_equal(sample.masks[0], crowd_mask)  # uncompressed RLE decodes exactly

    polygons = sum(a["category_id"] == 7 for a in data["annotations"][1:])
    by_name = load_coco(images, annotations, categories=("polygon",))
    by_id = load_coco(images, annotations, categories=(7,))
    assert by_name.objects == by_id.objects == polygons
    assert by_name.categories == {7: "polygon"}

    areas = sorted(a["area"] for a in data["annotations"][1:])
    cut = areas[len(areas) // 2]
    big = load_coco(images, annotations, min_area=cut)
    assert big.objects == sum(a >= cut for a in areas)
    assert big.skipped["min_area"] == sum(a < cut for a in areas)

    first = load_coco(images, annotations, max_images=1)
    assert [im.path.name for im in first.images] == ["0000.png"]
    assert first.skipped["max_images"] == total - 1 - len(first.images[0].annotations)


def test_box_is_bbox_corners_and_area_is_the_annotations(tmp_path: Path) -> None:
    mask = np.zeros((20, 30), bool)
    mask[5:9, 10:14] = True
    image = np.full((20, 30, 3), 90, np.uint8)
    scene = Scene(image, mask[None], (0,), ("blob",))
    images, annotations = write_coco(tmp_path, [scene])
    data = json.loads(annotations.read_text())
    data["annotations"][0].update(bbox=[10.0, 5.0, 4.0, 4.0], area=999.5)
    annotations.write_text(json.dumps(data))
    sample = next(load_coco(images, annotations).samples())
    assert sample.boxes.tolist() == [[10.0, 5.0, 14.0, 9.0]]  # [x, y, x + w, y + h]
    assert sample.areas.tolist() == [999.5]
    del data["annotations"][0]["bbox"], data["annotations"][0]["area"]
    annotations.write_text(json.dumps(data))
    sample = next(load_coco(images, annotations).samples())
    # From the mask, as pycocotools computes bbox and area.
    x, y, w, h = mask_api.toBbox(mask_api.encode(np.asfortranarray(mask.astype(np.uint8))))
    assert sample.boxes.tolist() == [[x, y, x + w, y + h]] == [[10.0, 5.0, 14.0, 9.0]]
    assert sample.areas.tolist() == [16.0]


# ----------------------------------------------------------------------------- bad input


def test_bad_json(tmp_path: Path, scenes: list[Scene]) -> None:
    images, annotations = write_coco(tmp_path, scenes[:1])
    with pytest.raises(InputError, match="no such file"):
        load_coco(images, tmp_path / "missing.json")
    with pytest.raises(InputError, match="is a directory"):
        load_coco(images, images)
    with pytest.raises(InputError, match="not a directory"):
        load_coco(annotations, annotations)
    bad = tmp_path / "bad.json"
    bad.write_text('{"images": [')
    with pytest.raises(InputError, match=r"not valid JSON \(.* line 1"):
        load_coco(images, bad)
    bad.write_text("[1, 2]")
    with pytest.raises(InputError, match="got a JSON list"):
        load_coco(images, bad)
    bad.write_text('{"images": []}')
    with pytest.raises(InputError, match="no 'annotations' list"):
        load_coco(images, bad)
    data = json.loads(annotations.read_text())
    data["annotations"][0]["image_id"] = 5
    bad.write_text(json.dumps(data))
    with pytest.raises(InputError, match=r"annotations\[0\]: image_id 5 is not in 'images'"):
        load_coco(images, bad)
    data = json.loads(annotations.read_text())
    data["images"][0]["height"] = "tall"
    bad.write_text(json.dumps(data))
    with pytest.raises(InputError, match=r"images\[0\]: 'height': got 'tall'"):
        load_coco(images, bad)


def test_missing_images_are_counted_and_named(tmp_path: Path, scenes: list[Scene]) -> None:
    images, annotations = write_coco(tmp_path, scenes)
    (images / "0001.png").unlink()
    (images / "0003.png").unlink()
    with pytest.raises(InputError, match=r"2 of the 4 images .* missing \(0001\.png, 0003\.png\)"):
        load_coco(images, annotations)
    assert len(load_coco(images, annotations, max_images=1).images) == 1  # only what is needed


def test_nothing_left_after_filters(tmp_path: Path, scenes: list[Scene]) -> None:
    images, annotations = write_coco(tmp_path, scenes[:1])
    with pytest.raises(InputError, match=r"no annotation to evaluate .* min_area"):
        load_coco(images, annotations, min_area=1e9)
    with pytest.raises(UnknownNameError, match="Did you mean 'polygon'"):
        load_coco(images, annotations, categories=("polygn",))
    with pytest.raises(InputError, match="category id 3: not in"):
        load_coco(images, annotations, categories=(3,))


def test_unreadable_and_mismatched_images(tmp_path: Path, scenes: list[Scene]) -> None:
    images, annotations = write_coco(tmp_path, scenes[:1])
    (images / "0000.png").write_bytes(b"this is not a PNG")
    with pytest.raises(ImageError, match=r"0000\.png: OpenCV cannot decode"):
        next(load_coco(images, annotations).samples())
    cv2.imwrite(str(images / "0000.png"), np.zeros((10, 12, 3), np.uint8))
    with pytest.raises(InputError, match=r"image is 10x12 .* annotations say 256x256"):
        next(load_coco(images, annotations).samples())


def test_malformed_segmentations_are_refused_before_decoding() -> None:
    good = _rle(np.eye(4, dtype=bool))
    assert decode_segmentation({"segmentation": good}, 4, 4).sum() == 4
    cases = [
        ({"size": [4, 4], "counts": "zzzz~~"}, "malformed compressed RLE|add up"),
        ({"size": [4, 4], "counts": good["counts"] + "3"}, "add up to"),
        ({"size": [5, 4], "counts": good["counts"]}, r"RLE size \[5, 4\] differs"),
        ({"size": [4, 4], "counts": [3, 2, 100]}, "add up to 105"),
        ({"size": [4, 4], "counts": [3, -2, 15]}, "non-negative integers"),
        ("polygon", "expected a list of polygons or an RLE"),
    ]
    for seg, message in cases:
        with pytest.raises(InputError, match=message):
            decode_segmentation({"id": 9, "segmentation": seg}, 4, 4)
    # A two-point "polygon" has no area (pycocotools would read 4 numbers as a box).
    assert not decode_segmentation({"segmentation": [[0, 0, 3, 3]]}, 4, 4).any()


def test_empty_masks_are_left_out_and_counted(tmp_path: Path, scenes: list[Scene]) -> None:
    images, annotations = write_coco(tmp_path, scenes[:1])
    data = json.loads(annotations.read_text())
    data["annotations"][0]["segmentation"] = [[1, 1, 2, 2]]
    annotations.write_text(json.dumps(data))
    report = evaluate_coco("samedge_tiny", images, annotations, backend="onnxruntime",
                           config=CocoConfig(clicks=1))  # fmt: skip
    assert report.skipped == {"empty_mask": 1}
    assert report.objects == len(data["annotations"]) - 1


def test_coco_config_validates() -> None:
    with pytest.raises(InputError, match="max_images"):
        CocoConfig(max_images=0)
    with pytest.raises(InputError, match="categories"):
        CocoConfig(categories="person")  # type: ignore[arg-type]
    with pytest.raises(InputError, match="min_area"):
        CocoConfig(min_area=-1)
    with pytest.raises(InputError, match="clicks"):
        CocoConfig(clicks=0)


# ----------------------------------------------------------------------------- CLI


def test_cli_eval_coco(
    tmp_path: Path, scenes: list[Scene], capsys: pytest.CaptureFixture[str]
) -> None:
    from samedge.cli import main

    images, annotations = write_coco(tmp_path, scenes[:2])
    args = ["eval", "samedge_tiny", "--backend", "onnxruntime", "--coco-images", str(images),
            "--coco-annotations", str(annotations), "--clicks", "1", "--categories", "blob,7",
            "--protocol", "efficientvit-sam", "--json"]  # fmt: skip
    assert main(args) == 0
    out = capsys.readouterr().out
    data = json.loads(out[out.index("{") :])
    assert data["protocol"] == "efficientvit-sam"
    assert data["dataset"].startswith("COCO instances.json")
    assert set(data["miou"]) == {"click", "box"}
    assert sum(data["counts"].values()) == data["objects"] > 0


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--coco-annotations", "{tmp}/missing.json"], "no such file"),
        (["--coco-annotations", "{ann}", "--reference", "samedge_tiny"], "different things"),
        (["--max-images", "3"], "--max-images (for COCO): not used with procedural scenes"),
        (
            ["--coco-annotations", "{ann}", "--scenes", "3", "--seed", "1"],
            "--scenes (for procedural scenes), --seed (for procedural scenes or fidelity): "
            "not used with COCO",
        ),
    ],
)
def test_cli_eval_coco_errors_are_one_line(
    tmp_path: Path,
    scenes: list[Scene],
    capsys: pytest.CaptureFixture[str],
    extra: list[str],
    message: str,
) -> None:
    from samedge.cli import main

    images, annotations = write_coco(tmp_path, scenes[:1])
    args = ["eval", "samedge_tiny"]
    if extra[0] != "--max-images":
        args += ["--coco-images", str(images)]
    args += [e.format(tmp=tmp_path, ann=annotations) for e in extra]
    assert main(args) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("samedge eval: error:")
    assert message in err
    assert "\n" not in err
