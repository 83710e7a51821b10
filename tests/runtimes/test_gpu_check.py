"""benchmarks/gpu_check.py: it skips cleanly without a GPU, and its steps work.

The steps that need a GPU run here on :class:`HostCudart`, a stand-in for
``cuda.bindings.runtime`` whose "device" memory is host memory (copies are
``memmove``), so the script's own logic (the identity graph, the fake
``tensorrt`` executor copying between the backend's addresses, the memory and
thread checks, the close-during-infer child) is exercised before the day it
runs on hardware. What it cannot show here is CUDA's side: that is the point of
running the script on an NVIDIA GPU.
"""

from __future__ import annotations

import ctypes
import enum
import importlib.util
import re
import subprocess
import sys
import threading
import types
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from samedge.runtimes import cuda_mem
from samedge.runtimes._graph import read_onnx_summary
from samedge.runtimes._hw import cuda_devices
from tests.runtimes._fake_trt import make_feeds, make_graph, reference

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "gpu_check.py"


def _load_script() -> types.ModuleType:
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


gpu_check = _load_script()


@pytest.mark.skipif(bool(cuda_devices()), reason="this machine has a GPU: the script runs for real")
def test_skips_cleanly_without_a_gpu() -> None:
    proc = subprocess.run(
        [sys.executable, str(SCRIPT)], capture_output=True, text=True, timeout=300, check=False
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert len(lines) == 1, proc.stdout
    assert lines[0].startswith("SKIP gpu_check: no NVIDIA GPU")
    assert "Traceback" not in proc.stderr


def test_identity_graph_written_without_onnx_is_valid(tmp_path: Path) -> None:
    onnx = pytest.importorskip("onnx")
    path = tmp_path / "identity.onnx"
    path.write_bytes(gpu_check.identity_model_bytes())
    model = onnx.load(str(path))
    onnx.checker.check_model(model, full_check=True)
    summary = read_onnx_summary(path)
    assert [(v.name, v.shape) for v in summary.inputs] == [
        ("point_coords", ("B", "N", 2)),
        ("point_labels", ("B", "N")),
    ]
    assert summary.opsets == {"": 13}
    # The same graph the test suite builds with onnx.helper.
    feeds = make_feeds(3, 4)
    ours = reference(path, feeds)
    theirs = reference(make_graph(tmp_path / "helper.onnx", "identity"), feeds)
    for name, value in theirs.items():
        np.testing.assert_array_equal(ours[name], value)


# -- the GPU steps on host memory --------------------------------------------------------


class _Kind(enum.IntEnum):
    cudaMemcpyHostToDevice = 1  # noqa: N815  # cuda-python's names
    cudaMemcpyDeviceToHost = 2  # noqa: N815
    cudaMemcpyDeviceToDevice = 3  # noqa: N815


class HostCudart:
    """``cuda.bindings.runtime`` for one discrete GPU whose memory is host memory."""

    cudaMemcpyKind = _Kind  # noqa: N815
    cudaStreamNonBlocking = 1  # noqa: N815
    TOTAL = 1 << 30

    def __init__(self) -> None:
        self.blocks: dict[int, Any] = {}  # address -> ctypes buffer (device and pinned)
        self.device_bytes = 0
        self.sizes: dict[int, int] = {}
        self.streams: dict[int, int] = {}
        self.lock = threading.Lock()
        self.local = threading.local()

    def _alloc(self, nbytes: int, device: bool) -> int:
        block = ctypes.create_string_buffer(nbytes)
        address = ctypes.addressof(block)
        with self.lock:
            self.blocks[address] = block
            if device:
                self.sizes[address] = nbytes
                self.device_bytes += nbytes
        return address

    def _free(self, address: int) -> tuple[int]:
        with self.lock:
            if self.blocks.pop(int(address), None) is None:
                return (1,)  # cudaErrorInvalidValue
            self.device_bytes -= self.sizes.pop(int(address), 0)
        return (0,)

    def cudaGetDeviceCount(self) -> tuple[int, int]:  # noqa: N802
        return (0, 1)

    def cudaGetDevice(self) -> tuple[int, int]:  # noqa: N802
        return (0, getattr(self.local, "device", 0))

    def cudaSetDevice(self, device: int) -> tuple[int]:  # noqa: N802
        self.local.device = device
        return (0,)

    def cudaGetDeviceProperties(self, device: int) -> tuple[int, Any]:  # noqa: N802
        props = types.SimpleNamespace(
            name=b"Host GPU", major=9, minor=0, integrated=0, totalGlobalMem=self.TOTAL
        )
        return (0, props)

    def cudaGetErrorName(self, err: int) -> tuple[int, bytes]:  # noqa: N802
        return (0, f"cudaError{int(err)}".encode())

    def cudaDriverGetVersion(self) -> tuple[int, int]:  # noqa: N802
        return (0, 13000)

    def cudaRuntimeGetVersion(self) -> tuple[int, int]:  # noqa: N802
        return (0, 13000)

    def cudaMemGetInfo(self) -> tuple[int, int, int]:  # noqa: N802
        return (0, self.TOTAL - self.device_bytes, self.TOTAL)

    def cudaMalloc(self, nbytes: int) -> tuple[int, int]:  # noqa: N802
        return (0, self._alloc(nbytes, device=True))

    def cudaFree(self, address: int) -> tuple[int]:  # noqa: N802
        return self._free(address)

    def cudaMallocHost(self, nbytes: int) -> tuple[int, int]:  # noqa: N802
        return (0, self._alloc(nbytes, device=False))

    def cudaFreeHost(self, address: int) -> tuple[int]:  # noqa: N802
        return self._free(address)

    def cudaStreamCreateWithFlags(self, flags: int) -> tuple[int, int]:  # noqa: N802
        handle = 0x7000 + len(self.streams) + 1
        self.streams[handle] = flags
        return (0, handle)

    def cudaStreamGetFlags(self, stream: int) -> tuple[int, int]:  # noqa: N802
        return (0, self.streams[int(stream)])

    def cudaStreamDestroy(self, stream: int) -> tuple[int]:  # noqa: N802
        self.streams.pop(int(stream))
        return (0,)

    def cudaStreamSynchronize(self, stream: int) -> tuple[int]:  # noqa: N802
        return (0,)

    def cudaMemcpyAsync(  # noqa: N802
        self, dst: int, src: int, count: int, kind: Any, stream: int
    ) -> tuple[int]:
        assert int(stream) in self.streams, "copy on a stream samedge did not create"
        ctypes.memmove(int(dst), int(src), count)
        return (0,)


@pytest.fixture
def host_cuda(monkeypatch: pytest.MonkeyPatch) -> HostCudart:
    pytest.importorskip("onnxruntime")
    rt = HostCudart()
    monkeypatch.setattr(cuda_mem, "_import_cudart", lambda: rt)
    monkeypatch.setattr(cuda_mem, "_native_handle", int)
    monkeypatch.setattr(gpu_check, "cudart", lambda: rt)
    return rt


def test_backend_step_on_host_memory(host_cuda: HostCudart, tmp_path: Path) -> None:
    detail = gpu_check.step_backend(tmp_path / "backend")
    assert f"{gpu_check.CALLS} calls" in detail
    assert "tables empty after close()" in detail
    assert host_cuda.device_bytes == 0
    assert not host_cuda.streams
    assert not hasattr(sys.modules.get("tensorrt"), "Builder")  # the fake is gone again


def test_threads_step_on_host_memory(host_cuda: HostCudart, tmp_path: Path) -> None:
    detail = gpu_check.step_threads(tmp_path / "threads")
    assert f"{gpu_check.THREADS} threads" in detail
    assert host_cuda.device_bytes == 0


def test_close_race_child_on_host_memory(
    host_cuda: HostCudart, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # The child's busy copy is 256 MiB on a GPU; on host memory a smaller one does.
    executor = gpu_check.copy_executor
    monkeypatch.setattr(
        gpu_check,
        "copy_executor",
        lambda busy_bytes=0, pause_s=0.0: executor(min(busy_bytes, 1 << 20), pause_s),
    )
    assert gpu_check.child_close_race() == 0
    out = capsys.readouterr().out
    match = re.search(r"CHILD OK (\d+) calls before close\(\)", out)
    assert match is not None, out
    assert int(match.group(1)) > 0  # close() landed while calls were running
    assert host_cuda.device_bytes == 2 << 20  # only the busy copy's scratch (never freed)


def test_a_failing_step_is_reported_and_the_rest_still_run(
    capsys: pytest.CaptureFixture[str],
) -> None:
    report = gpu_check.Report()

    def broken() -> str:
        raise RuntimeError("cudaMemcpyAsync failed with cudaErrorIllegalAddress")

    def missing() -> str:
        raise gpu_check.StepSkippedError("PyTorch is not installed")

    report.step("broken", broken)
    report.step("missing", missing)
    report.step("fine", lambda: "ok")
    out = capsys.readouterr().out
    assert "FAIL broken: RuntimeError: cudaMemcpyAsync failed" in out
    assert "SKIP missing: PyTorch is not installed" in out
    assert "PASS fine" in out
    assert report.failed == 1
