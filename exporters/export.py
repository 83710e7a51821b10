"""PyTorch checkpoint -> verified ``encoder.onnx`` + ``decoder.onnx`` + ``samedge.json``.

:func:`export_model` is the whole job (``samedge export``); :func:`export_encoder`
and :func:`export_decoder` are its steps as file-to-file functions. Nothing is
declared done before it is verified: ``onnx.checker``, the I/O contract, the
op list (:mod:`samedge.exporters.graphs`), then ONNX Runtime against PyTorch
(:mod:`samedge.exporters.parity`). Outputs are assembled beside their
destination and moved in only when everything passed, so a failure or an
interrupt never leaves a half-written model behind.

Memory: the legacy exporter holds the traced graph and a serialised copy of
the weights next to the model (SAM ViT-B measured here: 4.4 GiB peak RSS for
the whole export and parity check; ViT-H needs several times more). The
PyTorch model is dropped before ONNX Runtime loads the graphs.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from samedge import graph_names
from samedge._io import atomic_directory, claim_output, sha256_file
from samedge._version import __version__
from samedge.errors import ExportError, InputError, OutputExistsError
from samedge.exporters.builders import REDUCED_SAM_NAME, reduced_sam_spec, resolve_builder
from samedge.exporters.decoder import EncoderGraph, PromptDecoderGraph
from samedge.exporters.efficientvit_sam import encoder_input_size, mask_upsample_size
from samedge.exporters.frame_size import (
    MARGINS,
    Agreement,
    ContentEncoderGraph,
    content_references,
    encoder_box,
    measure_agreement,
)
from samedge.exporters.graphs import check_graph, exported_with, finish_onnx, trace_to_onnx
from samedge.exporters.parity import (
    ParityReport,
    References,
    compare_with_onnxruntime,
    compute_references,
    decoder_parity,
    encoder_parity,
    make_report,
)
from samedge.exporters.sam_hq import HQEncoderGraph, HQPromptDecoderGraph, is_sam_hq
from samedge.model_dir import (
    CARD_NAME,
    DECODER_NAME,
    ENCODER_NAME,
    ModelCard,
    write_model_card,
)
from samedge.models import ModelSpec, get_model_spec

__all__ = [
    "DYNAMIC_BATCH",
    "DYNAMIC_POINTS",
    "ExportConfig",
    "ExportReport",
    "build_model",
    "export_decoder",
    "export_encoder",
    "export_model",
    "resolve_spec",
]

log = logging.getLogger(__name__)

# Names of the decoder's two dynamic dimensions (prompts per call, points per prompt).
DYNAMIC_BATCH = "B"
DYNAMIC_POINTS = "N"
# The torchscript exporter's newest opset; TensorRT 8.6 (JetPack 6.0) parses up to 17.
_MAX_OPSET = 20

#: Models whose encoder can be exported for one frame size (``--frame-size``):
#: TinyViT and samedge_tiny's CNN (:mod:`samedge.exporters.frame_size`).
FRAME_SIZE_MODELS = ("mobile_sam", "samedge_tiny")

PathArg = str | os.PathLike[str]


@dataclass(frozen=True)
class ExportConfig:
    """How to export and how strictly to verify.

    Attributes:
        opset: ONNX opset, 17..20. 17 is the newest TensorRT 8.6 (JetPack 6.0) parses
            and the first with ``LayerNormalization``.
        verify: Check the graphs against PyTorch before declaring the export done.
        progress: Show a progress bar over the steps (log lines are always written).
        atol: Absolute tolerance on embeddings, mask logits and IoU predictions.
        rtol: Relative tolerance, times the largest absolute PyTorch value.
        min_mask_iou: Smallest IoU of ``logits > 0`` between ONNX Runtime and
            PyTorch, pooled over the B x K masks of each parity case.
        seed: Seed of the random weights (checkpoint ``None``) and the parity inputs.
        external_data: Store weights in ``<graph>.onnx.data``; ``None`` decides by
            size (needed past protobuf's 2 GiB, e.g. SAM ViT-H's encoder).
        batched_decoder: Trace the decoder with the image-side work shared over
            the B prompts (:mod:`samedge.exporters._batched_decoder`; same
            inputs, outputs and results); ``False`` traces SAM's own
            ``predict_masks`` (for comparisons). Models without SAM's decoder
            layout always take SAM's own.
        frame_size: ``(width, height)`` of the camera frames the model will see,
            to trace the encoder on their content box instead of the padded
            square (:mod:`samedge.exporters.frame_size`; MobileSAM and
            samedge_tiny). The export measures the masks against the square
            encoder's and refuses one that misses the precision gate.
            ``None``: the square.

    Example:
        >>> ExportConfig(opset=17, progress=False).atol
        0.001
    """

    opset: int = 17
    verify: bool = True
    progress: bool = True
    # Measured on random-weight models (ViT-B, MobileSAM, reduced): embedding and
    # logit differences are 1e-6..1e-4 of max|ref|; these leave 10-100x margin.
    atol: float = 1e-3
    rtol: float = 1e-3
    min_mask_iou: float = 0.99
    seed: int = 0
    external_data: bool | None = None
    batched_decoder: bool = True
    frame_size: tuple[int, int] | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.opset, int) or not 17 <= self.opset <= _MAX_OPSET:
            raise InputError(
                f"opset: got {self.opset!r}, expected an int in 17..{_MAX_OPSET} "
                "(17 for TensorRT 8.6 / JetPack 6.0)"
            )
        for name in ("atol", "rtol"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not value >= 0:
                raise InputError(f"{name}: got {value!r}, expected a number >= 0")
        if not isinstance(self.min_mask_iou, (int, float)) or not 0 < self.min_mask_iou <= 1:
            raise InputError(f"min_mask_iou: got {self.min_mask_iou!r}, expected 0 < x <= 1")
        if not isinstance(self.seed, int) or self.seed < 0:
            raise InputError(f"seed: got {self.seed!r}, expected an int >= 0")
        if not isinstance(self.batched_decoder, bool):
            raise InputError(
                f"batched_decoder: got {self.batched_decoder!r}, expected True or False"
            )
        if self.frame_size is not None and not (
            len(self.frame_size) == 2
            and all(
                isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in self.frame_size
            )
        ):
            raise InputError(
                f"frame_size: got {self.frame_size!r}, expected (width, height) positive ints"
            )


@dataclass(frozen=True)
class ExportReport:
    """What :func:`export_model` wrote and how well it matches PyTorch.

    Attributes:
        model: Architecture name.
        output: The model directory.
        files: File name -> size in bytes.
        opset: ONNX opset of both graphs.
        checkpoint: Checkpoint path, ``None`` for random weights.
        checkpoint_sha256: Its SHA-256.
        parity: The parity report; ``None`` when verification was skipped.
        seconds: Wall time per step.
        peak_rss_bytes: Peak resident memory of this process so far (``None`` off Linux/macOS).
    """

    model: str
    output: Path
    files: Mapping[str, int]
    opset: int
    checkpoint: str | None
    checkpoint_sha256: str | None
    parity: ParityReport | None
    seconds: Mapping[str, float] = field(default_factory=dict)
    peak_rss_bytes: int | None = None
    frame_size: Agreement | None = None

    @property
    def verified(self) -> bool:
        return self.parity is not None and self.parity.passed

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "output": str(self.output),
            "files": dict(self.files),
            "opset": self.opset,
            "checkpoint": self.checkpoint,
            "checkpoint_sha256": self.checkpoint_sha256,
            "verified": self.verified,
            "parity": self.parity.to_dict() if self.parity is not None else None,
            "seconds": dict(self.seconds),
            "peak_rss_bytes": self.peak_rss_bytes,
            "frame_size": self.frame_size.to_dict() if self.frame_size is not None else None,
        }

    def summary(self) -> str:
        """A few lines for a terminal: files and sizes, timings, parity numbers."""
        source = self.checkpoint or "random weights"
        lines = [f"exported {self.model} from {source} to {self.output} (opset {self.opset})"]
        for name, size in sorted(self.files.items()):
            lines.append(f"  {name:<20} {size / 1e6:10.1f} MB")
        timing = ", ".join(f"{k} {v:.1f}s" for k, v in self.seconds.items())
        memory = f"; peak RSS {self.peak_rss_bytes / 2**30:.1f} GiB" if self.peak_rss_bytes else ""
        lines.append(f"time: {timing}{memory}")
        if self.parity is None:
            lines.append("parity: NOT verified (--no-verify)")
        else:
            lines.append(self.parity.summary())
        if self.frame_size is not None:
            lines.append(self.frame_size.summary())
        return "\n".join(lines)


# --------------------------------------------------------------------------- helpers


def resolve_spec(model: str | ModelSpec) -> ModelSpec:
    """A registered name (or the reduced test model's) or a spec -> the spec.

    Raises:
        UnknownNameError: an unknown name, with the valid ones.
    """
    if isinstance(model, ModelSpec):
        return model
    if model == REDUCED_SAM_NAME:
        return reduced_sam_spec()
    if model == "sam2_reduced":  # the reduced SAM 2.1 of the tests
        from samedge.exporters._sam2_build import reduced_sam2_spec

        return reduced_sam2_spec()
    return get_model_spec(model)


def build_model(spec: ModelSpec, checkpoint: PathArg | None, *, seed: int = 0) -> nn.Module:
    """Build the PyTorch model of ``spec`` from ``checkpoint`` (``None``: random, seeded).

    Raises:
        CheckpointError: the checkpoint is missing, damaged, or of another model.
        ExportError: the built model contradicts its spec.
    """
    builder = resolve_builder(spec)
    model = builder(None if checkpoint is None else Path(checkpoint), seed=seed)
    _check_against_spec(model, spec)
    return model.eval()


def _check_against_spec(sam: nn.Module, spec: ModelSpec) -> None:
    """The card promises the spec's numbers to the runtime: make sure the model agrees."""
    problems = []
    for attr in ("image_encoder", "prompt_encoder", "mask_decoder"):
        if not hasattr(sam, attr):
            problems.append(f"has no {attr}")
    if problems:
        raise ExportError(f"model {spec.name}: the built model {'; '.join(problems)}")
    prompt_encoder: Any = sam.prompt_encoder  # upstream modules are untyped
    mask_decoder: Any = sam.mask_decoder
    grid = tuple(prompt_encoder.image_embedding_size)
    if grid != tuple(spec.embedding_shape[1:]):
        problems.append(f"embedding grid {grid} vs spec {spec.embedding_shape[1:]}")
    frame = tuple(prompt_encoder.input_image_size)
    if frame[0] != frame[1]:
        problems.append(f"prompt frame {frame} is not square")
    # The encoder's input; the prompt frame may differ (EfficientViT-SAM L), the
    # decoder graph then scales prompts into it.
    size = encoder_input_size(sam)
    if size != spec.image_size:
        problems.append(f"encoder input size {size} vs spec {spec.image_size}")
    upsample = mask_upsample_size(sam)
    if upsample != (spec.mask_upsample_size or spec.image_size):
        problems.append(f"masks upsampled to {upsample} vs spec {spec.mask_upsample_size}")
    hq = is_sam_hq(sam)
    if hq != bool(spec.extra_features):
        problems.append(
            f"{'an' if hq else 'no'} HQ mask decoder vs spec extra_features {spec.extra_features}"
        )
    # SAM-HQ's decoder counts its HQ token among its mask tokens; its outputs are SAM's K.
    tokens = int(mask_decoder.num_mask_tokens) - (1 if hq else 0)
    if tokens != spec.num_mask_outputs:
        problems.append(f"{tokens} mask tokens vs spec {spec.num_mask_outputs}")
    for name, want in (("pixel_mean", spec.pixel_mean), ("pixel_std", spec.pixel_std)):
        have = getattr(sam, name, None)
        if have is not None and not torch.allclose(
            have.flatten().float().cpu(), torch.tensor(want), atol=1e-4
        ):
            problems.append(f"{name} {have.flatten().tolist()} vs spec {want}")
    if problems:
        raise ExportError(
            f"model {spec.name}: built model contradicts its spec: " + "; ".join(problems)
        )


def _io_shapes(
    spec: ModelSpec, box: tuple[int, int] | None = None
) -> dict[str, dict[str, dict[str, list[int | str]]]]:
    size = spec.image_size
    bh, bw = box or (size, size)
    c, h, w = spec.embedding_shape
    k = spec.num_mask_outputs
    m = spec.low_res_mask_size
    emb: list[int | str] = [1, c, h, w]
    b, n = DYNAMIC_BATCH, DYNAMIC_POINTS
    # Encoder outputs the decoder also takes (SAM-HQ's hq_features), after SAM's.
    extra: dict[str, list[int | str]] = {name: [1, *shape] for name, shape in spec.extra_features}
    return {
        "encoder": {
            "inputs": {graph_names.IMAGE: [1, 3, bh, bw]},
            "outputs": {graph_names.IMAGE_EMBEDDINGS: emb, **extra},
        },
        "decoder": {
            "inputs": {
                graph_names.IMAGE_EMBEDDINGS: emb,
                graph_names.POINT_COORDS: [b, n, 2],
                graph_names.POINT_LABELS: [b, n],
                graph_names.MASK_INPUT: [b, 1, m, 4 * w],
                graph_names.HAS_MASK_INPUT: [b],
                **extra,
            },
            "outputs": {
                graph_names.LOW_RES_MASKS: [b, k, m, 4 * w],
                graph_names.IOU_PREDICTIONS: [b, k],
            },
        },
    }


def _metadata(
    spec: ModelSpec, config: ExportConfig, sha: str | None, box: tuple[int, int] | None = None
) -> dict[str, str]:
    card = ModelCard.from_spec(spec, opset=config.opset, checkpoint_sha256=sha, encoder_input=box)
    return card.to_metadata()


def _write_encoder(
    sam: nn.Module,
    spec: ModelSpec,
    out: Path,
    config: ExportConfig,
    metadata: Mapping[str, str],
    content: ContentEncoderGraph | None = None,
) -> list[Path]:
    box = None if content is None else content.box
    shapes = _io_shapes(spec, box)["encoder"]
    wrapper: nn.Module
    if content is not None:
        wrapper = content
    else:
        graph = HQEncoderGraph if is_sam_hq(sam) else EncoderGraph
        wrapper = graph(sam, spec.pixel_mean, spec.pixel_std).eval()
    # Example values only steer tracing; every dim of the encoder is static.
    example = torch.full((1, 3, *(box or (spec.image_size, spec.image_size))), 128.0)
    raw = trace_to_onnx(
        wrapper,
        (example,),
        out.parent / f".{out.stem}.raw" / out.name,
        input_names=list(shapes["inputs"]),
        output_names=list(shapes["outputs"]),
        dynamic_axes=None,
        opset=config.opset,
    )
    return finish_onnx(
        raw,
        out,
        metadata=metadata,
        output_shapes=shapes["outputs"],
        external_data=config.external_data,
        producer=f"samedge {__version__} (torch {torch.__version__})",
    )


def _write_decoder(
    sam: nn.Module, spec: ModelSpec, out: Path, config: ExportConfig, metadata: Mapping[str, str]
) -> list[Path]:
    shapes = _io_shapes(spec)["decoder"]
    graph = HQPromptDecoderGraph if is_sam_hq(sam) else PromptDecoderGraph
    wrapper = graph(sam, spec.image_size, batched=config.batched_decoder).eval()
    c, h, w = spec.embedding_shape
    m = spec.low_res_mask_size
    # B=2, N=3 so that neither dynamic dim is traced as the special size 1.
    example = (
        torch.zeros(1, c, h, w),
        torch.full((2, 3, 2), spec.image_size / 2.0),
        torch.tensor([[1.0, 0.0, -1.0], [2.0, 3.0, 1.0]]),
        torch.zeros(2, 1, m, 4 * w),
        torch.tensor([0.0, 1.0]),
        *(torch.zeros(1, *shape) for _, shape in spec.extra_features),
    )
    dynamic: dict[str, dict[int, str]] = {}
    for name, shape in {**shapes["inputs"], **shapes["outputs"]}.items():
        axes = {i: d for i, d in enumerate(shape) if isinstance(d, str)}
        if axes:
            dynamic[name] = axes
    raw = trace_to_onnx(
        wrapper,
        example,
        out.parent / f".{out.stem}.raw" / out.name,
        input_names=list(shapes["inputs"]),
        output_names=list(shapes["outputs"]),
        dynamic_axes=dynamic,
        opset=config.opset,
    )
    return finish_onnx(
        raw,
        out,
        metadata=metadata,
        output_shapes=shapes["outputs"],
        external_data=False,  # a few MB: always one file
        producer=f"samedge {__version__} (torch {torch.__version__})",
    )


def _check(path: Path, spec: ModelSpec, kind: str, box: tuple[int, int] | None = None) -> set[str]:
    shapes = _io_shapes(spec, box)[kind]
    ops = check_graph(path, inputs=shapes["inputs"], outputs=shapes["outputs"])
    log.info("%s: onnx.checker ok, contract ok, %d op types, all portable", path.name, len(ops))
    return ops


def _content_encoder(
    sam: nn.Module, spec: ModelSpec, config: ExportConfig
) -> tuple[ContentEncoderGraph, Agreement]:
    """The smallest content box whose masks pass the gate against the square's.

    Raises:
        ExportError: no margin in :data:`~samedge.exporters.frame_size.MARGINS`
            short of the whole square passes.
    """
    assert config.frame_size is not None
    tried = []
    for margin in MARGINS:
        try:
            box = encoder_box(spec, config.frame_size, sam, margin)
        except InputError:
            if margin == 0:
                raise
            break  # the margin reached the square
        content = ContentEncoderGraph(sam, spec, box).eval()
        agreement = measure_agreement(sam, spec, content, config.frame_size, seed=config.seed)
        log.info("margin %d: %s", margin, agreement.summary())
        if agreement.passed:
            return content, agreement
        tried.append(agreement.summary())
    raise ExportError(
        "the encoder on the frame's content alone segments differently from the square "
        f"encoder for {spec.name} with these weights, at every margin tried:\n  "
        + "\n  ".join(tried)
        + "\nexport without --frame-size"
    )


def _peak_rss_bytes() -> int | None:
    try:
        import resource
    except ImportError:  # Windows
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)  # Linux reports KiB


