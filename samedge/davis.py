"""DAVIS-format video object segmentation folders: read, write, and the procedural held-out set.

The layout is DAVIS 2017's (and YouTube-VOS's, MOSE's)::

    ROOT/JPEGImages/<sequence>/00000.jpg ...   RGB frames
    ROOT/Annotations/<sequence>/00000.png ...  one label map per frame
    ROOT/ImageSets/<split>.txt                 optional: sequence names, one a line

DAVIS's own release adds a resolution level (``JPEGImages/480p/<sequence>``)
and keeps its lists under ``ImageSets/2017/``; both are found. Label maps are
8-bit palette PNGs (8-bit grayscale ones are read too): index 0 is background,
:data:`VOID_LABEL` (255) is "void" (ignored when scoring), any other index is
an object. As DAVIS 2017's semi-supervised task does, the objects of a sequence
are the ones in its first frame's annotation.

Reading needs OpenCV only: OpenCV decodes a palette PNG to colours, which are
mapped back to indices through the file's own palette (``PLTE`` chunk); only a
palette that gives two indices in use the same colour needs Pillow. Writing
makes palette PNGs with DAVIS's palette (the PASCAL VOC colour map) directly.

:func:`write_moving_scenes` writes held-out sequences of
:class:`samedge.scenes.MovingScene` (seeds from :data:`HELDOUT_VIDEO_SEED` on,
the held-out photo backgrounds) with a sidecar ``Events/<sequence>.json`` per
sequence (:class:`SequenceEvents`) that labels each object's frames with what
happens to it (:data:`EVENTS`), derived from the scene's ground truth.

Example:
    >>> from samedge.davis import read_davis, write_moving_scenes
    >>> write_moving_scenes("heldout_davis", sequences=2, frames=24)  # doctest: +SKIP
    >>> data = read_davis("heldout_davis")                              # doctest: +SKIP
    >>> seq = data.sequences[0]; frame = seq.frame(0)                   # doctest: +SKIP
    >>> frame.image.shape, seq.object_ids()                             # doctest: +SKIP
    ((240, 320, 3), (1, 2, 3, 4))
"""

from __future__ import annotations

import difflib
import json
import logging
import os
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from samedge._label_png import davis_palette, encode_label_png, read_label_png, write_label_png
from samedge.errors import ImageError, InputError, SamedgeError

__all__ = [
    "EVENTS",
    "HELDOUT_VIDEO_SEED",
    "MANIFEST",
    "VOID_LABEL",
    "DavisDataset",
    "DavisFrame",
    "DavisSequence",
    "SequenceEvents",
    "davis_palette",
    "read_davis",
    "read_label_png",
    "scene_events",
    "write_davis",
    "write_label_png",
    "write_moving_scenes",
]

log = logging.getLogger(__name__)

#: Annotation index of "void" pixels (object borders DAVIS leaves undecided).
VOID_LABEL = 255
#: What can happen to an object in a frame, as :class:`SequenceEvents` labels it:
#: ``crossing``: its outline overlaps another object's while most of it stays visible;
#: ``occlusion``: objects in front hide at least half of what is inside the frame;
#: ``after_occlusion``: visible again, within the window after an occlusion;
#: ``out_of_frame``: wholly outside the frame after having been seen;
#: ``reentry``: back inside, within the window after being out of frame.
EVENTS: tuple[str, ...] = ("crossing", "occlusion", "after_occlusion", "out_of_frame", "reentry")
#: File at the root of a folder samedge wrote (:func:`write_davis`): what it holds, how it was made.
MANIFEST = "samedge_davis.json"
#: First :class:`~samedge.scenes.MovingScene` seed of the held-out sequences
#: (sequence ``i`` uses ``seed + i``). Training on moving scenes must draw its
#: seeds below this.
HELDOUT_VIDEO_SEED = 900_000

_IMAGE_SUFFIXES = (".jpg", ".jpeg")
# How many names an error message lists before "and N more".
_LIST = 3
# An object counts as occluded when less than this share of it (inside the frame) shows.
_OCCLUDED_VISIBLE = 0.5


def _names(items: Sequence[str], limit: int = _LIST) -> str:
    shown = ", ".join(items[:limit])
    return shown + (f" and {len(items) - limit} more" if len(items) > limit else "")


# ----------------------------------------------------------------------------- events


