"""Procedural scenes: textured shapes with instance masks, still or moving.

The generator is the data source of the built-in model ``samedge_tiny`` (its
training and its held-out evaluation) and the built-in "synthetic" camera used
by demos, calibration and tests. It needs numpy and OpenCV only, so it runs on
a plain install; natural-photo backgrounds (scikit-image's sample images) are
an optional input used by training and evaluation.

A scene is drawn back to front: a background (gradient, smooth noise,
procedural texture or a photo crop), then shapes (ellipses, polygons, stars,
rings, thin bars) with their own textures, then a lighting change, blur and
sensor noise. Each shape's mask is what stays *visible* after the shapes drawn
on top of it, so the masks of one scene never overlap.

Example:
    >>> import numpy as np
    >>> from samedge.scenes import make_scene, MovingScene
    >>> scene = make_scene(np.random.default_rng(0), size=(128, 128), num_objects=3)
    >>> scene.image.shape, scene.masks.shape[1:]
    ((128, 128, 3), (128, 128))
    >>> camera = MovingScene(seed=1, size=(120, 160), num_objects=2)
    >>> camera.frame(10).image.shape
    (120, 160, 3)
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Literal

import cv2
import numpy as np

from samedge.errors import InputError, SamedgeError

__all__ = [
    "HELDOUT_PHOTOS",
    "SHAPE_KINDS",
    "TRAIN_PHOTOS",
    "MovingScene",
    "ObjectLayout",
    "Scene",
    "make_scene",
    "photo_backgrounds",
]

log = logging.getLogger(__name__)

SHAPE_KINDS: tuple[str, ...] = ("ellipse", "polygon", "star", "ring", "bar")
_KIND_WEIGHTS = np.array([0.25, 0.25, 0.18, 0.14, 0.18])

# scikit-image sample images, split once and for all: training never sees the
# held-out ones. ``cat`` is the same photo as ``chelsea``, so both sit on the
# training side.
TRAIN_PHOTOS: tuple[str, ...] = (
    "rocket",
    "chelsea",
    "cat",
    "hubble_deep_field",
    "immunohistochemistry",
    "retina",
    "colorwheel",
    "camera",
    "coins",
    "moon",
    "page",
    "text",
    "brick",
    "grass",
    "cell",
)
HELDOUT_PHOTOS: tuple[str, ...] = ("astronaut", "coffee", "gravel", "clock")

# Shapes smaller than this many visible pixels are dropped from a scene: a
# handful of pixels is not an object anyone would prompt.
_MIN_VISIBLE_PX = 12


@dataclass(frozen=True)
class Scene:
    """One rendered frame with its instance masks.

    Attributes:
        image: ``H×W×3`` uint8 RGB.
        masks: ``K×H×W`` bool, the visible part of each object (disjoint).
        ids: ``K`` ints; in a :class:`MovingScene` an object keeps its id
            while it is on screen.
        kinds: ``K`` shape kinds, one of :data:`SHAPE_KINDS`.
    """

    image: np.ndarray
    masks: np.ndarray
    ids: tuple[int, ...]
    kinds: tuple[str, ...]

    def __post_init__(self) -> None:
        if self.image.ndim != 3 or self.image.shape[2] != 3 or self.image.dtype != np.uint8:
            raise InputError(
                f"Scene.image: got {self.image.dtype} {self.image.shape}, expected uint8 (H, W, 3)"
            )
        expected = (len(self.ids), *self.image.shape[:2])
        if self.masks.dtype != np.bool_ or self.masks.shape != expected:
            raise InputError(
                f"Scene.masks: got {self.masks.dtype} {self.masks.shape}, expected bool {expected}"
            )
        if len(self.kinds) != len(self.ids):
            raise InputError(f"Scene.kinds: got {len(self.kinds)}, expected {len(self.ids)}")

    def label_map(self) -> np.ndarray:
        """``H×W`` uint8: 0 background, ``k + 1`` where mask ``k`` is (masks are disjoint)."""
        labels = np.zeros(self.image.shape[:2], np.uint8)
        for k, mask in enumerate(self.masks):
            labels[mask] = k + 1
        return labels


# ----------------------------------------------------------------------------- shapes


@dataclass(frozen=True)
class _Shape:
    """A shape in its own unit frame plus its texture; posed when drawn."""

    kind: str
    outline: np.ndarray  # (P, 2) float, unit frame, radius ~1
    hole: np.ndarray | None  # inner outline for rings
    colors: np.ndarray  # (2, 3) float RGB
    pattern: int  # 0 solid, 1 stripes, 2 checker, 3 waves, 4 radial, 5 speckle
    freq: float  # pattern cycles per unit radius
    pattern_angle: float
    shade: float  # strength of a linear shading across the shape
    aspect: float  # y-scale of the unit frame (x stays 1)


def _random_shape(rng: np.random.Generator, kind: str | None = None) -> _Shape:
    if kind is None:
        kind = str(rng.choice(SHAPE_KINDS, p=_KIND_WEIGHTS))
    hole = None
    aspect = float(rng.uniform(0.45, 1.0))
    if kind == "ellipse":
        t = np.linspace(0, 2 * np.pi, 48, endpoint=False)
        outline = np.stack([np.cos(t), np.sin(t)], 1)
    elif kind == "polygon":
        n = int(rng.integers(3, 9))
        t = np.sort(rng.uniform(0, 2 * np.pi, n))
        # Spread the angles so that no polygon collapses into a sliver.
        t = 0.5 * t + 0.5 * np.linspace(0, 2 * np.pi, n, endpoint=False) + rng.uniform(0, 6.3)
        r = rng.uniform(0.7, 1.0, n)
        outline = np.stack([r * np.cos(t), r * np.sin(t)], 1)
    elif kind == "star":
        n = int(rng.integers(4, 9))
        t = np.linspace(0, 2 * np.pi, 2 * n, endpoint=False)
        r = np.where(np.arange(2 * n) % 2 == 0, 1.0, rng.uniform(0.35, 0.65))
        outline = np.stack([r * np.cos(t), r * np.sin(t)], 1)
        aspect = float(rng.uniform(0.75, 1.0))
    elif kind == "ring":
        t = np.linspace(0, 2 * np.pi, 48, endpoint=False)
        outline = np.stack([np.cos(t), np.sin(t)], 1)
        hole = outline * rng.uniform(0.4, 0.75)
        aspect = float(rng.uniform(0.6, 1.0))
    elif kind == "bar":
        half = rng.uniform(0.05, 0.16)
        outline = np.array([[-1, -half], [1, -half], [1, half], [-1, half]], float)
        aspect = 1.0
    else:
        raise InputError(f"kind: got {kind!r}, expected one of {SHAPE_KINDS}")
    colors = rng.uniform(0, 255, (2, 3))
    # Keep the two texture colours apart often enough that patterns are visible.
    if rng.random() < 0.5:
        colors[1] = 255 - colors[0] * rng.uniform(0.5, 1.0)
    return _Shape(
        kind=kind,
        outline=outline,
        hole=hole,
        colors=colors,
        pattern=int(rng.choice(6, p=[0.3, 0.15, 0.12, 0.15, 0.13, 0.15])),
        freq=float(rng.uniform(1.0, 6.0)),
        pattern_angle=float(rng.uniform(0, np.pi)),
        shade=float(rng.uniform(0.0, 0.5)),
        aspect=aspect,
    )


def _pose(points: np.ndarray, aspect: float, cx: float, cy: float, r: float, angle: float):
    c, s = math.cos(angle), math.sin(angle)
    x = points[:, 0] * r
    y = points[:, 1] * r * aspect
    return np.stack([cx + c * x - s * y, cy + s * x + c * y], 1)


def _draw(
    canvas: np.ndarray,
    mask_out: np.ndarray,
    shape: _Shape,
    cx: float,
    cy: float,
    r: float,
    angle: float,
    speckle: np.ndarray,
) -> None:
    """Draw ``shape`` into ``canvas`` (float32 H×W×3) and its footprint into ``mask_out``."""
    h, w = mask_out.shape
    outer = _pose(shape.outline, shape.aspect, cx, cy, r, angle)
    x0, y0 = np.floor(outer.min(0)).astype(int) - 1
    x1, y1 = np.ceil(outer.max(0)).astype(int) + 2
    x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, w), min(y1, h)
    if x0 >= x1 or y0 >= y1:
        return
    local = np.zeros((y1 - y0, x1 - x0), np.uint8)
    # cv2 fills with fixed-point coordinates (shift=4) so that slow sub-pixel
    # motion in a MovingScene moves the mask smoothly.
    scale = 16.0
    offset = np.array([x0, y0], float)
    cv2.fillPoly(local, [np.round((outer - offset) * scale).astype(np.int32)], 1, cv2.LINE_8, 4)
    if shape.hole is not None:
        inner = _pose(shape.hole, shape.aspect, cx, cy, r, angle)
        cv2.fillPoly(local, [np.round((inner - offset) * scale).astype(np.int32)], 0, cv2.LINE_8, 4)
    sel = local.astype(bool)
    if not sel.any():
        return
    ys, xs = np.nonzero(sel)
    # Texture coordinates in the shape's own frame, so the texture moves with it.
    dx = (xs + x0 - cx) / max(r, 1.0)
    dy = (ys + y0 - cy) / max(r, 1.0)
    c, s = math.cos(angle), math.sin(angle)
    u, v = c * dx + s * dy, -s * dx + c * dy
    pc, ps = math.cos(shape.pattern_angle), math.sin(shape.pattern_angle)
    a = pc * u + ps * v
    f = shape.freq * math.pi
    if shape.pattern == 0:
        t = np.zeros_like(u)
    elif shape.pattern == 1:
        t = (np.sin(a * f * 2) > 0).astype(float)
    elif shape.pattern == 2:
        t = ((np.floor(u * shape.freq) + np.floor(v * shape.freq)) % 2).astype(float)
    elif shape.pattern == 3:
        t = 0.5 + 0.25 * np.sin(a * f) + 0.25 * np.sin((pc * v - ps * u) * f * 0.7)
    elif shape.pattern == 4:
        t = np.clip(np.hypot(u, v), 0, 1)
    else:
        sh, sw = speckle.shape
        t = speckle[(ys + y0) % sh, (xs + x0) % sw]
    t = t[:, None]
    color = shape.colors[0] * (1 - t) + shape.colors[1] * t
    color = color * (1.0 + shape.shade * (pc * u)[:, None] * 0.5)
    canvas[ys + y0, xs + x0] = color
    mask_out[y0:y1, x0:x1] |= sel


# ----------------------------------------------------------------------------- backgrounds


def _smooth_noise(rng: np.random.Generator, h: int, w: int, cells: int) -> np.ndarray:
    """Values in 0..1 varying smoothly over about ``cells`` blobs per side."""
    small = rng.random((cells + 1, cells + 1)).astype(np.float32)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC).clip(0, 1)


def _background(
    rng: np.random.Generator, h: int, w: int, photos: Sequence[np.ndarray] | None
) -> np.ndarray:
    kind = rng.choice(4, p=[0.25, 0.25, 0.2, 0.3] if photos else [0.35, 0.35, 0.3, 0.0])
    c0, c1 = rng.uniform(0, 255, 3), rng.uniform(0, 255, 3)
    if kind == 0:  # linear gradient
        ang = rng.uniform(0, 2 * np.pi)
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        g = xx * math.cos(ang) + yy * math.sin(ang)
        g = (g - g.min()) / max(float(np.ptp(g)), 1.0)
        return c0 * (1 - g[..., None]) + c1 * g[..., None]
    if kind == 1:  # coloured smooth noise
        out = np.empty((h, w, 3), np.float32)
        cells = int(rng.integers(2, 24))
        for ch in range(3):
            out[..., ch] = _smooth_noise(rng, h, w, cells)
        return c0 + (c1 - c0) * out
    if kind == 2:  # procedural texture: stripes / grid / waves with noise
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        ang = rng.uniform(0, np.pi)
        period = rng.uniform(4, 40)
        a = (xx * math.cos(ang) + yy * math.sin(ang)) / period * 2 * np.pi
        b = (-xx * math.sin(ang) + yy * math.cos(ang)) / rng.uniform(4, 40) * 2 * np.pi
        t = 0.5 + 0.25 * np.sin(a) + 0.25 * np.sin(b) * rng.uniform(0, 1)
        t = t + 0.3 * (_smooth_noise(rng, h, w, int(rng.integers(4, 32))) - 0.5)
        return c0 + (c1 - c0) * t.clip(0, 1)[..., None]
    assert photos, "kind 3 (a photo) is drawn only when photos are given"
    photo = photos[int(rng.integers(len(photos)))]
    ph, pw = photo.shape[:2]
    crop = rng.uniform(0.4, 1.0)
    ch_, cw_ = max(int(ph * crop), 8), max(int(pw * crop), 8)
    yo, xo = int(rng.integers(0, ph - ch_ + 1)), int(rng.integers(0, pw - cw_ + 1))
    patch = cv2.resize(photo[yo : yo + ch_, xo : xo + cw_], (w, h), interpolation=cv2.INTER_AREA)
    if rng.random() < 0.5:
        patch = patch[:, ::-1]
    return patch.astype(np.float32)


def _finish(rng: np.random.Generator, canvas: np.ndarray, strength: float = 1.0) -> np.ndarray:
    """Lighting change, blur and sensor noise; returns uint8 RGB."""
    h, w = canvas.shape[:2]
    gain = rng.uniform(0.6, 1.3) ** strength
    light = 1.0 + strength * rng.uniform(0, 0.5) * (_smooth_noise(rng, h, w, 2) - 0.5)
    img = canvas * gain * light[..., None] + rng.uniform(-25, 25) * strength
    r = rng.random()
    if r < 0.35 * strength:
        sigma = rng.uniform(0.5, 1.6)
        img = cv2.GaussianBlur(img, (0, 0), sigma)
    noise_sd = rng.uniform(0, 10) * strength
    if noise_sd > 0.5:
        img = img + rng.normal(0, noise_sd, img.shape).astype(np.float32)
    return np.clip(img, 0, 255).astype(np.uint8)


def _speckle(rng: np.random.Generator) -> np.ndarray:
    return _smooth_noise(rng, 64, 64, 12) ** 1.5


def _compose(
    h: int,
    w: int,
    background: np.ndarray,
    placed: Sequence[tuple[int, _Shape, float, float, float, float]],
    speckle: np.ndarray,
    full: list[np.ndarray] | None = None,
) -> tuple[np.ndarray, np.ndarray, tuple[int, ...], tuple[str, ...]]:
    """Draw ``placed`` (id, shape, cx, cy, r, angle) back to front over ``background``.

    ``full``, when given, receives every placed shape's whole footprint in the
    frame (hidden parts included), in ``placed`` order.
    """
    canvas = background.astype(np.float32, copy=True)
    footprints = np.zeros((len(placed), h, w), bool)
    for k, (_, shape, cx, cy, r, ang) in enumerate(placed):
        _draw(canvas, footprints[k], shape, cx, cy, r, ang, speckle)
    if full is not None:
        full.extend(footprints.copy())
    # Visible part = footprint minus everything drawn later (on top).
    covered = np.zeros((h, w), bool)
    for k in range(len(placed) - 1, -1, -1):
        footprints[k] &= ~covered
        covered |= footprints[k]
    keep = [k for k in range(len(placed)) if footprints[k].sum() >= _MIN_VISIBLE_PX]
    return (
        canvas,
        footprints[keep],
        tuple(placed[k][0] for k in keep),
        tuple(placed[k][1].kind for k in keep),
    )


def _check_size(size: tuple[int, int]) -> tuple[int, int]:
    if len(size) != 2 or min(size) < 16:
        raise InputError(f"size: got {size!r}, expected (height, width) with both >= 16")
    return int(size[0]), int(size[1])


def make_scene(
    rng: np.random.Generator,
    size: tuple[int, int] = (256, 256),
    *,
    num_objects: int | None = None,
    backgrounds: Sequence[np.ndarray] | None = None,
) -> Scene:
    """Render one random still scene.

    Args:
        rng: Source of randomness; the scene is a pure function of its state.
        size: ``(height, width)``.
        num_objects: Shapes to draw; ``None`` draws 1..10. Fewer may be returned
            when a shape ends up (almost) fully hidden.
        backgrounds: Optional RGB uint8 photos to crop backgrounds from
            (see :func:`photo_backgrounds`); ``None`` uses procedural ones only.

    Returns:
        The scene; object sizes span tiny (tens of pixels) to a third of the frame.

    Example:
        >>> scene = make_scene(np.random.default_rng(3), num_objects=5)
        >>> scene.masks.shape[0] <= 5
        True
    """
    h, w = _check_size(size)
    if num_objects is None:
        num_objects = int(rng.integers(1, 11))
    if num_objects < 0:
        raise InputError(f"num_objects: got {num_objects}, expected >= 0")
    side = min(h, w)
    placed = []
    for k in range(num_objects):
        shape = _random_shape(rng)
        # Log-uniform radius: as many small objects as large ones.
        r = math.exp(rng.uniform(math.log(side * 0.02), math.log(side * 0.42)))
        if shape.kind == "bar":
            r *= 1.3
        cx, cy = rng.uniform(-0.1 * w, 1.1 * w), rng.uniform(-0.1 * h, 1.1 * h)
        placed.append((k, shape, cx, cy, r, float(rng.uniform(0, 2 * np.pi))))
    # Big shapes go to the back more often, so small ones are not always buried.
    placed.sort(key=lambda p: -p[4] * rng.uniform(0.5, 1.5))
    bg = _background(rng, h, w, backgrounds)
    canvas, masks, ids, kinds = _compose(h, w, bg, placed, _speckle(rng))
    return Scene(_finish(rng, canvas), masks, ids, kinds)


# ----------------------------------------------------------------------------- photos


def photo_backgrounds(split: Literal["train", "heldout"], max_side: int = 512) -> list[np.ndarray]:
    """scikit-image's sample photos as RGB uint8, for training or held-out scenes.

    The two splits are disjoint (:data:`TRAIN_PHOTOS`, :data:`HELDOUT_PHOTOS`).

    Args:
        split: ``"train"`` or ``"heldout"``.
        max_side: Photos are downscaled so their longest side is at most this.

    Raises:
        SamedgeError: scikit-image is not installed (it belongs to the training extra).

    Example:
        >>> photos = photo_backgrounds("heldout")  # doctest: +SKIP
    """
    if split not in ("train", "heldout"):
        raise InputError(f"split: got {split!r}, expected 'train' or 'heldout'")
    try:
        import skimage.data
    except ImportError as exc:
        raise SamedgeError(
            "photo backgrounds need scikit-image: pip install 'samedge[training]'"
        ) from exc
    names = TRAIN_PHOTOS if split == "train" else HELDOUT_PHOTOS
    out = []
    for name in names:
        img = np.asarray(getattr(skimage.data, name)())
        if img.dtype != np.uint8:
            img = (img.astype(np.float32) * (255.0 / max(float(img.max()), 1e-6))).astype(np.uint8)
        if img.ndim == 2:
            img = np.repeat(img[..., None], 3, axis=2)
        img = np.ascontiguousarray(img[..., :3])
        scale = max_side / max(img.shape[:2])
        if scale < 1:
            img = cv2.resize(img, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        out.append(img)
    return out


# ----------------------------------------------------------------------------- moving


@dataclass(frozen=True)
class _Life:
    """One object's time on screen: a curved path, spin and breathing scale."""

    oid: int
    start: float  # frame at which the life begins
    duration: float  # frames
    shape: _Shape
    path: np.ndarray  # (3, 2) quadratic Bezier control points, pixels
    radius: float
    angle0: float
    spin: float  # radians per frame
    breathe: float  # relative amplitude of the scale change
    breathe_rate: float  # radians per frame
    depth: float


