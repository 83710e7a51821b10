"""TensorRT backend.

Three layers of tests:

* pure logic on any machine: config validation, the version table (flags,
  opsets), profile shapes, what precision a graph carries;
* the whole backend on any machine against a *fake* ``tensorrt`` module and a
  host-memory fake of the CUDA layer (tests/runtimes/_fake_trt.py). The fake
  follows the documented API (names checked by test_trt_types.py) and computes
  with ONNX Runtime, so the backend's own logic is exercised for real: flags
  per version, FP32 layers pinned on 8.x, profile, buffers allocated once at
  the profile's maximum, the workspace cap and the timing cache, ``close()``
  waiting for a running ``infer()``, the engine cache (reuse, corrupt entry
  rebuilt, nothing stored after a failure), profile-limit errors;
* the real thing, marked ``tensorrt`` and ``gpu``, on a machine with both.
"""

from __future__ import annotations

import json
import logging
import sys
import threading
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from samedge.errors import (
    BackendError,
    BackendUnavailableError,
    DeviceUnavailableError,
    InputError,
    ProfileLimitError,
    PromptError,
)
from samedge.runtimes import _trt_build as trt_build
from samedge.runtimes import trt as trt_mod
from samedge.runtimes._graph import ValueInfo, read_onnx_summary
from samedge.runtimes._trt_plan import BuildPlan
from samedge.runtimes.cache import CacheKey, EngineCache
from samedge.runtimes.cuda_mem import CudaApi
from samedge.runtimes.trt import (
    GraphPrecision,
    ProfileShape,
    TensorRTBackend,
    TensorRTConfig,
    _TrtCompat,
    profile_shapes,
)
from tests.runtimes._fake_trt import (
    FakeMemory,
    fake_tensorrt,
    host_executor,
    make_feeds,
    make_graph,
    reference,
)

# -- configuration ----------------------------------------------------------------------


def test_config_defaults_match_the_robotics_sizing() -> None:
    cfg = TensorRTConfig()
    assert (cfg.max_objects, cfg.max_points) == (16, 10)
    assert (cfg.objects_opt, cfg.points_opt) == (1, 2)
    assert cfg.fp16 is None
    assert cfg.use_cache
    assert cfg.device_index is None


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"max_objects": 0}, r"max_objects: got 0, expected >= 1"),
        ({"max_points": True}, r"max_points: got True, expected an integer"),
        ({"max_points": 2.5}, r"max_points: got 2.5, expected an integer"),
        ({"opt_objects": 17}, r"opt_objects: got 17, expected 1..16"),
        ({"max_points": 4, "opt_points": 5}, r"opt_points: got 5, expected 1..4"),
        ({"workspace_bytes": 0}, r"workspace_bytes: got 0"),
        ({"fp16": "yes"}, r"fp16: got 'yes', expected True, False or None"),
        ({"use_cache": 1}, r"use_cache: got 1"),
        ({"cache_dir": 3}, r"cache_dir: got 3"),
        ({"device_index": -1}, r"device_index: got -1"),
        ({"builder_optimization_level": 6}, r"builder_optimization_level: got 6, expected 0..5"),
        ({"cuda_api": "pycuda"}, r"cuda_api: got 'pycuda', expected CudaApi"),
    ],
)
def test_config_rejects_bad_values(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(InputError, match=message):
        TensorRTConfig(**kwargs)


def test_config_is_frozen() -> None:
    cfg = TensorRTConfig(cuda_api=CudaApi.PYCUDA)
    with pytest.raises(AttributeError):
        cfg.max_objects = 3  # type: ignore[misc]


# -- the version table ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "parsed"),
    [("8.6.1.6", (8, 6, 1)), ("10.13.0.35", (10, 13, 0)), ("11.0", (11, 0, 0))],
)
def test_version_parse(text: str, parsed: tuple[int, int, int]) -> None:
    compat = _TrtCompat.parse(text)
    assert (compat.major, compat.minor, compat.patch) == parsed


def test_version_parse_rejects_garbage() -> None:
    with pytest.raises(BackendError, match="cannot read TensorRT's version"):
        _TrtCompat.parse("trt-next")


@pytest.mark.parametrize(
    ("version", "message"),
    [("8.5.3", "8.6 or newer"), ("8.2.1", "8.6 or newer"), ("9.2.0", "9.x early access")],
)
def test_unsupported_versions(version: str, message: str) -> None:
    with pytest.raises(BackendUnavailableError, match=message):
        _TrtCompat.parse(version).check_supported()


