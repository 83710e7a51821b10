"""Meta's PyTorch video predictor beside ``samedge bench --video``: same weights, frames, prompts.

Repository tooling, not installed: ``python benchmarks/video_peer.py
benchmarks/results/<machine>/bench_video_sam2.1_hiera_tiny.json`` reads a
saved ``samedge bench --video`` report, times Meta's ``SAM2VideoPredictor``
(the ``sam2`` code of the export extra, ``edgetam-dimos``) on the same model
and weights, the same clip and the same clicks, and rewrites the report
(JSON and markdown) with its rows and the PyTorch / samedge ratios taken on
the frames both timed.

The reference is used as Meta's notebooks use it: one inference state, every
object clicked on frame 0 (``add_new_points_or_box``), then
``propagate_in_video`` over the clip; a frame's time is the time between two
of its yields (image encoder once per frame, then memory attention, decoder
and memory encoder for all objects batched, then the masks resized to the
frame: what samedge's frame times hold too). ``init_state`` reads a JPEG
folder; its frames are replaced by samedge's own square resize of the clip
(as ``exporters/_sam2_video_parity.py`` does), so both sides see the same
pixels. The weights are those of samedge's export: the random-weight
checkpoint ``samedge bench`` saved (its report names it), or the builder's
seeded random weights of a ``samedge export --random-weights`` directory.

Meta's predictor takes seconds a frame on a small CPU (SAM 2.1-T, 3 objects:
~12 s in the per-object form), so it times few frames (``--frames``, after
the same warm-up frames as samedge's rows); samedge's rows time more, and the
ratios compare medians over the frames both timed.

Each model runs in a process of its own (``worker`` below), with
``torch.set_num_threads`` set to the report's threads.

Usage:
    python benchmarks/video_peer.py REPORT.json [--frames 5] [--note TEXT]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shlex
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from samedge.bench import library_versions
from samedge.bench.records import Timing
from samedge.bench.video_report import VideoClip, VideoReport, VideoRow
from samedge.errors import InputError

__all__ = ["SAM2_ONNX_CHECK", "add_video_peer", "time_reference"]

log = logging.getLogger(__name__)

#: Why the ``sam2-onnx`` package is not timed beside samedge (what was checked, and when).
SAM2_ONNX_CHECK = (
    "sam2-onnx (PyPI, versions 0.1.3-0.3.12; checked 2026-12-02 with `pip index versions` and "
    "`pip download sam2-onnx==0.3.12 --no-deps --python-version 3.12`): not timed, it cannot "
    "track video: its package is an image predictor only (`OnnxImagePredictor`: image encoder + "
    "prompt decoder, no memory attention, memory encoder or memory bank; no mention of video or "
    "memory in its 1,289 lines), and it requires Python >= 3.12 (this environment: 3.11)"
)
_PEER = "pytorch"
_JOB_TIMEOUT_S = 3600.0


# -- inside the worker process -------------------------------------------------------


def _reference(model_info: dict[str, Any], checkpoint: str | None) -> Any:
    """Meta's SAM2VideoPredictor with samedge's weights (a checkpoint, or the seeded builder)."""
    from samedge.exporters.builders import resolve_builder
    from samedge.exporters.export import resolve_spec

    spec = resolve_spec(model_info["name"])
    builder = resolve_builder(spec)  # what the SAM 2 export builds (and the parity check)
    path = checkpoint or model_info.get("checkpoint")
    if path:
        return builder(Path(path)), spec
    seed = model_info.get("random_weights_seed")
    if seed is None:
        raise InputError(
            f"{model_info['directory']}: exported from a checkpoint the report does not name; "
            "pass it with --checkpoint so the peer runs the same weights"
        )
    return builder(None, seed=int(seed)), spec


def _images(frames: Sequence[np.ndarray], size: int, mean: Any, std: Any) -> Any:
    """The clip as Meta's loader's normalised ``[T, 3, S, S]`` tensor, from samedge's resize."""
    import torch

    from samedge.memory_predictor import resize_square

    squares = np.stack([resize_square(f, size) for f in frames]).astype(np.float32) / 255.0
    images = torch.from_numpy(squares).permute(0, 3, 1, 2)
    m = torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1) / 255.0
    s = torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1) / 255.0
    return (images - m) / s


