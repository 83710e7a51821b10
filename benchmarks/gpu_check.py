"""GPU check for the TensorRT backend's CUDA side, for a machine with an NVIDIA GPU but no TensorRT.

TensorRT cannot be installed on samedge's development machines, so most of the
TensorRT backend has only run against a fake ``tensorrt``. This script runs
everything that can run on a GPU *without* TensorRT, on real CUDA memory,
streams and threads, and prints PASS / FAIL / SKIP per step:

1. ``versions``: Python, numpy, ONNX Runtime, PyTorch and its CUDA, cuda-bindings,
   the driver's and runtime's CUDA versions, the GPU (name, compute capability,
   integrated or not, memory).
2. ``gpu tests``: the ``gpu``-marked tests of ``tests/runtimes`` (pytest, in a
   subprocess; the ones also marked ``tensorrt`` skip without TensorRT).
3. ``interop``: a PyTorch CUDA tensor copied device-to-device into samedge's
   buffer on samedge's (non-blocking) stream and back; the current device before
   and after :meth:`CudaMemory.activate` (on a machine with two GPUs it checks
   that activating GPU 0 from a thread on GPU 1 leaves the thread on GPU 1).
4. ``fake-trt backend``: :class:`TensorRTBackend` on real CUDA memory through
   the test suite's fake ``tensorrt`` (tests/runtimes/_fake_trt.py), whose
   ``execute_async_v3`` copies between the addresses the backend set, on the
   backend's stream; 300 calls with random B and N compared with ONNX Runtime;
   after ``close()`` the memory layer's tables are empty and the GPU's free
   memory is back where it was.
5. ``threads``: 4 threads x 50 calls on one backend, every result checked.
6. ``close during infer``: in a subprocess (a use-after-free crashes it, it
   cannot take this process down), ``close()`` from one thread while another
   calls ``infer()`` in a loop with the GPU kept busy; the child must exit 0.

On a machine without an NVIDIA GPU it prints one ``SKIP`` line and exits 0.
Exit status: 0 when no step failed, 1 otherwise. It needs no network and no
model weights; the graph is a tiny identity graph written by this script.
Not yet run on hardware; expected to take a few minutes, and every subprocess
has a timeout, so it ends within 10.

Example::

    python benchmarks/gpu_check.py
    python benchmarks/gpu_check.py --save benchmarks/results/h200/gpu_check.txt
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import importlib
import importlib.metadata
import importlib.util
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # the fake tensorrt lives in the test suite
    sys.path.insert(0, str(REPO))

CALLS = 300
THREADS, THREAD_CALLS = 4, 50
MAX_OBJECTS, MAX_POINTS = 16, 10
# cudaMemGetInfo after close() may differ by the driver's allocation granularity.
FREE_MEMORY_SLACK = 8 << 20
TEST_TIMEOUT_S = 360
CHILD_TIMEOUT_S = 120


# -- reporting -----------------------------------------------------------------------


class Report:
    """PASS / FAIL / SKIP lines, printed as they come and kept for ``--save``."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.failed = 0

    def say(self, line: str) -> None:
        print(line, flush=True)
        self.lines.append(line)

    def step(self, name: str, fn: Callable[[], str]) -> None:
        start = time.perf_counter()
        try:
            detail = fn()
        except StepSkippedError as e:
            self.say(f"SKIP {name}: {e}")
            return
        except Exception as e:  # every failure is reported, and the next step still runs
            self.failed += 1
            self.say(f"FAIL {name}: {type(e).__name__}: {e}")
            for line in traceback.format_exc().rstrip().splitlines():
                self.say(f"     {line}")
            return
        self.say(f"PASS {name} ({time.perf_counter() - start:.1f} s): {detail}")


class StepSkippedError(Exception):
    """A step that cannot run here (a missing optional package), with the reason."""


def check(condition: bool, message: str) -> None:
    if not condition:
        raise AssertionError(message)


# -- the graph: Identity copies, written without the onnx package ---------------------


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _field(number: int, payload: bytes | str | int) -> bytes:
    if isinstance(payload, int):
        return _varint(number << 3) + _varint(payload)
    data = payload.encode() if isinstance(payload, str) else payload
    return _varint(number << 3 | 2) + _varint(len(data)) + data


def _value_info(name: str, dims: tuple[str | int, ...]) -> bytes:
    shape = b"".join(_field(1, _field(1, d) if isinstance(d, int) else _field(2, d)) for d in dims)
    tensor_type = _field(1, 1) + _field(2, shape)  # elem_type FLOAT, shape
    return _field(1, name) + _field(2, _field(1, tensor_type))