def test_newer_major_is_treated_as_11(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="samedge.runtimes.trt"):
        _TrtCompat.parse("12.1.0").check_supported()
    assert "assuming 11.x" in caplog.text
    for version in ("8.6.1", "10.0.1", "10.13.0", "11.2.0"):
        _TrtCompat.parse(version).check_supported()


FP32, FP16 = GraphPrecision(), GraphPrecision(fp16=True)
INT8, BOTH = GraphPrecision(int8=True), GraphPrecision(fp16=True, int8=True)


@pytest.mark.parametrize(
    ("version", "graph", "fp16", "plan"),
    [
        # 8.6: EXPLICIT_BATCH always; precision through builder flags (no strong typing);
        # a graph carrying FP16 also obeys precision constraints (its FP32 layers pinned).
        ("8.6.1", FP32, None, BuildPlan(True, False, False, False, "fp32")),
        ("8.6.1", FP32, True, BuildPlan(True, False, True, False, "fp16")),
        ("8.6.1", FP16, None, BuildPlan(True, False, True, False, "fp16", True)),
        ("8.6.1", FP16, True, BuildPlan(True, False, True, False, "fp16", True)),
        ("8.6.1", INT8, None, BuildPlan(True, False, False, True, "int8")),
        ("8.6.1", BOTH, None, BuildPlan(True, False, True, True, "int8", True)),
        ("8.6.1", INT8, True, BuildPlan(True, False, True, True, "int8")),
        # 10.x: strongly typed, without precision flags, except fp16=True on an FP32 graph.
        ("10.13.0", FP32, None, BuildPlan(False, True, False, False, "fp32")),
        ("10.13.0", FP32, True, BuildPlan(False, False, True, False, "fp16")),
        ("10.0.1", FP16, None, BuildPlan(False, True, False, False, "strongly-typed (fp16)")),
        ("10.3.0", INT8, None, BuildPlan(False, True, False, False, "strongly-typed (int8)")),
        ("10.3.0", FP32, None, BuildPlan(False, True, False, False, "fp32")),
        (
            "10.13.0",
            BOTH,
            True,
            BuildPlan(False, True, False, False, "strongly-typed (int8+fp16)"),
        ),
        # 11.x: always strongly typed; no creation flag, no precision flags.
        ("11.0.0", FP32, None, BuildPlan(False, False, False, False, "fp32")),
        ("11.0.0", FP16, True, BuildPlan(False, False, False, False, "strongly-typed (fp16)")),
        ("11.2.0", INT8, None, BuildPlan(False, False, False, False, "strongly-typed (int8)")),
    ],
)
def test_build_plan_per_version(
    version: str, graph: GraphPrecision, fp16: bool | None, plan: BuildPlan
) -> None:
    assert _TrtCompat.parse(version).plan(graph, fp16) == plan


@pytest.mark.parametrize("version", ["8.6.1", "10.13.0"])
def test_fp16_flag_on_an_fp32_graph_warns_about_layernorm(
    version: str, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="samedge.runtimes.trt"):
        _TrtCompat.parse(version).plan(FP32, True)
    assert "LayerNorm" in caplog.text
    assert "samedge build --precision fp16" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="samedge.runtimes.trt"):
        _TrtCompat.parse(version).plan(FP16, None)  # the graph's own FP16: no flag, no warning
    assert "LayerNorm" not in caplog.text


@pytest.mark.parametrize(
    ("version", "opset", "refused"),
    [("8.6.1", 17, False), ("8.6.1", 18, True), ("8.6.1", 20, True), ("10.3.0", 20, False)],
)
def test_opset_above_17_is_refused_on_8x(version: str, opset: int, refused: bool) -> None:
    compat = _TrtCompat.parse(version)
    if not refused:
        compat.check_opset({"": opset, "com.microsoft": 1}, "decoder.onnx")
        return
    with pytest.raises(InputError, match=rf"decoder.onnx: ONNX opset {opset}.*up to 17") as info:
        compat.check_opset({"": opset}, "decoder.onnx")
    assert "samedge export --opset 17" in str(info.value)


@pytest.mark.parametrize(
    ("version", "graph", "fp16", "message"),
    [
        ("10.13.0", FP16, False, "fp16=False insists on FP32, but the graph carries fp16"),
        ("8.6.1", INT8, False, "graph carries int8"),
        ("10.13.0", INT8, True, "cannot add FP16 to a strongly typed INT8 graph"),
        ("11.0.0", FP32, True, "FP16 builder flag, which TensorRT 11.0.0 removed"),
    ],
)
def test_build_plan_refuses_contradictions(
    version: str, graph: GraphPrecision, fp16: bool, message: str
) -> None:
    with pytest.raises(InputError, match=message):
        _TrtCompat.parse(version).plan(graph, fp16)