def _bank_bytes(state: dict[str, Any]) -> int:
    """Bytes of memory features and object pointers the state holds, over all objects."""
    total = 0
    outputs = state["output_dict"]
    for kind in ("cond_frame_outputs", "non_cond_frame_outputs"):
        for out in outputs[kind].values():
            for key in ("maskmem_features", "obj_ptr"):
                t = out.get(key)
                if t is not None:
                    total += t.element_size() * t.nelement()
    return total


def _new_state(model: Any, folder: Path, images: Any, size: tuple[int, int]) -> dict[str, Any]:
    """An inference state over the clip: init_state's frames replaced by samedge's resize."""
    import torch

    with torch.inference_mode():
        state: dict[str, Any] = model.init_state(str(folder))
    state["images"] = images
    state["num_frames"] = int(images.shape[0])
    state["video_height"], state["video_width"] = size
    state["cached_features"] = {}  # init_state's were computed from its own JPEG frame
    return state


def _click(model: Any, state: dict[str, Any], oid: int, point: tuple[float, float]) -> None:
    model.add_new_points_or_box(
        state,
        frame_idx=0,
        obj_id=oid,
        points=np.asarray([point], np.float32),
        labels=np.asarray([1], np.int32),
    )


def time_reference(
    model: Any,
    spec: Any,
    clip: VideoClip,
    objects: int,
    warmup: int,
    frames: int,
    workdir: Path,
    *,
    per_object: bool = False,
) -> dict[str, Any]:
    """Track the clip's first ``objects`` objects with Meta's predictor; per-frame seconds.

    Args:
        per_object: One inference state per object, stepped together frame by
            frame, the image features computed once per frame (by the first
            object's state) and handed to the others: sam2 1.1's per-object
            tracking. False: every object in one state, batched.

    Returns:
        ``frame_s`` (the timed frames, in order), ``first_s`` (init_state and
        the clicks on frame 0), ``bank_bytes`` (memory features + pointers held,
        all objects).
    """
    import cv2

    clip_frames = clip.frames(1 + warmup + frames)
    images = _images(clip_frames, int(model.image_size), spec.pixel_mean, spec.pixel_std)
    size = clip_frames[0].shape[:2]
    folder = workdir / f"frames-{objects}"
    folder.mkdir(parents=True, exist_ok=True)
    # init_state reads a JPEG folder: one frame is enough, its frames are replaced by ours.
    cv2.imwrite(str(folder / "00000.jpg"), cv2.cvtColor(clip_frames[0], cv2.COLOR_RGB2BGR))
    prompts = list(zip(clip.object_ids[:objects], clip.points[:objects], strict=True))
    start = time.perf_counter()
    if per_object:
        states = []
        for oid, point in prompts:
            states.append(_new_state(model, folder, images, size))
            _click(model, states[-1], oid, point)
    else:
        states = [_new_state(model, folder, images, size)]
        for oid, point in prompts:
            _click(model, states[0], oid, point)
    first_s = time.perf_counter() - start
    runs = [model.propagate_in_video(state, start_frame_idx=0) for state in states]
    frame_s: list[float] = []
    for k in range(len(clip_frames)):
        begin = time.perf_counter()
        for j, run in enumerate(runs):
            if j:
                # The frame's image features, computed once by the first state.
                states[j]["cached_features"] = states[0]["cached_features"]
            frame_idx, _, _ = next(run)
            if frame_idx != k:
                raise RuntimeError(f"reference yielded frame {frame_idx}, expected {k}")
        if k > warmup:
            frame_s.append(time.perf_counter() - begin)
    return {
        "frame_s": frame_s,
        "first_s": first_s,
        "bank_bytes": sum(_bank_bytes(state) for state in states),
    }


