"""Server bounds against hostile clients, on a real uvicorn server over real sockets.

Connections that never finish their request head are closed after
``header_timeout`` and do not starve a real client meanwhile; a server
reachable beyond loopback needs a token or an explicit ``insecure``, and
checks ``Host`` either way (DNS rebinding).
"""

from __future__ import annotations

import http.client
import socket
import time
from pathlib import Path

import pytest

from samedge.errors import InputError
from samedge.serve import ServeConfig, ServerThread
from tests.serve.conftest import make_config

STALLED = 300


def _get(port: int, path: str, host: str | None = None) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=20)
    try:
        headers = {"Host": host} if host is not None else {}
        conn.request("GET", path, headers=headers)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def _closed_by_server(sock: socket.socket, deadline: float) -> bool:
    sock.settimeout(max(0.05, deadline - time.monotonic()))
    try:
        return sock.recv(1024) == b""
    except ConnectionResetError:
        return True
    except (TimeoutError, BlockingIOError):
        return False


def test_stalled_request_heads_are_closed_and_do_not_starve_clients(tiny_model: Path) -> None:
    config = make_config(tiny_model, header_timeout=1.0)
    with ServerThread(config) as server:
        port = int(server.url.rstrip("/").rsplit(":", 1)[1])
        stalled: list[socket.socket] = []
        try:
            for i in range(STALLED):
                sock = socket.create_connection(("127.0.0.1", port), timeout=10)
                if i % 3 == 1:
                    sock.sendall(b"GET /health HTTP/1.1\r\n")  # never ends its head
                elif i % 3 == 2:
                    sock.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
                stalled.append(sock)
            # A real client is served while all of them hang on.
            status, _ = _get(port, "/health")
            assert status == 200
            # Dribbling bytes does not extend a head's deadline.
            for sock in stalled[2::3]:
                sock.sendall(b"a")
            deadline = time.monotonic() + 1.0 + 10.0
            still_open = [s for s in stalled if not _closed_by_server(s, deadline)]
            assert still_open == []
            status, _ = _get(port, "/health")
            assert status == 200
        finally:
            for sock in stalled:
                sock.close()


def test_listening_beyond_loopback_needs_a_token_or_insecure(tiny_model: Path) -> None:
    with pytest.raises(InputError, match=r"needs a token.*--insecure"):
        make_config(tiny_model, host="0.0.0.0")
    assert make_config(tiny_model, host="0.0.0.0", token="s3cret").token == "s3cret"
    assert make_config(tiny_model, host="0.0.0.0", insecure=True).insecure
    with pytest.raises(InputError, match="insecure: got"):
        ServeConfig(insecure="yes")  # type: ignore[arg-type]


def test_host_check_stays_on_beyond_loopback(tiny_model: Path) -> None:
    """Before, a non-loopback server without token accepted any Host (DNS rebinding)."""
    config = make_config(tiny_model, host="0.0.0.0", insecure=True)
    names = config.host_names
    assert names is not None
    assert "127.0.0.1" in names
    assert socket.gethostname().lower() in names
    assert "0.0.0.0" not in names
    with ServerThread(config) as server:
        port = int(server.url.rstrip("/").rsplit(":", 1)[1])
        assert _get(port, "/health", host=f"127.0.0.1:{port}")[0] == 200
        status, body = _get(port, "/health", host=f"attacker.example:{port}")
        assert status == 421
        assert b"attacker.example" in body
