"""A fake ``tensorrt`` module and tiny decoder-like graphs, for running the TensorRT backend
without TensorRT.

The fake follows the documented Python API that samedge calls (names checked
against NVIDIA's stubs by test_trt_types.py): builder, network (its layers read
from the ONNX file, with the types ONNX shape inference gives them), parser,
builder config (flags, pools, profiles, timing cache), runtime, engine and
execution context. What ``execute_async_v3`` does is the caller's choice:

* :func:`host_executor` over :class:`FakeMemory` (host arrays behind fake
  device addresses) computes with ONNX Runtime: the unit tests;
* ``benchmarks/gpu_check.py`` passes one that copies between real CUDA
  addresses on the given stream.

Shapes (output shapes for the set input shapes) come from ONNX Runtime either way.
"""

from __future__ import annotations

import contextlib
import json
import types
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from samedge.runtimes.cuda_mem import CudaApi

# -- tiny graphs ----------------------------------------------------------------------

GRAPH_KINDS = ("fp32", "fp16", "int8", "int8+fp16", "identity")


def make_graph(path: Path, kind: str = "fp32", opset: int = 13) -> Path:
    """A graph with the decoder's dynamic axes: ``point_coords [B,N,2]``, ``point_labels [B,N]``.

    Outputs ``doubled = 2 * point_coords`` and ``total = point_labels.sum(1)``.
    ``kind``: ``"fp32"``; ``"fp16"`` (the 2.0 is an FP16 initializer, cast up);
    ``"int8"`` (point_coords goes through QuantizeLinear/DequantizeLinear);
    ``"int8+fp16"`` (both); ``"identity"`` (outputs ``coords_out`` and
    ``labels_out``, copies of the inputs).
    """
    import onnx
    from onnx import TensorProto, helper

    if kind not in GRAPH_KINDS:
        raise ValueError(f"kind: got {kind!r}, expected one of {GRAPH_KINDS}")
    f32 = TensorProto.FLOAT
    inputs = [
        helper.make_tensor_value_info("point_coords", f32, ["B", "N", 2]),
        helper.make_tensor_value_info("point_labels", f32, ["B", "N"]),
    ]
    if kind == "identity":
        outputs = [
            helper.make_tensor_value_info("coords_out", f32, ["B", "N", 2]),
            helper.make_tensor_value_info("labels_out", f32, ["B", "N"]),
        ]
        nodes = [
            helper.make_node("Identity", ["point_coords"], ["coords_out"]),
            helper.make_node("Identity", ["point_labels"], ["labels_out"]),
        ]
        inits = []
    else:
        outputs = [
            helper.make_tensor_value_info("doubled", f32, ["B", "N", 2]),
            helper.make_tensor_value_info("total", f32, ["B"]),
        ]
        inits = [helper.make_tensor("axes", TensorProto.INT64, [1], [1])]
        nodes = [helper.make_node("ReduceSum", ["point_labels", "axes"], ["total"], keepdims=0)]
        coords = "point_coords"
        if "fp16" in kind:
            inits.append(helper.make_tensor("two16", TensorProto.FLOAT16, [], [2.0]))
            nodes.append(helper.make_node("Cast", ["two16"], ["two"], to=f32))
        else:
            inits.append(helper.make_tensor("two", f32, [], [2.0]))
        if "int8" in kind:
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
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
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


# -- host memory standing in for the GPU ----------------------------------------------


class FakeMemory:
    """:class:`CudaMemory` over host arrays: "device" addresses index a dict of buffers."""

    api = CudaApi.CUDA_PYTHON
    device_index = 0
    stream = 7

    def __init__(self, *, integrated: bool = False, total: int = 8 << 30) -> None:
        self.device: dict[int, np.ndarray] = {}
        self.next_address = 0x10000
        self.device_allocations = 0
        self.closed = False
        self.integrated = integrated
        self.total = total
        self.executing = False  # set by host_executor while a fake execution runs
        self.freed_while_executing = False
        self.synchronized = 0

    def device_name(self) -> str:
        return "Fake GPU"

    def compute_capability(self) -> tuple[int, int]:
        return (8, 7)

    def is_integrated(self) -> bool:
        return self.integrated

    def total_memory(self) -> int:
        return self.total

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
        if self.executing:
            self.freed_while_executing = True
        del self.device[address]

    def create_stream(self) -> int:
        return self.stream

    def destroy_stream(self, stream: int) -> None:
        pass

    def memcpy_htod_async(self, dst: int, src: np.ndarray, stream: int) -> None:
        assert src.flags.c_contiguous
        assert src.dtype == np.uint8
        assert stream == self.stream
        self.device[dst][: src.nbytes] = src

    def memcpy_dtoh_async(self, dst: np.ndarray, src: int, stream: int) -> None:
        assert dst.flags.c_contiguous
        assert stream == self.stream
        dst[:] = self.device[src][: dst.nbytes]

    def synchronize(self, stream: int) -> None:
        self.synchronized += 1

    def close(self) -> None:
        self.closed = True


