"""Frame validation, resize-longest-side, padding and coordinate transforms."""

from __future__ import annotations

import numpy as np
import pytest

import samedge.preprocess as preprocess_module
from samedge.errors import ImageError, InputError
from samedge.models import SAM_PIXEL_MEAN, SAM_PIXEL_STD
from samedge.preprocess import (
    Resample,
    ResizeLongestSide,
    get_preprocess_shape,
    pad_to_square,
    preprocess_image,
    resize_longest_side,
    validate_image,
)

MEAN = SAM_PIXEL_MEAN
STD = SAM_PIXEL_STD


def _frame(h: int = 30, w: int = 40, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def _sample_images() -> dict[str, np.ndarray]:
    data = pytest.importorskip("skimage.data")
    return {"astronaut": data.astronaut(), "chelsea": data.chelsea(), "coffee": data.coffee()}


# -- validate_image ----------------------------------------------------------------


def test_rgb_frame_passes_unchanged() -> None:
    frame = _frame()
    out = validate_image(frame)
    np.testing.assert_array_equal(out, frame)
    assert out.flags.c_contiguous
    assert out.dtype == np.uint8


def test_bgr_is_reversed_and_input_untouched() -> None:
    frame = _frame()
    before = frame.copy()
    out = validate_image(frame, "BGR")
    np.testing.assert_array_equal(out, frame[..., ::-1])
    assert out.flags.c_contiguous
    np.testing.assert_array_equal(frame, before)


@pytest.mark.parametrize("shape", [(30, 40), (30, 40, 1)])
def test_grayscale_is_repeated_into_three_channels(shape: tuple[int, ...]) -> None:
    gray = np.random.default_rng(1).integers(0, 256, shape, dtype=np.uint8)
    for fmt in ("RGB", "BGR"):
        out = validate_image(gray, fmt)
        assert out.shape == (30, 40, 3)
        for c in range(3):
            np.testing.assert_array_equal(out[..., c], gray.reshape(30, 40))


def test_array_like_input_is_accepted() -> None:
    image_mod = pytest.importorskip("PIL.Image")
    frame = _frame(4, 5)
    np.testing.assert_array_equal(validate_image(image_mod.fromarray(frame)), frame)


def test_python_list_is_checked_like_an_array() -> None:
    # np.asarray makes int64 of a list of ints: refused, not silently cast.
    with pytest.raises(ImageError, match="dtype int64"):
        validate_image(_frame(4, 5).tolist())


def test_rgba_is_refused_with_a_hint() -> None:
    with pytest.raises(ImageError, match=r"4 channels.*image\[\.\.\., :3\]"):
        validate_image(np.zeros((10, 10, 4), np.uint8))


@pytest.mark.parametrize(
    ("image", "pattern"),
    [
        (
            np.zeros((10, 10, 3), np.float32),
            r"dtype float32 with values in \[0, 0\].*expected uint8",
        ),
        (np.full((10, 10, 3), np.nan, np.float64), r"float64 containing 300 NaN.*expected uint8"),
        (np.zeros((10, 10, 3), np.uint16), r"dtype uint16.*expected uint8.*>> 8"),
        (np.zeros((10, 10, 3), np.int64), r"dtype int64.*expected uint8"),
        (np.zeros((10, 10, 3), bool), r"dtype bool.*expected uint8"),
        (np.zeros((0, 10, 3), np.uint8), r"empty frame of shape \(0, 10, 3\)"),
        (np.zeros((10, 0), np.uint8), r"empty frame"),
        (np.zeros((10,), np.uint8), r"got 1 dimensions"),
        (np.zeros((1, 10, 10, 3), np.uint8), r"got 4 dimensions"),
        (np.zeros((10, 10, 2), np.uint8), r"got 2 channels"),
        (np.zeros((10, 10, 5), np.uint8), r"got 5 channels"),
        (np.array(["a", "b"]), r"dtype <U1.*expected uint8"),
    ],
)
def test_bad_frames_raise_image_error(image: np.ndarray, pattern: str) -> None:
    with pytest.raises(ImageError, match=pattern):
        validate_image(image)


def test_image_error_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="expected uint8"):
        validate_image(np.zeros((4, 4, 3), np.float32))


def test_bad_image_format() -> None:
    with pytest.raises(InputError, match=r"image_format: got 'rgb', expected 'RGB' or 'BGR'"):
        validate_image(_frame(), "rgb")


