"""TensorRT backend.

Three layers of tests:

* pure logic on any machine: config validation, the version table, profile
  shapes, what precision a graph carries;
* the whole backend on any machine against a *fake* ``tensorrt`` module and a
  host-memory fake of the CUDA layer. The fake follows the documented API
  (names checked by test_trt_types.py) and computes with ONNX Runtime, so the
  backend's own logic is exercised for real: flags per version, profile,
  staging buffers and their growth, the engine cache (reuse, corrupt entry
  rebuilt, nothing stored after a failure), profile-limit errors;
* the real thing, marked ``tensorrt`` and ``gpu``, on a machine with both.
"""

from __future__ import annotations

import contextlib
import json
import logging
import sys
import types
from collections.abc import Iterator
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
from samedge.runtimes import trt as trt_mod
from samedge.runtimes._graph import ValueInfo, read_onnx_summary
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

# -- tiny graphs ----------------------------------------------------------------------


def make_graph(path: Path, kind: str = "fp32") -> Path:
    """A graph with the decoder's dynamic axes: ``point_coords [B,N,2]``, ``point_labels [B,N]``.

    Outputs ``doubled = 2 * point_coords`` and ``total = point_labels.sum(1)``.
    ``kind``: ``"fp32"``; ``"fp16"`` (the 2.0 is an FP16 initializer, cast up);
    ``"int8"`` (point_coords goes through QuantizeLinear/DequantizeLinear).
    """
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    f32 = TensorProto.FLOAT
    inputs = [
        helper.make_tensor_value_info("point_coords", f32, ["B", "N", 2]),
        helper.make_tensor_value_info("point_labels", f32, ["B", "N"]),
    ]
    outputs = [
        helper.make_tensor_value_info("doubled", f32, ["B", "N", 2]),
        helper.make_tensor_value_info("total", f32, ["B"]),
    ]
    inits = [helper.make_tensor("axes", TensorProto.INT64, [1], [1])]
    nodes = [helper.make_node("ReduceSum", ["point_labels", "axes"], ["total"], keepdims=0)]
    coords = "point_coords"
    if kind == "fp16":
        inits.append(helper.make_tensor("two16", TensorProto.FLOAT16, [], [2.0]))
        nodes.append(helper.make_node("Cast", ["two16"], ["two"], to=f32))
    else:
        inits.append(helper.make_tensor("two", f32, [], [2.0]))
    if kind == "int8":
        inits += [
            helper.make_tensor("scale", f32, [], [1 / 64]),
            helper.make_tensor("zero", TensorProto.INT8, [], [0]),
        ]
        nodes += [
            helper.make_node("QuantizeLinear", ["point_coords", "scale", "zero"], ["q"]),
            helper.make_node("DequantizeLinear", ["q", "scale", "zero"], ["dq"]),
        ]
        coords = "dq"
    nodes.append(helper.make_node("Mul", [coords, "two"], ["doubled"]))
    graph = helper.make_graph(nodes, "tiny_decoder", inputs, outputs, inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, path)
    return path


def make_feeds(b: int, n: int, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        "point_coords": (rng.random((b, n, 2)) * 64).astype(np.float32),
        "point_labels": rng.integers(-1, 2, size=(b, n)).astype(np.float32),
    }


def reference(path: Path, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(names, feeds), strict=True))


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
        # 8.6: EXPLICIT_BATCH always; precision through builder flags (no strong typing).
        ("8.6.1", FP32, None, (True, False, False, False, "fp32")),
        ("8.6.1", FP32, True, (True, False, True, False, "fp16")),
        ("8.6.1", FP16, None, (True, False, True, False, "fp16")),
        ("8.6.1", INT8, None, (True, False, False, True, "int8")),
        ("8.6.1", BOTH, None, (True, False, True, True, "int8")),
        ("8.6.1", INT8, True, (True, False, True, True, "int8")),
        # 10.x: a graph with its own precision builds strongly typed, without flags.
        ("10.13.0", FP32, None, (False, False, False, False, "fp32")),
        ("10.13.0", FP32, True, (False, False, True, False, "fp16")),
        ("10.0.1", FP16, None, (False, True, False, False, "strongly-typed (fp16)")),
        ("10.3.0", INT8, None, (False, True, False, False, "strongly-typed (int8)")),
        ("10.13.0", BOTH, True, (False, True, False, False, "strongly-typed (int8+fp16)")),
        # 11.x: always strongly typed; no creation flag, no precision flags.
        ("11.0.0", FP32, None, (False, False, False, False, "fp32")),
        ("11.0.0", FP16, True, (False, False, False, False, "strongly-typed (fp16)")),
        ("11.2.0", INT8, None, (False, False, False, False, "strongly-typed (int8)")),
    ],
)
def test_build_plan_per_version(
    version: str, graph: GraphPrecision, fp16: bool | None, plan: tuple[Any, ...]
) -> None:
    got = _TrtCompat.parse(version).plan(graph, fp16)
    assert (got.explicit_batch, got.strongly_typed, got.fp16_flag, got.int8_flag) == plan[:4]
    assert got.precision == plan[4]


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


