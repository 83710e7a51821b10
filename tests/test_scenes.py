"""The procedural scene generator and the built-in moving camera."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from samedge.errors import InputError
from samedge.masks import mask_iou
from samedge.scenes import (
    HELDOUT_PHOTOS,
    SHAPE_KINDS,
    TRAIN_PHOTOS,
    MovingScene,
    Scene,
    make_scene,
)


def _check_scene(scene: Scene, size: tuple[int, int]) -> None:
    h, w = size
    assert scene.image.shape == (h, w, 3)
    assert scene.image.dtype == np.uint8
    k = len(scene.ids)
    assert scene.masks.shape == (k, h, w)
    assert scene.masks.dtype == np.bool_
    assert len(scene.kinds) == k
    assert set(scene.kinds) <= set(SHAPE_KINDS)
    assert len(set(scene.ids)) == k
    # Visible masks after occlusion never overlap, and none is empty.
    assert (scene.masks.sum(0) <= 1).all()
    assert (scene.masks.sum((1, 2)) > 0).all()


def test_make_scene_shapes_and_masks_are_consistent() -> None:
    rng = np.random.default_rng(0)
    counts = []
    for _ in range(20):
        scene = make_scene(rng, (96, 128), num_objects=6)
        _check_scene(scene, (96, 128))
        counts.append(len(scene.ids))
    assert max(counts) <= 6
    assert sum(counts) > 40


def test_masks_match_the_drawn_pixels() -> None:
    # A shape's pixels differ from the background around it: the mask is
    # where the shape really is, not an unrelated region.
    scene = make_scene(np.random.default_rng(5), (128, 128), num_objects=1)
    label = scene.label_map()
    assert set(np.unique(label)) == {0, 1}
    assert label.sum() == scene.masks[0].sum()


def test_make_scene_is_deterministic_per_seed() -> None:
    a = make_scene(np.random.default_rng(42), (64, 80))
    b = make_scene(np.random.default_rng(42), (64, 80))
    c = make_scene(np.random.default_rng(43), (64, 80))
    assert np.array_equal(a.image, b.image)
    assert np.array_equal(a.masks, b.masks)
    assert a.ids == b.ids
    assert a.kinds == b.kinds
    assert not np.array_equal(a.image, c.image)


def test_make_scene_uses_given_backgrounds() -> None:
    photo = np.zeros((50, 60, 3), np.uint8)
    photo[:, :, 1] = 200  # a flat green "photo"
    rng = np.random.default_rng(1)
    greens = [
        make_scene(rng, (64, 64), num_objects=0, backgrounds=[photo]).image[..., 1].mean()
        for _ in range(30)
    ]
    # Some backgrounds are the photo (green-dominant after lighting changes).
    assert sum(g > 120 for g in greens) >= 3


def test_make_scene_rejects_bad_arguments() -> None:
    rng = np.random.default_rng(0)
    with pytest.raises(InputError, match="size"):
        make_scene(rng, (8, 8))
    with pytest.raises(InputError, match="num_objects"):
        make_scene(rng, (32, 32), num_objects=-1)


def test_heldout_photos_are_disjoint_from_training_photos() -> None:
    assert not set(TRAIN_PHOTOS) & set(HELDOUT_PHOTOS)
    assert HELDOUT_PHOTOS
    assert TRAIN_PHOTOS


def test_photo_backgrounds_splits_differ() -> None:
    pytest.importorskip("skimage")
    from samedge.scenes import photo_backgrounds

    train = photo_backgrounds("train", max_side=64)
    held = photo_backgrounds("heldout", max_side=64)
    assert len(train) == len(TRAIN_PHOTOS)
    assert len(held) == len(HELDOUT_PHOTOS)
    for img in train + held:
        assert img.dtype == np.uint8
        assert img.ndim == 3
        assert img.shape[2] == 3
        assert max(img.shape[:2]) <= 64
    train_bytes = {img.tobytes() for img in train}
    assert not any(img.tobytes() in train_bytes for img in held)
    with pytest.raises(InputError, match="split"):
        photo_backgrounds("test")  # type: ignore[arg-type]


def test_moving_scene_is_deterministic_and_random_access() -> None:
    cam = MovingScene(seed=3, size=(72, 96), num_objects=3)
    seq = list(cam.frames(4, start=20))
    again = MovingScene(seed=3, size=(72, 96), num_objects=3)
    # Random access (no replay) gives the same frame as sequential rendering.
    for t in (22, 20, 23):
        frame = again.frame(t)
        assert np.array_equal(frame.image, seq[t - 20].image)
        assert np.array_equal(frame.masks, seq[t - 20].masks)
    _check_scene(seq[0], (72, 96))
    other = MovingScene(seed=4, size=(72, 96), num_objects=3).frame(20)
    assert not np.array_equal(other.image, seq[0].image)


def test_moving_scene_objects_move_continuously() -> None:
    cam = MovingScene(seed=0, size=(120, 160), num_objects=4)
    prev = cam.frame(0)
    assert len(prev.ids) >= 1  # objects are on screen from the first frame
    checked = 0
    for t in range(1, 30):
        cur = cam.frame(t)
        for i, oid in enumerate(cur.ids):
            if oid in prev.ids:
                a, b = prev.masks[prev.ids.index(oid)], cur.masks[i]
                if min(a.sum(), b.sum()) > 200:
                    # Consecutive frames of one object overlap heavily.
                    assert mask_iou(a, b) > 0.6, (t, oid)
                    checked += 1
        prev = cur
    assert checked > 20


def test_moving_scene_objects_enter_and_leave() -> None:
    cam = MovingScene(seed=1, size=(60, 80), num_objects=3, fps=10.0)
    seen: set[int] = set()
    first = set(cam.frame(0).ids)
    for t in range(0, 400, 4):
        seen |= set(cam.frame(t).ids)
    last = set(cam.frame(400).ids)
    assert seen - first, "no new object entered"
    assert first - last, "no object left"


def test_moving_scene_iterates_and_validates() -> None:
    cam = MovingScene(seed=0, size=(32, 48), num_objects=2)
    it = iter(cam)
    assert np.array_equal(next(it).image, cam.frame(0).image)
    assert np.array_equal(next(it).image, cam.frame(1).image)
    with pytest.raises(InputError, match="t:"):
        cam.frame(-1)
    with pytest.raises(InputError, match="fps"):
        MovingScene(fps=0)


def test_scenes_module_needs_no_torch_or_skimage() -> None:
    code = (
        "import sys; import samedge.scenes as s; import numpy as np; "
        "s.MovingScene(size=(32, 32)).frame(0); "
        "bad = [m for m in ('torch', 'skimage') if m in sys.modules]; "
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
