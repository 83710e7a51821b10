"""ONNX Runtime backend: config, provider choice, IOBinding, precision reporting."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pytest

from samedge.errors import DeviceUnavailableError, InputError
from samedge.runtimes import GraphOptimization, OrtBackend, OrtConfig
from samedge.runtimes import ort as ort_module
from samedge.runtimes._hw import CudaDevice
from tests.runtimes._graphs import matmul_add, matmul_add_ref, qdq

FAKE_GPU = CudaDevice(0, "Fake GPU", (8, 7))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"providers": ()}, "non-empty tuple"),
        ({"providers": ["CPUExecutionProvider"]}, "non-empty tuple"),
        ({"providers": ("cpu",)}, "ending in 'ExecutionProvider'"),
        ({"providers": ("CPUExecutionProvider",) * 2}, "repeats"),
        ({"intra_op_threads": 0}, "int >= 1"),
        ({"intra_op_threads": True}, "int >= 1"),
        ({"graph_optimization": "all"}, "GraphOptimization"),
        ({"io_binding": 1}, "True, False or None"),
        ({"spin_after_run": None}, "True or False"),
    ],
)
def test_config_is_validated(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(InputError, match=message):
        OrtConfig(**kwargs)


def _config_entries(backend: OrtBackend) -> dict[str, str]:
    options = backend._session.get_session_options()  # type: ignore[union-attr]
    entries = {}
    for key in ("session.force_spinning_stop", "session.intra_op.allow_spinning"):
        with contextlib.suppress(RuntimeError):  # ORT's way of saying "not set"
            entries[key] = options.get_session_config_entry(key)
    return entries


def test_threads_stop_spinning_after_a_run_unless_asked(tmp_path: Path) -> None:
    path = matmul_add(tmp_path / "m.onnx")
    feeds = {"x": np.ones((2, 4), np.float32)}
    with OrtBackend(path, OrtConfig(intra_op_threads=2)) as quiet:
        assert _config_entries(quiet) == {"session.force_spinning_stop": "1"}
        np.testing.assert_allclose(quiet.infer(feeds)["y"], matmul_add_ref(feeds["x"]), rtol=1e-6)
    with OrtBackend(path, OrtConfig(intra_op_threads=2, spin_after_run=True)) as spinning:
        # ONNX Runtime's own default: nothing set.
        assert _config_entries(spinning) == {}


def test_constructor_refuses_conflicting_arguments(tmp_path: Path) -> None:
    path = matmul_add(tmp_path / "m.onnx")
    with pytest.raises(InputError, match="not both"):
        OrtBackend(path, OrtConfig(providers=("CPUExecutionProvider",)), device="cpu")
    with pytest.raises(InputError, match="expected OrtConfig"):
        OrtBackend(path, object())  # type: ignore[arg-type]
    with pytest.raises(DeviceUnavailableError, match="openvino"):
        OrtBackend(path, device="npu")
    with pytest.raises(InputError, match="expected one of"):
        OrtBackend(path, device="tpu")


def test_unavailable_provider_names_the_package(tmp_path: Path) -> None:
    backend = OrtBackend(
        matmul_add(tmp_path / "m.onnx"), OrtConfig(providers=("CUDAExecutionProvider",))
    )
    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("this onnxruntime has the CUDA provider")
    with pytest.raises(DeviceUnavailableError, match="onnxruntime-gpu"):
        backend.load()


def test_cuda_device_without_gpu(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ort_module, "cuda_devices", lambda: ())
    backend = OrtBackend(matmul_add(tmp_path / "m.onnx"), device="cuda:0")
    with pytest.raises(DeviceUnavailableError, match="0 CUDA GPU"):
        backend.load()


def test_preference_order_keeps_cuda_providers_only_with_a_gpu(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, isolated_cache: Path
) -> None:
    every = ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]
    backend = OrtBackend(matmul_add(tmp_path / "m.onnx"))
    monkeypatch.setattr(ort_module, "cuda_devices", lambda: ())
    assert [p for p, _ in backend._provider_plan(every)] == ["CPUExecutionProvider"]

    monkeypatch.setattr(ort_module, "cuda_devices", lambda: (FAKE_GPU,))
    plan = dict(backend._provider_plan([*every, "OpenVINOExecutionProvider"]))
    assert list(plan) == [*every[:2], "OpenVINOExecutionProvider", "CPUExecutionProvider"]
    trt_options = plan["TensorrtExecutionProvider"]
    assert trt_options["trt_engine_cache_enable"] is True
    assert Path(trt_options["trt_engine_cache_path"]).is_relative_to(isolated_cache)
    assert plan["CUDAExecutionProvider"] == {"device_id": 0}

    on_cpu = OrtBackend(matmul_add(tmp_path / "c.onnx"), device="cpu")
    assert [p for p, _ in on_cpu._provider_plan(every)] == ["CPUExecutionProvider"]


def test_device_reports_the_provider(tmp_path: Path) -> None:
    backend = OrtBackend(matmul_add(tmp_path / "m.onnx"), device="cpu")
    assert backend.device == "not loaded"
    backend.load()
    assert backend.device == "CPUExecutionProvider"
    assert backend.providers == ("CPUExecutionProvider",)


@pytest.mark.parametrize("level", list(GraphOptimization))
def test_every_optimization_level_runs(tmp_path: Path, level: GraphOptimization) -> None:
    backend = OrtBackend(matmul_add(tmp_path / "m.onnx"), OrtConfig(graph_optimization=level))
    x = np.ones((2, 4), np.float32)
    np.testing.assert_allclose(backend.infer({"x": x})["y"], matmul_add_ref(x), rtol=1e-6)


def test_precision_from_the_graph(tmp_path: Path) -> None:
    assert OrtBackend(matmul_add(tmp_path / "fp32.onnx")).precision == "fp32"
    fp16 = OrtBackend(matmul_add(tmp_path / "fp16.onnx", fp16=True))
    assert fp16.precision == "fp16"
    assert fp16.inputs[0].dtype == np.float16
    x = np.ones((2, 4), np.float16)
    np.testing.assert_allclose(fp16.infer({"x": x})["y"], matmul_add_ref(x), rtol=1e-2)
    assert OrtBackend(qdq(tmp_path / "qdq.onnx")).precision == "int8"
    # samedge's own metadata (JSON-encoded, as ModelCard.to_metadata writes it) wins.
    tagged = matmul_add(tmp_path / "tagged.onnx", metadata={"samedge.precision": '"int8"'})
    assert OrtBackend(tagged).precision == "int8"


def test_io_binding_uploads_a_read_only_input_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    uploads: list[tuple[int, ...]] = []
    original = ort.OrtValue.ortvalue_from_numpy

    def counting(array: np.ndarray, *args: Any) -> Any:
        uploads.append(array.shape)
        return original(array, *args)

    monkeypatch.setattr(ort.OrtValue, "ortvalue_from_numpy", staticmethod(counting))
    backend = OrtBackend(matmul_add(tmp_path / "m.onnx"), OrtConfig(io_binding=True))

    frozen = np.random.default_rng(0).standard_normal((3, 4)).astype(np.float32)
    frozen.setflags(write=False)
    for _ in range(3):
        np.testing.assert_allclose(
            backend.infer({"x": frozen})["y"], matmul_add_ref(frozen), rtol=1e-6
        )
    assert len(uploads) == 1

    # A writable array may change between calls: it is uploaded every time, and
    # in-place changes are seen.
    live = frozen.copy()
    first = backend.infer({"x": live})["y"].copy()
    live *= 2
    second = backend.infer({"x": live})["y"]
    assert len(uploads) == 3
    np.testing.assert_allclose(second, matmul_add_ref(live), rtol=1e-6)
    assert not np.allclose(first, second)

    # A different read-only array replaces the pinned one.
    other = (frozen + 1).copy()
    other.setflags(write=False)
    np.testing.assert_allclose(backend.infer({"x": other})["y"], matmul_add_ref(other), rtol=1e-6)
    assert len(uploads) == 4

    backend.close()
    assert backend._pinned == {}
