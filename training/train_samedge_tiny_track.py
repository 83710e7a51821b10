"""Train samedge-tiny-track: SAM 2's memory on samedge-tiny's frozen encoder, on a CPU.

One command, fixed seed, time-budgeted, resumable:

    python training/train_samedge_tiny_track.py --minutes 45 --out training/

The model is ``samedge.exporters.tiny_track_model`` (Meta's ``SAM2VideoPredictor``
at width 128). It starts from ``training/samedge_tiny.pt``: the encoder and the
prompt encoder are copied and frozen, the mask decoder is copied and
fine-tuned (a lower learning rate), the memory attention, memory encoder,
object-pointer and object-score heads and the high-resolution projections are
trained from scratch.

Data: procedural moving sequences (:class:`samedge.scenes.MovingScene`, 240×320
like the held-out DAVIS folders, squashed to 256×256 as the runtime does;
objects that cross, a large occluder, objects that leave and come back, training
photo backgrounds only, scene seeds < 900000: the held-out ones start at
:data:`samedge.davis.HELDOUT_VIDEO_SEED`). The encoder is frozen, so each
sequence's three feature levels are computed once and kept (float16) in a bank
of ``--bank`` sequences, ``--refresh`` of them replaced every step.

A step is SAM 2's training in miniature, through the same torch modules the
exporter traces into the four graphs (so what is trained is what runs): on
``--clips`` clips of ``--frames`` frames (frame stride 1-3, sometimes played
backwards), up to ``--objects`` objects visible on the first frame are prompted
there (all by a box or all by a click), decoded without memory and written to
memory; every later frame is decoded from memory attention over the
conditioning frame, the last 6 frames and the object pointers, with no prompt,
and its chosen mask written to memory, exactly as
:class:`samedge.stream.memory.MemoryTracker` does. Loss on every frame: 20 ×
focal + dice (min over the 3 masks where the runtime uses multimask output) on
the low-resolution logits upsampled to 128×128 where the object is visible and
predicted present, MSE of the IoU head, and the object-presence score
(binary cross-entropy against "visible on this frame"), so occlusion and
re-entry are learned.

Validation (``--val-every`` minutes): the same tracking over 40-frame
sequences of seeds 800000+ (training photos, never trained on), box prompts,
mean J (IoU at 128×128; an empty prediction on an empty frame counts 1).

Outputs in ``--out``: ``samedge_tiny_track.pt`` (the whole model's state dict,
``build_samedge_tiny_track("training/samedge_tiny_track.pt")``),
``samedge_tiny_track_loss.png``, ``samedge_tiny_track_train.log``,
``samedge_tiny_track_history.json``; ``samedge_tiny_track_last.pt`` is the
checkpoint, written atomically every ``--save-every`` minutes, that a re-run
resumes from (``--fresh`` ignores it).
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from samedge.exporters._sam2_graphs import (
    Sam2DecoderGraph,
    Sam2MemoryAttentionGraph,
    Sam2MemoryEncoderGraph,
)
from samedge.exporters.tiny_model import TINY_IMAGE_SIZE, build_samedge_tiny
from samedge.exporters.tiny_track_model import init_from_samedge_tiny, tiny_track_model
from samedge.masks import border_distance
from samedge.memory_predictor import resize_square
from samedge.models import get_model_spec
from samedge.scenes import MovingScene, photo_backgrounds

log = logging.getLogger("train_samedge_tiny_track")

S = TINY_IMAGE_SIZE
GT = 128  # side of the ground truth the upsampled logits are scored at
FRAME_SIZE = (240, 320)  # the held-out DAVIS folders' frames
MEAN = torch.tensor(get_model_spec("samedge_tiny").pixel_mean).view(1, 3, 1, 1)
STD = torch.tensor(get_model_spec("samedge_tiny").pixel_std).view(1, 3, 1, 1)
VAL_SEED = 800_000  # validation scenes; training seeds count up from 0
MIN_PX = 4  # smallest first-frame object (pixels at 128×128) to prompt
NUM_MASKMEM = 7
MAX_PTRS = 16
CKPT = "samedge_tiny_track_last.pt"


# ----------------------------------------------------------------------------- data


@dataclass
class Sequence:
    """One moving scene's frames, as the frozen encoder sees them, with its ground truth."""

    vision: torch.Tensor  # [L, 128, 16, 16] float16
    s4: torch.Tensor  # [L, 24, 64, 64] float16
    s8: torch.Tensor  # [L, 64, 32, 32] float16
    labels: np.ndarray  # [L, GT, GT] int16 object ids (0: background)


