"""samedge.masks: the one convention for mask geometry, checked against references."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from samedge import graph_names
from samedge.errors import InputError
from samedge.masks import (
    DeepPoint,
    RegionMode,
    Ties,
    border_distance,
    box_xyxy_to_xywh,
    decode_counts,
    deep_point,
    deepest_point,
    drop_fragments,
    encode_counts,
    mask_box,
    mask_iou,
    mask_ious,
    mask_to_coco_rle,
    mask_to_rle,
    masks_to_boxes,
    pairwise_mask_iou,
    remove_small_regions,
    rle_area,
    rle_to_mask,
    runs_to_mask,
)


def _random_masks(n: int, shape: tuple[int, int], seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    masks = np.zeros((n, *shape), bool)
    for k in range(n):
        if k % 5 == 4:
            continue  # some empty masks
        cv2.ellipse(
            masks[k].view(np.uint8),
            (int(rng.integers(0, shape[1])), int(rng.integers(0, shape[0]))),
            (int(rng.integers(1, 20)), int(rng.integers(1, 20))),
            float(rng.uniform(0, 180)),
            0,
            360,
            1,
            -1,
        )
    return masks


# -- IoU ------------------------------------------------------------------------------------


def test_two_empty_masks_have_iou_one_everywhere() -> None:
    empty = np.zeros((6, 7), bool)
    one = empty.copy()
    one[2, 3] = True
    assert mask_iou(empty, empty) == 1.0
    assert mask_iou(empty, one) == 0.0
    assert mask_iou(one, one) == 1.0
    np.testing.assert_array_equal(mask_ious(np.stack([empty, one]), empty), [1.0, 0.0])
    np.testing.assert_array_equal(
        pairwise_mask_iou(np.stack([empty, one]), np.stack([empty, one])), np.eye(2)
    )


def test_iou_forms_agree_with_each_other() -> None:
    a = _random_masks(7, (40, 50), 0)
    b = _random_masks(5, (40, 50), 1)
    pair = pairwise_mask_iou(a, b)
    assert pair.shape == (7, 5)
    for i in range(7):
        for j in range(5):
            ref = np.logical_and(a[i], b[j]).sum()
            union = np.logical_or(a[i], b[j]).sum()
            want = ref / union if union else 1.0
            assert pair[i, j] == pytest.approx(want)
            assert mask_iou(a[i], b[j]) == pytest.approx(want)
    np.testing.assert_allclose(mask_ious(a[:, None], b[None]), pair)


def test_iou_within_a_box_counts_the_crop_only() -> None:
    a = np.zeros((30, 30), bool)
    b = a.copy()
    a[5:10, 5:12] = True
    b[6:12, 8:15] = True
    box = (5.0, 5.0, 14.0, 11.0)  # the union of both boxes
    assert mask_iou(a, b, within=box) == pytest.approx(mask_iou(a, b))


def test_iou_refuses_logits_and_mismatched_shapes() -> None:
    with pytest.raises(InputError, match="logits > 0"):
        mask_iou(np.zeros((2, 2), np.float32), np.zeros((2, 2), bool))
    with pytest.raises(InputError, match="expected equal"):
        mask_iou(np.zeros((2, 2), bool), np.zeros((2, 3), bool))
    with pytest.raises(InputError, match=r"\[N, H, W\]"):
        pairwise_mask_iou(np.zeros((1, 2, 2), bool), np.zeros((1, 3, 2), bool))
    assert mask_iou(np.eye(3, dtype=np.uint8), np.eye(3, dtype=bool)) == 1.0


# -- boxes ----------------------------------------------------------------------------------


def test_mask_box_and_masks_to_boxes_agree() -> None:
    masks = _random_masks(10, (30, 40), 2)
    boxes = masks_to_boxes(masks)
    for m, box in zip(masks, boxes, strict=True):
        if m.any():
            assert mask_box(m) == tuple(float(v) for v in box)
        else:
            assert box.tolist() == [0, 0, 0, 0]
            with pytest.raises(InputError, match="empty"):
                mask_box(m)


def test_mask_box_matches_segment_anything() -> None:
    amg = pytest.importorskip("segment_anything.utils.amg")
    torch = pytest.importorskip("torch")
    masks = _random_masks(10, (30, 40), 3)
    ref = amg.batched_mask_to_box(torch.from_numpy(masks)).numpy()
    np.testing.assert_array_equal(masks_to_boxes(masks), ref)
    ours = box_xyxy_to_xywh(masks_to_boxes(masks))
    for box, want in zip(ours, ref, strict=True):  # SAM's takes one box at a time
        np.testing.assert_array_equal(box, amg.box_xyxy_to_xywh(torch.from_numpy(want)).numpy())


# -- deepest point --------------------------------------------------------------------------


def test_border_distance_is_exact_and_the_frame_edge_is_outside() -> None:
    m = np.zeros((20, 30), bool)
    m[0:9, 0:9] = True  # touches the top-left frame corner
    dist = border_distance(m)
    assert dist[0, 0] == pytest.approx(1.0)
    assert dist[4, 4] == pytest.approx(5.0)
    assert dist[15, 15] == 0.0
    # The crop computation equals a whole-frame exact transform with a border.
    full = cv2.distanceTransform(np.pad(m, 1).view(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_PRECISE)[
        1:-1, 1:-1
    ]
    np.testing.assert_allclose(dist, full, atol=1e-5)
    assert not border_distance(np.zeros((3, 3), bool)).any()


def test_deepest_point_ties_and_exclusion() -> None:
    bar = np.zeros((11, 41), bool)
    bar[3:8, 2:39] = True
    first = deepest_point(bar)
    assert first == DeepPoint(4, 5, 3.0)  # first of the ridge, row-major
    middle = deepest_point(bar, ties=Ties.RIDGE_MIDDLE)
    assert (middle.x, middle.y) == (20, 5)
    assert deep_point(bar) == (20.0, 5.0)
    nxt = deepest_point(bar, exclude=[(4, 5)])
    assert (nxt.x, nxt.y, nxt.depth) == (5, 5, 3.0)
    assert deepest_point(bar, mask_box(bar)) == first
    with pytest.raises(InputError, match="empty"):
        deepest_point(np.zeros((4, 4), bool))


def test_deep_point_is_inside_odd_shapes() -> None:
    for m in _random_masks(9, (60, 60), 4):
        if not m.any():
            continue
        x, y = deep_point(m)
        assert m[int(y), int(x)]
        p = deepest_point(m)
        assert p.depth == pytest.approx(border_distance(m).max(), abs=1e-4)


# -- fragments and small regions ------------------------------------------------------------


def test_drop_fragments_keeps_parts_above_the_fraction() -> None:
    m = np.zeros((40, 40), bool)
    m[5:25, 5:25] = True
    m[30:32, 30:32] = True  # 4 px: 1% of the largest
    out = drop_fragments(m, 0.1)
    assert out.sum() == 400
    assert drop_fragments(out, 0.1) is out


def test_remove_small_regions_matches_segment_anything() -> None:
    amg = pytest.importorskip("segment_anything.utils.amg")
    rng = np.random.default_rng(5)
    for trial in range(20):
        m = rng.random((30, 40)) > (0.3 if trial % 2 else 0.7)
        for mode in RegionMode:
            for area in (1, 3, 10, 1000):
                ours, changed = remove_small_regions(m, area, mode)
                ref, ref_changed = amg.remove_small_regions(m, area, mode.value)
                assert changed == ref_changed
                np.testing.assert_array_equal(ours, ref)


# -- RLE ------------------------------------------------------------------------------------


# pycocotools' decode trips NumPy 2's copy-keyword deprecation inside its own code.
@pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")
def test_rle_round_trips_and_matches_pycocotools() -> None:
    masks = _random_masks(6, (23, 31), 6)
    masks[4] = True  # starts with foreground: counts start with 0
    for m, rle, coco in zip(masks, mask_to_rle(masks), mask_to_coco_rle(masks), strict=True):
        np.testing.assert_array_equal(rle_to_mask(rle), m)
        np.testing.assert_array_equal(rle_to_mask(coco), m)
        assert rle_area(rle) == rle_area(coco) == int(m.sum())
        assert decode_counts(coco["counts"]) == rle["counts"]
    mask_api = pytest.importorskip("pycocotools.mask")
    for m, coco in zip(masks, mask_to_coco_rle(masks), strict=True):
        ref = mask_api.encode(np.asfortranarray(m.astype(np.uint8)))
        assert coco["counts"] == ref["counts"].decode()
        assert coco["size"] == [int(v) for v in ref["size"]]
        np.testing.assert_array_equal(mask_api.decode(coco), m)


def test_compressed_counts_with_long_runs() -> None:
    runs = [0, 70000, 3, 1, 100000, 2, 5]
    assert decode_counts(encode_counts(runs)) == runs


def test_bad_rle_raises_clear_errors() -> None:
    with pytest.raises(InputError, match="outside the RLE alphabet"):
        decode_counts("0 ")
    with pytest.raises(InputError, match="truncated"):
        decode_counts("P")  # continuation bit set, nothing follows
    with pytest.raises(InputError, match="H\\*W = 4"):
        runs_to_mask([1, 2], (2, 2))
    with pytest.raises(InputError, match="uncompressed"):
        rle_to_mask({"counts": "13"})


# -- tensor names ---------------------------------------------------------------------------


def test_graph_names_are_the_published_contract() -> None:
    # Literals on purpose: these names are what existing model directories carry.
    assert graph_names.ENCODER_INPUTS == ("image",)
    assert graph_names.ENCODER_OUTPUTS == ("image_embeddings",)
    assert graph_names.DECODER_INPUTS == (
        "image_embeddings",
        "point_coords",
        "point_labels",
        "mask_input",
        "has_mask_input",
    )
    assert graph_names.DECODER_OUTPUTS == ("low_res_masks", "iou_predictions")


def test_shipped_model_uses_the_contract_names() -> None:
    ort = pytest.importorskip("onnxruntime")
    from samedge.predictor import resolve_model

    root = resolve_model("samedge_tiny")
    for graph, ins, outs in (
        ("encoder.onnx", graph_names.ENCODER_INPUTS, graph_names.ENCODER_OUTPUTS),
        ("decoder.onnx", graph_names.DECODER_INPUTS, graph_names.DECODER_OUTPUTS),
    ):
        session = ort.InferenceSession(str(root / graph), providers=["CPUExecutionProvider"])
        assert tuple(i.name for i in session.get_inputs()) == ins
        assert tuple(o.name for o in session.get_outputs()) == outs
