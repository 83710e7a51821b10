"""Train samedge-tiny on procedural scenes: SAM's recipe in miniature, on a CPU.

One command, fixed seed, time-budgeted, resumable:

    python training/train_samedge_tiny.py --minutes 85 --out training/

What a step does (``--images`` scenes from a pre-generated bank, refreshed as
training goes so the model does not memorise it):

1. The encoder runs once per image; the decoder (cheap next to it) runs on
   ``--objects`` prompts per image in one batched call.
2. Round 1 prompts: a positive click sampled toward the object's interior
   (distance-transform weighted; trained with multimask output and the
   min-loss mask, like SAM), a box with jitter, or a few positive/negative
   clicks (single-mask output).
3. ``--rounds - 1`` corrective rounds: a click sampled in the error region of
   the previous prediction (positive in a miss, negative in a false alarm) is
   added, and the previous low-resolution logits are fed back as
   ``mask_input`` most of the time.
4. Loss: 20 × focal + 1 × dice on the 64×64 low-resolution logits upsampled
   (bilinear, as the runtime upsamples them) to ``--loss-size`` (128 by
   default) against the ground truth at that size, plus MSE between the IoU
   head and the actual IoU there. Scoring at 64×64 taught a staircase: masks
   matched the 64×64 target (IoU ~0.70 in training) but lost ~0.1 IoU at
   256×256, most on small objects. 256 costs 2.6× per step here, 128 nothing.

The learning rate follows the *time* budget (warm-up, then cosine), so a run
cut short and resumed ends on the same schedule. A checkpoint is written
atomically every ``--save-every`` minutes to ``OUT/last_checkpoint.pt``;
re-running the same command resumes from it. Outputs: ``OUT/samedge_tiny.pt``
(the model's state dict, loadable by
``samedge.exporters.tiny_model.build_samedge_tiny``), ``OUT/loss_curve.png``,
``OUT/train_log.jsonl``.
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

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from samedge.exporters.tiny_model import TINY_GRID, TINY_IMAGE_SIZE, tiny_sam
from samedge.masks import border_distance, deepest_point, mask_box, mask_iou, mask_ious
from samedge.models import get_model_spec
from samedge.scenes import make_scene, photo_backgrounds

log = logging.getLogger("train_samedge_tiny")

S = TINY_IMAGE_SIZE
LOW = 4 * TINY_GRID  # the decoder's low-resolution mask side
MEAN = torch.tensor(get_model_spec("samedge_tiny").pixel_mean).view(1, 3, 1, 1)
STD = torch.tensor(get_model_spec("samedge_tiny").pixel_std).view(1, 3, 1, 1)
# Seeds of the validation scenes seen during training; samedge.evaluate's
# held-out set uses another seed and photos training never sees.
VAL_SEED = 777_000


# ----------------------------------------------------------------------------- data


def scene_bank(n: int, seed: int, cache: Path) -> tuple[np.ndarray, np.ndarray]:
    """``n`` scenes as (images N×S×S×3 uint8, label maps N×S×S uint8), cached on disk."""
    img_path = cache / f"bank_{seed}_{n}_images.npy"
    lab_path = cache / f"bank_{seed}_{n}_labels.npy"
    if img_path.exists() and lab_path.exists():
        return np.load(img_path), np.load(lab_path)
    cache.mkdir(parents=True, exist_ok=True)
    photos = photo_backgrounds("train", max_side=384)
    rng = np.random.default_rng([seed, 1])
    images = np.empty((n, S, S, 3), np.uint8)
    labels = np.empty((n, S, S), np.uint8)
    t0 = time.time()
    for i in range(n):
        scene = make_scene(rng, (S, S), backgrounds=photos)
        images[i], labels[i] = scene.image, scene.label_map()
    log.info("generated %d scenes in %.1f s", n, time.time() - t0)
    np.save(img_path.with_suffix(".tmp.npy"), images)
    np.save(lab_path.with_suffix(".tmp.npy"), labels)
    os.replace(img_path.with_suffix(".tmp.npy"), img_path)
    os.replace(lab_path.with_suffix(".tmp.npy"), lab_path)
    return images, labels


def sample_in(rng: np.random.Generator, mask: np.ndarray, interior: bool) -> tuple[int, int]:
    """A pixel (x, y) of ``mask``; toward its interior (distance-weighted) when asked."""
    if interior:
        w = border_distance(mask).ravel().astype(np.float64) ** 2
        total = w.sum()
        if total > 0:
            idx = rng.choice(w.size, p=w / total)
            return int(idx % mask.shape[1]), int(idx // mask.shape[1])
    ys, xs = np.nonzero(mask)
    j = int(rng.integers(len(xs)))
    return int(xs[j]), int(ys[j])


@dataclass
class Prompt:
    """One object's prompt under construction (coordinates in the 256 frame)."""

    image: int  # index of the image in the step
    gt: np.ndarray  # S×S bool
    points: list[tuple[float, float]]
    labels: list[int]
    box: tuple[float, float, float, float] | None
    multimask: bool