@dataclass(frozen=True)
class SequenceEvents:
    """What happens to each object of one sequence, frame by frame (the sidecar JSON).

    Attributes:
        frames: Frame names, in order (the annotation files' stems).
        objects: ``{label: per-frame events}``: for each frame a tuple of
            :data:`EVENTS` names (empty: nothing happens to it).
        window: Frames after an occlusion or a re-entry labelled
            ``after_occlusion`` / ``reentry``.
        source: How the sequence was made (scene seed, options), for provenance.
    """

    frames: tuple[str, ...]
    objects: Mapping[int, tuple[tuple[str, ...], ...]]
    window: int = 15
    source: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        n = len(self.frames)
        for label, per_frame in self.objects.items():
            if len(per_frame) != n:
                raise InputError(
                    f"events of object {label}: got {len(per_frame)} frames, expected {n}"
                )
            for names in per_frame:
                bad = [e for e in names if e not in EVENTS]
                if bad:
                    raise InputError(
                        f"events of object {label}: got {bad[0]!r}, expected one of {EVENTS}"
                    )
        if isinstance(self.window, bool) or not isinstance(self.window, int) or self.window < 1:
            raise InputError(f"window: got {self.window!r}, expected an int >= 1")

    def at(self, label: int, index: int) -> tuple[str, ...]:
        """Events of object ``label`` in frame ``index`` (empty for an unknown object)."""
        per_frame = self.objects.get(label)
        return per_frame[index] if per_frame is not None else ()

    def to_dict(self) -> dict[str, Any]:
        """JSON form: per object, the frame indices of each event (compact)."""
        objects: dict[str, dict[str, list[int]]] = {}
        for label, per_frame in sorted(self.objects.items()):
            objects[str(label)] = {
                e: [i for i, names in enumerate(per_frame) if e in names] for e in EVENTS
            }
        return {
            "frames": list(self.frames),
            "window": self.window,
            "events": list(EVENTS),
            "objects": objects,
            "source": dict(self.source),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], where: str = "events") -> SequenceEvents:
        """Read :meth:`to_dict`'s form back.

        Raises:
            InputError: a missing key, an unknown event or a frame index out of range.
        """
        try:
            frames = tuple(str(f) for f in data["frames"])
            window = data.get("window", 15)
            objects: dict[int, tuple[tuple[str, ...], ...]] = {}
            for key, by_event in data["objects"].items():
                per_frame: list[list[str]] = [[] for _ in frames]
                for event, indices in by_event.items():
                    if event not in EVENTS:
                        raise InputError(
                            f"{where}: object {key}: got event {event!r}, expected one of {EVENTS}"
                        )
                    for i in indices:
                        if (
                            isinstance(i, bool)
                            or not isinstance(i, int)
                            or not 0 <= i < len(frames)
                        ):
                            raise InputError(
                                f"{where}: object {key}, {event}: got frame {i!r}, expected "
                                f"an index in 0..{len(frames) - 1}"
                            )
                        per_frame[i].append(event)
                objects[int(key)] = tuple(
                    tuple(e for e in EVENTS if e in names) for names in per_frame
                )
            return cls(frames, objects, window, dict(data.get("source", {})))
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            if isinstance(e, InputError):
                raise
            raise InputError(
                f"{where}: not a samedge events file ({type(e).__name__}: {e}); expected "
                "what samedge.davis.write_moving_scenes writes"
            ) from e