def identity_model_bytes() -> bytes:
    """The identity graph: ``coords_out = point_coords``, ``labels_out = point_labels``.

    The same graph as tests/runtimes/_fake_trt.py's ``make_graph(kind="identity")``,
    encoded by hand (onnx.proto3 field numbers) so this script needs no ``onnx``.
    """
    nodes = [
        _field(1, "point_coords") + _field(2, "coords_out") + _field(4, "Identity"),
        _field(1, "point_labels") + _field(2, "labels_out") + _field(4, "Identity"),
    ]
    graph = (
        b"".join(_field(1, n) for n in nodes)
        + _field(2, "tiny_decoder")
        + _field(11, _value_info("point_coords", ("B", "N", 2)))
        + _field(11, _value_info("point_labels", ("B", "N")))
        + _field(12, _value_info("coords_out", ("B", "N", 2)))
        + _field(12, _value_info("labels_out", ("B", "N")))
    )
    opset = _field(1, "") + _field(2, 13)
    return _field(1, 8) + _field(7, graph) + _field(8, opset)  # ir_version 8


COPIES = {"coords_out": "point_coords", "labels_out": "point_labels"}


def random_feeds(rng: np.random.Generator) -> dict[str, np.ndarray]:
    b = int(rng.integers(1, MAX_OBJECTS + 1))
    n = int(rng.integers(1, MAX_POINTS + 1))
    return {
        "point_coords": (rng.random((b, n, 2)) * 1024).astype(np.float32),
        "point_labels": rng.integers(-1, 4, size=(b, n)).astype(np.float32),
    }


# -- CUDA helpers ----------------------------------------------------------------------


def cudart() -> Any:
    try:
        from cuda.bindings import runtime
    except ImportError as e:
        raise StepSkippedError(
            f"cuda-bindings is not installed ({e}); `pip install cuda-python`"
        ) from e
    return runtime


def cuda_ok(result: Any, what: str) -> Any:
    err = result[0]
    if int(err) != 0:
        raise RuntimeError(f"{what} failed with {err}")
    values = result[1:]
    return values[0] if len(values) == 1 else (values or None)


def free_memory() -> int:
    rt = cudart()
    free, _total = cuda_ok(rt.cudaMemGetInfo(), "cudaMemGetInfo")
    return int(free)


def copy_executor(busy_bytes: int = 0, pause_s: float = 0.0) -> Callable[[Any, int], None]:
    """``execute_async_v3`` for the fake: device-to-device copies input -> output on ``stream``.

    ``busy_bytes`` > 0 first queues a copy of that size between two scratch buffers,
    so the real copies are still in flight when the call returns (the race check);
    ``pause_s`` sleeps while holding the addresses.
    """
    rt = cudart()
    d2d = rt.cudaMemcpyKind.cudaMemcpyDeviceToDevice
    scratch: list[int] = []

    def execute(context: Any, stream: int) -> None:
        if busy_bytes and not scratch:
            scratch.extend(cuda_ok(rt.cudaMalloc(busy_bytes), "cudaMalloc") for _ in range(2))
        if scratch:
            cuda_ok(
                rt.cudaMemcpyAsync(scratch[1], scratch[0], busy_bytes, d2d, stream), "busy copy"
            )
        for out, src in COPIES.items():
            shape = context.shapes[src]
            nbytes = int(np.prod(shape)) * 4
            cuda_ok(
                rt.cudaMemcpyAsync(
                    context.addresses[out], context.addresses[src], nbytes, d2d, stream
                ),
                "cudaMemcpyAsync(device->device)",
            )
        if pause_s:
            time.sleep(pause_s)

    return execute


@contextlib.contextmanager
def fake_tensorrt(executor: Callable[[Any, int], None]) -> Iterator[dict[str, Any]]:
    """Install the test suite's fake ``tensorrt`` (with ``executor``) for the block."""
    from samedge.runtimes import _trt_build
    from tests.runtimes._fake_trt import fake_tensorrt as make_fake

    record: dict[str, Any] = {}
    saved = sys.modules.get("tensorrt")
    sys.modules["tensorrt"] = make_fake("10.13.0.35", record, executor)
    _trt_build._LOGGER = None
    try:
        yield record
    finally:
        if saved is None:
            sys.modules.pop("tensorrt", None)
        else:
            sys.modules["tensorrt"] = saved
        _trt_build._LOGGER = None


