"""Measure ``samedge serve`` end to end: FPS, latency and memory with a page-like client.

Starts the server (in this process, on a free port) on the synthetic 640×480
scene, keeps ``--objects`` objects tracked through the HTTP API (clicked deep
inside the largest objects in view, from the scene's ground truth; objects of
the scene leave after a few seconds, so lost ones are re-prompted each second),
connects one WebSocket client that asks for JPEG frames and masks like the
web page, and runs for ``--seconds``. Reports the pipeline's FPS (frames
processed / wall time, from ``/metrics``), end-to-end latency p50/p99 (capture
to result, from the per-frame messages), frames dropped by the capture thread,
messages the client received, and the process RSS at the start and the end.

Example:
    python benchmarks/bench_serve.py --model samedge_tiny --seconds 60 --objects 3
    python benchmarks/bench_serve.py --model /tmp/ms --backend onnxruntime --json out.json
"""

from __future__ import annotations

import argparse
import json
import logging
import resource
import sys
import threading
import time
from pathlib import Path

import httpx
import numpy as np
from websockets.sync.client import connect

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


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="samedge_tiny")
    ap.add_argument("--backend", default="auto")
    ap.add_argument("--objects", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--json", type=Path, default=None, help="also write the numbers here")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)

    config = ServeConfig(model=args.model, backend=args.backend, port=0)
    with ServerThread(config) as server:
        service = server.service
        if not service.wait_for_frame(timeout=120):
            print(f"no frame: {service.health()}", file=sys.stderr)
            return 1
        api = httpx.Client(base_url=server.url)
        synthetic = api.get("/api/info").json()["synthetic"]
        scene = MovingScene(
            seed=synthetic["seed"],
            size=(synthetic["height"], synthetic["width"]),
            num_objects=synthetic["num_objects"],
            fps=synthetic["fps"],
        )

        def reclick() -> int:
            """Keep ``--objects`` objects tracked: objects of the scene leave the view
            after a few seconds, so lost ones are re-prompted on objects in view."""
            latest = service.latest
            frame = scene.frame(latest.frame_id if latest is not None else 0)
            objects = api.get("/api/objects").json()["objects"]
            lost = [o["id"] for o in objects if o["state"] == "lost"]
            missing = args.objects - len(objects)
            boxes = [o["box"] for o in objects if o["state"] != "lost" and o["box"]]
            tracking = sum(o["state"] != "lost" for o in objects)
            clicks = [
                (x, y)
                for _, (x, y) in click_points(frame.masks, frame.ids, len(frame.ids))
                if not any(b[0] <= x <= b[2] and b[1] <= y <= b[3] for b in boxes)
            ]
            for x, y in clicks[: args.objects - tracking]:
                body = {"points": [[x, y]]}
                if lost:
                    api.put(f"/api/objects/{lost.pop()}", json=body)
                elif missing > 0:
                    api.post("/api/objects", json=body)
                    missing -= 1
            return tracking

        reclick()

        latencies: list[float] = []
        received = 0
        stop = threading.Event()

        def client() -> None:
            nonlocal received
            url = server.url.replace("http://", "ws://") + "ws?frames=1"
            with connect(url, max_size=2**24) as ws:
                while not stop.is_set():
                    try:
                        message = ws.recv(timeout=1.0)
                    except TimeoutError:
                        continue
                    if isinstance(message, str):
                        data = json.loads(message)
                        if data.get("type") == "frame" and data["latency_ms"] is not None:
                            latencies.append(data["latency_ms"])
                            received += 1

        reader = threading.Thread(target=client, name="bench-client")
        reader.start()
        time.sleep(2.0)  # let the fresh prompts settle before timing
        latencies.clear()
        received = 0
        rss0, frames0, t0 = rss_mib(), service.metrics.frames, time.perf_counter()
        dropped0 = service.metrics.dropped
        tracked: list[int] = []
        while time.perf_counter() - t0 < args.seconds:
            time.sleep(1.0)
            tracked.append(reclick())
        frames1, t1, rss1 = service.metrics.frames, time.perf_counter(), rss_mib()
        stop.set()
        reader.join()
        result = {
            "model": service.info["model"],
            "backend": service.info["backend"],
            "precision": service.info["precision"],
            "device": service.info["device"],
            "source": service.info["source"],
            "seconds": round(t1 - t0, 2),
            "objects": args.objects,
            "objects_tracked_mean": round(float(np.mean(tracked)), 2) if tracked else 0.0,
            "fps": round((frames1 - frames0) / (t1 - t0), 2),
            "latency_ms_p50": round(float(np.percentile(latencies, 50)), 1),
            "latency_ms_p99": round(float(np.percentile(latencies, 99)), 1),
            "capture_dropped": service.metrics.dropped - dropped0,
            "client_messages": received,
            "rss_mib_start": round(rss0, 1),
            "rss_mib_end": round(rss1, 1),
        }
    print(json.dumps(result, indent=2))
    if args.json is not None:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