def scene_events(
    layouts: Sequence[Sequence[Any]],
    object_ids: Iterable[int],
    window: int = 15,
) -> dict[int, tuple[tuple[str, ...], ...]]:
    """Per-frame :data:`EVENTS` of scene objects from their ground-truth layouts.

    Args:
        layouts: Per frame, the :class:`~samedge.scenes.ObjectLayout` of every
            object of :meth:`~samedge.scenes.MovingScene.frame_layout`.
        object_ids: Scene ids of the objects to label.
        window: Frames after an occlusion or a re-entry that count as
            ``after_occlusion`` / ``reentry``.

    Returns:
        ``{object id: per-frame event names}``.

    Example:
        >>> from samedge.scenes import ObjectLayout as L
        >>> frames = [[L(1, 100, 100)], [], [L(1, 100, 100)], [L(1, 100, 30, (2,), (2,))]]
        >>> scene_events(frames, [1], window=2)[1]
        ((), ('out_of_frame',), ('reentry',), ('occlusion',))
    """
    out: dict[int, tuple[tuple[str, ...], ...]] = {}
    for oid in object_ids:
        seen = False
        last_out = last_hidden = -(10**9)
        per_frame: list[tuple[str, ...]] = []
        for t, frame in enumerate(layouts):
            entry = next((o for o in frame if o.object_id == oid), None)
            names: list[str] = []
            if entry is None or entry.footprint_px == 0:
                if seen:
                    names.append("out_of_frame")
                    last_out = t
            else:
                hidden = bool(entry.covered_by) and (
                    entry.visible_px < _OCCLUDED_VISIBLE * entry.footprint_px
                )
                if hidden:
                    names.append("occlusion")
                    last_hidden = t
                else:
                    if entry.overlaps:
                        names.append("crossing")
                    if t - last_hidden <= window:
                        names.append("after_occlusion")
                    if t - last_out <= window:
                        names.append("reentry")
                if entry.visible_px > 0:
                    seen = True
            per_frame.append(tuple(e for e in EVENTS if e in names))
        out[int(oid)] = tuple(per_frame)
    return out


# ----------------------------------------------------------------------------- reading


@dataclass(frozen=True)
class DavisFrame:
    """One frame of a sequence.

    Attributes:
        name: The file stem (``"00000"``).
        image: ``H×W×3`` uint8 RGB.
        labels: ``H×W`` uint8 annotation (0 background, :data:`VOID_LABEL` void).
    """

    name: str
    image: np.ndarray
    labels: np.ndarray

    def mask(self, label: int) -> np.ndarray:
        """``H×W`` bool mask of object ``label``."""
        return self.labels == label

    @property
    def void(self) -> np.ndarray:
        """``H×W`` bool: pixels DAVIS leaves out of scoring."""
        return self.labels == VOID_LABEL


@dataclass(frozen=True)
class DavisSequence:
    """A sequence's files, read one frame at a time (nothing is decoded up front).

    Attributes:
        name: The sequence folder's name.
        images: JPEG frames, in order.
        annotations: Label PNGs, one per frame, same stems.
        events: The sidecar's per-frame events, if the folder has one.
    """

    name: str
    images: tuple[Path, ...]
    annotations: tuple[Path, ...]
    events: SequenceEvents | None = None

    def __len__(self) -> int:
        return len(self.images)

    @property
    def frame_names(self) -> tuple[str, ...]:
        return tuple(p.stem for p in self.images)

    def labels(self, index: int) -> np.ndarray:
        """Annotation of frame ``index`` (``H×W`` uint8)."""
        return read_label_png(self.annotations[index])

    def frame(self, index: int) -> DavisFrame:
        """Read frame ``index`` (image and annotation).

        Raises:
            ImageError: the JPEG cannot be decoded.
            InputError: image and annotation differ in size, or a bad annotation.
        """
        path = self.images[index]
        bgr = cv2.imread(str(path), cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION)
        if bgr is None:
            raise ImageError(f"{path}: OpenCV cannot decode it; expected a JPEG frame")
        labels = self.labels(index)
        if labels.shape != bgr.shape[:2]:
            raise InputError(
                f"{self.annotations[index]}: annotation is {labels.shape[0]}x{labels.shape[1]} "
                f"(HxW), its frame {path.name} is {bgr.shape[0]}x{bgr.shape[1]}; they must "
                "match pixel for pixel"
            )
        return DavisFrame(path.stem, cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), labels)

    def frames(self) -> Iterator[DavisFrame]:
        """Frames in order, decoded as they are asked for (a stream, not a video in memory)."""
        for i in range(len(self)):
            yield self.frame(i)

    def object_ids(self) -> tuple[int, ...]:
        """Objects of the sequence: the labels of its first annotation (not 0, not void)."""
        labels = np.unique(self.labels(0))
        return tuple(int(v) for v in labels if v not in (0, VOID_LABEL))


@dataclass(frozen=True)
class DavisDataset:
    """A DAVIS-format folder: its sequences, checked for matching files.

    Attributes:
        root: The folder.
        sequences: The sequences, in list (or name) order.
        split: The ImageSets list used, if any.
    """

    root: Path
    sequences: tuple[DavisSequence, ...]
    split: str | None = None

    def __len__(self) -> int:
        return len(self.sequences)

    def __iter__(self) -> Iterator[DavisSequence]:
        return iter(self.sequences)

    @property
    def frames(self) -> int:
        return sum(len(s) for s in self.sequences)


