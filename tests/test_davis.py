"""DAVIS-format folders: label PNGs, the reader's checks, the writer, and the procedural set."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from samedge.davis import (
    EVENTS,
    MANIFEST,
    VOID_LABEL,
    SequenceEvents,
    davis_palette,
    read_davis,
    read_label_png,
    scene_events,
    write_davis,
    write_label_png,
    write_moving_scenes,
)
from samedge.errors import ImageError, InputError, OutputExistsError, SamedgeError
from samedge.scenes import MovingScene, ObjectLayout

# ----------------------------------------------------------------------------- label PNGs


def test_palette_is_davis_and_distinct() -> None:
    pal = davis_palette()
    assert pal.shape == (256, 3)
    # DAVIS's (PASCAL VOC's) first colours and its void colour.
    assert pal[:5].tolist() == [[0, 0, 0], [128, 0, 0], [0, 128, 0], [128, 128, 0], [0, 0, 128]]
    assert pal[255].tolist() == [224, 224, 192]
    assert len({tuple(c) for c in pal.tolist()}) == 256


def test_label_png_round_trip_and_pillow_agrees(tmp_path: Path) -> None:
    labels = np.random.default_rng(0).integers(0, 256, (37, 53)).astype(np.uint8)
    labels[:3] = VOID_LABEL
    path = write_label_png(tmp_path / "a.png", labels)
    assert np.array_equal(read_label_png(path), labels)
    Image = pytest.importorskip("PIL.Image")
    with Image.open(path) as img:
        assert img.mode == "P"
        assert np.array_equal(np.array(img), labels)


def test_label_png_reads_other_writers(tmp_path: Path) -> None:
    labels = (np.arange(40 * 30).reshape(30, 40) % 7).astype(np.uint8)
    cv2.imwrite(str(tmp_path / "gray.png"), labels)  # 8-bit grayscale
    assert np.array_equal(read_label_png(tmp_path / "gray.png"), labels)
    Image = pytest.importorskip("PIL.Image")
    img = Image.fromarray(labels, mode="P")
    # A short palette of its own, and one padded with black (colours shared by indices).
    img.putpalette([0, 0, 0, 10, 20, 30, 40, 50, 60, 1, 2, 3, 9, 9, 9, 200, 0, 0, 0, 200, 0])
    img.save(tmp_path / "short.png")
    assert np.array_equal(read_label_png(tmp_path / "short.png"), labels)
    img.putpalette([0, 0, 0, 10, 20, 30, 40, 50, 60, 1, 2, 3, 9, 9, 9, 0, 0, 0, 0, 200, 0])
    img.save(tmp_path / "shared.png")
    assert np.array_equal(read_label_png(tmp_path / "shared.png"), labels)


def test_label_png_shared_colours_without_pillow(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    Image = pytest.importorskip("PIL.Image")
    img = Image.fromarray(np.array([[0, 1], [2, 1]], np.uint8), mode="P")
    img.putpalette([0, 0, 0, 5, 5, 5, 5, 5, 5])  # indices 1 and 2 share a colour
    img.save(tmp_path / "shared.png")
    monkeypatch.setitem(sys.modules, "PIL", None)  # as if Pillow were not installed
    with pytest.raises(SamedgeError, match="install Pillow"):
        read_label_png(tmp_path / "shared.png")


def test_label_png_refuses_colour_and_non_png(tmp_path: Path) -> None:
    cv2.imwrite(str(tmp_path / "rgb.png"), np.zeros((8, 8, 3), np.uint8))
    with pytest.raises(InputError, match="RGB PNG; expected an 8-bit palette"):
        read_label_png(tmp_path / "rgb.png")
    (tmp_path / "fake.png").write_bytes(b"not a png at all")
    with pytest.raises(InputError, match="not a PNG"):
        read_label_png(tmp_path / "fake.png")
    with pytest.raises(InputError, match="uint8"):
        write_label_png(tmp_path / "x.png", np.zeros((4, 4), np.int32))


# ----------------------------------------------------------------------------- reader


def _make(root: Path, seqs: dict[str, int], size: tuple[int, int] = (24, 32)) -> Path:
    """A DAVIS folder by hand: ``seqs`` maps names to frame counts; object 1 is a square."""
    h, w = size
    for name, n in seqs.items():
        (root / "JPEGImages" / name).mkdir(parents=True)
        (root / "Annotations" / name).mkdir(parents=True)
        for i in range(n):
            img = np.full((h, w, 3), 40 * i % 255, np.uint8)
            cv2.imwrite(str(root / "JPEGImages" / name / f"{i:05d}.jpg"), img)
            labels = np.zeros((h, w), np.uint8)
            labels[4 + i : 12 + i, 5:15] = 1
            write_label_png(root / "Annotations" / name / f"{i:05d}.png", labels)
    return root


def test_reader_reads_sequences_lazily(tmp_path: Path) -> None:
    root = _make(tmp_path / "d", {"b": 3, "a": 4})
    data = read_davis(root)
    assert [s.name for s in data] == ["a", "b"]
    assert data.frames == 7
    seq = data.sequences[0]
    assert seq.frame_names == ("00000", "00001", "00002", "00003")
    assert seq.object_ids() == (1,)
    frames = list(seq.frames())
    assert frames[2].image.shape == (24, 32, 3)
    assert frames[2].mask(1).sum() == 80
    assert seq.events is None


def test_reader_split_resolution_and_filter(tmp_path: Path) -> None:
    root = tmp_path / "DAVIS"
    _make(root / "tmp", {"x": 3, "y": 3, "z": 3})
    # DAVIS's release layout: a resolution level and ImageSets/2017/<split>.txt.
    (root / "JPEGImages").mkdir()
    (root / "Annotations").mkdir()
    (root / "tmp" / "JPEGImages").rename(root / "JPEGImages" / "480p")
    (root / "tmp" / "Annotations").rename(root / "Annotations" / "480p")
    (root / "ImageSets" / "2017").mkdir(parents=True)
    (root / "ImageSets" / "2017" / "val.txt").write_text("z\nx\n")
    assert [s.name for s in read_davis(root, split="val")] == ["z", "x"]
    assert [s.name for s in read_davis(root, sequences=["y"])] == ["y"]
    with pytest.raises(InputError, match="split 'test'"):
        read_davis(root, split="test")
    with pytest.raises(InputError, match="did you mean 'y'"):
        read_davis(root, sequences=["yy"])
    with pytest.raises(InputError, match="no JPEGImages/720p/"):
        read_davis(root, resolution="720p")


def test_reader_errors_are_one_line(tmp_path: Path) -> None:
    def fails(root: Path, match: str) -> None:
        with pytest.raises(InputError, match=match) as info:
            read_davis(root)
        assert "\n" not in str(info.value)

    fails(tmp_path / "nothing", "no such folder")
    (tmp_path / "empty").mkdir()
    fails(tmp_path / "empty", "no JPEGImages/ folder")
    (tmp_path / "empty" / "JPEGImages").mkdir()
    (tmp_path / "empty" / "Annotations").mkdir()
    fails(tmp_path / "empty", "no sequences")

    root = _make(tmp_path / "missing", {"s": 4})
    (root / "Annotations" / "s" / "00002.png").unlink()
    fails(root, r"1 frame\(s\) without an annotation \(00002\)")

    root = _make(tmp_path / "extra", {"s": 3})
    write_label_png(root / "Annotations" / "s" / "00009.png", np.zeros((24, 32), np.uint8))
    fails(root, r"1 annotation\(s\) without a frame \(00009\)")

    root = _make(tmp_path / "kinds", {"s": 3})
    (root / "JPEGImages" / "s" / "notes.txt").write_text("x")
    fails(root, r"not JPEG \(.jpg\) \(notes.txt\)")

    root = _make(tmp_path / "kinds2", {"s": 3})
    cv2.imwrite(str(root / "Annotations" / "s" / "00001.jpg"), np.zeros((4, 4, 3), np.uint8))
    fails(root, r"not PNG \(.png\)")

    root = _make(tmp_path / "noann", {"s": 3})
    for p in (root / "Annotations" / "s").iterdir():
        p.unlink()
    (root / "Annotations" / "s").rmdir()
    fails(root, "no annotations folder")

    root = _make(tmp_path / "noframes", {"s": 3})
    for p in (root / "JPEGImages" / "s").iterdir():
        p.unlink()
    fails(root, "holds no .jpg frames")


def test_reader_frame_errors(tmp_path: Path) -> None:
    root = _make(tmp_path / "d", {"s": 3})
    write_label_png(root / "Annotations" / "s" / "00001.png", np.zeros((10, 10), np.uint8))
    (root / "JPEGImages" / "s" / "00002.jpg").write_bytes(b"broken")
    seq = read_davis(root).sequences[0]
    with pytest.raises(InputError, match=r"annotation is 10x10 .* 24x32"):
        seq.frame(1)
    with pytest.raises(ImageError, match="cannot decode"):
        seq.frame(2)


# ----------------------------------------------------------------------------- writer


def _frames(n: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        small = rng.integers(0, 255, (4, 5, 3)).astype(np.uint8)
        img = cv2.resize(small, (40, 30), interpolation=cv2.INTER_LINEAR)  # smooth: JPEG keeps it
        out.append((img, rng.integers(0, 4, (30, 40)).astype(np.uint8)))
    return out


def test_writer_round_trip(tmp_path: Path) -> None:
    seqs = {"one": _frames(3, 0), "two": _frames(4, 1)}
    events = {
        "two": SequenceEvents(
            frames=("00000", "00001", "00002", "00003"),
            objects={1: ((), ("crossing",), ("occlusion",), ("after_occlusion", "reentry"))},
        )
    }
    out = write_davis(tmp_path / "out", seqs.items(), events=events)
    data = read_davis(out)
    assert [s.name for s in data] == ["one", "two"]
    for seq in data:
        for frame, (img, labels) in zip(seq.frames(), seqs[seq.name], strict=True):
            assert np.array_equal(frame.labels, labels)
            assert np.abs(frame.image.astype(int) - img).mean() < 3  # JPEG
    assert data.sequences[0].events is None
    assert data.sequences[1].events == events["two"]
    assert (out / "ImageSets" / "all.txt").read_text().split() == ["one", "two"]
    assert json.loads((out / MANIFEST).read_text())["sequences"] == ["one", "two"]


def test_writer_never_loses_what_was_there(tmp_path: Path) -> None:
    out = write_davis(tmp_path / "out", [("a", _frames(3, 0))])
    with pytest.raises(OutputExistsError, match="--force"):
        write_davis(out, [("b", _frames(3, 1))])

    def broken():  # a failure halfway leaves the old folder as it was
        yield _frames(1, 2)[0]
        raise RuntimeError("camera unplugged")

    with pytest.raises(RuntimeError):
        write_davis(out, [("b", broken())], force=True)
    assert [s.name for s in read_davis(out)] == ["a"]
    write_davis(out, [("b", _frames(3, 1))], force=True)
    assert [s.name for s in read_davis(out)] == ["b"]
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "thesis.tex").write_text("x")
    with pytest.raises(OutputExistsError, match="did not write it"):
        write_davis(mine, [("a", _frames(3, 0))], force=True)
    with pytest.raises(InputError, match="plain folder name"):
        write_davis(tmp_path / "bad", [("../up", _frames(3, 0))])
    assert not (tmp_path / "bad").exists()


def test_events_validate_and_read_back() -> None:
    ev = SequenceEvents(("a", "b"), {3: (("crossing",), ())}, window=4, source={"seed": 1})
    assert SequenceEvents.from_dict(ev.to_dict()) == ev
    assert ev.at(3, 0) == ("crossing",)
    assert ev.at(9, 0) == ()
    with pytest.raises(InputError, match="expected one of"):
        SequenceEvents(("a",), {1: (("teleport",),)})
    with pytest.raises(InputError, match="got 1 frames, expected 2"):
        SequenceEvents(("a", "b"), {1: ((),)})
    bad = ev.to_dict()
    bad["objects"]["3"]["crossing"] = [5]
    with pytest.raises(InputError, match="got frame 5"):
        SequenceEvents.from_dict(bad)
    with pytest.raises(InputError, match="not a samedge events file"):
        SequenceEvents.from_dict({"objects": {}})


# ----------------------------------------------------------------------------- events


def test_scene_events_from_layouts() -> None:
    L = ObjectLayout
    frames = [
        [L(1, 100, 100), L(2, 50, 50)],
        [L(1, 100, 100, (2,), ()), L(2, 50, 40, (1,), (1,))],  # touching: a crossing
        [L(1, 100, 100, (2,), ()), L(2, 50, 10, (1,), (1,))],  # 2 mostly hidden
        [L(1, 100, 100), L(2, 50, 50)],  # 2 out from behind
        [L(1, 0, 0), L(2, 50, 50)],  # 1 outside the frame
        [L(2, 50, 50)],  # 1's life over, it will come back
        [L(1, 30, 30), L(2, 50, 50)],  # 1 back in
        [L(1, 60, 60), L(2, 50, 50)],
    ]
    ev = scene_events(frames, [1, 2], window=2)
    assert ev[1] == (
        (),
        ("crossing",),
        ("crossing",),
        (),
        ("out_of_frame",),
        ("out_of_frame",),
        ("reentry",),
        ("reentry",),
    )
    # The window covers the 2 frames after the last occluded one.
    after = ("after_occlusion",)
    assert ev[2] == ((), ("crossing",), ("occlusion",), after, after, (), (), ())
    # An object not yet seen is not "out of frame"; one never listed is out only once seen.
    assert scene_events([[], [L(5, 10, 10)]], [5])[5] == ((), ())


# ----------------------------------------------------------------------------- scenes


def test_moving_scene_options_keep_defaults() -> None:
    plain = MovingScene(seed=4, size=(48, 64), num_objects=3)
    again = MovingScene(seed=4, size=(48, 64), num_objects=3, reentry=0.0, occluders=0)
    for t in (0, 17, 200):
        a, (b, layout) = plain.frame(t), again.frame_layout(t)
        assert np.array_equal(a.image, b.image)
        assert np.array_equal(a.masks, b.masks)
        assert a.ids == b.ids
        shown = {o.object_id: o for o in layout}
        for oid, mask in zip(a.ids, a.masks, strict=True):
            assert shown[oid].visible_px == mask.sum() <= shown[oid].footprint_px
    with pytest.raises(InputError, match="reentry"):
        MovingScene(reentry=1.5)
    with pytest.raises(InputError, match="occluders"):
        MovingScene(occluders=-1)
    with pytest.raises(InputError, match="backgrounds"):
        MovingScene(backgrounds=[np.zeros((8, 8), np.uint8)])


def test_moving_scene_reentry_and_occluders() -> None:
    cam = MovingScene(seed=900_003, size=(60, 80), num_objects=3, fps=10, reentry=1.0, occluders=1)
    layouts = [cam.frame_layout(t)[1] for t in range(200)]
    first = {o.object_id for o in layouts[0] if o.visible_px}
    ev = scene_events(layouts, sorted(first), window=5)
    seen = {e for per_frame in ev.values() for names in per_frame for e in names}
    assert {"reentry", "occlusion", "out_of_frame", "crossing"} <= seen
    # With reentry=1 no new object ever enters: every id is one of the first frame's slots.
    ids = {o.object_id for frame in layouts for o in frame}
    assert ids == {1, 2, 3, 4}
    # The occluder (slot 3, id 4) is always drawn in front: nothing covers it.
    assert all(not o.covered_by for frame in layouts for o in frame if o.object_id == 4)


def test_write_moving_scenes(tmp_path: Path) -> None:
    out = write_moving_scenes(
        tmp_path / "held", sequences=2, seed=900_010, frames=12, size=(48, 64), photos=False
    )
    data = read_davis(out)
    assert [s.name for s in data] == ["scene_900010", "scene_900011"]
    manifest = json.loads((out / MANIFEST).read_text())
    assert manifest["seed"] == 900_010
    assert manifest["photos"] is False
    seq = data.sequences[0]
    cam = MovingScene(
        seed=900_010, size=(48, 64), num_objects=4, fps=12.0, reentry=0.75, occluders=1
    )
    scene0, scene5 = cam.frame(0), cam.frame(5)
    # First-frame objects get 1..K in id order, and keep their label.
    label_of = {oid: k + 1 for k, oid in enumerate(sorted(scene0.ids))}
    for t, scene in ((0, scene0), (5, scene5)):
        labels = seq.labels(t)
        for oid, mask in zip(scene.ids, scene.masks, strict=True):
            if oid in label_of:
                assert np.array_equal(labels == label_of[oid], mask)
    assert seq.object_ids() == tuple(range(1, len(scene0.ids) + 1))
    assert seq.events is not None
    assert set(seq.events.objects) == set(seq.object_ids())
    assert seq.events.source["seed"] == 900_010
    assert all(e in EVENTS for per in seq.events.objects.values() for n in per for e in n)
    with pytest.raises(InputError, match="frames"):
        write_moving_scenes(tmp_path / "x", frames=1)
