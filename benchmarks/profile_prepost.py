"""What pre- and post-processing cost per frame, next to the encoder and decoder.

For each model directory, frame size and resize mode (``exact``: PIL's
bilinear as SamPredictor; ``fast``: OpenCV), one process times, interleaved:

* ``preprocess``: validate + resize + pad into the encoder's input
  (:func:`samedge.preprocess.preprocess_image`);
* ``encoder``: the encoder graph alone;
* ``decoder``: the decoder graph alone (``Predictor.predict_low_res``);
* ``postprocess``: upsampling the kept masks to the frame and thresholding
  (:func:`samedge.postprocess.postprocess_masks`);
* ``frame``: the public calls a stream makes per frame,
  ``set_image`` + ``predict_batch`` (multimask off).

    python benchmarks/profile_prepost.py --model samedge_tiny --model work/mobile_sam \\
        --frames 640x480,1280x720 --objects 1,16 --runs 15 \\
        --output benchmarks/results/<machine>/prepost.md

Repository tooling (not installed with samedge).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import shlex
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

from samedge.postprocess import postprocess_masks
from samedge.predictor import Predictor
from samedge.preprocess import Resample, preprocess_image
from samedge.prompts import ObjectPrompt

STAGES = ("preprocess", "encoder", "decoder", "postprocess", "frame")
#: mode -> (frame resize, mask upsampling); "numpy" is "exact" without Pillow.
MODES = {
    "numpy": (Resample.EXACT, Resample.EXACT),
    "exact": (Resample.EXACT, Resample.EXACT),
    "exact+fast-masks": (Resample.EXACT, Resample.FAST),
    "fast": (Resample.FAST, Resample.FAST),
}


@contextlib.contextmanager
def _without_pillow(active: bool) -> Iterator[None]:
    """EXACT resize through the numpy re-implementation, as where Pillow is not installed."""
    if not active:
        yield
        return
    import samedge.preprocess as preprocess

    saved = preprocess._resize_pillow
    preprocess._resize_pillow = lambda *args: None  # type: ignore[assignment]
    try:
        yield
    finally:
        preprocess._resize_pillow = saved


def _frame(width: int, height: int) -> np.ndarray:
    rng = np.random.default_rng(0)
    # Smooth content (as camera frames), not white noise: resize cost does not
    # depend on it, but masks and thresholds see realistic logits.
    small = rng.integers(0, 256, (height // 16 + 1, width // 16 + 1, 3), dtype=np.uint8)
    import cv2

    return np.ascontiguousarray(cv2.resize(small, (width, height), interpolation=cv2.INTER_CUBIC))


def _prompts(count: int, width: int, height: int) -> list[ObjectPrompt]:
    rng = np.random.default_rng(1)
    xy = rng.uniform((0, 0), (width, height), (count, 2))
    return [ObjectPrompt(point_coords=p[None], point_labels=np.array([1])) for p in xy]


def _measure(
    predictor: Predictor,
    frame: np.ndarray,
    objects: list[int],
    runs: int,
    clock: Callable[[], float],
) -> dict[str, dict[int, list[float]]]:
    height, width = frame.shape[:2]
    card = predictor.card
    times: dict[str, dict[int, list[float]]] = {s: {n: [] for n in objects} for s in STAGES}
    prompts = {n: _prompts(n, width, height) for n in objects}
    encoder = predictor._encoder  # timing the graph alone
    for i in range(runs + 1):
        for n in objects:
            t0 = clock()
            x, _ = preprocess_image(
                frame, card.image_size, card.pixel_mean, "RGB", None, predictor.resample
            )
            t1 = clock()
            encoder.infer({"image": x})
            t2 = clock()
            predictor.set_image(frame)
            t3 = clock()
            _, low_res = predictor.predict_low_res(prompts[n], multimask_output=False)
            t4 = clock()
            postprocess_masks(
                low_res,
                predictor._upsample_size,
                predictor.input_size,
                predictor.original_size,
                exact=predictor.mask_resample is Resample.EXACT,
            )
            t5 = clock()
            predictor.predict_batch(prompts[n], multimask_output=False)
            t6 = clock()
            if i == 0:
                continue  # warm-up
            times["preprocess"][n].append((t1 - t0) * 1e3)
            times["encoder"][n].append((t2 - t1) * 1e3)
            times["decoder"][n].append((t4 - t3) * 1e3)
            times["postprocess"][n].append((t5 - t4) * 1e3)
            times["frame"][n].append(((t3 - t2) + (t6 - t5)) * 1e3)
    return times


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", action="append", required=True, help="model directory or name")
    parser.add_argument("--backend", default="auto")
    parser.add_argument("--frames", default="640x480,1280x720")
    parser.add_argument("--objects", default="1,16")
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--output", type=Path, help="markdown file (a .json beside it)")
    parser.add_argument(
        "--clock",
        choices=("wall", "cpu"),
        default="wall",
        help="wall time, or this process's CPU time with one thread everywhere (OpenCV and "
        "the backend): what each stage costs, on a machine others are using",
    )
    args = parser.parse_args(argv)
    config = None
    clock = time.perf_counter
    if args.clock == "cpu":
        import cv2

        from samedge.runtimes.ov import OpenVinoConfig

        if args.backend != "openvino":
            parser.error("--clock cpu: use --backend openvino (its thread count is set to 1)")
        cv2.setNumThreads(1)
        config = OpenVinoConfig(num_threads=1)
        clock = time.process_time
    frames = [tuple(int(v) for v in f.split("x")) for f in args.frames.split(",")]
    objects = [int(n) for n in args.objects.split(",")]
    started = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    load_start = os.getloadavg()[0]

    record: list[dict[str, object]] = []
    lines_rows: list[str] = []
    for model in args.model:
        predictors = {
            mode: Predictor(
                model,
                backend=args.backend,
                resample=frames_by,
                mask_resample=masks_by,
                config=config,
            )
            for mode, (frames_by, masks_by) in MODES.items()
        }
        first = predictors["exact"]
        name, backend = first.card.model, f"{first.backend_name} {first.precision}"
        for width, height in frames:
            frame = _frame(width, height)
            for mode, predictor in predictors.items():
                with _without_pillow(mode == "numpy"):
                    times = _measure(predictor, frame, objects, args.runs, clock)
                for n in objects:
                    med = {s: statistics.median(times[s][n]) for s in STAGES}
                    share = (med["preprocess"] + med["postprocess"]) / med["frame"]
                    lines_rows.append(
                        f"| {name} | {backend} | {width}×{height} | {mode} | {n} | "
                        + " | ".join(f"{med[s]:.2f}" for s in STAGES)
                        + f" | {100 * share:.0f}% |"
                    )
                    record.append(
                        {
                            "model": name,
                            "backend": backend,
                            "frame": [width, height],
                            "mode": mode,
                            "objects": n,
                            "median_ms": med,
                            "times_ms": {s: times[s][n] for s in STAGES},
                        }
                    )
        for p in predictors.values():
            p.close()
    load_end = os.getloadavg()[0]
    command = " ".join(
        shlex.quote(a)
        for a in ["benchmarks/profile_prepost.py", *(argv if argv is not None else sys.argv[1:])]
    )
    lines = [
        "# Pre- and post-processing per frame",
        "",
        f"`python {command}` ({started})",
        "",
        f"- {os.cpu_count()} logical CPUs; 1-min load average {load_start:.2f} at the start, "
        f"{load_end:.2f} at the end",
        f"- medians of {args.runs} runs after one warm-up, in ms of {args.clock} time"
        + (" (one thread everywhere)" if args.clock == "cpu" else "")
        + "; stages interleaved in one loop",
        "- frame = `set_image` + `predict_batch(multimask_output=False)`, what a stream calls "
        "per frame; pre+post share = (preprocess + postprocess) / frame",
        "- modes: `numpy` EXACT resize by the numpy re-implementation (no Pillow) + exact masks; "
        "`exact` EXACT resize by Pillow + exact masks (the default); `exact+fast-masks` "
        "`mask_resample=FAST`; `fast` `resample=FAST` (OpenCV resize, one-step masks)",
        "",
        "| model | backend | frame | mode | objects | "
        + " | ".join(STAGES)
        + " | pre+post share |",
        "| --- | --- | --- | --- | --- | " + " | ".join("---" for _ in STAGES) + " | --- |",
        *lines_rows,
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.output:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(text)
        args.output.with_suffix(".json").write_text(
            json.dumps(
                {
                    "started": started,
                    "argv": sys.argv,
                    "load": [load_start, load_end],
                    "rows": record,
                },
                indent=1,
            )
            + "\n"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
