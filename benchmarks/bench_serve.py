"""Soak ``samedge serve``: sustained FPS, latency, dropped frames and flat memory.

Starts the server (in this process, on a free port) on the synthetic 640×480
scene paced like a ``--camera-fps`` camera, keeps ``--objects`` objects
tracked through the HTTP API (clicked deep inside the largest objects in view,
from the scene's ground truth; objects of the scene leave after a few seconds,
so lost ones are re-prompted each second), connects one WebSocket client that
asks for JPEG frames and masks like the web page, and runs for ``--minutes``.

Reports:

* FPS: frames processed / wall time (from the pipeline's counter), and the
  lowest FPS of any ``--window``-second window (sustained, not just on average);
* end-to-end latency p50/p99/max, capture to result, from the per-frame messages;
* frames the capture thread dropped (the model fell behind the camera) and
  messages the client missed;
* resident memory (RSS) sampled every ``--rss-every`` seconds; after
  ``--warmup`` seconds, the slope of a straight-line fit (MiB per minute) and
  max - min. Memory counts as flat when the slope is within ``--max-slope``.

With ``--results DIR`` it writes ``DIR/serve_soak.json`` (every sample) and
``DIR/serve_soak.md`` (the table), with the command, machine and versions.

Example (issue #6's measurement: samedge_tiny, 3 objects, the default backend)::

    python benchmarks/bench_serve.py --minutes 5 --results benchmarks/results/amd-epyc-2c
    python benchmarks/bench_serve.py --model /tmp/ms --backend onnxruntime --seconds 30
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import logging
import math
import platform
import resource
import shlex
import sys
import threading
import time
from importlib import metadata
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from _files import write_atomic
from websockets.sync.client import connect

import samedge
from samedge.bench import machine_info, machine_name
from samedge.runtimes import available_backends
from samedge.scenes import MovingScene
from samedge.serve import ServeConfig, ServerThread
from samedge.stream.demo import click_points

log = logging.getLogger("bench_serve")


def rss_mib() -> float:
    """Current resident set size in MiB (Linux /proc; peak RSS elsewhere)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def memory_trend(samples: list[tuple[float, float]], warmup_s: float) -> dict[str, Any]:
    """Slope (MiB/min, least squares) and spread of the RSS samples after ``warmup_s``."""
    kept = [(t, m) for t, m in samples if t >= warmup_s]
    if len(kept) < 3:
        return {"samples": len(kept), "slope_mib_per_min": None, "spread_mib": None}
    t = np.array([s[0] for s in kept]) / 60.0
    m = np.array([s[1] for s in kept])
    slope = float(np.polyfit(t, m, 1)[0])
    return {
        "samples": len(kept),
        "from_s": round(kept[0][0], 1),
        "slope_mib_per_min": round(slope, 3),
        "spread_mib": round(float(m.max() - m.min()), 1),
        "min_mib": round(float(m.min()), 1),
        "max_mib": round(float(m.max()), 1),
    }


def _versions() -> dict[str, str | None]:
    versions: dict[str, str | None] = {
        "samedge": samedge.__version__,
        "python": platform.python_version(),
        "numpy": np.__version__,
    }
    for info in available_backends():
        versions[info.name] = info.version
    for dist in ("opencv-python-headless", "starlette", "uvicorn", "websockets"):
        with contextlib.suppress(metadata.PackageNotFoundError):
            versions[dist] = metadata.version(dist)
    return versions


