"""The contract every backend meets, run on every backend this machine has.

Parametrized by ``backend_case`` (tests/runtimes/conftest.py): ONNX Runtime
always, OpenVINO where installed, TensorRT where installed with a GPU.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from samedge.errors import BackendError, InputError
from samedge.runtimes import Backend, TensorSpec
from tests.runtimes._graphs import (
    broadcast_mismatch,
    matmul_add,
    matmul_add_ref,
    two_in_two_out,
    two_in_two_out_ref,
)
from tests.runtimes.conftest import BackendCase

F32 = np.dtype(np.float32)


@pytest.fixture
def matmul(tmp_path: Path, backend_case: BackendCase) -> Backend:
    return backend_case.make(matmul_add(tmp_path / "matmul.onnx"))


@pytest.fixture
def two_io(tmp_path: Path, backend_case: BackendCase) -> Backend:
    return backend_case.make(two_in_two_out(tmp_path / "two_io.onnx"))


def _x(batch: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((batch, 4)).astype(np.float32)


def test_construction_is_lazy(matmul: Backend, backend_case: BackendCase) -> None:
    assert matmul.name == backend_case.name
    assert not matmul.is_loaded
    assert "not loaded" in repr(matmul)
    assert type(matmul).__name__ in repr(matmul)
    assert "matmul.onnx" in repr(matmul)


def test_specs_of_a_single_io_graph(matmul: Backend) -> None:
    assert matmul.inputs == (TensorSpec("x", F32, ("B", 4)),)
    assert matmul.outputs == (TensorSpec("y", F32, ("B", 3)),)
    assert matmul.is_loaded


def test_specs_of_a_two_io_graph(two_io: Backend) -> None:
    assert two_io.inputs == (
        TensorSpec("coords", F32, ("B", "N", 2)),
        TensorSpec("labels", F32, ("B", "N")),
    )
    assert two_io.outputs == (
        TensorSpec("shifted", F32, ("B", "N", 2)),
        TensorSpec("weighted", F32, ("B", "N")),
    )


def test_results_match_numpy_across_batch_sizes(matmul: Backend, backend_case: BackendCase) -> None:
    for batch in (1, 3, 8, 2):
        x = _x(batch, seed=batch)
        out = matmul.infer({"x": x})
        assert set(out) == {"y"}
        assert out["y"].dtype == F32
        assert out["y"].shape == (batch, 3)
        np.testing.assert_allclose(
            out["y"], matmul_add_ref(x), rtol=backend_case.rtol, atol=backend_case.atol
        )


def test_two_inputs_two_outputs_match_numpy(two_io: Backend, backend_case: BackendCase) -> None:
    rng = np.random.default_rng(1)
    for batch, points in ((1, 1), (4, 3), (2, 5)):
        coords = rng.uniform(0, 1024, (batch, points, 2)).astype(np.float32)
        labels = rng.integers(-1, 4, (batch, points)).astype(np.float32)
        out = two_io.infer({"coords": coords, "labels": labels})
        expected = two_in_two_out_ref(coords, labels)
        assert set(out) == set(expected)
        for name, ref in expected.items():
            assert out[name].shape == ref.shape
            np.testing.assert_allclose(
                out[name], ref, rtol=backend_case.rtol, atol=backend_case.atol
            )


def test_non_contiguous_input(matmul: Backend, backend_case: BackendCase) -> None:
    wide = np.random.default_rng(2).standard_normal((5, 8)).astype(np.float32)
    x = wide[:, ::2]
    assert not x.flags.c_contiguous
    out = matmul.infer({"x": x})
    np.testing.assert_allclose(
        out["y"], matmul_add_ref(x), rtol=backend_case.rtol, atol=backend_case.atol
    )


def test_results_survive_the_next_call(matmul: Backend) -> None:
    first = matmul.infer({"x": _x(2, seed=3)})["y"].copy()
    held = matmul.infer({"x": _x(2, seed=3)})["y"]
    matmul.infer({"x": _x(2, seed=4)})
    np.testing.assert_array_equal(held, first)


@pytest.mark.parametrize(
    ("feeds", "message"),
    [
        ({}, "missing ['x']"),
        ({"x": np.zeros((1, 4), np.float32), "z": np.zeros(1, np.float32)}, "unexpected ['z']"),
        ({"x": np.zeros((1, 4), np.float64)}, "got dtype float64, expected float32"),
        ({"x": np.zeros((1, 4, 1), np.float32)}, "got shape (1, 4, 1), expected (B, 4)"),
        ({"x": np.zeros((2, 5), np.float32)}, "got shape (2, 5), expected (B, 4)"),
        ({"x": [[0.0, 0.0, 0.0, 0.0]]}, "got list, expected a numpy array"),
    ],
    ids=["missing", "extra", "dtype", "rank", "static-dim", "not-array"],
)
def test_bad_feeds_are_refused_before_the_library(
    matmul: Backend, feeds: dict[str, object], message: str
) -> None:
    with pytest.raises(InputError) as info:
        matmul.infer(feeds)  # type: ignore[arg-type]
    assert message in str(info.value)
    assert isinstance(info.value, ValueError)


def test_feeds_must_be_a_mapping(matmul: Backend) -> None:
    with pytest.raises(InputError, match="expected a dict"):
        matmul.infer([np.zeros((1, 4), np.float32)])  # type: ignore[arg-type]


def test_inputs_sharing_a_dynamic_dim_must_agree(two_io: Backend) -> None:
    coords = np.zeros((2, 3, 2), np.float32)
    with pytest.raises(InputError, match=r"labels: dimension B is 1, but coords has B = 2"):
        two_io.infer({"coords": coords, "labels": np.zeros((1, 3), np.float32)})
    with pytest.raises(InputError, match=r"labels: dimension N is 4, but coords has N = 3"):
        two_io.infer({"coords": coords, "labels": np.zeros((2, 4), np.float32)})


def test_library_failure_while_running_is_a_backend_error(
    tmp_path: Path, backend_case: BackendCase
) -> None:
    backend = backend_case.make(broadcast_mismatch(tmp_path / "mismatch.onnx"))
    ok = backend.infer({"p": np.ones((2, 3), np.float32), "q": np.ones((2, 3), np.float32)})
    np.testing.assert_allclose(ok["r"], np.full((2, 3), 2.0, np.float32))
    with pytest.raises(BackendError) as info:
        backend.infer({"p": np.ones((2, 3), np.float32), "q": np.ones((2, 4), np.float32)})
    assert not isinstance(info.value, InputError)
    assert backend_case.name in str(info.value)
    assert "mismatch.onnx" in str(info.value)
    assert "\n" not in str(info.value)


def test_unloadable_file_is_a_one_line_backend_error(
    tmp_path: Path, backend_case: BackendCase
) -> None:
    path = tmp_path / "garbage.onnx"
    path.write_bytes(b"\x08\x07 this is not a protobuf model \xff\xfe" * 8)
    backend = backend_case.make(path)
    with pytest.raises(BackendError) as info:
        backend.load()
    message = str(info.value)
    assert str(path) in message
    assert backend_case.name in message
    assert "\n" not in message
    assert not backend.is_loaded


def test_missing_file_is_refused_at_construction(tmp_path: Path, backend_case: BackendCase) -> None:
    with pytest.raises(InputError, match="no such file"):
        backend_case.make(tmp_path / "absent.onnx")


def test_close_then_load_again(matmul: Backend) -> None:
    x = _x(3)
    before = matmul.infer({"x": x})["y"]
    matmul.close()
    assert not matmul.is_loaded
    matmul.close()  # closing twice is harmless
    after = matmul.infer({"x": x})["y"]
    assert matmul.is_loaded
    np.testing.assert_array_equal(before, after)


def test_context_manager_loads_and_closes(matmul: Backend) -> None:
    with matmul as backend:
        assert backend is matmul
        assert backend.is_loaded
        assert backend.infer({"x": _x(1)})["y"].shape == (1, 3)
    assert not matmul.is_loaded


def test_repr_device_and_precision_after_load(matmul: Backend) -> None:
    matmul.load()
    assert matmul.precision in {"fp32", "fp16", "bf16", "int8"}
    assert matmul.device
    assert matmul.device != "not loaded"
    text = repr(matmul)
    assert matmul.device in text
    assert matmul.precision in text
    assert "not loaded" not in text
