"""A minimal headless-Chromium driver over the Chrome DevTools Protocol.

Debian's ``chromium`` package (``/usr/bin/chromium``) started with
``--remote-debugging-port=0`` writes its port to ``DevToolsActivePort`` in the
profile folder; we connect to the page target's WebSocket with the
``websockets`` package (already a ``serve`` dependency). No selenium, no
browser download.
"""

from __future__ import annotations

import base64
import contextlib
import itertools
import json
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cv2
import httpx
import numpy as np
from websockets.sync.client import ClientConnection, connect

CHROMIUM = Path(os.environ.get("SAMEDGE_CHROMIUM", "/usr/bin/chromium"))
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--disable-dev-shm-usage",
    "--mute-audio",
    "--window-size=1280,900",
)


class CDPError(RuntimeError):
    """A DevTools command failed or timed out."""


class Page:
    """One browser tab driven through CDP commands (synchronous)."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self._ids = itertools.count(1)
        self.console: list[str] = []

    def send(self, method: str, timeout: float = 30.0, **params: Any) -> dict[str, Any]:
        msg_id = next(self._ids)
        self.ws.send(json.dumps({"id": msg_id, "method": method, "params": params}))
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise CDPError(f"{method}: no answer within {timeout} s")
            try:
                data = json.loads(self.ws.recv(timeout=left))
            except TimeoutError:
                continue
            if data.get("id") == msg_id:
                if "error" in data:
                    raise CDPError(f"{method}: {data['error']}")
                return data.get("result", {})
            self._event(data)

    def _event(self, data: dict[str, Any]) -> None:
        if data.get("method") == "Runtime.consoleAPICalled":
            args = data["params"].get("args", [])
            self.console.append(" ".join(str(a.get("value", a.get("description"))) for a in args))
        elif data.get("method") == "Runtime.exceptionThrown":
            details = data["params"]["exceptionDetails"]
            self.console.append(
                "exception: " + str(details.get("exception", {}).get("description", details))
            )

    def eval(self, expression: str, *, await_promise: bool = False) -> Any:
        result = self.send(
            "Runtime.evaluate",
            expression=expression,
            returnByValue=True,
            awaitPromise=await_promise,
        )
        if "exceptionDetails" in result:
            raise CDPError(f"evaluate {expression!r}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def wait_for(self, expression: str, timeout: float = 30.0, interval: float = 0.1) -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = self.eval(expression)
            if value:
                return value
            time.sleep(interval)
        raise CDPError(f"{expression!r} stayed falsy for {timeout} s; console: {self.console}")

    def mouse(self, kind: str, x: float, y: float, button: str = "left", **extra: Any) -> None:
        buttons = {"left": 1, "right": 2, "none": 0}[button]
        self.send(
            "Input.dispatchMouseEvent",
            type=kind,
            x=x,
            y=y,
            button=button,
            buttons=buttons if kind != "mouseReleased" else 0,
            clickCount=1 if kind != "mouseMoved" else 0,
            **extra,
        )

    def click(self, x: float, y: float, button: str = "left", modifiers: int = 0) -> None:
        self.mouse("mouseMoved", x, y, button="none", modifiers=modifiers)
        self.mouse("mousePressed", x, y, button=button, modifiers=modifiers)
        self.mouse("mouseReleased", x, y, button=button, modifiers=modifiers)

    def drag(self, x0: float, y0: float, x1: float, y1: float, steps: int = 5) -> None:
        self.mouse("mouseMoved", x0, y0, button="none")
        self.mouse("mousePressed", x0, y0)
        for i in range(1, steps + 1):
            t = i / steps
            self.send(
                "Input.dispatchMouseEvent",
                type="mouseMoved",
                x=x0 + (x1 - x0) * t,
                y=y0 + (y1 - y0) * t,
                button="left",
                buttons=1,
            )
        self.mouse("mouseReleased", x1, y1)

    def screenshot(self) -> np.ndarray:
        """The viewport as an ``H×W×3`` uint8 BGR image."""
        data = base64.b64decode(self.send("Page.captureScreenshot", format="png")["data"])
        image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
        if image is None:
            raise CDPError("Page.captureScreenshot returned an undecodable PNG")
        return image


@contextlib.contextmanager
def chromium_page(width: int = 1280, height: int = 900) -> Iterator[Page]:
    """Start headless Chromium with a fresh profile and yield its first tab."""
    profile = Path(tempfile.mkdtemp(prefix="samedge-chromium-"))
    proc = subprocess.Popen(
        [
            str(CHROMIUM),
            *FLAGS,
            f"--user-data-dir={profile}",
            "--remote-debugging-port=0",
            "--remote-debugging-address=127.0.0.1",
            "about:blank",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        # Chromium puts its singleton socket folder (org.chromium.Chromium.*) in TMPDIR
        # and leaves it behind when terminated: keep it in the profile, removed below.
        env={**os.environ, "TMPDIR": str(profile)},
    )
    try:
        port_file = profile / "DevToolsActivePort"
        deadline = time.monotonic() + 60.0
        while not (port_file.exists() and port_file.read_text().count("\n") >= 1):
            if proc.poll() is not None or time.monotonic() > deadline:
                # Reading stderr waits for EOF: a Chromium still running (slow to
                # start on a loaded machine) must be stopped first, or this hangs.
                if proc.poll() is None:
                    proc.kill()
                    proc.wait(timeout=10)
                    state = "still starting after 60 s, killed"
                else:
                    state = f"exit {proc.returncode}"
                err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
                raise CDPError(f"chromium did not start ({state}): {err[-2000:]}")
            time.sleep(0.05)
        port = int(port_file.read_text().splitlines()[0])
        targets = httpx.get(f"http://127.0.0.1:{port}/json/list", timeout=10).json()
        page_target = next(t for t in targets if t.get("type") == "page")
        with connect(page_target["webSocketDebuggerUrl"], max_size=64 * 2**20) as ws:
            page = Page(ws)
            page.send("Page.enable")
            page.send("Runtime.enable")
            page.send(
                "Emulation.setDeviceMetricsOverride",
                width=width,
                height=height,
                deviceScaleFactor=1,
                mobile=False,
            )
            yield page
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
        if proc.stderr is not None:
            proc.stderr.close()
        shutil.rmtree(profile, ignore_errors=True)
