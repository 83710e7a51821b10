"""Track objects on the built-in moving scene with samedge's Python API.

What ``samedge run`` does, spelled out for robotics code: open a source, click
objects on the first frame, then read per-frame results (mask, box, score,
tracking state per object id) from the pipeline, and write an annotated video.

    python examples/track_synthetic.py --frames 90 --objects 3 --output out/track.mp4

Swap ``SyntheticSource`` for ``open_source(0)`` (a camera) or a video path and
give your own clicks or detector boxes to ``tracker.add``.
"""

# test-args: --frames 3 --objects 2 --model {model} --backend onnxruntime --output {tmp}/track.mp4

from __future__ import annotations

import argparse
import logging

from samedge.predictor import Predictor
from samedge.stream import (
    Pipeline,
    SyntheticSource,
    Tracker,
    TrackerConfig,
    VideoSink,
    click_points,
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="samedge_tiny", help="model directory or built-in")
    parser.add_argument("--backend", default="auto")
    parser.add_argument("--frames", type=int, default=90)
    parser.add_argument("--objects", type=int, default=3)
    parser.add_argument("--output", default="out/track.mp4")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")

    source = SyntheticSource(seed=0, size=(480, 640), num_objects=max(4, args.objects))
    # Click where a person would: deep inside the largest objects of frame 0.
    first = source.scene_at(0)
    tracker = Tracker(TrackerConfig(min_score=0.5, max_area_change=2.5))
    for scene_id, (x, y) in click_points(first.masks, first.ids, args.objects):
        object_id = tracker.add(point_coords=[[x, y]], point_labels=[1])
        print(f"clicked scene object {scene_id} at ({x:.0f}, {y:.0f}) -> object {object_id}")

    with (
        Predictor(args.model, backend=args.backend) as predictor,
        Pipeline(
            source,
            predictor,
            tracker,
            sinks=[VideoSink(args.output, fps=source.fps or 30.0, force=True)],
            max_frames=args.frames,
        ) as pipeline,
    ):
        for result in pipeline:
            states = []
            for oid, obj in result.objects.items():
                box = tuple(round(v) for v in obj.box) if obj.box else None
                states.append(f"{oid}:{obj.state.value} box={box} score={obj.score:.2f}")
            print(f"frame {result.frame_id:4d} t={result.timestamp:6.3f}s  {', '.join(states)}")
        print(pipeline.stats.summary().table())
    print(f"{pipeline.stats.line()}\nvideo: {args.output}")


if __name__ == "__main__":
    main()
