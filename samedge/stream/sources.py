"""Frame sources: the built-in moving scene, cameras, video files, URLs, image folders.

Every source is a :class:`FrameSource`: a context manager that yields
:class:`Frame` tuples ``(frame_id, timestamp, image)`` with ``image`` an
H×W×3 uint8 RGB array, and releases its handle in :meth:`FrameSource.close`.
:func:`open_source` turns the ``--source`` string into one.

Timestamps are seconds: the media time for files, folders and the synthetic
scene (so runs are reproducible), ``time.monotonic()`` at capture for live
sources (cameras, URLs, GStreamer pipelines).

Example:
    >>> from samedge.stream import open_source
    >>> with open_source("synthetic") as src:           # doctest: +SKIP
    ...     for frame_id, timestamp, image in src:
    ...         print(frame_id, image.shape)            # 0 (480, 640, 3) ...
    ...         break
"""

from __future__ import annotations

import abc
import collections
import functools
import logging
import os
import re
import stat
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, NamedTuple

import cv2
import numpy as np

from samedge.errors import ImageError, InputError, SourceError

if TYPE_CHECKING:
    from samedge.scenes import MovingScene, Scene
    from samedge.stream.reconnect import ReconnectPolicy

__all__ = [
    "IMAGE_EXTENSIONS",
    "RECENT_SCENES",
    "SYNTHETIC",
    "Frame",
    "FrameSource",
    "ImageFolderSource",
    "PushSource",
    "SyntheticSource",
    "VideoCaptureSource",
    "is_synthetic",
    "jetson_csi_pipeline",
    "open_source",
]

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS = (".bmp", ".jpeg", ".jpg", ".png", ".tif", ".tiff", ".webp")
URL_SCHEMES = ("rtsp", "rtsps", "rtmp", "http", "https", "udp", "tcp", "srt")
#: Frames whose ground truth :meth:`SyntheticSource.scene_of` still finds; a
#: pipeline reads at most one frame ahead, a few more cost little memory.
RECENT_SCENES = 8
# A URL that does not answer should fail in seconds, not hang the CLI.
_OPEN_TIMEOUT_MS = 10_000
_READ_TIMEOUT_MS = 10_000


class Frame(NamedTuple):
    """One captured frame.

    Attributes:
        frame_id: 0, 1, 2, ... in capture order (keeps counting across loops).
        timestamp: Seconds (media time for files and the synthetic scene,
            ``time.monotonic()`` at capture for live sources).
        image: H×W×3 uint8 RGB.
    """

    frame_id: int
    timestamp: float
    image: np.ndarray


class FrameSource(abc.ABC):
    """A stream of RGB frames; iterate it, then close it (or use ``with``).

    Subclasses implement :meth:`_read` (next image and timestamp, ``None`` at
    the end) and :meth:`_close`.

    Attributes:
        description: What was opened, for logs and reports (``"camera 0 (V4L2)"``).
        live: True for sources that produce frames in real time whether or not
            they are read (cameras, URLs, GStreamer); the pipeline then reads
            them from a :class:`LatestFrameReader` thread so that a slow model
            drops frames instead of falling behind.
        fps: Nominal frames per second, ``None`` when unknown.
    """

    description: str = "source"
    live: bool = False
    fps: float | None = None

    def __init__(self) -> None:
        self._next_id = 0
        self._closed = False

    def read(self) -> Frame | None:
        """The next frame, or ``None`` when the source has ended or was closed."""
        if self._closed:
            return None
        got = self._read()
        if got is None:
            return None
        image, timestamp = got
        frame = Frame(self._next_id, timestamp, image)
        self._next_id += 1
        return frame

    def __iter__(self) -> Iterator[Frame]:
        while True:
            frame = self.read()
            if frame is None:
                return
            yield frame

    def close(self) -> None:
        """Release the underlying handle; safe to call more than once."""
        if not self._closed:
            self._closed = True
            self._close()

    def interrupt(self) -> None:  # noqa: B027  (only sources that wait have something to wake)
        """Wake a :meth:`read` that waits for something other than the device (a
        reconnect delay, a pushed frame) so it returns ``None`` soon; safe from any
        thread. Closing stays with the thread that reads."""

    @property
    def closed(self) -> bool:
        return self._closed

    def __enter__(self) -> FrameSource:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.description}{' closed' if self._closed else ''}>"

    @abc.abstractmethod
    def _read(self) -> tuple[np.ndarray, float] | None: ...

    def _close(self) -> None:  # noqa: B027  (most sources hold nothing to release)
        """Release resources; called once."""


