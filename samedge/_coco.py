"""COCO-format instance annotations for :func:`samedge.evaluate.evaluate_coco` (private).

Reads an images folder and an instances JSON (COCO's ``instances_val2017.json``
or any export in that format: CVAT, Label Studio, FiftyOne), checks it, and
yields :class:`samedge.evaluate.Sample` objects one image at a time:

* masks: polygons are rasterized by pycocotools (needed only when the set has
  polygons); RLE, compressed or not (crowd annotations), is decoded here after
  checking its run lengths against the image size (pycocotools' C decoder
  writes past its buffer when they do not add up);
* the box prompt is the annotation's ``bbox`` ``[x, y, w, h]`` as
  ``[x, y, x + w, y + h]``, the conversion NanoSAM, EfficientViT-SAM and
  EdgeSAM use (from the mask, as pycocotools computes ``bbox``, when absent);
* the size of an object is its annotation's ``area`` (COCO's small/medium/large
  split is by this field; from the mask when absent).

Images are read with OpenCV ignoring EXIF orientation: COCO's masks are drawn on
the stored pixels, and an image whose decoded size differs from the JSON's
``height``/``width`` is refused rather than scored against misaligned masks.
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np

from samedge._registry import unknown_name_message
from samedge.errors import BackendUnavailableError, ImageError, InputError, UnknownNameError
from samedge.masks import decode_counts, mask_box, runs_to_mask

if TYPE_CHECKING:
    from samedge.evaluate import Sample

__all__ = ["CocoImage", "CocoSet", "decode_segmentation", "load_coco", "read_image"]

log = logging.getLogger(__name__)

# How many missing file names an error message lists before "...".
_LIST_MISSING = 5


def _pycocotools_mask() -> Any:
    try:
        from pycocotools import mask
    except ImportError as e:
        raise BackendUnavailableError(
            "COCO polygon annotations need pycocotools to rasterize them: "
            "pip install 'samedge[eval]'"
        ) from e
    return mask


@dataclass(frozen=True)
class CocoImage:
    """One image of the set with the annotations kept by the filters.

    Attributes:
        id: The JSON's image id.
        path: The image file.
        height: Height the JSON declares.
        width: Width the JSON declares.
        annotations: Kept annotations, in the JSON's order.
    """

    id: int
    path: Path
    height: int
    width: int
    annotations: tuple[dict[str, Any], ...]


@dataclass(frozen=True)
class CocoSet:
    """The images and annotations :func:`load_coco` selected.

    Attributes:
        images: Images with at least one kept annotation, in the JSON's order.
        categories: ``{id: name}`` of the categories kept.
        skipped: Annotations left out, by reason (``crowd``, ``category``,
            ``min_area``, ``max_images``).
        description: Where the set came from, for reports.
    """

    images: tuple[CocoImage, ...]
    categories: dict[int, str]
    skipped: dict[str, int] = field(default_factory=dict)
    description: str = ""

    @property
    def objects(self) -> int:
        """Annotations kept."""
        return sum(len(im.annotations) for im in self.images)

    def samples(self, empty: dict[str, int] | None = None) -> Iterator[Sample]:
        """Read each image and decode its masks, one :class:`Sample` at a time.

        Args:
            empty: Counter: ``empty["empty_mask"]`` is incremented for every
                annotation whose mask decodes to no pixel (left out).

        Raises:
            BackendUnavailableError: polygon annotations and no pycocotools.
            ImageError: an image file that OpenCV cannot decode.
            InputError: an image whose size differs from the JSON's, or a
                segmentation that cannot be decoded.
        """
        from samedge.evaluate import Sample

        for im in self.images:
            image = read_image(im.path, (im.height, im.width))
            masks, boxes, areas = [], [], []
            for ann in im.annotations:
                mask = decode_segmentation(ann, im.height, im.width)
                if not mask.any():
                    if empty is not None:
                        empty["empty_mask"] = empty.get("empty_mask", 0) + 1
                    continue
                masks.append(mask)
                boxes.append(_box(ann, mask))
                areas.append(_area(ann, mask))
            if not masks:
                continue
            yield Sample(
                image=image,
                masks=np.stack(masks),
                boxes=np.array(boxes, np.float64),
                areas=np.array(areas, np.float64),
                name=im.path.name,
            )


# ----------------------------------------------------------------------------- reading


def _fail(where: str, what: str) -> InputError:
    return InputError(f"{where}: {what}")


def _read_json(path: Path) -> dict[str, Any]:
    if not path.exists():
        raise InputError(f"annotations {path}: no such file; pass the instances JSON")
    if not path.is_file():
        raise InputError(f"annotations {path}: is a directory; pass the instances JSON file")
    try:
        with path.open("rb") as f:
            data = json.load(f)
    except json.JSONDecodeError as e:
        raise InputError(
            f"annotations {path}: not valid JSON ({e.msg} at line {e.lineno}, column {e.colno})"
        ) from e
    except (UnicodeDecodeError, OSError) as e:
        raise InputError(f"annotations {path}: cannot be read ({e})") from e
    if not isinstance(data, dict):
        raise InputError(
            f"annotations {path}: got a JSON {type(data).__name__}, expected an object with "
            "'images', 'annotations' and 'categories' (COCO instances format)"
        )
    for key in ("images", "annotations"):
        if not isinstance(data.get(key), list):
            raise InputError(
                f"annotations {path}: no {key!r} list; expected COCO instances format "
                "(keys 'images', 'annotations', 'categories')"
            )
    return data


def _int_field(entry: Any, key: str, where: str) -> int:
    if not isinstance(entry, dict):
        raise _fail(where, f"got a {type(entry).__name__}, expected a JSON object")
    value = entry.get(key)
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise _fail(where, f"{key!r}: got {value!r}, expected an integer")
    return value


def _images(data: dict[str, Any], images_dir: Path, source: Path) -> dict[int, CocoImage]:
    out: dict[int, CocoImage] = {}
    for i, entry in enumerate(data["images"]):
        where = f"annotations {source}: images[{i}]"
        image_id = _int_field(entry, "id", where)
        name = entry.get("file_name")
        if not isinstance(name, str) or not name:
            raise _fail(where, f"'file_name': got {name!r}, expected a file name")
        height, width = _int_field(entry, "height", where), _int_field(entry, "width", where)
        if height < 1 or width < 1:
            raise _fail(where, f"size: got {height}x{width}, expected positive height and width")
        if image_id in out:
            raise _fail(where, f"duplicate image id {image_id}")
        out[image_id] = CocoImage(image_id, images_dir / name, height, width, ())
    return out


def _categories(
    data: dict[str, Any], wanted: Sequence[str | int], source: Path
) -> tuple[dict[int, str], set[int] | None]:
    """``({id: name} of all categories, ids kept or None for all)``."""
    names: dict[int, str] = {}
    for i, entry in enumerate(data.get("categories") or []):
        cid = _int_field(entry, "id", f"annotations {source}: categories[{i}]")
        names[cid] = str(entry.get("name", cid))
    if not wanted:
        return names, None
    by_name = {name: cid for cid, name in names.items()}
    keep: set[int] = set()
    for token in wanted:
        text = str(token).strip()
        if isinstance(token, int) or text.isdigit():
            cid = int(text)
            if cid not in names:
                raise InputError(
                    f"category id {cid}: not in {source} (ids: "
                    f"{', '.join(str(c) for c in sorted(names)) or 'none'})"
                )
            keep.add(cid)
        elif text in by_name:
            keep.add(by_name[text])
        else:
            raise UnknownNameError(unknown_name_message(f"category in {source}", text, by_name))
    return names, keep


def load_coco(
    images_dir: str | os.PathLike[str],
    annotations: str | os.PathLike[str],
    *,
    max_images: int | None = None,
    categories: Sequence[str | int] = (),
    include_crowd: bool = False,
    min_area: float = 0.0,
) -> CocoSet:
    """Read and check a COCO-format set; select the images and annotations to score.

    Args:
        images_dir: Folder the JSON's ``file_name`` entries are relative to.
        annotations: The instances JSON.
        max_images: Keep the first this many images (in the JSON's order) that
            have an annotation left after the other filters; ``None`` keeps all.
        categories: Category names or ids to keep; empty keeps all.
        include_crowd: Keep ``iscrowd`` annotations (one mask over a group of
            objects; left out by default).
        min_area: Leave out annotations whose ``area`` is below this (pixels).

    Returns:
        The selected set (masks are decoded later, image by image).

    Raises:
        InputError: missing or invalid JSON, malformed entries, an unknown
            category, no annotation left after the filters, or images the
            selection needs that are missing from ``images_dir`` (the message
            says how many and names the first few).
    """
    images_dir, source = Path(images_dir), Path(annotations)
    if not images_dir.is_dir():
        raise InputError(
            f"images {images_dir}: not a directory; pass the folder the JSON's file_name "
            "entries are relative to (e.g. coco/val2017)"
        )
    data = _read_json(source)
    images = _images(data, images_dir, source)
    names, keep_ids = _categories(data, categories, source)
    skipped = {"crowd": 0, "category": 0, "min_area": 0, "max_images": 0}
    kept: dict[int, list[dict[str, Any]]] = {}
    for i, ann in enumerate(data["annotations"]):
        where = f"annotations {source}: annotations[{i}]"
        image_id = _int_field(ann, "image_id", where)
        if image_id not in images:
            raise _fail(where, f"image_id {image_id} is not in 'images'")
        if "segmentation" not in ann:
            raise _fail(where, "no 'segmentation'; expected polygons or RLE (instances format)")
        if ann.get("iscrowd") and not include_crowd:
            skipped["crowd"] += 1
            continue
        if keep_ids is not None and ann.get("category_id") not in keep_ids:
            skipped["category"] += 1
            continue
        area = ann.get("area")
        if min_area > 0 and isinstance(area, (int, float)) and area < min_area:
            skipped["min_area"] += 1
            continue
        kept.setdefault(image_id, []).append(ann)
    selected = [
        CocoImage(im.id, im.path, im.height, im.width, tuple(kept[im.id]))
        for im in images.values()
        if im.id in kept
    ]
    if not selected:
        filters = ", ".join(f"{v} {k}" for k, v in skipped.items() if v) or "none"
        raise InputError(
            f"annotations {source}: no annotation to evaluate ({len(data['annotations'])} in "
            f"the file; left out by the filters: {filters}); relax --categories/--min-area "
            "or pass --include-crowd"
        )
    if max_images is not None and len(selected) > max_images:
        skipped["max_images"] = sum(len(im.annotations) for im in selected[max_images:])
        selected = selected[:max_images]
    missing = [im.path for im in selected if not im.path.is_file()]
    if missing:
        shown = ", ".join(p.name for p in missing[:_LIST_MISSING])
        more = " ..." if len(missing) > _LIST_MISSING else ""
        raise InputError(
            f"images {images_dir}: {len(missing)} of the {len(selected)} images to evaluate "
            f"are missing ({shown}{more}); check --coco-images, or pass --max-images to "
            "evaluate part of the set"
        )
    used = {ann.get("category_id") for im in selected for ann in im.annotations}
    description = f"COCO {source.name} ({images_dir})"
    left_out = {k: v for k, v in skipped.items() if v}
    log.info(
        "%s: %d images, %d annotations kept; left out: %s",
        description,
        len(selected),
        sum(len(im.annotations) for im in selected),
        left_out or "none",
    )
    return CocoSet(
        tuple(selected),
        {cid: name for cid, name in names.items() if cid in used},
        left_out,
        description,
    )


def read_image(path: Path, size: tuple[int, int]) -> np.ndarray:
    """``H×W×3`` uint8 RGB from an image file whose size must be ``size`` ``(H, W)``.

    Raises:
        ImageError: OpenCV cannot decode the file.
        InputError: its size differs from what the JSON declares.
    """
    # EXIF orientation is ignored: annotations are drawn on the stored pixels.
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION)
    if bgr is None:
        raise ImageError(
            f"{path}: OpenCV cannot decode it as an image; expected a JPEG/PNG (replace "
            "the file, or remove its entry from the annotations)"
        )
    if bgr.shape[:2] != tuple(size):
        raise InputError(
            f"{path}: image is {bgr.shape[0]}x{bgr.shape[1]} (HxW), the annotations say "
            f"{size[0]}x{size[1]}; the masks would not line up: fix the JSON's height/width "
            "or use the image it was made for"
        )
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


# ----------------------------------------------------------------------------- masks


def _from_runs(runs: Sequence[int], h: int, w: int, where: str) -> np.ndarray:
    """``H×W`` bool mask of column-major run lengths, background first."""
    try:
        return runs_to_mask(runs, (h, w))
    except InputError as e:
        raise _fail(where, str(e)) from e


def _polygon_runs(seg: list[Any], h: int, w: int, where: str) -> list[int] | None:
    """Run lengths of the union of an annotation's polygons (pycocotools rasterizes)."""
    # A polygon needs 3 points; pycocotools would read a 4-number list as a box.
    polys = [[float(v) for v in p] for p in seg if isinstance(p, list) and len(p) >= 6]
    if any(not math.isfinite(v) for p in polys for v in p):
        raise _fail(where, "polygon with a non-finite coordinate")
    if not polys:
        return None
    mask_api = _pycocotools_mask()
    merged = mask_api.merge(mask_api.frPyObjects(polys, h, w))
    return decode_counts(merged["counts"])


def decode_segmentation(ann: dict[str, Any], h: int, w: int) -> np.ndarray:
    """``H×W`` bool mask of an annotation: polygons, uncompressed or compressed RLE.

    RLE is decoded here (checked, and without pycocotools' NumPy 2 deprecation
    warnings); polygons are rasterized by pycocotools, as COCO's own tools do.

    Raises:
        InputError: a segmentation that is neither, or does not fit the image.
        BackendUnavailableError: polygons and no pycocotools.
    """
    where = f"annotation {ann.get('id', '?')}"
    seg = ann.get("segmentation")
    try:
        if isinstance(seg, list):
            runs = _polygon_runs(seg, h, w, where)
            return np.zeros((h, w), bool) if runs is None else _from_runs(runs, h, w, where)
        if not isinstance(seg, dict) or "counts" not in seg or "size" not in seg:
            raise _fail(
                where,
                f"segmentation: got {type(seg).__name__}, expected a list of polygons or an "
                "RLE {'size': [h, w], 'counts': ...}",
            )
        size = seg["size"]
        if not isinstance(size, list) or [int(v) for v in size] != [h, w]:
            raise _fail(where, f"RLE size {size!r} differs from the image's [{h}, {w}]")
        counts = seg["counts"]
        if isinstance(counts, list):  # uncompressed, as crowd annotations are
            if not all(isinstance(c, int) and not isinstance(c, bool) and c >= 0 for c in counts):
                raise _fail(where, "RLE counts: expected non-negative integers")
            return _from_runs(counts, h, w, where)
        if isinstance(counts, str):
            counts = counts.encode("ascii", errors="replace")
        if not isinstance(counts, bytes):
            raise _fail(where, f"RLE counts: got {type(counts).__name__}, expected str or list")
        try:
            runs = decode_counts(counts)
        except ValueError as e:
            raise _fail(where, f"malformed compressed RLE ({e})") from e
        return _from_runs(runs, h, w, where)
    except (TypeError, ValueError, OverflowError) as e:
        if isinstance(e, InputError):
            raise
        raise _fail(where, f"cannot decode its segmentation ({type(e).__name__}: {e})") from e


def _box(ann: dict[str, Any], mask: np.ndarray) -> list[float]:
    bbox = ann.get("bbox")
    if (
        isinstance(bbox, list)
        and len(bbox) == 4
        and all(isinstance(v, (int, float)) and math.isfinite(v) for v in bbox)
    ):
        x, y, w, h = (float(v) for v in bbox)
        if w >= 0 and h >= 0:
            return [x, y, x + w, y + h]
    if bbox is not None:
        raise InputError(
            f"annotation {ann.get('id', '?')}: bbox {bbox!r}, expected [x, y, width, height]"
        )
    x0, y0, x1, y1 = mask_box(mask)  # pycocotools' toBbox: the pixel squares' extent
    return [x0, y0, x1 + 1, y1 + 1]


def _area(ann: dict[str, Any], mask: np.ndarray) -> float:
    area = ann.get("area")
    if isinstance(area, (int, float)) and not isinstance(area, bool) and math.isfinite(area):
        return float(area)
    return float(np.count_nonzero(mask))
