"""What the runtimes need to know about an ONNX file, read without loading its weights.

Every backend needs the same few facts about a graph: the symbolic names of its
dynamic dimensions (OpenVINO and TensorRT report them only as ``?`` / ``-1``),
the precision it carries (metadata written by samedge, Q/DQ nodes, fp16
initializers), and a content hash over the graph *and* its external-data files
for the engine cache key. The ``onnx`` package is not a runtime dependency, and
``onnx.load`` would read every weight, so this module walks the protobuf wire
format directly over a memory map: initializer payloads are skipped by their
length prefix and never touched, which keeps a 350 MB ViT-B encoder cheap.

Field numbers follow onnx/onnx.proto3 (ModelProto.graph = 7, GraphProto.input =
11, ...); the wire format is protobuf's and has been stable since proto2.
"""

from __future__ import annotations

import functools
import hashlib
import json
import mmap
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from samedge.errors import InputError

__all__ = [
    "OnnxSummary",
    "ValueInfo",
    "numpy_dtype",
    "onnx_content_hash",
    "read_onnx_metadata",
    "read_onnx_summary",
    "unnamed_dim",
]

Dim = int | str

# onnx.TensorProto.DataType values -> numpy (bfloat16 and the fp8/int4 family have
# no numpy dtype; they never appear at samedge's graph boundaries).
_ONNX_TO_NUMPY: dict[int, np.dtype] = {
    1: np.dtype(np.float32),
    2: np.dtype(np.uint8),
    3: np.dtype(np.int8),
    4: np.dtype(np.uint16),
    5: np.dtype(np.int16),
    6: np.dtype(np.int32),
    7: np.dtype(np.int64),
    9: np.dtype(np.bool_),
    10: np.dtype(np.float16),
    11: np.dtype(np.float64),
    12: np.dtype(np.uint32),
    13: np.dtype(np.uint64),
}
FLOAT, FLOAT16, BFLOAT16 = 1, 10, 16
_QDQ_OPS = frozenset({"QuantizeLinear", "DequantizeLinear"})
PRECISIONS = ("fp32", "fp16", "bf16", "int8")


def numpy_dtype(onnx_type: int) -> np.dtype | None:
    """numpy dtype of an ONNX ``TensorProto.DataType`` value (``None`` when numpy has none)."""
    return _ONNX_TO_NUMPY.get(onnx_type)


def unnamed_dim(tensor: str, axis: int) -> str:
    """Symbolic name for a dynamic dimension the graph left unnamed.

    Unique per tensor and axis, so that two unnamed dimensions are never
    assumed equal when feeds are checked against each other.
    """
    return f"{tensor}_dim{axis}"


@dataclass(frozen=True)
class ValueInfo:
    """A graph input or output as declared in the ONNX file.

    Attributes:
        name: Tensor name.
        elem_type: ONNX ``TensorProto.DataType`` value (0 when undeclared).
        shape: Fixed sizes as ints, dynamic ones as their symbolic names.
    """

    name: str
    elem_type: int
    shape: tuple[Dim, ...]


@dataclass(frozen=True)
class OnnxSummary:
    """Facts about one ONNX file, gathered without reading its weights.

    Attributes:
        inputs: Graph inputs that are fed at run time (initializers excluded).
        outputs: Graph outputs.
        metadata: ``metadata_props`` key/values.
        opsets: Domain (``""`` for the default) -> opset version.
        quantized: The graph holds QuantizeLinear/DequantizeLinear nodes.
        initializer_elements: ONNX data type -> number of initializer elements.
        external_data: Relative paths of external-data files the weights live in.
    """

    inputs: tuple[ValueInfo, ...]
    outputs: tuple[ValueInfo, ...]
    metadata: dict[str, str] = field(default_factory=dict)
    opsets: dict[str, int] = field(default_factory=dict)
    quantized: bool = False
    initializer_elements: dict[int, int] = field(default_factory=dict)
    external_data: tuple[str, ...] = ()

    @property
    def precision(self) -> str:
        """``"fp32"``, ``"fp16"``, ``"bf16"`` or ``"int8"``: what the graph carries.

        samedge's own ``samedge.precision`` metadata wins; otherwise Q/DQ nodes
        mean int8, and the float type holding most initializer elements decides.
        """
        tagged = self.metadata.get("samedge.precision")
        if tagged is not None:
            try:
                value = json.loads(tagged)
            except ValueError:
                value = tagged
            if value in PRECISIONS:
                return str(value)
        if self.quantized:
            return "int8"
        names = {FLOAT: "fp32", FLOAT16: "fp16", BFLOAT16: "bf16"}
        counts = {t: self.initializer_elements.get(t, 0) for t in names}
        if not any(counts.values()):
            # No float weights at all: judge by the declared inputs.
            return "fp16" if any(v.elem_type == FLOAT16 for v in self.inputs) else "fp32"
        return names[max(counts, key=lambda t: counts[t])]

    def dims(self, tensor: str) -> tuple[Dim, ...] | None:
        """Declared shape of an input or output, ``None`` when the graph has no such tensor."""
        for info in (*self.inputs, *self.outputs):
            if info.name == tensor:
                return info.shape
        return None


