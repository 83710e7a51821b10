"""Segment everything in image files: a COCO-style JSON of RLE masks and an overlay per image.

What ``samedge segment IMAGE... --everything -o OUT`` runs. Images are files
or folders (their image files, not recursive); one that OpenCV cannot decode
is skipped with a warning and counted. ``OUT`` is written atomically: it
appears complete, or not at all, and replaces only a folder this function
wrote (``--force``).

``OUT/segments.json`` is a COCO dataset: ``images`` (``file_name`` as given,
``height``, ``width``, ``overlay``), ``annotations`` (one per mask: compressed
RLE ``segmentation``, ``area``, ``bbox`` and the generator's
``predicted_iou``, ``stability_score``, ``point_coords`` and ``crop_box``) and
one category, ``object``. ``bbox`` follows COCO (``[x, y, width, height]`` of
the pixels' extent, as pycocotools' ``toBbox``); the generator's records use
SAM's (``width = x1 - x0``), one less. ``OUT/<stem>.png`` shows the masks
over the image, largest first so small ones stay visible.

Example:
    >>> from samedge.segment import SegmentConfig, segment_everything
    >>> report = segment_everything(["photos/"], "out/segments",
    ...                             SegmentConfig(model="samedge_tiny"))  # doctest: +SKIP
    >>> print(report.summary())                                          # doctest: +SKIP
    segmented 12 images: 318 masks (1 skipped: cannot be decoded) -> out/segments
"""

from __future__ import annotations

import colorsys
import datetime
import json
import logging
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from samedge._io import atomic_directory, atomic_write_bytes, atomic_write_text
from samedge._version import __version__
from samedge.errors import ImageError, InputError
from samedge.generator import GeneratorConfig, MaskGenerator, OutputMode
from samedge.masks import mask_to_coco_rle

__all__ = [
    "IMAGE_SUFFIXES",
    "SEGMENTS_FILE",
    "SegmentConfig",
    "SegmentReport",
    "draw_masks",
    "find_images",
    "segment_everything",
]

log = logging.getLogger(__name__)

#: The COCO JSON in the output folder; also what marks the folder as samedge's.
SEGMENTS_FILE = "segments.json"
#: File suffixes a folder's images are picked by (case-insensitive).
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")

ImageCallback = Callable[[int, int, Path, "int | None"], None]


@dataclass(frozen=True)
class SegmentConfig:
    """Which model runs :func:`segment_everything`, and how.

    Attributes:
        model: Model directory or built-in name: any registered model's export,
            SAM 2.1 / EdgeTAM included (decoded without memory, as
            ``SAM2AutomaticMaskGenerator`` does).
        backend: ``"auto"``, ``"onnxruntime"``, ``"openvino"`` or ``"tensorrt"``.
        precision: Fail unless the model directory holds this precision (``None``: any).
        device: Backend device (``None``: the backend's choice).
        generator: The mask generator's parameters (SAM's defaults). Its
            ``output_mode`` stays :attr:`OutputMode.BINARY_MASK`: the masks are
            drawn, then written as COCO RLE.
        force: Replace an output folder an earlier run wrote.
    """

    model: str = "samedge_tiny"
    backend: str = "auto"
    precision: str | None = None
    device: str | None = None
    generator: GeneratorConfig = field(default_factory=GeneratorConfig)
    force: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.generator, GeneratorConfig):
            raise InputError(
                f"generator: got {type(self.generator).__name__}, expected a GeneratorConfig"
            )
        if self.generator.output_mode is not OutputMode.BINARY_MASK:
            raise InputError(
                f"generator.output_mode: got {self.generator.output_mode}, expected "
                "OutputMode.BINARY_MASK (segments.json always holds COCO RLE; leave it unset)"
            )


