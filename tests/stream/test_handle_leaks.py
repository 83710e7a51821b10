"""No file or thread leaks over real captures: a video file and an image folder.

The other start/stop tests use the synthetic scene, which holds no OS handle.
Here every public way in (``open_source``, ``samedge.stream``, a
:class:`~samedge.stream.Pipeline` with its capture thread, the server's
:class:`~samedge.serve.StreamService`) opens a real ``cv2.VideoCapture`` or
reads image files, five times over, read to the end or left in the middle;
afterwards the process must hold no file descriptor and no thread (Python or
native, e.g. FFmpeg's decoder threads) that it did not hold before.

Linux only: the checks read ``/proc/self/fd`` and ``/proc/self/task``.
"""

from __future__ import annotations

import collections
import contextlib
import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest

import samedge
from samedge import ObjectPrompt
from samedge.stream import Pipeline, Tracker, open_source
from tests._shared import PERMISSIVE, TINY_CARD

pytestmark = [
    pytest.mark.skipif(
        not Path("/proc/self/fd").is_dir(), reason="counts handles in /proc (Linux only)"
    ),
    pytest.mark.skipif(not TINY_CARD.exists(), reason="samedge_tiny is not shipped yet"),
]

REPEATS = 5
VIDEO_FRAMES = 36
FOLDER_IMAGES = 8
SIZE = (96, 128)  # (H, W): small, the machine is shared
PROMPT = ObjectPrompt(point_coords=[[30, 48]], point_labels=[1])
# How long an OS thread whose Python thread was joined may take to vanish.
_EXIT_GRACE_S = 2.0


class Handles:
    """What the process holds: open file descriptors and threads."""

    def __init__(self) -> None:
        self.fds = _fds()
        self.tasks = _tasks()
        self.names = collections.Counter(t.name for t in threading.enumerate())

    def assert_nothing_new(self, what: str) -> None:
        """Fail, listing them, if any descriptor or thread appeared since this snapshot.

        Only *new* entries count: a thread an earlier test left behind that ends
        meanwhile is not this code's doing, and must not hide one that appeared.
        """
        now = Handles()
        # Thread.join() returns when the Python thread is done, a moment before its
        # OS thread leaves /proc/self/task (measured: most joins, on this machine);
        # a thread that was really left running is still there after the grace period.
        deadline = time.monotonic() + _EXIT_GRACE_S
        while set(now.tasks) - set(self.tasks) and time.monotonic() < deadline:
            time.sleep(0.01)
            now = Handles()
        new_fds = {fd: target for fd, target in now.fds.items() if self.fds.get(fd) != target}
        new_tasks = {tid: comm for tid, comm in now.tasks.items() if tid not in self.tasks}
        new_names = sorted((now.names - self.names).elements())
        assert not new_fds, f"{what}: file descriptors left open: {new_fds}"
        threads = f"OS threads {new_tasks}, Python threads {new_names}"
        assert not new_tasks, f"{what}: threads left running: {threads}"
        assert not new_names, f"{what}: threads left running: {threads}"


def _fds() -> dict[int, str]:
    out = {}
    for name in os.listdir("/proc/self/fd"):
        # OSError: the directory handle listdir() itself used, closed by now.
        with contextlib.suppress(OSError):
            out[int(name)] = os.readlink(f"/proc/self/fd/{name}")
    return out


def _tasks() -> dict[int, str]:
    out = {}
    for name in os.listdir("/proc/self/task"):
        # OSError: the thread ended between the listing and the read.
        with contextlib.suppress(OSError):
            out[int(name)] = Path(f"/proc/self/task/{name}/comm").read_text().strip()
    return out


