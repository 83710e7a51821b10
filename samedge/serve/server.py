"""Run the application with uvicorn: :func:`serve` (``samedge serve``) and :class:`ServerThread`.

The listening socket is bound before uvicorn starts, so a port in use is a
one-line error and port 0 gives a known free port. uvicorn's access log is
off and its other log lines have tokens redacted: a ``?token=`` in a URL
must not end up in a log file.

Connections are bounded: a request head must arrive complete within
``header_timeout`` (uvicorn 0.54 has no such timeout: its keep-alive timer
is cancelled by the first byte, so a client sending a header a minute, or
nothing after "GET", held its connection forever), heads are at most
16 KiB, an idle keep-alive connection is closed after 5 s, and at most
``max_connections`` are open (more are answered 503).

Example:
    >>> from samedge.serve import ServeConfig, ServerThread
    >>> with ServerThread(ServeConfig(port=0)) as server:     # doctest: +SKIP
    ...     print(server.url)
    http://127.0.0.1:40123/
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import re
import signal
import socket
import threading
import time
from collections.abc import Iterator
from types import TracebackType

import h11
import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

from samedge.errors import InputError
from samedge.serve.app import create_app
from samedge.serve.config import ServeConfig
from samedge.serve.service import StreamService

__all__ = ["ServerThread", "bind_socket", "serve"]

log = logging.getLogger(__name__)

# asyncio's default high-water mark: a transport holding this much unsent is paused.
_STALLED_BYTES = 64 * 1024
_TOKEN_RE = re.compile(r"(token=)[^&\s\"']*", re.IGNORECASE)


class _RedactTokens(logging.Filter):
    """Replace ``token=...`` in uvicorn's log lines (they include request URLs)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if "token=" in message.lower():
            record.msg, record.args = _TOKEN_RE.sub(r"\1***", message), None
        return True


_REDACT = _RedactTokens()
for _name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
    if _REDACT not in logging.getLogger(_name).filters:
        logging.getLogger(_name).addFilter(_REDACT)


