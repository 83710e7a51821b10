"""ONNX helpers shared by the FP16 and INT8 steps (private).

Loading and saving graphs (external data past protobuf's 2 GiB), ONNX
Runtime's portable graph clean-up, CPU sessions, and per-tensor activation
ranges measured with ONNX Runtime in memory-bounded chunks.

Memory. Calibration runs big encoders a handful of times each, in one
process, next to the frames, the FP32 reference and the quantizer's own
copies of the graph; a build's peak is the sum of what is alive at once. Every
session here therefore uses :func:`session_options`: no memory pattern and no
CPU arena, which measured on a random-weight SAM ViT-B encoder (1024², 805 MB
global-attention maps; benchmarks/results/amd-epyc-2c/calibration_memory.md):

======================  ==========  ==========  =====================
ONNX Runtime CPU        1st run     2nd run     between runs / after
======================  ==========  ==========  =====================
arena + mem pattern     3.9 GB      7.2 GB      7.2 GB
arena, no mem pattern   3.9 GB      3.9 GB      3.9 GB
no arena (used here)    3.9 GB      4.0 GB      1.0-1.5 GB
======================  ==========  ==========  =====================

(ONNX Runtime's defaults plan one block for a run's whole memory pattern
after the first run and take it from the arena beside the first run's
chunks, which the arena never returns.) Without the arena a run is about
10% slower (fresh allocations fault their pages in); calibration is not
where speed is measured.

Freed is not returned, though: activations under glibc's 32 MB mmap
threshold (most of a ViT's) are carved from the heap, and a few live blocks
pin the freed space around them. :func:`give_back_memory` hands it back at
the boundaries between big steps (measured: 2.8 GiB after NNCF's statistics).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import json
import logging
import math
import os
import shutil
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from samedge._io import free_space
from samedge.errors import ExportError, InputError, OutputWriteError
from samedge.runtimes.ort import STOP_SPINNING_AFTER_RUN

__all__ = [
    "cpu_session",
    "float_tensor_ranges",
    "give_back_memory",
    "load_model",
    "optimize_basic",
    "run_session",
    "save_model",
    "session_options",
    "set_metadata",
]

log = logging.getLogger(__name__)

# protobuf refuses messages over 2 GiB; leave room for the graph itself.
_EXTERNAL_DATA_BYTES = 1_800_000_000
# Domains whose ops every backend (ORT, OpenVINO, TensorRT) parses.
_STANDARD_DOMAINS = {"", "ai.onnx"}


def load_model(path: str | os.PathLike[str]) -> onnx.ModelProto:
    """Load an ONNX file with its external data.

    Raises:
        InputError: missing or unreadable file.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such ONNX file")
    try:
        return onnx.load(str(path))
    except Exception as e:  # protobuf raises its own untyped DecodeError
        raise InputError(f"{path}: not a readable ONNX model ({type(e).__name__}: {e})") from e


def save_model(model: onnx.ModelProto, path: str | os.PathLike[str]) -> Path:
    """Save ``model``; weights go to ``<name>.data`` beside it when it is too big for one file.

    Raises:
        OutputWriteError: the file could not be written (a full disk); what
            was written of it is removed.
    """
    path = Path(path)
    try:
        if model.ByteSize() > _EXTERNAL_DATA_BYTES:
            onnx.save(
                model,
                str(path),
                save_as_external_data=True,
                all_tensors_to_one_file=True,
                location=path.name + ".data",
            )
        else:
            onnx.save(model, str(path))
    except OSError as e:
        for partial in (path, path.with_name(path.name + ".data")):
            partial.unlink(missing_ok=True)
        raise _write_failed(path, e) from e
    return path


def _write_failed(path: Path, error: BaseException) -> OutputWriteError:
    reason = error.strerror if isinstance(error, OSError) and error.strerror else str(error)
    return OutputWriteError(
        f"{path}: could not write the graph ({reason}; {free_space(path.parent)}); the "
        "source model is fine: free space there, or write the output elsewhere"
    )


def set_metadata(model: onnx.ModelProto, props: Mapping[str, str]) -> None:
    """Replace ``samedge.*`` entries of ``metadata_props`` with ``props``, keeping others."""
    keep = [(p.key, p.value) for p in model.metadata_props if not p.key.startswith("samedge.")]
    del model.metadata_props[:]
    for key, value in [*keep, *sorted(props.items())]:
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value