def first_prompts(
    rng: np.random.Generator, labels: np.ndarray, b: int, per_image: int
) -> list[Prompt]:
    ids = [k for k in np.unique(labels) if k != 0]
    rng.shuffle(ids)
    out = []
    for k in ids[:per_image]:
        gt = labels == k
        r = rng.random()
        if r < 0.45:
            x, y = sample_in(rng, gt, interior=rng.random() < 0.8)
            out.append(Prompt(b, gt, [(x, y)], [1], None, True))
        elif r < 0.8:
            ys, xs = np.nonzero(gt)
            x0, x1, y0, y1 = xs.min(), xs.max(), ys.min(), ys.max()
            # SAM's jitter: 10% of the side, at most 20 px.
            sd = np.array([x1 - x0, y1 - y0, x1 - x0, y1 - y0], float) * 0.1
            box = np.array([x0, y0, x1, y1], float) + np.clip(rng.normal(0, 1, 4) * sd, -20, 20)
            box = np.clip(box, 0, S - 1)
            out.append(Prompt(b, gt, [], [], tuple(box), False))  # type: ignore[arg-type]
        else:
            pts, lbs = [], []
            for _ in range(int(rng.integers(1, 3))):
                pts.append(sample_in(rng, gt, interior=True))
                lbs.append(1)
            ring = cv2.dilate(gt.astype(np.uint8), np.ones((15, 15), np.uint8)).astype(bool) & ~gt
            for _ in range(int(rng.integers(0, 3))):
                if ring.any():
                    pts.append(sample_in(rng, ring, interior=False))
                    lbs.append(0)
            out.append(Prompt(b, gt, pts, lbs, None, False))
    return out


def prompt_tensors(prompts: list[Prompt]) -> tuple[torch.Tensor, torch.Tensor]:
    """SamPredictor's layout: points, then box corners (labels 2, 3); -1 padding."""
    rows = []
    for p in prompts:
        pts, lbs = list(p.points), list(p.labels)
        if p.box is not None:
            pts += [(p.box[0], p.box[1]), (p.box[2], p.box[3])]
            lbs += [2, 3]
        else:
            pts.append((0.0, 0.0))  # SAM's pad point when there is no box
            lbs.append(-1)
        rows.append((pts, lbs))
    n = max(len(r[0]) for r in rows)
    coords = torch.zeros(len(rows), n, 2)
    labels = torch.full((len(rows), n), -1.0)
    for i, (pts, lbs) in enumerate(rows):
        coords[i, : len(pts)] = torch.tensor(pts, dtype=torch.float32)
        labels[i, : len(lbs)] = torch.tensor(lbs, dtype=torch.float32)
    return coords, labels


def corrective_click(rng: np.random.Generator, pred: np.ndarray, gt: np.ndarray):
    """A click in the error region, toward its interior: (x, y, label) or None."""
    fn = gt & ~pred
    fp = pred & ~gt
    err = fn | fp
    if not err.any():
        return None
    x, y = sample_in(rng, err, interior=rng.random() < 0.7)
    return x, y, int(fn[y, x])


# ----------------------------------------------------------------------------- model pieces