# -- what a graph carries, and the profile ------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "expected"),
    [("fp32", FP32), ("fp16", FP16), ("int8", INT8)],
)
def test_graph_precision_from_onnx_content(
    kind: str, expected: GraphPrecision, tmp_path: Path
) -> None:
    path = make_graph(tmp_path / f"{kind}.onnx", kind)
    got = GraphPrecision.of(read_onnx_summary(path))
    assert got == expected
    assert got.carried == (kind != "fp32")


def test_graph_with_fp16_inputs_carries_fp16(tmp_path: Path) -> None:
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT16, ["B", 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT16, ["B", 4])
    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g", [x], [y])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    onnx.save(model, tmp_path / "half.onnx")
    assert GraphPrecision.of(read_onnx_summary(tmp_path / "half.onnx")) == FP16


DECODER_INPUTS = [
    ValueInfo("image_embeddings", 1, (1, 256, 16, 16)),
    ValueInfo("point_coords", 1, ("B", "N", 2)),
    ValueInfo("point_labels", 1, ("B", "N")),
    ValueInfo("mask_input", 1, ("B", 1, 64, 64)),
    ValueInfo("has_mask_input", 1, ("B",)),
]


def test_profile_covers_objects_and_points() -> None:
    cfg = TensorRTConfig(max_objects=8, max_points=6, opt_objects=3)
    shapes = profile_shapes(DECODER_INPUTS, cfg)
    assert "image_embeddings" not in shapes  # static: no profile entry
    assert shapes["point_coords"] == ProfileShape((1, 1, 2), (3, 2, 2), (8, 6, 2))
    assert shapes["point_labels"] == ProfileShape((1, 1), (3, 2), (8, 6))
    assert shapes["mask_input"] == ProfileShape((1, 1, 64, 64), (3, 1, 64, 64), (8, 1, 64, 64))
    assert shapes["has_mask_input"] == ProfileShape((1,), (3,), (8,))


def test_profile_of_a_static_encoder_is_empty() -> None:
    assert profile_shapes([ValueInfo("image", 1, (1, 3, 1024, 1024))], TensorRTConfig()) == {}


def test_profile_opt_points_never_exceeds_max() -> None:
    shapes = profile_shapes(DECODER_INPUTS, TensorRTConfig(max_points=1))
    assert shapes["point_labels"] == ProfileShape((1, 1), (1, 1), (16, 1))


def test_profile_of_sam2_memory_attention_uses_the_exported_maxima() -> None:
    # M (memory frames) and P (object pointers) are bounded by the export, not by
    # max_points: SAM 2's bank holds up to 19 pointers.
    from samedge.runtimes._trt_plan import memory_dims

    meta = {
        "samedge.memory": '{"num_maskmem": 7, "max_pointers_in_encoder": 16, '
        '"max_memory_frames": 10, "max_pointers": 19}'
    }
    inputs = [
        ValueInfo("vision_features", 1, (1, 256, 64, 64)),
        ValueInfo("memory_bank", 1, ("B", "M", 4096, 64)),
        ValueInfo("pointer_bank", 1, ("B", "P", 256)),
        ValueInfo("pointer_bank_offsets", 1, ("B", "P")),
    ]
    cfg = TensorRTConfig(max_objects=8, opt_objects=3)
    shapes = profile_shapes(inputs, cfg, memory_dims(meta))
    assert "vision_features" not in shapes
    assert shapes["memory_bank"] == ProfileShape(
        (1, 1, 4096, 64), (3, 7, 4096, 64), (8, 10, 4096, 64)
    )
    assert shapes["pointer_bank_offsets"] == ProfileShape((1, 1), (3, 16), (8, 19))
    assert memory_dims({}) == {}
    with pytest.raises(BackendError, match="re-export"):
        memory_dims({"samedge.memory": '{"num_maskmem": 7}'})


def test_memory_limits_name_memory_frames_not_points() -> None:
    # A memory bank over the engine's profile names what it counts and the tracker
    # setting that bounds it; it offers no TensorRTConfig field (the export bounds it).
    limits = {"memory_bank": ((1, 1, 16, 8), (4, 10, 16, 8))}
    feeds = {"memory_bank": np.zeros((2, 11, 16, 8), np.float32)}
    with pytest.raises(ProfileLimitError, match="11 memory frames") as info:
        TensorRTBackend._check_limits(limits, feeds)
    message = str(info.value)
    assert "max_conditioning_frames" in message
    assert "points" not in message
    assert "TensorRTConfig(" not in message


def test_profile_refuses_other_dynamic_axes() -> None:
    image = ValueInfo("image", 1, (1, 3, "H", "W"))
    with pytest.raises(BackendError, match=r"image: axis 2 \(H\) is dynamic"):
        profile_shapes([image], TensorRTConfig())


