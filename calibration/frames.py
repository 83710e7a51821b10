"""Calibration frames: where they come from and how they become encoder inputs.

A calibration source is one of:

* ``"synthetic"``: independent scenes from :func:`samedge.scenes.make_scene`
  (samedge-tiny's generator) at 480×640. Not the moving camera scene that
  ``samedge run`` shows: consecutive frames of a moving scene are nearly the
  same picture, and calibration needs variety. The seeds are our own, apart
  from training (0..), validation (777000) and evaluation (2026).
* a folder of images, a single image, a video file, or a camera index: read
  through :func:`samedge.stream.open_source`, the reader ``samedge run`` uses.
  A camera captures the frames it is asked for, one after the other.
* any iterable of ``H×W×3`` uint8 RGB arrays (in Python).

Held-out frames, on which the report measures a build against FP32, are never
calibration frames: for synthetic scenes they come from another seed, for a
real source they are the *last* frames read (the end of a video, not frames
interleaved with the calibration ones, which would be near copies of them).

Every frame becomes an encoder input through
:func:`samedge.preprocess.preprocess_image` with the model card's size and
mean and :attr:`~samedge.preprocess.Resample.EXACT`, exactly what
:meth:`samedge.Predictor.set_image` feeds, so calibration sees the
distribution the deployed engine sees.

Example:
    >>> from samedge.calibration.frames import read_frames
    >>> frames = read_frames("synthetic", 4, heldout=2)
    >>> len(frames.calibration), len(frames.heldout), frames.calibration[0].shape
    (4, 2, (480, 640, 3))
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

# The reading itself lives in the core (samedge._frames), where evaluation uses it too.
from samedge._frames import (
    CALIBRATION_SEED,
    SYNTHETIC,
    SYNTHETIC_SIZE,
    FrameSet,
    FrameSource,
    read_frames,
)

# CalibrationDataError lives in samedge.errors with every other error; re-exported
# so that ``from samedge.calibration.frames import CalibrationDataError`` keeps working.
from samedge.errors import CalibrationDataError, SamedgeError
from samedge.model_dir import ModelCard
from samedge.preprocess import model_input

__all__ = [
    "CALIBRATION_SEED",
    "SYNTHETIC",
    "SYNTHETIC_SIZE",
    "CalibrationDataError",
    "FrameSet",
    "FrameSource",
    "encoder_inputs",
    "memory_encoder_inputs",
    "read_frames",
]


def encoder_inputs(frames: Sequence[np.ndarray], card: ModelCard) -> list[np.ndarray]:
    """Preprocess RGB frames into the encoder's ``image`` input, as the Predictor does.

    Args:
        frames: ``H×W×3`` uint8 RGB frames.
        card: The model's card (input size and pixel mean).

    Returns:
        One float32 ``[1, 3, S, S]`` array per frame (``[1, 3, h, w]`` for an
        encoder exported with ``--frame-size``: the card's ``input_box``).

    Raises:
        CalibrationDataError: a frame of the wrong type, dtype or shape.
    """
    out = []
    for i, frame in enumerate(frames):
        try:
            x, _ = model_input(frame, card)
        except SamedgeError as e:
            raise CalibrationDataError(f"calibration frame {i}: {e}") from e
        out.append(x)
    return out


def memory_encoder_inputs(frames: Sequence[np.ndarray], card: ModelCard) -> list[np.ndarray]:
    """A SAM 2-family encoder's ``image`` inputs, exactly as
    :class:`~samedge.memory_predictor.MemoryPredictor`
    feeds them: the frame squashed to S × S (no letterbox), RGB 0..255 (the graph normalises).

    Raises:
        CalibrationDataError: a frame of the wrong type, dtype or shape.
    """
    from samedge.memory_predictor import resize_square
    from samedge.preprocess import validate_image

    out = []
    for i, frame in enumerate(frames):
        try:
            rgb = validate_image(frame, "RGB")
        except SamedgeError as e:
            raise CalibrationDataError(f"calibration frame {i}: {e}") from e
        square = resize_square(rgb, card.image_size)
        out.append(np.ascontiguousarray(square.transpose(2, 0, 1)[None], dtype=np.float32))
    return out