def _sizes(directory: Path) -> dict[str, int]:
    return {p.name: p.stat().st_size for p in sorted(directory.iterdir()) if p.is_file()}


class _Steps:
    """Times the export's steps, logs them and drives the optional tqdm bar."""

    def __init__(self, title: str, names: list[str], progress: bool) -> None:
        self.seconds: dict[str, float] = {}
        self._bar: Any = None
        self._redirect = contextlib.ExitStack()
        if progress:
            from tqdm.auto import tqdm
            from tqdm.contrib.logging import logging_redirect_tqdm

            # disable=None: no bar when stderr is not a terminal (CI logs, pipes).
            self._bar = tqdm(total=len(names), desc=title, unit="step", leave=False, disable=None)
            if not self._bar.disable:
                # Log lines go through tqdm.write so they do not tear the bar.
                self._redirect.enter_context(logging_redirect_tqdm())

    @contextlib.contextmanager
    def step(self, name: str) -> Iterator[None]:
        if self._bar is not None:
            self._bar.set_postfix_str(name)
        log.debug("%s ...", name)
        start = time.perf_counter()
        yield
        self.seconds[name] = round(time.perf_counter() - start, 3)
        log.info("%s done in %.1fs", name, self.seconds[name])
        if self._bar is not None:
            self._bar.update(1)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
        self._redirect.close()


