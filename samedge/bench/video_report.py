"""The record of ``samedge bench --video``: per-frame latency by graph, memory per object.

One :class:`VideoRow` per (suite, model, backend, precision, objects): the
per-frame latency of tracking that many objects (frame in, masks at frame
size out), split by graph (image encoder, memory attention, decoder, memory
encoder, and the tracker's own numpy work), each timed frame's total kept in
order so two rows can be compared on the same frames, and the bytes one
object's memory bank holds. :class:`VideoReport` gathers them with the
machine, versions, command and the clip (:class:`VideoClip`); peers' rows
(Meta's PyTorch ``SAM2VideoPredictor``, timed by the repository's
``benchmarks/video_peer.py``) join the same report, and
:meth:`VideoReport.scaling` / :meth:`VideoReport.peer_ratios` derive the
ratios from the rows (never stored apart from them).

Example:
    >>> report = VideoReport.load("bench_video_sam2.1_hiera_tiny.json")   # doctest: +SKIP
    >>> [(s.backend, round(s.ratio, 2)) for s in report.scaling()]       # doctest: +SKIP
    [('onnxruntime', 3.1), ('openvino', 3.4)]
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from samedge._io import atomic_write_text
from samedge.bench.records import Timing
from samedge.errors import InputError

__all__ = [
    "VIDEO_GRAPHS",
    "PeerRatio",
    "Scaling",
    "VideoClip",
    "VideoReport",
    "VideoRow",
]

log = logging.getLogger(__name__)

VIDEO_REPORT_FORMAT = 1
#: The parts of a tracked frame, in the order they run. ``tracker`` is the
#: tracker's own work between the graphs (bank selection, stacking, mask
#: choice, upsampling the masks to the frame): the numpy overhead.
VIDEO_GRAPHS = ("encoder", "memory_attention", "decoder", "memory_encoder", "tracker")


@dataclass(frozen=True)
class VideoClip:
    """The frames and prompts every row tracks: a seeded procedural moving scene.

    Attributes:
        seed: :class:`samedge.scenes.MovingScene` seed.
        size: ``(height, width)`` of the frames.
        scene_objects: The scene's object slots.
        object_ids: Scene ids of the prompted objects, largest on frame 0 first;
            a row with N objects prompts the first N.
        points: One click per prompted object on frame 0 (``(x, y)`` pixels, the
            deepest point of its ground-truth mask).
    """

    seed: int
    size: tuple[int, int]
    scene_objects: int
    object_ids: tuple[int, ...]
    points: tuple[tuple[float, float], ...]

    def __post_init__(self) -> None:
        if len(self.object_ids) != len(self.points):
            raise InputError(
                f"VideoClip: got {len(self.object_ids)} object ids and {len(self.points)} "
                "points, expected one point per object"
            )

    def frames(self, count: int) -> list[np.ndarray]:
        """Frames ``0 .. count - 1`` (``H×W×3`` uint8 RGB), the same on every call."""
        from samedge.scenes import MovingScene

        scene = MovingScene(seed=self.seed, size=self.size, num_objects=self.scene_objects)
        return [s.image for s in scene.frames(count)]

    def to_dict(self) -> dict[str, Any]:
        return {
            "seed": self.seed,
            "size": list(self.size),
            "scene_objects": self.scene_objects,
            "object_ids": list(self.object_ids),
            "points": [list(p) for p in self.points],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> VideoClip:
        return cls(
            seed=int(data["seed"]),
            size=(int(data["size"][0]), int(data["size"][1])),
            scene_objects=int(data["scene_objects"]),
            object_ids=tuple(int(v) for v in data["object_ids"]),
            points=tuple((float(x), float(y)) for x, y in data["points"]),
        )


@dataclass(frozen=True)
class VideoRow:
    """Tracking ``objects`` objects, frame by frame, on one configuration.

    Attributes:
        suite: ``"samedge"`` or the peer's name (``"pytorch"``).
        model: Registry name (the card's ``model``).
        backend: ``"onnxruntime"``, ``"openvino"``, ``"tensorrt"`` or ``"torch"``.
        precision: What the image encoder computed in (``"fp32"``, ``"bf16"``, ...).
        objects: Objects tracked, all prompted on frame 0.
        total: Per-frame latency: frame in, every object's mask at frame size out.
        graphs: Per-frame latency of each of :data:`VIDEO_GRAPHS` (empty for a
            peer that is not split).
        frame_ms: Each timed frame's total, in frame order.
        first_frame: Index of the first timed frame in the clip (frame 0 is
            the prompted one; the frames between are warm-up).
        memory_bytes_per_object: Bytes one object's memory holds after the
            last frame (the largest over the objects).
        device: Backend device.
        threads: CPU threads the backend was given.
        default: Whether this is samedge's default choice here (``backend="auto"``).
        peak_rss_mib: Peak resident memory of the process that ran it.
        build_s: The prompted frame 0 of the first row of its process: engine
            builds/compiles and the first frame.
        note: Anything a reader needs to interpret the row.
    """

    suite: str
    model: str
    backend: str
    precision: str
    objects: int
    total: Timing
    graphs: dict[str, Timing] = field(default_factory=dict)
    frame_ms: tuple[float, ...] = ()
    first_frame: int = 1
    memory_bytes_per_object: int | None = None
    device: str = "cpu"
    threads: int | None = None
    default: bool = False
    peak_rss_mib: float | None = None
    build_s: float | None = None
    note: str = ""

    def __post_init__(self) -> None:
        if self.objects < 1:
            raise InputError(f"VideoRow.objects: got {self.objects}, expected >= 1")
        bad = sorted(set(self.graphs) - set(VIDEO_GRAPHS))
        if bad:
            raise InputError(f"VideoRow.graphs: got {bad}, expected names from {VIDEO_GRAPHS}")
        if self.frame_ms and len(self.frame_ms) != self.total.runs:
            raise InputError(
                f"VideoRow: {len(self.frame_ms)} frame times for {self.total.runs} timed frames"
            )

    @property
    def frames(self) -> range:
        """Clip indices of the timed frames."""
        return range(self.first_frame, self.first_frame + len(self.frame_ms))

    @property
    def label(self) -> str:
        return f"{self.suite} {self.backend} {self.precision}"

    def median_over(self, frames: range) -> float | None:
        """Median total (ms) over those of ``frames`` this row timed; None when none."""
        picked = [ms for k, ms in zip(self.frames, self.frame_ms, strict=True) if k in frames]
        return float(np.median(picked)) if picked else None

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["frame_ms"] = list(self.frame_ms)
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> VideoRow:
        fields = dict(data)
        fields["total"] = Timing(**fields["total"])
        fields["graphs"] = {k: Timing(**v) for k, v in fields.get("graphs", {}).items()}
        fields["frame_ms"] = tuple(fields.get("frame_ms", ()))
        return cls(**fields)


@dataclass(frozen=True)
class Scaling:
    """How one configuration's per-frame median grows from its fewest objects to ``objects``."""

    model: str
    suite: str
    backend: str
    precision: str
    base_objects: int
    objects: int
    base_ms: float
    ms: float

    @property
    def ratio(self) -> float:
        return self.ms / self.base_ms


@dataclass(frozen=True)
class PeerRatio:
    """A peer's per-frame median over samedge's, same model, objects and frames."""

    model: str
    peer: str
    objects: int
    backend: str
    precision: str
    default: bool
    frames: tuple[int, int]  # first and last clip frame compared
    peer_ms: float
    samedge_ms: float

    @property
    def ratio(self) -> float:
        return self.peer_ms / self.samedge_ms


@dataclass(frozen=True)
class VideoReport:
    """Everything one ``samedge bench --video`` run (and its peers) measured.

    Attributes:
        machine: Name, CPU, cores, ISA flags, GPUs, OS, load (``_machine.machine_info``).
        versions: Library versions.
        command: The exact command line(s) that made it.
        timestamp: UTC time the run ended (ISO 8601).
        settings: Frames, warm-up, objects, threads, ...
        clip: The frames and prompts every row tracked.
        models: Per model directory: name, path, precision, weights, memory settings.
        rows: samedge's rows and the peers'.
        failures: Configurations that failed: what and the error.
        skipped: What was not measured and why.
        default: samedge's default choice here (``backend="auto"``) and why.
        notes: Free-form lines from whoever ran it.
    """

    machine: dict[str, Any]
    versions: dict[str, str]
    command: str
    timestamp: str
    settings: dict[str, Any]
    clip: VideoClip
    models: tuple[dict[str, Any], ...] = ()
    rows: tuple[VideoRow, ...] = ()
    failures: tuple[dict[str, str], ...] = ()
    skipped: tuple[str, ...] = ()
    default: dict[str, str] = field(default_factory=dict)
    notes: tuple[str, ...] = ()

    # -- derived ------------------------------------------------------------------------

    def scaling(self) -> list[Scaling]:
        """Per configuration, each object count's median over its fewest objects' median."""
        groups: dict[tuple[str, ...], list[VideoRow]] = {}
        for row in self.rows:
            key = (row.model, row.suite, row.backend, row.precision, row.device)
            groups.setdefault(key, []).append(row)
        out = []
        for (model, suite, backend, precision, _), rows in groups.items():
            base = min(rows, key=lambda r: r.objects)
            for row in sorted(rows, key=lambda r: r.objects):
                if row is base:
                    continue
                out.append(
                    Scaling(
                        model,
                        suite,
                        backend,
                        precision,
                        base.objects,
                        row.objects,
                        base.total.median_ms,
                        row.total.median_ms,
                    )
                )
        return out

    def peer_ratios(self) -> list[PeerRatio]:
        """Each peer row against every samedge row of its model and object count.

        Both medians are taken over the frames both timed (the peer times few:
        Meta's predictor takes seconds a frame here), so a memory bank still
        filling up counts the same on both sides.
        """
        out = []
        for peer in self.rows:
            if peer.suite == "samedge" or not peer.frame_ms:
                continue
            for ours in self.rows:
                if ours.suite != "samedge" or (ours.model, ours.objects) != (
                    peer.model,
                    peer.objects,
                ):
                    continue
                common = range(
                    max(peer.first_frame, ours.first_frame),
                    min(peer.frames.stop, ours.frames.stop),
                )
                if not common:
                    continue
                peer_ms, our_ms = peer.median_over(common), ours.median_over(common)
                if peer_ms is None or our_ms is None:
                    continue
                out.append(
                    PeerRatio(
                        peer.model,
                        peer.suite,
                        peer.objects,
                        ours.backend,
                        ours.precision,
                        ours.default,
                        (common.start, common.stop - 1),
                        peer_ms,
                        our_ms,
                    )
                )
        return out

    # -- JSON ---------------------------------------------------------------------------

    def to_json(self) -> dict[str, Any]:
        return {
            "format": VIDEO_REPORT_FORMAT,
            "kind": "video",
            "machine": self.machine,
            "versions": self.versions,
            "command": self.command,
            "timestamp": self.timestamp,
            "settings": self.settings,
            "default": self.default,
            "clip": self.clip.to_dict(),
            "models": list(self.models),
            "rows": [r.to_json() for r in self.rows],
            "failures": list(self.failures),
            "skipped": list(self.skipped),
            "notes": list(self.notes),
            # Derived from the rows, written for readers of the JSON alone.
            "scaling": [{**asdict(s), "ratio": s.ratio} for s in self.scaling()],
            "peer_ratios": [
                {**asdict(p), "frames": list(p.frames), "ratio": p.ratio}
                for p in self.peer_ratios()
            ],
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> VideoReport:
        if data.get("kind") != "video":
            raise InputError(
                f"not a video bench report (kind {data.get('kind')!r}); pass a JSON file "
                "written by `samedge bench --video`"
            )
        return cls(
            machine=data["machine"],
            versions=data["versions"],
            command=data["command"],
            timestamp=data["timestamp"],
            settings=data["settings"],
            clip=VideoClip.from_dict(data["clip"]),
            models=tuple(data.get("models", [])),
            rows=tuple(VideoRow.from_json(r) for r in data.get("rows", [])),
            failures=tuple(data.get("failures", [])),
            skipped=tuple(data.get("skipped", [])),
            default=data.get("default", {}),
            notes=tuple(data.get("notes", [])),
        )

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> VideoReport:
        """Read a report written by :meth:`save`.

        Raises:
            InputError: the file is missing or is not a video benchmark report.
        """
        path = Path(path)
        try:
            return cls.from_json(json.loads(path.read_text(encoding="utf-8")))
        except InputError as e:
            raise InputError(f"{path}: {e}") from None
        except (OSError, json.JSONDecodeError, KeyError, TypeError, ValueError) as e:
            raise InputError(
                f"{path}: not a samedge video bench report ({type(e).__name__}: {e}); "
                "pass a JSON file written by `samedge bench --video`"
            ) from e

    def with_rows(
        self, rows: Sequence[VideoRow], *, command: str | None = None, **changes: Any
    ) -> VideoReport:
        """This report with ``rows`` added (a peer's), the command extended, other fields set."""
        merged = self.command if command is None else f"{self.command} && {command}"
        return replace(self, rows=(*self.rows, *rows), command=merged, **changes)

    def save(self, directory: str | os.PathLike[str], name: str) -> dict[str, Path]:
        """Write ``NAME.json`` and ``NAME.md`` into ``directory`` (atomically).

        Raises:
            InputError: ``directory`` exists and is not a directory.
        """
        directory = Path(directory)
        if directory.exists() and not directory.is_dir():
            raise InputError(
                f"output: {directory} is a file, expected a directory for the results; "
                "pass a directory path"
            )
        directory.mkdir(parents=True, exist_ok=True)
        paths = {"json": directory / f"{name}.json", "markdown": directory / f"{name}.md"}
        atomic_write_text(paths["json"], json.dumps(self.to_json(), indent=2) + "\n")
        atomic_write_text(paths["markdown"], self.markdown())
        return paths

    # -- markdown -----------------------------------------------------------------------

    def markdown(self) -> str:
        """The run as markdown: context, per-frame rows, the per-graph profile, ratios."""
        from samedge.bench._video_markdown import render

        return render(self)