class SyntheticSource(FrameSource):
    """The built-in moving scene (``samedge.scenes.MovingScene``) as a camera.

    Ground truth travels with it: :attr:`last_scene` is the :class:`Scene`
    (image, instance masks, stable object ids) of the frame last read, which
    the demo uses to click objects, and :attr:`last_frame_id` the id of that
    frame; :meth:`scene_of` looks up a recently read frame by id, for code
    that sees a frame after the next one was read (a pipeline reading ahead).

    Args:
        seed: Scene seed; the same seed gives the same frames.
        size: ``(height, width)`` of the frames.
        num_objects: Objects in the scene.
        fps: Frame rate of the scene's motion (and of ``realtime`` pacing).
        num_frames: End after this many frames; ``None`` runs forever.
        loop: With ``num_frames``, start over instead of ending.
        realtime: Pace frames at ``fps`` like a camera and report ``live``.

    Example:
        >>> src = SyntheticSource(seed=0, num_frames=2)
        >>> [f.frame_id for f in src]
        [0, 1]
    """

    def __init__(
        self,
        seed: int = 0,
        size: tuple[int, int] = (480, 640),
        num_objects: int = 4,
        fps: float = 30.0,
        *,
        num_frames: int | None = None,
        loop: bool = False,
        realtime: bool = False,
    ) -> None:
        super().__init__()
        if num_frames is not None and num_frames <= 0:
            raise InputError(f"num_frames: got {num_frames}, expected a positive int or None")
        if fps <= 0:
            raise InputError(f"fps: got {fps}, expected a positive frame rate")
        from samedge.scenes import MovingScene

        self.scene: MovingScene = MovingScene(
            seed=seed, size=size, num_objects=num_objects, fps=fps
        )
        self.fps = self._fps = float(fps)
        self.num_frames = num_frames
        self.loop = loop
        self.live = realtime
        self.description = (
            f"synthetic (seed {seed}, {size[1]}x{size[0]}, {num_objects} objects, {fps:g} fps)"
        )
        self.last_scene: Scene | None = None
        self.last_frame_id: int | None = None
        # Read on one thread, looked up on another (a pipeline's encoder worker
        # reads while its loop scores the frame before): a lock keeps them apart.
        self._recent: collections.OrderedDict[int, Scene] = collections.OrderedDict()
        self._recent_lock = threading.Lock()
        self._t = 0
        self._start: float | None = None

    def scene_at(self, index: int) -> Scene:
        """Ground truth of the scene's ``index``-th frame (independent of reading)."""
        return self.scene.frame(index)

    def scene_of(self, frame_id: int) -> Scene | None:
        """Ground truth of the frame read with ``frame_id``, if it is among the last
        :data:`RECENT_SCENES` read; ``None`` otherwise."""
        with self._recent_lock:
            return self._recent.get(frame_id)

    def _read(self) -> tuple[np.ndarray, float] | None:
        if self.num_frames is not None and self._t >= self.num_frames:
            if not self.loop:
                return None
            self._t = 0
        if self.live:
            # Sleep until this frame's capture time, like a camera's shutter.
            now = time.monotonic()
            if self._start is None:
                self._start = now
            due = self._start + self._next_id / self._fps
            if due > now:
                time.sleep(due - now)
        scene = self.scene.frame(self._t)
        self.last_scene = scene
        self.last_frame_id = self._next_id
        with self._recent_lock:
            self._recent[self._next_id] = scene
            while len(self._recent) > RECENT_SCENES:
                self._recent.popitem(last=False)
        timestamp = time.monotonic() if self.live else self._next_id / self._fps
        self._t += 1
        return scene.image, timestamp