class Clicker:
    """Keeps ``objects`` objects tracked through the HTTP API, like a user would."""

    def __init__(self, server: ServerThread, api: httpx.Client, objects: int) -> None:
        self.service = server.service
        self.api = api
        self.objects = objects
        synthetic = api.get("/api/info").json()["synthetic"]
        self.scene = MovingScene(
            seed=synthetic["seed"],
            size=(synthetic["height"], synthetic["width"]),
            num_objects=synthetic["num_objects"],
            fps=synthetic["fps"],
        )
        self.prompts = 0

    def __call__(self) -> int:
        """Re-prompt lost objects (and add missing ones) on objects in view; returns
        how many were tracking before."""
        latest = self.service.latest
        frame = self.scene.frame(latest.frame_id if latest is not None else 0)
        objects = self.api.get("/api/objects").json()["objects"]
        lost = [o["id"] for o in objects if o["state"] == "lost"]
        missing = self.objects - len(objects)
        boxes = [o["box"] for o in objects if o["state"] != "lost" and o["box"]]
        tracking = sum(o["state"] != "lost" for o in objects)
        clicks = [
            (x, y)
            for _, (x, y) in click_points(frame.masks, frame.ids, len(frame.ids))
            if not any(b[0] <= x <= b[2] and b[1] <= y <= b[3] for b in boxes)
        ]
        for x, y in clicks[: self.objects - tracking]:
            body = {"points": [[x, y]]}
            if lost:
                self.api.put(f"/api/objects/{lost.pop()}", json=body)
            elif missing > 0:
                self.api.post("/api/objects", json=body)
                missing -= 1
            self.prompts += 1
        return tracking


class PageClient(threading.Thread):
    """A WebSocket client asking for JPEG frames and masks, as the web page does."""

    def __init__(self, url: str) -> None:
        super().__init__(name="bench-client", daemon=True)
        self.url = url.replace("http://", "ws://") + "ws?frames=1"
        self.latencies: list[float] = []
        self.frame_ids: list[int] = []
        self.stop = threading.Event()
        self.lock = threading.Lock()

    def run(self) -> None:
        with connect(self.url, max_size=2**24) as ws:
            while not self.stop.is_set():
                try:
                    message = ws.recv(timeout=1.0)
                except TimeoutError:
                    continue
                if isinstance(message, str):
                    data = json.loads(message)
                    if data.get("type") == "frame" and data["latency_ms"] is not None:
                        with self.lock:
                            self.latencies.append(data["latency_ms"])
                            self.frame_ids.append(data["frame_id"])

    def take(self) -> tuple[list[float], list[int]]:
        with self.lock:
            out = (self.latencies, self.frame_ids)
            self.latencies, self.frame_ids = [], []
            return out


