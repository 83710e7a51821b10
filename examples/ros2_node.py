"""A ROS 2 node: camera images in, tracked object masks out (documented; not run in CI).

Topics (relative names, remap them with ``--ros-args -r``):

* subscribes ``image`` (``sensor_msgs/Image``; ``rgb8``, ``bgr8`` or ``mono8``);
* subscribes ``prompts`` (``std_msgs/String``, JSON), one operation per message::

      {"op": "add", "box": [x0, y0, x1, y1]}                 # a new object
      {"op": "add", "id": 3, "points": [[x, y]], "labels": [1]}  # (re-)prompt object 3
      {"op": "remove", "id": 3}
      {"op": "clear"}

  (e.g. boxes from your detector node, or clicks from an rviz tool);
* publishes ``masks`` (``sensor_msgs/Image``, ``mono16``): per pixel the id of
  the object covering it, 0 for none, with the header of the image it belongs to;
* publishes ``objects`` (``std_msgs/String``, JSON): per object its id,
  state (``tracking``/``lost``), box, score and area, with the image's stamp.

Images go into a :class:`samedge.stream.PushSource` that keeps only the newest
one, and ``samedge.stream`` runs the model in its own thread, so a slow model
skips frames instead of queueing them and the executor never blocks.

Run (ROS 2 Humble/Jazzy, samedge installed into the same Python)::

    source /opt/ros/jazzy/setup.bash
    python3 examples/ros2_node.py --ros-args -r image:=/camera/color/image_raw \\
        -p model:=samedge_tiny -p backend:=auto
    ros2 topic pub --once /prompts std_msgs/String \\
        '{data: "{\\"op\\": \\"add\\", \\"box\\": [200, 120, 360, 300]}"}'

``rclpy`` is imported only when the node starts, so this file imports (and its
helpers are tested) without ROS.
"""

# test-args: skip (needs a ROS 2 installation: rclpy, sensor_msgs, std_msgs)

from __future__ import annotations

import json
import logging
import threading
from collections import OrderedDict
from typing import Any

import numpy as np

import samedge
from samedge import ObjectPrompt
from samedge.stream import FrameResult, PushSource, Stream

# Headers of frames whose result is not published yet, by frame id (bounded:
# frames the model skipped never come back).
_MAX_PENDING_HEADERS = 64


def image_to_array(msg: Any) -> tuple[np.ndarray, str]:
    """A ``sensor_msgs/Image`` as an ``H×W×3`` uint8 array and its format (RGB or BGR).

    Raises:
        ValueError: an encoding other than rgb8, bgr8 or mono8.
    """
    channels = {"rgb8": 3, "bgr8": 3, "mono8": 1}.get(msg.encoding)
    if channels is None:
        raise ValueError(
            f"image encoding {msg.encoding!r} is not supported; publish rgb8, bgr8 or mono8 "
            "(image_proc can convert)"
        )
    rows = np.frombuffer(bytes(msg.data), np.uint8).reshape(msg.height, msg.step)
    pixels = rows[:, : msg.width * channels].reshape(msg.height, msg.width, channels)
    if channels == 1:
        return np.repeat(pixels, 3, axis=2), "RGB"
    return pixels, "BGR" if msg.encoding == "bgr8" else "RGB"


def label_image(result: FrameResult) -> np.ndarray:
    """``H×W`` uint16: the id of the object covering each pixel, 0 for none."""
    labels = np.zeros(result.image.shape[:2], np.uint16)
    for oid, obj in result.objects.items():
        if obj.mask is not None:
            labels[obj.mask] = oid
    return labels


def objects_json(result: FrameResult, stamp: tuple[int, int] | None) -> str:
    """The ``objects`` message: frame id, stamp and every object's state."""
    return json.dumps(
        {
            "frame_id": result.frame_id,
            "stamp": {"sec": stamp[0], "nanosec": stamp[1]} if stamp else None,
            "objects": [
                {
                    "id": oid,
                    "state": obj.state.value,
                    "box": list(obj.box) if obj.box is not None else None,
                    "score": round(float(obj.score), 4),
                    "area": int(obj.area),
                }
                for oid, obj in result.objects.items()
            ],
        }
    )