class VideoCaptureSource(FrameSource):
    """A ``cv2.VideoCapture``: camera index, video file, URL or GStreamer pipeline.

    Prefer :func:`open_source`, which picks the OpenCV backend for the spec
    and says what it tried when opening fails.

    Args:
        target: Camera index, file path, URL or GStreamer pipeline string.
        api: OpenCV backend id (``cv2.CAP_V4L2``, ``cv2.CAP_FFMPEG``, ...).
        description: What was opened, for logs and errors.
        live: Whether the source runs in real time (camera, URL, pipeline).
        loop: For files, rewind at the end instead of ending.
        params: ``cv2.VideoCapture`` open parameters (``[prop, value, ...]``).
    """

    def __init__(
        self,
        target: int | str,
        api: int,
        description: str,
        *,
        live: bool,
        loop: bool = False,
        params: list[int] | None = None,
    ) -> None:
        super().__init__()
        self.description = description
        self.live = live
        self.loop = loop
        self._target = target
        self._cap = cv2.VideoCapture(target, api, params or [])
        if not self._cap.isOpened():
            self._cap.release()
            raise SourceError(f"{description}: cv2.VideoCapture could not open it")
        fps = float(self._cap.get(cv2.CAP_PROP_FPS) or 0.0)
        self.fps = fps if 0.0 < fps < 1000.0 else None
        # Media time keeps increasing across loops: each pass starts where the last ended.
        self._offset = 0.0
        self._last_timestamp = 0.0

    def _read(self) -> tuple[np.ndarray, float] | None:
        ok, bgr = self._cap.read()
        if not ok and self.loop and not self.live:
            # Rewind once; a file that yields nothing right after a rewind has ended for good.
            self._cap.set(cv2.CAP_PROP_POS_FRAMES, 0)
            self._offset = self._last_timestamp + 1.0 / (self.fps or 30.0)
            ok, bgr = self._cap.read()
        if not ok or bgr is None:
            if self.live:
                log.warning("%s: no frame (camera or stream dropped out)", self.description)
            return None
        if self.live:
            timestamp = time.monotonic()
        else:
            # After read(), POS_MSEC is the presentation time of the frame just read.
            timestamp = self._offset + float(self._cap.get(cv2.CAP_PROP_POS_MSEC)) / 1000.0
            self._last_timestamp = timestamp
        return _to_rgb(bgr, self.description), timestamp

    def _close(self) -> None:
        self._cap.release()


class ImageFolderSource(FrameSource):
    """The images of a folder in sorted file-name order (or a single image file).

    Args:
        path: A folder holding images (``IMAGE_EXTENSIONS``), or one image file.
        loop: Start over after the last image.
        fps: Rate used for the timestamps (``frame_id / fps``).
    """

    def __init__(self, path: str | os.PathLike[str], *, loop: bool = False, fps: float = 30.0):
        super().__init__()
        root = Path(path)
        if root.is_dir():
            files = sorted(
                p for p in root.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS
            )
            if not files:
                raise SourceError(
                    f"image folder {root}: holds no images (looked for "
                    f"{', '.join(IMAGE_EXTENSIONS)}); pass a folder of frames, a video file, "
                    "a camera index or 'synthetic'"
                )
            self.description = f"image folder {root} ({len(files)} images)"
        else:
            files = [root]
            self.description = f"image {root}"
        self.files = files
        self.loop = loop
        if not fps > 0:
            raise InputError(f"fps: got {fps}, expected a positive frame rate")
        self.fps = self._fps = float(fps)
        self._index = 0

    def _read(self) -> tuple[np.ndarray, float] | None:
        if self._index >= len(self.files):
            if not self.loop:
                return None
            self._index = 0
        path = self.files[self._index]
        self._index += 1
        bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if bgr is None:
            raise ImageError(
                f"{path}: OpenCV cannot decode it as an image; remove it from {path.parent} "
                "or convert it to PNG/JPEG"
            )
        return _to_rgb(bgr, str(path)), self._next_id / self._fps