@contextlib.contextmanager
def _atomic_file(out: Path, force: bool) -> Iterator[Path]:
    """Yield a staging path for ``out``; on success move it (and ``out.data``) into place."""
    if out.is_dir():
        raise InputError(f"output {out}: is a directory; expected an .onnx file path")
    if out.exists() and not force:
        raise OutputExistsError(
            f"output {out}: exists; pass force=True to replace it, or choose another path"
        )
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        stage = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".partial", dir=out.parent))
    except OSError as e:
        raise InputError(f"output {out}: cannot write to {out.parent} ({e.strerror})") from e
    try:
        yield stage / out.name
        stale = out.parent / f"{out.name}.data"
        if stale.exists() and not (stage / stale.name).exists():
            stale.unlink()  # weights of a previous external-data export of this file
        # The weights file first, so the graph never points at missing data.
        for produced in sorted(stage.iterdir(), key=lambda p: p.suffix != ".data"):
            os.replace(produced, out.parent / produced.name)
    finally:
        shutil.rmtree(stage, ignore_errors=True)


# --------------------------------------------------------------------------- steps


def _export_part(
    part: str,
    model: str | ModelSpec,
    checkpoint: PathArg | None,
    out: Path,
    config: ExportConfig,
    force: bool,
) -> Path:
    """Export and verify one graph (``part`` is "encoder" or "decoder") to ``out``."""
    spec = resolve_spec(model)
    if spec.family == "sam2":
        raise InputError(
            f"model {spec.name}: a SAM 2-family model exports as a whole directory of four "
            "graphs; use export_model (`samedge export`) instead of export_encoder/decoder"
        )
    if config.frame_size is not None:
        raise InputError(
            "frame_size: the model card records the encoder's input box, so it applies to a "
            "whole model directory; use export_model (`samedge export --frame-size`)"
        )
    write = _write_encoder if part == "encoder" else _write_decoder
    # claim_output sweeps the staging a killed export of ``out`` left behind.
    with claim_output(out), _atomic_file(out, force) as staged:
        sam = build_model(spec, checkpoint, seed=config.seed)
        sha = sha256_file(checkpoint) if checkpoint is not None else None
        refs = compute_references(sam, spec, config.seed) if config.verify else None
        write(sam, spec, staged, config, _metadata(spec, config, sha))
        del sam
        gc.collect()
        _check(staged, spec, part)
        if refs is not None:
            if part == "encoder":
                make_report(encoder_parity(staged, refs, config), (), config)
            else:
                make_report(None, decoder_parity(staged, refs, config), config)
    return out


