"""Mask selection, upsampling (checked against torch), stability, boxes, RLE."""

from __future__ import annotations

import numpy as np
import pytest

from samedge.errors import InputError
from samedge.postprocess import (
    CV_MAX_CHANNELS,
    mask_to_rle,
    masks_to_boxes,
    postprocess_masks,
    rle_area,
    rle_to_mask,
    select_masks,
    stability_score,
    upscale_masks,
)


def _logits(*shape: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(0, 3, shape).astype(np.float32)


def _torch_postprocess(
    low: np.ndarray, image_size: int, input_size: tuple[int, int], original_size: tuple[int, int]
) -> np.ndarray:
    """segment_anything's Sam.postprocess_masks, verbatim math."""
    torch = pytest.importorskip("torch")
    functional = pytest.importorskip("torch.nn.functional")
    with torch.no_grad():
        t = torch.from_numpy(low)
        t = functional.interpolate(
            t, (image_size, image_size), mode="bilinear", align_corners=False
        )
        t = t[..., : input_size[0], : input_size[1]]
        t = functional.interpolate(t, original_size, mode="bilinear", align_corners=False)
        return t.numpy()


# -- selection -------------------------------------------------------------------------


def test_select_masks_like_sam() -> None:
    low = _logits(2, 4, 8, 8)
    iou = np.arange(8, dtype=np.float32).reshape(2, 4)
    multi, multi_iou = select_masks(low, iou, multimask_output=True)
    single, single_iou = select_masks(low, iou, multimask_output=False)
    np.testing.assert_array_equal(multi, low[:, 1:])
    np.testing.assert_array_equal(multi_iou, [[1, 2, 3], [5, 6, 7]])
    np.testing.assert_array_equal(single, low[:, :1])
    np.testing.assert_array_equal(single_iou, [[0], [4]])


def test_select_masks_errors() -> None:
    with pytest.raises(InputError, match=r"expected \[B, K, L, L\] and \[B, K\]"):
        select_masks(_logits(4, 8, 8), np.zeros((1, 4)), True)
    with pytest.raises(InputError, match="got K=1"):
        select_masks(_logits(1, 1, 8, 8), np.zeros((1, 1)), True)


# -- upsampling ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("image_size", "low_size", "input_size", "original_size"),
    [
        (1024, 256, (768, 1024), (480, 640)),  # SAM, downscale to the frame
        (1024, 256, (681, 1024), (300, 451)),
        (1024, 256, (576, 1024), (1080, 1920)),  # upscale to the frame
        (256, 64, (170, 256), (300, 451)),  # the reduced test SAM
        (256, 64, (256, 171), (400, 267)),  # portrait: crop the width
        (256, 64, (256, 256), (256, 256)),  # no crop, no final resize
        (100, 48, (75, 100), (150, 200)),  # non-integer scale: the full-resize path
        (256, 64, (1, 256), (3, 900)),  # extreme aspect ratio
    ],
)
def test_upscale_matches_sam_postprocess_masks(
    image_size: int, low_size: int, input_size: tuple[int, int], original_size: tuple[int, int]
) -> None:
    low = _logits(2, 3, low_size, low_size)
    ref = _torch_postprocess(low, image_size, input_size, original_size)
    ours = upscale_masks(low, image_size, input_size, original_size)
    assert ours.shape == ref.shape == (2, 3, *original_size)
    assert ours.dtype == np.float32
    # float32 rounding of the source coordinates differs between OpenCV and
    # torch (both agree to 1e-14 in float64): ~1e-4 pixel, times logit slopes
    # of a few units per pixel on this white noise.
    np.testing.assert_allclose(ours, ref, rtol=0, atol=2e-3)
    assert np.mean((ours > 0) != (ref > 0)) < 1e-4
    bool_masks = postprocess_masks(low, image_size, input_size, original_size)
    assert bool_masks.dtype == np.bool_
    np.testing.assert_array_equal(bool_masks, ours > 0)
    logits = postprocess_masks(low, image_size, input_size, original_size, return_logits=True)
    np.testing.assert_array_equal(logits, ours)