class PushSource(FrameSource):
    """Frames handed in by other code: a ROS 2 image callback, a robot SDK, a test.

    :meth:`put` hands over an RGB frame from any thread and returns its frame
    id; :meth:`read` waits for the newest frame not read yet. Only that one is
    kept: a frame replaced before it was read is counted in :attr:`dropped`,
    so a slow model skips frames instead of queueing them. :meth:`end` (or
    :meth:`close`) ends the stream once the last frame was read.

    Timestamps are ``time.monotonic()`` at :meth:`put`, so the pipeline's
    latency is measured from the hand-over; keep your own stamps (e.g. a ROS
    header) by the frame id :meth:`put` returns.

    Args:
        description: What feeds it, for logs and reports.
        fps: Nominal rate, if known (used for video files written from it).

    Example:
        >>> src = PushSource("test frames")
        >>> src.put(np.zeros((4, 6, 3), np.uint8))
        0
        >>> src.end()
        >>> [f.frame_id for f in src]
        [0]
    """

    def __init__(self, description: str = "pushed frames", *, fps: float | None = None) -> None:
        super().__init__()
        self.description = description
        self.live = True
        self.fps = fps
        self.dropped = 0
        self._cond = threading.Condition()
        self._pending: collections.deque[Frame] = collections.deque(maxlen=1)
        self._ended = False
        self._woken = False

    def put(self, image: np.ndarray, *, image_format: str = "RGB") -> int:
        """Hand over one ``H×W×3`` uint8 frame; returns its frame id.

        Args:
            image: The frame (copied only when a conversion is needed; do not
                modify it afterwards).
            image_format: ``"RGB"`` or ``"BGR"`` (OpenCV, ``bgr8`` ROS images).

        Raises:
            ImageError: not an ``H×W×3`` uint8 array.
            InputError: after :meth:`end` or :meth:`close`, or a bad ``image_format``.
        """
        if image_format not in ("RGB", "BGR"):
            raise InputError(f"image_format: got {image_format!r}, expected 'RGB' or 'BGR'")
        if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3:
            got = (
                f"{image.dtype} {image.shape}"
                if isinstance(image, np.ndarray)
                else type(image).__name__
            )
            raise ImageError(f"{self.description}: got {got}, expected an H×W×3 uint8 frame")
        if image.shape[2] != 3:
            raise ImageError(
                f"{self.description}: got {image.shape[2]} channels, expected 3 (RGB or BGR)"
            )
        if image_format == "BGR":
            image = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
        with self._cond:
            if self._ended or self._closed:
                raise InputError(f"{self.description}: put() after end() or close()")
            frame = Frame(self._next_id, time.monotonic(), image)
            self._next_id += 1
            if self._pending:
                self.dropped += 1
            self._pending.append(frame)
            self._cond.notify_all()
        return frame.frame_id

    def end(self) -> None:
        """No more frames: :meth:`read` returns ``None`` once the pending one was read."""
        with self._cond:
            self._ended = True
            self._cond.notify_all()

    def read(self, timeout: float | None = None) -> Frame | None:
        """Wait for the newest frame not read yet; ``None`` at the end, on
        :meth:`interrupt`, or after ``timeout`` seconds."""
        # Overrides FrameSource.read: frame ids are given at put(), not at read().
        with self._cond:
            self._cond.wait_for(
                lambda: bool(self._pending) or self._ended or self._closed or self._woken,
                timeout=timeout,
            )
            if self._closed or not self._pending:
                return None
            return self._pending.popleft()

    def _read(self) -> tuple[np.ndarray, float] | None:  # pragma: no cover - read() overrides
        frame = self.read()
        return None if frame is None else (frame.image, frame.timestamp)

    def interrupt(self) -> None:
        with self._cond:
            self._woken = True
            self._cond.notify_all()

    def _close(self) -> None:
        with self._cond:
            self._pending.clear()
            self._cond.notify_all()


