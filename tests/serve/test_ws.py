"""The WebSocket stream: frame messages, JPEG frames, prompt messages, bounds, slow clients."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import re
import socket
import time

import cv2
import httpx
import numpy as np
import pytest
from starlette.websockets import WebSocketDisconnect

from samedge.masks import rle_to_mask
from samedge.serve import ServerThread, Subscriber
from samedge.serve.service import FrameMessage
from tests.serve.conftest import make_config, running_client

W, H = 160, 120


def next_frame(ws) -> dict:
    while True:
        m = ws.receive_json()
        if m["type"] == "frame":
            return m


def test_stream_of_frames_with_masks_and_jpeg(client):
    oid = client.post("/api/objects", json={"points": [[80, 60]]}).json()["id"]
    try:
        with client.websocket_connect("ws://127.0.0.1:8000/ws?frames=1") as ws:
            hello = ws.receive_json()
            assert hello["type"] == "hello"
            assert hello["frames"] is True
            assert hello["backend"] == "onnxruntime"
            assert [o["id"] for o in hello["objects"]] == [oid]
            ids, tracked = [], 0
            for _ in range(60):
                m = next_frame(ws)
                jpeg = ws.receive_bytes()  # each frame's JSON is followed by its JPEG
                image = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
                assert image.shape == (H, W, 3)
                assert (m["width"], m["height"]) == (W, H)
                assert m["latency_ms"] > 0
                assert set(m["stages_ms"]) >= {"encoder", "decoder"}
                ids.append(m["frame_id"])
                # A frame decoded before the prompt arrived may still be in flight.
                obj = next((o for o in m["objects"] if o["id"] == oid), None)
                if obj is not None and obj["state"] == "tracking":
                    mask = rle_to_mask(obj["rle"])
                    assert mask.shape == (H, W)
                    assert int(mask.sum()) == obj["area"] > 0
                    tracked += 1
                    if tracked == 4:
                        break
            assert tracked == 4, f"object {oid} not tracked in {len(ids)} frames"
            assert ids == sorted(set(ids))
    finally:
        client.delete(f"/api/objects/{oid}")


def test_masks_can_be_left_out(client):
    oid = client.post("/api/objects", json={"box": [10, 10, 100, 100]}).json()["id"]
    try:
        with client.websocket_connect("ws://127.0.0.1:8000/ws?masks=0") as ws:
            assert ws.receive_json()["masks"] is False
            for _ in range(3):
                m = next_frame(ws)
                assert all("rle" not in o for o in m["objects"])
    finally:
        client.delete(f"/api/objects/{oid}")


@pytest.mark.parametrize("query", ["frames=2", "masks=maybe", "frames="])
def test_bad_query_closes_with_a_reason(client, query):
    url = f"ws://127.0.0.1:8000/ws?{query}"
    with client.websocket_connect(url) as ws, pytest.raises(WebSocketDisconnect) as e:
        ws.receive_json()
    assert e.value.code == 1008
    assert "expected 1 or 0" in e.value.reason


def replies(ws, count: int) -> list[dict]:
    out = []
    while len(out) < count:
        m = ws.receive_json()
        if m["type"] in ("reply", "error"):
            out.append(m)
    return out


def test_prompt_messages(client):
    with client.websocket_connect("ws://127.0.0.1:8000/ws?masks=0") as ws:
        ws.send_json({"op": "add", "points": [[20, 30]], "request_id": "r1"})
        (added,) = replies(ws, 1)
        assert added["type"] == "reply"
        assert added["status"] == 201
        assert added["request_id"] == "r1"
        oid = added["id"]
        ws.send_json({"op": "patch", "id": oid, "points": [[25, 35]], "labels": [0]})
        ws.send_json({"op": "update", "id": oid, "box": [0, 0, 50, 60], "request_id": 7})
        patched, updated = replies(ws, 2)
        assert patched["prompt"]["labels"] == [1, 0]
        assert updated["request_id"] == 7
        assert updated["prompt"]["box"] == [0.0, 0.0, 50.0, 60.0]
        ws.send_json({"op": "remove", "id": oid})
        assert replies(ws, 1)[0]["removed"] is True
        ws.send_json({"op": "clear"})
        assert replies(ws, 1)[0]["removed"] == 0


BAD_MESSAGES = [
    ("{nope", 400, "not valid JSON"),
    ("[1, 2]", 422, "expected a JSON object"),
    ('{"op": "explode"}', 422, 'op: got "explode"'),
    ('{"points": [[1, 1]]}', 422, "op: got null"),
    ('{"op": "add", "points": [[999, 1]], "request_id": "x"}', 422, "outside"),
    ('{"op": "add", "pointz": [[1, 1]]}', 422, 'unknown field "pointz"'),
    ('{"op": "patch", "points": [[1, 1]]}', 422, 'needs the object\'s "id"'),
    ('{"op": "remove", "id": 424242}', 404, "no such object"),
    ('{"op": "remove", "id": "1"}', 422, "id: got"),
    ('{"op": "remove", "id": 1, "box": [1, 1, 2, 2]}', 422, "unexpected field"),
    ('{"op": "add", "box": [1, 1, 2, 2], "request_id": [1]}', 422, "request_id"),
    ('{"op": "add", "points": [[NaN, 1]]}', 422, "NaN"),
]


def test_bad_messages_get_error_replies(client):
    with client.websocket_connect("ws://127.0.0.1:8000/ws?masks=0") as ws:
        for text, status, words in BAD_MESSAGES:
            ws.send_text(text)
            (reply,) = replies(ws, 1)
            assert reply["type"] == "error", text
            assert reply["status"] == status, (text, reply)
            assert words in reply["error"], (text, reply)
        ws.send_bytes(b"\x00\x01")
        (reply,) = replies(ws, 1)
        assert reply["status"] == 400
        assert "binary" in reply["error"]
    assert client.get("/api/objects").json()["objects"] == []


def test_error_reply_echoes_request_id(client):
    with client.websocket_connect("ws://127.0.0.1:8000/ws?masks=0") as ws:
        ws.send_json({"op": "add", "points": [[999, 1]], "request_id": "abc"})
        (reply,) = replies(ws, 1)
        assert reply["request_id"] == "abc"


def read_until_closed(ws) -> None:
    while True:
        ws.receive_json()


def test_oversized_message_closes_the_socket(client):
    with client.websocket_connect("ws://127.0.0.1:8000/ws?masks=0") as ws:
        ws.send_text(json.dumps({"op": "add", "pad": "x" * 70_000}))
        with pytest.raises(WebSocketDisconnect) as e:
            read_until_closed(ws)
        assert e.value.code == 1009
    assert client.get("/health").status_code == 200


def test_client_limit(tiny_model):
    for client in running_client(make_config(tiny_model, max_clients=1)):
        with client.websocket_connect("ws://127.0.0.1:8000/ws") as first:
            assert first.receive_json()["type"] == "hello"
            url = "ws://127.0.0.1:8000/ws"
            with client.websocket_connect(url) as second, pytest.raises(WebSocketDisconnect) as e:
                second.receive_json()
            assert e.value.code == 1013
            assert "the limit is 1" in e.value.reason
        # The first client's slot is free again.
        with client.websocket_connect("ws://127.0.0.1:8000/ws") as third:
            assert third.receive_json()["type"] == "hello"


def test_subscriber_drops_oldest():
    async def main() -> tuple[list[int], int]:
        sub = Subscriber(asyncio.get_running_loop(), maxlen=2)
        for i in range(5):
            sub.offer(FrameMessage(i, str(i)))
        got = [(await sub.get()).frame_id for _ in range(2)]
        return got, sub.dropped

    got, dropped = asyncio.run(main())
    assert got == [3, 4]
    assert dropped == 3


def metric(text: str, name: str) -> float:
    match = re.search(rf"^{re.escape(name)} (\S+)$", text, re.MULTILINE)
    assert match, f"{name} not in /metrics"
    return float(match.group(1))


def stalled_client(url: str) -> socket.socket:
    """A WebSocket client that completes the handshake and then never reads."""
    host, port = url.split("//")[1].rstrip("/").split(":")
    sock = socket.socket()
    # A tiny receive window so the server's send buffer fills after a frame or two.
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect((host, int(port)))
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall(
        (
            f"GET /ws?frames=1 HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
    )
    head = b""
    while b"\r\n\r\n" not in head:
        head += sock.recv(1)
    assert head.startswith(b"HTTP/1.1 101"), head
    return sock


def test_slow_client_never_stalls_the_pipeline_or_others(tiny_model, caplog):
    from websockets.sync.client import connect

    # Big frames (640x480 at JPEG quality 100, ~0.2 MB each) fill the stalled
    # client's socket buffers within seconds.
    config = make_config(
        tiny_model, synthetic_size=(480, 640), synthetic_fps=30.0, jpeg_quality=100
    )
    slow = None
    try:
        with ServerThread(config) as server:
            metrics = server.service.metrics
            assert server.service.wait_for_frame(timeout=60)
            slow = stalled_client(server.url)
            ws_url = server.url.replace("http://", "ws://") + "ws?frames=1"
            with connect(ws_url, max_size=2**24) as fast:
                ids: list[int] = []
                first = metrics.frames
                deadline = time.monotonic() + 60
                while time.monotonic() < deadline and (len(ids) < 30 or metrics.ws_dropped == 0):
                    m = fast.recv(timeout=10)
                    if isinstance(m, str) and json.loads(m)["type"] == "frame":
                        ids.append(json.loads(m)["frame_id"])
                processed = metrics.frames - first
            # The stalled client lost frames (its queue stays at 2) ...
            assert metrics.ws_dropped > 0
            text = httpx.get(server.url + "metrics").text
            assert metric(text, "samedge_websocket_dropped_total") > 0
            # ... while the pipeline and the reading client went on.
            assert len(ids) >= 30
            assert ids == sorted(set(ids))
            assert len(ids) >= processed // 2, (len(ids), processed)
            caplog.clear()
        # Shutting down with the stalled client still connected: it is cut at once
        # instead of holding the graceful shutdown until its timeout.
        assert server.service.state == "stopped"
        assert not [r for r in caplog.records if "timeout graceful shutdown" in r.getMessage()]
    finally:
        if slow is not None:
            slow.close()