def _peak_rss_mib() -> float | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def _worker(job: dict[str, Any]) -> dict[str, Any]:
    import torch

    torch.set_num_threads(int(job["threads"]))
    start = time.perf_counter()
    model, spec = _reference(job["model"], job.get("checkpoint"))
    build_s = time.perf_counter() - start
    clip = VideoClip.from_dict(job["clip"])
    results = {}
    per_object = False
    batch_error = None
    with tempfile.TemporaryDirectory(prefix="samedge-video-peer-") as tmp:
        for objects in job["objects"]:
            log.info("pytorch %s: %d object(s) ...", job["model"]["name"], objects)
            args = (model, spec, clip, objects, job["warmup"], job["frames"], Path(tmp))
            try:
                got = time_reference(*args, per_object=per_object)
            except RuntimeError as e:
                if per_object or objects == 1:
                    raise
                # Meta's EdgeTAM code cannot batch objects in one state (its spatial
                # perceiver views an expanded tensor); track them one state each, as
                # sam2 1.1 does, and say so in the rows.
                log.info("batched objects failed (%s); one state per object", e)
                per_object, batch_error = True, f"{type(e).__name__}: {e}"
                got = time_reference(*args, per_object=True)
            results[str(objects)] = {**got, "per_object": per_object and objects > 1}
            log.info(
                "pytorch %s: %d object(s): median %.0f ms",
                job["model"]["name"], objects, 1e3 * np.median(results[str(objects)]["frame_s"]),
            )  # fmt: skip
    return {
        "results": results,
        "build_s": build_s,
        "peak_rss_mib": _peak_rss_mib(),
        "batch_error": batch_error,
    }


# -- the parent ----------------------------------------------------------------------


def _note(got: dict[str, Any], result: dict[str, Any]) -> str:
    if got.get("per_object"):
        how = (
            "one inference state per object stepped together, the frame's image features "
            "computed once and shared (sam2 1.1's per-object tracking), because batching the "
            f"objects in one state fails in Meta's code here ({result.get('batch_error')})"
        )
    else:
        how = "one inference state, the objects batched"
    return (
        f"Meta's SAM2VideoPredictor, propagate_in_video, {how}; model built in "
        f"{result['build_s']:.1f} s; first frame s = init_state and the clicks; memory = "
        "maskmem_features (bfloat16) + obj_ptr of every frame so far (it keeps every "
        "frame's: grows with the video)"
    )


def _run_worker(job: dict[str, Any], timeout_s: float) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="samedge-video-peer-job-") as tmp:
        job_path, out_path = Path(tmp) / "job.json", Path(tmp) / "result.json"
        job_path.write_text(json.dumps(job), encoding="utf-8")
        env = {**os.environ, "TQDM_DISABLE": "1"}
        cmd = [
            sys.executable,
            str(Path(__file__).resolve()),
            "worker",
            str(job_path),
            str(out_path),
        ]
        try:
            proc = subprocess.run(
                cmd, env=env, capture_output=True, text=True, timeout=timeout_s, check=False
            )
        except subprocess.TimeoutExpired:
            return {"error": f"timed out after {timeout_s:.0f} s"}
        for line in proc.stderr.splitlines():
            log.debug("worker: %s", line)
        if out_path.is_file():
            return dict(json.loads(out_path.read_text(encoding="utf-8")))
        tail = [ln for ln in proc.stderr.strip().splitlines() if ln.strip()][-3:]
        return {"error": f"worker exited with code {proc.returncode}: {' | '.join(tail)}"}