def _to_rgb(bgr: np.ndarray, what: str) -> np.ndarray:
    if bgr.dtype != np.uint8:
        raise ImageError(f"{what}: got {bgr.dtype} frames, expected 8-bit (uint8) video")
    if bgr.ndim == 2:
        return cv2.cvtColor(bgr, cv2.COLOR_GRAY2RGB)
    if bgr.shape[2] == 4:
        return cv2.cvtColor(bgr, cv2.COLOR_BGRA2RGB)
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def jetson_csi_pipeline(
    sensor_id: int = 0,
    width: int = 1280,
    height: int = 720,
    fps: int = 30,
    *,
    flip_method: int = 0,
    output_size: tuple[int, int] | None = None,
) -> str:
    """GStreamer pipeline string for a Jetson CSI camera (``nvarguscamerasrc``).

    Pass the result as ``--source`` (or to :func:`open_source`). It needs an
    OpenCV built with GStreamer (JetPack's system OpenCV, not the PyPI wheel):
    check with ``python -c "import cv2; print(cv2.getBuildInformation())"``.
    The appsink keeps only the newest buffer so a slow consumer never lags.

    Args:
        sensor_id: CSI port of the camera (``sensor-id``).
        width: Capture width the sensor mode supports.
        height: Capture height.
        fps: Capture frame rate.
        flip_method: ``nvvidconv`` flip (0 none, 2 rotate 180°, ...).
        output_size: ``(width, height)`` after ``nvvidconv`` scaling; the
            capture size when ``None``.

    Example:
        >>> print(jetson_csi_pipeline(0, 1280, 720, 30))  # doctest: +NORMALIZE_WHITESPACE
        nvarguscamerasrc sensor-id=0 ! video/x-raw(memory:NVMM), width=1280, height=720,
        format=NV12, framerate=30/1 ! nvvidconv flip-method=0 ! video/x-raw, width=1280,
        height=720, format=BGRx ! videoconvert ! video/x-raw, format=BGR !
        appsink drop=true max-buffers=1 sync=false
    """
    for name, value in (("sensor_id", sensor_id), ("flip_method", flip_method)):
        if value < 0:
            raise InputError(f"{name}: got {value}, expected a non-negative int")
    out_w, out_h = output_size if output_size is not None else (width, height)
    for name, value in (("width", width), ("height", height), ("fps", fps)):
        if value <= 0:
            raise InputError(f"{name}: got {value}, expected a positive int")
    if out_w <= 0 or out_h <= 0:
        raise InputError(f"output_size: got {output_size}, expected positive (width, height)")
    return (
        f"nvarguscamerasrc sensor-id={sensor_id} ! "
        f"video/x-raw(memory:NVMM), width={width}, height={height}, format=NV12, "
        f"framerate={fps}/1 ! nvvidconv flip-method={flip_method} ! "
        f"video/x-raw, width={out_w}, height={out_h}, format=BGRx ! videoconvert ! "
        "video/x-raw, format=BGR ! appsink drop=true max-buffers=1 sync=false"
    )


SYNTHETIC = "synthetic"
"""The ``--source`` spec of the built-in moving scene (any case, surrounding spaces allowed)."""


def is_synthetic(spec: object) -> bool:
    """Whether a source spec names the built-in moving scene (``None`` does too).

    The one test of "is this the synthetic scene" for every command and config.

    Example:
        >>> is_synthetic(None), is_synthetic(" Synthetic "), is_synthetic("0")
        (True, True, False)
    """
    return spec is None or (isinstance(spec, str) and spec.strip().lower() == SYNTHETIC)


