"""Write held-out procedural video sequences as a DAVIS folder, for ``samedge eval --video``.

Each sequence is a :class:`samedge.scenes.MovingScene` with objects that cross,
a large occluder that passes in front of them, and objects that leave and come
back (``--reentry``), over the held-out photo backgrounds, with the per-frame
events of every first-frame object in ``Events/<sequence>.json``
(:func:`samedge.davis.write_moving_scenes`). Seeds start at
:data:`samedge.davis.HELDOUT_VIDEO_SEED`, which training on moving scenes stays below.

A script rather than a flag of ``samedge eval``: it makes the evaluation set
samedge's own numbers are measured on (repository tooling, like reproduce.sh),
while ``eval`` only reads folders; a user with DAVIS has no use for it, and a
Python user calls the library function.

Example:
    python benchmarks/write_davis_scenes.py /tmp/heldout_davis --sequences 20
    samedge eval samedge_tiny --video /tmp/heldout_davis --output eval_video.json
"""

from __future__ import annotations

import argparse
import logging
import sys

from samedge.davis import HELDOUT_VIDEO_SEED, write_moving_scenes
from samedge.errors import SamedgeError


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("out", help="folder to create (DAVIS layout)")
    p.add_argument("--sequences", type=int, default=20, help="sequences (default 20)")
    p.add_argument(
        "--seed",
        type=int,
        default=HELDOUT_VIDEO_SEED,
        help=f"scene seed of the first sequence (default {HELDOUT_VIDEO_SEED})",
    )
    p.add_argument("--frames", type=int, default=72, help="frames per sequence (default 72)")
    p.add_argument(
        "--size", type=int, nargs=2, default=(240, 320), metavar=("H", "W"), help="frame size"
    )
    p.add_argument("--objects", type=int, default=4, help="object slots per scene (default 4)")
    p.add_argument("--occluders", type=int, default=1, help="large occluders (default 1)")
    p.add_argument("--reentry", type=float, default=0.75, help="chance a leaver comes back")
    p.add_argument("--fps", type=float, default=12.0, help="scene frame rate (motion speed)")
    p.add_argument("--window", type=int, default=15, help="frames after an event labelled")
    p.add_argument("--no-photos", action="store_true", help="procedural backgrounds only")
    p.add_argument("--force", action="store_true", help="replace a folder this script wrote")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        write_moving_scenes(
            args.out,
            sequences=args.sequences,
            seed=args.seed,
            frames=args.frames,
            size=tuple(args.size),
            num_objects=args.objects,
            occluders=args.occluders,
            reentry=args.reentry,
            fps=args.fps,
            window=args.window,
            photos=False if args.no_photos else None,
            force=args.force,
        )
    except SamedgeError as e:
        print(f"write_davis_scenes: error: {e}", file=sys.stderr)
        return 1
    return 0  # the library logs what it wrote


if __name__ == "__main__":
    sys.exit(main())