@dataclass(frozen=True)
class ObjectLayout:
    """Where one object of a :class:`MovingScene` frame is, hidden parts included.

    The ground truth that video events (crossing, occlusion, leaving and
    re-entering the frame) are derived from; :meth:`MovingScene.frame_layout`
    lists every object whose time on screen covers the frame, also those
    wholly outside it or wholly hidden (which its :class:`Scene` leaves out).

    Attributes:
        object_id: The object's id (as in :attr:`Scene.ids`).
        footprint_px: Pixels of the whole object inside the frame, hidden
            parts included (0: it is outside the frame).
        visible_px: Pixels of its mask in the frame's :class:`Scene` (0 when it
            is hidden or too small to be kept there).
        overlaps: Ids of the objects whose footprints share pixels with this one.
        covered_by: Those of ``overlaps`` drawn in front of this one.
    """

    object_id: int
    footprint_px: int
    visible_px: int
    overlaps: tuple[int, ...] = ()
    covered_by: tuple[int, ...] = ()


# Extra rows/columns of MovingScene's noise field: (PAD + 1)² different windows.
_NOISE_PAD = 48
# Occluders are drawn in front of every other object: depth 1..2 against 0..1.
_OCCLUDER_DEPTH = 1.0


@dataclass
class MovingScene:
    """A deterministic synthetic camera: shapes drift, rotate, scale, enter and leave.

    ``frame(t)`` is a pure function of ``(seed, t)``, so any frame can be
    revisited (tests, calibration) without replaying the ones before it.
    Each object slot runs a sequence of "lives": an object enters from outside
    the frame (or is already on screen at ``t = 0``), crosses along a curve
    while rotating and changing scale, and leaves; the next object of that
    slot then enters with a new id.

    Three options (off by default, so the default frames never change) make the
    events video trackers stumble on happen more often: ``reentry`` brings an
    object that left back into the frame with its id, ``occluders`` adds large
    shapes that pass in front of everything else, and ``backgrounds`` draws
    some backgrounds from photos (e.g. the held-out ones, for evaluation).

    Args:
        seed: Seeds the whole sequence.
        size: ``(height, width)`` of the frames.
        num_objects: Object slots; about this many objects are on screen.
        fps: Frame rate; motion speeds are set in pixels per second.
        reentry: Chance that an object which left the frame comes back into it
            (same id and look, a new path) instead of a new object entering.
        occluders: Extra slots of large solid shapes (a quarter of the frame
            across) drawn in front of all others, hiding what they pass over.
        backgrounds: RGB uint8 photos the background may be cropped from
            (:func:`photo_backgrounds`); ``None``: procedural backgrounds only.

    Example:
        >>> cam = MovingScene(seed=0, size=(96, 128), num_objects=3)
        >>> first = cam.frame(0)
        >>> [s.image.shape for s in cam.frames(2)]
        [(96, 128, 3), (96, 128, 3)]
    """

    seed: int = 0
    size: tuple[int, int] = (480, 640)
    num_objects: int = 4
    fps: float = 30.0
    reentry: float = 0.0
    occluders: int = 0
    backgrounds: Sequence[np.ndarray] | None = field(default=None, repr=False, compare=False)
    _lives: list[list[_Life]] = field(default_factory=list, init=False, repr=False)
    _ends: list[float] = field(default_factory=list, init=False, repr=False)

    def __post_init__(self) -> None:
        self.size = _check_size(tuple(self.size))  # type: ignore[arg-type]
        if self.num_objects < 0:
            raise InputError(f"num_objects: got {self.num_objects}, expected >= 0")
        if not self.fps > 0:
            raise InputError(f"fps: got {self.fps}, expected > 0")
        if not 0.0 <= self.reentry <= 1.0:
            raise InputError(f"reentry: got {self.reentry}, expected a probability in [0, 1]")
        if isinstance(self.occluders, bool) or not isinstance(self.occluders, int):
            raise InputError(f"occluders: got {self.occluders!r}, expected an int >= 0")
        if self.occluders < 0:
            raise InputError(f"occluders: got {self.occluders}, expected an int >= 0")
        if self.backgrounds is not None:
            for k, photo in enumerate(self.backgrounds):
                if photo.dtype != np.uint8 or photo.ndim != 3 or photo.shape[2] != 3:
                    raise InputError(
                        f"backgrounds[{k}]: got {photo.dtype} {photo.shape}, "
                        "expected uint8 (H, W, 3) RGB"
                    )
        h, w = self.size
        rng = np.random.default_rng([self.seed, 0x5CE1E])
        photos = list(self.backgrounds) if self.backgrounds is not None else []
        self._background = _background(rng, h, w, photos or None)
        self._speckle = _speckle(rng)
        self._light_phase = rng.uniform(0, 2 * np.pi, 2)
        # Sensor noise: drawing fresh Gaussian noise for 640×480×3 pixels took more
        # than half of a frame's time (~9 of ~17 ms). Instead one field a little
        # larger than the frame is drawn once, and each frame takes a window of it
        # at a random offset: still N(0, 3) per pixel and different from frame to
        # frame (a shifted window shares no pixel-to-pixel alignment with the last).
        noise_rng = np.random.default_rng([self.seed, 1])
        self._noise = noise_rng.normal(0, 3.0, (h + _NOISE_PAD, w + _NOISE_PAD, 3)).astype(
            np.float32
        )
        slots = self._slots
        self._lives = [[] for _ in range(slots)]
        self._ends = [0.0] * slots
        for slot in range(slots):
            self._extend(slot, 0.0)

    @property
    def _slots(self) -> int:
        return self.num_objects + self.occluders

    # -- schedule -------------------------------------------------------------

    def _new_life(self, slot: int, index: int, start: float, back: _Life | None = None) -> _Life:
        """Life ``index`` of ``slot``; ``back``: that object returns, on a new path."""
        h, w = self.size
        rng = np.random.default_rng([self.seed, slot, index])
        side = min(h, w)
        occluder = slot >= self.num_objects
        if occluder:
            radius = math.exp(rng.uniform(math.log(side * 0.22), math.log(side * 0.32)))
        else:
            radius = math.exp(rng.uniform(math.log(side * 0.05), math.log(side * 0.2)))
        if back is not None:
            radius = back.radius
        margin = radius * 1.3
        seconds = rng.uniform(4.0, 10.0)

        def edge_point() -> np.ndarray:
            e = int(rng.integers(4))
            u = rng.uniform(0.1, 0.9)
            return np.array(
                [
                    [u * w, -margin],
                    [u * w, h + margin],
                    [-margin, u * h],
                    [w + margin, u * h],
                ][e]
            )

        inside = np.array([rng.uniform(0.2, 0.8) * w, rng.uniform(0.2, 0.8) * h])
        p_end = edge_point()
        if index == 0:
            # The first object of a slot is already on screen at t = 0: its path
            # starts inside the frame and it leaves later.
            p_start = np.array([rng.uniform(0.15, 0.85) * w, rng.uniform(0.15, 0.85) * h])
            seconds *= 0.7
        else:
            p_start = edge_point()
        if occluder:
            # Solid and large, so what passes behind it is hidden whole.
            shape = _random_shape(rng, str(rng.choice(["ellipse", "polygon"])))
        else:
            shape = _random_shape(rng)
        life = _Life(
            oid=index * max(self._slots, 1) + slot + 1,
            start=start,
            duration=seconds * self.fps,
            shape=shape,
            path=np.stack([p_start, inside, p_end]),
            radius=radius,
            angle0=float(rng.uniform(0, 2 * np.pi)),
            spin=float(rng.uniform(-1.0, 1.0)) / self.fps,
            breathe=float(rng.uniform(0.0, 0.3)),
            breathe_rate=float(rng.uniform(0.3, 1.5)) / self.fps,
            depth=float(rng.random()) + (_OCCLUDER_DEPTH if occluder else 0.0),
        )
        if back is not None:
            # The same object (id, look, spin, depth) on the new path.
            life = _Life(
                oid=back.oid,
                start=life.start,
                duration=life.duration,
                shape=back.shape,
                path=life.path,
                radius=back.radius,
                angle0=life.angle0,
                spin=back.spin,
                breathe=back.breathe,
                breathe_rate=back.breathe_rate,
                depth=back.depth,
            )
        return life

    def _extend(self, slot: int, until: float) -> None:
        lives = self._lives[slot]
        while not lives or self._ends[slot] <= until:
            start = self._ends[slot]
            back = None
            if lives:
                # A short gap before the next object enters.
                gap_rng = np.random.default_rng([self.seed, slot, len(lives), 7])
                start += gap_rng.uniform(0.0, 1.5) * self.fps
                if self.reentry > 0:
                    draw = np.random.default_rng([self.seed, slot, len(lives), 11]).random()
                    if draw < self.reentry:
                        back = lives[-1]
            life = self._new_life(slot, len(lives), start, back)
            lives.append(life)
            self._ends[slot] = life.start + life.duration

    # -- frames ---------------------------------------------------------------

    def frame(self, t: int) -> Scene:
        """Render frame ``t`` (``t >= 0``); deterministic for ``(seed, t)``."""
        return self._render(t, None)

    def frame_layout(self, t: int) -> tuple[Scene, tuple[ObjectLayout, ...]]:
        """Frame ``t`` and where each of its objects is, hidden parts included.

        Returns:
            The same :class:`Scene` as :meth:`frame`, and one
            :class:`ObjectLayout` per object whose time on screen covers ``t``
            (by id), also those outside the frame or hidden.

        Example:
            >>> cam = MovingScene(seed=2, size=(60, 80), num_objects=3, occluders=1)
            >>> scene, layout = cam.frame_layout(5)
            >>> all(o.visible_px <= o.footprint_px for o in layout)
            True
        """
        full: list[np.ndarray] = []
        placed_ids: list[int] = []
        scene = self._render(t, (full, placed_ids))
        visible = {
            oid: int(np.count_nonzero(m)) for oid, m in zip(scene.ids, scene.masks, strict=True)
        }
        boxes = []
        for fp in full:
            x, y, bw, bh = cv2.boundingRect(fp.view(np.uint8))
            boxes.append((x, y, x + bw, y + bh))
        layout = []
        # ``full`` is in drawing order: a later footprint is in front of an earlier one.
        for k, oid in enumerate(placed_ids):
            overlaps, covered_by = [], []
            x0, y0, x1, y1 = boxes[k]
            for j, other in enumerate(placed_ids):
                if j == k:
                    continue
                u0, v0, u1, v1 = boxes[j]
                if max(x0, u0) >= min(x1, u1) or max(y0, v0) >= min(y1, v1):
                    continue
                ya, yb, xa, xb = max(y0, v0), min(y1, v1), max(x0, u0), min(x1, u1)
                if (full[k][ya:yb, xa:xb] & full[j][ya:yb, xa:xb]).any():
                    overlaps.append(other)
                    if j > k:
                        covered_by.append(other)
            layout.append(
                ObjectLayout(
                    object_id=oid,
                    footprint_px=int(np.count_nonzero(full[k])),
                    visible_px=visible.get(oid, 0),
                    overlaps=tuple(sorted(overlaps)),
                    covered_by=tuple(sorted(covered_by)),
                )
            )
        return scene, tuple(sorted(layout, key=lambda o: o.object_id))

    def _render(self, t: int, layout: tuple[list[np.ndarray], list[int]] | None) -> Scene:
        if t < 0:
            raise InputError(f"t: got {t}, expected a frame index >= 0")
        h, w = self.size
        placed = []
        for slot in range(self._slots):
            self._extend(slot, float(t))
            for life in self._lives[slot]:
                if not life.start <= t < life.start + life.duration:
                    continue
                s = (t - life.start) / life.duration
                p = life.path
                cx, cy = (1 - s) ** 2 * p[0] + 2 * (1 - s) * s * p[1] + s**2 * p[2]
                rel = t - life.start
                r = life.radius * (1 + life.breathe * math.sin(life.breathe_rate * rel))
                ang = life.angle0 + life.spin * rel
                placed.append((life.depth, (life.oid, life.shape, cx, cy, r, ang)))
        placed.sort(key=lambda x: x[0])
        full = None
        if layout is not None:
            full = layout[0]
            layout[1].extend(p[0] for _, p in placed)
        canvas, masks, ids, kinds = _compose(
            h, w, self._background, [p for _, p in placed], self._speckle, full
        )
        # Slow global lighting drift plus per-frame sensor noise.
        sec = t / self.fps
        gain = 1.0 + 0.15 * math.sin(0.4 * sec + self._light_phase[0])
        bias = 12.0 * math.sin(0.23 * sec + self._light_phase[1])
        dy, dx = np.random.default_rng([self.seed, 1, t]).integers(0, _NOISE_PAD + 1, 2)
        # In place: the canvas is this frame's own float copy, and fewer temporaries
        # of a 640×480×3 float image save milliseconds per frame.
        canvas *= np.float32(gain)
        canvas += np.float32(bias)
        canvas += self._noise[dy : dy + h, dx : dx + w]
        image = np.clip(canvas, 0, 255, out=canvas).astype(np.uint8)
        return Scene(image, masks, ids, kinds)

    def frames(self, count: int, start: int = 0) -> Iterator[Scene]:
        """Yield ``count`` consecutive frames from ``start``."""
        for t in range(start, start + count):
            yield self.frame(t)

    def __iter__(self) -> Iterator[Scene]:
        """Yield frames 0, 1, 2, ... forever (a camera never ends)."""
        t = 0
        while True:
            yield self.frame(t)
            t += 1
