"""Label-map PNGs as DAVIS stores them: 8-bit palette PNGs of object indices (private).

OpenCV decodes a palette PNG to colours, not indices, and cannot write one.
Reading maps the decoded colours back to indices through the file's own
palette (its ``PLTE`` chunk), which is exact whenever the indices in use have
distinct colours (DAVIS's palette gives every index its own); otherwise
Pillow, which reads indices directly, is used if installed. Writing builds
the PNG from its chunks (zlib, no row filters). 8-bit grayscale PNGs, which
some tools write instead, are read as indices too.
"""

from __future__ import annotations

import os
import struct
import zlib
from pathlib import Path

import cv2
import numpy as np

from samedge.errors import ImageError, InputError, SamedgeError

__all__ = ["davis_palette", "encode_label_png", "read_label_png", "write_label_png"]

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def davis_palette() -> np.ndarray:
    """DAVIS's annotation palette, ``[256, 3]`` uint8 RGB: the PASCAL VOC colour map.

    Index ``i``'s colour spreads the bits of ``i`` over the high bits of R, G
    and B (bit 0 to R, 1 to G, 2 to B, then the next three one bit lower, ...),
    so every index has its own colour; 0 is black.
    """
    out = np.zeros((256, 3), np.uint8)
    for i in range(256):
        c = i
        for shift in range(7, -1, -1):
            for ch in range(3):
                out[i, ch] |= ((c >> ch) & 1) << shift
            c >>= 3
    return out


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return (
        struct.pack(">I", len(data))
        + kind
        + data
        + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    )


def encode_label_png(labels: np.ndarray, palette: np.ndarray | None = None) -> bytes:
    """An 8-bit palette PNG of an ``H×W`` uint8 label map (DAVIS's palette by default)."""
    arr = np.asarray(labels)
    if arr.ndim != 2 or arr.dtype != np.uint8 or arr.size == 0:
        raise InputError(
            f"labels: got {arr.dtype} {arr.shape}, expected a non-empty uint8 (H, W) label map"
        )
    pal = davis_palette() if palette is None else np.asarray(palette, np.uint8)
    if pal.ndim != 2 or pal.shape[1] != 3 or not 1 <= len(pal) <= 256:
        raise InputError(f"palette: got shape {pal.shape}, expected (N <= 256, 3) RGB")
    h, w = arr.shape
    # Filter type 0 (none) on every row: a zero byte before each row's indices.
    raw = np.concatenate([np.zeros((h, 1), np.uint8), arr], axis=1).tobytes()
    header = struct.pack(">IIBBBBB", w, h, 8, 3, 0, 0, 0)
    return (
        _PNG_SIGNATURE
        + _png_chunk(b"IHDR", header)
        + _png_chunk(b"PLTE", pal.tobytes())
        + _png_chunk(b"IDAT", zlib.compress(raw, 6))
        + _png_chunk(b"IEND", b"")
    )


def write_label_png(path: str | os.PathLike[str], labels: np.ndarray) -> Path:
    """Write ``labels`` (``H×W`` uint8) as a DAVIS palette PNG, atomically."""
    from samedge._io import atomic_write_bytes

    return atomic_write_bytes(path, encode_label_png(labels))


def _png_header(path: Path, data: bytes) -> tuple[int, int, int, int, np.ndarray | None]:
    """``(width, height, bit depth, colour type, palette or None)`` from a PNG's chunks."""
    if not data.startswith(_PNG_SIGNATURE):
        raise InputError(f"{path}: not a PNG file; expected a DAVIS palette PNG label map")
    pos, header, palette = 8, None, None
    while pos + 8 <= len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind = data[pos + 4 : pos + 8]
        body = data[pos + 8 : pos + 8 + length]
        if kind == b"IHDR" and len(body) == 13:
            header = struct.unpack(">IIBB", body[:10])
        elif kind == b"PLTE":
            palette = np.frombuffer(body[: len(body) // 3 * 3], np.uint8).reshape(-1, 3)
        elif kind in (b"IDAT", b"IEND"):
            break  # PLTE must come before the image data
        pos += 12 + length
    if header is None:
        raise InputError(f"{path}: PNG without a readable IHDR chunk (truncated or corrupt)")
    w, h, depth, ctype = header
    return w, h, depth, ctype, palette


def read_label_png(path: str | os.PathLike[str]) -> np.ndarray:
    """An ``H×W`` uint8 label map from a palette (or 8-bit grayscale) PNG.

    Raises:
        InputError: not a PNG, or a PNG of another kind (RGB, 16-bit), which
            holds colours rather than object indices.
        ImageError: the file cannot be decoded.
        SamedgeError: the palette gives two indices in use one colour, and
            Pillow (which reads indices directly) is not installed.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as e:
        raise InputError(f"{path}: cannot be read ({e.strerror})") from e
    w, h, depth, ctype, palette = _png_header(path, data)
    if ctype == 0 and depth == 8:
        gray = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
        if gray is None or gray.shape != (h, w):
            raise ImageError(f"{path}: OpenCV cannot decode it; the PNG is corrupt")
        return gray
    if ctype != 3:
        kinds = {0: "grayscale", 2: "RGB", 4: "grayscale+alpha", 6: "RGBA"}
        raise InputError(
            f"{path}: a {depth}-bit {kinds.get(ctype, f'type-{ctype}')} PNG; expected an "
            "8-bit palette (or grayscale) PNG whose pixel values are object indices "
            "(0 background, 255 void), as DAVIS annotations are"
        )
    if palette is None:
        raise InputError(f"{path}: palette PNG without a PLTE chunk (corrupt)")
    bgr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if bgr is None or bgr.shape[:2] != (h, w):
        raise ImageError(f"{path}: OpenCV cannot decode it; the PNG is corrupt")
    # OpenCV expands the palette to colours; map each colour back to its index.
    code = _rgb_code(np.asarray(bgr)[..., ::-1])
    pal_code = _rgb_code(palette)
    keys, first, count = np.unique(pal_code, return_index=True, return_counts=True)
    used = np.unique(code)
    at = np.minimum(np.searchsorted(keys, used), len(keys) - 1)
    if np.any(keys[at] != used):
        raise ImageError(f"{path}: decoded colours that its palette does not hold (corrupt)")
    if np.any(count[at] > 1):
        return _read_label_png_pillow(path)
    return first.astype(np.uint8)[np.searchsorted(keys, code)]


def _rgb_code(rgb: np.ndarray) -> np.ndarray:
    """One int32 per RGB triple (``R << 16 | G << 8 | B``)."""
    c = rgb.astype(np.int32)
    return np.asarray((c[..., 0] << 16) | (c[..., 1] << 8) | c[..., 2])


def _read_label_png_pillow(path: Path) -> np.ndarray:
    """Exact indices through Pillow, for palettes that give two indices in use one colour."""
    try:
        from PIL import Image
    except ImportError as e:
        raise SamedgeError(
            f"{path}: its palette gives two object indices in use the same colour, so the "
            "indices cannot be told apart from the colours OpenCV decodes; install Pillow "
            "(pip install pillow) or save the masks with distinct palette colours"
        ) from e
    with Image.open(path) as img:
        return np.array(img, np.uint8)