def export_encoder(
    model: str | ModelSpec,
    checkpoint: PathArg | None,
    out: PathArg,
    *,
    config: ExportConfig | None = None,
    force: bool = False,
) -> Path:
    """Export the image encoder of ``model`` alone to the ``.onnx`` file ``out``.

    Args:
        model: Registered name or spec.
        checkpoint: The ``.pth``/``.pt`` file; ``None`` for seeded random weights.
        out: Destination ``.onnx`` path (weights over 2 GiB go to ``out.data``).
        config: Export settings; ``None`` for the defaults.
        force: Replace an existing ``out``.

    Returns:
        ``out`` as a Path, checked and (with ``config.verify``) verified.

    Raises:
        CheckpointError: bad checkpoint. OutputExistsError: ``out`` exists.
        ExportError / ParityError: the graph is invalid or disagrees with PyTorch.

    Example:
        >>> export_encoder("mobile_sam", "mobile_sam.pt", "enc.onnx")  # doctest: +SKIP
        PosixPath('enc.onnx')
    """
    return _export_part("encoder", model, checkpoint, Path(out), config or ExportConfig(), force)


def export_decoder(
    model: str | ModelSpec,
    checkpoint: PathArg | None,
    out: PathArg,
    *,
    config: ExportConfig | None = None,
    force: bool = False,
) -> Path:
    """Export the batched prompt decoder of ``model`` alone to the ``.onnx`` file ``out``.

    Args, Returns and Raises as :func:`export_encoder`.

    Example:
        >>> export_decoder("mobile_sam", "mobile_sam.pt", "dec.onnx")  # doctest: +SKIP
        PosixPath('dec.onnx')
    """
    return _export_part("decoder", model, checkpoint, Path(out), config or ExportConfig(), force)