def open_backend(model: Path, cache: Path) -> Any:
    from samedge.runtimes.cuda_mem import CudaApi
    from samedge.runtimes.trt import TensorRTBackend, TensorRTConfig

    cfg = TensorRTConfig(
        max_objects=MAX_OBJECTS,
        max_points=MAX_POINTS,
        cache_dir=cache,
        cuda_api=CudaApi.CUDA_PYTHON,
    )
    return TensorRTBackend(model, cfg, device="cuda:0")


def tables(mem: Any) -> dict[str, int]:
    return {"host": len(mem._host), "device": len(mem._device), "streams": len(mem._streams)}


# -- the steps --------------------------------------------------------------------------


def step_versions() -> str:
    parts = [f"python {platform.python_version()}", f"numpy {np.__version__}"]
    for dist in ("samedge", "onnxruntime", "cuda-bindings", "cuda-python", "torch", "onnx"):
        try:
            parts.append(f"{dist} {importlib.metadata.version(dist)}")
        except importlib.metadata.PackageNotFoundError:
            parts.append(f"{dist} -")
    with contextlib.suppress(ImportError):
        import torch

        parts.append(f"torch.cuda {torch.version.cuda} available={torch.cuda.is_available()}")
    try:
        real = hasattr(importlib.import_module("tensorrt"), "Builder")  # not just its stubs
    except ImportError:
        real = False
    parts.append("TensorRT installed (the fake is used anyway)" if real else "no TensorRT")
    rt = cudart()
    driver = cuda_ok(rt.cudaDriverGetVersion(), "cudaDriverGetVersion")
    runtime = cuda_ok(rt.cudaRuntimeGetVersion(), "cudaRuntimeGetVersion")
    parts.append(f"driver CUDA {driver // 1000}.{driver % 1000 // 10}")
    parts.append(f"runtime CUDA {runtime // 1000}.{runtime % 1000 // 10}")
    from samedge.runtimes.cuda_mem import CudaApi, get_cuda_memory

    mem = get_cuda_memory(CudaApi.CUDA_PYTHON, 0)
    try:
        major, minor = mem.compute_capability()
        parts.append(
            f"GPU 0 {mem.device_name()} sm_{major}{minor} "
            f"{'integrated' if mem.is_integrated() else 'discrete'} "
            f"{mem.total_memory() / 2**30:.0f} GiB, "
            f"{cuda_ok(rt.cudaGetDeviceCount(), 'cudaGetDeviceCount')} GPU(s)"
        )
    finally:
        mem.close()
    return "; ".join(parts)


def step_gpu_tests() -> str:
    if importlib.util.find_spec("pytest") is None:
        raise StepSkippedError("pytest is not installed")
    cmd = [sys.executable, "-m", "pytest", "-q", "-m", "gpu", "-p", "no:cacheprovider"]
    cmd.append(str(REPO / "tests" / "runtimes"))
    proc = subprocess.run(
        cmd, cwd=REPO, capture_output=True, text=True, timeout=TEST_TIMEOUT_S, check=False
    )
    tail = (proc.stdout + proc.stderr).strip().splitlines()
    summary = tail[-1] if tail else "no output"
    check(
        proc.returncode == 0,
        f"pytest exited {proc.returncode}: {summary}\n" + "\n".join(tail[-40:]),
    )
    check(" passed" in summary, f"no gpu test ran: {summary}")
    return summary