def _smooth_logits(count: int, size: int, seed: int = 0) -> np.ndarray:
    """Logits with mask-like structure (blobs a few low-res pixels wide), not white noise."""
    import cv2

    rng = np.random.default_rng(seed)
    noise = rng.normal(0, 1, (count, size, size)).astype(np.float32)
    return np.stack([cv2.GaussianBlur(m, (0, 0), size / 16) for m in noise]) * 50.0


@pytest.mark.parametrize(
    ("image_size", "low_size", "input_size", "original_size"),
    [
        (1024, 256, (768, 1024), (480, 640)),  # 4:3, downscale to the frame
        (1024, 256, (576, 1024), (720, 1280)),  # 16:9, upscale to the frame
        (1024, 256, (681, 1024), (300, 451)),  # crop not a whole number of low-res pixels
        (256, 64, (256, 171), (400, 267)),  # portrait
        (100, 48, (75, 100), (150, 200)),  # non-integer scale
    ],
)
def test_fast_upscale_agrees_with_the_exact_path(
    image_size: int, low_size: int, input_size: tuple[int, int], original_size: tuple[int, int]
) -> None:
    low = _smooth_logits(6, low_size)
    exact = upscale_masks(low, image_size, input_size, original_size)
    fast = upscale_masks(low, image_size, input_size, original_size, exact=False)
    assert fast.shape == exact.shape == (6, *original_size)
    assert fast.dtype == np.float32
    # One interpolation instead of two: the same geometry, slightly less smoothing.
    scale = float(np.abs(exact).max())
    assert float(np.abs(fast - exact).max()) < 0.1 * scale
    assert np.mean((fast > 0) != (exact > 0)) < 2e-3
    bool_masks = postprocess_masks(low, image_size, input_size, original_size, exact=False)
    assert bool_masks.dtype == np.bool_
    np.testing.assert_array_equal(bool_masks, fast > 0)


def test_fast_upscale_takes_the_exact_path_for_fractional_crops() -> None:
    # 681 * 256 / 1024 is not a whole number of low-resolution pixels.
    low = _smooth_logits(3, 256)
    fast = upscale_masks(low, 1024, (681, 1024), (300, 451), exact=False)
    np.testing.assert_array_equal(fast, upscale_masks(low, 1024, (681, 1024), (300, 451)))


def test_fast_upscale_keeps_leading_dims_and_channel_groups() -> None:
    n = CV_MAX_CHANNELS + 3
    low = _smooth_logits(n, 16, seed=2).reshape(n, 1, 16, 16)
    together = upscale_masks(low, 64, (48, 64), (30, 40), 0.0, exact=False)
    one_by_one = np.stack([upscale_masks(m, 64, (48, 64), (30, 40), 0.0, exact=False) for m in low])
    assert together.shape == (n, 1, 30, 40)
    np.testing.assert_array_equal(together, one_by_one)


def test_more_channels_than_opencv_takes_at_once() -> None:
    n = CV_MAX_CHANNELS + 5
    low = _logits(n, 16, 16, seed=4)
    together = upscale_masks(low, 64, (48, 64), (30, 40), threshold=0.0)
    one_by_one = np.stack([upscale_masks(m, 64, (48, 64), (30, 40), 0.0) for m in low])
    assert together.shape == (n, 30, 40)
    np.testing.assert_array_equal(together, one_by_one)


def test_upscale_accepts_any_leading_shape() -> None:
    low = _logits(16, 16)
    assert upscale_masks(low, 64, (64, 32), (10, 5)).shape == (10, 5)
    assert upscale_masks(_logits(2, 1, 3, 16, 16), 64, (64, 32), (10, 5)).shape == (2, 1, 3, 10, 5)