def open_source(
    spec: str | int | os.PathLike[str] | None,
    *,
    loop: bool = False,
    reconnect: ReconnectPolicy | None = None,
) -> FrameSource:
    """Open a frame source from a ``--source`` value.

    ``None`` or ``"synthetic"``: the built-in moving scene at 640×480 (runs
    forever). An int or digit string: a camera index through V4L2 (Linux) or
    OpenCV's default backend. A string containing ``!``: a GStreamer pipeline
    (see :func:`jetson_csi_pipeline`). ``rtsp://``, ``http(s)://`` and other
    stream URLs: FFmpeg. An existing folder: its images, sorted by name. An
    existing file: an image, or a video decoded by FFmpeg.

    Live sources (cameras, URLs, GStreamer pipelines) come wrapped in a
    :class:`~samedge.stream.ReconnectingSource`: opening must work now, but a
    later drop-out is reopened with backoff as ``reconnect`` says.

    Args:
        spec: The source, as above.
        loop: For video files and image folders, start over at the end
            instead of ending (without it they end cleanly).
        reconnect: Reopening of live sources that drop out; ``None`` for the
            default (0.5 s doubling to 30 s, forever). ``ReconnectPolicy(
            max_reconnect=0)`` turns it off: a drop-out then raises
            :class:`~samedge.SourceError`.

    Raises:
        SourceError: nothing could be opened from ``spec``; the message says
            what was tried and what to pass instead.
        InputError: ``spec`` is not a source spec at all (wrong type, empty,
            unsupported URL scheme).

    Example:
        >>> with open_source("synthetic") as src:        # doctest: +SKIP
        ...     frame = src.read()
    """
    if is_synthetic(spec):
        return SyntheticSource(seed=0, size=(480, 640))
    if isinstance(spec, bool) or not isinstance(spec, (str, int, os.PathLike)):
        raise InputError(
            f"source: got {type(spec).__name__} {spec!r}, expected a camera index, a path, "
            "a URL, a GStreamer pipeline or 'synthetic'"
        )
    if isinstance(spec, int) or (isinstance(spec, str) and spec.strip().isdigit()):
        index = int(spec)
        if index < 0:
            raise InputError(f"camera index: got {index}, expected 0 or more")
        return _reconnecting(functools.partial(_open_camera, index), reconnect)
    if isinstance(spec, str):
        text = spec.strip()
        if not text:
            raise InputError(
                "source: got an empty string; pass 'synthetic', a camera index or a path"
            )
        if "!" in text:
            return _reconnecting(functools.partial(_open_gstreamer, text), reconnect)
        match = re.match(r"^([a-zA-Z][a-zA-Z0-9+.-]*)://", text)
        if match and match.group(1).lower() in URL_SCHEMES:
            return _reconnecting(functools.partial(_open_url, text), reconnect)
        if match:
            raise InputError(
                f"source {text!r}: unsupported URL scheme {match.group(1)!r}; "
                f"expected one of {', '.join(s + '://' for s in URL_SCHEMES)}"
            )
    path = Path(spec)
    if path.is_dir():
        return ImageFolderSource(path, loop=loop)
    if path.is_file():
        if path.suffix.lower() in IMAGE_EXTENSIONS:
            return ImageFolderSource(path, loop=loop)
        return _open_file(path, loop=loop)
    if path.exists():
        # /dev/null, a fifo, a socket: there, but not something frames come from.
        raise SourceError(
            f"source {str(spec)!r}: exists but is {_kind(path)}, not a video file, an "
            "image or a folder of images; for a camera pass its index (0 for /dev/video0)"
        )
    if path.is_symlink():
        raise SourceError(
            f"source {str(spec)!r}: is a symbolic link to {os.readlink(path)!r}, which does "
            "not exist"
        )
    raise SourceError(
        f"source {str(spec)!r}: not found; tried it as 'synthetic', a camera index (digits), "
        "a GStreamer pipeline (contains '!'), a stream URL (rtsp://, http(s)://) and a file or "
        f"folder path ({path.resolve()} does not exist)"
    )


