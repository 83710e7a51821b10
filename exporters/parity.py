"""Parity of an exported model directory against the PyTorch model it came from.

The PyTorch side is SAM's own code path, not the export wrappers: the
encoder reference is ``image_encoder`` on the frame normalised and then
zero-padded exactly like ``Sam.preprocess``; the decoder reference runs SAM's
``PromptEncoder._embed_points`` / ``_embed_boxes`` / ``_embed_masks`` and
``MaskDecoder.predict_masks`` one object at a time. So a passing check proves
both the export and the batched prompt contract (points + padding, box
corners as labels 2/3, ``has_mask_input``) against what ``SamPredictor`` does.

References are computed first so the (possibly multi-GB) PyTorch model can be
freed before ONNX Runtime loads the graphs.

Example:
    >>> report = verify_export("out/mobile_sam", "mobile_sam", "mobile_sam.pt")  # doctest: +SKIP
    >>> print(report.summary())                                                # doctest: +SKIP
"""

from __future__ import annotations

import gc
import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from samedge import graph_names
from samedge.errors import ExportError, ModelDirError, ParityError
from samedge.exporters import sam_hq
from samedge.exporters.sam_hq import is_sam_hq
from samedge.masks import mask_iou, mask_ious
from samedge.model_dir import read_model_dir
from samedge.models import ModelSpec

if TYPE_CHECKING:
    from samedge.exporters.export import ExportConfig

__all__ = [
    "DecoderCase",
    "DecoderParity",
    "EncoderParity",
    "ParityReport",
    "References",
    "compare_with_onnxruntime",
    "compute_references",
    "decoder_cases",
    "verify_export",
]

log = logging.getLogger(__name__)


# --------------------------------------------------------------------------- inputs


@dataclass(frozen=True)
class DecoderCase:
    """One batch of prompts fed to the decoder (numpy, contract layout)."""

    name: str
    point_coords: np.ndarray  # [B, N, 2] float32
    point_labels: np.ndarray  # [B, N] float32
    mask_input: np.ndarray  # [B, 1, 4h, 4w] float32
    has_mask_input: np.ndarray  # [B] float32

    @property
    def batch(self) -> int:
        return int(self.point_labels.shape[0])

    @property
    def points(self) -> int:
        return int(self.point_labels.shape[1])

    def feeds(
        self, image_embeddings: np.ndarray, extras: Mapping[str, np.ndarray] | None = None
    ) -> dict[str, np.ndarray]:
        """Decoder inputs; ``extras`` are the encoder's other outputs (SAM-HQ's)."""
        return {
            graph_names.IMAGE_EMBEDDINGS: image_embeddings,
            graph_names.POINT_COORDS: self.point_coords,
            graph_names.POINT_LABELS: self.point_labels,
            graph_names.MASK_INPUT: self.mask_input,
            graph_names.HAS_MASK_INPUT: self.has_mask_input,
            **(extras or {}),
        }