def embed_prompts(sam, coords, labels, mask_input, has_mask):
    """SAM's prompt encoder, batched the way the exported decoder does it."""
    pe = sam.prompt_encoder
    emb = pe.pe_layer._pe_encoding((coords + 0.5) / S)
    lab = labels.unsqueeze(-1)
    emb = emb * (lab != -1)
    emb = emb + pe.not_a_point_embed.weight * (lab == -1)
    for i in range(pe.num_point_embeddings):
        emb = emb + pe.point_embeddings[i].weight * (lab == i)
    hm = has_mask.view(-1, 1, 1, 1)
    dense = hm * pe.mask_downscaling(mask_input) + (1 - hm) * pe.no_mask_embed.weight.view(
        1, -1, 1, 1
    )
    return emb, dense


def decode(sam, embeddings, image_index, sparse, dense):
    """MaskDecoder.predict_masks for prompts of several images in one call."""
    d = sam.mask_decoder
    tokens = torch.cat([d.iou_token.weight, d.mask_tokens.weight], 0)
    tokens = torch.cat([tokens.unsqueeze(0).expand(sparse.size(0), -1, -1), sparse], 1)
    src = embeddings[image_index] + dense
    pos = sam.prompt_encoder.get_dense_pe().expand(src.size(0), -1, -1, -1)
    b, c, h, w = src.shape
    hs, src = d.transformer(src, pos, tokens)
    src = src.transpose(1, 2).reshape(b, c, h, w)
    up = d.output_upscaling(src)
    hyper = torch.stack(
        [d.output_hypernetworks_mlps[i](hs[:, 1 + i]) for i in range(d.num_mask_tokens)], 1
    )
    b, c, h, w = up.shape
    masks = (hyper @ up.view(b, c, h * w)).view(b, -1, h, w)
    return masks, d.iou_prediction_head(hs[:, 0])


def mask_losses(logits, target):
    """Per-mask focal (SAM's α=0.25, γ=2) and dice losses; logits/target [B,K,h,w]."""
    p = torch.sigmoid(logits)
    ce = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    pt = p * target + (1 - p) * (1 - target)
    alpha = 0.25 * target + 0.75 * (1 - target)
    focal = (alpha * ce * (1 - pt) ** 2).mean((-1, -2))
    inter = (p * target).sum((-1, -2))
    dice = 1 - (2 * inter + 1) / (p.sum((-1, -2)) + target.sum((-1, -2)) + 1)
    return focal, dice


def iou_of(logits, target):
    """IoU of ``logits > 0`` with ``target > 0.5`` per mask (samedge.masks' convention)."""
    ious = mask_ious((logits > 0).cpu().numpy(), (target > 0.5).cpu().numpy())
    return torch.from_numpy(ious).float().to(logits.device)


# ----------------------------------------------------------------------------- training


