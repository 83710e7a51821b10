"""Overlays and the video / PNG-frame sink."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from samedge.errors import ImageError, InputError, OutputExistsError
from samedge.masks import mask_box
from samedge.stream import sinks as sinks_module
from samedge.stream.draw import color_for_id, draw_objects, draw_text_line
from samedge.stream.sinks import CallbackSink, VideoSink
from samedge.stream.tracking import TrackedObject, TrackState

H, W = 96, 128


def tracked(oid: int, x0: int, y0: int, x1: int, y1: int) -> TrackedObject:
    mask = np.zeros((H, W), bool)
    mask[y0 : y1 + 1, x0 : x1 + 1] = True
    return TrackedObject(oid, TrackState.TRACKING, mask, mask_box(mask), 0.9, int(mask.sum()), 1)


def test_draw_tints_masks_in_their_color_and_leaves_the_rest():
    image = np.full((H, W, 3), 100, np.uint8)
    before = image.copy()
    obj = tracked(2, 40, 40, 90, 80)
    lost = TrackedObject(3, TrackState.LOST, None, (5.0, 60.0, 30.0, 90.0), 0.1, 50, 4, "x")
    out = draw_objects(image, {2: obj, 3: lost}, alpha=0.5)
    np.testing.assert_array_equal(image, before)  # input untouched
    assert out.shape == (H, W, 3)
    inside = out[60, 65].astype(int)
    expected = (np.array([100, 100, 100]) * 0.5 + np.array(color_for_id(2)) * 0.5).astype(int)
    np.testing.assert_allclose(inside, expected, atol=1)
    np.testing.assert_array_equal(out[20, 110], [100, 100, 100])  # far from everything
    np.testing.assert_array_equal(out[75, 17], [100, 100, 100])  # inside the lost box: no tint
    assert (out[90, 5:30] != 100).any()  # but its grey box is drawn


def test_draw_text_line_and_colors():
    image = np.full((H, W, 3), 200, np.uint8)
    draw_text_line(image, "30.0 FPS – ok")  # non-ASCII is replaced, not an error
    assert (image[8:20, 8:60] < 200).any()
    colors = {color_for_id(i) for i in range(1, 11)}
    assert len(colors) == 10
    assert color_for_id(11) == color_for_id(1)


def test_draw_refuses_bad_frames_and_masks():
    with pytest.raises(ImageError, match="expected an H×W×3 uint8"):
        draw_objects(np.zeros((H, W), np.float32), {})
    obj = tracked(1, 1, 1, 5, 5)
    with pytest.raises(ImageError, match="object 1"):
        draw_objects(np.zeros((H + 1, W, 3), np.uint8), {1: obj})


def frames(n: int) -> list[np.ndarray]:
    out = []
    for i in range(n):
        f = np.zeros((H, W, 3), np.uint8)
        f[:, : (i + 1) * 10] = 255
        out.append(f)
    return out


def test_video_sink_writes_a_readable_mp4(tmp_path):
    path = tmp_path / "sub" / "run.mp4"
    sink = VideoSink(path, fps=15.0)
    for f in frames(6):
        sink.write_frame(f)
    assert not path.exists()  # only appears complete
    sink.close()
    sink.close()
    assert sink.fourcc == "mp4v"
    assert "6 frames" in sink.description
    assert [p.name for p in path.parent.iterdir()] == ["run.mp4"]
    cap = cv2.VideoCapture(str(path))
    got = []
    while True:
        ok, f = cap.read()
        if not ok:
            break
        got.append(f)
    cap.release()
    assert len(got) == 6
    assert got[0].shape == (H, W, 3)
    assert got[5][:, :60].mean() > 200
    assert got[5][:, 70:].mean() < 50


def test_video_sink_refuses_to_overwrite_unless_forced(tmp_path):
    path = tmp_path / "run.mp4"
    path.write_bytes(b"old")
    with pytest.raises(OutputExistsError, match="--force"):
        VideoSink(path)
    sink = VideoSink(path, force=True)
    sink.write_frame(frames(1)[0])
    sink.close()
    assert path.stat().st_size > 3


def test_video_sink_interrupted_before_a_frame_saves_nothing(tmp_path, monkeypatch):
    """Ctrl-C while the writer opens or takes its first frame: the old file stays, no temp."""
    path = tmp_path / "run.mp4"
    path.write_bytes(b"old")
    real = cv2.VideoWriter

    class InterruptedOnWrite:
        fourcc = staticmethod(cv2.VideoWriter.fourcc)

        def __init__(self, *args):
            self._writer = real(*args)

        def isOpened(self):  # noqa: N802  (OpenCV's name)
            return self._writer.isOpened()

        def write(self, frame):
            raise KeyboardInterrupt

        def release(self):
            self._writer.release()

    monkeypatch.setattr(sinks_module.cv2, "VideoWriter", InterruptedOnWrite)
    sink = VideoSink(path, force=True)
    with pytest.raises(KeyboardInterrupt):
        sink.write_frame(frames(1)[0])
    sink.close()
    assert sink.output is None
    assert path.read_bytes() == b"old"
    assert not list(tmp_path.glob(".*"))

    class InterruptedOnOpen:
        fourcc = staticmethod(cv2.VideoWriter.fourcc)

        def __init__(self, *args):
            raise KeyboardInterrupt

    monkeypatch.setattr(sinks_module.cv2, "VideoWriter", InterruptedOnOpen)
    sink = VideoSink(path, force=True)
    with pytest.raises(KeyboardInterrupt):
        sink.write_frame(frames(1)[0])
    sink.close()
    assert path.read_bytes() == b"old"
    assert not list(tmp_path.glob(".*"))


def test_png_folder_output_and_fallback(tmp_path, monkeypatch):
    sink = VideoSink(tmp_path / "frames")
    for f in frames(3):
        sink.write_frame(f)
    sink.close()
    names = sorted(p.name for p in (tmp_path / "frames").iterdir())
    # The marker lets a later --force tell this folder from one the user made.
    assert names == [".samedge-frames", "frame_000000.png", "frame_000001.png", "frame_000002.png"]

    class BrokenWriter:
        """A VideoWriter for which no codec works."""

        fourcc = staticmethod(cv2.VideoWriter.fourcc)

        def __init__(self, *args):
            pass

        def isOpened(self):  # noqa: N802  (OpenCV's name)
            return False

        def release(self):
            pass

    monkeypatch.setattr(sinks_module.cv2, "VideoWriter", BrokenWriter)
    sink = VideoSink(tmp_path / "run.mp4")
    for f in frames(2):
        sink.write_frame(f)
    sink.close()
    assert sink.fourcc is None
    assert sink.output == tmp_path / "run_frames"
    assert len(list((tmp_path / "run_frames").glob("*.png"))) == 2
    assert not (tmp_path / "run.mp4").exists()
    assert not list(tmp_path.glob(".*"))  # no temporary leftovers


def test_video_sink_errors(tmp_path):
    with pytest.raises(InputError, match=r"unsupported suffix '\.gif'"):
        VideoSink(tmp_path / "x.gif")
    with pytest.raises(InputError, match="fps"):
        VideoSink(tmp_path / "x.mp4", fps=0)
    sink = VideoSink(tmp_path / "x.avi")
    sink.write_frame(frames(1)[0])
    with pytest.raises(InputError, match="frame size changed"):
        sink.write_frame(np.zeros((H // 2, W, 3), np.uint8))
    sink.abort()
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(InputError, match="callable"):
        CallbackSink(42)  # type: ignore[arg-type]