def encoder_input(spec: ModelSpec, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A random landscape frame, unpadded, and the same frame mean-padded to S x S.

    Returns:
        ``(frame [1,3,H,S], padded [1,3,S,S])`` float32 in 0..255.
    """
    rng = np.random.default_rng(seed)
    size = spec.image_size
    height = max(1, size * 3 // 4)  # a 4:3 frame: the bottom quarter is padding
    frame = rng.uniform(0.0, 255.0, (1, 3, height, size)).astype(np.float32)
    padded = np.empty((1, 3, size, size), np.float32)
    padded[...] = np.asarray(spec.pixel_mean, np.float32).reshape(1, 3, 1, 1)
    padded[:, :, :height, :] = frame
    return frame, padded


def decoder_cases(spec: ModelSpec, seed: int) -> list[DecoderCase]:
    """Prompt batches covering B in {1, 4}, N in {1, 3}, boxes and mask inputs."""
    rng = np.random.default_rng(seed + 1)
    size = float(spec.image_size)
    side = spec.low_res_mask_size

    def points(b: int, n: int) -> np.ndarray:
        return rng.uniform(0.0, size - 1.0, (b, n, 2)).astype(np.float32)

    def boxes(b: int) -> np.ndarray:
        corners = np.sort(rng.uniform(0.0, size - 1.0, (b, 2, 2)), axis=1)
        return corners.astype(np.float32)  # [b, 2 corners, (x, y)], top-left first

    def no_mask(b: int) -> tuple[np.ndarray, np.ndarray]:
        return np.zeros((b, 1, side, side), np.float32), np.zeros(b, np.float32)

    def labels(rows: Sequence[Sequence[int]]) -> np.ndarray:
        return np.asarray(rows, np.float32)

    def padded(coords: np.ndarray, lab: np.ndarray) -> np.ndarray:
        coords[lab == -1] = 0.0  # SAM's padding point sits at (0, 0)
        return coords

    cases = []
    lab = labels([[1]])
    cases.append(DecoderCase("B1 N1 point", points(1, 1), lab, *no_mask(1)))
    lab = labels([[1, 0, -1]])
    cases.append(DecoderCase("B1 N3 points+pad", padded(points(1, 3), lab), lab, *no_mask(1)))
    lab = labels([[1], [0], [1], [1]])
    cases.append(DecoderCase("B4 N1 points", points(4, 1), lab, *no_mask(4)))
    lab = labels([[1, 0, -1], [1, 1, -1], [0, 1, 0], [1, -1, -1]])
    cases.append(DecoderCase("B4 N3 points+pad", padded(points(4, 3), lab), lab, *no_mask(4)))
    lab = labels([[2, 3]])
    cases.append(DecoderCase("B1 N2 box", boxes(1), lab, *no_mask(1)))
    lab = labels([[1, 2, 3]] * 4)
    coords = np.concatenate([points(4, 1), boxes(4)], axis=1)
    cases.append(DecoderCase("B4 N3 point+box", coords, lab, *no_mask(4)))
    lab = labels([[1, 0, -1], [1, -1, -1], [0, 1, -1], [1, 1, -1]])
    # Logit-scale noise everywhere; rows with has_mask_input=0 must ignore it.
    mask = rng.normal(0.0, 8.0, (4, 1, side, side)).astype(np.float32)
    has = np.asarray([1, 0, 1, 1], np.float32)
    cases.append(DecoderCase("B4 N3 mask input", padded(points(4, 3), lab), lab, mask, has))
    return cases


# --------------------------------------------------------------------------- references


@dataclass
class References:
    """PyTorch outputs for the parity inputs, kept as numpy once the model is gone."""

    padded_image: np.ndarray
    image_embeddings: np.ndarray
    cases: list[DecoderCase]
    masks: list[np.ndarray] = field(default_factory=list)
    iou: list[np.ndarray] = field(default_factory=list)
    # The encoder's other outputs, fed to the decoder by name (SAM-HQ's hq_features).
    extras: dict[str, np.ndarray] = field(default_factory=dict)
    # What the decoder cases were run on, where it is not ``image_embeddings``
    # (an encoder traced on the frame's content box: its own embedding differs).
    decoder_embeddings: np.ndarray | None = None


@torch.no_grad()
def compute_references(sam: nn.Module, spec: ModelSpec, seed: int = 0) -> References:
    """Run SAM's own PyTorch path on the parity inputs.

    Raises:
        ExportError: the model's embedding does not have the spec's shape.
    """
    frame, padded = encoder_input(spec, seed)
    mean = torch.tensor(spec.pixel_mean).view(1, 3, 1, 1)
    std = torch.tensor(spec.pixel_std).view(1, 3, 1, 1)
    x = (torch.from_numpy(frame) - mean) / std
    size = spec.image_size
    x = torch.nn.functional.pad(x, (0, size - x.shape[-1], 0, size - x.shape[-2]))
    hq_features: torch.Tensor | None = None
    if is_sam_hq(sam):
        embedding, hq_features = sam_hq.reference_encode(sam, x)
    else:
        image_encoder: Any = sam.image_encoder
        embedding = image_encoder(x)
    if tuple(embedding.shape[1:]) != tuple(spec.embedding_shape):
        raise ExportError(
            f"model {spec.name}: PyTorch embedding has shape {tuple(embedding.shape)}, "
            f"the spec says (1, {', '.join(map(str, spec.embedding_shape))})"
        )
    refs = References(padded, embedding.numpy().copy(), decoder_cases(spec, seed))
    if hq_features is not None:
        refs.extras[sam_hq.HQ_FEATURES] = hq_features.numpy().copy()
    for name, shape in spec.extra_features:
        got = refs.extras[name].shape if name in refs.extras else None
        if got != (1, *shape):
            raise ExportError(
                f"model {spec.name}: PyTorch {name} has shape {got}, the spec says (1, {shape})"
            )
    for case in refs.cases:
        masks, iou = _reference_decode(sam, spec, embedding, hq_features, case)
        refs.masks.append(masks)
        refs.iou.append(iou)
    return refs


def _reference_decode(
    sam: nn.Module,
    spec: ModelSpec,
    embedding: torch.Tensor,
    hq_features: torch.Tensor | None,
    case: DecoderCase,
) -> tuple[np.ndarray, np.ndarray]:
    """SAM's own prompt embedding per object, then one ``predict_masks`` over the batch."""
    pe: Any = sam.prompt_encoder  # upstream modules are untyped
    decoder: Any = sam.mask_decoder
    # Prompts are in the encoder's frame; the prompt encoder's may be larger
    # (EfficientViT-SAM L: 512 -> 1024), where its own predictor puts them.
    frame = pe.input_image_size[1] / spec.image_size
    sparse_rows, dense_rows = [], []
    for b in range(case.batch):
        coords = torch.from_numpy(case.point_coords[b : b + 1])
        if frame != 1:
            coords = coords * frame
        labels = torch.from_numpy(case.point_labels[b : b + 1])
        is_box = labels[0] >= 2
        n_box = int(is_box.sum())
        if n_box not in (0, 2) or not bool(is_box[labels.shape[1] - n_box :].all()):
            raise ValueError(f"case {case.name}: box corners must be the last two points")
        sparse = []
        if n_box < labels.shape[1]:
            sparse.append(pe._embed_points(coords[:, ~is_box], labels[:, ~is_box], pad=False))
        if n_box:
            sparse.append(pe._embed_boxes(coords[:, is_box].reshape(1, 4)))
        sparse_rows.append(torch.cat(sparse, dim=1))
        if case.has_mask_input[b] > 0:
            dense_rows.append(pe._embed_masks(torch.from_numpy(case.mask_input[b : b + 1])))
        else:
            _, h, w = embedding.shape[1:]
            dense_rows.append(pe.no_mask_embed.weight.reshape(1, -1, 1, 1).expand(1, -1, h, w))
    # Every object of a case has the same number of prompt tokens, so the
    # objects batch exactly as in SamPredictor.predict_torch.
    if hq_features is not None:
        masks, iou = sam_hq.reference_predict_masks(
            sam, embedding, hq_features, torch.cat(sparse_rows), torch.cat(dense_rows)
        )
    else:
        masks, iou = decoder.predict_masks(
            image_embeddings=embedding,
            image_pe=pe.get_dense_pe(),
            sparse_prompt_embeddings=torch.cat(sparse_rows),
            dense_prompt_embeddings=torch.cat(dense_rows),
        )
    return masks.numpy(), iou.numpy()


# --------------------------------------------------------------------------- report


@dataclass(frozen=True)
class EncoderParity:
    """Encoder: ONNX Runtime vs PyTorch on one mean-padded random frame."""

    max_abs_diff: float
    ref_max_abs: float
    passed: bool
    # Other encoder outputs (SAM-HQ's hq_features): name -> (max|diff|, max|ref|).
    extras: dict[str, tuple[float, float]] = field(default_factory=dict)


@dataclass(frozen=True)
class DecoderParity:
    """Decoder: one prompt batch; mask IoU is of ``logits > 0`` over all B x K masks."""

    name: str
    batch: int
    points: int
    max_abs_diff: float  # of the low-resolution mask logits
    ref_max_abs: float
    iou_pred_max_abs_diff: float
    mask_iou: float
    min_mask_iou: float
    passed: bool


@dataclass(frozen=True)
class ParityReport:
    """Outcome of :func:`compare_with_onnxruntime`; stored in ``samedge.json`` details."""

    encoder: EncoderParity | None  # None when only a decoder was checked
    decoder: tuple[DecoderParity, ...]
    atol: float
    rtol: float
    min_mask_iou: float
    onnxruntime: str

    @property
    def passed(self) -> bool:
        encoder_ok = self.encoder is None or self.encoder.passed
        return encoder_ok and all(c.passed for c in self.decoder)

    @property
    def worst_logit_diff(self) -> float:
        return max((c.max_abs_diff for c in self.decoder), default=0.0)

    @property
    def worst_mask_iou(self) -> float:
        return min((c.mask_iou for c in self.decoder), default=1.0)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["decoder"] = [asdict(c) for c in self.decoder]  # a list in JSON
        data["passed"] = self.passed
        return data

    def summary(self) -> str:
        """Lines for humans: one for the encoder, one per decoder case."""
        enc = self.encoder
        lines = [
            f"parity vs PyTorch (onnxruntime {self.onnxruntime}, CPU; "
            f"tolerance |diff| <= {self.atol:g} + {self.rtol:g}*max|ref|, "
            f"mask IoU >= {self.min_mask_iou:g}):"
        ]
        if enc is not None:
            lines.append(
                f"  encoder                    max|diff| {enc.max_abs_diff:.2e} "
                f"(max|ref| {enc.ref_max_abs:.3g})  {'ok' if enc.passed else 'FAIL'}"
            )
            for name, (diff, ref) in enc.extras.items():
                lines.append(f"    {name:<24} max|diff| {diff:.2e} (max|ref| {ref:.3g})")
        for c in self.decoder:
            lines.append(
                f"  decoder {c.name:<18} logits max|diff| {c.max_abs_diff:.2e} "
                f"(max|ref| {c.ref_max_abs:.3g}), iou_pred {c.iou_pred_max_abs_diff:.1e}, "
                f"mask IoU {c.mask_iou:.4f} (min {c.min_mask_iou:.4f})  "
                f"{'ok' if c.passed else 'FAIL'}"
            )
        return "\n".join(lines)


def _within(diff: float, ref: float, atol: float, rtol: float) -> bool:
    return bool(np.isfinite(diff)) and diff <= atol + rtol * ref


def _mask_ious(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """Pooled IoU of ``a > 0`` vs ``b > 0`` and the smallest per-mask IoU."""
    pa, pb = a > 0, b > 0
    # Pooled over all masks: one IoU of the stacked masks (1.0 if all are empty).
    pooled = mask_iou(pa.reshape(-1, pa.shape[-1]), pb.reshape(-1, pb.shape[-1]))
    return pooled, float(mask_ious(pa, pb).min())


# --------------------------------------------------------------------------- ONNX Runtime


def _session(path: Path) -> Any:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    try:
        return ort.InferenceSession(
            str(path), sess_options=options, providers=["CPUExecutionProvider"]
        )
    except Exception as e:  # ORT raises its own untyped errors
        raise ExportError(f"{path.name}: ONNX Runtime cannot load it ({e})") from e


def encoder_parity(
    encoder_path: str | os.PathLike[str], refs: References, config: ExportConfig
) -> EncoderParity:
    """Run ``encoder.onnx`` on CPU ONNX Runtime and compare with ``refs``.

    Raises:
        ExportError: the graph does not load or returns the wrong shape.
    """
    encoder = _session(Path(encoder_path))
    outs = [graph_names.IMAGE_EMBEDDINGS, *refs.extras]
    values = encoder.run(outs, {graph_names.IMAGE: refs.padded_image})
    outputs = dict(zip(outs, values, strict=True))
    del encoder
    extras: dict[str, tuple[float, float]] = {}
    passed = True
    for name, ref in {graph_names.IMAGE_EMBEDDINGS: refs.image_embeddings, **refs.extras}.items():
        got = outputs[name]
        if got.shape != ref.shape:
            raise ExportError(
                f"encoder: ONNX Runtime returned {name} {got.shape}, PyTorch {ref.shape}"
            )
        diff = float(np.abs(got - ref).max())
        ref_max = float(np.abs(ref).max())
        log.debug("encoder parity %s: max|diff| %.2e (max|ref| %.3g)", name, diff, ref_max)
        passed = passed and _within(diff, ref_max, config.atol, config.rtol)
        extras[name] = (diff, ref_max)
    diff, ref_max = extras.pop(graph_names.IMAGE_EMBEDDINGS)
    return EncoderParity(diff, ref_max, passed, extras)


def decoder_parity(
    decoder_path: str | os.PathLike[str], refs: References, config: ExportConfig
) -> tuple[DecoderParity, ...]:
    """Run ``decoder.onnx`` on CPU ONNX Runtime for every case of ``refs`` and compare.

    The PyTorch embedding feeds both sides, so only the decoder is compared.

    Raises:
        ExportError: the graph does not load or returns the wrong shapes.
    """
    atol, rtol = config.atol, config.rtol
    decoder = _session(Path(decoder_path))
    results = []
    for case, ref_masks, ref_iou in zip(refs.cases, refs.masks, refs.iou, strict=True):
        masks, iou = decoder.run(
            list(graph_names.DECODER_OUTPUTS),
            case.feeds(
                refs.image_embeddings
                if refs.decoder_embeddings is None
                else refs.decoder_embeddings,
                refs.extras,
            ),
        )
        if masks.shape != ref_masks.shape or iou.shape != ref_iou.shape:
            raise ExportError(
                f"decoder case {case.name}: ONNX Runtime returned {masks.shape}/{iou.shape}, "
                f"PyTorch {ref_masks.shape}/{ref_iou.shape}"
            )
        logit_diff = float(np.abs(masks - ref_masks).max())
        ref_max = float(np.abs(ref_masks).max())
        iou_diff = float(np.abs(iou - ref_iou).max())
        pooled, worst = _mask_ious(masks, ref_masks)
        passed = (
            _within(logit_diff, ref_max, atol, rtol)
            and _within(iou_diff, float(np.abs(ref_iou).max()), atol, rtol)
            # Pooled over the case's B x K masks: a mask of a few pixels would
            # make a per-mask IoU swing on a single flipped pixel.
            and pooled >= config.min_mask_iou
        )
        results.append(
            DecoderParity(
                name=case.name,
                batch=case.batch,
                points=case.points,
                max_abs_diff=logit_diff,
                ref_max_abs=ref_max,
                iou_pred_max_abs_diff=iou_diff,
                mask_iou=pooled,
                min_mask_iou=worst,
                passed=passed,
            )
        )
        log.debug(
            "decoder parity %s: logits max|diff| %.2e, mask IoU %.4f", case.name, logit_diff, pooled
        )
    return tuple(results)


def make_report(
    encoder: EncoderParity | None,
    decoder: Sequence[DecoderParity],
    config: ExportConfig,
) -> ParityReport:
    """Assemble a report and raise :class:`ParityError` if anything is past tolerance."""
    import onnxruntime as ort

    report = ParityReport(
        encoder, tuple(decoder), config.atol, config.rtol, config.min_mask_iou, ort.__version__
    )
    if not report.passed:
        raise ParityError(
            "exported graphs disagree with PyTorch past the tolerance:\n" + report.summary()
        )
    return report


def compare_with_onnxruntime(
    encoder_path: str | os.PathLike[str],
    decoder_path: str | os.PathLike[str],
    refs: References,
    config: ExportConfig,
) -> ParityReport:
    """Run both graphs on CPU ONNX Runtime and compare with ``refs``.

    Raises:
        ExportError: a graph does not load, or returns the wrong shapes.
        ParityError: a difference is past the tolerance of ``config``.
    """
    enc = encoder_parity(encoder_path, refs, config)
    return make_report(enc, decoder_parity(decoder_path, refs, config), config)


def verify_export(
    output: str | os.PathLike[str],
    model: str | ModelSpec,
    checkpoint: str | os.PathLike[str] | None,
    *,
    config: ExportConfig | None = None,
) -> ParityReport:
    """Check an exported model directory against the PyTorch model of ``checkpoint``.

    Args:
        output: Model directory written by :func:`~samedge.exporters.export_model`.
        model: Registered name or spec of the architecture.
        checkpoint: The checkpoint it was exported from; ``None`` for the
            seeded random weights of ``config.seed``.
        config: Tolerances and seed; default :class:`ExportConfig`.

    Returns:
        The parity report (it passed).

    Raises:
        ModelDirError: ``output`` is not a model directory.
        CheckpointError: the checkpoint is missing or does not fit ``model``.
        ParityError: a difference is past the tolerance.

    Example:
        >>> report = verify_export("out/b", "sam_vit_b", "sam_vit_b.pth")  # doctest: +SKIP
        >>> report.passed  # doctest: +SKIP
        True
    """
    from samedge.exporters.export import ExportConfig, build_model, resolve_spec

    config = config or ExportConfig()
    spec = resolve_spec(model)
    root = Path(output)
    card = read_model_dir(root)
    if card.model != spec.name:
        raise ModelDirError(
            f"model directory {root}: holds an export of {card.model}, not {spec.name}; "
            f"pass model={card.model!r}"
        )
    sam = build_model(spec, checkpoint, seed=config.seed)
    refs = compute_references(sam, spec, config.seed)
    if card.encoder_input is not None:  # exported with --frame-size
        from samedge.exporters.frame_size import ContentEncoderGraph, content_references

        content = ContentEncoderGraph(sam, spec, card.encoder_input).eval()
        refs = content_references(refs, content)
        del content
    del sam
    gc.collect()
    return compare_with_onnxruntime(root / card.encoder, root / card.decoder, refs, config)
