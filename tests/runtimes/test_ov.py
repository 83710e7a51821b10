"""OpenVINO backend: config, devices, precision actually used, compiled-blob cache."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from samedge.errors import BackendUnavailableError, DeviceUnavailableError, InputError
from samedge.runtimes import (
    InferencePrecision,
    OpenVinoBackend,
    OpenVinoConfig,
    OvDevice,
    PerformanceHint,
)
from samedge.runtimes import ov as ov_module
from tests.runtimes._graphs import matmul_add, matmul_add_ref, qdq, two_in_two_out


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"device": "CPU"}, "expected an OvDevice"),
        ({"performance_hint": "LATENCY"}, "PerformanceHint"),
        ({"inference_precision": "bf16"}, "InferencePrecision"),
        ({"num_threads": 0}, "int >= 1"),
        ({"num_threads": 2, "device": OvDevice.GPU}, "CPU device only"),
        ({"cache_dir": 3}, "a path or None"),
        ({"use_cache": "yes"}, "True or False"),
    ],
)
def test_config_is_validated(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(InputError, match=message):
        OpenVinoConfig(**kwargs)


def test_device_argument_and_config_must_agree(tmp_path: Path) -> None:
    path = matmul_add(tmp_path / "m.onnx")
    with pytest.raises(InputError, match="disagree"):
        OpenVinoBackend(path, OpenVinoConfig(device=OvDevice.CPU), device="npu")
    with pytest.raises(DeviceUnavailableError, match="does not run on CUDA"):
        OpenVinoBackend(path, device="cuda:0")
    with pytest.raises(InputError, match="CPU device only"):
        OpenVinoBackend(path, OpenVinoConfig(num_threads=2), device="gpu")
    assert OpenVinoBackend(path, device="gpu:1")._ov_device == "GPU.1"
    assert OpenVinoBackend(path, OpenVinoConfig(device=OvDevice.AUTO))._ov_device == "AUTO"
    assert OpenVinoBackend(path)._ov_device == "CPU"


def test_missing_openvino_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    # None in sys.modules makes every import of it raise ImportError.
    monkeypatch.setitem(sys.modules, "openvino", None)
    with pytest.raises(BackendUnavailableError, match=r"pip install samedge\[openvino\]"):
        ov_module.import_openvino()


@pytest.mark.openvino
def test_absent_device_lists_the_present_ones(tmp_path: Path) -> None:
    import openvino as ov

    if "NPU" in ov.Core().available_devices:
        pytest.skip("this machine has an NPU")
    backend = OpenVinoBackend(matmul_add(tmp_path / "m.onnx"), device="npu")
    with pytest.raises(DeviceUnavailableError, match="NPU is not present; this machine has CPU"):
        backend.load()


@pytest.mark.openvino
def test_default_precision_is_the_devices_own(tmp_path: Path) -> None:
    import openvino as ov

    caps = ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")
    backend = OpenVinoBackend(matmul_add(tmp_path / "m.onnx"), OpenVinoConfig(num_threads=2))
    backend.load()
    assert backend.device == "CPU"
    # OpenVINO's CPU plugin computes in bf16 wherever the CPU has native bf16.
    assert backend.precision == ("bf16" if "BF16" in caps else "fp32")
    x = np.random.default_rng(0).standard_normal((4, 4)).astype(np.float32)
    tolerance = 3e-2 if backend.precision == "bf16" else 1e-5
    np.testing.assert_allclose(
        backend.infer({"x": x})["y"], matmul_add_ref(x), rtol=tolerance, atol=tolerance
    )


@pytest.mark.openvino
def test_precision_hints_are_applied(tmp_path: Path) -> None:
    path = matmul_add(tmp_path / "m.onnx")
    fp32 = OpenVinoBackend(path, OpenVinoConfig(inference_precision=InferencePrecision.FP32))
    fp32.load()
    assert fp32.precision == "fp32"
    throughput = OpenVinoBackend(
        path,
        OpenVinoConfig(
            performance_hint=PerformanceHint.THROUGHPUT,
            inference_precision=InferencePrecision.FP32,
        ),
    )
    x = np.ones((3, 4), np.float32)
    np.testing.assert_allclose(throughput.infer({"x": x})["y"], matmul_add_ref(x), rtol=1e-6)
    assert str(throughput._compiled.get_property("PERFORMANCE_HINT")) == "THROUGHPUT"


@pytest.mark.openvino
def test_qdq_graph_reports_int8(tmp_path: Path) -> None:
    backend = OpenVinoBackend(qdq(tmp_path / "q.onnx"))
    x = np.array([[0.2, 1.0, -3.3, 100.0]], np.float32)
    y = backend.infer({"x": x})["y"]
    assert backend.precision == "int8"
    np.testing.assert_allclose(y, [[0.0, 1.0, -3.5, 63.5]])  # scale 0.5, int8 saturates at 127


@pytest.mark.openvino
@pytest.mark.parametrize(
    ("calibration", "flags", "arch", "warned"),
    [
        ({"int8_full_range": True}, {"avx2"}, "x86_64", True),
        ({}, {"avx2", "avx512f"}, "x86_64", True),  # built before 7-bit weights: 8 bits
        ({"int8_full_range": False}, {"avx2"}, "x86_64", False),
        ({"int8_full_range": True}, {"avx2", "avx512_vnni"}, "x86_64", False),
        ({"int8_full_range": True}, {"avx2", "avx_vnni"}, "x86_64", False),
        ({"int8_full_range": True}, {"asimd"}, "aarch64", False),
        (None, {"avx2"}, "x86_64", False),  # not a samedge build: nothing to say
    ],
)
def test_8bit_weights_on_a_cpu_without_vnni_warn_once(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    calibration: dict[str, bool] | None,
    flags: set[str],
    arch: str,
    warned: bool,
) -> None:
    import json
    from types import SimpleNamespace

    fake = SimpleNamespace(vendor="AuthenticAMD", model="EPYC", arch=arch, cores=2, flags=flags)
    monkeypatch.setattr(ov_module, "cpu_info", lambda: fake)
    metadata = {} if calibration is None else {"samedge.calibration": json.dumps(calibration)}
    path = qdq(tmp_path / "q.onnx", metadata)
    for _ in range(2):
        OpenVinoBackend(path).infer({"x": np.zeros((1, 4), np.float32)})
    messages = [r.getMessage() for r in caplog.records if "8-bit weights" in r.getMessage()]
    assert len(messages) == (1 if warned else 0)
    if warned:
        assert "--int8-full-range" in messages[0]
        assert str(path) in messages[0]


@pytest.mark.openvino
def test_symbolic_dim_names_survive(tmp_path: Path) -> None:
    backend = OpenVinoBackend(two_in_two_out(tmp_path / "t.onnx"))
    assert [s.shape for s in backend.inputs] == [("B", "N", 2), ("B", "N")]


def _blobs(directory: Path) -> list[Path]:
    return sorted(directory.rglob("*.blob"))


@pytest.mark.openvino
def test_compiled_blobs_are_cached_under_samedges_cache(
    tmp_path: Path, isolated_cache: Path
) -> None:
    path = matmul_add(tmp_path / "m.onnx")
    x = np.ones((2, 4), np.float32)
    config = OpenVinoConfig(inference_precision=InferencePrecision.FP32)
    first = OpenVinoBackend(path, config).infer({"x": x})["y"]
    blobs = _blobs(isolated_cache / "openvino")
    assert len(blobs) == 1
    stamp = blobs[0].stat().st_mtime_ns
    second = OpenVinoBackend(path, config).infer({"x": x})["y"]
    np.testing.assert_array_equal(first, second)
    assert _blobs(isolated_cache / "openvino") == blobs
    assert blobs[0].stat().st_mtime_ns == stamp  # loaded, not rewritten


@pytest.mark.openvino
def test_corrupt_blob_is_recompiled(tmp_path: Path, isolated_cache: Path) -> None:
    path = matmul_add(tmp_path / "m.onnx")
    config = OpenVinoConfig(inference_precision=InferencePrecision.FP32)
    OpenVinoBackend(path, config).load()
    (blob,) = _blobs(isolated_cache / "openvino")
    blob.write_bytes(b"corrupt" * 10)
    x = np.ones((2, 4), np.float32)
    np.testing.assert_allclose(
        OpenVinoBackend(path, config).infer({"x": x})["y"], matmul_add_ref(x), rtol=1e-6
    )
    assert blob.stat().st_size > 70  # OpenVINO wrote a good blob over the bad one


@pytest.mark.openvino
def test_cache_dir_and_no_cache(tmp_path: Path, isolated_cache: Path) -> None:
    path = matmul_add(tmp_path / "m.onnx")
    own = tmp_path / "own-cache"
    OpenVinoBackend(path, OpenVinoConfig(cache_dir=own)).load()
    assert len(_blobs(own)) == 1
    OpenVinoBackend(path, OpenVinoConfig(use_cache=False)).load()
    assert not (isolated_cache / "openvino").exists()


@pytest.mark.openvino
def test_closing_two_backends_then_a_signal_does_not_crash(tmp_path: Path) -> None:
    """OpenVINO 2026.4 segfaulted on the next signal after two Cores were released."""
    import os
    import subprocess
    import sys

    script = tmp_path / "repro.py"
    script.write_text(
        "import os, signal\nfrom pathlib import Path\n"
        "from samedge.runtimes import open_backend\n"
        "from tests.runtimes._graphs import matmul_add\n"
        f"a = open_backend(matmul_add(Path({str(tmp_path / 'a.onnx')!r})), 'openvino')\n"
        f"b = open_backend(matmul_add(Path({str(tmp_path / 'b.onnx')!r})), 'openvino')\n"
        "a.load(); b.load(); a.close(); b.close()\n"
        "signal.signal(signal.SIGINT, lambda *_: None)\n"
        "os.kill(os.getpid(), signal.SIGINT)\n"
        "print('survived')\n"
    )
    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": str(root)}
    done = subprocess.run(
        [sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "survived" in done.stdout


@pytest.mark.openvino
def test_each_configuration_gets_its_own_cache_directory(
    tmp_path: Path, isolated_cache: Path
) -> None:
    """One shared directory let an fp32 compile poison the default-precision one (NaN)."""
    path = matmul_add(tmp_path / "m.onnx")
    fp32 = OpenVinoBackend(path, OpenVinoConfig(inference_precision=InferencePrecision.FP32))
    default = OpenVinoBackend(path)
    threads = OpenVinoBackend(path, OpenVinoConfig(num_threads=1))
    for backend in (fp32, default, threads):
        backend.load()
    entries = {b.cache_path for b in (fp32, default, threads)}
    assert len(entries) == 3
    for entry in entries:
        assert entry is not None
        assert entry.parent == isolated_cache / "openvino"
        assert len(_blobs(entry)) == 1
    # The same configuration finds its own directory again.
    again = OpenVinoBackend(path, OpenVinoConfig(inference_precision=InferencePrecision.FP32))
    again.load()
    assert again.cache_path == fp32.cache_path
    # Another graph, same configuration: another directory.
    other = OpenVinoBackend(matmul_add(tmp_path / "n.onnx", metadata={"samedge.model": '"other"'}))
    other.load()
    assert other.cache_path not in entries


@pytest.mark.openvino
def test_drop_cache_removes_only_its_own_entry(tmp_path: Path, isolated_cache: Path) -> None:
    path = matmul_add(tmp_path / "m.onnx")
    keep = OpenVinoBackend(path, OpenVinoConfig(inference_precision=InferencePrecision.FP32))
    drop = OpenVinoBackend(path)
    keep.load()
    drop.load()
    removed = drop.drop_cache()
    assert removed is not None
    assert not removed.exists()
    assert keep.cache_path is not None
    assert keep.cache_path.is_dir()
    assert OpenVinoBackend(path, OpenVinoConfig(use_cache=False)).drop_cache() is None