class FakeMemory:
    """:class:`CudaMemory` over host arrays: "device" addresses index a dict of buffers."""

    api = CudaApi.CUDA_PYTHON
    device_index = 0

    def __init__(self) -> None:
        self.device: dict[int, np.ndarray] = {}
        self.next_address = 0x10000
        self.device_allocations = 0
        self.closed = False

    def device_name(self) -> str:
        return "Fake GPU"

    def compute_capability(self) -> tuple[int, int]:
        return (8, 7)

    @contextlib.contextmanager
    def activate(self) -> Iterator[None]:
        yield

    def alloc_host(self, nbytes: int) -> np.ndarray:
        return np.zeros(nbytes, np.uint8)

    def free_host(self, buffer: np.ndarray) -> None:
        pass

    def alloc_device(self, nbytes: int) -> int:
        address = self.next_address
        self.next_address += nbytes + 256
        self.device[address] = np.zeros(nbytes, np.uint8)
        self.device_allocations += 1
        return address

    def free_device(self, address: int) -> None:
        del self.device[address]

    def create_stream(self) -> int:
        return 7

    def destroy_stream(self, stream: int) -> None:
        pass

    def memcpy_htod_async(self, dst: int, src: np.ndarray, stream: int) -> None:
        assert src.flags.c_contiguous
        assert src.dtype == np.uint8
        assert stream == 7
        self.device[dst][: src.nbytes] = src

    def memcpy_dtoh_async(self, dst: np.ndarray, src: int, stream: int) -> None:
        assert dst.flags.c_contiguous
        assert stream == 7
        dst[:] = self.device[src][: dst.nbytes]

    def synchronize(self, stream: int) -> None:
        pass

    def close(self) -> None:
        self.closed = True


_ORT_TYPES = {"tensor(float)": ("FLOAT", np.float32), "tensor(float16)": ("HALF", np.float16)}


