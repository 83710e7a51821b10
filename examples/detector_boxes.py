"""Boxes from a detector turned into masks that are tracked between detections.

The usual robot pipeline: a detector (YOLO, RT-DETR, ...) gives boxes every so
often; samedge turns each box into a mask and follows it on every frame in
between. Here each detection round re-prompts the object it matches (box IoU)
with the fresh box, adds new objects for unmatched boxes, and drops objects
that no detection has confirmed for ``--forget`` rounds: prompts change while
the stream runs.

THE DETECTOR HERE IS A STAND-IN: ``detect()`` thresholds a colour range (blue
to magenta in HSV) and boxes the blobs, which finds some objects of the
built-in scene. Replace it with your model, e.g. with ultralytics::

    from ultralytics import YOLO
    yolo = YOLO("yolo11n.pt")
    def detect(image_rgb):
        r = yolo(image_rgb[..., ::-1], verbose=False)[0]
        return [tuple(b) for b in r.boxes.xyxy.cpu().numpy()]

Run:

    python examples/detector_boxes.py --frames 300 --output out/detector.mp4
    python examples/detector_boxes.py --source 0 --detect-every 15
"""

# test-args: --frames 6 --detect-every 3 --model {model} -o {tmp}/det.mp4

from __future__ import annotations

import argparse
import logging

import cv2
import numpy as np

import samedge
from samedge import ObjectPrompt
from samedge.stream import VideoSink

Box = tuple[float, float, float, float]


def detect(image_rgb: np.ndarray, *, min_area: int = 300) -> list[Box]:
    """STAND-IN detector: XYXY boxes of blue-to-magenta blobs. Replace with your model."""
    hsv = cv2.cvtColor(image_rgb, cv2.COLOR_RGB2HSV)
    mask = cv2.inRange(hsv, (85, 100, 60), (170, 255, 255))  # OpenCV hue is 0..180
    mask = cv2.morphologyEx(mask, cv2.MORPH_OPEN, np.ones((5, 5), np.uint8))
    mask = cv2.morphologyEx(mask, cv2.MORPH_CLOSE, np.ones((9, 9), np.uint8))
    contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    boxes = []
    for contour in contours:
        if cv2.contourArea(contour) >= min_area:
            x, y, w, h = cv2.boundingRect(contour)
            boxes.append((float(x), float(y), float(x + w - 1), float(y + h - 1)))
    return boxes


def box_iou(a: Box, b: Box) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]) + 1)
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]) + 1)
    inter = ix * iy
    area = (a[2] - a[0] + 1) * (a[3] - a[1] + 1) + (b[2] - b[0] + 1) * (b[3] - b[1] + 1)
    return inter / (area - inter) if inter > 0 else 0.0


class BoxFollower:
    """Matches each round's boxes to the stream's objects and updates the prompts."""

    def __init__(self, stream: samedge.stream.Stream, *, forget: int, min_iou: float) -> None:
        self.stream = stream
        self.forget = forget
        self.min_iou = min_iou
        self.unseen: dict[int, int] = {}  # object id -> detection rounds without a match

    def update(self, boxes: list[Box]) -> None:
        objects = self.stream.objects
        free = {oid: obj.box for oid, obj in objects.items() if obj.box is not None}
        for box in boxes:
            best = max(free, key=lambda oid: box_iou(box, free[oid]), default=None)
            if best is not None and box_iou(box, free[best]) >= self.min_iou:
                del free[best]
                self.stream.add(ObjectPrompt(box=box), object_id=best)  # fresh box, same id
                self.unseen[best] = 0
            else:
                oid = self.stream.add(ObjectPrompt(box=box))
                self.unseen[oid] = 0
                print(f"  new object {oid} at {tuple(round(v) for v in box)}")
        for oid in free:  # tracked, but no detection this round
            self.unseen[oid] = self.unseen.get(oid, 0) + 1
            if self.unseen[oid] >= self.forget:
                self.stream.remove(oid)
                del self.unseen[oid]
                print(f"  object {oid} dropped: not detected for {self.forget} rounds")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", default="synthetic", help="camera index, file, URL, ...")
    parser.add_argument("--model", default="samedge_tiny", help="model directory or built-in")
    parser.add_argument("--backend", default="auto")
    parser.add_argument("--frames", type=int, default=300)
    parser.add_argument(
        "--detect-every", type=int, default=30, help="frames between detections (30: 1/s)"
    )
    parser.add_argument("--forget", type=int, default=2, help="rounds unseen before dropping")
    parser.add_argument("--min-iou", type=float, default=0.3, help="box IoU to match an object")
    parser.add_argument("--output", "-o", help="also write the annotated video here")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")

    stream = samedge.stream(
        args.source,
        model=args.model,
        backend=args.backend,
        max_frames=args.frames,
        annotate=args.output is not None,
    )
    follower = BoxFollower(stream, forget=args.forget, min_iou=args.min_iou)
    video = None
    if args.output:
        video = VideoSink(args.output, fps=stream.source.fps or 30.0, force=True)
    with stream:
        for result in stream:
            if video is not None:
                video.write(result)
            states = ", ".join(
                f"{oid}:{obj.state.value}" + (f" {obj.score:.2f}" if obj.tracking else "")
                for oid, obj in result.objects.items()
            )
            print(f"frame {result.frame_id:4d}  {states or '-'}")
            if result.frame_id % args.detect_every == 0:
                # The prompts apply from the next frame on; objects barely move in between.
                boxes = detect(result.image)
                print(f"  detector: {len(boxes)} boxes")
                follower.update(boxes)
    if video is not None:
        video.close()
        print(f"video: {video.description}")
    print(stream.pipeline.stats.line())


if __name__ == "__main__":
    main()