def make_sequence(
    seed: int, frames: int, photos: list[np.ndarray], encoder: Any, rng: np.random.Generator
) -> Sequence:
    """Render ``frames`` frames of MovingScene ``seed`` and encode them once."""
    cam = MovingScene(
        seed=seed,
        size=FRAME_SIZE,
        num_objects=int(rng.integers(2, 6)),
        fps=float(rng.uniform(8.0, 16.0)),
        reentry=0.75,
        occluders=int(rng.choice([0, 1, 1, 2])),
        backgrounds=photos if rng.random() < 0.75 else None,
    )
    start = int(rng.integers(0, 48))
    images, labels = [], np.zeros((frames, GT, GT), np.int16)
    for i, scene in enumerate(cam.frames(frames, start=start)):
        images.append(resize_square(scene.image, S))
        for mask, oid in zip(scene.masks, scene.ids, strict=True):
            small = cv2.resize(mask.astype(np.float32), (GT, GT), interpolation=cv2.INTER_AREA)
            labels[i][small >= 0.5] = oid
    x = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float()
    with torch.no_grad():
        f4, f8, f16 = encoder.pyramid((x - MEAN) / STD)
    return Sequence(f16.half(), f4.half(), f8.half(), labels)


def val_sequences(n: int, frames: int, photos: list[np.ndarray], encoder: Any) -> list[Sequence]:
    rng = np.random.default_rng(VAL_SEED)
    out = []
    for i in range(n):
        seq = make_sequence(VAL_SEED + i, frames, photos, encoder, rng)
        out.append(seq)
    return out


def sample_click(rng: np.random.Generator, mask: np.ndarray) -> tuple[float, float]:
    """A pixel of ``mask`` toward its interior (distance-transform² weighted), in S px."""
    w = border_distance(mask).ravel().astype(np.float64) ** 2
    if w.sum() > 0:
        idx = int(rng.choice(w.size, p=w / w.sum()))
    else:
        idx = int(rng.choice(np.flatnonzero(mask.ravel())))
    y, x = divmod(idx, mask.shape[1])
    scale = S / mask.shape[0]
    return (x + rng.uniform(0.0, 1.0)) * scale - 0.5, (y + rng.uniform(0.0, 1.0)) * scale - 0.5


def sample_box(rng: np.random.Generator, mask: np.ndarray, jitter: float) -> list[float]:
    """The mask's box in S px, each side moved by N(0, jitter × side), at most 8 px."""
    ys, xs = np.nonzero(mask)
    scale = S / mask.shape[0]
    x0, y0 = xs.min() * scale, ys.min() * scale
    x1, y1 = (xs.max() + 1) * scale - 1, (ys.max() + 1) * scale - 1
    w, h = x1 - x0 + 1, y1 - y0 + 1
    noise = rng.normal(0.0, jitter, 4) * np.array([w, h, w, h])
    box = np.array([x0, y0, x1, y1]) + np.clip(noise, -8, 8)
    return list(np.clip(box, 0, S - 1))


# ----------------------------------------------------------------------------- model