def retag_precision(model: onnx.ModelProto, precision: str) -> None:
    """Set the ``samedge.precision`` tag a converted graph inherited from its source.

    ``convert_fp16`` and ``quantize_int8`` keep the source's metadata (its
    provenance); left as it was, the tag would say "fp32" and the runtimes,
    which believe samedge's own tag first, would report the wrong precision.
    A graph without the tag is left untagged.
    """
    for entry in model.metadata_props:
        if entry.key == "samedge.precision":
            entry.value = json.dumps(precision)


def _malloc_trim() -> Any:
    name = ctypes.util.find_library("c")
    try:
        return ctypes.CDLL(name).malloc_trim if name else None
    except (OSError, AttributeError):  # not glibc (musl, macOS, Windows): nothing to trim
        return None


_TRIM = _malloc_trim()


def give_back_memory() -> None:
    """Return the heap memory freed so far to the system, where the C library allows it.

    Collects garbage, then calls glibc's ``malloc_trim(0)`` (as Dask's workers
    do), which also releases free pages in the middle of the heap; elsewhere
    only the collection happens. Cheap: a few milliseconds.
    """
    gc.collect()
    if _TRIM is not None:
        _TRIM(0)


def session_options(threads: int | None = None, *, node_order: bool = False) -> Any:
    """ONNX Runtime CPU session options for calibration: quiet, and memory given back.

    No memory pattern and no CPU arena (see the module docstring for the
    measurements): a session holds its weights between runs, not its largest
    run's activations, so several sessions, the quantizer's statistics and the
    report can be alive at once.

    Args:
        threads: Intra-op threads; ``None`` for ONNX Runtime's default.
        node_order: Execute in ONNX Runtime's priority-based order, which
            keeps to the graph's node order (see :func:`float_tensor_ranges`).
    """
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    options.enable_mem_pattern = False
    options.enable_cpu_mem_arena = False
    # Encoder and decoder sessions take turns: an idle one must not spin.
    options.add_session_config_entry(*STOP_SPINNING_AFTER_RUN)
    if threads is not None:
        options.intra_op_num_threads = threads
    if node_order:
        options.execution_order = ort.ExecutionOrder.PRIORITY_BASED
    return options


def cpu_session(
    model: str | os.PathLike[str] | onnx.ModelProto,
    threads: int | None = None,
    *,
    node_order: bool = False,
) -> Any:
    """An ONNX Runtime CPU session with full optimisation, quiet logs and lean memory.

    Args:
        model: Path or in-memory model.
        threads: Intra-op threads; ``None`` for ONNX Runtime's default.
        node_order: Execute in ONNX Runtime's priority-based order, which
            keeps to the graph's node order (see :func:`float_tensor_ranges`).
    """
    import onnxruntime as ort

    options = session_options(threads, node_order=node_order)
    source = model.SerializeToString() if isinstance(model, onnx.ModelProto) else str(model)
    try:
        return ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])
    except Exception as e:  # ORT raises untyped errors for graphs it cannot load
        raise ExportError(f"ONNX Runtime cannot load the graph ({type(e).__name__}: {e})") from e


def run_session(session: Any, feeds: Mapping[str, np.ndarray], names: Sequence[str] | None = None):
    """``session.run`` that turns ONNX Runtime's untyped failures into :class:`ExportError`."""
    try:
        return session.run(None if names is None else list(names), dict(feeds))
    except Exception as e:
        raise ExportError(f"ONNX Runtime failed to run the graph ({type(e).__name__}: {e})") from e


