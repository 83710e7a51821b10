"""What ``samedge serve`` serves and how: :class:`ServeConfig`.

Example:
    >>> cfg = ServeConfig(port=8080)
    >>> cfg.host, cfg.loopback
    ('127.0.0.1', True)
"""

from __future__ import annotations

import contextlib
import ipaddress
import itertools
import logging
import socket
from dataclasses import dataclass, replace
from pathlib import Path

from samedge.errors import InputError
from samedge.session import SessionConfig

__all__ = ["LOOPBACK_NAMES", "ServeConfig"]

log = logging.getLogger(__name__)

# Host header values that name this machine when the server binds to loopback.
LOOPBACK_NAMES = ("127.0.0.1", "localhost", "::1", "[::1]")


@dataclass(frozen=True)
class ServeConfig(SessionConfig):
    """Configuration of the camera server: a :class:`~samedge.session.SessionConfig`
    (model, source, tracker, frame loop; see there) plus the server's own settings.

    The session's defaults differ in two places: the synthetic scene is paced in
    real time and read like a camera (``realtime=True``), and the pipeline keeps
    a short timing window (the server reports speed through its own fixed-size
    histograms, so memory stays flat).

    Attributes:
        host: Interface to bind; loopback by default, so nothing outside this
            machine can connect unless asked for.
        port: TCP port; 0 picks a free one.
        token: When set, every endpoint, ``/health`` included, requires it
            (``Authorization: Bearer TOKEN`` or ``?token=TOKEN``).
        allowed_hosts: ``Host`` header names accepted (against DNS
            rebinding); ``None``: the names of the bound address (the
            loopback names on loopback; this machine's name and addresses
            when bound to all interfaces). Behind a reverse proxy or a DNS
            name, list the names clients use.
        insecure: Allow listening beyond this machine without a token (anyone
            who can reach it can watch and prompt); without it such a
            ``host`` needs ``token``.
        header_timeout: Seconds a connection may take to send a complete
            request head; one that has not is closed (slow or stalled clients
            cannot hold connections open).
        max_connections: Most open connections; requests beyond it are
            answered 503.
        max_body_bytes: Largest request body or WebSocket message accepted.
        max_objects: Most objects tracked at once.
        max_points: Most points in one object's prompt.
        client_queue: Frame messages buffered per WebSocket client; when a
            client reads slower than frames come, its oldest is dropped.
        max_clients: Most WebSocket clients at once (each costs a send per frame).
        jpeg_quality: Quality of the JPEG frames sent to clients that ask for them.
        shutdown_timeout: Seconds to wait for connections and threads to end.

    The session's ``tracker`` keeps its thresholds, with ``max_objects`` above
    winning; ``reconnect`` reopens a live source (camera, URL) that drops out
    while the server keeps running and reports ``reconnecting``.
    """

    realtime: bool = True
    stats_window: int = 1000
    host: str = "127.0.0.1"
    port: int = 8000
    token: str | None = None
    allowed_hosts: tuple[str, ...] | None = None
    insecure: bool = False
    header_timeout: float = 10.0
    max_connections: int = 512
    max_body_bytes: int = 64 * 1024
    max_objects: int = 16
    max_points: int = 32
    client_queue: int = 2
    max_clients: int = 16
    jpeg_quality: int = 80
    shutdown_timeout: float = 5.0

    def __post_init__(self) -> None:
        super().__post_init__()
        if not isinstance(self.host, str) or not self.host.strip():
            raise InputError(f"host: got {self.host!r}, expected an interface such as 127.0.0.1")
        if (
            isinstance(self.port, bool)
            or not isinstance(self.port, int)
            or not 0 <= self.port <= 65535
        ):
            raise InputError(f"port: got {self.port}, expected 0..65535 (0 = any free port)")
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
        if not isinstance(self.insecure, bool):
            raise InputError(f"insecure: got {self.insecure!r}, expected True or False")
        if self.token is None and not self.insecure and not self.loopback:
            raise InputError(
                f"host {self.host}: listening beyond this machine needs a token (--token "
                "or $SAMEDGE_TOKEN; e.g. `python -c 'import secrets; "
                "print(secrets.token_urlsafe())'`), or --insecure to let anyone who can "
                "reach it watch the stream and change the prompts"
            )
        if not (isinstance(self.header_timeout, int | float) and 0 < self.header_timeout <= 600):
            raise InputError(
                f"header_timeout: got {self.header_timeout!r}, expected 0 < seconds <= 600"
            )
        if (
            isinstance(self.max_connections, bool)
            or not isinstance(self.max_connections, int)
            or self.max_connections < self.max_clients + 8
        ):
            raise InputError(
                f"max_connections: got {self.max_connections!r}, expected an int >= "
                f"max_clients + 8 ({self.max_clients + 8})"
            )
        if self.max_body_bytes < 1024:
            raise InputError(f"max_body_bytes: got {self.max_body_bytes}, expected >= 1024")
        for name in ("max_objects", "max_points", "client_queue", "max_clients"):
            value = getattr(self, name)
            if value <= 0:
                raise InputError(f"{name}: got {value}, expected a positive int")
        if not 1 <= self.jpeg_quality <= 100:
            raise InputError(f"jpeg_quality: got {self.jpeg_quality}, expected 1..100")
        if not self.shutdown_timeout > 0:
            raise InputError(f"shutdown_timeout: got {self.shutdown_timeout}, expected > 0 s")

    def session(self) -> SessionConfig:
        """The session the server runs: this config, its trackers capped at
        :attr:`max_objects`, and the re-prompt tracker tolerant of a prompt that
        stops fitting the frame (a camera that changes resolution must not end
        the server's pipeline)."""
        tracker, memory = self.tracker, self.memory
        if tracker.max_objects is None or tracker.max_objects > self.max_objects:
            tracker = replace(tracker, max_objects=self.max_objects)
        if memory.max_objects is None or memory.max_objects > self.max_objects:
            memory = replace(memory, max_objects=self.max_objects)
        return replace(self, tracker=replace(tracker, drop_unfit_prompts=True), memory=memory)

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
        """Accepted ``Host`` header names; ``None`` accepts any (never by default).

        Without :attr:`allowed_hosts`: the loopback names on loopback; the
        bound address, this machine's host name and, when bound to all
        interfaces, every local address, otherwise. A page on another site
        that resolves its own name to this machine (DNS rebinding) sends its
        own name and is refused, token or not.
        """
        if self.allowed_hosts is not None:
            return self.allowed_hosts
        if self.loopback:
            return LOOPBACK_NAMES
        return _machine_names(self.host)