def fake_tensorrt(version: str, memory: FakeMemory, record: dict[str, Any]) -> types.ModuleType:
    """A ``tensorrt`` module that follows the documented Python API and computes with ORT."""
    import onnxruntime as ort

    trt: Any = types.ModuleType("tensorrt")
    trt.__version__ = version
    trt.NetworkDefinitionCreationFlag = types.SimpleNamespace(EXPLICIT_BATCH=0, STRONGLY_TYPED=1)
    trt.BuilderFlag = types.SimpleNamespace(FP16="FP16", INT8="INT8")
    trt.MemoryPoolType = types.SimpleNamespace(WORKSPACE="WORKSPACE")
    trt.TensorIOMode = types.SimpleNamespace(INPUT="INPUT", OUTPUT="OUTPUT")
    trt.Dims = lambda values: tuple(int(v) for v in values)

    class ILogger:
        def __init__(self) -> None:
            pass

    class Network:
        def __init__(self, flags: int) -> None:
            self.flags, self.path = flags, None

    class OnnxParser:
        def __init__(self, network: Network, logger: ILogger) -> None:
            assert isinstance(logger, ILogger)
            self.network, self.num_errors = network, 0

        def parse_from_file(self, path: str) -> bool:
            if Path(path).name.startswith("reject"):
                self.num_errors = 1
                return False
            self.network.path = path
            return True

        def get_error(self, index: int) -> Any:
            return types.SimpleNamespace(desc=lambda: "node 0 (Mul): unsupported by the fake")

    class BuilderConfig:
        def __init__(self) -> None:
            self.flags: set[str] = set()
            self.pools: dict[str, int] = {}
            self.profiles: list[Any] = []
            self.builder_optimization_level = 3

        def set_memory_pool_limit(self, pool: str, size: int) -> None:
            self.pools[pool] = size

        def set_flag(self, flag: str) -> None:
            self.flags.add(flag)

        def add_optimization_profile(self, profile: Any) -> int:
            self.profiles.append(profile)
            return len(self.profiles) - 1

    class Profile:
        def __init__(self) -> None:
            self.shapes: dict[str, list[list[int]]] = {}

        def set_shape(self, name: str, low: Any, opt: Any, high: Any) -> None:
            self.shapes[name] = [list(low), list(opt), list(high)]

    class Builder:
        def __init__(self, logger: ILogger) -> None:
            assert isinstance(logger, ILogger)

        def create_network(self, flags: int = 0) -> Network:
            return Network(flags)

        def create_builder_config(self) -> BuilderConfig:
            return BuilderConfig()

        def create_optimization_profile(self) -> Profile:
            return Profile()

        def build_serialized_network(self, network: Network, config: BuilderConfig) -> Any:
            profile = config.profiles[0].shapes if config.profiles else {}
            record["builds"].append(
                {
                    "network_flags": network.flags,
                    "builder_flags": sorted(config.flags),
                    "pools": dict(config.pools),
                    "level": config.builder_optimization_level,
                    "profile": profile,
                }
            )
            if record.get("fail_build"):
                return None
            return b"FAKE" + json.dumps({"path": network.path, "profile": profile}).encode()

    class Context:
        def __init__(self, engine: Engine) -> None:
            self.engine = engine
            self.shapes: dict[str, tuple[int, ...]] = {}
            self.addresses: dict[str, int] = {}

        def set_input_shape(self, name: str, shape: tuple[int, ...]) -> bool:
            low, _, high = self.engine.profile[name]
            if not all(lo <= s <= hi for s, lo, hi in zip(shape, low, high, strict=True)):
                return False
            self.shapes[name] = tuple(shape)
            return True

        def set_tensor_address(self, name: str, address: int) -> bool:
            self.addresses[name] = address
            return True

        def _run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
            names = [o.name for o in self.engine.session.get_outputs()]
            return dict(zip(names, self.engine.session.run(names, feeds), strict=True))

        def get_tensor_shape(self, name: str) -> tuple[int, ...]:
            if name in self.engine.input_types:
                return self.shapes[name]
            zeros = {n: np.zeros(s, self.engine.input_types[n]) for n, s in self.shapes.items()}
            return tuple(self._run(zeros)[name].shape)

        def execute_async_v3(self, stream_handle: int) -> bool:
            assert stream_handle == 7
            feeds = {}
            for name, shape in self.shapes.items():
                dtype = np.dtype(self.engine.input_types[name])
                raw = memory.device[self.addresses[name]][: int(np.prod(shape)) * dtype.itemsize]
                feeds[name] = raw.view(dtype).reshape(shape)
            for name, value in self._run(feeds).items():
                memory.device[self.addresses[name]][: value.nbytes] = value.reshape(-1).view(
                    np.uint8
                )
            record["executions"] += 1
            return True

    class Engine:
        def __init__(self, meta: dict[str, Any]) -> None:
            self.session = ort.InferenceSession(meta["path"], providers=["CPUExecutionProvider"])
            self.profile = meta["profile"]
            self.input_types = {i.name: _ORT_TYPES[i.type][1] for i in self.session.get_inputs()}
            self.io = [*self.session.get_inputs(), *self.session.get_outputs()]

        @property
        def num_io_tensors(self) -> int:
            return len(self.io)

        def get_tensor_name(self, index: int) -> str:
            return str(self.io[index].name)

        def _info(self, name: str) -> Any:
            return next(i for i in self.io if i.name == name)

        def get_tensor_mode(self, name: str) -> str:
            return "INPUT" if name in self.input_types else "OUTPUT"

        def get_tensor_dtype(self, name: str) -> Any:
            return types.SimpleNamespace(name=_ORT_TYPES[self._info(name).type][0])

        def get_tensor_shape(self, name: str) -> tuple[int, ...]:
            return tuple(d if isinstance(d, int) else -1 for d in self._info(name).shape)

        def get_tensor_profile_shape(self, name: str, index: int) -> list[tuple[int, ...]]:
            assert index == 0
            return [tuple(s) for s in self.profile[name]]

        def create_execution_context(self) -> Context:
            return Context(self)

    class Runtime:
        def __init__(self, logger: ILogger) -> None:
            assert isinstance(logger, ILogger)

        def deserialize_cuda_engine(self, data: bytes) -> Engine | None:
            if not bytes(data).startswith(b"FAKE"):
                return None
            return Engine(json.loads(bytes(data)[4:]))

    for cls in (ILogger, OnnxParser, Builder, Runtime):
        setattr(trt, cls.__name__, cls)
    return trt


class FakeSetup(types.SimpleNamespace):
    memory: FakeMemory
    record: dict[str, Any]
    cache: Path

    def install(self, version: str = "10.13.0.35") -> None:
        self.monkeypatch.setitem(
            sys.modules, "tensorrt", fake_tensorrt(version, self.memory, self.record)
        )
        self.monkeypatch.setattr(trt_mod, "_LOGGER", None)

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
        allocations = []
        for b, n in [(1, 2), (3, 5), (2, 1), (4, 4)]:
            feeds = make_feeds(b, n, seed=b * 10 + n)
            got = backend.infer(feeds)
            want = reference(path, feeds)
            assert set(got) == {"doubled", "total"}
            for name in want:
                np.testing.assert_array_equal(got[name], want[name])
            allocations.append(fake.memory.device_allocations)
    # Four I/O tensors allocated once; regrown for (3, 5) and (4, 4), reused for (2, 1).
    assert allocations == [4, 8, 8, 12]
    assert fake.memory.closed
    assert not fake.memory.device
    (build,) = fake.record["builds"]
    assert build["profile"] == {
        "point_coords": [[1, 1, 2], [2, 2, 2], [4, 5, 2]],
        "point_labels": [[1, 1], [2, 2], [4, 5]],
    }
    assert build["network_flags"] == 0
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
        ("10.13.0.35", "fp16", None, 1 << 1, [], "strongly-typed (fp16)"),
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
