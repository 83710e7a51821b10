"""Threads start and stop cleanly, failures are reported, and the CLI shuts down on signals."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import cv2
import httpx
import numpy as np
import pytest

from samedge.errors import ImageError
from samedge.serve import ServerThread, StreamService
from samedge.stream.sources import FrameSource, ImageFolderSource
from samedge.stream.tracking import Tracker, TrackerConfig
from tests.serve.conftest import make_config

REPO = Path(__file__).resolve().parents[2]


def ours() -> list[str]:
    """Threads this package (or the server under it) started."""
    return sorted(
        t.name
        for t in threading.enumerate()
        if t.name.startswith(("samedge", "AnyIO")) or "uvicorn" in t.name
    )


def test_start_stop_repeatedly_leaks_no_threads(tiny_model):
    before = ours()
    for _ in range(3):
        with ServerThread(make_config(tiny_model, overlap=True)) as server:
            assert server.service.wait_for_frame(timeout=60)
            assert httpx.get(server.url + "health").json()["status"] == "ok"
            names = ours()
            for name in ("samedge-serve-pipeline", "samedge-serve-broadcast"):
                assert name in names
            # The pipeline encodes the next frame on its worker while it decodes this one.
            assert server.service.stream.pipeline.overlap
            assert "samedge-encode_0" in names
        assert ours() == before
        assert server.service.state == "stopped"
        with pytest.raises(httpx.ConnectError):
            httpx.get(server.url + "health")


def test_service_restarts(tiny_model):
    service = StreamService(make_config(tiny_model))
    for _ in range(2):
        service.start()
        assert service.wait_for_frame(timeout=60)
        assert service.running
        service.stop()
        assert service.state == "stopped"
        assert list(service.threads()) == []
    service.stop()  # idempotent


class FailingSource(FrameSource):
    description = "failing test source"

    def __init__(self, good: int) -> None:
        super().__init__()
        self.good = good

    def _read(self):
        if self._next_id >= self.good:
            raise ImageError("camera exploded (test)")
        return np.zeros((48, 64, 3), np.uint8), self._next_id / 30.0


def test_pipeline_failure_is_reported_not_fatal(tiny_model):
    service = StreamService(make_config(tiny_model), source=FailingSource(good=3))
    with ServerThread(service=service) as server:
        deadline = time.monotonic() + 60
        while service.state == "running" and time.monotonic() < deadline:
            time.sleep(0.05)
        r = httpx.get(server.url + "health")
        assert r.status_code == 503
        assert r.json()["status"] == "failed"
        assert "camera exploded" in r.json()["error"]
        assert r.json()["frames"] == 3
        r = httpx.post(server.url + "api/objects", json={"points": [[1, 1]]})
        assert r.status_code == 503
        assert "camera exploded" in r.json()["error"]
        assert "samedge_pipeline_up 0" in httpx.get(server.url + "metrics").text


def test_source_end_is_reported(tiny_model, tmp_path):
    for i in range(3):
        cv2.imwrite(str(tmp_path / f"{i}.png"), np.full((40, 50, 3), 40 * i, np.uint8))
    service = StreamService(make_config(tiny_model), source=ImageFolderSource(tmp_path))
    with ServerThread(service=service) as server:
        deadline = time.monotonic() + 60
        while service.state == "running" and time.monotonic() < deadline:
            time.sleep(0.05)
        health = httpx.get(server.url + "health").json()
        assert health == {"status": "ended", "frames": 3, "frame_id": 2}


class FakePredictor:
    original_size = (10, 10)

    def predict_batch(self, prompts, multimask_output=True, return_logits=False):
        raise AssertionError("no prompt fits this frame; nothing should be decoded")


def test_a_prompt_that_stops_fitting_does_not_end_the_pipeline():
    # E.g. a camera that changed resolution after the prompt was checked.
    tracker = Tracker(TrackerConfig(drop_unfit_prompts=True))
    tracker.add(point_coords=[[50, 50]])
    assert tracker.step(FakePredictor()) == {}
    assert len(tracker) == 0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cli(*args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("SAMEDGE_TOKEN", None)
    return subprocess.Popen(
        [sys.executable, "-m", "samedge.cli", "serve", *args],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_healthy(proc: subprocess.Popen[str], url: str, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"samedge serve exited early: {proc.communicate()}")
        try:
            if httpx.get(url + "health", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    proc.kill()
    raise AssertionError(f"samedge serve did not become healthy: {proc.communicate()}")


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_cli_serve_stops_cleanly_on_signals(tiny_model, signum):
    port = free_port()
    proc = cli("--model", str(tiny_model), "--backend", "onnxruntime", "--port", str(port))
    url = f"http://127.0.0.1:{port}/"
    try:
        wait_healthy(proc, url)
        # A connected WebSocket client must not hold the shutdown up.
        from websockets.sync.client import connect

        with connect(url.replace("http", "ws") + "ws") as ws:
            assert '"hello"' in ws.recv(timeout=10)
            proc.send_signal(signum)
            _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err
    assert f"stopped by signal {int(signum)}" in err
    assert "Traceback" not in err


def test_cli_serve_errors_are_one_line(tiny_model, tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        proc = cli("--model", str(tiny_model), "--backend", "onnxruntime", "--port", str(port))
        _, err = proc.communicate(timeout=90)
    assert proc.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}" in err
    assert "pick another --port" in err
    assert "Traceback" not in err

    proc = cli("--model", str(tmp_path / "missing"), "--port", "0")
    _, err = proc.communicate(timeout=90)
    assert proc.returncode == 1
    assert err.strip().splitlines()[-1].startswith("samedge serve: error: model")
    assert "Traceback" not in err


def test_missing_extra_is_a_one_line_error():
    code = (
        "import sys; sys.modules['starlette'] = None; from samedge.cli import main; "
        "sys.exit(main(['serve', '--port', '0']))"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 1
    assert "pip install 'samedge[serve]'" in proc.stderr
    assert "Traceback" not in proc.stderr
