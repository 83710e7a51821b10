"""A camera that drops out is reopened while the server keeps running and says so."""

from __future__ import annotations

import json
import threading
import time

import httpx
import numpy as np
import pytest
from websockets.sync.client import connect

from samedge.errors import SourceError
from samedge.serve import ServerThread, StreamService
from samedge.stream import ReconnectingSource, ReconnectPolicy
from samedge.stream.sources import FrameSource
from tests.serve._browser import CHROMIUM, chromium_page
from tests.serve.conftest import make_config
from tests.serve.test_metrics import check_exposition


class _Camera(FrameSource):
    live = True
    description = "fake camera 0"

    def __init__(self, plugged: threading.Event) -> None:
        super().__init__()
        self.plugged = plugged

    def _read(self):
        if not self.plugged.is_set():
            raise OSError("device unplugged (test)")
        time.sleep(0.02)  # a 50 fps camera
        return np.full((48, 64, 3), 90, np.uint8), time.monotonic()


class Socket:
    """The fake camera's USB socket: opens a camera while plugged in."""

    def __init__(self) -> None:
        self.plugged = threading.Event()
        self.plugged.set()
        self.opened = 0

    def __call__(self) -> _Camera:
        if not self.plugged.is_set():
            raise SourceError("camera 0: /dev/video0 does not exist (test)")
        self.opened += 1
        return _Camera(self.plugged)


def next_message(ws, kind: str, timeout: float = 60.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        message = ws.recv(timeout=max(0.1, deadline - time.monotonic()))
        data = json.loads(message)
        if data["type"] == kind:
            return data
    raise AssertionError(f"no {kind!r} message within {timeout} s")


def metrics(url: str) -> dict[str, float]:
    return check_exposition(httpx.get(url + "metrics").text)


def wait_until(condition, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.02)


def test_camera_drop_out_is_reported_and_recovered(tiny_model):
    socket = Socket()
    source = ReconnectingSource(socket, ReconnectPolicy(initial_delay=0.01, max_delay=0.05))
    service = StreamService(make_config(tiny_model), source=source)
    with ServerThread(service=service) as server:
        url = server.url
        assert service.wait_for_frame(timeout=60)
        health = httpx.get(url + "health").json()
        assert health["status"] == "ok"
        assert (health["source"], health["reconnects"]) == ("connected", 0)
        samples = metrics(url)
        assert samples["samedge_source_connected"] == 1
        assert samples["samedge_source_reconnects_total"] == 0
        with connect(url.replace("http", "ws") + "ws?masks=0") as ws:
            hello = next_message(ws, "hello")
            assert (hello["state"], hello["source_state"]) == ("running", "connected")
            before = next_message(ws, "frame")["frame_id"]

            socket.plugged.clear()  # unplugged
            status = next_message(ws, "status")
            assert status["state"] == "running"  # the server keeps running
            assert status["source_state"] == "reconnecting"
            assert "device unplugged" in status["error"] or "does not exist" in status["error"]
            r = httpx.get(url + "health")
            assert r.status_code == 503
            assert r.json()["status"] == "reconnecting"
            assert r.json()["source"] == "reconnecting"
            samples = metrics(url)
            assert samples["samedge_source_connected"] == 0
            assert samples["samedge_source_dropouts_total"] == 1
            assert samples["samedge_pipeline_up"] == 1
            info = httpx.get(url + "api/info").json()
            assert info["source_state"] == "reconnecting"
            # Failed attempts go on (and are counted) while it is unplugged.
            wait_until(lambda: metrics(url)["samedge_source_reconnect_attempts_total"] >= 2)
            # Prompts are still taken; they apply when frames come back.
            r = httpx.post(url + "api/objects", json={"box": [10, 10, 40, 30]})
            assert r.status_code == 201, r.text

            socket.plugged.set()  # plugged back in
            status = next_message(ws, "status")
            assert status["source_state"] == "connected"
            assert status["reconnects"] == 1
            assert next_message(ws, "frame")["frame_id"] > before
        health = httpx.get(url + "health").json()
        assert (health["status"], health["source"], health["reconnects"]) == ("ok", "connected", 1)
        samples = metrics(url)
        assert samples["samedge_source_connected"] == 1
        assert samples["samedge_source_reconnects_total"] == 1
        assert socket.opened == 2
    assert source.closed


@pytest.mark.skipif(
    not CHROMIUM.exists(), reason=f"{CHROMIUM} is missing (apt-get install chromium)"
)
def test_the_page_says_reconnecting(tiny_model):
    """In Chromium: the state line reads "reconnecting" while the camera is out,
    "live" again (and the video moves on) once it is back."""
    socket = Socket()
    source = ReconnectingSource(socket, ReconnectPolicy(initial_delay=0.01, max_delay=0.05))
    service = StreamService(make_config(tiny_model), source=source)
    # Guarded: the first evaluations may run before the page replaced about:blank.
    state = "((document.getElementById('state') || {}).textContent || '')"
    with ServerThread(service=service) as server, chromium_page() as page:
        assert service.wait_for_frame(timeout=60)
        page.send("Page.navigate", url=server.url)
        page.wait_for(f"{state} === 'live' && window.samedge && window.samedge.shown")
        socket.plugged.clear()
        text = page.wait_for(f"{state}.startsWith('reconnecting') && {state}")
        assert text.startswith("reconnecting to the source")
        # The reason, on hover (from the "status" message, which may follow a frame
        # that already said "reconnecting").
        reason = page.wait_for("document.getElementById('state').title")
        assert "unplugged" in reason or "does not exist" in reason
        socket.plugged.set()
        page.wait_for(f"{state} === 'live'")
        shown = page.eval("window.samedge.shown.frame_id")
        page.wait_for(f"window.samedge.shown.frame_id > {shown}")
