"""A live source read in a thread of its own, keeping only the newest frame.

:class:`LatestFrameReader` is how the pipeline reads cameras and URLs: a slow
consumer skips frames instead of falling behind the camera.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from types import TracebackType

from samedge.stream.sources import Frame, FrameSource

__all__ = ["LatestFrameReader"]

log = logging.getLogger(__name__)


class LatestFrameReader:
    """Reads a live source in a thread and keeps only the newest frame.

    A slow consumer then skips frames (counted in :attr:`dropped`) instead of
    falling behind the camera, and memory stays flat. Iterating yields each
    newest frame at most once and ends when the source ends or :meth:`close`
    is called; :meth:`close` joins the thread and closes the source.

    Args:
        source: The source to read; owned (closed) by the reader.
        name: Thread name, for debugging.

    Example:
        >>> with LatestFrameReader(samedge.stream.open_source(0)) as frames:   # doctest: +SKIP
        ...     for frame in frames:
        ...         handle(frame)
    """

    def __init__(self, source: FrameSource, *, name: str = "samedge-capture") -> None:
        self.source = source
        self.dropped = 0
        self.error: BaseException | None = None
        self._cond = threading.Condition()
        self._latest: Frame | None = None
        self._ended = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                frame = self.source.read()
                with self._cond:
                    if frame is None:
                        break
                    if self._latest is not None:
                        self.dropped += 1
                    self._latest = frame
                    self._cond.notify_all()
        except BaseException as e:  # handed to the consumer, re-raised there
            self.error = e
        finally:
            # The thread owns the handle: releasing it here, never from another thread,
            # avoids closing a capture in the middle of its read().
            self.source.close()
            with self._cond:
                self._ended = True
                self._cond.notify_all()

    def read(self, timeout: float | None = None) -> Frame | None:
        """Wait for a frame newer than the last one returned; ``None`` at the end.

        Raises:
            Exception: whatever the source raised in the capture thread.
        """
        with self._cond:
            if not self._cond.wait_for(
                lambda: self._latest is not None or self._ended, timeout=timeout
            ):
                return None
            frame, self._latest = self._latest, None
            if frame is None and self.error is not None:
                raise self.error
            return frame

    def __iter__(self) -> Iterator[Frame]:
        while True:
            frame = self.read()
            if frame is None:
                return
            yield frame

    def close(self) -> None:
        """Stop the thread, wait for it, and close the source."""
        self._stop.set()
        # The thread may be blocked inside source.read(); it sees the flag on return
        # and closes the source itself. A source waiting between reconnect attempts
        # (or for a pushed frame) is woken so that it returns at once.
        self.source.interrupt()
        self._thread.join(timeout=10.0)
        if self._thread.is_alive():
            log.warning(
                "%s: capture thread still blocked in read() after 10 s; it releases the "
                "source when the read returns",
                self.source.description,
            )

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def __enter__(self) -> LatestFrameReader:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