@dataclass(frozen=True)
class SegmentReport:
    """What :func:`segment_everything` did.

    Attributes:
        output: The folder written.
        images: Images segmented.
        masks: Masks written, over all images.
        skipped: ``(path, reason)`` of each image that could not be decoded.
        seconds: Wall time of the whole run (model loading included).
    """

    output: Path
    images: int
    masks: int
    skipped: tuple[tuple[Path, str], ...]
    seconds: float

    def summary(self) -> str:
        """One line for the CLI."""
        skipped = f" ({len(self.skipped)} skipped: cannot be decoded)" if self.skipped else ""
        return (
            f"segmented {self.images} image{'s' if self.images != 1 else ''}: {self.masks} "
            f"masks{skipped} in {self.seconds:.1f} s -> {self.output}"
        )


def find_images(inputs: Sequence[str | os.PathLike[str]]) -> list[Path]:
    """Image files named by ``inputs``: files as given, folders by :data:`IMAGE_SUFFIXES`.

    Raises:
        InputError: nothing given, a path that does not exist, or no image at all.
    """
    if isinstance(inputs, (str, os.PathLike)):
        inputs = [inputs]
    if not inputs:
        raise InputError("images: got none, expected image files or folders")
    found: list[Path] = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            found += sorted(
                p for p in path.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
            )
        elif path.is_file():
            found.append(path)
        else:
            raise InputError(f"image {path}: no such file or folder")
    if not found:
        suffixes = ", ".join(IMAGE_SUFFIXES)
        raise InputError(
            f"images: no image files in {', '.join(str(i) for i in inputs)} (looked for {suffixes})"
        )
    return found


def _palette(n: int) -> list[tuple[int, int, int]]:
    """``n`` well-spread BGR colours (golden-ratio hues)."""
    colors = []
    for i in range(n):
        r, g, b = colorsys.hsv_to_rgb((i * 0.618033988749895) % 1.0, 0.75, 1.0)
        colors.append((int(b * 255), int(g * 255), int(r * 255)))
    return colors


def draw_masks(image: np.ndarray, masks: Sequence[np.ndarray], alpha: float = 0.5) -> np.ndarray:
    """Overlay masks in distinct colours on an RGB image; returns a BGR image.

    Larger masks are drawn first so smaller ones stay visible on top; each
    gets a thin outline.

    Raises:
        ImageError: ``image`` is not ``H×W×3`` uint8, or a mask's size differs from it.
    """
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3:
        raise ImageError(
            f"draw_masks: got {getattr(image, 'dtype', type(image).__name__)} "
            f"{getattr(image, 'shape', '')}, expected an H×W×3 uint8 RGB image"
        )
    out = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
    order = sorted(range(len(masks)), key=lambda i: -int(np.count_nonzero(masks[i])))
    colors = _palette(len(masks))
    for i in order:
        mask = masks[i]
        if mask.shape != out.shape[:2]:
            raise ImageError(f"draw_masks: mask {i} is {mask.shape}, the image {out.shape[:2]}")
        tint = np.empty_like(out)
        tint[:] = colors[i]
        blended = cv2.addWeighted(out, 1.0 - alpha, tint, alpha, 0.0)
        np.copyto(out, blended, where=mask[..., None])
        contours, _ = cv2.findContours(
            mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE
        )
        cv2.drawContours(out, contours, -1, colors[i], 1, cv2.LINE_AA)
    return out


def _overlay_name(path: Path, taken: set[str]) -> str:
    name = f"{path.stem}.png"
    k = 2
    while name in taken:
        name = f"{path.stem}-{k}.png"
        k += 1
    taken.add(name)
    return name


def _annotation(record: dict[str, Any], ann_id: int, image_id: int) -> dict[str, Any]:
    x, y, w, h = record["bbox"]
    return {
        "id": ann_id,
        "image_id": image_id,
        "category_id": 1,
        "segmentation": record["segmentation"],
        "area": record["area"],
        # COCO's extent: SAM's width/height are the inclusive box's index differences.
        "bbox": [x, y, w + 1, h + 1],
        "iscrowd": 0,
        "predicted_iou": round(record["predicted_iou"], 6),
        "stability_score": round(record["stability_score"], 6),
        "point_coords": record["point_coords"],
        "crop_box": record["crop_box"],
    }


