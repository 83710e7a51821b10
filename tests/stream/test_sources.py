"""Frame sources: synthetic scene, image folders, video files, bad specs, capture thread."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from samedge.errors import ImageError, InputError
from samedge.stream.latest import LatestFrameReader
from samedge.stream.sources import (
    RECENT_SCENES,
    FrameSource,
    ImageFolderSource,
    SyntheticSource,
    VideoCaptureSource,
    jetson_csi_pipeline,
    open_source,
)

SMALL = (48, 64)


def test_synthetic_is_deterministic_and_carries_ground_truth():
    def frames(seed: int) -> list:
        with SyntheticSource(seed=seed, size=SMALL, num_objects=3, num_frames=3) as src:
            out = []
            for frame in src:
                assert src.last_frame_id == frame.frame_id
                assert src.last_scene is not None
                np.testing.assert_array_equal(src.last_scene.image, frame.image)
                out.append(frame)
            return out

    a, b, c = frames(5), frames(5), frames(6)
    assert [f.frame_id for f in a] == [0, 1, 2]
    assert [f.timestamp for f in a] == pytest.approx([0.0, 1 / 30, 2 / 30])
    assert a[0].image.shape == (*SMALL, 3)
    assert a[0].image.dtype == np.uint8
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x.image, y.image)
    assert not np.array_equal(a[0].image, c[0].image)
    assert not np.array_equal(a[0].image, a[2].image)  # it moves


def test_synthetic_ground_truth_of_recent_frames_by_id():
    """A pipeline that reads ahead scores frame k after frame k+1 was read."""
    with SyntheticSource(seed=1, size=SMALL, num_objects=3, num_frames=4, loop=True) as src:
        frames = [src.read() for _ in range(RECENT_SCENES + 2)]
        assert src.scene_of(frames[-1].frame_id) is src.last_scene
        for frame in frames[2:]:
            scene = src.scene_of(frame.frame_id)
            assert scene is not None
            np.testing.assert_array_equal(scene.image, frame.image)
        # Looping: frame 5 shows the scene's frame 1 again.
        np.testing.assert_array_equal(src.scene_of(5).masks, src.scene_at(1).masks)
        assert src.scene_of(0) is None  # older than the last RECENT_SCENES
        assert src.scene_of(1) is None
        assert src.scene_of(99) is None


def test_synthetic_loop_and_scene_at():
    src = SyntheticSource(seed=1, size=SMALL, num_frames=2, loop=True)
    frames = [src.read() for _ in range(5)]
    assert [f.frame_id for f in frames] == [0, 1, 2, 3, 4]
    np.testing.assert_array_equal(frames[0].image, frames[2].image)
    np.testing.assert_array_equal(src.scene_at(1).image, frames[1].image)
    src.close()
    assert src.read() is None
    assert src.closed


def test_open_source_default_is_the_synthetic_scene_at_640x480():
    for spec in (None, "synthetic", " Synthetic "):
        with open_source(spec) as src:
            assert isinstance(src, SyntheticSource)
            assert src.read().image.shape == (480, 640, 3)
            assert not src.live


def write_images(folder: Path, colors: list[tuple[int, int, int]], names: list[str]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for rgb, name in zip(colors, names, strict=True):
        img = np.zeros((*SMALL, 3), np.uint8)
        img[:] = rgb[::-1]  # OpenCV writes BGR
        assert cv2.imwrite(str(folder / name), img)


def test_image_folder_in_name_order_as_rgb(tmp_path):
    colors = [(255, 0, 0), (0, 255, 0), (0, 0, 255)]
    # Written out of order; read back sorted by name. Non-images are ignored.
    write_images(tmp_path, [colors[2], colors[0], colors[1]], ["c.png", "a.png", "b.jpg"])
    (tmp_path / "notes.txt").write_text("not a frame")
    with open_source(str(tmp_path)) as src:
        assert isinstance(src, ImageFolderSource)
        frames = list(src)
    assert [f.frame_id for f in frames] == [0, 1, 2]
    for frame, rgb in zip(frames, colors, strict=True):
        assert frame.image.shape == (*SMALL, 3)
        np.testing.assert_allclose(frame.image[10, 10], rgb, atol=3)  # JPEG is lossy


def test_image_folder_loops_and_single_image(tmp_path):
    write_images(tmp_path, [(10, 20, 30), (40, 50, 60)], ["0.png", "1.png"])
    with open_source(tmp_path, loop=True) as src:
        frames = [src.read() for _ in range(5)]
    assert [int(f.image[0, 0, 0]) for f in frames] == [10, 40, 10, 40, 10]
    with open_source(tmp_path / "1.png") as src:
        assert [int(f.image[0, 0, 2]) for f in src] == [60]


def test_image_folder_errors(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="holds no images"):
        open_source(tmp_path / "empty")
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "0.png").write_bytes(b"not a png")
    with open_source(tmp_path / "bad") as src, pytest.raises(ImageError, match="cannot decode"):
        src.read()


def write_video(path: Path, n: int) -> None:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, SMALL[::-1])
    assert writer.isOpened()
    for i in range(n):
        frame = np.zeros((*SMALL, 3), np.uint8)
        frame[:, :, 2] = 40 * i  # red ramps up (BGR)
        writer.write(frame)
    writer.release()


def test_video_file_reads_every_frame_then_ends(tmp_path):
    path = tmp_path / "clip.avi"
    write_video(path, 5)
    with open_source(str(path)) as src:
        assert isinstance(src, VideoCaptureSource)
        assert not src.live
        assert src.fps == pytest.approx(10.0)
        frames = list(src)
    assert [f.frame_id for f in frames] == [0, 1, 2, 3, 4]
    assert frames[0].image.shape == (*SMALL, 3)
    reds = [int(f.image[5, 5, 0]) for f in frames]
    np.testing.assert_allclose(reds, [0, 40, 80, 120, 160], atol=6)
    assert [f.timestamp for f in frames] == pytest.approx([0.0, 0.1, 0.2, 0.3, 0.4], abs=1e-3)


def test_video_file_loops(tmp_path):
    path = tmp_path / "clip.avi"
    write_video(path, 3)
    with open_source(path, loop=True) as src:
        frames = [src.read() for _ in range(7)]
    reds = [int(f.image[5, 5, 0]) for f in frames]
    np.testing.assert_allclose(reds, [0, 40, 80, 0, 40, 80, 0], atol=6)
    assert frames[-1].frame_id == 6
    stamps = [f.timestamp for f in frames]
    assert stamps == pytest.approx([0.1 * i for i in range(7)], abs=1e-3)  # no jump back


@pytest.mark.parametrize(
    ("spec", "match"),
    [
        ("/no/such/file.mp4", r"not found; tried it as 'synthetic', a camera index"),
        ("", "empty string"),
        ("ftp://host/x", "unsupported URL scheme 'ftp'"),
        ("99", r"camera 99 .*tried camera index 99"),
        ("videotestsrc ! appsink", "GStreamer"),
        (3.5, "expected a camera index"),
        (-1, "camera index: got -1"),
    ],
)
def test_bad_specs_say_what_was_tried(spec, match):
    with pytest.raises(InputError, match=match):
        open_source(spec)


def test_url_that_does_not_answer_fails_without_leaking_credentials():
    with pytest.raises(InputError, match="could not open") as info:
        open_source("rtsp://user:secret@127.0.0.1:9/stream")
    assert "secret" not in str(info.value)
    assert "rtsp://***@127.0.0.1:9/stream" in str(info.value)


def test_undecodable_video_file(tmp_path):
    path = tmp_path / "clip.mp4"
    path.write_bytes(b"\x00" * 100)
    with pytest.raises(InputError, match="could not decode it"):
        open_source(path)


def test_jetson_csi_pipeline():
    text = jetson_csi_pipeline(1, 1920, 1080, 60, flip_method=2, output_size=(960, 540))
    assert text.startswith("nvarguscamerasrc sensor-id=1 ! ")
    assert "width=1920, height=1080" in text
    assert "framerate=60/1" in text
    assert "nvvidconv flip-method=2" in text
    assert "width=960, height=540, format=BGRx" in text
    assert text.endswith("appsink drop=true max-buffers=1 sync=false")
    assert "!" in text  # so open_source routes it to GStreamer
    with pytest.raises(InputError, match="width"):
        jetson_csi_pipeline(width=0)
    with pytest.raises(InputError, match="sensor_id"):
        jetson_csi_pipeline(sensor_id=-1)


def test_jetson_csi_pipeline_is_public():
    # README and `--source` help tell users to call it as samedge.stream.jetson_csi_pipeline.
    import samedge

    assert samedge.stream.jetson_csi_pipeline is jetson_csi_pipeline
    assert "jetson_csi_pipeline" in samedge.stream.__all__


class CountingSource(FrameSource):
    """Endless tiny frames as fast as they are read; can fail on demand."""

    description = "counting"

    def __init__(self, fail_at: int | None = None) -> None:
        super().__init__()
        self.fail_at = fail_at
        self.close_calls = 0

    def _read(self):
        if self.fail_at is not None and self._next_id >= self.fail_at:
            raise ImageError("boom")
        time.sleep(0.001)
        return np.full((4, 4, 3), self._next_id % 256, np.uint8), float(self._next_id)

    def _close(self):
        self.close_calls += 1


def test_latest_frame_reader_drops_old_frames_and_stops_cleanly():
    baseline = threading.active_count()
    for _ in range(5):
        src = CountingSource()
        with LatestFrameReader(src) as reader:
            ids = []
            for frame in reader:
                ids.append(frame.frame_id)
                if len(ids) == 5:
                    break
                # A slow consumer: the camera delivers 3 more frames meanwhile.
                deadline = time.monotonic() + 10
                while src._next_id < frame.frame_id + 4 and time.monotonic() < deadline:
                    time.sleep(0.001)
        assert ids == sorted(ids)
        assert len(set(ids)) == 5
        assert reader.dropped > 0
        assert ids[-1] - ids[0] > 4  # it skipped ahead, never queued
        assert not reader.alive
        assert src.closed
        assert src.close_calls == 1
    assert threading.active_count() == baseline


def test_latest_frame_reader_ends_with_the_source_and_reraises_its_error():
    reader = LatestFrameReader(CountingSource(fail_at=3))
    ids: list[int] = []

    def drain() -> None:
        while (frame := reader.read(timeout=5)) is not None:
            ids.append(frame.frame_id)

    with pytest.raises(ImageError, match="boom"):
        drain()
    reader.close()
    assert ids  # frames before the failure were delivered
    assert not reader.alive
    assert reader.source.closed


def test_realtime_synthetic_source_is_live_and_paced():
    src = SyntheticSource(seed=0, size=SMALL, fps=50.0, realtime=True)
    assert src.live
    with LatestFrameReader(src) as reader:
        first = reader.read(timeout=5)
        second = reader.read(timeout=5)
    assert first is not None
    assert second is not None
    assert second.frame_id > first.frame_id
    assert second.timestamp >= first.timestamp


def test_paths_of_the_wrong_kind_say_what_they_are(tmp_path):
    """/dev/null and a fifo were reported as "not found"."""
    import os

    with pytest.raises(InputError, match="exists but is a character device") as info:
        open_source("/dev/null")
    assert "not found" not in str(info.value)
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    with pytest.raises(InputError, match=r"a named pipe \(fifo\)"):
        open_source(str(fifo))
    dangling = tmp_path / "link.mp4"
    dangling.symlink_to(tmp_path / "gone.mp4")
    with pytest.raises(InputError, match=r"symbolic link to .*gone\.mp4.*does not exist"):
        open_source(str(dangling))