def add_video_peer(
    report: VideoReport,
    *,
    frames: int = 5,
    checkpoint: str | None = None,
    command: str | None = None,
    notes: Sequence[str] = (),
    timeout_s: float = _JOB_TIMEOUT_S,
) -> VideoReport:
    """``report`` with Meta's predictor timed on its models, clip and object counts.

    Raises:
        InputError: ``frames`` < 1.
    """
    if isinstance(frames, bool) or not isinstance(frames, int) or frames < 1:
        raise InputError(f"frames: got {frames!r}, expected an int >= 1")
    settings = report.settings
    warmup, threads = int(settings["warmup"]), int(settings["threads"])
    objects = [int(b) for b in settings["objects"]]
    rows: list[VideoRow] = []
    failures = list(report.failures)
    for model in report.models:
        what = f"{model['name']} pytorch SAM2VideoPredictor"
        job = {
            "model": model,
            "checkpoint": checkpoint,
            "clip": report.clip.to_dict(),
            "objects": objects,
            "warmup": warmup,
            "frames": frames,
            "threads": threads,
        }
        log.info("video peer: %s (%d frames after %d warm-up) ...", what, frames, warmup)
        result = _run_worker(job, timeout_s)
        if result.get("error"):
            failures.append({"what": what, "error": str(result["error"])})
            continue
        for b in objects:
            got = result["results"][str(b)]
            rows.append(
                VideoRow(
                    suite=_PEER,
                    model=model["name"],
                    backend="torch",
                    precision="fp32",
                    objects=b,
                    total=Timing.from_seconds(got["frame_s"]),
                    frame_ms=tuple(1e3 * s for s in got["frame_s"]),
                    first_frame=1 + warmup,
                    memory_bytes_per_object=int(got["bank_bytes"]) // b,
                    threads=threads,
                    peak_rss_mib=result.get("peak_rss_mib"),
                    build_s=got["first_s"],
                    note=_note(got, result),
                )
            )
    versions = dict(report.versions)
    try:
        import importlib.metadata

        versions["edgetam-dimos"] = importlib.metadata.version("edgetam-dimos")
    except importlib.metadata.PackageNotFoundError:
        pass
    versions.update({k: v for k, v in library_versions().items() if k not in versions})
    skipped = [*report.skipped, SAM2_ONNX_CHECK]
    settings = {**settings, "peer_frames": frames}
    return report.with_rows(
        rows,
        command=command,
        failures=tuple(failures),
        skipped=tuple(dict.fromkeys(skipped)),
        versions=versions,
        settings=settings,
        notes=(*report.notes, *notes),
    )


def main(argv: Sequence[str] | None = None) -> int:
    """``python benchmarks/video_peer.py REPORT.json [--frames N]`` (or ``worker JOB OUT``)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["worker"]:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
        job = json.loads(Path(argv[1]).read_text(encoding="utf-8"))
        try:
            result = _worker(job)
            code = 0
        except Exception as e:  # reported to the parent, which records it
            log.debug("failed", exc_info=True)
            result, code = {"error": f"{type(e).__name__}: {e}"}, 1
        Path(argv[2]).write_text(json.dumps(result), encoding="utf-8")
        return code
    parser = argparse.ArgumentParser(
        prog="python benchmarks/video_peer.py",
        description="time Meta's SAM2VideoPredictor beside a saved `samedge bench --video` report",
    )
    parser.add_argument("report", type=Path, help="a bench_video_*.json written by samedge bench")
    parser.add_argument("--frames", type=int, default=5, help="timed frames per object count")
    parser.add_argument(
        "--checkpoint", help="the checkpoint a model directory was exported from (if not random)"
    )
    parser.add_argument("--note", action="append", default=[], help="a line for the report")
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO, format="%(name)s: %(message)s"
    )
    try:
        report = add_video_peer(
            VideoReport.load(args.report),
            frames=args.frames,
            checkpoint=args.checkpoint,
            command=shlex.join(["python", "benchmarks/video_peer.py", *argv]),
            notes=args.note,
        )
    except InputError as e:
        sys.stderr.write(f"video_peer: error: {e}\n")
        return 1
    paths = report.save(args.report.parent, args.report.stem)
    for r in report.peer_ratios():
        sys.stdout.write(
            f"{r.model} {r.objects} object(s), frames {r.frames[0]}-{r.frames[1]}: pytorch "
            f"{r.peer_ms:.0f} ms / samedge {r.backend} {r.precision} {r.samedge_ms:.0f} ms = "
            f"{r.ratio:.2f}x\n"
        )
    for failure in report.failures:
        sys.stderr.write(f"FAILED {failure['what']}: {failure['error']}\n")
    sys.stdout.write("wrote " + ", ".join(str(p) for p in paths.values()) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
