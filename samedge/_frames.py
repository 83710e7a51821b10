"""Frames from a source, for calibration and for measuring a build (private).

The reader behind :func:`samedge.calibration.read_frames` (whose module
docstring describes the sources) and ``samedge eval --fidelity``: it lives in
the core so that evaluation reads frames without importing
:mod:`samedge.calibration`.

A source is one of:

* ``"synthetic"``: independent scenes from :func:`samedge.scenes.make_scene`
  at 480×640, seeded apart from training (0..), validation (777000) and
  evaluation (2026);
* a folder of images, a single image, a video file, or a camera index, read
  through :func:`samedge.stream.open_source`;
* any iterable of ``H×W×3`` uint8 RGB arrays.

Held-out frames are never calibration frames: for synthetic scenes they come
from another seed, for a real source they are the *last* frames read.

Example:
    >>> from samedge._frames import read_frames
    >>> frames = read_frames("synthetic", 4, heldout=2)
    >>> len(frames.calibration), len(frames.heldout), frames.calibration[0].shape
    (4, 2, (480, 640, 3))
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from samedge.errors import CalibrationDataError, ImageError, InputError
from samedge.preprocess import validate_image
from samedge.stream.sources import SYNTHETIC, is_synthetic

__all__ = [
    "CALIBRATION_SEED",
    "MAX_FRAMES",
    "SYNTHETIC",
    "SYNTHETIC_SIZE",
    "FrameSet",
    "FrameSource",
    "check_frame_counts",
    "read_frames",
]

log = logging.getLogger(__name__)

SYNTHETIC_SIZE = (480, 640)
#: Seed of the synthetic calibration scenes; held-out scenes use ``[seed, 2]``.
CALIBRATION_SEED = 4242

FrameSource = str | int | os.PathLike[str] | Iterable[np.ndarray]

#: Most calibration (and, separately, held-out) frames one build reads. Every
#: frame is held in memory as RGB and as a float32 encoder input (12 MiB at
#: SAM's 1024 px), so 1024 frames already take ~13 GiB; a count past this is a
#: typo (``--frames 100000000`` grew memory at 40 MB/s until the machine gave out).
MAX_FRAMES = 1024


@dataclass(frozen=True)
class FrameSet:
    """RGB frames for calibration and for the held-out accuracy report.

    Attributes:
        calibration: ``H×W×3`` uint8 RGB frames the quantizer calibrates on.
        heldout: Frames the report measures on (never calibration frames).
        description: Where the frames came from, for the report.
        skipped: Files or frames that could not be read, with the first error.
    """

    calibration: tuple[np.ndarray, ...]
    heldout: tuple[np.ndarray, ...]
    description: str
    skipped: int = 0

    def __post_init__(self) -> None:
        if not self.calibration:
            raise CalibrationDataError("FrameSet: got no calibration frames, expected at least 1")


def check_frame_counts(count: int, heldout: int) -> None:
    """Refuse frame counts that are not ints or would not fit in memory (:data:`MAX_FRAMES`).

    Raises:
        InputError: a count below its minimum or above :data:`MAX_FRAMES`.
    """
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise InputError(f"frames: got {count!r}, expected an int >= 1")
    if isinstance(heldout, bool) or not isinstance(heldout, int) or heldout < 0:
        raise InputError(f"heldout: got {heldout!r}, expected an int >= 0")
    for name, value in (("frames", count), ("heldout", heldout)):
        if value > MAX_FRAMES:
            raise InputError(
                f"{name}: got {value}, expected at most {MAX_FRAMES}: every frame is held in "
                "memory (about 12 MiB each at SAM's 1024 px); 32 to 256 frames calibrate well"
            )


def _synthetic(count: int, heldout: int, seed: int) -> FrameSet:
    from samedge.scenes import make_scene

    cal_rng = np.random.default_rng([seed, 1])
    held_rng = np.random.default_rng([seed, 2])
    calibration = tuple(make_scene(cal_rng, SYNTHETIC_SIZE).image for _ in range(count))
    held = tuple(make_scene(held_rng, SYNTHETIC_SIZE).image for _ in range(heldout))
    return FrameSet(
        calibration,
        held,
        f"synthetic scenes (seed {seed}, {SYNTHETIC_SIZE[1]}x{SYNTHETIC_SIZE[0]})",
    )


def _too_few(found: int, count: int, heldout: int, where: str, skipped: int, error: str) -> str:
    need = f"{count + heldout} ({count} for calibration + {heldout} held out for the report)"
    msg = f"calibration source {where}: found {found} readable frame(s), need {need}"
    if skipped:
        msg += f"; {skipped} could not be read (first: {error})"
    if found:
        msg += "; add frames, or pass a smaller --frames/--heldout"
    return msg


def _from_source(
    spec: str | int | os.PathLike[str], count: int, heldout: int
) -> tuple[list[np.ndarray], str, int, str]:
    from samedge.stream.sources import open_source

    need = count + heldout
    frames: list[np.ndarray] = []
    skipped, first_error = 0, ""
    try:
        source = open_source(spec)
    except InputError as e:
        raise CalibrationDataError(f"calibration source: {e}") from e
    with source:
        description = source.description
        # A folder of undecodable files raises per file and moves on; bound the
        # attempts so a source that errors forever cannot spin.
        attempts = 0
        while len(frames) < need and attempts < need + 10_000:
            attempts += 1
            try:
                frame = source.read()
            except ImageError as e:
                skipped += 1
                first_error = first_error or str(e)
                log.warning("calibration: skipped an unreadable frame (%s)", e)
                continue
            if frame is None:
                break
            frames.append(frame.image)
    return frames, description, skipped, first_error


def _from_arrays(arrays: Iterable[object], need: int) -> tuple[list[np.ndarray], str, int, str]:
    frames: list[np.ndarray] = []
    for i, item in enumerate(arrays):
        if len(frames) >= need:
            break
        if not isinstance(item, np.ndarray):
            raise CalibrationDataError(
                f"calibration frame {i}: got {type(item).__name__}, expected an H×W×3 uint8 "
                "RGB numpy array"
            )
        try:
            frames.append(validate_image(item, "RGB"))
        except ImageError as e:
            raise CalibrationDataError(f"calibration frame {i}: {e}") from e
    return frames, "frames passed in Python", 0, ""


def read_frames(
    source: FrameSource,
    count: int,
    *,
    heldout: int = 0,
    seed: int | None = None,
) -> FrameSet:
    """Read ``count`` calibration frames and ``heldout`` report frames from a source.

    Args:
        source: ``"synthetic"``, a folder of images, an image or video file, a
            camera index (int or digits), or an iterable of RGB uint8 arrays.
        count: Calibration frames needed.
        heldout: Held-out frames needed for the report (read after the
            calibration ones; see the module docstring).
        seed: Seed of the synthetic scenes; ``None`` means :data:`CALIBRATION_SEED`.

    Returns:
        The frames, as ``H×W×3`` uint8 RGB arrays.

    Raises:
        CalibrationDataError: the source opens but gives no readable frame,
            fewer frames than ``count + heldout`` (the message says how many
            were found and how many are needed), or an array of the wrong
            type, dtype or shape.
        InputError: ``count``/``heldout`` are not valid counts.

    Example:
        >>> frames = read_frames("synthetic", 8, heldout=4)      # doctest: +SKIP
        >>> frames = read_frames("calib_images/", 64)            # doctest: +SKIP
        >>> frames = read_frames(0, 32, heldout=8)               # camera 0  # doctest: +SKIP
    """
    check_frame_counts(count, heldout)
    if is_synthetic(source):
        return _synthetic(count, heldout, CALIBRATION_SEED if seed is None else seed)
    need = count + heldout
    if isinstance(source, (str, int, os.PathLike)) and not isinstance(source, bool):
        frames, where, skipped, error = _from_source(source, count, heldout)
    elif isinstance(source, np.ndarray):
        raise CalibrationDataError(
            f"calibration source: got one numpy array {source.shape}; pass a list of frames "
            "(H×W×3 uint8 arrays), a folder, a video, a camera index or 'synthetic'"
        )
    elif isinstance(source, Iterable):
        frames, where, skipped, error = _from_arrays(source, need)
    else:
        raise CalibrationDataError(
            f"calibration source: got {type(source).__name__}, expected 'synthetic', a folder "
            "of images, a video file, a camera index or a list of H×W×3 uint8 frames"
        )
    if not frames:
        raise CalibrationDataError(
            f"calibration source {where}: no readable frames"
            + (f" ({skipped} could not be read; first: {error})" if skipped else "")
            + "; pass a folder of images, a video file, a camera index or 'synthetic'"
        )
    if len(frames) < need:
        raise CalibrationDataError(_too_few(len(frames), count, heldout, where, skipped, error))
    log.info("calibration: %d + %d held-out frames from %s", count, heldout, where)
    return FrameSet(tuple(frames[:count]), tuple(frames[count:need]), where, skipped)
