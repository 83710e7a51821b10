"""The mIoU a perfect predictor reaches at a given mask resolution, on held-out scenes.

A decoder with ``L×L`` low-resolution masks can at best output the ground truth
area-averaged to ``L×L``; upsampled bilinearly to the scene and thresholded at
0.5 (as the runtime does with logits at 0), that is the ceiling of mIoU at that
resolution. samedge-tiny's stride-16 embedding gives ``L = 64``, stride 8 would
give 128:

    python training/mask_ceiling.py --scenes 150

Needs numpy, OpenCV and scikit-image (the held-out photo backgrounds).
"""

from __future__ import annotations

import argparse
import sys

import cv2
import numpy as np

from samedge.scenes import make_scene, photo_backgrounds

SMALL, LARGE = 500, 4000  # the size bins of `samedge eval samedge_tiny`


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--scenes", type=int, default=150)
    ap.add_argument("--seed", type=int, default=2026, help="samedge eval's held-out seed")
    ap.add_argument("--size", type=int, default=256, help="scene side (samedge_tiny's input)")
    ap.add_argument("--resolutions", default="64,128", help="mask sides to score")
    args = ap.parse_args(argv)
    sides = [int(v) for v in args.resolutions.split(",")]
    rng = np.random.default_rng(args.seed)
    photos = photo_backgrounds("heldout", max_side=384)
    scores: dict[int, list[float]] = {side: [] for side in sides}
    areas = []
    for _ in range(args.scenes):
        scene = make_scene(rng, (args.size, args.size), backgrounds=photos)
        for mask in scene.masks:
            areas.append(int(mask.sum()))
            for side in sides:
                low = cv2.resize(
                    mask.astype(np.float32), (side, side), interpolation=cv2.INTER_AREA
                )
                up = cv2.resize(low, (args.size, args.size), interpolation=cv2.INTER_LINEAR) > 0.5
                scores[side].append((up & mask).sum() / max((up | mask).sum(), 1))
    a = np.array(areas)
    bins = {"small": a < SMALL, "medium": (a >= SMALL) & (a < LARGE), "large": a >= LARGE}
    print(f"{args.scenes} scenes (seed {args.seed}), {len(a)} objects")
    for side in sides:
        v = np.array(scores[side])
        parts = "  ".join(f"{name} {v[sel].mean():.3f} ({sel.sum()})" for name, sel in bins.items())
        print(f"{side}x{side} masks: all {v.mean():.3f}  {parts}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