# -- resize ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("h", "w", "s", "expected"),
    [
        (480, 640, 1024, (768, 1024)),
        (300, 451, 1024, (681, 1024)),
        (300, 451, 256, (170, 256)),
        (1080, 1920, 1024, (576, 1024)),
        (1024, 1024, 1024, (1024, 1024)),
        (1, 3, 64, (21, 64)),
    ],
)
def test_get_preprocess_shape(h: int, w: int, s: int, expected: tuple[int, int]) -> None:
    assert get_preprocess_shape(h, w, s) == expected


def test_get_preprocess_shape_matches_segment_anything() -> None:
    transforms = pytest.importorskip("segment_anything.utils.transforms")
    rng = np.random.default_rng(0)
    for _ in range(300):
        h, w = (int(v) for v in rng.integers(1, 3000, 2))
        s = int(rng.choice([64, 256, 1024]))
        if min(get_preprocess_shape(h, w, s)) == 0:
            continue
        assert get_preprocess_shape(h, w, s) == transforms.ResizeLongestSide.get_preprocess_shape(
            h, w, s
        )


def test_get_preprocess_shape_rejects_nonpositive() -> None:
    with pytest.raises(InputError, match="expected positive sizes"):
        get_preprocess_shape(0, 10, 64)


def test_too_thin_frame_is_refused() -> None:
    with pytest.raises(ImageError, match=r"1×5000 frame, which resizes to 0×1024"):
        resize_longest_side(np.zeros((1, 5000, 3), np.uint8), 1024)


def test_resize_shape_and_identity() -> None:
    frame = _frame(64, 32)
    for resample in Resample:
        assert resize_longest_side(frame, 64, resample) is frame
        assert resize_longest_side(frame, 128, resample).shape == (128, 64, 3)
        assert resize_longest_side(frame, 16, resample).shape == (16, 8, 3)


@pytest.mark.parametrize("size", [1024, 256, 100])
def test_exact_resize_is_bit_identical_to_segment_anything(size: int) -> None:
    transforms = pytest.importorskip("segment_anything.utils.transforms")
    for name, image in _sample_images().items():
        ref = transforms.ResizeLongestSide(size).apply_image(image)
        ours = resize_longest_side(image, size)
        assert ours.dtype == np.uint8, name
        np.testing.assert_array_equal(ours, ref, err_msg=name)


@pytest.fixture(params=["pillow", "numpy"])
def exact_path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """EXACT through Pillow (when importable) and through the numpy re-implementation."""
    if request.param == "numpy":
        monkeypatch.setattr(preprocess_module, "_resize_pillow", lambda *a: None)
    return str(request.param)


def test_exact_resize_matches_pil_on_odd_sizes(exact_path: str) -> None:
    image_mod = pytest.importorskip("PIL.Image")
    rng = np.random.default_rng(5)
    cases = ((7, 3, 50), (97, 13, 31), (900, 200, 256), (700, 340, 256), (2, 900, 77), (64, 64, 65))
    for h, w, s in (*cases, (5, 5, 1), (333, 1, 64)):
        frame = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        new_h, new_w = get_preprocess_shape(h, w, s)
        if min(new_h, new_w) == 0:
            continue
        ref = np.asarray(
            image_mod.fromarray(frame).resize((new_w, new_h), image_mod.Resampling.BILINEAR)
        )
        ours = resize_longest_side(frame, s)
        np.testing.assert_array_equal(ours, ref, err_msg=str((h, w, s)))
        assert ours.flags.writeable
        assert ours.flags.c_contiguous
        # The encoder input is the same resize, padded.
        x, _ = preprocess_image(frame, s, (1.0, 2.0, 3.0))
        np.testing.assert_array_equal(x[0, :, :new_h, :new_w], ref.transpose(2, 0, 1))


@pytest.mark.parametrize(
    ("size", "max_mean", "max_max"),
    # Upscaling (1024 here) agrees with PIL up to rounding; downscaling (256)
    # uses INTER_AREA, the closest OpenCV filter to PIL's antialiased bilinear.
    [(1024, 0.3, 1), (256, 2.0, 48)],
)
def test_fast_resize_is_close_to_segment_anything(size: int, max_mean: float, max_max: int) -> None:
    transforms = pytest.importorskip("segment_anything.utils.transforms")
    for name, image in _sample_images().items():
        ref = transforms.ResizeLongestSide(size).apply_image(image).astype(np.int16)
        ours = resize_longest_side(image, size, Resample.FAST).astype(np.int16)
        assert ours.shape == ref.shape, name
        diff = np.abs(ours - ref)
        assert diff.mean() <= max_mean, (name, diff.mean())
        assert diff.max() <= max_max, (name, diff.max())


def test_resample_must_be_the_enum() -> None:
    with pytest.raises(InputError, match=r"expected Resample\.EXACT or Resample\.FAST"):
        resize_longest_side(_frame(), 64, "fast")  # type: ignore[arg-type]


