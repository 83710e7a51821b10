"""Every script in examples/ runs (with small arguments) and exits 0.

A script declares the arguments of its smoke run in a comment line::

    # test-args: --frames 3 --model {model} --output {tmp}/out.mp4

``{model}`` is a model directory (samedge_tiny once it ships, else the reduced
random-weight SAM) and ``{tmp}`` a fresh temporary directory. A script that
cannot run here (it needs a camera, ROS 2, ...) says so instead::

    # test-args: skip (needs a ROS 2 installation)

Every script must at least compile, and the ROS 2 node's helpers (image
conversion, prompt messages) are tested without ROS.
"""

from __future__ import annotations

import importlib.util
import json
import os
import py_compile
import re
import shlex
import subprocess
import sys
import types
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from samedge.masks import mask_box

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = sorted((ROOT / "examples").glob("*.py"))
TINY = ROOT / "samedge" / "assets" / "samedge_tiny"
_ARGS = re.compile(r"^# test-args:\s*(.*)$", re.MULTILINE)


def test_there_are_examples():
    assert EXAMPLES, f"no scripts in {ROOT / 'examples'}"


@pytest.mark.parametrize("script", EXAMPLES, ids=lambda p: p.name)
def test_example_runs(script: Path, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    match = _ARGS.search(script.read_text(encoding="utf-8"))
    if match is None:
        pytest.fail(f"{script.name}: add a '# test-args: ...' line (see {Path(__file__).name})")
    spec = match.group(1).strip()
    if spec.startswith("skip"):
        pytest.skip(f"{script.name}: {spec}")
    if "{model}" in spec:
        if (TINY / "samedge.json").is_file():
            model = TINY
        else:
            model = request.getfixturevalue("reduced_sam_dir").dir
        spec = spec.replace("{model}", str(model))
    args = shlex.split(spec.replace("{tmp}", str(tmp_path)))
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.run(
        [sys.executable, str(script), *args],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, (
        f"{script.name} {' '.join(args)} exited {proc.returncode}\n"
        f"--- stdout\n{proc.stdout[-3000:]}\n--- stderr\n{proc.stderr[-3000:]}"
    )


@pytest.mark.parametrize("script", EXAMPLES, ids=lambda p: p.name)
def test_example_compiles(script: Path, tmp_path: Path) -> None:
    # Also covers the scripts that cannot run here (ros2_node.py needs ROS 2).
    py_compile.compile(str(script), cfile=str(tmp_path / "x.pyc"), doraise=True)


def load_example(name: str) -> types.ModuleType:
    spec = importlib.util.spec_from_file_location(f"example_{name}", ROOT / "examples" / name)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class FakeStream:
    """Records the prompt operations the ROS node would run."""

    def __init__(self) -> None:
        self.calls: list[tuple] = []

    def add(self, prompt, *, object_id=None) -> int:
        self.calls.append(("add", prompt, object_id))
        return object_id or 7

    def remove(self, object_id: int) -> None:
        self.calls.append(("remove", object_id))

    def clear(self) -> None:
        self.calls.append(("clear",))


def test_ros2_node_imports_without_ros_and_its_helpers_work() -> None:
    had_rclpy = "rclpy" in sys.modules
    ros = load_example("ros2_node.py")
    assert ("rclpy" in sys.modules) == had_rclpy  # imported lazily, in main() only

    # sensor_msgs/Image rows may be padded (step > width * channels).
    bgr = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3)
    padded = np.zeros((2, 12), np.uint8)
    padded[:, :9] = bgr.reshape(2, 9)
    msg = SimpleNamespace(encoding="bgr8", height=2, width=3, step=12, data=padded.tobytes())
    image, fmt = ros.image_to_array(msg)
    assert fmt == "BGR"
    np.testing.assert_array_equal(image, bgr)
    mono = SimpleNamespace(encoding="mono8", height=2, width=2, step=2, data=bytes([1, 2, 3, 4]))
    image, fmt = ros.image_to_array(mono)
    assert fmt == "RGB"
    assert image.shape == (2, 2, 3)
    assert image[1, 1].tolist() == [4, 4, 4]
    with pytest.raises(ValueError, match="rgb8, bgr8 or mono8"):
        ros.image_to_array(SimpleNamespace(encoding="16UC1"))

    from samedge.stream import FrameResult, TrackedObject, TrackState

    mask = np.zeros((4, 5), bool)
    mask[1:3, 2:4] = True
    objects = {
        3: TrackedObject(3, TrackState.TRACKING, mask, (2.0, 1.0, 3.0, 2.0), 0.91, 4, 2),
        5: TrackedObject(5, TrackState.LOST, None, (0.0, 0.0, 1.0, 1.0), 0.1, 1, 0, "gone"),
    }
    result = FrameResult(8, 0.5, np.zeros((4, 5, 3), np.uint8), objects)
    labels = ros.label_image(result)
    assert labels.dtype == np.uint16
    assert labels.sum() == 3 * 4
    assert labels[1, 2] == 3
    data = json.loads(ros.objects_json(result, (12, 34)))
    assert data["frame_id"] == 8
    assert data["stamp"] == {"sec": 12, "nanosec": 34}
    assert [(o["id"], o["state"]) for o in data["objects"]] == [(3, "tracking"), (5, "lost")]

    stream = FakeStream()
    assert ros.apply_prompt_message(stream, '{"op": "add", "box": [1, 2, 30, 40]}') == (
        "prompted object 7"
    )
    ros.apply_prompt_message(stream, '{"op": "add", "id": 3, "points": [[5, 6]]}')
    ros.apply_prompt_message(stream, '{"op": "remove", "id": 3}')
    ros.apply_prompt_message(stream, '{"op": "clear"}')
    kinds = [c[0] for c in stream.calls]
    assert kinds == ["add", "add", "remove", "clear"]
    assert stream.calls[0][1].box.tolist() == [1, 2, 30, 40]
    assert stream.calls[1][1].point_labels.tolist() == [1.0]
    assert stream.calls[1][2] == 3
    for bad, words in (
        ('{"op": "jump"}', "expected add, remove or clear"),
        ("[1]", "expected a JSON object"),
        ('{"op": "add"}', "no points and no box"),
        ("not json", "Expecting value"),
    ):
        with pytest.raises(ValueError, match=words):
            ros.apply_prompt_message(stream, bad)


def test_detector_stand_in_finds_boxes_on_the_synthetic_scene() -> None:
    det = load_example("detector_boxes.py")
    from samedge.scenes import MovingScene

    scene = MovingScene(seed=0).frame(0)
    boxes = det.detect(scene.image)
    assert boxes  # the blue ring and the magenta star of seed 0's first frame
    for box in boxes:
        # each box is (nearly) the box of one object of the scene
        best = max(det.box_iou(box, mask_box(m)) for m in scene.masks)
        assert best > 0.8, box
    assert det.box_iou((0, 0, 9, 9), (0, 0, 9, 9)) == 1.0
    assert det.box_iou((0, 0, 9, 9), (20, 20, 29, 29)) == 0.0