def host_executor(
    memory: FakeMemory, during: Callable[[], None] | None = None
) -> Callable[[Any, int], None]:
    """``execute_async_v3`` over :class:`FakeMemory`: read inputs, run ONNX Runtime, write outputs.

    ``during`` runs in the middle of the execution (tests use it to race ``close()``).
    """

    def execute(context: Any, stream: int) -> None:
        assert stream == memory.stream
        memory.executing = True
        try:
            feeds = {}
            for name, shape in context.shapes.items():
                dtype = np.dtype(context.engine.input_types[name])
                raw = memory.device[context.addresses[name]][: int(np.prod(shape)) * dtype.itemsize]
                feeds[name] = raw.view(dtype).reshape(shape)
            if during is not None:
                during()
            for name, value in context.run(feeds).items():
                target = memory.device[context.addresses[name]]
                target[: value.nbytes] = value.reshape(-1).view(np.uint8)
        finally:
            memory.executing = False

    return execute


# -- the fake module ------------------------------------------------------------------

_ORT_TYPES = {"tensor(float)": ("FLOAT", np.float32), "tensor(float16)": ("HALF", np.float16)}
# onnx.TensorProto.DataType -> TensorRT DataType name.
_ONNX_TO_TRT = {1: "FLOAT", 10: "HALF", 3: "INT8", 6: "INT32", 7: "INT64", 9: "BOOL"}
_LAYER_TYPES = {
    "QuantizeLinear": "QUANTIZE",
    "DequantizeLinear": "DEQUANTIZE",
    "Cast": "CAST",
    "Identity": "IDENTITY",
    "ReduceSum": "REDUCE",
}