def step_interop() -> str:
    try:
        import torch
    except ImportError as e:
        raise StepSkippedError(f"PyTorch is not installed ({e})") from e
    if not torch.cuda.is_available():
        raise StepSkippedError("PyTorch has no CUDA device")
    from samedge.runtimes.cuda_mem import CudaApi, get_cuda_memory

    rt = cudart()
    d2d = rt.cudaMemcpyKind.cudaMemcpyDeviceToDevice
    mem = get_cuda_memory(CudaApi.CUDA_PYTHON, 0)
    notes = []
    try:
        stream = mem.create_stream()
        flags = cuda_ok(rt.cudaStreamGetFlags(stream), "cudaStreamGetFlags")
        check(
            int(flags) == int(rt.cudaStreamNonBlocking), f"stream flags {flags}, not non-blocking"
        )
        source = torch.randn(3, 1000, 257, device="cuda:0")
        nbytes = source.numel() * source.element_size()
        device = mem.alloc_device(nbytes)
        host = mem.alloc_host(nbytes)
        # PyTorch queued the randn on its own stream; samedge's non-blocking stream does
        # not wait for it, so the caller synchronizes PyTorch's first (what users must do).
        torch.cuda.current_stream().synchronize()
        with mem.activate():
            cuda_ok(rt.cudaMemcpyAsync(device, source.data_ptr(), nbytes, d2d, stream), "d2d in")
            mem.memcpy_dtoh_async(host, device, stream)
            mem.synchronize(stream)
        got = host.view(np.float32).reshape(source.shape)
        check(np.array_equal(got, source.cpu().numpy()), "torch -> samedge copy differs")
        back = torch.empty_like(source)
        with mem.activate():
            cuda_ok(rt.cudaMemcpyAsync(back.data_ptr(), device, nbytes, d2d, stream), "d2d out")
            mem.synchronize(stream)
        check(torch.equal(back, source), "samedge -> torch copy differs")
        notes.append(f"{nbytes / 2**20:.1f} MiB both ways on a non-blocking stream")

        count = int(cuda_ok(rt.cudaGetDeviceCount(), "cudaGetDeviceCount"))
        caller = 1 if count > 1 else 0
        torch.cuda.set_device(caller)
        before = (int(cuda_ok(rt.cudaGetDevice(), "cudaGetDevice")), torch.cuda.current_device())
        with mem.activate():
            inside = int(cuda_ok(rt.cudaGetDevice(), "cudaGetDevice"))
        after = (int(cuda_ok(rt.cudaGetDevice(), "cudaGetDevice")), torch.cuda.current_device())
        check(inside == 0, f"inside activate() the device is {inside}, not 0")
        check(before == after == (caller, caller), f"device before {before}, after {after}")
        notes.append(
            f"current device {before} -> activate(GPU 0) -> {after}"
            + ("" if count > 1 else " (one GPU: the restore is not exercised)")
        )
        mem.free_device(device)
        mem.free_host(host)
        mem.destroy_stream(stream)
    finally:
        mem.close()
    return "; ".join(notes)


def step_backend(work: Path) -> str:
    import onnxruntime as ort

    from samedge.runtimes.cuda_mem import CudaPythonMemory

    work.mkdir(parents=True, exist_ok=True)
    model = work / "identity.onnx"
    model.write_bytes(identity_model_bytes())
    session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    warm = CudaPythonMemory(0)  # the primary context exists before the baseline
    warm.close()
    free_before = free_memory()
    rng = np.random.default_rng(0)
    with fake_tensorrt(copy_executor()) as record:
        backend = open_backend(model, work / "cache")
        backend.load()
        mem = backend._mem
        check(tables(mem)["device"] == 4, f"expected 4 buffers at load, got {tables(mem)}")
        allocated = tables(mem)
        for i in range(CALLS):
            feeds = random_feeds(rng)
            got = backend.infer(feeds)
            want = dict(zip(["coords_out", "labels_out"], session.run(None, feeds), strict=True))
            for name, value in want.items():
                check(np.array_equal(got[name], value), f"call {i}: {name} differs from ORT")
        check(tables(mem) == allocated, f"buffers changed during calls: {tables(mem)}")
        backend.close()
    left = tables(mem)
    check(left == {"host": 0, "device": 0, "streams": 0}, f"left after close(): {left}")
    free_after = free_memory()
    check(
        free_after >= free_before - FREE_MEMORY_SLACK,
        f"free memory {free_before / 2**20:.0f} MiB before, {free_after / 2**20:.0f} MiB after",
    )
    check(record["executions"] == CALLS, f"{record['executions']} executions for {CALLS} calls")
    return (
        f"{CALLS} calls, B 1..{MAX_OBJECTS} x N 1..{MAX_POINTS}, equal to ONNX Runtime; "
        f"tables empty after close(); free memory {free_before / 2**20:.0f} -> "
        f"{free_after / 2**20:.0f} MiB"
    )


def step_threads(work: Path) -> str:
    work.mkdir(parents=True, exist_ok=True)
    model = work / "identity.onnx"
    model.write_bytes(identity_model_bytes())
    errors: list[str] = []
    with fake_tensorrt(copy_executor()) as record:
        backend = open_backend(model, work / "cache")
        backend.load()

        def worker(seed: int) -> None:
            rng = np.random.default_rng(seed)
            try:
                for i in range(THREAD_CALLS):
                    feeds = random_feeds(rng)
                    got = backend.infer(feeds)
                    for out, src in COPIES.items():
                        if not np.array_equal(got[out], feeds[src]):
                            errors.append(f"thread {seed} call {i}: {out} differs")
            except Exception as e:
                errors.append(f"thread {seed}: {type(e).__name__}: {e}")

        threads = [threading.Thread(target=worker, args=(s,)) for s in range(THREADS)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=CHILD_TIMEOUT_S)
        check(not any(t.is_alive() for t in threads), "a thread did not finish")
        backend.close()
    check(not errors, "; ".join(errors[:5]))
    total = THREADS * THREAD_CALLS
    check(record["executions"] == total, f"{record['executions']} executions for {total} calls")
    return f"{THREADS} threads x {THREAD_CALLS} calls on one backend, every result right"