def test_upscale_errors() -> None:
    with pytest.raises(InputError, match=r"expected \[\.\.\., L, L\]"):
        upscale_masks(_logits(3, 16, 8), 64, (64, 64), (64, 64))
    with pytest.raises(InputError, match="expected 0 < h, w <= image_size"):
        upscale_masks(_logits(16, 16), 64, (65, 64), (64, 64))
    with pytest.raises(InputError, match="expected 0 < h, w <= image_size"):
        upscale_masks(_logits(16, 16), 64, (64, 64), (0, 64))


# -- stability, boxes, RLE -----------------------------------------------------------------


def test_stability_score_matches_segment_anything() -> None:
    amg = pytest.importorskip("segment_anything.utils.amg")
    torch = pytest.importorskip("torch")
    logits = _logits(3, 5, 32, 32)
    for offset in (0.5, 1.0, 2.0):
        ref = amg.calculate_stability_score(torch.from_numpy(logits), 0.0, offset).numpy()
        np.testing.assert_allclose(stability_score(logits, 0.0, offset), ref, rtol=1e-6)


def test_stability_score_of_empty_masks_is_zero() -> None:
    score = stability_score(np.full((2, 8, 8), -10.0))
    np.testing.assert_array_equal(score, [0.0, 0.0])
    assert score.dtype == np.float32


def test_masks_to_boxes_matches_segment_anything() -> None:
    amg = pytest.importorskip("segment_anything.utils.amg")
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    masks = np.zeros((2, 4, 20, 30), bool)
    for idx in np.ndindex(2, 4):
        if rng.random() < 0.25:
            continue  # leave some masks empty
        y0, x0 = rng.integers(0, 20), rng.integers(0, 30)
        masks[idx][y0 : y0 + rng.integers(1, 8), x0 : x0 + rng.integers(1, 8)] = True
    ref = amg.batched_mask_to_box(torch.from_numpy(masks)).numpy()
    np.testing.assert_array_equal(masks_to_boxes(masks), ref)


def test_masks_to_boxes_small_cases() -> None:
    m = np.zeros((5, 6), bool)
    np.testing.assert_array_equal(masks_to_boxes(m), [0, 0, 0, 0])
    m[4, 5] = True
    np.testing.assert_array_equal(masks_to_boxes(m), [5, 4, 5, 4])
    assert masks_to_boxes(np.zeros((0, 5, 6), bool)).shape == (0, 4)
    with pytest.raises(InputError, match="expected"):
        masks_to_boxes(np.zeros(5, bool))


def test_rle_matches_segment_anything_and_round_trips() -> None:
    amg = pytest.importorskip("segment_anything.utils.amg")
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(1)
    masks = rng.random((4, 13, 17)) > 0.6
    masks[1] = True  # starts with foreground: counts begin with 0
    masks[2] = False
    ref = amg.mask_to_rle_pytorch(torch.from_numpy(masks))
    ours = mask_to_rle(masks)
    assert ours == ref
    assert ours[1]["counts"] == [0, 13 * 17]
    assert ours[2]["counts"] == [13 * 17]
    for m, rle in zip(masks, ours, strict=True):
        np.testing.assert_array_equal(rle_to_mask(rle), m)
        assert rle_area(rle) == int(m.sum()) == amg.area_from_rle(rle)


def test_rle_single_mask_and_bad_input() -> None:
    assert mask_to_rle(np.array([[0, 1], [1, 1]], bool)) == [{"size": [2, 2], "counts": [1, 3]}]
    with pytest.raises(InputError, match=r"expected \[H, W\] or \[B, H, W\]"):
        mask_to_rle(np.zeros((1, 1, 2, 2), bool))
    with pytest.raises(InputError, match="expected H\\*W = 4"):
        rle_to_mask({"size": [2, 2], "counts": [1, 2]})
    with pytest.raises(InputError, match="uncompressed"):
        rle_to_mask({"counts": [4]})
