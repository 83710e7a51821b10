"""Calibration sources: synthetic, folders, videos, cameras, arrays, and their errors."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from samedge.calibration.frames import (
    CalibrationDataError,
    encoder_inputs,
    read_frames,
)
from samedge.errors import InputError
from samedge.model_dir import ModelCard
from samedge.models import SAM_PIXEL_MEAN, SAM_PIXEL_STD
from samedge.preprocess import preprocess_image

CARD = ModelCard(
    model="toy",
    image_size=64,
    pixel_mean=SAM_PIXEL_MEAN,
    pixel_std=SAM_PIXEL_STD,
    embedding_shape=(8, 16, 16),
)


def _write_images(folder: Path, n: int, size: tuple[int, int] = (40, 60)) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(n):
        cv2.imwrite(str(folder / f"{i:03d}.png"), rng.integers(0, 255, (*size, 3), np.uint8))


def test_synthetic_frames_are_varied_and_heldout_is_disjoint() -> None:
    frames = read_frames("synthetic", 3, heldout=2)
    assert len(frames.calibration) == 3
    assert len(frames.heldout) == 2
    assert all(f.dtype == np.uint8 and f.shape == (480, 640, 3) for f in frames.calibration)
    everything = [*frames.calibration, *frames.heldout]
    for i in range(len(everything)):
        for j in range(i + 1, len(everything)):
            assert not np.array_equal(everything[i], everything[j])
    again = read_frames("synthetic", 3, heldout=2)
    assert all(np.array_equal(a, b) for a, b in zip(frames.heldout, again.heldout, strict=True))


def test_image_folder_reads_in_order_and_holds_out_the_last(tmp_path: Path) -> None:
    _write_images(tmp_path / "imgs", 5)
    frames = read_frames(tmp_path / "imgs", 3, heldout=2)
    expected = cv2.cvtColor(cv2.imread(str(tmp_path / "imgs" / "004.png")), cv2.COLOR_BGR2RGB)
    assert np.array_equal(frames.heldout[-1], expected)
    assert "image folder" in frames.description


def test_too_few_frames_says_found_and_needed(tmp_path: Path) -> None:
    _write_images(tmp_path / "imgs", 3)
    with pytest.raises(CalibrationDataError, match=r"found 3 readable frame\(s\), need 6"):
        read_frames(str(tmp_path / "imgs"), 4, heldout=2)


def test_folder_of_unreadable_files_has_no_readable_frames(tmp_path: Path) -> None:
    folder = tmp_path / "broken"
    folder.mkdir()
    for i in range(3):
        (folder / f"{i}.png").write_bytes(b"not a png")
    with pytest.raises(CalibrationDataError, match=r"no readable frames.*3 could not be read"):
        read_frames(folder, 2)


def test_unreadable_files_are_skipped_and_counted(tmp_path: Path) -> None:
    _write_images(tmp_path / "imgs", 3)
    (tmp_path / "imgs" / "001b.png").write_bytes(b"garbage")
    frames = read_frames(tmp_path / "imgs", 3)
    assert frames.skipped == 1
    assert len(frames.calibration) == 3


def test_empty_folder_and_missing_path(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(CalibrationDataError, match="holds no images"):
        read_frames(tmp_path / "empty", 1)
    with pytest.raises(CalibrationDataError, match="not found"):
        read_frames(tmp_path / "nope", 1)


def test_video_file(tmp_path: Path) -> None:
    path = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (64, 48))
    if not writer.isOpened():
        pytest.skip("this OpenCV cannot write MJPG video")
    for i in range(6):
        writer.write(np.full((48, 64, 3), 40 * i, np.uint8))
    writer.release()
    frames = read_frames(path, 4, heldout=2)
    assert frames.calibration[0].shape == (48, 64, 3)
    with pytest.raises(CalibrationDataError, match=r"found 6 .* need 9"):
        read_frames(path, 8, heldout=1)


def test_missing_camera_is_a_clear_error() -> None:
    with pytest.raises(CalibrationDataError, match="camera 97"):
        read_frames(97, 4)


def test_arrays_of_the_wrong_type() -> None:
    with pytest.raises(CalibrationDataError, match=r"calibration frame 1: .*float32"):
        read_frames([np.zeros((8, 8, 3), np.uint8), np.zeros((8, 8, 3), np.float32)], 2)
    with pytest.raises(CalibrationDataError, match="calibration frame 0: got str"):
        read_frames(["a.png"], 1)
    with pytest.raises(CalibrationDataError, match="one numpy array"):
        read_frames(np.zeros((8, 8, 3), np.uint8), 1)
    with pytest.raises(CalibrationDataError, match="found 1"):
        read_frames([np.zeros((8, 8, 3), np.uint8)], 1, heldout=1)
    with pytest.raises(InputError, match="frames"):
        read_frames("synthetic", 0)


def test_encoder_inputs_are_the_predictors_preprocessing() -> None:
    frame = np.random.default_rng(1).integers(0, 255, (30, 50, 3), np.uint8)
    (x,) = encoder_inputs([frame], CARD)
    expected, _ = preprocess_image(frame, CARD.image_size, CARD.pixel_mean)
    assert x.shape == (1, 3, 64, 64)
    assert np.array_equal(x, expected)


def test_calibration_errors_live_in_samedge_errors() -> None:
    import samedge
    from samedge import errors
    from samedge.calibration import frames, gate

    # One class, importable from where it is raised and from the error hierarchy.
    assert frames.CalibrationDataError is errors.CalibrationDataError
    assert samedge.CalibrationDataError is errors.CalibrationDataError
    assert gate.GateError is errors.GateError is samedge.GateError
    assert issubclass(errors.CalibrationDataError, ValueError)
    assert issubclass(errors.GateError, errors.ExportError)
    failure = errors.GateError("missed", {"passed": False}, "out.failed-report.json")
    assert (failure.report, failure.report_path) == ({"passed": False}, "out.failed-report.json")
    assert errors.__doc__ is not None
    assert "CalibrationDataError" in errors.__doc__
    assert "GateError" in errors.__doc__


def test_frame_counts_are_bounded_before_anything_is_read() -> None:
    """`build --frames 100000000` was accepted and grew memory until the machine gave out."""
    from samedge._frames import MAX_FRAMES
    from samedge.calibration import BuildConfig

    with pytest.raises(InputError, match=f"frames: got 100000000, expected at most {MAX_FRAMES}"):
        BuildConfig(frames=100_000_000)
    with pytest.raises(InputError, match="heldout: got 5000"):
        BuildConfig(heldout=5000)
    with pytest.raises(InputError, match="at most"):
        read_frames("synthetic", MAX_FRAMES + 1)
    assert BuildConfig(frames=MAX_FRAMES).frames == MAX_FRAMES
