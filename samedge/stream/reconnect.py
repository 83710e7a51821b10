"""Reopen a live source that drops out (camera unplugged, RTSP stream gone) with backoff.

:class:`ReconnectingSource` wraps whatever opens the real source (a function
returning a :class:`~samedge.stream.FrameSource`). The first open happens in
its constructor and fails at once with the opener's error (a typo in a URL
should not be retried forever). After that, a read that raises or returns no
frame counts as a drop-out: the handle is released and the source is reopened
after ``initial_delay`` seconds, then after delays growing by ``multiplier``
up to ``max_delay``, each attempt logged, until it works or ``max_reconnect``
consecutive attempts have failed (:class:`~samedge.SourceError`). The delay
sequence starts over once a reopened source has delivered a frame, so a
camera that opens and dies at once keeps backing off.

Frame ids keep counting across reconnections; :attr:`ReconnectingSource.status`
tells other threads (the server's ``/health`` and ``/metrics``) whether the
source is connected and how often it was reopened.

:func:`~samedge.stream.open_source` wraps cameras, stream URLs and GStreamer
pipelines this way; files, folders and the synthetic scene do not drop out
(their end is handled by ``loop``).

Example:
    >>> from samedge.stream import ReconnectPolicy, open_source
    >>> src = open_source("rtsp://cam.local/stream",                   # doctest: +SKIP
    ...                   reconnect=ReconnectPolicy(initial_delay=1.0, max_reconnect=20))
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from samedge.errors import InputError, SourceError
from samedge.stream.sources import FrameSource

__all__ = ["ReconnectPolicy", "ReconnectingSource", "SourceStatus"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ReconnectPolicy:
    """When and how often a dropped live source is reopened.

    Attributes:
        initial_delay: Seconds before the first reopen attempt after a drop-out.
        max_delay: Longest wait between attempts.
        multiplier: Each failed attempt multiplies the wait by this (>= 1).
        max_reconnect: Consecutive failed attempts after which the source
            gives up with :class:`~samedge.SourceError`; ``None`` retries
            forever, 0 gives up at the first drop-out (no reconnecting).

    Example:
        >>> [ReconnectPolicy(initial_delay=0.5, max_delay=3.0).delay(n) for n in (1, 2, 3, 4, 5)]
        [0.5, 1.0, 2.0, 3.0, 3.0]
    """

    initial_delay: float = 0.5
    max_delay: float = 30.0
    multiplier: float = 2.0
    max_reconnect: int | None = None

    def __post_init__(self) -> None:
        for name in ("initial_delay", "max_delay"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise InputError(f"{name}: got {value!r}, expected seconds (a number)")
            if not (math.isfinite(value) and value >= 0):
                raise InputError(f"{name}: got {value}, expected finite seconds >= 0")
        if self.max_delay < self.initial_delay:
            raise InputError(
                f"max_delay: got {self.max_delay} s, expected >= initial_delay "
                f"({self.initial_delay} s)"
            )
        if not (math.isfinite(self.multiplier) and self.multiplier >= 1.0):
            raise InputError(f"multiplier: got {self.multiplier}, expected a factor >= 1")
        if self.max_reconnect is not None and (
            isinstance(self.max_reconnect, bool)
            or not isinstance(self.max_reconnect, int)
            or self.max_reconnect < 0
        ):
            raise InputError(
                f"max_reconnect: got {self.max_reconnect!r}, expected an int >= 0 "
                "(0: never reconnect) or None (forever)"
            )

    def delay(self, attempt: int) -> float:
        """Seconds to wait before reopen attempt number ``attempt`` (1-based)."""
        if attempt < 1:
            raise InputError(f"attempt: got {attempt}, expected 1 or more")
        # Cap the exponent: the delay reached max_delay long before, and 2.0**5000 overflows.
        exponent = min(attempt - 1, 1000)
        return float(min(self.max_delay, self.initial_delay * self.multiplier**exponent))


@dataclass(frozen=True)
class SourceStatus:
    """A snapshot of a :class:`ReconnectingSource`, safe to read from any thread.

    Attributes:
        state: ``"connected"``, ``"reconnecting"`` (dropped out, reopening),
            ``"failed"`` (gave up) or ``"closed"``.
        reconnects: Successful reopenings so far.
        attempts: Reopen attempts so far (successful or not).
        dropouts: Drop-outs so far.
        last_error: Why the source last dropped out or failed to reopen.
        description: What was opened.
    """

    state: str
    reconnects: int
    attempts: int
    dropouts: int
    last_error: str | None
    description: str

    @property
    def connected(self) -> bool:
        return self.state == "connected"


class ReconnectingSource(FrameSource):
    """A live source that is reopened with exponential backoff when it drops out.

    Args:
        opener: Opens the real source; called once here (its errors propagate)
            and again after each drop-out. Usually a ``functools.partial`` of
            what :func:`~samedge.stream.open_source` uses.
        policy: Delays and the attempt limit; ``None`` for the defaults
            (0.5 s doubling to 30 s, forever).
        sleep: Waits between attempts; ``None`` waits on an event that
            :meth:`interrupt` and :meth:`close` set, so a stopping pipeline
            does not sit out the delay. Tests pass a fake to record the delays.

    Raises:
        SourceError: from :meth:`read`, when ``policy.max_reconnect``
            consecutive attempts have failed.

    Example:
        >>> import functools                                          # doctest: +SKIP
        >>> src = ReconnectingSource(functools.partial(open_camera, 0))  # doctest: +SKIP
        >>> src.status.state                                          # doctest: +SKIP
        'connected'
    """

    def __init__(
        self,
        opener: Callable[[], FrameSource],
        policy: ReconnectPolicy | None = None,
        *,
        sleep: Callable[[float], object] | None = None,
    ) -> None:
        super().__init__()
        if not callable(opener):
            raise InputError(f"opener: got {type(opener).__name__}, expected a callable")
        self.policy = policy if policy is not None else ReconnectPolicy()
        self._opener = opener
        self._wake = threading.Event()
        self._sleep = sleep if sleep is not None else self._wake.wait
        self._lock = threading.Lock()
        inner = opener()
        if not isinstance(inner, FrameSource):
            raise InputError(f"opener: returned {type(inner).__name__}, expected a FrameSource")
        self._inner: FrameSource | None = inner
        self.description = inner.description
        self.live = inner.live
        self.fps = inner.fps
        self._state = "connected"
        self._reconnects = 0
        self._attempts = 0
        self._dropouts = 0
        self._failed_in_a_row = 0
        self._last_error: str | None = None

    @property
    def status(self) -> SourceStatus:
        """Connection state and counters (thread-safe)."""
        with self._lock:
            return SourceStatus(
                state=self._state,
                reconnects=self._reconnects,
                attempts=self._attempts,
                dropouts=self._dropouts,
                last_error=self._last_error,
                description=self.description,
            )

    def interrupt(self) -> None:
        """Make a read waiting between attempts return ``None`` now; any thread."""
        self._wake.set()

    def _set(self, state: str, error: str | None = None) -> None:
        with self._lock:
            self._state = state
            if error is not None:
                self._last_error = error

    def _read(self) -> tuple[np.ndarray, float] | None:
        while not self._wake.is_set():
            inner = self._inner
            if inner is None:
                inner = self._reopen()
                if inner is None:
                    return None  # interrupted while waiting
            error: str
            try:
                frame = inner.read()
            except Exception as e:  # a dropped camera surfaces as many exception types
                frame, error = None, f"{type(e).__name__}: {e}"
            else:
                error = "no frame (camera or stream ended)"
            if frame is not None:
                if self._failed_in_a_row:
                    self._failed_in_a_row = 0  # it works again: the next drop-out starts afresh
                return frame.image, frame.timestamp
            if self._wake.is_set():
                return None
            self._drop(inner, error)
        return None

    def _drop(self, inner: FrameSource, error: str) -> None:
        self._inner = None
        try:
            inner.close()
        except Exception as e:  # a dead handle may fail to release; it is gone either way
            log.debug("%s: closing the dropped handle failed: %s", self.description, e)
        with self._lock:
            self._dropouts += 1
            self._state = "reconnecting"
            self._last_error = error
        log.warning("%s dropped out: %s", self.description, error)

    def _reopen(self) -> FrameSource | None:
        policy = self.policy
        limit = policy.max_reconnect
        while not self._wake.is_set():
            if limit is not None and self._failed_in_a_row >= limit:
                last = self.status.last_error
                self._set("failed")
                tried = (
                    "reconnecting is off (max_reconnect=0)"
                    if limit == 0
                    else f"{limit} reconnect attempts in a row failed (max_reconnect={limit})"
                )
                raise SourceError(
                    f"{self.description}: dropped out ({last}) and {tried}; check the camera "
                    "or stream, or allow more attempts (--max-reconnect, "
                    "ReconnectPolicy.max_reconnect=None retries forever)"
                )
            self._failed_in_a_row += 1
            attempt = self._failed_in_a_row
            delay = policy.delay(attempt)
            of = f"/{limit}" if limit is not None else ""
            log.warning(
                "%s: reconnect attempt %d%s in %.2f s", self.description, attempt, of, delay
            )
            self._sleep(delay)
            if self._wake.is_set():
                return None
            with self._lock:
                self._attempts += 1
            try:
                inner = self._opener()
            except Exception as e:  # the opener says what it tried; keep trying
                self._set("reconnecting", f"{type(e).__name__}: {e}")
                log.warning(
                    "%s: reconnect attempt %d%s failed: %s", self.description, attempt, of, e
                )
                continue
            if self._wake.is_set():
                inner.close()
                return None
            self._inner = inner
            with self._lock:
                self._reconnects += 1
                self._state = "connected"
            log.warning("%s: reconnected (attempt %d%s)", self.description, attempt, of)
            return inner
        return None

    def _close(self) -> None:
        self._wake.set()
        inner, self._inner = self._inner, None
        if inner is not None:
            inner.close()
        with self._lock:
            if self._state != "failed":
                self._state = "closed"
