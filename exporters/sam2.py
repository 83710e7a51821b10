"""SAM 2.1 / EdgeTAM checkpoint -> four verified stateless graphs + ``samedge.json``.

:func:`export_sam2_model` is what ``samedge export sam2.1_hiera_tiny ...`` runs
(:func:`samedge.exporters.export_model` hands SAM 2-family names here). The
graphs and their tensor names are the contract in :mod:`samedge.memory_model`;
the wrappers are in :mod:`samedge.exporters._sam2_graphs`.

Nothing is declared done before it is verified, as for SAM: ``onnx.checker``,
the I/O contract, the op list (:data:`~samedge.exporters.graphs.PORTABLE_OPS`,
what TensorRT and OpenVINO build), then ONNX Runtime against Meta's own
PyTorch code paths, graph by graph:

* encoder vs ``SAM2Base.forward_image`` (all feature levels);
* decoder vs ``SAM2Base._forward_sam_heads`` (clicks, a box, no prompt as on
  tracked frames, a mask input; multimask and single-mask pointers);
* memory attention vs ``SAM2Base._prepare_memory_conditioned_features`` on a
  bank of a conditioning frame + recent frames + pointers (so SAM 2's
  selection order and temporal encodings are checked too);
* memory encoder vs ``SAM2Base._encode_new_memory`` (prompted and tracked
  masks, a present and an absent object).

Example:
    >>> from samedge.exporters import export_model
    >>> report = export_model("sam2.1_hiera_tiny", "t.pt", "out/t")  # doctest: +SKIP
    >>> print(report.summary())                                      # doctest: +SKIP
"""

from __future__ import annotations

import gc
import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from samedge import memory_model as mm
from samedge._io import atomic_directory, claim_output, sha256_file
from samedge._version import __version__
from samedge.errors import ExportError, ParityError
from samedge.exporters._sam2_graphs import (
    Sam2DecoderGraph,
    Sam2EncoderGraph,
    Sam2MemoryAttentionGraph,
    Sam2MemoryEncoderGraph,
)
from samedge.exporters.graphs import check_graph, exported_with, finish_onnx, trace_to_onnx
from samedge.graph_names import (
    HAS_MASK_INPUT,
    IMAGE,
    IMAGE_EMBEDDINGS,
    IOU_PREDICTIONS,
    LOW_RES_MASKS,
    MASK_INPUT,
    POINT_COORDS,
    POINT_LABELS,
)
from samedge.model_dir import CARD_NAME, DECODER_NAME, ENCODER_NAME, ModelCard, write_model_card
from samedge.models import ModelSpec

if TYPE_CHECKING:
    from samedge.exporters.export import ExportConfig, ExportReport

__all__ = ["GraphParity", "Sam2ParityReport", "export_sam2_model", "memory_settings"]

log = logging.getLogger(__name__)

# Dynamic dims of the SAM 2 graphs (B and N as for SAM's decoder).
DIM_B, DIM_N, DIM_M, DIM_P = "B", "N", "M", "P"