def step_loss(sam, rng, images_u8, label_maps, args):
    x = torch.from_numpy(images_u8).permute(0, 3, 1, 2).float()
    emb = sam.image_encoder((x - MEAN) / STD)
    # SAM's recipe: the loss sees the low-resolution logits upsampled (bilinear,
    # as the runtime does) against a finer ground truth, so the model learns
    # sub-pixel boundaries instead of a 64×64 staircase.
    size = args.loss_size
    prompts: list[Prompt] = []
    for b in range(len(label_maps)):
        prompts += first_prompts(rng, label_maps[b], b, args.objects)
    if not prompts:
        return None, {}
    gt256 = torch.from_numpy(np.stack([p.gt for p in prompts])).float().unsqueeze(1)
    target = gt256
    if size < S:
        target = F.avg_pool2d(gt256, S // size).gt(0.5).float()
        # A tiny object can vanish at low resolution: keep it by its nearest pixel.
        target = torch.maximum(
            target, F.max_pool2d(gt256, S // size) * (target.sum((2, 3), True) == 0)
        )
    index = torch.tensor([p.image for p in prompts])
    mask_input = torch.zeros(len(prompts), 1, LOW, LOW)
    has_mask = torch.zeros(len(prompts))
    total = torch.zeros(())
    stats = {}
    for rnd in range(args.rounds):
        coords, labels = prompt_tensors(prompts)
        sparse, dense = embed_prompts(sam, coords, labels, mask_input, has_mask)
        masks, iou_pred = decode(sam, emb, index, sparse, dense)
        scored = masks
        if size != LOW:
            scored = F.interpolate(masks, size=(size, size), mode="bilinear", align_corners=False)
        focal, dice = mask_losses(scored, target.expand_as(scored))
        per_mask = 20 * focal + dice
        multi = torch.tensor([p.multimask for p in prompts])
        # Multimask prompts train outputs 1..3 (min loss); the others output 0.
        multi_loss, best = per_mask[:, 1:].min(1)
        chosen = torch.where(multi, best + 1, torch.zeros_like(best))
        loss_mask = torch.where(multi, multi_loss, per_mask[:, 0])
        true_iou = iou_of(scored.detach(), target.expand_as(scored))
        iou_err = (iou_pred - true_iou) ** 2
        iou_loss = torch.where(multi, iou_err[:, 1:].mean(1), iou_err[:, 0])
        total = total + (loss_mask.mean() + iou_loss.mean()) / args.rounds
        rows = torch.arange(len(prompts))
        sel_iou = true_iou[rows, chosen]
        stats[f"iou_r{rnd}"] = float(sel_iou.mean())
        if rnd == 0:
            stats["iou_click"] = float(sel_iou[multi].mean()) if multi.any() else float("nan")
            box = torch.tensor([p.box is not None for p in prompts])
            stats["iou_box"] = float(sel_iou[box].mean()) if box.any() else float("nan")
        if rnd + 1 == args.rounds:
            break
        # Next round, on a random part of the prompts (the decoder dominates the
        # step's cost): add a corrective click; feed the previous logits back.
        sel = masks.detach()[rows, chosen].unsqueeze(1)
        keep = np.flatnonzero(rng.random(len(prompts)) < args.correct_frac)
        if len(keep) == 0:
            break
        prompts = [prompts[i] for i in keep]
        keep_t = torch.from_numpy(keep)
        sel, target, index = sel[keep_t], target[keep_t], index[keep_t]
        pred256 = F.interpolate(sel, size=(S, S), mode="bilinear", align_corners=False) > 0
        pred256 = pred256[:, 0].numpy()
        for i, p in enumerate(prompts):
            click = corrective_click(rng, pred256[i], p.gt)
            if click is not None:
                p.points.append((float(click[0]), float(click[1])))
                p.labels.append(click[2])
            p.multimask = False
        mask_input = sel
        has_mask = torch.from_numpy((rng.random(len(prompts)) < 0.7).astype(np.float32))
    stats["prompts"] = len(prompts)
    return total, stats


@torch.no_grad()
def validate(sam, scenes) -> dict[str, float]:
    """mIoU at 256×256 for an interior click (best predicted multimask) and a box."""
    sam.eval()
    ious = {"click": [], "box": []}
    for image, lab in scenes:
        x = torch.from_numpy(image[None]).permute(0, 3, 1, 2).float()
        emb = sam.image_encoder((x - MEAN) / STD)
        ids = [k for k in np.unique(lab) if k != 0]
        if not ids:
            continue
        prompts = []
        for k in ids:
            gt = lab == k
            deep = deepest_point(gt)
            prompts.append(Prompt(0, gt, [(float(deep.x), float(deep.y))], [1], None, True))
        for k in ids:
            gt = lab == k
            prompts.append(Prompt(0, gt, [], [], mask_box(gt), False))
        coords, labels = prompt_tensors(prompts)
        n = len(prompts)
        sparse, dense = embed_prompts(
            sam, coords, labels, torch.zeros(n, 1, LOW, LOW), torch.zeros(n)
        )
        masks, iou_pred = decode(sam, emb, torch.zeros(n, dtype=torch.long), sparse, dense)
        up = F.interpolate(masks, size=(S, S), mode="bilinear", align_corners=False) > 0
        for i, p in enumerate(prompts):
            j = int(iou_pred[i, 1:].argmax()) + 1 if p.multimask else 0
            pred = up[i, j].numpy()
            ious["click" if p.multimask else "box"].append(mask_iou(pred, p.gt))
    sam.train()
    return {k: float(np.mean(v)) for k, v in ious.items()}


def lr_at(frac: float, base: float, warmup_frac: float = 0.03) -> float:
    if frac < warmup_frac:
        return base * max(frac / warmup_frac, 0.02)
    t = (frac - warmup_frac) / (1 - warmup_frac)
    return base * (0.03 + 0.97 * 0.5 * (1 + math.cos(math.pi * min(t, 1.0))))


def save_atomic(obj, path: Path) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def plot_curve(history: list[dict], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = np.array([h["step"] for h in history if "loss" in h])
    loss = np.array([h["loss"] for h in history if "loss" in h])
    if len(steps) == 0:
        return
    k = max(1, len(loss) // 50)
    smooth = np.convolve(loss, np.ones(k) / k, mode="valid")
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 4))
    a1.plot(steps, loss, alpha=0.25, color="C0", label="loss")
    a1.plot(steps[k - 1 :], smooth, color="C0", label=f"loss (mean of {k})")
    a1.set_xlabel("step")
    a1.set_ylabel("20·focal + dice + IoU MSE")
    a1.set_yscale("log")
    a1.legend()
    val = [h for h in history if "val_click" in h]
    if val:
        a2.plot([h["step"] for h in val], [h["val_click"] for h in val], "o-", label="click")
        a2.plot([h["step"] for h in val], [h["val_box"] for h in val], "s-", label="box")
        a2.set_ylim(0, 1)
        a2.set_xlabel("step")
        a2.set_ylabel("validation mIoU (256 px)")
        a2.legend()
    fig.suptitle("samedge-tiny training")
    fig.tight_layout()
    fig.savefig(out.with_suffix(".tmp.png"), dpi=90)
    plt.close(fig)
    os.replace(out.with_suffix(".tmp.png"), out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--minutes", type=float, default=85.0, help="training time budget")
    ap.add_argument("--out", type=Path, default=Path("training"))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--bank", type=int, default=4000, help="scenes kept in memory")
    ap.add_argument("--refresh", type=int, default=2, help="bank scenes replaced per step")
    ap.add_argument("--images", type=int, default=12, help="scenes per step")
    ap.add_argument("--objects", type=int, default=8, help="prompted objects per scene")
    ap.add_argument("--rounds", type=int, default=2, help="1 + corrective-click rounds")
    ap.add_argument(
        "--correct-frac", type=float, default=0.5, help="share of prompts given a corrective round"
    )
    ap.add_argument(
        "--loss-size",
        type=int,
        default=2 * LOW,
        choices=(LOW, 2 * LOW, S),
        help="side at which masks are scored: the low-res logits are upsampled to it",
    )
    ap.add_argument("--lr", type=float, default=1.5e-3)
    # Both cores: with the machine to itself a step takes ~0.5 s at 2 threads.
    # On a shared machine OpenMP's barriers stall whenever another process
    # holds a core; pass --threads 1 there (or run training at a higher priority).
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--save-every", type=float, default=3.0, help="minutes between checkpoints")
    ap.add_argument("--val-every", type=float, default=6.0, help="minutes between validations")
    ap.add_argument("--cache", type=Path, default=Path("/tmp/samedge_tiny_cache"))
    ap.add_argument("--fresh", action="store_true", help="ignore OUT/last_checkpoint.pt")
    args = ap.parse_args(argv)

    args.out.mkdir(parents=True, exist_ok=True)
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(message)s",
        handlers=[logging.FileHandler(args.out / "train.log"), logging.StreamHandler()],
    )
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    rng = np.random.default_rng([args.seed, 2])
    sam = tiny_sam()
    sam.train()
    opt = torch.optim.AdamW(sam.parameters(), lr=args.lr, weight_decay=0.01)
    ckpt_path = args.out / "last_checkpoint.pt"
    history: list[dict] = []
    step, elapsed = 0, 0.0
    if ckpt_path.exists() and not args.fresh:
        ck = torch.load(ckpt_path, weights_only=False)
        sam.load_state_dict(ck["model"])
        opt.load_state_dict(ck["opt"])
        step, elapsed, history = ck["step"], ck["elapsed"], ck["history"]
        rng.bit_generator.state = ck["rng"]
        torch.set_rng_state(ck["torch_rng"])
        log.info("resumed from %s at step %d (%.1f min)", ckpt_path, step, elapsed / 60)
    log.info("args: %s", vars(args))
    log.info("parameters: %d", sum(p.numel() for p in sam.parameters()))

    images, labels = scene_bank(args.bank, args.seed, args.cache)
    photos = photo_backgrounds("train", max_side=384)
    val_rng = np.random.default_rng(VAL_SEED)
    val_photos = photo_backgrounds("heldout", max_side=384)
    val_scenes = []
    for _ in range(48):
        sc = make_scene(val_rng, (S, S), backgrounds=val_photos)
        val_scenes.append((sc.image, sc.label_map()))

    budget = args.minutes * 60
    last_save = last_val = elapsed
    bar = tqdm(total=int(budget), initial=int(elapsed), unit="s", desc="train", file=sys.stderr)
    t_start = time.time() - elapsed
    while elapsed < budget:
        frac = elapsed / budget
        for g in opt.param_groups:
            g["lr"] = lr_at(frac, args.lr)
        pick = rng.integers(0, len(images), args.images)
        batch_i, batch_l = images[pick].copy(), labels[pick].copy()
        # Cheap augmentation: the 8 symmetries of the square.
        for b in range(len(pick)):
            k = int(rng.integers(4))
            batch_i[b], batch_l[b] = np.rot90(batch_i[b], k), np.rot90(batch_l[b], k)
            if rng.random() < 0.5:
                batch_i[b], batch_l[b] = batch_i[b][:, ::-1], batch_l[b][:, ::-1]
        loss, stats = step_loss(sam, rng, batch_i, batch_l, args)
        if loss is not None:
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(sam.parameters(), 1.0)
            opt.step()
            history.append({"step": step, "loss": loss.item(), "t": elapsed, **stats})
        # Keep the bank fresh: a few new scenes per step (a few ms each).
        for _ in range(args.refresh):
            j = int(rng.integers(len(images)))
            sc = make_scene(rng, (S, S), backgrounds=photos)
            images[j], labels[j] = sc.image, sc.label_map()
        step += 1
        now = time.time() - t_start
        bar.update(int(now) - int(elapsed))
        elapsed = now
        if stats:
            bar.set_postfix(
                loss=f"{loss.item():.3f}",
                click=f"{stats['iou_click']:.2f}",
                box=f"{stats['iou_box']:.2f}",
                step=step,
            )
        if step % 25 == 0 and stats:
            recent = [h for h in history[-30:] if "loss" in h][-25:]
            log.info(
                "step %d  %.1f min  lr %.2e  loss %.4f  iou click %.3f box %.3f r1 %.3f",
                step,
                elapsed / 60,
                opt.param_groups[0]["lr"],
                np.mean([h["loss"] for h in recent]),
                np.nanmean([h["iou_click"] for h in recent]),
                np.nanmean([h["iou_box"] for h in recent]),
                np.mean([h.get(f"iou_r{args.rounds - 1}", np.nan) for h in recent]),
            )
        if elapsed - last_val >= args.val_every * 60 or elapsed >= budget:
            v = validate(sam, val_scenes)
            history.append(
                {"step": step, "t": elapsed, "val_click": v["click"], "val_box": v["box"]}
            )
            log.info("validation step %d: click %.3f box %.3f", step, v["click"], v["box"])
            last_val = elapsed
            plot_curve(history, args.out / "loss_curve.png")
        if elapsed - last_save >= args.save_every * 60 or elapsed >= budget:
            save_atomic(
                {
                    "model": sam.state_dict(),
                    "opt": opt.state_dict(),
                    "step": step,
                    "elapsed": elapsed,
                    "history": history,
                    "rng": rng.bit_generator.state,
                    "torch_rng": torch.get_rng_state(),
                    "args": {k: str(v) for k, v in vars(args).items()},
                },
                ckpt_path,
            )
            last_save = elapsed
    bar.close()
    sam.eval()
    save_atomic(sam.state_dict(), args.out / "samedge_tiny.pt")
    plot_curve(history, args.out / "loss_curve.png")
    with open(args.out / "train_history.json", "w") as f:
        json.dump([h for h in history if "val_click" in h], f, indent=1)
    log.info("done: %d steps in %.1f min -> %s", step, elapsed / 60, args.out / "samedge_tiny.pt")
    return 0


if __name__ == "__main__":
    sys.exit(main())