def bind_socket(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host:port``.

    Raises:
        InputError: the address cannot be bound (in use, not an interface
            of this machine, no permission), with what to do.
    """
    name = host.strip("[]")
    family = socket.AF_INET6 if ":" in name else socket.AF_INET
    try:
        sock = socket.create_server((name, port), family=family)
    except OSError as e:
        hint = (
            "another process listens there; pick another --port (0 = any free port)"
            if e.errno in (98, 48)  # EADDRINUSE on Linux, macOS
            else "check --host (an address of this machine) and --port"
        )
        raise InputError(f"cannot listen on {host}:{port}: {e.strerror or e}; {hint}") from None
    sock.set_inheritable(True)
    return sock


def _url(config: ServeConfig, sock: socket.socket) -> str:
    port = sock.getsockname()[1]
    host = config.host
    if host in ("0.0.0.0", "::"):
        host = "127.0.0.1"
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"http://{host}:{port}/"


class _Server(uvicorn.Server):
    """uvicorn's server, with SIGINT/SIGTERM meaning "shut down cleanly and return".

    uvicorn re-raises a captured signal after its graceful shutdown (so the
    process dies of it); ``samedge serve`` instead returns normally once the
    pipeline threads are joined and the model is released.
    """

    signal_received: int | None = None

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        # Signal handlers can only be installed from the main thread.
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        handled = (signal.SIGINT, signal.SIGTERM)
        previous = {sig: signal.signal(sig, self._on_signal) for sig in handled}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        # A client that stopped reading leaves its connection's write buffer full, so
        # the graceful close (which flushes first) would wait out the whole timeout.
        # Cut those connections now; the others get a normal close frame.
        for connection in list(getattr(self.server_state, "connections", ())):
            transport = getattr(connection, "transport", None)
            if transport is not None and transport.get_write_buffer_size() >= _STALLED_BYTES:
                transport.abort()
        await super().shutdown(sockets)

    def _on_signal(self, signum: int, frame: object) -> None:
        if self.signal_received is None:
            log.info("%s received; shutting down", signal.Signals(signum).name)
        self.signal_received = signum
        # A second Ctrl-C forces the exit without waiting for connections.
        self.handle_exit(signum, None)


#: Largest request head (request line + headers) accepted.
MAX_HEAD_BYTES = 16 * 1024
#: Seconds an idle keep-alive connection stays open between requests.
KEEP_ALIVE_S = 5


class _HeadTimeoutProtocol(H11Protocol):
    """uvicorn's h11 protocol, closing a connection whose request head is late.

    The deadline runs from the connection (or, between keep-alive requests,
    from the first byte of the next request) until h11 has parsed a whole
    request head; WebSocket upgrades are past it by then.
    """

    head_timeout: float = 10.0
    _head_deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_head_deadline()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self.conn.their_state is h11.IDLE:
            # Still reading a head (or the first bytes of the next one).
            if self._head_deadline is None:
                self._arm_head_deadline()
        else:
            self._cancel_head_deadline()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_head_deadline()
        super().connection_lost(exc)

    def _arm_head_deadline(self) -> None:
        self._cancel_head_deadline()
        self._head_deadline = self.loop.call_later(self.head_timeout, self._head_too_late)

    def _cancel_head_deadline(self) -> None:
        if self._head_deadline is not None:
            self._head_deadline.cancel()
            self._head_deadline = None

    def _head_too_late(self) -> None:
        self._head_deadline = None
        if self.transport.is_closing() or self.conn.their_state is not h11.IDLE:
            return
        if self.cycle is not None and not self.cycle.response_complete:
            return  # a response is under way (pipelining); uvicorn's timers apply
        log.debug("closing a connection that sent no complete request head in time")
        self.transport.close()


def _protocol(config: ServeConfig) -> type[H11Protocol]:
    # uvicorn builds one protocol per connection from the class: carry the
    # timeout on a subclass rather than in global state.
    return type(
        "HeadTimeoutProtocol", (_HeadTimeoutProtocol,), {"head_timeout": config.header_timeout}
    )


def _uvicorn_config(app: object, config: ServeConfig) -> uvicorn.Config:
    return uvicorn.Config(
        app,  # type: ignore[arg-type]
        log_config=None,  # keep the application's logging setup
        access_log=False,
        http=_protocol(config),
        h11_max_incomplete_event_size=MAX_HEAD_BYTES,
        timeout_keep_alive=KEEP_ALIVE_S,
        limit_concurrency=config.max_connections,
        # websockets' sans-I/O protocol waits for the socket to drain on send, so a
        # client that does not read blocks only its own sender (see service.py).
        ws="websockets-sansio",
        ws_max_size=config.max_body_bytes,
        lifespan="on",
        timeout_graceful_shutdown=max(1, math.ceil(config.shutdown_timeout)),
    )


def serve(config: ServeConfig | None = None) -> int | None:
    """Run the server in this thread until Ctrl-C or SIGTERM (``samedge serve``).

    Loads the model and opens the source first (so those errors come before
    anything listens), binds the socket, serves, and on a signal closes the
    connections, joins the pipeline threads and releases the model.

    Args:
        config: What to serve; ``None`` for the defaults (``samedge_tiny`` on
            the synthetic scene at http://127.0.0.1:8000/).

    Returns:
        The signal that ended the server, ``None`` if it ended otherwise.

    Raises:
        InputError: the address cannot be bound, or the source cannot be opened.
        ModelDirError, BackendError: the model cannot be loaded.

    Example:
        >>> serve(ServeConfig(source="0", port=8080, token="s3cret"))   # doctest: +SKIP
    """
    config = config if config is not None else ServeConfig()
    service = StreamService(config)
    service.open()
    try:
        sock = bind_socket(config.host, config.port)
    except BaseException:
        service.stop()
        raise
    server = _Server(_uvicorn_config(create_app(service), config))
    url = _url(config, sock)
    if config.token is None and not config.loopback:
        # ServeConfig refuses this without insecure=True; say what it means.
        log.warning(
            "serving on %s without --token (--insecure): anyone who can reach this machine "
            "can watch the stream and change the prompts",
            config.host,
        )
    log.info("listening on %s%s", url, " (token required)" if config.token else "")
    try:
        server.run(sockets=[sock])
    finally:
        service.stop()
        sock.close()
    return server.signal_received


class ServerThread:
    """The server in a background thread: for tests, notebooks, or an app embedding it.

    Args:
        config: What to serve (``port=0`` picks a free port).
        service: Serve this service instead of one made from ``config``.

    Example:
        >>> with ServerThread(ServeConfig(port=0)) as server:   # doctest: +SKIP
        ...     requests.get(server.url + "health").json()
        {'status': 'ok', ...}
    """

    def __init__(self, config: ServeConfig | None = None, *, service: StreamService | None = None):
        self.service = service if service is not None else StreamService(config)
        self.config = self.service.config
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._sock: socket.socket | None = None
        self.url = ""

    def start(self, timeout: float = 60.0) -> str:
        """Open the service, listen, and wait until serving; returns the base URL.

        Raises:
            InputError: the address cannot be bound, or the server did not
                start within ``timeout`` seconds.
        """
        self.service.open()
        try:
            self._sock = bind_socket(self.config.host, self.config.port)
        except BaseException:
            self.service.stop()
            raise
        self._server = _Server(_uvicorn_config(create_app(self.service), self.config))
        self.url = _url(self.config, self._sock)
        self._thread = threading.Thread(
            target=self._server.run,
            kwargs={"sockets": [self._sock]},
            name="samedge-serve-uvicorn",
            daemon=True,
        )
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                url = self.url
                self.stop()
                raise InputError(f"server at {url} did not start within {timeout:g} s; see the log")
            time.sleep(0.02)
        return self.url

    def stop(self) -> None:
        """Shut down gracefully and join every thread; idempotent."""
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=self.config.shutdown_timeout + 20.0)
            if self._thread.is_alive():
                log.warning("the server thread did not end; forcing")
                if self._server is not None:
                    self._server.force_exit = True
                self._thread.join(timeout=5.0)
        self.service.stop()
        if self._sock is not None:
            self._sock.close()
        self._server = self._thread = self._sock = None

    def __enter__(self) -> ServerThread:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