def repeat_without_leaks(what: str, body: Callable[[], None]) -> None:
    """Run ``body`` once to warm up, then ``REPEATS`` times checking for leaks.

    The warm-up pass is not checked, and no tolerance is allowed after it: the
    first use opens process-wide state once and keeps it to the end of the
    process (ONNX Runtime's environment, its thread pool and its telemetry
    database ``onnxruntime.db``; OpenCV's FFmpeg plugin), which is not a
    leak. Anything that grows after that pass is.
    """
    body()
    before = Handles()
    for i in range(REPEATS):
        body()
        before.assert_nothing_new(f"{what}, repeat {i + 1} of {REPEATS}")


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A small MJPEG video and a folder of PNG images, a disc moving across each."""
    root = tmp_path_factory.mktemp("media")
    video = root / "clip.avi"
    height, width = SIZE
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 15.0, (width, height))
    if not writer.isOpened():
        raise RuntimeError(
            f"cv2.VideoWriter could not open {video} (MJPG/.avi); this OpenCV "
            f"({cv2.__version__}) lacks a video writer backend"
        )
    folder = root / "frames"
    folder.mkdir()
    for i in range(VIDEO_FRAMES):
        image = np.full((height, width, 3), 40, np.uint8)
        cv2.circle(image, (20 + 2 * i, height // 2), 15, (0, 200, 255), -1)
        writer.write(image)
        if i < FOLDER_IMAGES:
            cv2.imwrite(str(folder / f"frame_{i:03d}.png"), image)
    writer.release()
    return video, folder


@pytest.fixture(scope="module")
def predictor() -> Iterator[object]:
    from samedge.predictor import Predictor

    with Predictor("samedge_tiny", backend="onnxruntime") as p:
        yield p


def test_open_source_read_to_the_end_or_not(media):
    video, folder = media

    def whole() -> None:
        for spec, expected in ((video, VIDEO_FRAMES), (folder, FOLDER_IMAGES)):
            with open_source(str(spec)) as source:
                frames = [image.shape for _, _, image in source]
            assert source.closed
            assert frames == [(*SIZE, 3)] * expected, spec

    def left_midway() -> None:
        for spec in (video, folder):
            source = open_source(str(spec), loop=True)
            for frame_id, _, _ in source:
                if frame_id == 2 * FOLDER_IMAGES:  # past the folder's end: it looped
                    break
            source.close()

    repeat_without_leaks("open_source, read to the end", whole)
    repeat_without_leaks("open_source with loop=True, left midway", left_midway)


def test_samedge_stream_over_files(media, predictor):
    video, folder = media

    def whole() -> None:
        for spec, expected in ((video, VIDEO_FRAMES), (folder, FOLDER_IMAGES)):
            results = list(samedge.stream(str(spec), PROMPT, model=predictor, tracker=PERMISSIVE))
            assert [r.frame_id for r in results] == list(range(expected)), spec

    def broken_off() -> None:
        for result in samedge.stream(str(video), PROMPT, model=predictor, tracker=PERMISSIVE):
            if result.frame_id == 3:
                break

    repeat_without_leaks("samedge.stream, to the end", whole)
    repeat_without_leaks("samedge.stream, left with break", broken_off)


def test_threaded_pipeline_over_a_video(media, predictor):
    video, _ = media

    def run() -> None:
        # threaded=True: the capture thread owns and releases the VideoCapture.
        source = open_source(str(video))
        tracker = Tracker(PERMISSIVE)
        tracker.add_prompt(PROMPT)
        pipe = Pipeline(source, predictor, tracker, threaded=True, annotate=False)
        summary = pipe.run()
        assert summary.frames >= 1
        assert source.closed

    repeat_without_leaks("Pipeline(threaded=True) over a video", run)


def test_stream_service_over_files(media):
    pytest.importorskip("starlette", reason="the serve extra is not installed")
    from samedge.serve import ServeConfig, StreamService

    video, folder = media

    def stopped_while_running() -> None:
        config = ServeConfig(
            source=str(video), model="samedge_tiny", backend="onnxruntime", loop=True
        )
        service = StreamService(config)
        service.start()
        assert service.wait_for_frame(timeout=60), service.health()
        assert service.running
        service.stop()
        assert service.state == "stopped"

    def ended_by_itself() -> None:
        config = ServeConfig(source=str(folder), model="samedge_tiny", backend="onnxruntime")
        with StreamService(config) as service:
            assert service.wait_for_frame(timeout=60), service.health()
            for thread in service.threads():
                if thread.name == "samedge-serve-pipeline":
                    thread.join(timeout=60)
            assert service.state == "ended", service.health()

    repeat_without_leaks("StreamService over a looping video, stopped", stopped_while_running)
    repeat_without_leaks("StreamService over an image folder, ended", ended_by_itself)