def soak(args: argparse.Namespace) -> dict[str, Any]:
    """Run the soak as ``args`` says and return the JSON-ready record."""
    config = ServeConfig(
        model=args.model, backend=args.backend, port=0, synthetic_fps=args.camera_fps
    )
    with ServerThread(config) as server:
        service = server.service
        if not service.wait_for_frame(timeout=120):
            raise SystemExit(f"no frame from the server: {service.health()}")
        api = httpx.Client(base_url=server.url)
        clicker = Clicker(server, api, args.objects)
        clicker()
        client = PageClient(server.url)
        client.start()
        time.sleep(args.settle)  # let the fresh prompts settle before timing
        client.take()
        metrics = service.metrics
        t0 = time.perf_counter()
        frames0, dropped0, ws_dropped0 = metrics.frames, metrics.dropped, metrics.ws_dropped
        rss: list[tuple[float, float]] = [(0.0, round(rss_mib(), 2))]
        windows: list[float] = []
        window_start, window_frames = t0, frames0
        next_rss = args.rss_every
        tracked: list[int] = []
        latencies: list[float] = []
        received: list[int] = []
        while (now := time.perf_counter()) - t0 < args.seconds:
            time.sleep(1.0)
            tracked.append(clicker())
            now = time.perf_counter()
            if now - t0 >= next_rss:
                rss.append((round(now - t0, 2), round(rss_mib(), 2)))
                next_rss += args.rss_every
            if now - window_start >= args.window:
                frames = metrics.frames
                windows.append((frames - window_frames) / (now - window_start))
                window_start, window_frames = now, frames
            lat, ids = client.take()
            latencies += lat
            received += ids
        t1 = time.perf_counter()
        frames1, dropped1 = metrics.frames, metrics.dropped
        rss.append((round(t1 - t0, 2), round(rss_mib(), 2)))
        client.stop.set()
        client.join(timeout=10)
        lat, ids = client.take()
        latencies += lat
        received += ids
        info = service.info
        health = service.health()
        api.close()
    seconds = t1 - t0
    frames = frames1 - frames0
    trend = memory_trend(rss, args.warmup)
    slope = trend["slope_mib_per_min"]
    lat_ms = np.asarray(latencies, np.float64)
    camera_frames = seconds * args.camera_fps
    dropped = dropped1 - dropped0
    return {
        "benchmark": "serve_soak",
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "command": args.command,
        "machine": _machine(args),
        "versions": _versions(),
        "setup": {
            "model": info["model"],
            "backend": info["backend"],
            "precision": info["precision"],
            "device": info["device"],
            "source": info["source"],
            "camera_fps": args.camera_fps,
            "objects": args.objects,
            "client": "one in-process WebSocket client with JPEG frames and RLE masks (?frames=1)",
            "seconds": round(seconds, 1),
            "settle_s": args.settle,
        },
        "results": {
            "frames": frames,
            "fps": round(frames / seconds, 2),
            "fps_min_window": round(min(windows), 2) if windows else None,
            "window_s": args.window,
            "latency_ms_p50": round(float(np.percentile(lat_ms, 50)), 1) if lat_ms.size else None,
            "latency_ms_p99": round(float(np.percentile(lat_ms, 99)), 1) if lat_ms.size else None,
            "latency_ms_max": round(float(lat_ms.max()), 1) if lat_ms.size else None,
            "capture_dropped": dropped,
            # Of the frames the camera delivered (processed + dropped); a synthetic
            # camera starved of CPU delivers fewer than its nominal rate.
            "capture_dropped_pct": round(100.0 * dropped / max(frames + dropped, 1), 2),
            "captured_of_nominal": f"{frames + dropped} / {round(camera_frames)}",
            "client_messages": len(received),
            "ws_dropped": metrics.ws_dropped - ws_dropped0,
            "objects_tracking_mean": round(float(np.mean(tracked)), 2) if tracked else 0.0,
            "reprompts": clicker.prompts,
            "rss_mib_start": rss[0][1],
            "rss_mib_end": rss[-1][1],
            "rss_trend_after_warmup": trend,
            "rss_flat": slope is not None and abs(slope) <= args.max_slope,
            "max_slope_mib_per_min": args.max_slope,
            "health_at_end": health.get("status"),
        },
        "rss_samples": rss,
        "fps_windows": [round(w, 2) for w in windows],
        "notes": args.note,
    }


def _machine(args: argparse.Namespace) -> dict[str, Any]:
    info = machine_info(args.machine_name)
    return {k: info[k] for k in ("name", "cpu", "cores", "arch", "platform")}


