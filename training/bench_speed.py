"""Latency of the shipped samedge-tiny graphs on ONNX Runtime and OpenVINO (CPU).

    python training/bench_speed.py [--threads 2] [--runs 200]

Prints the median and 90th percentile of the encoder and of the decoder for 1
and 8 objects (one positive click plus SAM's padding point each), in ms.
A benchmark, not a test: numbers depend on the machine and its load.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np

from samedge import graph_names
from samedge.model_dir import read_model_dir
from samedge.predictor import resolve_model


def _time(fn, runs: int) -> tuple[float, float]:
    for _ in range(10):
        fn()
    ts = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        ts.append((time.perf_counter() - t) * 1000)
    ts.sort()
    return statistics.median(ts), ts[int(0.9 * (len(ts) - 1))]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--runs", type=int, default=200)
    ap.add_argument("--model", default="samedge_tiny")
    args = ap.parse_args()
    from samedge.runtimes import OpenVinoBackend, OpenVinoConfig, OrtBackend, OrtConfig

    directory = Path(resolve_model(args.model))
    card = read_model_dir(directory)
    S, G = card.image_size, card.embedding_shape[1]
    backends = {
        "onnxruntime": lambda p: OrtBackend(p, OrtConfig(intra_op_threads=args.threads)),
        "openvino": lambda p: OpenVinoBackend(p, OpenVinoConfig(num_threads=args.threads)),
    }
    rng = np.random.default_rng(0)
    image = rng.uniform(0, 255, (1, 3, S, S)).astype(np.float32)
    for name, make in backends.items():
        enc = make(directory / "encoder.onnx")
        dec = make(directory / "decoder.onnx")
        emb = enc.infer({graph_names.IMAGE: image})[graph_names.IMAGE_EMBEDDINGS]
        med, p90 = _time(lambda: enc.infer({graph_names.IMAGE: image}), args.runs)  # noqa: B023
        print(f"{name:<12} encoder          {med:6.2f} ms (p90 {p90:.2f})")
        for b in (1, 8):
            coords = np.zeros((b, 2, 2), np.float32)
            coords[:, 0] = rng.uniform(0, S, (b, 2))
            labels = np.tile(np.array([[1, -1]], np.float32), (b, 1))
            feeds = {
                graph_names.IMAGE_EMBEDDINGS: emb,
                graph_names.POINT_COORDS: coords,
                graph_names.POINT_LABELS: labels,
                graph_names.MASK_INPUT: np.zeros((b, 1, 4 * G, 4 * G), np.float32),
                graph_names.HAS_MASK_INPUT: np.zeros((b,), np.float32),
            }
            med, p90 = _time(lambda: dec.infer(feeds), args.runs)  # noqa: B023
            label = f"decoder {b} obj{'s' if b > 1 else ''}"
            print(f"{name:<12} {label:<16} {med:6.2f} ms (p90 {p90:.2f})")
        enc.close()
        dec.close()


if __name__ == "__main__":
    main()
