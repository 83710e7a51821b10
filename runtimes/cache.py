"""On-disk cache of built engines and compiled blobs.

A TensorRT engine takes minutes to build on a Jetson and is only valid for the
TensorRT version, GPU and optimisation profile it was built with, so it is
cached under a key made of everything it depends on. OpenVINO keeps its own
compiled-blob cache; it gets a directory under the same root
(:meth:`EngineCache.subdir`) so one setting moves and clears both.

Layout::

    <root>/engines/<backend>/<key>.blob    the engine bytes
    <root>/engines/<backend>/<key>.json    what the key was made from + sha256 of the blob
    <root>/openvino/<key>/                  OpenVINO's CACHE_DIR for one graph and
                                            configuration, with samedge-entry.json

:func:`list_cache` and :func:`clear_cache` are what ``samedge cache`` shows
and removes: every entry with its model, backend, size, age and path.

Both files are written atomically (temporary file + rename), blob first and
sidecar last, so a crash at any point leaves either no entry or an entry
without a valid sidecar, which :meth:`EngineCache.get` discards. A blob whose
checksum does not match its sidecar (disk corruption, a foreign write) is
logged, deleted and reported as a miss, and the caller rebuilds.

Example:
    >>> cache = EngineCache()                                    # doctest: +SKIP
    >>> key = cache.key("decoder.onnx", precision="fp16", backend="tensorrt",
    ...                 backend_version="10.13.0", device="Orin",
    ...                 compute_capability="8.7", profile="B=1..16,N=1..10")
    >>> engine = cache.get(key)
    >>> if engine is None:
    ...     engine = build()
    ...     cache.put(key, engine)
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from samedge._io import atomic_write_bytes, atomic_write_text
from samedge._version import __version__
from samedge.errors import EngineCacheError, InputError
from samedge.runtimes._graph import onnx_content_hash, read_onnx_summary

log = logging.getLogger(__name__)

__all__ = [
    "OV_ENTRY_NAME",
    "CacheEntry",
    "CacheKey",
    "EngineCache",
    "clear_cache",
    "default_cache_root",
    "list_cache",
]

#: The file describing one OpenVINO cache directory (written by the OpenVINO backend).
OV_ENTRY_NAME = "samedge-entry.json"

# Bump when the layout or the sidecar changes so old entries miss instead of misloading.
CACHE_FORMAT = 1
_ENV_ROOT = "SAMEDGE_CACHE_DIR"


def default_cache_root() -> Path:
    """``$SAMEDGE_CACHE_DIR``, else ``$XDG_CACHE_HOME/samedge``, else ``~/.cache/samedge``."""
    explicit = os.environ.get(_ENV_ROOT)
    if explicit:
        return Path(explicit).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "samedge"


@dataclass(frozen=True)
class CacheKey:
    """Everything a cached engine depends on.

    Attributes:
        onnx_sha256: Content hash of the ONNX graph and its external data.
        precision: Precision the engine was built for (``"fp16"``, ``"int8"``, ...).
        backend: Backend name (``"tensorrt"``).
        backend_version: Exact library version (``"10.13.0.35"``).
        device: Device name (``"NVIDIA Jetson AGX Orin"``).
        compute_capability: ``"8.7"``; ``None`` for devices without one.
        profile: Optimisation-profile description (``"B=1..16,N=1..10"``).
    """

    onnx_sha256: str
    precision: str
    backend: str
    backend_version: str
    device: str
    compute_capability: str | None = None
    profile: str = ""

    def __post_init__(self) -> None:
        for name in ("onnx_sha256", "precision", "backend", "backend_version", "device"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value:
                raise InputError(f"cache key {name}: got {value!r}, expected a non-empty string")
        if not self.backend.replace("_", "").replace("-", "").isalnum():
            raise InputError(
                f"cache key backend: got {self.backend!r}, expected letters, digits, - or _"
            )

    @property
    def digest(self) -> str:
        """Hex SHA-256 naming the entry on disk."""
        fields = {"format": CACHE_FORMAT, **self.to_dict()}
        canonical = json.dumps(fields, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode("utf-8")).hexdigest()

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class EngineCache:
    """Directory of cached engines, keyed by :class:`CacheKey`.

    Args:
        root: Cache directory; ``None`` means :func:`default_cache_root`.
    """

    def __init__(self, root: str | os.PathLike[str] | None = None) -> None:
        self.root = Path(root).expanduser() if root is not None else default_cache_root()

    def __repr__(self) -> str:
        return f"EngineCache({str(self.root)!r})"

    # -- keys ------------------------------------------------------------------------

    @staticmethod
    def key(
        onnx_path: str | os.PathLike[str],
        *,
        precision: str,
        backend: str,
        backend_version: str,
        device: str,
        compute_capability: str | None = None,
        profile: str = "",
    ) -> CacheKey:
        """Key for an engine built from ``onnx_path``; hashes the graph's content.

        Raises:
            InputError: the ONNX file or one of its external-data files is missing.
        """
        return CacheKey(
            onnx_sha256=onnx_content_hash(onnx_path),
            precision=precision,
            backend=backend,
            backend_version=backend_version,
            device=device,
            compute_capability=compute_capability,
            profile=profile,
        )

    def path(self, key: CacheKey) -> Path:
        """Where the entry's blob lives (whether or not it exists)."""
        return self.root / "engines" / key.backend / f"{key.digest}.blob"

    def subdir(self, name: str) -> Path:
        """A directory under the root for a library's own cache (created).

        Raises:
            EngineCacheError: the directory cannot be created.
        """
        path = self.root / name
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise EngineCacheError(
                f"cache directory {path}: cannot create it ({e.strerror}); "
                f"set {_ENV_ROOT} to a writable directory"
            ) from e
        return path

    def content_hash(self, onnx_path: str | os.PathLike[str]) -> str:
        """The graph's content hash (:func:`onnx_content_hash`), remembered on disk.

        Hashing runs at ~300 MB/s here, seconds for a ViT-H at every process
        start; the result is kept under ``<root>/hashes/`` keyed by each file's
        path, size, mtime and inode, so a model is hashed once until it changes.

        Raises:
            InputError: the ONNX file or one of its external-data files is missing.
        """
        path = Path(onnx_path).resolve()
        files = [path, *(path.parent / n for n in read_onnx_summary(path).external_data)]
        identity = []
        for f in files:
            try:
                st = f.stat()
            except FileNotFoundError:
                return onnx_content_hash(path)  # names the missing file
            identity.append([str(f), st.st_size, st.st_mtime_ns, st.st_ino])
        name = hashlib.sha256(json.dumps(identity).encode("utf-8")).hexdigest()
        memo = self.root / "hashes" / f"{name}.sha256"
        with contextlib.suppress(OSError, UnicodeDecodeError):
            known = memo.read_text(encoding="ascii").strip()
            if len(known) == 64 and all(c in "0123456789abcdef" for c in known):
                return known
        digest = onnx_content_hash(path)
        with contextlib.suppress(OSError):  # a read-only cache only costs the hashing
            atomic_write_text(memo, digest + "\n")
        return digest

    # -- entries -----------------------------------------------------------------------

    def get(self, key: CacheKey) -> bytes | None:
        """The cached blob for ``key``, or ``None`` when absent, incomplete or corrupt.

        A damaged entry is logged at WARNING and deleted, so the caller's rebuild
        replaces it.
        """
        blob = self.path(key)
        sidecar = blob.with_suffix(".json")
        if not blob.is_file():
            if sidecar.exists():
                self._drop(key, "blob missing beside its sidecar")
            return None
        if not sidecar.is_file():
            self._drop(key, "no sidecar: a previous write was interrupted")
            return None
        try:
            meta = json.loads(sidecar.read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            self._drop(key, f"unreadable sidecar ({e})")
            return None
        if not isinstance(meta, dict) or meta.get("format") != CACHE_FORMAT:
            self._drop(key, "sidecar from another cache format")
            return None
        if meta.get("key") != key.to_dict():
            self._drop(key, "sidecar describes a different key")
            return None
        try:
            data = blob.read_bytes()
        except OSError as e:
            self._drop(key, f"unreadable blob ({e.strerror})")
            return None
        if len(data) != meta.get("size") or hashlib.sha256(data).hexdigest() != meta.get("sha256"):
            self._drop(key, "blob checksum does not match its sidecar")
            return None
        log.debug("engine cache hit %s (%d bytes)", blob, len(data))
        return data

    def put(self, key: CacheKey, data: bytes, *, model: str | None = None) -> Path:
        """Store ``data`` under ``key`` atomically; returns the blob's path.

        Args:
            key: What the engine was built from.
            data: The engine bytes.
            model: The model's name (``"mobile_sam"``), shown by ``samedge cache list``.

        Raises:
            EngineCacheError: the cache directory cannot be written.
        """
        if not isinstance(data, bytes | bytearray | memoryview):
            raise InputError(f"cache data: got {type(data).__name__}, expected bytes")
        data = bytes(data)
        blob = self.path(key)
        meta = {
            "format": CACHE_FORMAT,
            "key": key.to_dict(),
            "sha256": hashlib.sha256(data).hexdigest(),
            "size": len(data),
            "samedge_version": __version__,
            "model": model,
        }
        try:
            # Blob first, sidecar last: the sidecar's presence marks a complete entry.
            atomic_write_bytes(blob, data)
            atomic_write_text(blob.with_suffix(".json"), json.dumps(meta, indent=2) + "\n")
        except OSError as e:
            with contextlib.suppress(OSError):
                blob.unlink()
            raise EngineCacheError(
                f"engine cache {self.root}: cannot write ({e.strerror or e}); "
                f"set {_ENV_ROOT} to a writable directory"
            ) from e
        log.debug("engine cache stored %s (%d bytes)", blob, len(data))
        return blob

    def invalidate(self, key: CacheKey, reason: str) -> None:
        """Delete an entry the caller found unusable (e.g. it failed to deserialize)."""
        self._drop(key, reason)

    def _drop(self, key: CacheKey, reason: str) -> None:
        blob = self.path(key)
        log.warning("engine cache entry %s discarded (%s); it will be rebuilt", blob.name, reason)
        for path in (blob.with_suffix(".json"), blob):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()


# -- what `samedge cache` lists and clears ----------------------------------------------


@dataclass(frozen=True)
class CacheEntry:
    """One cached engine or compiled-blob directory.

    Attributes:
        backend: ``"tensorrt"``, ``"openvino"``, ...
        model: Model name where the entry records it, else ``"?"``.
        detail: Graph and settings in a few words (``"encoder.onnx, bf16"``).
        size_bytes: Bytes on disk.
        modified: When it was last written (seconds since the epoch).
        path: The blob, or the OpenVINO directory.
    """

    backend: str
    model: str
    detail: str
    size_bytes: int
    modified: float
    path: Path

    @property
    def age_s(self) -> float:
        """Seconds since the entry was last written."""
        return max(0.0, time.time() - self.modified)

    def to_dict(self) -> dict[str, Any]:
        return {
            "backend": self.backend,
            "model": self.model,
            "detail": self.detail,
            "size_bytes": self.size_bytes,
            "age_s": round(self.age_s, 1),
            "path": str(self.path),
        }


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _dict_field(data: dict[str, Any], name: str) -> dict[str, Any]:
    """``data[name]`` where it is a JSON object, else an empty one."""
    value = data.get(name)
    return value if isinstance(value, dict) else {}


def _tree_size_and_mtime(path: Path) -> tuple[int, float]:
    size, newest = 0, 0.0
    files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
    for f in files:
        with contextlib.suppress(OSError):
            st = f.stat()
            size += st.st_size
            newest = max(newest, st.st_mtime)
    if not newest:
        with contextlib.suppress(OSError):
            newest = path.stat().st_mtime
    return size, newest


def _engine_entries(root: Path) -> list[CacheEntry]:
    entries = []
    for blob in sorted((root / "engines").glob("*/*.blob")):
        meta = _read_json(blob.with_suffix(".json"))
        key = _dict_field(meta, "key")
        size, modified = _tree_size_and_mtime(blob)
        size += _tree_size_and_mtime(blob.with_suffix(".json"))[0] if meta else 0
        detail = ", ".join(str(key[k]) for k in ("precision", "device", "profile") if key.get(k))
        entries.append(
            CacheEntry(
                backend=blob.parent.name,
                model=str(meta.get("model") or "?"),
                detail=detail or "no sidecar (incomplete; removed on next use)",
                size_bytes=size,
                modified=modified,
                path=blob,
            )
        )
    return entries


def _timing_entries(root: Path) -> list[CacheEntry]:
    """TensorRT builder timing caches: shared by every model built on one TensorRT and GPU."""
    entries = []
    for path in sorted((root / "tensorrt").glob("timing-*.cache")):
        size, modified = _tree_size_and_mtime(path)
        detail = "builder timing cache " + path.stem.removeprefix("timing-")
        entries.append(CacheEntry("tensorrt", "?", detail, size, modified, path))
    return entries


def _openvino_entries(root: Path) -> list[CacheEntry]:
    base = root / "openvino"
    if not base.is_dir():
        return []
    entries = []
    loose = []
    for child in sorted(base.iterdir()):
        if child.is_dir() and (child / OV_ENTRY_NAME).is_file():
            info = _read_json(child / OV_ENTRY_NAME)
            key = _dict_field(info, "key")
            size, modified = _tree_size_and_mtime(child)
            detail = ", ".join(
                str(v)
                for v in (
                    info.get("graph"),
                    key.get("device"),
                    key.get("inference_precision"),
                    "OpenVINO " + str(key["openvino"]).split("-")[0] if key.get("openvino") else "",
                )
                if v
            )
            entries.append(
                CacheEntry("openvino", str(info.get("model") or "?"), detail, size, modified, child)
            )
        else:
            loose.append(child)
    for child in loose:
        # Blobs OpenVINO wrote straight into the shared directory (samedge before
        # per-configuration keys): nothing says whose they are.
        size, modified = _tree_size_and_mtime(child)
        detail = "shared directory of an older samedge (not used any more)"
        entries.append(CacheEntry("openvino", "?", detail, size, modified, child))
    return entries


def list_cache(root: str | os.PathLike[str] | None = None) -> list[CacheEntry]:
    """Every engine and compiled-blob entry under the cache root, oldest first.

    Args:
        root: Cache root; ``None`` means :func:`default_cache_root`.

    Example:
        >>> for e in list_cache():                                 # doctest: +SKIP
        ...     print(e.backend, e.model, e.size_bytes, round(e.age_s), e.path)
    """
    base = Path(root).expanduser() if root is not None else default_cache_root()
    if not base.is_dir():
        return []
    entries = _engine_entries(base) + _timing_entries(base) + _openvino_entries(base)
    return sorted(entries, key=lambda e: e.modified)


def clear_cache(
    root: str | os.PathLike[str] | None = None, *, model: str | None = None
) -> list[CacheEntry]:
    """Remove every cache entry, or only those of ``model``; returns what was removed.

    Entries that do not record their model (``"?"``) are removed only when
    clearing everything.

    Raises:
        EngineCacheError: an entry could not be removed (named with the reason).
    """
    removed = []
    for entry in list_cache(root):
        if model is not None and entry.model != model:
            continue
        try:
            if entry.path.is_dir():
                shutil.rmtree(entry.path)
            else:
                entry.path.unlink(missing_ok=True)
                entry.path.with_suffix(".json").unlink(missing_ok=True)
        except OSError as e:
            raise EngineCacheError(
                f"cache entry {entry.path}: cannot remove it ({e.strerror or e}); "
                "check its permissions"
            ) from e
        removed.append(entry)
        log.info("removed cache entry %s (%s, %s)", entry.path, entry.backend, entry.model)
    if model is None:
        base = Path(root).expanduser() if root is not None else default_cache_root()
        shutil.rmtree(base / "hashes", ignore_errors=True)  # remembered graph hashes
    return removed
