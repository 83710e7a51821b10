"""Fixtures for the runtime tests: one case per backend, and an isolated cache.

To put a backend through the conformance suite, add a :class:`BackendCase` to
``BACKEND_CASES`` (with the capability marker that skips it where it is
absent); every test taking ``backend_case`` then runs on it. The TensorRT case
is already here and skips on machines without TensorRT.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from samedge.runtimes import (
    Backend,
    InferencePrecision,
    OpenVinoConfig,
    OrtConfig,
    open_backend,
)


@dataclass(frozen=True)
class BackendCase:
    """How to open a backend under test, and how close it must come to numpy.

    Attributes:
        id: Test id.
        name: Backend name as :func:`open_backend` takes it.
        make: Opens (does not load) the backend on an ``.onnx`` path.
        rtol: Relative tolerance of results against the numpy reference.
        atol: Absolute tolerance.
    """

    id: str
    name: str
    make: Callable[[Path], Backend]
    rtol: float = 1e-5
    atol: float = 1e-5


BACKEND_CASES = [
    pytest.param(
        BackendCase(
            "onnxruntime",
            "onnxruntime",
            lambda p: open_backend(p, "onnxruntime", config=OrtConfig(intra_op_threads=1)),
        ),
        id="onnxruntime",
    ),
    # The IOBinding path (on by default on CUDA) run on CPU, so it is tested everywhere.
    pytest.param(
        BackendCase(
            "onnxruntime-iobinding",
            "onnxruntime",
            lambda p: open_backend(
                p, "onnxruntime", config=OrtConfig(intra_op_threads=1, io_binding=True)
            ),
        ),
        id="onnxruntime-iobinding",
    ),
    # fp32 so results compare tightly; the bf16 default is checked in test_ov.py.
    # Not num_threads=1: OpenVINO 2026.4's CPU plugin then skips shape inference on
    # repeated calls and returns stale results for feeds whose shapes cannot
    # broadcast, instead of raising (test_library_failure_while_running...).
    pytest.param(
        BackendCase(
            "openvino",
            "openvino",
            lambda p: open_backend(
                p,
                "openvino",
                config=OpenVinoConfig(inference_precision=InferencePrecision.FP32),
            ),
        ),
        id="openvino",
        marks=pytest.mark.openvino,
    ),
    # TF32 tactics on Ampere and later round fp32 matmuls to 10-bit mantissas.
    pytest.param(
        BackendCase("tensorrt", "tensorrt", lambda p: open_backend(p, "tensorrt"), 2e-3, 2e-3),
        id="tensorrt",
        marks=[pytest.mark.tensorrt, pytest.mark.gpu],
    ),
]


@pytest.fixture(params=BACKEND_CASES)
def backend_case(request: pytest.FixtureRequest) -> BackendCase:
    case: BackendCase = request.param
    return case


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Engine and compiled-blob caches go to a fresh directory, never the user's."""
    root = tmp_path / "samedge-cache"
    monkeypatch.setenv("SAMEDGE_CACHE_DIR", str(root))
    return root
