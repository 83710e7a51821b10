"""Click-to-segment on a webcam in an OpenCV window, with ``samedge.stream``.

Left-click an object to follow it (each click starts a new object), right-click
to stop following the object under the cursor (or the newest one); ``c``
clears, ``q`` or Esc quits. Masks, ids, boxes and scores are drawn live.

    python examples/webcam_click.py                      # camera 0, samedge_tiny
    python examples/webcam_click.py --source 1 --model models/mobile_sam

Without a display (or with ``opencv-python-headless``, which has no windows)
use ``--headless``: clicks come from ``--click X,Y`` (repeatable), or, on the
built-in scene, from its ground truth (the largest objects of the first frame),
and the results are printed and optionally written to ``--output``:

    python examples/webcam_click.py --source synthetic --headless --frames 60 --output out/click.mp4
"""

# test-args: --source synthetic --headless --frames 4 --model {model} -o {tmp}/click.mp4

from __future__ import annotations

import argparse
import logging
import sys

import cv2

import samedge
from samedge import ObjectPrompt
from samedge.stream import FrameResult, Stream, SyntheticSource, VideoSink, click_points

WINDOW = "samedge: click to segment (right-click removes, c clears, q quits)"


def parse_point(text: str) -> tuple[float, float]:
    try:
        x, y = (float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"got {text!r}, expected X,Y") from None
    return x, y


def click(stream: Stream, x: float, y: float) -> int:
    """A left click: follow the object under (x, y) as a new object."""
    return stream.add(ObjectPrompt(point_coords=[[x, y]], point_labels=[1]))


def unclick(stream: Stream, x: float, y: float) -> int | None:
    """A right click: stop following the object whose mask (else box) is under (x, y)."""
    objects = stream.objects
    for oid, obj in objects.items():
        if obj.mask is not None and obj.mask[int(y), int(x)]:
            stream.remove(oid)
            return oid
    for oid, obj in objects.items():
        if obj.box is not None and obj.box[0] <= x <= obj.box[2] and obj.box[1] <= y <= obj.box[3]:
            stream.remove(oid)
            return oid
    if objects:
        newest = max(objects)
        stream.remove(newest)
        return newest
    return None


def describe(result: FrameResult) -> str:
    parts = []
    for oid, obj in result.objects.items():
        box = tuple(round(v) for v in obj.box) if obj.box is not None else None
        parts.append(f"{oid}:{obj.state.value} box={box} score={obj.score:.2f}")
    return f"frame {result.frame_id:4d}  " + (", ".join(parts) or "no objects (click one)")


def open_window(stream: Stream) -> None:
    try:
        cv2.namedWindow(WINDOW, cv2.WINDOW_AUTOSIZE)
    except cv2.error:
        sys.exit(
            "this OpenCV has no GUI (opencv-python-headless): install opencv-python for a "
            "window, or run with --headless"
        )

    def on_mouse(event: int, x: int, y: int, flags: int, param: object) -> None:
        try:
            if event == cv2.EVENT_LBUTTONDOWN:
                print(f"click ({x}, {y}) -> object {click(stream, x, y)}")
            elif event == cv2.EVENT_RBUTTONDOWN:
                print(f"removed object {unclick(stream, x, y)}")
        except samedge.PromptError as e:  # e.g. a click on the window border
            print(f"ignored: {e}")

    cv2.setMouseCallback(WINDOW, on_mouse)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", default="0", help="camera index, file, URL, or 'synthetic'")
    parser.add_argument("--model", default="samedge_tiny", help="model directory or built-in")
    parser.add_argument("--backend", default="auto")
    parser.add_argument("--frames", type=int, default=None, help="stop after N frames")
    parser.add_argument("--headless", action="store_true", help="no window; print results")
    parser.add_argument(
        "--click",
        type=parse_point,
        action="append",
        default=[],
        metavar="X,Y",
        help="a click at the start (repeatable)",
    )
    parser.add_argument("--objects", type=int, default=2, help="synthetic + headless: clicks")
    parser.add_argument("--output", "-o", help="also write the annotated video here")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")

    source = samedge.stream.open_source(args.source)
    stream = samedge.stream(
        source, model=args.model, backend=args.backend, max_frames=args.frames, annotate=True
    )
    clicks = list(args.click)
    if not clicks and args.headless and isinstance(source, SyntheticSource):
        first = source.scene_at(0)
        clicks = [xy for _, xy in click_points(first.masks, first.ids, args.objects)]
    for x, y in clicks:
        print(f"click ({x:.0f}, {y:.0f}) -> object {click(stream, x, y)}")
    video = VideoSink(args.output, fps=source.fps or 30.0, force=True) if args.output else None

    with stream:
        if not args.headless:
            open_window(stream)
        for result in stream:
            if video is not None:
                video.write(result)
            if args.headless:
                print(describe(result))
                continue
            if result.annotated is not None:  # always, with annotate=True
                cv2.imshow(WINDOW, result.annotated)
            key = cv2.waitKey(1) & 0xFF
            if key in (ord("q"), 27):
                break
            if key == ord("c"):
                stream.clear()
    if video is not None:
        video.close()
        print(f"video: {video.description}")
    if not args.headless:
        cv2.destroyAllWindows()
    print(stream.pipeline.stats.line())
    objects = stream.objects
    tracked = sum(o.tracking for o in objects.values())
    print(f"{len(objects)} objects, {tracked} tracking at the end")
    # The headless smoke run on the synthetic scene must have followed something.
    return 0 if objects or not clicks else 1


if __name__ == "__main__":
    sys.exit(main())