def export_model(
    model: str | ModelSpec,
    checkpoint: PathArg | None,
    output: PathArg,
    *,
    config: ExportConfig | None = None,
    force: bool = False,
) -> ExportReport:
    """Export ``model`` to a verified model directory (what ``samedge export`` runs).

    Writes ``output/encoder.onnx``, ``output/decoder.onnx`` and
    ``output/samedge.json``; the card's key/values also go into both graphs'
    ``metadata_props``. The directory appears only once everything passed.

    Args:
        model: Registered name (``"sam_vit_b"``, ``"mobile_sam"``, ...) or a spec.
        checkpoint: The ``.pth``/``.pt`` checkpoint; ``None`` for seeded random
            weights (speed and parity tests only).
        output: Model directory to create.
        config: Export settings; ``None`` for the defaults.
        force: Replace an existing non-empty ``output``.

    Returns:
        What was written, timings, peak memory and the parity numbers.

    Raises:
        UnknownNameError: unknown model name.
        CheckpointError: missing, damaged or another model's checkpoint.
        OutputExistsError: ``output`` exists and ``force`` is false.
        InputError: ``output`` cannot be written.
        ExportError / ParityError: the graphs are invalid or disagree with PyTorch.

    Example:
        >>> report = export_model("mobile_sam", "mobile_sam.pt", "out/mobile_sam")  # doctest: +SKIP
        >>> print(report.summary())  # doctest: +SKIP
    """
    config = config or ExportConfig()
    spec = resolve_spec(model)
    if config.frame_size is not None and spec.name not in FRAME_SIZE_MODELS:
        raise InputError(
            f"--frame-size: {spec.name}'s encoder sees the whole square (absolute position "
            "embeddings or global attention), so its padding cannot be left out without "
            f"changing its features; supported: {', '.join(FRAME_SIZE_MODELS)}. "
            "Export without --frame-size"
        )
    if spec.family == "sam2":  # SAM 2.1 / EdgeTAM: four graphs and a memory bank
        from samedge.exporters.sam2 import export_sam2_model

        return export_sam2_model(spec, checkpoint, output, config, force=force)
    output = Path(output)
    steps = _Steps(
        f"export {spec.name}", ["build", "encoder", "decoder", "verify"], config.progress
    )
    parity: ParityReport | None = None
    agreement: Agreement | None = None
    content: ContentEncoderGraph | None = None
    box: tuple[int, int] | None = None
    try:
        # claim_output: one export of ``output`` at a time, and the staging a
        # killed export left beside it (SIGKILL, power loss) is swept first.
        # --force replaces only a model directory (one with its samedge.json).
        with (
            claim_output(output),
            atomic_directory(output, force=force, marker=CARD_NAME) as stage,
        ):
            with steps.step("build"):
                sam = build_model(spec, checkpoint, seed=config.seed)
                sha = sha256_file(checkpoint) if checkpoint is not None else None
                # References first: the (multi-GB) model is freed before ORT runs.
                refs: References | None = None
                if config.verify:
                    refs = compute_references(sam, spec, config.seed)
                if config.frame_size is not None:
                    content, agreement = _content_encoder(sam, spec, config)
                    box = content.box
                    if refs is not None:
                        refs = content_references(refs, content)
            metadata = _metadata(spec, config, sha, box)
            with steps.step("encoder"):
                _write_encoder(sam, spec, stage / ENCODER_NAME, config, metadata, content)
            with steps.step("decoder"):
                _write_decoder(sam, spec, stage / DECODER_NAME, config, metadata)
            del sam, content
            gc.collect()
            with steps.step("verify"):
                _check(stage / ENCODER_NAME, spec, "encoder", box)
                _check(stage / DECODER_NAME, spec, "decoder")
                if refs is not None:
                    parity = compare_with_onnxruntime(
                        stage / ENCODER_NAME, stage / DECODER_NAME, refs, config
                    )
            details: dict[str, Any] = {
                "parity": parity.to_dict() if parity is not None else None,
                "random_weights_seed": config.seed if checkpoint is None else None,
                "exported_with": exported_with(),
            }
            if agreement is not None:
                details["frame_size"] = agreement.to_dict()
            card = ModelCard.from_spec(
                spec, opset=config.opset, checkpoint_sha256=sha, encoder_input=box, details=details
            )
            write_model_card(stage, card)
    finally:
        steps.close()
    report = ExportReport(
        model=spec.name,
        output=output,
        files=_sizes(output),
        opset=config.opset,
        checkpoint=None if checkpoint is None else str(checkpoint),
        checkpoint_sha256=sha,
        parity=parity,
        seconds=steps.seconds,
        peak_rss_bytes=_peak_rss_bytes(),
        frame_size=agreement,
    )
    log.info("wrote %s (%s)", output, ", ".join(report.files))
    return report