class _TrainAttention(Sam2MemoryAttentionGraph):
    """The exported memory attention, with its temporal table read from the parameter.

    The export wrapper keeps ``maskmem_tpos_enc`` as a constant buffer (it is one
    in the graph); training needs the gradient to reach the parameter.
    """

    def forward(self, *args: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        table = self.model.maskmem_tpos_enc.reshape(self.num_maskmem, self.mem_dim)
        self.tpos_table = torch.flip(table, dims=[0])
        return super().forward(*args)


class Graphs:
    """The torch modules the exporter traces, used for training and validation."""

    def __init__(self, model: Any) -> None:
        self.model = model
        self.attention = _TrainAttention(model, S)
        self.decoder = Sam2DecoderGraph(model)
        self.memory_encoder = Sam2MemoryEncoderGraph(model, S)


def choose(masks: torch.Tensor, iou: torch.Tensor, multimask: bool) -> torch.Tensor:
    """The mask index the runtime picks (samedge.stream.memory._choose), per object."""
    best = 1 + iou[:, 1:].argmax(1)
    if multimask:
        return best
    single = masks[:, 0].detach()
    union = (single > -0.05).flatten(1).sum(1).clamp(min=1)
    stability = (single > 0.05).flatten(1).sum(1) / union
    return torch.where(stability < 0.98, best, torch.zeros_like(best))


def track(
    g: Graphs,
    vision: torch.Tensor,
    hr0: torch.Tensor,
    hr1: torch.Tensor,
    coords: torch.Tensor,
    labels: torch.Tensor,
) -> list[dict[str, Any]]:
    """Prompt B objects on frame 0 and follow them through T frames, as MemoryTracker does.

    Args:
        vision, hr0, hr1: ``[T, B, ...]`` each object's frame features (hr: projected).
        coords, labels: ``[B, N, 2]`` / ``[B, N]`` frame-0 prompt tokens (padding included).

    Returns:
        Per frame: ``masks`` [B,4,L,L], ``iou`` [B,4], ``score`` [B,1], ``multimask``.
    """
    m = g.model
    frames, b = vision.shape[:2]
    memories: dict[int, torch.Tensor] = {}
    pointers: dict[int, torch.Tensor] = {}
    rows = torch.arange(b)
    side = hr0.shape[-1]
    no_mask = torch.zeros(b, 1, side, side)
    no_mask_flag = torch.zeros(b)
    out = []
    for t in range(frames):
        if t == 0:
            emb = vision[0] + m.no_mem_embed.view(1, -1, 1, 1)
            c, lab = coords, labels
            points = int((labels[0] >= 0).sum())  # a box counts 2, as in SAM 2
            multimask = points <= 1
        else:
            bank, slots = [memories[0]], [0.0]
            for slot in range(1, NUM_MASKMEM):
                f = t - (NUM_MASKMEM - slot)
                if f >= 1:
                    bank.append(memories[f])
                    slots.append(float(slot))
            ptrs, offsets = [pointers[0]], [float(t)]
            for dt in range(1, MAX_PTRS):
                if t - dt < 1:
                    break
                ptrs.append(pointers[t - dt])
                offsets.append(float(dt))
            emb = g.attention(
                vision[t],
                torch.stack(bank, 1),
                torch.tensor(slots).expand(b, -1),
                torch.stack(ptrs, 1),
                torch.tensor(offsets).expand(b, -1),
            )
            c = torch.zeros(b, 2, 2)
            lab = torch.full((b, 2), -1.0)
            multimask = True  # no points: SAM 2's tracked frames use multimask output
        masks, iou, ptr_all, score = g.decoder(emb, hr0[t], hr1[t], c, lab, no_mask, no_mask_flag)
        k = choose(masks, iou, multimask)
        ptr_k = k if multimask else torch.zeros_like(k)
        chosen = masks[rows, k][:, None]
        prompted = torch.full((b,), 1.0 if t == 0 else 0.0)
        memories[t] = g.memory_encoder(vision[t], chosen, prompted, score)
        pointers[t] = ptr_all[rows, ptr_k]
        # Frame 0 is the conditioning frame: kept while the object lives.
        if t - NUM_MASKMEM >= 1:
            memories.pop(t - NUM_MASKMEM, None)
        if t - MAX_PTRS >= 1:
            pointers.pop(t - MAX_PTRS, None)
        out.append({"masks": masks, "iou": iou, "score": score, "multimask": multimask, "k": k})
    return out


def mask_losses(logits: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Per-mask focal (α 0.25, γ 2), dice and IoU; logits [B,K,h,w], target [B,1,h,w]."""
    p = torch.sigmoid(logits)
    ce = F.binary_cross_entropy_with_logits(logits, target.expand_as(logits), reduction="none")
    pt = p * target + (1 - p) * (1 - target)
    alpha = 0.25 * target + 0.75 * (1 - target)
    focal = (alpha * ce * (1 - pt) ** 2).mean((-1, -2))
    inter = (p * target).sum((-1, -2))
    dice = 1 - (2 * inter + 1) / (p.sum((-1, -2)) + target.sum((-1, -2)) + 1)
    hard = (logits > 0).float()
    hi = (hard * target).sum((-1, -2))
    union = (hard + target).clamp(max=1).sum((-1, -2))
    iou = torch.where(union > 0, hi / union.clamp(min=1), torch.ones_like(hi))
    return focal, dice, iou


def frame_loss(out: dict[str, Any], target: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
    """SAM 2's per-frame loss: masks (min over multimask), IoU head, presence score."""
    present = (target.flatten(1).sum(1) > 0).float()
    logits = F.interpolate(out["masks"], size=(GT, GT), mode="bilinear", align_corners=False)
    focal, dice, iou = mask_losses(logits, target[:, None])
    tokens = slice(1, 4) if out["multimask"] else slice(0, 1)
    per_mask = 20 * focal[:, tokens] + dice[:, tokens]
    mask_loss = per_mask.min(1).values
    # Masks of objects the model calls absent are NO_OBJ_SCORE constants (no
    # gradient): only the presence score can fix those, as in SAM 2.
    weight = present * (out["score"][:, 0] > 0).float().detach()
    iou_loss = ((out["iou"][:, tokens] - iou[:, tokens].detach()) ** 2).mean(1)
    score_loss = F.binary_cross_entropy_with_logits(out["score"][:, 0], present, reduction="none")
    n = weight.sum().clamp(min=1)
    loss = (weight * (mask_loss + iou_loss)).sum() / n + score_loss.mean()
    rows = torch.arange(len(present))
    chosen_iou = iou[rows, out["k"]]
    shown = (out["score"][:, 0] > 0).float()
    j = torch.where(shown > 0, chosen_iou, 1.0 - present)  # empty on empty counts 1
    return loss, {"j": float(j.mean()), "present": float(present.mean())}


def features(
    g: Graphs, seqs: list[Sequence], frames: list[np.ndarray], counts: list[int]
) -> tuple[torch.Tensor, ...]:
    """``[T, B, ...]`` features of each object's clip (objects of a clip share them)."""
    dec: Any = g.model.sam_mask_decoder
    vis, h0, h1 = [], [], []
    for seq, idx, n in zip(seqs, frames, counts, strict=True):
        i = torch.from_numpy(idx)
        v = seq.vision[i].float()
        a = dec.conv_s0(seq.s4[i].float())
        b = dec.conv_s1(seq.s8[i].float())
        vis.append(v[:, None].expand(-1, n, -1, -1, -1))
        h0.append(a[:, None].expand(-1, n, -1, -1, -1))
        h1.append(b[:, None].expand(-1, n, -1, -1, -1))
    return torch.cat(vis, 1), torch.cat(h0, 1), torch.cat(h1, 1)


def prompt_tokens(
    rng: np.random.Generator, masks: list[np.ndarray], box: bool, jitter: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """SAM 2's sparse tokens (box corners or one click, then one padding point)."""
    coords, labels = [], []
    for mask in masks:
        if box:
            x0, y0, x1, y1 = sample_box(rng, mask, jitter)
            coords.append([[x0, y0], [x1, y1], [0.0, 0.0]])
            labels.append([2.0, 3.0, -1.0])
        else:
            x, y = sample_click(rng, mask)
            coords.append([[x, y], [0.0, 0.0]])
            labels.append([1.0, -1.0])
    return torch.tensor(coords, dtype=torch.float32), torch.tensor(labels, dtype=torch.float32)


def clip_step(
    g: Graphs, rng: np.random.Generator, bank: list[Sequence], args: argparse.Namespace
) -> tuple[torch.Tensor | None, dict[str, float]]:
    """One step's loss over ``args.clips`` clips."""
    seqs, frames, counts, masks, targets = [], [], [], [], []
    box = bool(rng.random() < 0.5)
    tries = 0
    while len(seqs) < args.clips and tries < 20 * args.clips:
        tries += 1
        seq = bank[int(rng.integers(len(bank)))]
        length = len(seq.labels)
        stride = int(rng.choice([1, 1, 1, 2, 2, 3]))
        stride = min(stride, max(1, (length - 1) // (args.frames - 1)))
        start = int(rng.integers(0, length - stride * (args.frames - 1)))
        idx = start + stride * np.arange(args.frames)
        if rng.random() < 0.3:
            idx = idx[::-1].copy()
        first = seq.labels[idx[0]]
        ids, areas = np.unique(first[first > 0], return_counts=True)
        ids = ids[areas >= MIN_PX]
        if not len(ids):
            continue
        ids = rng.permutation(ids)[: args.objects]
        seqs.append(seq)
        frames.append(idx)
        counts.append(len(ids))
        masks += [first == oid for oid in ids]
        targets.append(np.stack([seq.labels[idx] == oid for oid in ids], 1))  # [T, n, GT, GT]
    if not seqs:
        return None, {}
    vision, hr0, hr1 = features(g, seqs, frames, counts)
    coords, labels = prompt_tokens(rng, masks, box, args.box_jitter)
    target = torch.from_numpy(np.concatenate(targets, 1)).float()  # [T, B, GT, GT]
    outs = track(g, vision, hr0, hr1, coords, labels)
    losses, js, first_j = [], [], 0.0
    for t, out in enumerate(outs):
        loss, stats = frame_loss(out, target[t])
        losses.append(loss)
        js.append(stats["j"])
        if t == 0:
            first_j = stats["j"]
    return torch.stack(losses).mean(), {
        "j_first": first_j,
        "j_tracked": float(np.mean(js[1:])),
        "objects": float(vision.shape[1]),
    }


@torch.no_grad()
def validate(g: Graphs, seqs: list[Sequence], max_objects: int = 4) -> dict[str, float]:
    """Mean J over the validation sequences' tracked frames (box prompts on frame 0)."""
    rng = np.random.default_rng(0)
    js, after = [], []
    for seq in seqs:
        first = seq.labels[0]
        ids, areas = np.unique(first[first > 0], return_counts=True)
        ids = ids[areas >= MIN_PX][:max_objects]
        if not len(ids):
            continue
        idx = np.arange(len(seq.labels))
        vision, hr0, hr1 = features(g, [seq], [idx], [len(ids)])
        coords, labels = prompt_tokens(rng, [first == i for i in ids], True, 0.0)
        outs = track(g, vision, hr0, hr1, coords, labels)
        for t in range(1, len(idx)):
            target = torch.from_numpy(np.stack([seq.labels[t] == i for i in ids])).float()
            _, stats = frame_loss(outs[t], target)
            js.append(stats["j"])
            if t >= len(idx) // 2:
                after.append(stats["j"])
    return {"j": float(np.mean(js)), "j_late": float(np.mean(after))}


# ----------------------------------------------------------------------------- training


def lr_at(frac: float, base: float, warmup_frac: float = 0.03) -> float:
    """Warm-up, then cosine to 3% of ``base``, following the time budget."""
    if frac < warmup_frac:
        return base * max(frac / warmup_frac, 0.02)
    t = (frac - warmup_frac) / (1 - warmup_frac)
    return base * (0.03 + 0.97 * 0.5 * (1 + math.cos(math.pi * min(t, 1.0))))


def save_atomic(obj: Any, path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def plot_curve(history: list[dict[str, Any]], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [h for h in history if "loss" in h]
    if not rows:
        return
    steps = np.array([h["step"] for h in rows])
    loss = np.array([h["loss"] for h in rows])
    k = max(1, len(loss) // 50)
    smooth = np.convolve(loss, np.ones(k) / k, mode="valid")
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 4))
    a1.plot(steps, loss, alpha=0.25, color="C0", label="loss")
    a1.plot(steps[k - 1 :], smooth, color="C0", label=f"loss (mean of {k})")
    a1.set_xlabel("step")
    a1.set_ylabel("20·focal + dice + IoU MSE + presence BCE")
    a1.set_yscale("log")
    a1.legend()
    val = [h for h in history if "val_j" in h]
    if val:
        a2.plot([h["step"] for h in val], [h["val_j"] for h in val], "o-", label="J, all frames")
        a2.plot([h["step"] for h in val], [h["val_j_late"] for h in val], "s-", label="J, 2nd half")
        a2.set_ylim(0, 1)
        a2.set_xlabel("step")
        a2.set_ylabel("validation J (memory tracking, box prompt)")
        a2.legend()
    fig.suptitle("samedge-tiny-track training")
    fig.tight_layout()
    tmp = out.with_name(out.stem + ".tmp.png")
    fig.savefig(tmp, dpi=90)
    plt.close(fig)
    os.replace(tmp, out)


def build(args: argparse.Namespace) -> tuple[Any, torch.optim.Optimizer]:
    """The model from samedge-tiny's weights, frozen parts frozen, and its optimiser."""
    torch.manual_seed(args.seed)
    model: Any = tiny_track_model()
    copied = init_from_samedge_tiny(model, build_samedge_tiny(args.init))
    log.info("from %s: %d tensors copied", args.init, len(copied))
    for module in (model.image_encoder, model.sam_prompt_encoder):
        module.requires_grad_(False)
    fine_tuned, new = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        (fine_tuned if name in copied else new).append(p)
    log.info(
        "trainable: %d new, %d fine-tuned (of %d) parameters",
        sum(p.numel() for p in new),
        sum(p.numel() for p in fine_tuned),
        sum(p.numel() for p in model.parameters()),
    )
    opt = torch.optim.AdamW(
        [
            {"params": new, "lr": args.lr, "base": args.lr},
            {
                "params": fine_tuned,
                "lr": args.lr * args.decoder_lr,
                "base": args.lr * args.decoder_lr,
            },
        ],
        weight_decay=0.01,
    )
    model.train()
    model.image_encoder.eval()  # BatchNorm statistics stay samedge-tiny's
    return model, opt


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--minutes", type=float, default=45.0, help="training time budget")
    ap.add_argument("--out", type=Path, default=Path("training"))
    ap.add_argument("--init", type=Path, default=Path("training/samedge_tiny.pt"))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--bank", type=int, default=40, help="encoded sequences kept in memory")
    ap.add_argument("--seq-frames", type=int, default=24, help="frames per bank sequence")
    ap.add_argument("--refresh", type=float, default=0.25, help="bank sequences replaced per step")
    ap.add_argument("--clips", type=int, default=2, help="clips per step")
    ap.add_argument("--frames", type=int, default=8, help="frames per clip")
    ap.add_argument("--objects", type=int, default=3, help="most objects per clip")
    ap.add_argument("--box-jitter", type=float, default=0.05, help="box side noise (share)")
    ap.add_argument("--lr", type=float, default=1.5e-3)
    ap.add_argument("--decoder-lr", type=float, default=0.2, help="decoder lr as a share of --lr")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--save-every", type=float, default=3.0, help="minutes between checkpoints")
    ap.add_argument("--val-every", type=float, default=7.5, help="minutes between validations")
    ap.add_argument("--val-sequences", type=int, default=4)
    ap.add_argument("--val-frames", type=int, default=32)
    ap.add_argument("--max-steps", type=int, default=None, help="stop after this many steps")
    ap.add_argument("--fresh", action="store_true", help=f"ignore OUT/{CKPT}")
    args = ap.parse_args(argv)

    args.out.mkdir(parents=True, exist_ok=True)
    # The script's own logger (not basicConfig): a second run in one process, as
    # the smoke test makes, logs to its own --out.
    log.setLevel(logging.INFO)
    log.propagate = False
    for handler in list(log.handlers):
        log.removeHandler(handler)
        handler.close()
    for handler in (
        logging.FileHandler(args.out / "samedge_tiny_track_train.log"),
        logging.StreamHandler(),
    ):
        handler.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
        log.addHandler(handler)
    torch.set_num_threads(args.threads)
    rng = np.random.default_rng([args.seed, 3])
    model, opt = build(args)
    g = Graphs(model)
    ckpt_path = args.out / CKPT
    history: list[dict[str, Any]] = []
    step, elapsed, next_seed = 0, 0.0, 0
    if ckpt_path.exists() and not args.fresh:
        ck = torch.load(ckpt_path, weights_only=False)
        model.load_state_dict(ck["model"])
        opt.load_state_dict(ck["opt"])
        step, elapsed, history = ck["step"], ck["elapsed"], ck["history"]
        next_seed = ck["next_seed"]
        rng.bit_generator.state = ck["rng"]
        torch.set_rng_state(ck["torch_rng"])
        log.info("resumed from %s at step %d (%.1f min)", ckpt_path, step, elapsed / 60)
    log.info("args: %s", vars(args))

    encoder = model.image_encoder.trunk
    photos = photo_backgrounds("train", max_side=384)
    t0 = time.time()
    bank = []
    for _ in range(args.bank):
        bank.append(make_sequence(next_seed, args.seq_frames, photos, encoder, rng))
        next_seed += 1
    val = val_sequences(args.val_sequences, args.val_frames, photos, encoder)
    log.info("bank of %d sequences + %d validation: %.0f s", len(bank), len(val), time.time() - t0)

    budget = args.minutes * 60
    last_save = elapsed
    last_val = -math.inf if step == 0 else elapsed
    bar = tqdm(total=int(budget), initial=int(elapsed), unit="s", desc="train", file=sys.stderr)
    t_start = time.time() - elapsed
    refresh_debt = 0.0
    while elapsed < budget and (args.max_steps is None or step < args.max_steps):
        if elapsed - last_val >= args.val_every * 60:
            model.eval()
            v = validate(g, val)
            model.train()
            model.image_encoder.eval()
            history.append({"step": step, "t": elapsed, "val_j": v["j"], "val_j_late": v["j_late"]})
            log.info("validation step %d: J %.3f (2nd half %.3f)", step, v["j"], v["j_late"])
            last_val = elapsed
            plot_curve(history, args.out / "samedge_tiny_track_loss.png")
        frac = elapsed / budget
        for group in opt.param_groups:
            group["lr"] = lr_at(frac, group["base"])
        loss, stats = clip_step(g, rng, bank, args)
        if loss is not None:
            opt.zero_grad(set_to_none=True)
            loss.backward()
            params = [p for group in opt.param_groups for p in group["params"]]
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            history.append({"step": step, "loss": loss.item(), "t": elapsed, **stats})
        refresh_debt += args.refresh
        while refresh_debt >= 1:
            refresh_debt -= 1
            j = int(rng.integers(len(bank)))
            bank[j] = make_sequence(next_seed, args.seq_frames, photos, encoder, rng)
            next_seed += 1
        step += 1
        now = time.time() - t_start
        bar.update(int(now) - int(elapsed))
        elapsed = now
        if stats:
            bar.set_postfix(loss=f"{loss.item():.3f}", j=f"{stats['j_tracked']:.2f}", step=step)
        if step % 25 == 0:
            recent = [h for h in history[-40:] if "loss" in h][-25:]
            if recent:
                log.info(
                    "step %d  %.1f min  lr %.2e  loss %.4f  J first %.3f tracked %.3f  seqs %d",
                    step,
                    elapsed / 60,
                    opt.param_groups[0]["lr"],
                    np.mean([h["loss"] for h in recent]),
                    np.mean([h["j_first"] for h in recent]),
                    np.mean([h["j_tracked"] for h in recent]),
                    next_seed,
                )
        done = elapsed >= budget or (args.max_steps is not None and step >= args.max_steps)
        if elapsed - last_save >= args.save_every * 60 or done:
            save_atomic(
                {
                    "model": model.state_dict(),
                    "opt": opt.state_dict(),
                    "step": step,
                    "elapsed": elapsed,
                    "history": history,
                    "next_seed": next_seed,
                    "rng": rng.bit_generator.state,
                    "torch_rng": torch.get_rng_state(),
                    "args": {k: str(v) for k, v in vars(args).items()},
                },
                ckpt_path,
            )
            last_save = elapsed
    bar.close()
    model.eval()
    v = validate(g, val)
    history.append({"step": step, "t": elapsed, "val_j": v["j"], "val_j_late": v["j_late"]})
    log.info("final validation step %d: J %.3f (2nd half %.3f)", step, v["j"], v["j_late"])
    save_atomic(model.state_dict(), args.out / "samedge_tiny_track.pt")
    plot_curve(history, args.out / "samedge_tiny_track_loss.png")
    summary = [h for h in history if "val_j" in h]
    tmp = args.out / "samedge_tiny_track_history.json.tmp"
    tmp.write_text(
        json.dumps({"validation": summary, "steps": step, "minutes": elapsed / 60}, indent=1)
    )
    os.replace(tmp, args.out / "samedge_tiny_track_history.json")
    log.info(
        "done: %d steps in %.1f min, %d sequences -> %s",
        step, elapsed / 60, next_seed, args.out / "samedge_tiny_track.pt",
    )  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