def segment_everything(
    inputs: Sequence[str | os.PathLike[str]],
    out: str | os.PathLike[str],
    config: SegmentConfig | None = None,
    *,
    on_image: ImageCallback | None = None,
) -> SegmentReport:
    """Generate every mask of each image and write ``OUT/segments.json`` and the overlays.

    Args:
        inputs: Image files and/or folders of images.
        out: The output folder (created; replaced only with ``config.force`` and
            only if an earlier run wrote it).
        config: Model, backend and generator parameters.
        on_image: Called after each image with ``(done, total, path, masks)``;
            ``masks`` is ``None`` for a skipped image (a progress bar's hook).

    Returns:
        What was written and what was skipped.

    Raises:
        InputError: no images, a path that does not exist, an unusable ``out``.
        OutputExistsError: ``out`` exists and is not a folder this wrote (or no ``force``).
        ModelDirError: the model cannot be opened.
    """
    from samedge._image_prompter import open_prompter

    cfg = config if config is not None else SegmentConfig()
    start = time.perf_counter()
    paths = find_images(inputs)
    images: list[dict[str, Any]] = []
    annotations: list[dict[str, Any]] = []
    skipped: list[tuple[Path, str]] = []
    taken: set[str] = set()
    with (
        atomic_directory(out, force=cfg.force, marker=SEGMENTS_FILE) as staging,
        open_prompter(cfg.model, cfg.backend, cfg.precision, cfg.device) as prompter,
    ):
        generator = MaskGenerator(prompter, cfg.generator)
        log.info(
            "segmenting %d image(s) with %s on %s (%d points per decoder call)",
            len(paths),
            cfg.model,
            prompter.backend_name,
            generator.points_per_batch,
        )
        for done, path in enumerate(paths, 1):
            bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
            if bgr is None:
                reason = "OpenCV cannot decode it as an image"
                log.warning("skipped %s: %s", path, reason)
                skipped.append((path, reason))
                if on_image is not None:
                    on_image(done, len(paths), path, None)
                continue
            rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
            records = generator.generate(rgb)
            image_id = len(images) + 1
            overlay = _overlay_name(path, taken)
            masks = [r["segmentation"] for r in records]
            rles = mask_to_coco_rle(np.stack(masks)) if masks else []
            for record, rle in zip(records, rles, strict=True):
                record["segmentation"] = rle
            ok, png = cv2.imencode(".png", draw_masks(rgb, masks))
            if not ok:  # pragma: no cover - OpenCV encodes any uint8 BGR image
                raise ImageError(f"{path}: the overlay could not be encoded as PNG")
            atomic_write_bytes(Path(staging) / overlay, png.tobytes())
            images.append(
                {
                    "id": image_id,
                    "file_name": str(path),
                    "height": int(rgb.shape[0]),
                    "width": int(rgb.shape[1]),
                    "overlay": overlay,
                }
            )
            first = len(annotations) + 1
            annotations += [_annotation(r, first + k, image_id) for k, r in enumerate(records)]
            log.info("%s: %d masks", path, len(records))
            if on_image is not None:
                on_image(done, len(paths), path, len(records))
        coco = {
            "info": {
                "description": "samedge segment --everything",
                "version": __version__,
                "model": cfg.model,
                "backend": prompter.backend_name,
                "date_created": datetime.datetime.now(datetime.timezone.utc).isoformat(
                    timespec="seconds"
                ),
            },
            "images": images,
            "annotations": annotations,
            "categories": [{"id": 1, "name": "object", "supercategory": "object"}],
        }
        atomic_write_text(Path(staging) / SEGMENTS_FILE, json.dumps(coco) + "\n")
    return SegmentReport(
        output=Path(out),
        images=len(images),
        masks=len(annotations),
        skipped=tuple(skipped),
        seconds=time.perf_counter() - start,
    )