def optimize_basic(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> bool:
    """Write ``src`` after ONNX Runtime's *basic* graph optimisations to ``dst``.

    Basic optimisations (constant folding, redundant-node removal, MatMul+Add
    into Gemm) run before ONNX Runtime partitions the graph for a provider,
    so the result is plain ONNX that every backend reads. Folding the
    exporter's shape arithmetic (Shape/Gather/Cast chains) away matters: the
    FP16 converter would otherwise cast index arithmetic to half precision,
    and the quantizers would see nodes that are not really there. Layout and
    provider-specific fusions (the "extended" levels) are not used.

    Returns:
        True when the optimised graph was written; False when it would need
        a non-standard op domain, in which case ``src`` is copied unchanged.
    """
    import onnxruntime as ort

    dst = Path(dst)
    options = ort.SessionOptions()
    options.log_severity_level = 3
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    options.optimized_model_filepath = str(dst)
    big = Path(src).stat().st_size > _EXTERNAL_DATA_BYTES
    if big:
        options.add_session_config_entry(
            "session.optimized_model_external_initializers_file_name", dst.name + ".data"
        )
    try:
        ort.InferenceSession(str(src), options, providers=["CPUExecutionProvider"])
    except Exception as e:
        # ORT reports a failed write of the optimized copy (a full disk) as a load
        # error of the source; a source that loads without the copy is not at fault.
        try:
            ort.InferenceSession(str(src), providers=["CPUExecutionProvider"])
        except Exception:
            raise ExportError(
                f"{src}: ONNX Runtime cannot load it ({type(e).__name__}: {e})"
            ) from e
        for partial in (dst, dst.with_name(dst.name + ".data")):
            partial.unlink(missing_ok=True)
        raise _write_failed(dst, e) from e
    model = onnx.load(str(dst), load_external_data=False)
    domains = {n.domain for n in model.graph.node} - _STANDARD_DOMAINS
    if domains:
        log.info("basic optimisation used domains %s; keeping the graph as exported", domains)
        shutil.copyfile(src, dst)
        return False
    return True


def float_tensor_ranges(
    model: onnx.ModelProto, feeds: Iterable[Mapping[str, np.ndarray]]
) -> dict[str, float]:
    """Largest absolute value of every float32 tensor a node produces, over ``feeds``.

    ONNX Runtime returns intermediate tensors only as graph outputs and holds
    all of them until the run ends (a ViT-B encoder's activations add up to
    tens of GB). So, as ONNX Runtime's own MinMax calibrator does, each tensor
    gets a ``ReduceMin`` / ``ReduceMax`` pair and only those scalars are
    outputs, and the probes run in node order.

    Returns:
        Tensor name -> max |value| (``inf`` when a value was not finite).
    """
    feeds = list(feeds)
    inferred = onnx.shape_inference.infer_shapes(model)
    info = {v.name: v for v in (*inferred.graph.value_info, *inferred.graph.output)}
    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    del probe.graph.output[:]
    del probe.graph.node[:]
    names: list[str] = []
    outputs: list[str] = []
    for node in model.graph.node:
        # Each probe goes right after its tensor's producer, so that ONNX
        # Runtime, which follows the node order, frees the tensor as usual.
        probe.graph.node.append(node)
        for name in node.output:
            value = info.get(name)
            if value is None or value.type.tensor_type.elem_type != onnx.TensorProto.FLOAT:
                continue
            # ReduceMin and ReduceMax read the tensor in place; an Abs would
            # allocate a copy of every tensor.
            low, high = f"{name}__min", f"{name}__max"
            probe.graph.node.extend(
                [
                    onnx.helper.make_node("ReduceMin", [name], [low], keepdims=0),
                    onnx.helper.make_node("ReduceMax", [name], [high], keepdims=0),
                ]
            )
            probe.graph.output.extend(
                onnx.helper.make_tensor_value_info(n, onnx.TensorProto.FLOAT, None)
                for n in (low, high)
            )
            names.append(name)
            outputs += [low, high]
    # Drop the copies before ONNX Runtime makes its own (a ViT-B is 360 MB each).
    del inferred, info
    if not names:
        return {}
    # The default execution order runs the probes late and keeps every
    # activation alive until then (measured: MobileSAM's encoder 5.5 GB instead
    # of 0.5 GB; ViT-B past 24 GB); the priority-based order runs each probe
    # where it sits, right after its tensor's producer (0.6 GB).
    session = cpu_session(probe, node_order=True)
    del probe
    ranges: dict[str, float] = {}
    for feed in feeds:
        values = run_session(session, feed, outputs)
        for i, name in enumerate(names):
            mins, maxs = np.asarray(values[2 * i]), np.asarray(values[2 * i + 1])
            top = max(abs(float(mins.min())), abs(float(maxs.max()))) if maxs.size else 0.0
            ranges[name] = max(ranges.get(name, 0.0), top if math.isfinite(top) else math.inf)
    log.debug("measured the range of %d float tensors on %d input(s)", len(ranges), len(feeds))
    return ranges