def fake_tensorrt(
    version: str, record: dict[str, Any], execute: Callable[[Any, int], None]
) -> types.ModuleType:
    """A ``tensorrt`` module that follows the documented Python API.

    ``record`` collects what the backend did: ``builds`` (one dict per build:
    flags, pools, profile, pinned layers, timing cache), ``executions``.
    Set ``record["fail_build"]`` to make the build return None.
    """
    import onnxruntime as ort

    record.setdefault("builds", [])
    record.setdefault("executions", 0)
    trt: Any = types.ModuleType("tensorrt")
    trt.__version__ = version
    trt.NetworkDefinitionCreationFlag = types.SimpleNamespace(EXPLICIT_BATCH=0, STRONGLY_TYPED=1)
    trt.BuilderFlag = types.SimpleNamespace(
        FP16="FP16", INT8="INT8", OBEY_PRECISION_CONSTRAINTS="OBEY_PRECISION_CONSTRAINTS"
    )
    trt.MemoryPoolType = types.SimpleNamespace(WORKSPACE="WORKSPACE")
    trt.TensorIOMode = types.SimpleNamespace(INPUT="INPUT", OUTPUT="OUTPUT")
    trt.DataType = types.SimpleNamespace(
        **{n: types.SimpleNamespace(name=n) for n in {*_ONNX_TO_TRT.values(), "UINT8"}}
    )
    trt.LayerType = types.SimpleNamespace(
        **{n: n for n in {*_LAYER_TYPES.values(), "CONSTANT", "ELEMENTWISE"}}
    )
    trt.Dims = lambda values: tuple(int(v) for v in values)

    class ILogger:
        def __init__(self) -> None:
            pass

    class Tensor:
        def __init__(self, name: str, dtype: Any) -> None:
            self.name, self.dtype = name, dtype

    class Layer:
        def __init__(self, name: str, kind: str, inputs: list[Tensor], outputs: list[Tensor]):
            self.name, self.type = name, kind
            self._inputs, self._outputs = inputs, outputs
            self.precision_set: Any = None
            self.output_types: dict[int, Any] = {}

        num_inputs = property(lambda self: len(self._inputs))
        num_outputs = property(lambda self: len(self._outputs))

        def get_input(self, index: int) -> Tensor:
            return self._inputs[index]

        def get_output(self, index: int) -> Tensor:
            return self._outputs[index]

        @property
        def precision(self) -> Any:
            return self.precision_set

        @precision.setter
        def precision(self, value: Any) -> None:
            self.precision_set = value

        def set_output_type(self, index: int, dtype: Any) -> None:
            self.output_types[index] = dtype

    class Network:
        def __init__(self, flags: int) -> None:
            self.flags, self.path = flags, None
            self.layers: list[Layer] = []

        @property
        def num_layers(self) -> int:
            return len(self.layers)

        def get_layer(self, index: int) -> Layer:
            return self.layers[index]

        def read(self, path: str) -> None:
            self.path = path
            try:
                import onnx
            except ImportError:  # gpu_check's machines may lack onnx: a network without layers
                return
            model = onnx.shape_inference.infer_shapes(onnx.load(path))
            graph = model.graph
            kinds = {
                v.name: v.type.tensor_type.elem_type
                for v in (*graph.value_info, *graph.input, *graph.output)
            }
            kinds.update({i.name: i.data_type for i in graph.initializer})

            def tensor(name: str) -> Tensor:
                return Tensor(name, getattr(trt.DataType, _ONNX_TO_TRT.get(kinds[name], "UINT8")))

            for init in graph.initializer:
                self.layers.append(
                    Layer(f"Constant:{init.name}", "CONSTANT", [], [tensor(init.name)])
                )
            for i, node in enumerate(graph.node):
                self.layers.append(
                    Layer(
                        node.name or f"{node.op_type}_{i}",
                        _LAYER_TYPES.get(node.op_type, "ELEMENTWISE"),
                        [tensor(n) for n in node.input if n],
                        [tensor(n) for n in node.output],
                    )
                )

    class OnnxParser:
        def __init__(self, network: Network, logger: ILogger) -> None:
            assert isinstance(logger, ILogger)
            self.network, self.num_errors = network, 0

        def parse_from_file(self, path: str) -> bool:
            if Path(path).name.startswith("reject"):
                self.num_errors = 1
                return False
            self.network.read(path)
            return True

        def get_error(self, index: int) -> Any:
            return types.SimpleNamespace(desc=lambda: "node 0 (Mul): unsupported by the fake")

    class TimingCache:
        def __init__(self, data: bytes) -> None:
            self.data = data

        def serialize(self) -> bytes:
            return (self.data or b"TIMING") + b"|build"

    class BuilderConfig:
        def __init__(self) -> None:
            self.flags: set[str] = set()
            self.pools: dict[str, int] = {}
            self.profiles: list[Any] = []
            self.builder_optimization_level = 3
            self.timing: TimingCache | None = None

        def set_memory_pool_limit(self, pool: str, size: int) -> None:
            self.pools[pool] = size

        def set_flag(self, flag: str) -> None:
            self.flags.add(flag)

        def add_optimization_profile(self, profile: Any) -> int:
            self.profiles.append(profile)
            return len(self.profiles) - 1

        def create_timing_cache(self, data: bytes) -> TimingCache:
            return TimingCache(bytes(data))

        def set_timing_cache(self, cache: TimingCache, ignore_mismatch: bool) -> bool:
            assert ignore_mismatch is False
            if cache.data.startswith(b"FOREIGN"):  # another GPU's or TensorRT's cache
                return False
            self.timing = cache
            return True

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
                    "pinned": [
                        (layer.name, layer.precision_set.name, sorted(layer.output_types))
                        for layer in network.layers
                        if layer.precision_set is not None
                    ],
                    "timing_cache": None if config.timing is None else config.timing.data,
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

        def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
            names = [o.name for o in self.engine.session.get_outputs()]
            return dict(zip(names, self.engine.session.run(names, feeds), strict=True))

        def get_tensor_shape(self, name: str) -> tuple[int, ...]:
            if name in self.engine.input_types:
                return self.shapes[name]
            zeros = {n: np.zeros(s, self.engine.input_types[n]) for n, s in self.shapes.items()}
            return tuple(self.run(zeros)[name].shape)

        def execute_async_v3(self, stream_handle: int) -> bool:
            execute(self, stream_handle)
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
            return getattr(trt.DataType, _ORT_TYPES[self._info(name).type][0])

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