def apply_prompt_message(stream: Stream, text: str) -> str:
    """Run one JSON prompt operation on ``stream``; returns what was done.

    Raises:
        ValueError: malformed JSON or operation (samedge.PromptError is a ValueError).
    """
    data = json.loads(text)
    if not isinstance(data, dict):
        raise ValueError(f"prompt message: got {type(data).__name__}, expected a JSON object")
    op, oid = data.get("op"), data.get("id")
    if op == "clear":
        stream.clear()
        return "cleared"
    if op == "remove":
        stream.remove(int(oid))
        return f"removed {oid}"
    if op == "add":
        points = data.get("points")
        labels = data.get("labels", [1] * len(points) if points else None)
        prompt = ObjectPrompt(point_coords=points, point_labels=labels, box=data.get("box"))
        new = stream.add(prompt, object_id=int(oid) if oid is not None else None)
        return f"prompted object {new}"
    raise ValueError(f"op: got {op!r}, expected add, remove or clear")


def _node_class() -> type:
    # Imported here, not at the top: the file must import without ROS (tests, docs).
    from rclpy.node import Node
    from sensor_msgs.msg import Image
    from std_msgs.msg import String

    class SamedgeNode(Node):  # rclpy ships no type stubs: Node is Any to mypy
        """Images and prompts in, masks and object states out."""

        def __init__(self) -> None:
            super().__init__("samedge")
            model = self.declare_parameter("model", "samedge_tiny").value
            backend = self.declare_parameter("backend", "auto").value
            self.frames = PushSource("ROS 2 topic image")
            self.headers: OrderedDict[int, Any] = OrderedDict()
            self.headers_lock = threading.Lock()  # executor thread puts, stream thread pops
            self.mask_pub = self.create_publisher(Image, "masks", 10)
            self.objects_pub = self.create_publisher(String, "objects", 10)
            # Depth 1: only the newest image matters.
            self.create_subscription(Image, "image", self.on_image, 1)
            self.create_subscription(String, "prompts", self.on_prompt, 10)
            self.stream = samedge.stream(
                self.frames, model=model, backend=backend, callback=self.publish
            ).start()
            self.get_logger().info(f"samedge: {model} on {self.stream.predictor.backend_name}")

        def on_image(self, msg: Image) -> None:
            try:
                image, fmt = image_to_array(msg)
            except ValueError as e:
                self.get_logger().error(str(e), throttle_duration_sec=5.0)
                return
            with self.headers_lock:
                # Under the lock: the result of this frame may be published at once.
                frame_id = self.frames.put(np.ascontiguousarray(image), image_format=fmt)
                self.headers[frame_id] = msg.header
                while len(self.headers) > _MAX_PENDING_HEADERS:
                    self.headers.popitem(last=False)

        def on_prompt(self, msg: String) -> None:
            try:
                self.get_logger().info(apply_prompt_message(self.stream, msg.data))
            except (ValueError, TypeError, KeyError) as e:
                self.get_logger().warning(f"prompt ignored: {e}")

        def publish(self, result: FrameResult) -> None:
            # Runs in the stream's thread; rclpy publishers may be used from any thread.
            with self.headers_lock:
                header = self.headers.pop(result.frame_id, None)
            labels = label_image(result)
            mask = Image()
            if header is not None:
                mask.header = header
            mask.height, mask.width = labels.shape
            mask.encoding = "mono16"
            mask.is_bigendian = 0
            mask.step = labels.shape[1] * 2
            mask.data = labels.astype("<u2").tobytes()
            self.mask_pub.publish(mask)
            stamp = (header.stamp.sec, header.stamp.nanosec) if header is not None else None
            self.objects_pub.publish(String(data=objects_json(result, stamp)))

        def destroy_node(self) -> None:
            self.frames.end()
            self.stream.close()  # joins the model thread, releases the model
            super().destroy_node()

    return SamedgeNode


def main() -> None:
    import rclpy

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    rclpy.init()
    node = _node_class()()
    try:
        rclpy.spin(node)
    except KeyboardInterrupt:
        pass
    finally:
        node.destroy_node()
        if rclpy.ok():
            rclpy.shutdown()


if __name__ == "__main__":
    main()
