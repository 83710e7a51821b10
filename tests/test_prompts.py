"""ObjectPrompt validation and batching into the decoder's tensors."""

from __future__ import annotations

import numpy as np
import pytest

from samedge.errors import PromptError
from samedge.preprocess import ResizeLongestSide
from samedge.prompts import DecoderPrompts, ObjectPrompt, batch_prompts

SIZE = (480, 640)  # H, W
T = ResizeLongestSide(1024)  # scale 1.6
L = 256


def _batch(*prompts: ObjectPrompt) -> DecoderPrompts:
    return batch_prompts(list(prompts), SIZE, T, L)


# -- ordering, padding, transforms ---------------------------------------------------------


def test_points_only_get_sams_padding_point() -> None:
    b = _batch(ObjectPrompt(point_coords=[[100, 50], [200, 300]], point_labels=[1, 0]))
    assert b.point_coords.dtype == np.float32
    assert b.point_labels.dtype == np.float32
    np.testing.assert_allclose(b.point_coords, [[[160, 80], [320, 480], [0, 0]]])
    np.testing.assert_array_equal(b.point_labels, [[1, 0, -1]])
    np.testing.assert_array_equal(b.has_mask_input, [0])
    assert b.mask_input.shape == (1, 1, L, L)
    assert not b.mask_input.any()


def test_box_only_is_two_corners_without_padding() -> None:
    b = _batch(ObjectPrompt(box=np.array([10, 20, 110, 220])))
    np.testing.assert_allclose(b.point_coords, [[[16, 32], [176, 352]]])
    np.testing.assert_array_equal(b.point_labels, [[2, 3]])


def test_points_then_box_corners() -> None:
    b = _batch(ObjectPrompt(point_coords=[[5, 5]], point_labels=[1], box=[[0, 0, 640, 480]]))
    np.testing.assert_allclose(b.point_coords, [[[8, 8], [0, 0], [1024, 768]]])
    np.testing.assert_array_equal(b.point_labels, [[1, 2, 3]])


def test_mixed_batch_pads_to_the_longest_with_minus_one() -> None:
    mask = np.full((1, L, L), 2.5, np.float32)
    b = _batch(
        ObjectPrompt(box=[0, 0, 10, 10]),
        ObjectPrompt(
            point_coords=[[1, 1], [2, 2], [3, 3]], point_labels=[1, 1, 0], mask_input=mask
        ),
        ObjectPrompt(point_coords=[[4, 4]], point_labels=[1], box=[0, 0, 10, 10]),
    )
    assert b.num_objects == 3
    np.testing.assert_array_equal(b.point_labels, [[2, 3, -1, -1], [1, 1, 0, -1], [1, 2, 3, -1]])
    # Every padding point sits at (0, 0), as SAM's padding point does.
    assert np.all(b.point_coords[b.point_labels == -1] == 0)
    np.testing.assert_array_equal(b.has_mask_input, [0, 1, 0])
    assert np.all(b.mask_input[1] == 2.5)
    assert not b.mask_input[[0, 2]].any()
    feeds = b.feeds()
    assert set(feeds) == {"point_coords", "point_labels", "mask_input", "has_mask_input"}
    assert feeds["point_coords"].shape == (3, 4, 2)


def test_coordinates_match_segment_anything_transform() -> None:
    transforms = pytest.importorskip("segment_anything.utils.transforms")
    ref = transforms.ResizeLongestSide(1024)
    rng = np.random.default_rng(0)
    coords = rng.uniform(0, 480, (4, 2))
    box = np.array([3.3, 4.4, 400.5, 470.25])
    b = _batch(ObjectPrompt(point_coords=coords, point_labels=[1, 0, 1, 1], box=box))
    expected = np.concatenate(
        [ref.apply_coords(coords, SIZE), ref.apply_boxes(box, SIZE).reshape(2, 2)]
    ).astype(np.float32)
    np.testing.assert_array_equal(b.point_coords[0], expected)


def test_empty_points_with_box_is_box_only_like_sam() -> None:
    p = ObjectPrompt(point_coords=np.zeros((0, 2)), point_labels=np.zeros(0), box=[0, 0, 5, 5])
    assert p.point_coords is None
    assert p.num_sparse == 2


def test_prompt_arrays_are_copied_and_read_only() -> None:
    coords = np.array([[1.0, 2.0]])
    p = ObjectPrompt(point_coords=coords, point_labels=np.array([True]))
    coords[0, 0] = 99
    assert p.point_coords is not None
    assert p.point_coords[0, 0] == 1.0
    with pytest.raises(ValueError, match="read-only"):
        p.point_coords[0, 0] = 5
    assert p.point_labels is not None
    assert p.point_labels.tolist() == [1.0]