# -- the backend without TensorRT ------------------------------------------------------------


def test_constructor_is_cheap_and_checks_device(tmp_path: Path) -> None:
    path = make_graph(tmp_path / "g.onnx")
    assert not TensorRTBackend(path, device="cuda:0").is_loaded
    with pytest.raises(DeviceUnavailableError, match="TensorRT runs on NVIDIA GPUs only"):
        TensorRTBackend(path, device="cpu")
    with pytest.raises(InputError, match="disagree"):
        TensorRTBackend(path, TensorRTConfig(device_index=0), device="cuda:1")
    with pytest.raises(InputError, match="expected TensorRTConfig"):
        TensorRTBackend(path, {"max_objects": 4})  # type: ignore[arg-type]
    with pytest.raises(InputError, match="no such file"):
        TensorRTBackend(tmp_path / "missing.onnx")


def test_load_without_tensorrt_names_the_extra(tmp_path: Path) -> None:
    try:
        import tensorrt

        if hasattr(tensorrt, "Builder"):
            pytest.skip("TensorRT is installed here")
    except ImportError:
        pass
    backend = TensorRTBackend(make_graph(tmp_path / "g.onnx"))
    with pytest.raises(BackendUnavailableError, match=r"pip install samedge\[tensorrt\]") as info:
        backend.load()
    assert "JetPack" in str(info.value)
    assert not backend.is_loaded


# -- the whole backend on a fake TensorRT -------------------------------------------------


class FakeSetup(types.SimpleNamespace):
    memory: FakeMemory
    record: dict[str, Any]
    cache: Path

    def install(
        self, version: str = "10.13.0.35", during: Callable[[], None] | None = None
    ) -> None:
        execute = host_executor(self.memory, during)
        self.monkeypatch.setitem(
            sys.modules, "tensorrt", fake_tensorrt(version, self.record, execute)
        )
        self.monkeypatch.setattr(trt_build, "_LOGGER", None)

    def config(self, **kwargs: Any) -> TensorRTConfig:
        return TensorRTConfig(cache_dir=self.cache, **{"max_objects": 4, "max_points": 5, **kwargs})


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> FakeSetup:
    pytest.importorskip("onnx")
    memory = FakeMemory()
    monkeypatch.setattr(trt_mod, "get_cuda_memory", lambda api, index: memory)
    setup = FakeSetup(
        monkeypatch=monkeypatch,
        memory=memory,
        record={"builds": [], "executions": 0},
        cache=tmp_path / "cache",
    )
    setup.install()
    return setup


def test_fake_build_and_run_match_onnxruntime(fake: FakeSetup, tmp_path: Path) -> None:
    path = make_graph(tmp_path / "decoder.onnx")
    with TensorRTBackend(path, fake.config(opt_objects=2)) as backend:
        assert backend.precision == "fp32"
        assert backend.device == "Fake GPU (sm_87)"
        assert [(s.name, s.dtype, s.shape) for s in backend.inputs] == [
            ("point_coords", np.dtype(np.float32), ("B", "N", 2)),
            ("point_labels", np.dtype(np.float32), ("B", "N")),
        ]
        # Allocated at load, at the profile's maximum (B=4, N=5): coords and doubled
        # 4*5*2 floats, labels 4*5, total 4.
        assert fake.memory.device_allocations == 4
        assert sorted(a.nbytes for a in fake.memory.device.values()) == [16, 80, 160, 160]
        allocations = []
        for b, n in [(1, 2), (3, 5), (2, 1), (4, 4)]:
            feeds = make_feeds(b, n, seed=b * 10 + n)
            got = backend.infer(feeds)
            want = reference(path, feeds)
            assert set(got) == {"doubled", "total"}
            for name in want:
                np.testing.assert_array_equal(got[name], want[name])
            allocations.append(fake.memory.device_allocations)
    # Four I/O tensors allocated once at load; no call allocates (cudaFree syncs the device).
    assert allocations == [4, 4, 4, 4]
    assert fake.memory.closed
    assert not fake.memory.device
    (build,) = fake.record["builds"]
    assert build["profile"] == {
        "point_coords": [[1, 1, 2], [2, 2, 2], [4, 5, 2]],
        "point_labels": [[1, 1], [2, 2], [4, 5]],
    }
    assert build["network_flags"] == 1 << 1  # strongly typed on 10.x
    assert build["builder_flags"] == []