def _level(root: Path, kind: str, resolution: str | None) -> Path:
    base = root / kind
    if not base.is_dir():
        raise InputError(
            f"{root}: no {kind}/ folder; expected a DAVIS-format folder with "
            "JPEGImages/<sequence>/*.jpg and Annotations/<sequence>/*.png"
        )
    if resolution is not None:
        level = base / resolution
        if not level.is_dir():
            found = sorted(p.name for p in base.iterdir() if p.is_dir())
            raise InputError(
                f"{root}: no {kind}/{resolution}/ folder (found {_names(found) or 'none'}); "
                "pass the resolution folder that exists"
            )
        return level
    return base


def _find_split(root: Path, split: str) -> Path:
    given = Path(split)
    if given.suffix == ".txt" and given.is_file():
        return given
    for cand in (root / "ImageSets" / f"{split}.txt", root / "ImageSets" / "2017" / f"{split}.txt"):
        if cand.is_file():
            return cand
    found = (
        sorted(p.stem for p in (root / "ImageSets").rglob("*.txt"))
        if (root / "ImageSets").is_dir()
        else []
    )
    raise InputError(
        f"{root}: split {split!r}: no ImageSets/{split}.txt or ImageSets/2017/{split}.txt "
        f"(lists found: {_names(found) or 'none'}); pass one of them or a .txt path"
    )


def _files(folder: Path, suffixes: tuple[str, ...], kind: str) -> list[Path]:
    """The folder's files of ``suffixes``; anything else in it (but hidden files) is refused."""
    wanted: list[Path] = []
    other: list[Path] = []
    for p in sorted(folder.iterdir()):
        if p.name.startswith("."):
            continue
        (wanted if p.is_file() and p.suffix.lower() in suffixes else other).append(p)
    if other:
        raise InputError(
            f"{folder}: holds {len(other)} entr{'y' if len(other) == 1 else 'ies'} that "
            f"{'is' if len(other) == 1 else 'are'} not {kind} ({_names([p.name for p in other])}); "
            f"a sequence folder holds only {kind} files: move the others out"
        )
    return wanted


def _read_sequence(name: str, images_dir: Path, ann_dir: Path, events_dir: Path) -> DavisSequence:
    folder = images_dir / name
    if not folder.is_dir():
        raise InputError(
            f"sequence {name!r}: no folder {folder}; the list names a missing sequence"
        )
    ann_folder = ann_dir / name
    if not ann_folder.is_dir():
        raise InputError(
            f"sequence {name!r}: no annotations folder {ann_folder}; every sequence needs "
            "Annotations/<sequence>/ with one PNG per frame"
        )
    images = _files(folder, _IMAGE_SUFFIXES, "JPEG (.jpg)")
    annotations = _files(ann_folder, (".png",), "PNG (.png)")
    if not images:
        raise InputError(f"sequence {name!r}: {folder} holds no .jpg frames")
    by_stem = {p.stem: p for p in annotations}
    missing = [p.stem for p in images if p.stem not in by_stem]
    extra = sorted(set(by_stem) - {p.stem for p in images})
    if missing or extra:
        what = []
        if missing:
            what.append(f"{len(missing)} frame(s) without an annotation ({_names(missing)})")
        if extra:
            what.append(f"{len(extra)} annotation(s) without a frame ({_names(extra)})")
        raise InputError(
            f"sequence {name!r}: {' and '.join(what)}; expected one Annotations/{name}/<frame>.png "
            f"per JPEGImages/{name}/<frame>.jpg, same names"
        )
    events = None
    sidecar = events_dir / f"{name}.json"
    if sidecar.is_file():
        try:
            data = json.loads(sidecar.read_text())
        except (OSError, ValueError) as e:
            raise InputError(f"{sidecar}: cannot be read as JSON ({e})") from e
        events = SequenceEvents.from_dict(data, str(sidecar))
        if events.frames != tuple(p.stem for p in images):
            raise InputError(
                f"{sidecar}: lists {len(events.frames)} frames that do not match the "
                f"sequence's {len(images)}; rewrite the sequence and its events together"
            )
    return DavisSequence(name, tuple(images), tuple(by_stem[p.stem] for p in images), events)