def test_edges_of_the_image_are_inside() -> None:
    b = _batch(ObjectPrompt(point_coords=[[0, 0], [640, 480]], point_labels=[1, 1]))
    np.testing.assert_allclose(b.point_coords[0, :2], [[0, 0], [1024, 768]])
    _batch(ObjectPrompt(box=[0, 0, 640, 480]))
    _batch(ObjectPrompt(box=[5, 5, 5, 5]))  # a zero-size box is allowed, as in SAM


# -- bad input ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "pattern"),
    [
        ({}, r"no points and no box"),
        ({"mask_input": np.zeros((1, L, L))}, r"no points and no box"),
        ({"point_coords": [[1, 2]]}, r"point_coords: given without point_labels"),
        ({"point_labels": [1]}, r"point_labels: given without point_coords"),
        (
            {"point_coords": [[1, 2], [3, 4]], "point_labels": [1]},
            r"got 1 labels for 2 points",
        ),
        (
            {"point_coords": [1, 2], "point_labels": [1]},
            r"got shape \(2,\), expected \(N, 2\).*\[\[x, y\]\]",
        ),
        (
            {"point_coords": [[1, 2, 3]], "point_labels": [1]},
            r"got shape \(1, 3\), expected \(N, 2\)",
        ),
        ({"point_coords": [[1, 2]], "point_labels": [[1]]}, r"point_labels: got shape \(1, 1\)"),
        ({"point_coords": [[1, 2]], "point_labels": [2]}, r"got \[2.0\], expected 0 .* or 1"),
        ({"point_coords": [[1, 2]], "point_labels": [-1]}, r"got \[-1.0\], expected 0"),
        (
            {"point_coords": [[np.nan, 2]], "point_labels": [1]},
            r"point_coords: got a NaN.*\[0, 0\]",
        ),
        (
            {"point_coords": [["a", "b"]], "point_labels": [1]},
            r"point_coords: got list that is not numeric",
        ),
        ({"box": [10, 0, 5, 10]}, r"box: got \[10.0, 0.0, 5.0, 10.0\] with x1 < x0"),
        ({"box": [0, 10, 5, 5]}, r"with y1 < y0"),
        ({"box": [0, 0, 5]}, r"box: got shape \(3,\), expected \(4,\)"),
        ({"box": [[0, 0, 5, 5], [1, 1, 6, 6]]}, r"got shape \(2, 4\).*predict_batch"),
        ({"box": [0, 0, np.inf, 5]}, r"box: got a NaN or infinite"),
        (
            {"box": [0, 0, 5, 5], "mask_input": np.zeros((L, L))},
            r"mask_input: got shape \(256, 256\), expected \(1, L, L\)",
        ),
        (
            {"box": [0, 0, 5, 5], "mask_input": np.full((1, 4, 4), np.nan)},
            r"mask_input: contains NaN",
        ),
    ],
)
def test_bad_prompts(kwargs: dict[str, object], pattern: str) -> None:
    with pytest.raises(PromptError, match=pattern):
        ObjectPrompt(**kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("prompt", "pattern"),
    [
        (
            ObjectPrompt(point_coords=[[641, 10]], point_labels=[1]),
            r"prompts\[0\]\.point_coords\[0\]: got \(641, 10\), outside the 640×480 \(W×H\) image",
        ),
        (
            ObjectPrompt(point_coords=[[10.0, 10.0], [10.0, -0.5]], point_labels=[1, 0]),
            r"point_coords\[1\]: got \(10, -0.5\), outside",
        ),
        # (y, x) order mix-up: fits the height, not the width.
        (ObjectPrompt(point_coords=[[10, 600]], point_labels=[1]), r"in \(x, y\) order"),
        (ObjectPrompt(box=[-1, 0, 10, 10]), r"prompts\[0\]\.box: got .* outside.*np\.clip"),
        (ObjectPrompt(box=[0, 0, 10, 481]), r"box: got .* outside"),
    ],
)
def test_prompts_outside_the_image_are_refused(prompt: ObjectPrompt, pattern: str) -> None:
    with pytest.raises(PromptError, match=pattern):
        _batch(prompt)


def test_bad_batches() -> None:
    good = ObjectPrompt(box=[0, 0, 5, 5])
    with pytest.raises(PromptError, match="empty sequence"):
        batch_prompts([], SIZE, T, L)
    with pytest.raises(PromptError, match=r"got one ObjectPrompt, expected a sequence"):
        batch_prompts(good, SIZE, T, L)  # type: ignore[arg-type]
    with pytest.raises(PromptError, match=r"prompts\[1\]: got dict, expected an ObjectPrompt"):
        batch_prompts([good, {"box": [0, 0, 5, 5]}], SIZE, T, L)  # type: ignore[list-item]
    with pytest.raises(
        PromptError,
        match=r"prompts\[0\]\.mask_input: got shape \(1, 64, 64\), expected \(1, 256, 256\)",
    ):
        _batch(ObjectPrompt(box=[0, 0, 5, 5], mask_input=np.zeros((1, 64, 64))))


def test_prompt_error_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="no points and no box"):
        ObjectPrompt()