def test_fake_results_survive_the_next_call(fake: FakeSetup, tmp_path: Path) -> None:
    path = make_graph(tmp_path / "decoder.onnx")
    with TensorRTBackend(path, fake.config()) as backend:
        first = backend.infer(make_feeds(2, 3, seed=1))
        kept = {k: v.copy() for k, v in first.items()}
        backend.infer(make_feeds(2, 3, seed=2))
    for name in kept:
        np.testing.assert_array_equal(first[name], kept[name])


@pytest.mark.parametrize(
    ("version", "kind", "fp16", "network_flags", "builder_flags", "precision"),
    [
        ("8.6.1.6", "fp32", None, 1 << 0, [], "fp32"),
        ("8.6.1.6", "fp32", True, 1 << 0, ["FP16"], "fp16"),
        ("8.6.1.6", "int8", None, 1 << 0, ["INT8"], "int8"),
        ("8.6.1.6", "fp16", None, 1 << 0, ["FP16", "OBEY_PRECISION_CONSTRAINTS"], "fp16"),
        ("10.13.0.35", "fp16", None, 1 << 1, [], "strongly-typed (fp16)"),
        ("10.13.0.35", "fp32", None, 1 << 1, [], "fp32"),
        ("10.13.0.35", "fp32", True, 0, ["FP16"], "fp16"),
        ("11.0.0.1", "int8", None, 0, [], "strongly-typed (int8)"),
        ("11.0.0.1", "fp32", None, 0, [], "fp32"),
    ],
)
def test_fake_versions_get_their_documented_flags(
    fake: FakeSetup,
    tmp_path: Path,
    version: str,
    kind: str,
    fp16: bool | None,
    network_flags: int,
    builder_flags: list[str],
    precision: str,
) -> None:
    fake.install(version)
    path = make_graph(tmp_path / f"{kind}.onnx", kind)
    cfg = fake.config(fp16=fp16, workspace_bytes=1 << 28, builder_optimization_level=2)
    with TensorRTBackend(path, cfg) as backend:
        assert backend.precision == precision
        feeds = make_feeds(2, 3)
        want = reference(path, feeds)
        for name, value in backend.infer(feeds).items():
            np.testing.assert_array_equal(value, want[name])
    (build,) = fake.record["builds"]
    assert build["network_flags"] == network_flags
    assert build["builder_flags"] == builder_flags
    assert build["pools"] == {"WORKSPACE": 1 << 28}
    assert build["level"] == 2


def test_fake_profile_limits_name_the_setting(fake: FakeSetup, tmp_path: Path) -> None:
    path = make_graph(tmp_path / "decoder.onnx")
    with TensorRTBackend(path, fake.config()) as backend:
        with pytest.raises(ProfileLimitError, match=r"5 objects .* at most 4.*max_objects=5"):
            backend.infer(make_feeds(5, 2))
        with pytest.raises(
            ProfileLimitError, match=r"6 points .* at most 5 .*padding.*max_points=6"
        ):
            backend.infer(make_feeds(1, 6))
        with pytest.raises(PromptError, match="needs at least 1"):
            backend.infer(make_feeds(0, 2))
        assert fake.record["executions"] == 0
        backend.infer(make_feeds(4, 5))  # the limits themselves are fine
    assert fake.record["executions"] == 1