# -- padding ---------------------------------------------------------------------------


def test_pad_to_square_puts_frame_top_left_and_mean_elsewhere() -> None:
    resized = _frame(20, 32)
    x = pad_to_square(resized, 32, MEAN)
    assert x.shape == (1, 3, 32, 32)
    assert x.dtype == np.float32
    np.testing.assert_array_equal(x[0, :, :20, :32], resized.transpose(2, 0, 1).astype(np.float32))
    for c in range(3):
        assert np.all(x[0, c, 20:] == np.float32(MEAN[c]))
    # After the encoder's in-graph normalisation the padding is exactly 0, as SAM pads.
    mean = np.asarray(MEAN, np.float32).reshape(1, 3, 1, 1)
    std = np.asarray(STD, np.float32).reshape(1, 3, 1, 1)
    normalised = (x - mean) / std
    assert np.all(normalised[0, :, 20:] == 0.0)


def test_pad_to_square_right_padding_and_buffer_reuse() -> None:
    buf = np.zeros((1, 3, 16, 16), np.float32)
    out = pad_to_square(_frame(16, 10), 16, (1.0, 2.0, 3.0), out=buf)
    assert out is buf
    assert np.all(buf[0, 2, :, 10:] == 3.0)
    # A second, wider frame overwrites every pixel of the reused buffer.
    pad_to_square(np.zeros((8, 16, 3), np.uint8), 16, (1.0, 2.0, 3.0), out=buf)
    assert np.all(buf[0, :, :8] == 0)
    assert np.all(buf[0, 1, 8:] == 2.0)


def test_pad_to_square_errors() -> None:
    with pytest.raises(ImageError, match="larger than the 16 square"):
        pad_to_square(_frame(17, 4), 16, MEAN)
    with pytest.raises(InputError, match=r"out: got float64 \(1, 3, 16, 16\)"):
        pad_to_square(_frame(16, 4), 16, MEAN, out=np.zeros((1, 3, 16, 16)))


def test_preprocess_image_end_to_end() -> None:
    frame = _frame(30, 60)
    x, input_size = preprocess_image(frame, 64, MEAN, "BGR")
    assert input_size == (32, 64)
    expected = resize_longest_side(frame[..., ::-1].copy(), 64)
    np.testing.assert_array_equal(x[0, :, :32], expected.transpose(2, 0, 1).astype(np.float32))
    assert np.all(x[0, 0, 32:] == np.float32(MEAN[0]))


def test_preprocess_image_validates() -> None:
    with pytest.raises(ImageError, match="expected uint8"):
        preprocess_image(np.zeros((8, 8, 3), np.float64), 64, MEAN)


# -- coordinates -----------------------------------------------------------------------


def test_apply_coords_and_boxes_match_segment_anything_exactly() -> None:
    transforms = pytest.importorskip("segment_anything.utils.transforms")
    rng = np.random.default_rng(3)
    for size in ((480, 640), (300, 451), (1080, 1920), (1000, 10)):
        for s in (256, 1024):
            ref = transforms.ResizeLongestSide(s)
            ours = ResizeLongestSide(s)
            coords = rng.uniform(0, max(size), (7, 2))
            boxes = rng.uniform(0, max(size), (5, 4))
            np.testing.assert_array_equal(
                ours.apply_coords(coords, size), ref.apply_coords(coords, size)
            )
            np.testing.assert_array_equal(
                ours.apply_boxes(boxes, size), ref.apply_boxes(boxes, size)
            )
            np.testing.assert_array_equal(
                ours.apply_boxes(boxes[0], size), ref.apply_boxes(boxes[0], size)
            )


def test_apply_coords_does_not_modify_input_and_keeps_shape() -> None:
    coords = np.array([[[10, 20], [30, 40]]], dtype=np.int64)
    out = ResizeLongestSide(1024).apply_coords(coords, (480, 640))
    assert out.shape == (1, 2, 2)
    assert out.dtype == np.float64
    np.testing.assert_array_equal(coords, [[[10, 20], [30, 40]]])
    np.testing.assert_allclose(out, [[[16, 32], [48, 64]]])


def test_transform_errors() -> None:
    with pytest.raises(InputError, match="target_length"):
        ResizeLongestSide(0)
    with pytest.raises(InputError, match=r"coords: got shape \(3,\)"):
        ResizeLongestSide(64).apply_coords(np.zeros(3), (10, 10))
    with pytest.raises(InputError, match=r"boxes: got shape \(3,\)"):
        ResizeLongestSide(64).apply_boxes(np.zeros(3), (10, 10))