def read_davis(
    root: str | os.PathLike[str],
    *,
    split: str | None = None,
    sequences: Sequence[str] | None = None,
    resolution: str | None = None,
) -> DavisDataset:
    """Open a DAVIS-format folder and check that its files match (no frame is decoded).

    Args:
        root: The folder holding ``JPEGImages/`` and ``Annotations/``.
        split: An ImageSets list: a name (``"val"`` finds ``ImageSets/val.txt``
            or ``ImageSets/2017/val.txt``) or a ``.txt`` path; ``None``: every
            sequence folder of ``JPEGImages/``.
        sequences: Only these sequences (after ``split``), in this order.
        resolution: A resolution level (DAVIS: ``"480p"``); ``None`` uses
            ``480p`` when both folders have it, else none.

    Returns:
        The dataset; its sequences read frames lazily.

    Raises:
        InputError: no such folder, no sequences, a listed sequence missing,
            frames without annotations (or the reverse), or files of other kinds.

    Example:
        >>> data = read_davis("DAVIS", split="val")   # doctest: +SKIP
        >>> len(data), data.sequences[0].name         # doctest: +SKIP
        (30, 'bike-packing')
    """
    root = Path(root)
    if not root.is_dir():
        raise InputError(
            f"--video {root}: {'is a file' if root.exists() else 'no such folder'}; expected a "
            "DAVIS-format folder (JPEGImages/<sequence>/*.jpg, Annotations/<sequence>/*.png)"
        )
    if (
        resolution is None
        and (root / "JPEGImages" / "480p").is_dir()
        and (root / "Annotations" / "480p").is_dir()
    ):
        resolution = "480p"
    images_dir = _level(root, "JPEGImages", resolution)
    ann_dir = _level(root, "Annotations", resolution)
    if split is not None:
        listed = _find_split(root, split).read_text().split()
        names = list(dict.fromkeys(listed))
    else:
        names = sorted(p.name for p in images_dir.iterdir() if p.is_dir() and p.name[0] != ".")
        stray = sorted(p.name for p in images_dir.iterdir() if p.is_file() and p.name[0] != ".")
        if stray:
            raise InputError(
                f"{images_dir}: holds files ({_names(stray)}) beside the sequence folders; "
                "expected only JPEGImages/<sequence>/ folders"
            )
    if sequences is not None:
        unknown = [s for s in sequences if s not in names]
        if unknown:
            close = difflib.get_close_matches(unknown[0], names, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise InputError(
                f"sequences: {unknown[0]!r} is not in {root}{hint}; it has {_names(names)}"
            )
        names = list(sequences)
    if not names:
        raise InputError(
            f"{root}: no sequences (JPEGImages/ has no sequence folders"
            f"{' listed by the split' if split else ''}); expected JPEGImages/<sequence>/*.jpg"
        )
    seqs = tuple(_read_sequence(n, images_dir, ann_dir, root / "Events") for n in names)
    return DavisDataset(root, seqs, split)


# ----------------------------------------------------------------------------- writing


def _write_sequence(
    staging: Path,
    name: str,
    frames: Iterable[tuple[np.ndarray, np.ndarray]],
    quality: int,
) -> list[str]:
    img_dir = staging / "JPEGImages" / name
    ann_dir = staging / "Annotations" / name
    img_dir.mkdir(parents=True)
    ann_dir.mkdir(parents=True)
    stems = []
    for i, (image, labels) in enumerate(frames):
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ImageError(
                f"sequence {name!r} frame {i}: got {image.dtype} {image.shape}, expected uint8 RGB"
            )
        if labels.shape != image.shape[:2]:
            raise InputError(
                f"sequence {name!r} frame {i}: labels {labels.shape} differ from the image's "
                f"{image.shape[:2]}"
            )
        stem = f"{i:05d}"
        ok, jpg = cv2.imencode(
            ".jpg", cv2.cvtColor(image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality]
        )
        if not ok:
            raise SamedgeError(f"sequence {name!r} frame {i}: OpenCV could not encode the JPEG")
        (img_dir / f"{stem}.jpg").write_bytes(jpg.tobytes())
        (ann_dir / f"{stem}.png").write_bytes(encode_label_png(labels))
        stems.append(stem)
    if not stems:
        raise InputError(f"sequence {name!r}: no frames; a sequence needs at least one")
    return stems


def _write_all(
    staging: Path,
    sequences: Iterable[tuple[str, Iterable[tuple[np.ndarray, np.ndarray]]]],
    events_of: Callable[[str], SequenceEvents | None],
    manifest: Mapping[str, Any],
    quality: int,
) -> list[str]:
    """Write every sequence into ``staging``; a sequence's events are asked for after its frames."""
    names: list[str] = []
    for name, frames in sequences:
        if not name or name != Path(name).name or name.startswith("."):
            raise InputError(f"sequence name: got {name!r}, expected a plain folder name")
        if name in names:
            raise InputError(f"sequence name: {name!r} given twice")
        stems = _write_sequence(staging, name, frames, quality)
        names.append(name)
        ev = events_of(name)
        if ev is not None:
            if ev.frames != tuple(stems):
                raise InputError(
                    f"events of {name!r}: {len(ev.frames)} frames, the sequence has {len(stems)}"
                )
            (staging / "Events").mkdir(exist_ok=True)
            (staging / "Events" / f"{name}.json").write_text(json.dumps(ev.to_dict()) + "\n")
    if not names:
        raise InputError("sequences: none given; a DAVIS folder needs at least one")
    (staging / "ImageSets").mkdir()
    (staging / "ImageSets" / "all.txt").write_text("\n".join(names) + "\n")
    from samedge._version import __version__

    record = {"samedge": __version__, "sequences": names, **dict(manifest)}
    (staging / MANIFEST).write_text(json.dumps(record, indent=2) + "\n")
    return names


def write_davis(
    out: str | os.PathLike[str],
    sequences: Iterable[tuple[str, Iterable[tuple[np.ndarray, np.ndarray]]]],
    *,
    events: Mapping[str, SequenceEvents] | None = None,
    manifest: Mapping[str, Any] | None = None,
    force: bool = False,
    quality: int = 95,
) -> Path:
    """Write sequences of ``(RGB image, label map)`` frames as a DAVIS-format folder.

    The folder is assembled beside ``out`` and moved into place at the end, so
    an interrupted write leaves nothing half-written (and ``out`` as it was).
    Frames are named ``00000.jpg``/``00000.png`` ...; ``ImageSets/all.txt``
    lists the sequences; :data:`MANIFEST` marks the folder as samedge's.

    Args:
        out: The folder to create.
        sequences: ``(name, frames)`` pairs; frames are ``(H×W×3 uint8 RGB,
            H×W uint8 labels)``, consumed one at a time.
        events: Sidecar events per sequence name (``Events/<name>.json``);
            their frame names must be the written ones (``00000`` ...).
        manifest: Extra provenance for :data:`MANIFEST`.
        force: Replace an existing folder that samedge wrote.
        quality: JPEG quality.

    Returns:
        ``out``.

    Raises:
        OutputExistsError: ``out`` is not empty and ``force`` is false, or it
            was not written by samedge.
        InputError: a sequence without frames, a bad name, mismatched sizes,
            or events for a sequence not written.

    Example:
        >>> frames = [(np.zeros((48, 64, 3), np.uint8), np.ones((48, 64), np.uint8))] * 3
        >>> write_davis("tiny_davis", [("one", frames)])  # doctest: +SKIP
        PosixPath('tiny_davis')
    """
    from samedge._io import atomic_directory

    out = Path(out)
    events = dict(events or {})
    with atomic_directory(out, force=force, marker=MANIFEST) as staging:
        names = _write_all(staging, sequences, events.get, manifest or {}, quality)
        unknown = sorted(set(events) - set(names))
        if unknown:
            raise InputError(f"events: for sequences not written ({_names(unknown)})")
    log.info("wrote %d sequences to %s", len(names), out)
    return out


def write_moving_scenes(
    out: str | os.PathLike[str],
    *,
    sequences: int = 20,
    seed: int = HELDOUT_VIDEO_SEED,
    frames: int = 72,
    size: tuple[int, int] = (240, 320),
    num_objects: int = 4,
    occluders: int = 1,
    reentry: float = 0.75,
    fps: float = 12.0,
    window: int = 15,
    photos: bool | None = None,
    force: bool = False,
) -> Path:
    """Write held-out procedural sequences as a DAVIS folder, with per-frame events.

    Sequence ``i`` (named ``scene_<seed + i>``) is
    :class:`~samedge.scenes.MovingScene` ``(seed + i)`` with ``reentry`` and
    ``occluders``, over the held-out photo backgrounds. Objects keep one label
    for the whole sequence (also across an exit and re-entry): those on screen
    in the first frame get 1..K by id, later arrivals the next ones (so they
    are annotated, but are not prompted objects). ``Events/<name>.json``
    (:class:`SequenceEvents`) labels every object's frames from the scene's
    ground truth (:meth:`~samedge.scenes.MovingScene.frame_layout`, see
    :func:`scene_events`).

    Args:
        out: Folder to create.
        sequences: How many sequences.
        seed: Scene seed of the first; keep it at or above
            :data:`HELDOUT_VIDEO_SEED`, which training stays below.
        frames: Frames per sequence.
        size: ``(height, width)``.
        num_objects: Object slots of each scene.
        occluders: Large shapes passing in front of the others.
        reentry: Chance that an object which left comes back.
        fps: The scene's frame rate (lower: faster motion per frame).
        window: Frames after an occlusion/exit labelled ``after_occlusion``/``reentry``.
        photos: Use the held-out photo backgrounds (needs scikit-image);
            ``None``: when scikit-image is installed.
        force: Replace a folder this function wrote before.

    Returns:
        ``out``.

    Example:
        >>> write_moving_scenes("heldout_davis", sequences=20)  # doctest: +SKIP
        PosixPath('heldout_davis')
    """
    from samedge.scenes import MovingScene, photo_backgrounds

    for what, value, low in (("sequences", sequences, 1), ("frames", frames, 2)):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise InputError(f"{what}: got {value!r}, expected an int >= {low}")
    if seed < HELDOUT_VIDEO_SEED:
        log.warning(
            "seed %d is below HELDOUT_VIDEO_SEED (%d): these scenes may be ones training sees",
            seed,
            HELDOUT_VIDEO_SEED,
        )
    backgrounds = None
    if photos is not False:
        try:
            backgrounds = photo_backgrounds("heldout", max_side=384)
        except SamedgeError:
            if photos:
                raise
            log.info("scikit-image not installed: procedural backgrounds only")
    options = {
        "size": list(size),
        "num_objects": num_objects,
        "occluders": occluders,
        "reentry": reentry,
        "fps": fps,
    }
    events: dict[str, SequenceEvents] = {}

    def render(i: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        scene_seed = seed + i
        cam = MovingScene(
            seed=scene_seed,
            size=size,
            num_objects=num_objects,
            fps=fps,
            reentry=reentry,
            occluders=occluders,
            backgrounds=backgrounds,
        )
        label_of: dict[int, int] = {}
        layouts = []
        for t in range(frames):
            scene, layout = cam.frame_layout(t)
            layouts.append(layout)
            for oid in scene.ids if t else sorted(scene.ids):
                if oid not in label_of:
                    if len(label_of) >= VOID_LABEL - 1:
                        raise InputError(
                            f"scene {scene_seed}: more than {VOID_LABEL - 1} objects; "
                            "write fewer frames"
                        )
                    label_of[oid] = len(label_of) + 1
            labels = np.zeros(scene.image.shape[:2], np.uint8)
            for oid, mask in zip(scene.ids, scene.masks, strict=True):
                labels[mask] = label_of[oid]
            yield scene.image, labels
        first = set(cam.frame(0).ids)
        per_object = scene_events(layouts, sorted(first), window)
        events[f"scene_{scene_seed}"] = SequenceEvents(
            frames=tuple(f"{t:05d}" for t in range(frames)),
            objects={label_of[oid]: ev for oid, ev in per_object.items()},
            window=window,
            source={"generator": "samedge.scenes.MovingScene", "seed": scene_seed, **options},
        )

    def all_sequences() -> Iterator[tuple[str, Iterable[tuple[np.ndarray, np.ndarray]]]]:
        for i in range(sequences):
            yield f"scene_{seed + i}", render(i)

    from samedge._io import atomic_directory

    out = Path(out)
    manifest = {
        "generator": "samedge.davis.write_moving_scenes",
        "seed": seed,
        "frames": frames,
        "window": window,
        "photos": backgrounds is not None,
        **options,
    }
    with atomic_directory(out, force=force, marker=MANIFEST) as staging:
        # A sequence's events are known once its frames are rendered, which is
        # when _write_all asks for them.
        _write_all(staging, all_sequences(), events.get, manifest, 95)
    log.info("wrote %d held-out sequences to %s", sequences, out)
    return out