def step_close_race() -> str:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child-close-race"]
    proc = subprocess.run(
        cmd, cwd=REPO, capture_output=True, text=True, timeout=CHILD_TIMEOUT_S, check=False
    )
    out = (proc.stdout + proc.stderr).strip()
    check(proc.returncode == 0, f"child exited {proc.returncode} (negative: a signal)\n{out}")
    lines = [ln for ln in out.splitlines() if ln.startswith("CHILD OK")]
    check(bool(lines), f"child printed no result\n{out}")
    return lines[-1].removeprefix("CHILD OK ")


def child_close_race() -> int:
    """Loop infer() in a thread, close() from this one while the GPU is busy; report."""
    from samedge.errors import BackendError

    with tempfile.TemporaryDirectory(prefix="samedge-gpu-check-") as tmp:
        work = Path(tmp)
        model = work / "identity.onnx"
        model.write_bytes(identity_model_bytes())
        # 256 MiB busy copy + a pause inside execute: the close() lands mid-call.
        with fake_tensorrt(copy_executor(busy_bytes=256 << 20, pause_s=0.002)):
            backend = open_backend(model, work / "cache")
            backend.load()
            mem = backend._mem
            closed = threading.Event()
            stats = {"calls": 0, "after_close_errors": 0, "wrong": 0}

            def loop() -> None:
                rng = np.random.default_rng(1)
                while True:
                    feeds = random_feeds(rng)
                    try:
                        got = backend._infer(feeds)  # no reload: the engine itself is raced
                    except BackendError as e:
                        if closed.is_set() or "after close" in str(e):
                            stats["after_close_errors"] += 1
                            return
                        raise
                    stats["calls"] += 1
                    for out, src in COPIES.items():
                        if not np.array_equal(got[out], feeds[src]):
                            stats["wrong"] += 1

            thread = threading.Thread(target=loop)
            thread.start()
            time.sleep(0.5)
            backend.close()
            closed.set()
            thread.join(timeout=60)
            if thread.is_alive():
                print("CHILD FAIL the infer thread did not stop", flush=True)
                return 1
        left = tables(mem)
        if stats["wrong"] or left != {"host": 0, "device": 0, "streams": 0}:
            print(f"CHILD FAIL {stats} tables {left}", flush=True)
            return 1
        print(
            f"CHILD OK {stats['calls']} calls before close(), then BackendError "
            f"'used after close'; tables empty; no crash",
            flush=True,
        )
    return 0


# -- main ------------------------------------------------------------------------------


def gpu_present() -> str | None:
    """Why there is no usable NVIDIA GPU here, or None when there is one."""
    from samedge.runtimes._hw import cuda_devices

    if cuda_devices():
        return None
    return "no NVIDIA GPU (the CUDA driver reports none, or there is no driver)"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--save", type=Path, help="also write the report to this file")
    parser.add_argument("--child-close-race", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child_close_race:
        return child_close_race()
    report = Report()
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    reason = gpu_present()
    if reason is not None:
        report.say(f"SKIP gpu_check: {reason}; nothing to check on this machine ({stamp})")
        return 0
    report.say(f"gpu_check {stamp} on {platform.node()}: {' '.join(sys.argv)}")
    with tempfile.TemporaryDirectory(prefix="samedge-gpu-check-") as tmp:
        work = Path(tmp)
        report.step("versions", step_versions)
        report.step("gpu tests", step_gpu_tests)
        report.step("interop", step_interop)
        report.step("fake-trt backend", lambda: step_backend(work / "backend"))
        report.step("threads", lambda: step_threads(work / "threads"))
        report.step("close during infer", step_close_race)
    report.say(f"{'FAIL' if report.failed else 'PASS'} gpu_check: {report.failed} step(s) failed")
    if args.save is not None:
        args.save.parent.mkdir(parents=True, exist_ok=True)
        args.save.write_text("\n".join(report.lines) + "\n", encoding="utf-8")
    return 1 if report.failed else 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