# -- protobuf wire format ---------------------------------------------------------


class _WireError(ValueError):
    pass


def _varint(buf: memoryview | bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(buf):
            raise _WireError("truncated varint")
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise _WireError("varint too long")


def _fields(buf: memoryview, start: int, end: int) -> Iterator[tuple[int, int, int, int]]:
    """Yield ``(field_number, wire_type, a, b)`` for each field in ``buf[start:end]``.

    For varints ``a`` is the value; for length-delimited fields ``buf[a:b]`` is
    the payload; fixed-width fields are skipped over (``a == b``).
    """
    pos = start
    while pos < end:
        tag, pos = _varint(buf, pos)
        number, wire = tag >> 3, tag & 7
        if wire == 0:
            value, pos = _varint(buf, pos)
            yield number, wire, value, value
        elif wire == 2:
            length, pos = _varint(buf, pos)
            if pos + length > end:
                raise _WireError("length-delimited field runs past its message")
            yield number, wire, pos, pos + length
            pos += length
        elif wire == 1:
            pos += 8
        elif wire == 5:
            pos += 4
        else:
            raise _WireError(f"unsupported wire type {wire}")
    if pos != end:
        raise _WireError("message ends inside a field")


def _signed64(value: int) -> int:
    return value - (1 << 64) if value >= 1 << 63 else value


def _text(buf: memoryview, a: int, b: int) -> str:
    return bytes(buf[a:b]).decode("utf-8", errors="replace")


def _string_pair(buf: memoryview, a: int, b: int) -> tuple[str, str]:
    key = value = ""
    for number, wire, x, y in _fields(buf, a, b):
        if wire == 2 and number == 1:
            key = _text(buf, x, y)
        elif wire == 2 and number == 2:
            value = _text(buf, x, y)
    return key, value


def _value_info(buf: memoryview, a: int, b: int) -> ValueInfo:
    name = ""
    elem_type = 0
    shape: list[Dim] = []
    for number, wire, x, y in _fields(buf, a, b):
        if number == 1 and wire == 2:
            name = _text(buf, x, y)
        elif number == 2 and wire == 2:  # TypeProto
            for tn, tw, tx, ty in _fields(buf, x, y):
                if tn != 1 or tw != 2:  # only tensor_type matters at our boundaries
                    continue
                for kn, kw, kx, ky in _fields(buf, tx, ty):
                    if kn == 1 and kw == 0:
                        elem_type = kx
                    elif kn == 2 and kw == 2:  # TensorShapeProto
                        for dn, dw, dx, dy in _fields(buf, kx, ky):
                            if dn == 1 and dw == 2:
                                shape.append(_dimension(buf, dx, dy))
    named = tuple(unnamed_dim(name, axis) if d == "" else d for axis, d in enumerate(shape))
    return ValueInfo(name=name, elem_type=elem_type, shape=named)


def _dimension(buf: memoryview, a: int, b: int) -> Dim:
    for number, wire, x, y in _fields(buf, a, b):
        if number == 1 and wire == 0:
            return _signed64(x)
        if number == 2 and wire == 2:
            return _text(buf, x, y)
    return ""


def _initializer(buf: memoryview, a: int, b: int) -> tuple[str, int, int, str | None]:
    """``(name, data_type, element_count, external_location)`` of a TensorProto."""
    name = ""
    data_type = 0
    count = 1
    location: str | None = None
    for number, wire, x, y in _fields(buf, a, b):
        if number == 1 and wire == 0:
            count *= _signed64(x)
        elif number == 1 and wire == 2:  # packed dims
            pos = x
            while pos < y:
                dim, pos = _varint(buf, pos)
                count *= _signed64(dim)
        elif number == 2 and wire == 0:
            data_type = x
        elif number == 8 and wire == 2:
            name = _text(buf, x, y)
        elif number == 13 and wire == 2:
            key, value = _string_pair(buf, x, y)
            if key == "location":
                location = value
    return name, data_type, count, location


def _node_op(buf: memoryview, a: int, b: int) -> str:
    for number, wire, x, y in _fields(buf, a, b):
        if number == 4 and wire == 2:
            return _text(buf, x, y)
    return ""


def _parse(buf: memoryview) -> OnnxSummary:
    metadata: dict[str, str] = {}
    opsets: dict[str, int] = {}
    inputs: list[ValueInfo] = []
    outputs: list[ValueInfo] = []
    initializer_names: set[str] = set()
    elements: dict[int, int] = {}
    external: set[str] = set()
    quantized = False
    seen_graph = False
    for number, wire, a, b in _fields(buf, 0, len(buf)):
        if wire != 2:
            continue
        if number == 14:
            key, value = _string_pair(buf, a, b)
            metadata[key] = value
        elif number == 8:
            domain, version = "", 0
            for on, ow, ox, oy in _fields(buf, a, b):
                if on == 1 and ow == 2:
                    domain = _text(buf, ox, oy)
                elif on == 2 and ow == 0:
                    version = ox
            opsets[domain] = version
        elif number == 7:
            seen_graph = True
            for gn, gw, gx, gy in _fields(buf, a, b):
                if gw != 2:
                    continue
                if gn == 1:
                    quantized = quantized or _node_op(buf, gx, gy) in _QDQ_OPS
                elif gn == 5:
                    name, data_type, count, location = _initializer(buf, gx, gy)
                    initializer_names.add(name)
                    elements[data_type] = elements.get(data_type, 0) + count
                    if location is not None:
                        external.add(location)
                elif gn == 11:
                    inputs.append(_value_info(buf, gx, gy))
                elif gn == 12:
                    outputs.append(_value_info(buf, gx, gy))
    if not seen_graph:
        raise _WireError("no graph in the model")
    return OnnxSummary(
        # Before IR v4 initializers were also listed as graph inputs; they are not fed.
        inputs=tuple(v for v in inputs if v.name not in initializer_names),
        outputs=tuple(outputs),
        metadata=metadata,
        opsets=opsets,
        quantized=quantized,
        initializer_elements=elements,
        external_data=tuple(sorted(external)),
    )


def _stat_key(path: Path) -> tuple[str, int, int]:
    try:
        st = path.stat()
    except OSError as e:
        raise InputError(f"{path}: cannot read ({e.strerror}); expected an .onnx file") from e
    return str(path.resolve()), st.st_size, st.st_mtime_ns


def read_onnx_summary(path: str | os.PathLike[str]) -> OnnxSummary:
    """Summarise an ONNX file without reading its weights.

    Results are memoised per (path, size, mtime), so backends can call this freely.

    Raises:
        InputError: the file is missing or is not an ONNX model.

    Example:
        >>> read_onnx_summary("model/decoder.onnx").dims("point_coords")  # doctest: +SKIP
        ('B', 'N', 2)
    """
    return _read_summary_cached(*_stat_key(Path(path)))


@functools.lru_cache(maxsize=64)
def _read_summary_cached(path: str, size: int, mtime_ns: int) -> OnnxSummary:
    if size == 0:
        raise InputError(f"{path}: empty file; expected an ONNX model")
    with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mm:
        view = memoryview(mm)
        try:
            return _parse(view)
        except _WireError as e:
            raise InputError(f"{path}: not an ONNX model ({e})") from None
        finally:
            view.release()


def read_onnx_metadata(path: str | os.PathLike[str]) -> dict[str, str]:
    """The ``samedge.*`` entries of an ONNX file's ``metadata_props`` (its provenance).

    Read from the file's header fields alone, without loading its weights or
    creating an inference session.

    Raises:
        InputError: the file is missing or is not an ONNX model.
    """
    meta = read_onnx_summary(path).metadata
    return {k: v for k, v in meta.items() if k.startswith("samedge.")}


def onnx_content_hash(path: str | os.PathLike[str]) -> str:
    """Hex SHA-256 over an ONNX file and the external-data files its weights live in.

    Hashing only the ``.onnx`` of a model with external data would miss a change
    of weights, and a cached engine would then silently run the old ones.
    Memoised per (path, size, mtime) of every file involved.

    Raises:
        InputError: the file or one of its external-data files is missing.
    """
    path = Path(path)
    files = [_stat_key(path)]
    for name in read_onnx_summary(path).external_data:
        external = path.parent / name
        if not external.is_file():
            raise InputError(
                f"{path}: external-data file {name} is missing; keep it beside the .onnx"
            )
        files.append(_stat_key(external))
    return _content_hash_cached(tuple(files))


@functools.lru_cache(maxsize=64)
def _content_hash_cached(files: tuple[tuple[str, int, int], ...]) -> str:
    digest = hashlib.sha256()
    for name, _, _ in files:
        with open(name, "rb") as f:
            while block := f.read(1 << 20):
                digest.update(block)
    return digest.hexdigest()
