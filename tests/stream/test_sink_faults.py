"""The video sink under real faults: a full disk, odd file names, folders in the way.

The full disk is a small tmpfs (root only; skipped elsewhere). Before the
fix a full disk was reported as success and the good previous video was
replaced by an unreadable one; a non-UTF-8 name crashed OpenCV's writer.
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import cv2
import numpy as np
import pytest

from samedge._io import FRAMES_MARKER
from samedge.errors import InputError, OutputExistsError, OutputWriteError
from samedge.stream.sinks import VideoSink
from tests._faults import fill, tmpfs


def _frames(n: int, h: int = 240, w: int = 320) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    # Noise compresses badly, so a few frames take real space.
    return [rng.integers(0, 255, (h, w, 3), dtype=np.uint8) for _ in range(n)]


def _count(path: Path) -> int:
    cap = cv2.VideoCapture(str(path))
    n = 0
    while cap.grab():
        n += 1
    cap.release()
    return n


def _write(sink: VideoSink, frames: list[np.ndarray]) -> None:
    for f in frames:
        sink.write_frame(f)


def test_full_disk_is_an_error_and_keeps_the_previous_video(tmp_path: Path) -> None:
    with tmpfs(tmp_path / "disk", size="4m") as disk:
        previous = disk / "prev.mp4"
        sink = VideoSink(previous, fps=10)
        _write(sink, _frames(3))
        sink.close()
        good = previous.read_bytes()
        assert _count(previous) == 3
        fill(disk, leave=200_000)
        sink = VideoSink(previous, fps=10, force=True)
        _write(sink, _frames(30))
        with pytest.raises(OutputWriteError, match=r"holds \d+ of 30 frames") as info:
            sink.close()
        assert "previous file is kept" in str(info.value)
        assert previous.read_bytes() == good
        assert sink.output is None
        assert sorted(p.name for p in disk.iterdir()) == [".filler", "prev.mp4"]


def test_full_disk_while_writing_png_frames_is_an_error(tmp_path: Path) -> None:
    with tmpfs(tmp_path / "disk", size="2m") as disk:
        fill(disk, leave=150_000)
        sink = VideoSink(disk / "frames", fps=10)
        with pytest.raises(OutputWriteError, match="could not write frame"):
            _write(sink, _frames(20))
        sink.abort()
        assert sorted(p.name for p in disk.iterdir()) == [".filler"]


def test_non_utf8_file_name_is_written_not_crashed_on(tmp_path: Path) -> None:
    """OpenCV's writer segfaulted on b'bad\\xffname.mp4'; run it in a child to survive that."""
    folder = os.fsencode(tmp_path)
    code = textwrap.dedent(
        f"""
        import os, numpy as np
        from samedge.stream.sinks import VideoSink
        target = os.fsdecode({folder!r} + b"/bad\\xffname.mp4")
        sink = VideoSink(target, fps=10)
        for i in range(4):
            sink.write_frame(np.full((64, 96, 3), i * 40, np.uint8))
        sink.close()
        print("frames", sink.frames)
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr[-2000:]
    names = os.listdir(folder)
    assert names == [b"bad\xffname.mp4"]
    written = Path(os.fsdecode(folder + b"/" + names[0]))
    # Read back through an ASCII link: OpenCV cannot take the name itself.
    link = tmp_path / "link.mp4"
    link.symlink_to(written)
    assert _count(link) == 4


def test_non_utf8_folder_name(tmp_path: Path) -> None:
    folder = os.fsencode(tmp_path) + b"/dir\xfe"
    os.mkdir(folder)
    code = textwrap.dedent(
        f"""
        import os, numpy as np
        from samedge.stream.sinks import VideoSink
        sink = VideoSink(os.fsdecode({folder!r} + b"/run.avi"), fps=10)
        for i in range(2):
            sink.write_frame(np.full((48, 64, 3), i * 90, np.uint8))
        sink.close()
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert os.listdir(folder) == [b"run.avi"]
    assert os.stat(folder + b"/run.avi").st_size > 0


def test_video_follows_the_umask(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        sink = VideoSink(tmp_path / "run.mp4", fps=10)
        _write(sink, _frames(2, 48, 64))
        sink.close()
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "run.mp4").stat().st_mode) == 0o644


def test_a_directory_at_the_output_path_is_refused_up_front(tmp_path: Path) -> None:
    (tmp_path / "x.mp4").mkdir()
    with pytest.raises(InputError, match="is a directory"):
        VideoSink(tmp_path / "x.mp4", force=True)
    assert [p.name for p in tmp_path.iterdir()] == ["x.mp4"]


def test_force_replaces_only_a_frames_folder_samedge_wrote(tmp_path: Path) -> None:
    mine = tmp_path / "D"
    (mine / "sub").mkdir(parents=True)
    (mine / "notes.txt").write_text("keep")
    with pytest.raises(OutputExistsError, match=r"did not write.*notes\.txt"):
        VideoSink(mine, force=True)
    assert (mine / "notes.txt").read_text() == "keep"

    ours = tmp_path / "frames"
    sink = VideoSink(ours)
    _write(sink, _frames(2, 32, 32))
    sink.close()
    assert (ours / FRAMES_MARKER).is_file()
    sink = VideoSink(ours, force=True)
    _write(sink, _frames(1, 32, 32))
    sink.close()
    assert len(list(ours.glob("*.png"))) == 1