def markdown(record: dict[str, Any]) -> str:
    """The human-readable page of a soak record."""
    s, r = record["setup"], record["results"]
    trend = r["rss_trend_after_warmup"]
    mins = s["seconds"] / 60
    rows = [
        ("sustained FPS (frames / wall time)", f"{r['fps']} (camera {s['camera_fps']:g} fps)"),
        (f"lowest FPS over a {r['window_s']:g} s window", str(r["fps_min_window"])),
        (
            "end-to-end latency p50 / p99 / max",
            f"{r['latency_ms_p50']} / {r['latency_ms_p99']} / {r['latency_ms_max']} ms",
        ),
        (
            "frames dropped by the capture thread",
            f"{r['capture_dropped']} ({r['capture_dropped_pct']} % of the frames captured; "
            f"captured {r['captured_of_nominal']} nominal)",
        ),
        (
            "frame messages received by the client / dropped for it",
            f"{r['client_messages']} / {r['ws_dropped']}",
        ),
        (
            "objects tracking (mean) / re-prompts",
            f"{r['objects_tracking_mean']} / {r['reprompts']}",
        ),
        ("RSS start / end", f"{r['rss_mib_start']} / {r['rss_mib_end']} MiB"),
        (
            f"RSS after {trend.get('from_s', 0):g} s: slope, max - min",
            f"{trend['slope_mib_per_min']} MiB/min, {trend['spread_mib']} MiB "
            f"({trend['samples']} samples)",
        ),
        (
            "memory flat",
            f"{'yes' if r['rss_flat'] else 'NO'} "
            f"(abs(slope) ≤ {r['max_slope_mib_per_min']} MiB/min)",
        ),
        ("health at the end", str(r["health_at_end"])),
    ]
    m, v = record["machine"], record["versions"]
    lines = [
        f"# `samedge serve` soak on {m['name']}",
        "",
        f"`{record['command']}` ({record['date']}, {mins:.1f} min)",
        "",
        f"{s['model']} on {s['backend']} ({s['precision']}, {s['device']}); source "
        f"{s['source']}; {s['objects']} objects kept tracked over the HTTP API; "
        f"{s['client']}.",
        "",
        "| measure | value |",
        "| --- | --- |",
        *(f"| {k} | {val} |" for k, val in rows),
        "",
        f"Machine: {m['cpu']}, {m['cores']} cores, {m['platform']}.",
        "Versions: " + ", ".join(f"{k} {val}" for k, val in v.items() if val) + ".",
    ]
    if record["notes"]:
        lines += ["", "## Notes", "", *(f"- {n}" for n in record["notes"])]
    return "\n".join(lines) + "\n"


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="samedge_tiny")
    ap.add_argument("--backend", default="auto")
    ap.add_argument("--objects", type=int, default=3, help="objects kept tracked (default 3)")
    length = ap.add_mutually_exclusive_group()
    length.add_argument("--minutes", type=float, default=None, help="soak length")
    length.add_argument("--seconds", type=float, default=60.0, help="soak length (default 60)")
    ap.add_argument("--camera-fps", type=float, default=30.0, help="synthetic camera rate")
    ap.add_argument("--settle", type=float, default=2.0, help="seconds before timing starts")
    ap.add_argument("--rss-every", type=float, default=5.0, help="RSS sampling period (s)")
    ap.add_argument(
        "--warmup", type=float, default=30.0, help="seconds left out of the memory trend"
    )
    ap.add_argument("--window", type=float, default=10.0, help="FPS window (s)")
    ap.add_argument(
        "--max-slope", type=float, default=1.0, help="flat memory: |slope| <= this MiB/min"
    )
    ap.add_argument("--results", type=Path, default=None, help="write serve_soak.{json,md} here")
    ap.add_argument("--json", type=Path, default=None, help="also write the record here")
    ap.add_argument("--machine-name", default=None, help="machine name in the record")
    ap.add_argument("--note", action="append", default=[], help="a note for the record")
    return ap


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.minutes is not None:
        args.seconds = args.minutes * 60.0
    for flag in ("seconds", "camera_fps", "rss_every", "window"):
        value = getattr(args, flag)
        if not (math.isfinite(value) and value > 0):
            raise SystemExit(f"--{flag.replace('_', '-')}: got {value}, expected > 0")
    if args.objects < 1:
        raise SystemExit(f"--objects: got {args.objects}, expected >= 1")
    args.machine_name = args.machine_name or machine_name()
    script = Path(__file__).resolve()
    with contextlib.suppress(ValueError):  # run from elsewhere: keep the absolute path
        script = script.relative_to(Path.cwd())
    given = list(sys.argv[1:] if argv is None else argv)
    args.command = shlex.join(["python", str(script), *given])
    logging.basicConfig(level=logging.WARNING)
    record = soak(args)
    text = json.dumps(record, indent=2) + "\n"
    print(markdown(record))
    if args.results is not None:
        write_atomic(args.results / "serve_soak.json", text)
        write_atomic(args.results / "serve_soak.md", markdown(record))
        print(f"wrote {args.results / 'serve_soak.json'} and serve_soak.md")
    if args.json is not None:
        write_atomic(args.json, text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
