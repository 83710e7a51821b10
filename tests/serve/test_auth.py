"""Safe by default: the token, Host and Origin checks, and the config's validation."""

from __future__ import annotations

import pytest
from starlette.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

from samedge.errors import InputError
from samedge.serve import ServeConfig
from tests.serve.conftest import make_config, running_client

TOKEN = "s3cret-Token_123"
# Every endpoint, /health included (issue #6: the token is required on every endpoint).
PROTECTED = ["/", "/health", "/metrics", "/api/info", "/api/objects", "/api/objects/1"]


@pytest.fixture(scope="module")
def guarded(tiny_model):
    yield from running_client(make_config(tiny_model, token=TOKEN))


@pytest.mark.parametrize("path", PROTECTED)
def test_token_required_on_every_endpoint(guarded: TestClient, path):
    r = guarded.get(path)
    assert r.status_code == 401, r.text
    assert "token" in r.json()["error"]
    assert r.headers["www-authenticate"] == "Bearer"
    for bad in ({"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {TOKEN}"}):
        assert guarded.get(path, headers=bad).status_code == 401
    assert guarded.get(path, params={"token": TOKEN[:-1]}).status_code == 401
    ok_header = guarded.get(path, headers={"Authorization": f"Bearer {TOKEN}"})
    ok_query = guarded.get(path, params={"token": TOKEN})
    assert ok_header.status_code not in (401, 403)
    assert ok_query.status_code == ok_header.status_code


def test_writes_need_the_token(guarded: TestClient):
    body = {"points": [[5, 5]]}
    assert guarded.post("/api/objects", json=body).status_code == 401
    assert guarded.delete("/api/objects").status_code == 401
    r = guarded.post("/api/objects", json=body, headers={"Authorization": f"Bearer {TOKEN}"})
    assert r.status_code == 201


def test_health_needs_the_token_when_set(guarded: TestClient):
    r = guarded.get("/health")
    assert r.status_code == 401, r.text
    assert "status" not in r.json()  # nothing about the pipeline leaks without the token
    r = guarded.get("/health", headers={"Authorization": f"Bearer {TOKEN}"})
    assert r.status_code == 200
    assert r.json()["status"] == "ok"


def test_health_open_without_a_token(client: TestClient):
    r = client.get("/health")
    assert r.status_code == 200
    assert r.json()["status"] == "ok"


def test_websocket_needs_the_token(guarded: TestClient):
    for url in ("ws://127.0.0.1:8000/ws", "ws://127.0.0.1:8000/ws?token=wrong"):
        with pytest.raises(WebSocketDisconnect) as e, guarded.websocket_connect(url):
            pass
        assert e.value.code == 1008
    with guarded.websocket_connect(f"ws://127.0.0.1:8000/ws?token={TOKEN}") as ws:
        assert ws.receive_json()["type"] == "hello"


def test_host_header_checked_on_loopback(client: TestClient):
    r = client.get("/api/info", headers={"Host": "evil.example:8000"})
    assert r.status_code == 421
    assert "evil.example" in r.json()["error"]
    for host in ("localhost:8000", "127.0.0.1", "[::1]:8000"):
        assert client.get("/api/info", headers={"Host": host}).status_code == 200, host


def test_cross_origin_requests_refused(client: TestClient):
    evil = {"Origin": "http://evil.example"}
    r = client.post("/api/objects", json={"points": [[5, 5]]}, headers=evil)
    assert r.status_code == 403
    assert "cross-origin" in r.json()["error"]
    assert client.get("/api/objects", headers={"Origin": "null"}).status_code == 403
    with (
        pytest.raises(WebSocketDisconnect) as e,
        client.websocket_connect("ws://127.0.0.1:8000/ws", headers=evil),
    ):
        pass
    assert e.value.code == 1008
    same = {"Origin": "http://127.0.0.1:8000"}
    r = client.post("/api/objects", json={"points": [[5, 5]]}, headers=same)
    assert r.status_code == 201
    client.delete(f"/api/objects/{r.json()['id']}")


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({"token": ""}, "empty token"),
        ({"token": "a b"}, "whitespace"),
        ({"token": "jeton-é"}, "non-ASCII"),
        ({"port": 70000}, "0..65535"),
        ({"port": -1}, "0..65535"),
        ({"host": ""}, "host"),
        ({"max_body_bytes": 10}, ">= 1024"),
        ({"client_queue": 0}, "positive"),
        ({"jpeg_quality": 0}, "1..100"),
        ({"reconnect": 3}, "expected a ReconnectPolicy"),
        ({"overlap": "yes"}, "overlap: got 'yes', expected True, False or None"),
    ],
)
def test_config_validation(kwargs, words):
    with pytest.raises(InputError, match=words):
        ServeConfig(**kwargs)


def test_loopback_default():
    assert ServeConfig().loopback
    assert ServeConfig(host="::1").loopback
    assert ServeConfig(host="localhost").host_names is not None
    assert not ServeConfig(host="0.0.0.0", token="t").loopback
    # Beyond loopback the Host check stays on (see tests/serve/test_limits.py).
    assert ServeConfig(host="0.0.0.0", token="t").host_names is not None


def test_tokens_are_redacted_from_server_logs(caplog):
    import logging

    import samedge.serve.server  # noqa: F401  (installs the filter)

    with caplog.at_level(logging.INFO, logger="uvicorn.error"):
        logging.getLogger("uvicorn.error").info(
            '%s - "WebSocket %s" [accepted]', "127.0.0.1:5", f"/ws?frames=1&token={TOKEN}"
        )
    (record,) = [r for r in caplog.records if "WebSocket" in r.getMessage()]
    assert TOKEN not in record.getMessage()
    assert "token=***" in record.getMessage()
