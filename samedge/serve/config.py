"""What ``samedge serve`` serves and how: :class:`ServeConfig`.

Example:
    >>> cfg = ServeConfig(port=8080)
    >>> cfg.host, cfg.loopback
    ('127.0.0.1', True)
"""

from __future__ import annotations

import ipaddress
import logging
import math
import os
from dataclasses import dataclass, field

from samedge.errors import InputError
from samedge.stream.reconnect import ReconnectPolicy
from samedge.stream.tracking import TrackerConfig

__all__ = ["LOOPBACK_NAMES", "ServeConfig"]

log = logging.getLogger(__name__)

# Host header values that name this machine when the server binds to loopback.
LOOPBACK_NAMES = ("127.0.0.1", "localhost", "::1", "[::1]")


@dataclass(frozen=True)
class ServeConfig:
    """Configuration of the camera server.

    Attributes:
        source: ``--source`` spec (see :func:`~samedge.stream.open_source`);
            ``None`` or ``"synthetic"`` is the built-in moving scene, paced
            in real time like a camera.
        model: Model directory or built-in name.
        backend: ``"auto"`` or a backend name.
        precision: ``None`` (the model as it is) or one to insist on.
        device: Backend device; ``None`` for the backend's best.
        host: Interface to bind; loopback by default, so nothing outside this
            machine can connect unless asked for.
        port: TCP port; 0 picks a free one.
        token: When set, every endpoint, ``/health`` included, requires it
            (``Authorization: Bearer TOKEN`` or ``?token=TOKEN``).
        allowed_hosts: ``Host`` header names accepted (against DNS
            rebinding); ``None``: the loopback names when bound to loopback,
            anything otherwise.
        loop: Loop video files and image folders.
        seed: Seed of the synthetic scene.
        synthetic_size: ``(height, width)`` of the synthetic scene.
        synthetic_fps: Frame rate of the synthetic scene.
        max_body_bytes: Largest request body or WebSocket message accepted.
        max_objects: Most objects tracked at once.
        max_points: Most points in one object's prompt.
        client_queue: Frame messages buffered per WebSocket client; when a
            client reads slower than frames come, its oldest is dropped.
        max_clients: Most WebSocket clients at once (each costs a send per frame).
        jpeg_quality: Quality of the JPEG frames sent to clients that ask for them.
        tracker: Re-prompting and loss thresholds (``max_objects`` above wins).
        reconnect: How a live source (camera, URL) that drops out is reopened;
            the server keeps running and reports ``reconnecting`` meanwhile.
        shutdown_timeout: Seconds to wait for connections and threads to end.
        overlap: Encode frame k+1 while frame k is decoded (see
            :class:`~samedge.stream.Pipeline`); ``None``: only when the encoder
            runs off the CPU.
    """

    source: str | int | None = None
    model: str | os.PathLike[str] = "samedge_tiny"
    backend: str = "auto"
    precision: str | None = None
    device: str | None = None
    host: str = "127.0.0.1"
    port: int = 8000
    token: str | None = None
    allowed_hosts: tuple[str, ...] | None = None
    loop: bool = False
    seed: int = 0
    synthetic_size: tuple[int, int] = (480, 640)
    synthetic_fps: float = 30.0
    max_body_bytes: int = 64 * 1024
    max_objects: int = 16
    max_points: int = 32
    client_queue: int = 2
    max_clients: int = 16
    jpeg_quality: int = 80
    tracker: TrackerConfig = field(default_factory=TrackerConfig)
    reconnect: ReconnectPolicy = field(default_factory=ReconnectPolicy)
    shutdown_timeout: float = 5.0
    overlap: bool | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.host, str) or not self.host.strip():
            raise InputError(f"host: got {self.host!r}, expected an interface such as 127.0.0.1")
        if (
            isinstance(self.port, bool)
            or not isinstance(self.port, int)
            or not 0 <= self.port <= 65535
        ):
            raise InputError(f"port: got {self.port}, expected 0..65535 (0 = any free port)")
        if self.overlap is not None and not isinstance(self.overlap, bool):
            raise InputError(f"overlap: got {self.overlap!r}, expected True, False or None")
        if self.token is not None:
            if not isinstance(self.token, str) or not self.token.strip():
                raise InputError(
                    "token: got an empty token; pass a secret (e.g. "
                    "`python -c 'import secrets; print(secrets.token_urlsafe())'`) or none"
                )
            if any(c.isspace() for c in self.token) or not self.token.isascii():
                raise InputError(
                    "token: contains whitespace or non-ASCII characters; it must fit in an "
                    "HTTP header and a URL (secrets.token_urlsafe() gives such a token)"
                )
        if self.max_body_bytes < 1024:
            raise InputError(f"max_body_bytes: got {self.max_body_bytes}, expected >= 1024")
        for name in ("max_objects", "max_points", "client_queue", "max_clients"):
            value = getattr(self, name)
            if value <= 0:
                raise InputError(f"{name}: got {value}, expected a positive int")
        if not 1 <= self.jpeg_quality <= 100:
            raise InputError(f"jpeg_quality: got {self.jpeg_quality}, expected 1..100")
        if not (self.synthetic_fps > 0 and math.isfinite(self.synthetic_fps)):
            raise InputError(f"synthetic_fps: got {self.synthetic_fps}, expected > 0")
        if len(self.synthetic_size) != 2 or min(self.synthetic_size) < 32:
            raise InputError(
                f"synthetic_size: got {self.synthetic_size}, expected (height, width) >= 32"
            )
        if not self.shutdown_timeout > 0:
            raise InputError(f"shutdown_timeout: got {self.shutdown_timeout}, expected > 0 s")
        if not isinstance(self.reconnect, ReconnectPolicy):
            raise InputError(
                f"reconnect: got {type(self.reconnect).__name__}, expected a ReconnectPolicy"
            )

    @property
    def synthetic(self) -> bool:
        """Whether the source is the built-in moving scene."""
        return self.source is None or (
            isinstance(self.source, str) and self.source.strip().lower() == "synthetic"
        )

    @property
    def loopback(self) -> bool:
        """Whether :attr:`host` only accepts connections from this machine."""
        if self.host == "localhost":
            return True
        try:
            return ipaddress.ip_address(self.host.strip("[]")).is_loopback
        except ValueError:
            return False

    @property
    def host_names(self) -> tuple[str, ...] | None:
        """Accepted ``Host`` header names; ``None`` accepts any."""
        if self.allowed_hosts is not None:
            return self.allowed_hosts
        return LOOPBACK_NAMES if self.loopback else None