def _kind(path: Path) -> str:
    """What a path that is neither a file nor a folder is, in words."""
    mode = path.stat().st_mode
    if stat.S_ISCHR(mode):
        return "a character device"
    if stat.S_ISBLK(mode):
        return "a block device"
    if stat.S_ISFIFO(mode):
        return "a named pipe (fifo)"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "a special file"


def _reconnecting(opener: Callable[[], FrameSource], policy: ReconnectPolicy | None) -> FrameSource:
    # Imported here: reconnect.py builds on FrameSource from this module.
    from samedge.stream.reconnect import ReconnectingSource

    return ReconnectingSource(opener, policy)


def _open_camera(index: int) -> FrameSource:
    if sys.platform.startswith("linux"):
        api, api_name = cv2.CAP_V4L2, "V4L2"
        device = Path(f"/dev/video{index}")
        hint = (
            f"{device} does not exist"
            if not device.exists()
            else f"{device} exists but is busy or not a capture device"
        )
        hint += "; list cameras with `v4l2-ctl --list-devices`"
    else:
        api, api_name = cv2.CAP_ANY, "OpenCV default backend"
        hint = "check that the camera is connected and not used by another program"
    try:
        return VideoCaptureSource(
            index, api, f"camera {index} ({api_name})", live=True, params=_timeouts()
        )
    except InputError as e:
        raise SourceError(f"{e}; tried camera index {index} via {api_name}: {hint}") from None


def _open_gstreamer(pipeline: str) -> FrameSource:
    if not cv2.videoio_registry.hasBackend(cv2.CAP_GSTREAMER):
        raise SourceError(
            "GStreamer pipeline source: this OpenCV "
            f"({cv2.__version__}) was built without GStreamer (the PyPI opencv-python wheels "
            "are); use an OpenCV with GStreamer (on Jetson, JetPack's system python3-opencv), "
            "or a camera index / URL instead"
        )
    try:
        return VideoCaptureSource(pipeline, cv2.CAP_GSTREAMER, "GStreamer pipeline", live=True)
    except InputError:
        raise SourceError(
            f"GStreamer pipeline {pipeline!r}: cv2.VideoCapture(..., CAP_GSTREAMER) could not "
            "start it; test it with `gst-launch-1.0` and make sure it ends in an appsink "
            "producing BGR"
        ) from None


def _open_url(url: str) -> FrameSource:
    # Never put credentials from the URL into logs or messages.
    shown = re.sub(r"//[^/@]*@", "//***@", url)
    try:
        return VideoCaptureSource(
            url, cv2.CAP_FFMPEG, f"stream {shown}", live=True, params=_timeouts()
        )
    except InputError:
        raise SourceError(
            f"stream {shown}: cv2.VideoCapture(..., CAP_FFMPEG) could not open it within "
            f"{_OPEN_TIMEOUT_MS / 1000:g} s; check the address, credentials and that the "
            "server is reachable (e.g. `ffprobe URL`)"
        ) from None


def _open_file(path: Path, *, loop: bool) -> FrameSource:
    try:
        return VideoCaptureSource(
            str(path), cv2.CAP_FFMPEG, f"video file {path}", live=False, loop=loop
        )
    except InputError:
        raise SourceError(
            f"video file {path}: cv2.VideoCapture(..., CAP_FFMPEG) could not decode it; "
            f"it is not a video OpenCV's FFmpeg reads, nor an image ({', '.join(IMAGE_EXTENSIONS)})"
        ) from None


def _timeouts() -> list[int]:
    return [
        cv2.CAP_PROP_OPEN_TIMEOUT_MSEC,
        _OPEN_TIMEOUT_MS,
        cv2.CAP_PROP_READ_TIMEOUT_MSEC,
        _READ_TIMEOUT_MS,
    ]