def _bracketed(address: str) -> str:
    """An address as it appears in a ``Host`` header (IPv6 in brackets)."""
    return f"[{address}]" if ":" in address and not address.startswith("[") else address


def _local_addresses() -> set[str]:
    """This machine's interface addresses (Linux: from /proc; elsewhere: the host name's)."""
    found: set[str] = set()
    try:
        lines = Path("/proc/net/fib_trie").read_text(encoding="ascii").splitlines()
        # "|-- 192.0.2.2" followed by "/32 host LOCAL" marks an address of this machine.
        for previous, line in itertools.pairwise(lines):
            if line.strip().endswith("host LOCAL") and "--" in previous:
                found.add(previous.split("--", 1)[1].strip())
    except OSError:
        pass
    try:
        for line in Path("/proc/net/if_inet6").read_text(encoding="ascii").splitlines():
            raw = line.split()[0]
            found.add(str(ipaddress.IPv6Address(int(raw, 16))))
    except (OSError, ValueError, IndexError):
        pass
    with contextlib.suppress(OSError):
        for info in socket.getaddrinfo(socket.gethostname(), None):
            found.add(str(info[4][0]).split("%")[0])
    return found


def _machine_names(host: str) -> tuple[str, ...]:
    """``Host`` names that reach this machine through a non-loopback bind of ``host``."""
    bound = host.strip("[]")
    names = {_bracketed(bound), socket.gethostname().lower()}
    if bound in ("0.0.0.0", "::"):
        names |= set(LOOPBACK_NAMES)
        names |= {_bracketed(a) for a in _local_addresses()}
    if bound in ("0.0.0.0", "::"):
        names.discard(_bracketed(bound))  # no client sends the wildcard as its Host
    return tuple(sorted(n.lower() for n in names))