def memory_settings(model: nn.Module, image_size: int) -> mm.MemorySettings:
    """The card's memory section, read off the built ``SAM2VideoPredictor``."""
    m: Any = model
    decoder: Any = m.sam_mask_decoder
    tokens = (image_size // m.backbone_stride) ** 2
    perceiver = m.spatial_perceiver
    if perceiver is not None:
        tokens = max(perceiver.num_latents, 0) + max(perceiver.num_latents_2d, 0)
    return mm.MemorySettings(
        num_maskmem=int(m.num_maskmem),
        max_pointers_in_encoder=int(m.max_obj_ptrs_in_encoder),
        memory_tokens=int(tokens),
        memory_dim=int(m.mem_dim),
        hidden_dim=int(m.hidden_dim),
        multimask_output_in_sam=bool(m.multimask_output_in_sam),
        multimask_output_for_tracking=bool(m.multimask_output_for_tracking),
        multimask_min_pt_num=int(m.multimask_min_pt_num),
        multimask_max_pt_num=int(m.multimask_max_pt_num),
        use_multimask_token_for_obj_ptr=bool(m.use_multimask_token_for_obj_ptr),
        dynamic_multimask_via_stability=bool(decoder.dynamic_multimask_via_stability),
        stability_delta=float(decoder.dynamic_multimask_stability_delta),
        stability_thresh=float(decoder.dynamic_multimask_stability_thresh),
        binarize_mask_from_pts_for_mem_enc=bool(m.binarize_mask_from_pts_for_mem_enc),
        only_obj_ptrs_in_the_past=bool(m.only_obj_ptrs_in_the_past_for_eval),
        image_size=image_size,
    )


def io_shapes(
    spec: ModelSpec, settings: mm.MemorySettings, *, object_score: bool = True
) -> dict[str, dict[str, dict[str, list[int | str]]]]:
    """Names and shapes of the four graphs (ints static, strings dynamic).

    ``object_score``: the memory encoder takes ``object_score_logits`` (SAM 2.1's
    no-object embedding); EdgeTAM has none, and its graph no such input.
    """
    s = spec.image_size
    c, h, w = spec.embedding_shape
    t, cm = settings.memory_tokens, settings.memory_dim
    b, n, m, p = DIM_B, DIM_N, DIM_M, DIM_P
    feats: list[int | str] = [1, c, h, w]
    # SAM 2's decoder projects them to its upscaling widths, C/8 and C/4 (32, 64 at 256).
    hr0: list[int | str] = [1, c // 8, 4 * h, 4 * w]
    hr1: list[int | str] = [1, c // 4, 2 * h, 2 * w]
    memory_encoder_inputs: dict[str, list[int | str]] = {
        mm.VISION_FEATURES: feats,
        mm.MASK_LOGITS: [b, 1, 4 * h, 4 * w],
        mm.MASK_FROM_PROMPT: [b],
    }
    if object_score:
        memory_encoder_inputs[mm.OBJECT_SCORE_LOGITS] = [b, 1]
    return {
        "encoder": {
            "inputs": {IMAGE: [1, 3, s, s]},
            "outputs": {
                mm.VISION_FEATURES: feats,
                mm.NO_MEMORY_FEATURES: feats,
                mm.HIGH_RES_FEATURES_0: hr0,
                mm.HIGH_RES_FEATURES_1: hr1,
            },
        },
        "memory_attention": {
            "inputs": {
                mm.VISION_FEATURES: feats,
                mm.MEMORY_BANK: [b, m, t, cm],
                mm.MEMORY_BANK_TPOS: [b, m],
                mm.POINTER_BANK: [b, p, c],
                mm.POINTER_BANK_OFFSETS: [b, p],
            },
            "outputs": {mm.CONDITIONED_FEATURES: [b, c, h, w]},
        },
        "decoder": {
            "inputs": {
                IMAGE_EMBEDDINGS: [b, c, h, w],
                mm.HIGH_RES_FEATURES_0: hr0,
                mm.HIGH_RES_FEATURES_1: hr1,
                POINT_COORDS: [b, n, 2],
                POINT_LABELS: [b, n],
                MASK_INPUT: [b, 1, 4 * h, 4 * w],
                HAS_MASK_INPUT: [b],
            },
            "outputs": {
                LOW_RES_MASKS: [b, spec.num_mask_outputs, 4 * h, 4 * w],
                IOU_PREDICTIONS: [b, spec.num_mask_outputs],
                mm.OBJECT_POINTERS: [b, spec.num_mask_outputs, c],
                mm.OBJECT_SCORE_LOGITS: [b, 1],
            },
        },
        "memory_encoder": {
            "inputs": memory_encoder_inputs,
            "outputs": {mm.MEMORY_FEATURES: [b, t, cm]},
        },
    }


_FILES = {
    "encoder": ENCODER_NAME,
    "memory_attention": mm.MEMORY_ATTENTION_NAME,
    "decoder": DECODER_NAME,
    "memory_encoder": mm.MEMORY_ENCODER_NAME,
}


# --------------------------------------------------------------------------- inputs


def _parity_inputs(
    spec: ModelSpec, settings: mm.MemorySettings, seed: int
) -> dict[str, dict[str, np.ndarray]]:
    """Random graph inputs (B=2, M=3 frames, P=4 pointers) for tracing and parity."""
    rng = np.random.default_rng(seed)
    s = spec.image_size
    c, h, w = spec.embedding_shape
    f32 = np.float32
    b = 2
    image = rng.uniform(0.0, 255.0, (1, 3, s, s)).astype(f32)
    coords = rng.uniform(0.0, s - 1.0, (b, 2, 2)).astype(f32)
    return {
        "encoder": {IMAGE: image},
        "memory_attention": {
            mm.MEMORY_BANK: rng.normal(
                0, 1, (b, 3, settings.memory_tokens, settings.memory_dim)
            ).astype(f32),
            # A conditioning frame, then the two latest frames (SAM 2's order).
            mm.MEMORY_BANK_TPOS: np.array([[0, 5, 6]] * b, f32),
            mm.POINTER_BANK: rng.normal(0, 1, (b, 4, c)).astype(f32),
            # Pointers of frames 0 (conditioning), 9, 8 and 2 (too old for a spatial slot).
            mm.POINTER_BANK_OFFSETS: np.array([[10, 1, 2, 8]] * b, f32),
        },
        "decoder": {
            IMAGE_EMBEDDINGS: rng.normal(0, 1, (b, c, h, w)).astype(f32),
            POINT_COORDS: coords,
            # A click with a negative one, and a box (SAM 2 appends one padding point
            # per prompt; _references appends it to these feeds too).
            POINT_LABELS: np.array([[1, 0], [2, 3]], f32),
            MASK_INPUT: rng.normal(0, 8, (b, 1, 4 * h, 4 * w)).astype(f32),
            HAS_MASK_INPUT: np.array([0, 1], f32),
        },
        "memory_encoder": {
            mm.MASK_LOGITS: rng.normal(0, 8, (b, 1, 4 * h, 4 * w)).astype(f32),
            mm.MASK_FROM_PROMPT: np.array([1, 0], f32),
            mm.OBJECT_SCORE_LOGITS: np.array([[3.0], [-2.0]], f32),
        },
    }


# --------------------------------------------------------------------------- references


@torch.no_grad()
def _references(
    model: nn.Module, spec: ModelSpec, inputs: dict[str, dict[str, np.ndarray]]
) -> dict[str, dict[str, np.ndarray]]:
    """Meta's own code paths on the parity inputs (numpy outputs, keyed like the graphs)."""
    m: Any = model
    s = spec.image_size
    image = torch.from_numpy(inputs["encoder"][IMAGE])
    mean = torch.tensor(spec.pixel_mean).view(1, 3, 1, 1) / 255.0
    std = torch.tensor(spec.pixel_std).view(1, 3, 1, 1) / 255.0
    out = m.forward_image((image / 255.0 - mean) / std)
    fpn = out["backbone_fpn"]
    vision = fpn[-1]
    refs: dict[str, dict[str, np.ndarray]] = {
        "encoder": {
            mm.VISION_FEATURES: vision.numpy(),
            mm.NO_MEMORY_FEATURES: (vision + m.no_mem_embed.view(1, -1, 1, 1)).numpy(),
            mm.HIGH_RES_FEATURES_0: fpn[0].numpy(),
            mm.HIGH_RES_FEATURES_1: fpn[1].numpy(),
        }
    }
    for key in ("memory_attention", "memory_encoder"):
        inputs[key][mm.VISION_FEATURES] = vision.numpy()
    inputs["decoder"][mm.HIGH_RES_FEATURES_0] = fpn[0].numpy()
    inputs["decoder"][mm.HIGH_RES_FEATURES_1] = fpn[1].numpy()
    b = 2
    grid = s // m.backbone_stride
    expanded = {
        k: [x.expand(b, -1, -1, -1) for x in out[k]] for k in ("backbone_fpn", "vision_pos_enc")
    }
    _, feats, pos, sizes = m._prepare_backbone_features(expanded)

    # Memory encoder: SAM 2 upsamples the chosen low-res mask to the image first.
    enc_in = {k: torch.from_numpy(v) for k, v in inputs["memory_encoder"].items()}
    high = F.interpolate(enc_in[mm.MASK_LOGITS], size=(s, s), mode="bilinear", align_corners=False)
    entries, pos_enc = [], None
    for i in range(b):
        feat, pos_enc = m._encode_new_memory(
            [f[:, i : i + 1] for f in feats],
            sizes,
            high[i : i + 1],
            enc_in[mm.OBJECT_SCORE_LOGITS][i : i + 1],
            bool(enc_in[mm.MASK_FROM_PROMPT][i] > 0),
        )
        entries.append(feat if feat.ndim == 3 else feat.flatten(2).transpose(1, 2))
    refs["memory_encoder"] = {mm.MEMORY_FEATURES: torch.cat(entries).numpy()}

    # Memory attention: the bank as SAM 2's output_dict, conditioned at frame 10.
    att = {k: torch.from_numpy(v) for k, v in inputs["memory_attention"].items()}
    assert pos_enc is not None
    frame = 10
    slots = att[mm.MEMORY_BANK_TPOS][0].tolist()  # [0, 5, 6]: frame 0, frames 8 and 9
    frames = [0] + [frame - (m.num_maskmem - int(t)) for t in slots[1:]]
    offsets = att[mm.POINTER_BANK_OFFSETS][0].tolist()  # frames 0, 9, 8, 2
    output_dict: dict[str, dict[int, dict[str, Any]]] = {
        "cond_frame_outputs": {},
        "non_cond_frame_outputs": {},
    }

    def entry(t: int) -> dict[str, Any]:
        key = "cond_frame_outputs" if t == 0 else "non_cond_frame_outputs"
        return output_dict[key].setdefault(t, {})

    for j, t in enumerate(frames):
        bank = att[mm.MEMORY_BANK][:, j]  # [B, T, Cm]
        if pos_enc[0].ndim == 4:
            bank = bank.transpose(1, 2).reshape(b, -1, grid, grid)
        entry(t)["maskmem_features"] = bank
        entry(t)["maskmem_pos_enc"] = [x.expand(b, *x.shape[1:]) for x in pos_enc]
    for j, off in enumerate(offsets):
        entry(frame - int(off))["obj_ptr"] = att[mm.POINTER_BANK][:, j]
    # Frame 2 only lends its pointer: SAM 2 reads spatial memories of the last 6 frames only.
    output_dict["non_cond_frame_outputs"][2].setdefault("maskmem_features", None)
    conditioned = m._prepare_memory_conditioned_features(
        frame, False, feats[-1:], pos[-1:], sizes[-1:], output_dict, 10**6
    )
    refs["memory_attention"] = {mm.CONDITIONED_FEATURES: conditioned.numpy()}

    # Decoder: _forward_sam_heads with SAM 2's own prompt encoder (it appends the padding point).
    dec = {k: torch.from_numpy(v) for k, v in inputs["decoder"].items()}
    masks, ious, ptr_multi, ptr_single, scores = [], [], [], [], []
    for i in range(b):
        points = {
            "point_coords": dec[POINT_COORDS][i : i + 1],
            "point_labels": dec[POINT_LABELS][i : i + 1].to(torch.int32),
        }
        mask = dec[MASK_INPUT][i : i + 1] if dec[HAS_MASK_INPUT][i] > 0 else None
        args = {
            "backbone_features": dec[IMAGE_EMBEDDINGS][i : i + 1],
            "point_inputs": points,
            "mask_inputs": mask,
            "high_res_features": [dec[mm.HIGH_RES_FEATURES_0], dec[mm.HIGH_RES_FEATURES_1]],
        }
        multi = m._forward_sam_heads(**args, multimask_output=True)
        single = m._forward_sam_heads(**args, multimask_output=False)
        masks.append(multi[0])
        ious.append(multi[2])
        ptr_multi.append(multi[5])
        ptr_single.append(single[5])
        scores.append(multi[6])
    refs["decoder"] = {
        "multimask_masks": torch.cat(masks).numpy(),
        "multimask_iou": torch.cat(ious).numpy(),
        "pointer_multimask": torch.cat(ptr_multi).numpy(),
        "pointer_single": torch.cat(ptr_single).numpy(),
        mm.OBJECT_SCORE_LOGITS: torch.cat(scores).numpy(),
    }
    # The padding point SAM 2 appends, as the runtime feeds it.
    for key, pad in ((POINT_COORDS, np.zeros((b, 1, 2))), (POINT_LABELS, -np.ones((b, 1)))):
        inputs["decoder"][key] = np.concatenate([inputs["decoder"][key], pad], 1).astype(np.float32)
    return refs


# --------------------------------------------------------------------------- parity


@dataclass(frozen=True)
class GraphParity:
    """One graph output: ONNX Runtime vs Meta's PyTorch code path."""

    graph: str
    output: str
    max_abs_diff: float
    ref_max_abs: float
    passed: bool
    mask_iou: float | None = None


@dataclass(frozen=True)
class Sam2ParityReport:
    """Per-graph parity of a SAM 2-family export (stored in ``samedge.json`` details)."""

    cases: tuple[GraphParity, ...]
    atol: float
    rtol: float
    min_mask_iou: float
    onnxruntime: str

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.cases)

    @property
    def worst_logit_diff(self) -> float:
        return max((c.max_abs_diff for c in self.cases if c.mask_iou is not None), default=0.0)

    @property
    def worst_mask_iou(self) -> float:
        return min((c.mask_iou for c in self.cases if c.mask_iou is not None), default=1.0)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["cases"] = [asdict(c) for c in self.cases]
        data["passed"] = self.passed
        return data

    def summary(self) -> str:
        lines = [
            f"parity vs PyTorch (onnxruntime {self.onnxruntime}, CPU; tolerance |diff| <= "
            f"{self.atol:g} + {self.rtol:g}*max|ref|, mask IoU >= {self.min_mask_iou:g}):"
        ]
        for c in self.cases:
            iou = f", mask IoU {c.mask_iou:.4f}" if c.mask_iou is not None else ""
            lines.append(
                f"  {c.graph:<17} {c.output:<22} max|diff| {c.max_abs_diff:.2e} "
                f"(max|ref| {c.ref_max_abs:.3g}){iou}  {'ok' if c.passed else 'FAIL'}"
            )
        return "\n".join(lines)


def _session(path: Path) -> Any:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    try:
        return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as e:  # ORT raises its own untyped errors
        raise ExportError(f"{path.name}: ONNX Runtime cannot load it ({e})") from e


def _compare(
    graph: str, output: str, got: np.ndarray, ref: np.ndarray, config: ExportConfig, masks: bool
) -> GraphParity:
    if got.shape != ref.shape:
        raise ExportError(f"{graph}: {output} came out {got.shape}, PyTorch gives {ref.shape}")
    diff = float(np.abs(got - ref).max())
    ref_max = float(np.abs(ref).max())
    ok = bool(np.isfinite(diff)) and diff <= config.atol + config.rtol * ref_max
    iou = None
    if masks:
        a, b = got > 0, ref > 0
        union = int(np.logical_or(a, b).sum())
        iou = float(np.logical_and(a, b).sum() / union) if union else 1.0
        ok = ok and iou >= config.min_mask_iou
    return GraphParity(graph, output, diff, ref_max, ok, iou)


def parity(
    directory: Path,
    inputs: Mapping[str, Mapping[str, np.ndarray]],
    refs: Mapping[str, Mapping[str, np.ndarray]],
    config: ExportConfig,
) -> Sam2ParityReport:
    """Run the four graphs on CPU ONNX Runtime and compare with ``refs``.

    Raises:
        ExportError: a graph does not load or returns the wrong shapes.
        ParityError: a difference is past the tolerance.
    """
    import onnxruntime as ort

    cases: list[GraphParity] = []
    for graph in ("encoder", "memory_encoder", "memory_attention"):
        session = _session(directory / _FILES[graph])
        names = [o.name for o in session.get_outputs()]
        wanted = {i.name for i in session.get_inputs()}
        feeds = {k: v for k, v in inputs[graph].items() if k in wanted}
        outs = dict(zip(names, session.run(names, feeds), strict=True))
        for name, ref in refs[graph].items():
            cases.append(_compare(graph, name, outs[name], ref, config, masks=False))
        del session
    session = _session(directory / _FILES["decoder"])
    masks, iou, pointers, scores = session.run(
        [LOW_RES_MASKS, IOU_PREDICTIONS, mm.OBJECT_POINTERS, mm.OBJECT_SCORE_LOGITS],
        dict(inputs["decoder"]),
    )
    dref = refs["decoder"]
    best = 1 + np.argmax(iou[:, 1:], axis=1)
    rows = np.arange(len(best))
    cases += [
        _compare("decoder", "masks (multimask)", masks[:, 1:], dref["multimask_masks"], config,
                 True),
        _compare("decoder", "iou (multimask)", iou[:, 1:], dref["multimask_iou"], config, False),
        _compare(
            "decoder", "pointer (best token)", pointers[rows, best], dref["pointer_multimask"],
            config, False,
        ),
        _compare("decoder", "pointer (token 0)", pointers[:, 0], dref["pointer_single"], config,
                 False),
        _compare("decoder", "object score", scores, dref[mm.OBJECT_SCORE_LOGITS], config, False),
    ]  # fmt: skip
    report = Sam2ParityReport(
        tuple(cases), config.atol, config.rtol, config.min_mask_iou, ort.__version__
    )
    if not report.passed:
        raise ParityError(
            "exported graphs disagree with PyTorch past the tolerance:\n" + report.summary()
        )
    return report


# --------------------------------------------------------------------------- export


def _wrappers(model: nn.Module, spec: ModelSpec) -> dict[str, nn.Module]:
    return {
        "encoder": Sam2EncoderGraph(model, spec.pixel_mean, spec.pixel_std),
        "memory_attention": Sam2MemoryAttentionGraph(model, spec.image_size),
        "decoder": Sam2DecoderGraph(model),
        "memory_encoder": Sam2MemoryEncoderGraph(model, spec.image_size),
    }


def _write(
    graph: str,
    wrapper: nn.Module,
    example: Mapping[str, np.ndarray],
    shapes: Mapping[str, Mapping[str, Sequence[int | str]]],
    out: Path,
    config: ExportConfig,
    metadata: Mapping[str, str],
) -> None:
    names = list(shapes["inputs"])
    args = tuple(torch.from_numpy(np.ascontiguousarray(example[n])) for n in names)
    dynamic: dict[str, dict[int, str]] = {}
    for name, shape in {**shapes["inputs"], **shapes["outputs"]}.items():
        axes = {i: d for i, d in enumerate(shape) if isinstance(d, str)}
        if axes:
            dynamic[name] = axes
    raw = trace_to_onnx(
        wrapper.eval(),
        args,
        out.parent / f".{out.stem}.raw" / out.name,
        input_names=names,
        output_names=list(shapes["outputs"]),
        dynamic_axes=dynamic or None,
        opset=config.opset,
    )
    finish_onnx(
        raw,
        out,
        metadata=metadata,
        output_shapes=shapes["outputs"],
        external_data=config.external_data if graph == "encoder" else False,
        producer=f"samedge {__version__} (torch {torch.__version__})",
    )
    log.info("wrote %s", out.name)


def export_sam2_model(
    spec: ModelSpec,
    checkpoint: str | os.PathLike[str] | None,
    output: str | os.PathLike[str],
    config: ExportConfig,
    *,
    force: bool = False,
) -> ExportReport:
    """Export a SAM 2-family ``spec`` to a verified model directory of four graphs.

    Args and Raises as :func:`samedge.exporters.export_model`, which calls this
    for models whose spec has ``family == "sam2"``.
    """
    from samedge.exporters.builders import resolve_builder
    from samedge.exporters.export import ExportReport, _peak_rss_bytes, _sizes, _Steps

    output = Path(output)
    steps = _Steps(f"export {spec.name}", ["build", *_FILES, "verify"], config.progress)
    report: Sam2ParityReport | None = None
    try:
        with claim_output(output), atomic_directory(output, force=force, marker=CARD_NAME) as stage:
            with steps.step("build"):
                builder = resolve_builder(spec)
                model = builder(None if checkpoint is None else Path(checkpoint), seed=config.seed)
                _check_sam2(model, spec)
                sha = sha256_file(checkpoint) if checkpoint is not None else None
                settings = memory_settings(model, spec.image_size)
                uses_score = getattr(model, "no_obj_embed_spatial", None) is not None
                shapes = io_shapes(spec, settings, object_score=uses_score)
                inputs = _parity_inputs(spec, settings, config.seed)
                refs = _references(model, spec, inputs)
            card = ModelCard.from_spec(
                spec,
                opset=config.opset,
                checkpoint_sha256=sha,
                memory_attention=mm.MEMORY_ATTENTION_NAME,
                memory_encoder=mm.MEMORY_ENCODER_NAME,
                memory=settings.to_dict(),
            )
            metadata = card.to_metadata()
            for graph, wrapper in _wrappers(model, spec).items():
                with steps.step(graph):
                    _write(
                        graph, wrapper, inputs[graph], shapes[graph], stage / _FILES[graph],
                        config, metadata,
                    )  # fmt: skip
            del model
            gc.collect()
            with steps.step("verify"):
                for graph, name in _FILES.items():
                    ops = check_graph(stage / name, **shapes[graph])
                    log.info("%s: checker, contract and %d portable op types ok", name, len(ops))
                if config.verify:
                    report = parity(stage, inputs, refs, config)
            card = replace(
                card,
                details={
                    "parity": report.to_dict() if report is not None else None,
                    "random_weights_seed": config.seed if checkpoint is None else None,
                    "exported_with": exported_with(),
                },
            )
            write_model_card(stage, card)
    finally:
        steps.close()
    return ExportReport(
        model=spec.name,
        output=output,
        files=_sizes(output),
        opset=config.opset,
        checkpoint=None if checkpoint is None else str(checkpoint),
        checkpoint_sha256=sha,
        parity=cast("Any", report),
        seconds=steps.seconds,
        peak_rss_bytes=_peak_rss_bytes(),
    )


def _check_sam2(model: nn.Module, spec: ModelSpec) -> None:
    """The card promises the spec's numbers to the runtime: make sure the model agrees."""
    m: Any = model
    problems = []
    for attr in ("image_encoder", "memory_attention", "memory_encoder", "sam_mask_decoder"):
        if not hasattr(m, attr):
            problems.append(f"has no {attr}")
    if not problems:
        if int(m.image_size) != spec.image_size:
            problems.append(f"image size {m.image_size} vs spec {spec.image_size}")
        grid = spec.image_size // int(m.backbone_stride)
        if (int(m.hidden_dim), grid, grid) != tuple(spec.embedding_shape):
            problems.append(
                f"features ({m.hidden_dim}, {grid}, {grid}) vs spec {spec.embedding_shape}"
            )
        if not m.use_high_res_features_in_sam:
            problems.append("does not use high-resolution features (samedge's contract needs them)")
    if problems:
        raise ExportError(f"model {spec.name}: " + "; ".join(problems))