def test_fake_cache_reuse_and_corrupt_entry_rebuilt(
    fake: FakeSetup, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = make_graph(tmp_path / "decoder.onnx")
    feeds = make_feeds(2, 2)
    for _ in range(2):
        with TensorRTBackend(path, fake.config()) as backend:
            backend.infer(feeds)
    assert len(fake.record["builds"]) == 1  # the second load came from the cache
    (blob,) = fake.cache.rglob("*.blob")

    # An entry with a valid checksum that TensorRT cannot load (e.g. another TensorRT build).
    meta = json.loads(blob.with_suffix(".json").read_text())
    EngineCache(fake.cache).put(CacheKey(**meta["key"]), b"engine from another TensorRT build")
    with caplog.at_level(logging.WARNING), TensorRTBackend(path, fake.config()) as backend:
        np.testing.assert_array_equal(
            backend.infer(feeds)["total"], reference(path, feeds)["total"]
        )
    assert "could not deserialize" in caplog.text
    assert len(fake.record["builds"]) == 2
    assert blob.read_bytes().startswith(b"FAKE")  # replaced by the rebuilt engine

    # Another profile is another engine.
    with TensorRTBackend(path, fake.config(max_objects=8)):
        pass
    assert len(fake.record["builds"]) == 3
    assert len(list(fake.cache.rglob("*.blob"))) == 2


def test_fake_cache_entry_can_be_dropped(fake: FakeSetup, tmp_path: Path) -> None:
    # What the Predictor does when a graph returns NaN: drop the engine it came from.
    path = make_graph(tmp_path / "decoder.onnx")
    with TensorRTBackend(path, fake.config()) as backend:
        backend.infer(make_feeds(1, 1))
        (blob,) = fake.cache.rglob("*.blob")
        assert backend.cache_path == blob
        assert backend.drop_cache() == blob
        assert not blob.exists()
        assert backend.drop_cache() is None  # nothing left to drop
    with TensorRTBackend(path, fake.config(use_cache=False)) as backend:
        backend.load()
        assert backend.cache_path is None
        assert backend.drop_cache() is None


def test_fake_without_cache_always_builds(fake: FakeSetup, tmp_path: Path) -> None:
    path = make_graph(tmp_path / "decoder.onnx")
    for _ in range(2):
        with TensorRTBackend(path, fake.config(use_cache=False)):
            pass
    assert len(fake.record["builds"]) == 2
    assert not fake.cache.exists()


def test_fake_parser_errors_are_reported_and_nothing_is_cached(
    fake: FakeSetup, tmp_path: Path
) -> None:
    path = make_graph(tmp_path / "reject.onnx")
    backend = TensorRTBackend(path, fake.config())
    with pytest.raises(BackendError, match=r"ONNX parser rejected.*unsupported by the fake"):
        backend.load()
    assert not backend.is_loaded
    assert fake.memory.closed
    assert not list(fake.cache.rglob("*.blob")) if fake.cache.exists() else True


def test_fake_failed_build_leaves_no_cache_entry(fake: FakeSetup, tmp_path: Path) -> None:
    fake.record["fail_build"] = True
    backend = TensorRTBackend(make_graph(tmp_path / "decoder.onnx"), fake.config())
    with pytest.raises(BackendError, match="could not build an engine"):
        backend.load()
    assert fake.memory.closed
    assert not fake.cache.exists() or not list(fake.cache.rglob("*.blob"))


def test_fake_unsupported_version_is_refused(fake: FakeSetup, tmp_path: Path) -> None:
    fake.install("8.5.3.1")
    with pytest.raises(BackendUnavailableError, match=r"8\.6 or newer"):
        TensorRTBackend(make_graph(tmp_path / "decoder.onnx"), fake.config()).load()
    assert fake.record["builds"] == []


def test_fake_unwritable_cache_still_runs(
    fake: FakeSetup, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    fake.cache.write_text("a file where the cache directory should be")
    path = make_graph(tmp_path / "decoder.onnx")
    with caplog.at_level(logging.WARNING), TensorRTBackend(path, fake.config()) as backend:
        feeds = make_feeds(1, 2)
        np.testing.assert_array_equal(
            backend.infer(feeds)["total"], reference(path, feeds)["total"]
        )
    assert "not cached" in caplog.text


@pytest.mark.parametrize(
    ("kind", "pinned"),
    [
        # The graph's FP32 layers; the FP16 constant is left to the FP16 flag.
        ("fp16", ["ReduceSum_0", "Cast_1", "Mul_2"]),
        # Q/DQ layers and the layer reading the DequantizeLinear output are left to
        # explicit quantization.
        ("int8+fp16", ["Constant:scale", "ReduceSum_0", "Cast_1"]),
    ],
)
def test_fake_8x_fp16_graph_keeps_its_fp32_layers(
    fake: FakeSetup, tmp_path: Path, kind: str, pinned: list[str]
) -> None:
    fake.install("8.6.1.6")
    path = make_graph(tmp_path / "decoder.onnx", kind)
    with TensorRTBackend(path, fake.config()) as backend:
        feeds = make_feeds(2, 3)
        want = reference(path, feeds)
        for name, value in backend.infer(feeds).items():
            np.testing.assert_array_equal(value, want[name])
    (build,) = fake.record["builds"]
    assert "OBEY_PRECISION_CONSTRAINTS" in build["builder_flags"]
    assert "FP16" in build["builder_flags"]
    assert build["pinned"] == [(name, "FLOAT", [0]) for name in pinned]


def test_fake_10x_builds_carried_fp16_strongly_typed_without_pinning(
    fake: FakeSetup, tmp_path: Path
) -> None:
    with TensorRTBackend(make_graph(tmp_path / "d.onnx", "int8+fp16"), fake.config()) as backend:
        assert backend.precision == "strongly-typed (int8+fp16)"
    (build,) = fake.record["builds"]
    assert build["network_flags"] == 1 << 1
    assert build["builder_flags"] == []
    assert build["pinned"] == []


def test_fake_8x_refuses_opset_18_before_building(fake: FakeSetup, tmp_path: Path) -> None:
    path = make_graph(tmp_path / "decoder.onnx", opset=18)
    fake.install("8.6.1.6")
    backend = TensorRTBackend(path, fake.config())
    with pytest.raises(InputError, match=r"opset 18.*samedge export --opset 17"):
        backend.load()
    assert fake.record["builds"] == []
    assert not backend.is_loaded
    fake.install("10.3.0.30")  # JetPack 6.1/6.2's TensorRT parses it
    with TensorRTBackend(path, fake.config()) as backend:
        backend.infer(make_feeds(1, 2))
    assert len(fake.record["builds"]) == 1


@pytest.mark.parametrize(
    ("integrated", "workspace", "expected"),
    [
        (True, None, {"WORKSPACE": 2 << 30}),  # a quarter of the 8 GiB the CPU shares
        (True, 1 << 28, {"WORKSPACE": 1 << 28}),  # the user's setting wins
        (False, None, {}),  # a discrete GPU keeps TensorRT's default
    ],
)
def test_fake_workspace_is_capped_on_integrated_gpus(
    fake: FakeSetup, tmp_path: Path, integrated: bool, workspace: int | None, expected: dict
) -> None:
    fake.memory.integrated, fake.memory.total = integrated, 8 << 30
    cfg = fake.config(workspace_bytes=workspace)
    with TensorRTBackend(make_graph(tmp_path / "decoder.onnx"), cfg):
        pass
    (build,) = fake.record["builds"]
    assert build["pools"] == expected


def test_fake_timing_cache_is_kept_beside_the_engines(fake: FakeSetup, tmp_path: Path) -> None:
    path = make_graph(tmp_path / "decoder.onnx")
    with TensorRTBackend(path, fake.config()):
        pass
    (timing,) = (fake.cache / "tensorrt").glob("timing-*.cache")
    assert timing.name == "timing-10.13.0.35-sm87-Fake-GPU.cache"
    assert timing.read_bytes() == b"TIMING|build"
    # Another profile is another engine, built with the tactics timed by the first build.
    with TensorRTBackend(path, fake.config(max_objects=8)):
        pass
    assert [b["timing_cache"] for b in fake.record["builds"]] == [b"", b"TIMING|build"]
    assert timing.read_bytes() == b"TIMING|build|build"
    # A cache TensorRT refuses (another GPU's) is replaced by a fresh one; the build goes on.
    timing.write_bytes(b"FOREIGN timing cache")
    with TensorRTBackend(path, fake.config(max_objects=2)):
        pass
    assert fake.record["builds"][-1]["timing_cache"] == b""
    assert timing.read_bytes() == b"TIMING|build"


def test_fake_without_cache_keeps_no_timing_cache(fake: FakeSetup, tmp_path: Path) -> None:
    with TensorRTBackend(make_graph(tmp_path / "decoder.onnx"), fake.config(use_cache=False)):
        pass
    assert fake.record["builds"][0]["timing_cache"] is None
    assert not fake.cache.exists()


class _WatchedLock:
    """``threading.Lock`` that reports which threads have started to wait for it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.waiting: dict[str, threading.Event] = {}

    def __enter__(self) -> bool:
        self.waiting.setdefault(threading.current_thread().name, threading.Event()).set()
        return self._lock.__enter__()

    def __exit__(self, *exc: object) -> None:
        self._lock.__exit__(*exc)


def test_fake_close_waits_for_a_running_infer(fake: FakeSetup, tmp_path: Path) -> None:
    executing, proceed = threading.Event(), threading.Event()

    def during() -> None:  # runs inside execute_async_v3
        executing.set()
        assert proceed.wait(timeout=60)

    fake.install(during=during)
    path = make_graph(tmp_path / "decoder.onnx")
    backend = TensorRTBackend(path, fake.config())
    backend.load()
    lock = _WatchedLock()
    backend._lock = lock  # type: ignore[assignment]
    feeds = make_feeds(3, 4)
    results: dict[str, Any] = {}

    def run() -> None:
        results["out"] = backend.infer(feeds)

    infer_thread = threading.Thread(target=run, name="infer")
    close_thread = threading.Thread(target=backend.close, name="close")
    infer_thread.start()
    assert executing.wait(timeout=60)
    close_thread.start()
    # close() has reached the lock while execute_async_v3 is still running.
    assert lock.waiting.setdefault("close", threading.Event()).wait(timeout=60)
    assert fake.memory.device  # nothing freed yet
    proceed.set()
    infer_thread.join(timeout=60)
    close_thread.join(timeout=60)
    assert not fake.memory.freed_while_executing
    assert not fake.memory.device  # freed once the call had finished
    assert fake.memory.closed
    want = reference(path, feeds)
    for name in want:
        np.testing.assert_array_equal(results["out"][name], want[name])
    # A call that reaches the engine after close() gets a clear error, not freed memory.
    with pytest.raises(BackendError, match=r"decoder.onnx: TensorRT backend used after close"):
        backend._infer(feeds)


# -- the real thing ------------------------------------------------------------------------


def _decoder_feeds(backend: TensorRTBackend, b: int, n: int, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    feeds = {}
    for spec in backend.inputs:
        shape = tuple(
            d if isinstance(d, int) else (b if axis == 0 else n)
            for axis, d in enumerate(spec.shape)
        )
        feeds[spec.name] = rng.standard_normal(shape).astype(spec.dtype)
    if "point_labels" in feeds:
        feeds["point_labels"] = rng.integers(0, 2, size=feeds["point_labels"].shape).astype(
            np.float32
        )
        feeds["point_coords"] = (rng.random(feeds["point_coords"].shape) * 200).astype(np.float32)
    if "has_mask_input" in feeds:
        feeds["has_mask_input"] = np.zeros_like(feeds["has_mask_input"])
    return feeds


@pytest.mark.tensorrt
@pytest.mark.gpu
def test_real_tiny_graph_with_dynamic_batch(tmp_path: Path) -> None:
    path = make_graph(tmp_path / "decoder.onnx")
    cfg = TensorRTConfig(max_objects=4, max_points=5, cache_dir=tmp_path / "cache")
    with TensorRTBackend(path, cfg) as backend:
        for b, n in [(1, 2), (4, 5), (2, 3)]:
            feeds = make_feeds(b, n, seed=b + n)
            want = reference(path, feeds)
            for name, value in backend.infer(feeds).items():
                np.testing.assert_allclose(value, want[name], rtol=1e-5, atol=1e-5)
        with pytest.raises(ProfileLimitError, match="max_objects=5"):
            backend.infer(make_feeds(5, 2))


@pytest.mark.tensorrt
@pytest.mark.gpu
@pytest.mark.parametrize("kind", ["fp16", "int8"])
def test_real_graph_carrying_its_precision_builds(kind: str, tmp_path: Path) -> None:
    path = make_graph(tmp_path / f"{kind}.onnx", kind)
    cfg = TensorRTConfig(max_objects=2, max_points=3, cache_dir=tmp_path / "cache")
    with TensorRTBackend(path, cfg) as backend:
        assert kind in backend.precision
        feeds = make_feeds(2, 3)
        want = reference(path, feeds)
        for name, value in backend.infer(feeds).items():
            np.testing.assert_allclose(value, want[name], rtol=2e-2, atol=2e-2)


@pytest.mark.tensorrt
@pytest.mark.gpu
def test_real_sam_decoder_matches_onnxruntime(
    reduced_sam_dir: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = reduced_sam_dir.dir / "decoder.onnx"
    cfg = TensorRTConfig(max_objects=4, max_points=6, cache_dir=tmp_path / "cache")
    with caplog.at_level(logging.INFO, logger="samedge.runtimes.trt"):
        with TensorRTBackend(path, cfg) as backend:
            assert backend.precision == "fp32"
            for b, n in [(1, 2), (4, 6), (3, 3)]:
                feeds = _decoder_feeds(backend, b, n, seed=b)
                want = reference(path, feeds)
                got = backend.infer(feeds)
                # FP32 engines may use TF32 on Ampere and newer: compare loosely.
                for name in want:
                    np.testing.assert_allclose(got[name], want[name], rtol=2e-2, atol=5e-2)
            with pytest.raises(ProfileLimitError, match="max_points=7"):
                backend.infer(_decoder_feeds(backend, 1, 7, seed=0))
        with TensorRTBackend(path, cfg) as again:  # from the cache
            again.infer(_decoder_feeds(again, 1, 2, seed=0))
    assert caplog.text.count("building the TensorRT engine") == 1

    (blob,) = (tmp_path / "cache").rglob("*.blob")
    meta = json.loads(blob.with_suffix(".json").read_text())
    EngineCache(tmp_path / "cache").put(CacheKey(**meta["key"]), b"\x00" * 4096)
    caplog.clear()
    with caplog.at_level(logging.INFO), TensorRTBackend(path, cfg) as rebuilt:
        feeds = _decoder_feeds(rebuilt, 2, 2, seed=5)
        np.testing.assert_allclose(
            rebuilt.infer(feeds)["iou_predictions"],
            reference(path, feeds)["iou_predictions"],
            rtol=2e-2,
            atol=5e-2,
        )
    assert "building the TensorRT engine" in caplog.text
    assert "discarded" in caplog.text
