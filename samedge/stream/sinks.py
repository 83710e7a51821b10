"""Where annotated frames go: a video file (or PNG frames), or a Python callback.

A sink has ``write(result)`` and ``close()``. :class:`VideoSink` writes
``result.annotated`` (BGR) with ``cv2.VideoWriter`` and falls back to a
folder of PNG frames when no video writer works.

Which writers work was measured with the ``opencv-python-headless`` 5.0.0
wheel: ``mp4v`` (MPEG-4 Part 2) in ``.mp4`` opens and reads back; ``avc1``
/ ``H264`` do not (the wheel's FFmpeg has no software H.264 encoder, only
``h264_v4l2m2m``, which needs a hardware device); ``MJPG`` and ``XVID`` work
in ``.avi``. So ``.mp4`` tries ``mp4v`` first and ``avc1`` second (for
OpenCV builds that link an H.264 encoder).

Nothing the user had is lost: the video is written under a temporary ASCII
name beside ``path`` (OpenCV's writer crashes on a non-UTF-8 file name, so
the user's name never reaches it), read back and its frames counted at
:meth:`VideoSink.close`, and only a complete file replaces ``path``. OpenCV's
writer does not report a full disk (it logs and goes on), so the count is
what catches it. PNG frames are encoded by OpenCV and written by Python,
which does report it.

Example:
    >>> sink = VideoSink("out/run.mp4", fps=30.0)         # doctest: +SKIP
    >>> for result in pipeline:                            # doctest: +SKIP
    ...     sink.write(result)
    >>> sink.close(); print(sink.description)              # doctest: +SKIP
    out/run.mp4 (MP4, mp4v, 150 frames)
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import cv2
import numpy as np

from samedge._io import (
    FRAMES_MARKER,
    atomic_directory,
    check_output_dir,
    check_output_file,
    file_mode,
    free_space,
)
from samedge.errors import InputError, OutputWriteError

if TYPE_CHECKING:
    from samedge.stream.pipeline import FrameResult

__all__ = ["CallbackSink", "Sink", "VideoSink"]

log = logging.getLogger(__name__)

# Container suffix -> fourccs to try, best first (see the module docstring).
VIDEO_FOURCCS: dict[str, tuple[str, ...]] = {
    ".mp4": ("mp4v", "avc1"),
    ".m4v": ("mp4v", "avc1"),
    ".mov": ("mp4v", "avc1"),
    ".avi": ("MJPG", "XVID"),
    ".mkv": ("mp4v", "XVID"),
}


class Sink(Protocol):
    """Receives every frame result of a pipeline."""

    def write(self, result: FrameResult) -> None: ...

    def close(self) -> None: ...


class CallbackSink:
    """Calls ``fn(result)`` for every frame (for robotics code that wants results).

    Example:
        >>> sink = CallbackSink(lambda r: print(r.frame_id, len(r.objects)))
    """

    def __init__(self, fn: Callable[[FrameResult], object]) -> None:
        if not callable(fn):
            raise InputError(f"CallbackSink: got {type(fn).__name__}, expected a callable")
        self.fn = fn

    def write(self, result: FrameResult) -> None:
        self.fn(result)

    def close(self) -> None:
        """Nothing to release."""


class VideoSink:
    """Writes annotated frames to a video file, or PNG frames if no writer works.

    The file is written under a temporary name beside ``path`` and renamed at
    :meth:`close`, so a reader never sees half a video (an interrupted run
    still gets a playable file of the frames so far).

    Args:
        path: ``.mp4``/``.m4v``/``.mov``/``.avi``/``.mkv`` for a video file, or a
            path without suffix for a folder of PNG frames.
        fps: Frame rate written into the video.
        force: Replace an existing ``path``.

    Raises:
        InputError: unsupported suffix, or ``fps`` not positive.
        OutputExistsError: ``path`` exists and ``force`` is false.
    """

    def __init__(self, path: str | os.PathLike[str], fps: float = 30.0, *, force: bool = False):
        self.path = Path(path)
        suffix = self.path.suffix.lower()
        if suffix and suffix not in VIDEO_FOURCCS:
            raise InputError(
                f"output {self.path}: unsupported suffix {suffix!r}; expected one of "
                f"{', '.join(VIDEO_FOURCCS)}, or no suffix for a folder of PNG frames"
            )
        if not fps > 0:
            raise InputError(f"fps: got {fps}, expected a positive frame rate")
        # Before any frame is made: a folder at X.mp4, an existing file without
        # force, a folder of frames samedge did not write, a read-only place.
        if suffix:
            check_output_file(self.path, force=force)
        else:
            check_output_dir(self.path, force=force, marker=FRAMES_MARKER)
        self.fps = float(fps)
        self.force = force
        self.frames = 0
        self.fourcc: str | None = None
        self.output: Path | None = None  # where the frames end up, known after the first
        self._writer: cv2.VideoWriter | None = None
        self._partial: Path | None = None
        self._partial_name: str | None = None  # what OpenCV was given (ASCII)
        self._dir_fd: int | None = None
        self._frames_dir: Path | None = None
        self._stack = contextlib.ExitStack()
        self._size: tuple[int, int] | None = None
        self._closed = False

    @property
    def description(self) -> str:
        """Where and how frames were written, for reports."""
        if self.output is None:
            return f"{self.path} (nothing written)"
        if self.fourcc is not None:
            kind = self.path.suffix.lstrip(".").upper()
            return f"{self.output} ({kind}, {self.fourcc}, {self.frames} frames)"
        return f"{self.output}/ ({self.frames} PNG frames)"

    def write(self, result: FrameResult) -> None:
        """Append ``result.annotated``.

        Raises:
            InputError: the result has no annotated frame, or its size changed.
        """
        frame = result.annotated
        if frame is None:
            raise InputError(
                "VideoSink: the frame result has no annotated image; run the pipeline "
                "with annotate=True"
            )
        self.write_frame(frame)

    def write_frame(self, bgr: np.ndarray) -> None:
        """Append one ``H×W×3`` uint8 BGR frame."""
        if self._closed:
            raise InputError(f"VideoSink {self.path}: already closed")
        size = (bgr.shape[1], bgr.shape[0])
        if self._size is None:
            self._size = size
            self._open(size)
        elif size != self._size:
            raise InputError(
                f"VideoSink {self.path}: frame size changed from {self._size} to {size} "
                "(W, H); a video has one size"
            )
        if self._writer is not None:
            self._writer.write(bgr)
        elif self._frames_dir is not None:
            self._write_png(self._frames_dir / f"frame_{self.frames:06d}.png", bgr)
        self.frames += 1

    def _write_png(self, path: Path, bgr: np.ndarray) -> None:
        # Encoded by OpenCV, written by Python: cv2.imwrite only returns False on a
        # full disk (ignored before), and cannot take a non-UTF-8 path.
        ok, data = cv2.imencode(".png", bgr)
        if not ok:
            raise InputError(f"VideoSink {self.path}: OpenCV could not encode frame {self.frames}")
        try:
            with open(path, "wb") as f:
                f.write(data.tobytes())
        except OSError as e:
            raise OutputWriteError(
                f"output {self.output}: could not write frame {self.frames} ({e.strerror}); "
                f"{free_space(path.parent)}; nothing replaced {self.path}"
            ) from e

    def _opencv_path(self, name: str) -> str:
        """A path OpenCV can take for ``name`` in ``path``'s folder.

        The folder's own path is used when it is valid UTF-8; otherwise the
        folder is opened and reached through ``/proc/self/fd`` (Linux), so the
        bytes OpenCV's writer crashes on never reach it.
        """
        parent = self.path.parent
        try:
            os.fspath(parent).encode("utf-8")
            return os.fspath(parent / name)
        except UnicodeEncodeError:
            pass
        if self._dir_fd is None:
            if not Path("/proc/self/fd").is_dir():
                raise InputError(
                    f"output {self.path}: its folder name is not valid UTF-8, which OpenCV's "
                    "video writer cannot take; choose another folder"
                )
            self._dir_fd = os.open(parent, os.O_RDONLY | os.O_DIRECTORY)
        return f"/proc/self/fd/{self._dir_fd}/{name}"

    def _open(self, size: tuple[int, int]) -> None:
        suffix = self.path.suffix.lower()
        if suffix:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            for fourcc in VIDEO_FOURCCS[suffix]:
                # An ASCII name whatever the user's: OpenCV crashes on non-UTF-8 ones.
                fd, tmp = tempfile.mkstemp(
                    prefix=".samedge-video.", suffix=f".partial{suffix}", dir=self.path.parent
                )
                # mkstemp makes 0600; the video gets the mode of every other output.
                os.fchmod(fd, file_mode())
                os.close(fd)
                name = os.path.basename(tmp)
                try:
                    writer = cv2.VideoWriter(
                        self._opencv_path(name), cv2.VideoWriter.fourcc(*fourcc), self.fps, size
                    )
                except BaseException:  # Ctrl-C here must not leave the temporary file behind
                    with contextlib.suppress(OSError):
                        os.unlink(tmp)
                    raise
                if writer.isOpened():
                    self._writer, self._partial, self.fourcc = writer, Path(tmp), fourcc
                    self._partial_name = name
                    self.output = self.path
                    log.debug("video %s: writing with fourcc %s", self.path, fourcc)
                    return
                writer.release()
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
                log.info("video %s: fourcc %s does not work with this OpenCV", self.path, fourcc)
            frames_dir = self.path.with_name(self.path.stem + "_frames")
            log.warning(
                "video %s: no video writer works with this OpenCV (tried %s); writing PNG "
                "frames to %s instead",
                self.path,
                ", ".join(VIDEO_FOURCCS[suffix]),
                frames_dir,
            )
        else:
            frames_dir = self.path
        self._frames_dir = self._stack.enter_context(
            atomic_directory(frames_dir, force=self.force, marker=FRAMES_MARKER)
        )
        (self._frames_dir / FRAMES_MARKER).write_text(
            "PNG frames written by samedge; --force may replace this folder\n", encoding="utf-8"
        )
        self.output = frames_dir

    def close(self) -> None:
        """Finish the file (or folder), check it, and move it into place; safe to call twice.

        Raises:
            OutputWriteError: the video read back has fewer frames than were
                written (a full disk, an I/O error); ``path`` keeps what it had
                and the partial file is removed.
        """
        if self._closed:
            return
        self._closed = True
        try:
            if self._writer is not None and self._partial is not None:
                self._writer.release()
                if self.frames == 0:
                    # Stopped (e.g. Ctrl-C) before the first frame went in: an empty
                    # MP4 plays nowhere, so nothing replaces ``path``.
                    with contextlib.suppress(OSError):
                        os.unlink(self._partial)
                    self.output = None
                    log.info("video %s: no frame was written; nothing saved", self.path)
                else:
                    self._verify_partial(self._partial, self._partial_name or "")
                    os.replace(self._partial, self.path)
        finally:
            self._release_dir()
        self._stack.close()

    def _verify_partial(self, partial: Path, name: str) -> None:
        """Read the written video back and count its frames; raise if any is missing."""
        readable = 0
        try:
            capture = cv2.VideoCapture(self._opencv_path(name), cv2.CAP_FFMPEG)
            try:
                # grab() skips the conversion to BGR: 0.6 ms a frame at 640×480
                # (measured), a fifth of what encoding it cost.
                while capture.isOpened() and capture.grab():
                    readable += 1
            finally:
                capture.release()
        except cv2.error:
            readable = 0
        if readable >= self.frames:
            return
        with contextlib.suppress(OSError):
            os.unlink(partial)
        self.output = None
        kept = "the previous file is kept" if self.path.exists() else "nothing was saved"
        raise OutputWriteError(
            f"output {self.path}: the video written holds {readable} of {self.frames} frames "
            f"when read back (disk full or an I/O error; {free_space(self.path.parent)}); "
            f"{kept} and the partial file was removed"
        )

    def _release_dir(self) -> None:
        if self._dir_fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._dir_fd)
            self._dir_fd = None

    def abort(self) -> None:
        """Drop what was written (e.g. after an error); ``path`` is left untouched."""
        if self._closed:
            return
        self._closed = True
        if self._writer is not None and self._partial is not None:
            self._writer.release()
            with contextlib.suppress(OSError):
                os.unlink(self._partial)
        self._release_dir()
        self._stack.__exit__(InputError, InputError("aborted"), None)
        self.output = None
