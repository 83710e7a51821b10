"""Atomic file and directory writes, and content hashing.

Nothing a user had is lost or half-replaced: every file is written under a
temporary name in the same directory and renamed into place, and a directory
of outputs is assembled beside its destination and swapped in at the end.

A process killed outright (SIGKILL, power loss) cannot remove its hidden
staging entries (``.OUT.xxxxxxxx.partial`` and the like); :func:`claim_output`
lets the next writer of the same output sweep them, and tells a dead writer's
entries from a live one's by a lock the kernel releases when its holder dies.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import logging
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from samedge.errors import InputError, OutputExistsError, OutputWriteError

try:
    import fcntl
except ImportError:  # Windows: no flock; see claim_output
    fcntl = None  # type: ignore[assignment]

__all__ = [
    "FRAMES_MARKER",
    "atomic_directory",
    "atomic_write_bytes",
    "atomic_write_text",
    "check_output_dir",
    "check_output_file",
    "claim_output",
    "file_mode",
    "free_space",
    "sha256_file",
]

#: File samedge puts in a folder of PNG frames it wrote, so that ``--force``
#: can tell that folder from one the user made (a model directory's mark is
#: its card, ``samedge.json``).
FRAMES_MARKER = ".samedge-frames"

log = logging.getLogger(__name__)

# tempfile's random part: 8 characters from [a-z0-9_], never a dot, so an
# entry of output "a" never matches one of output "a.b" (".a.b.xxxxxxxx.work").
_RANDOM = r"[a-z0-9_]{8}"


def sha256_file(path: str | os.PathLike[str], chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file's content, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def _umask() -> int:
    # os.umask can only be read by setting it; restore at once.
    mask = os.umask(0)
    os.umask(mask)
    return mask


def file_mode() -> int:
    """The mode a plain ``open(path, "w")`` gives a new file under the current umask.

    ``mkstemp`` creates 0600; every output samedge writes through a temporary
    file gets this mode instead, so a video and a JSON report beside it agree.
    """
    return 0o666 & ~_umask()


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write ``data`` to ``path`` so that readers see the old file or the new one, never half."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        # mkstemp creates 0600; give the file the mode a plain open() would have.
        os.fchmod(fd, file_mode())
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        _raise_if_disk_full(e, path)
        raise
    return path


_DISK_FULL = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)


def _raise_if_disk_full(error: BaseException, out: Path) -> None:
    """Re-raise a full disk (or quota) as :class:`OutputWriteError` naming ``out``."""
    if (
        isinstance(error, OSError)
        and not isinstance(error, OutputWriteError)
        and error.errno in _DISK_FULL
    ):
        raise OutputWriteError(
            f"output {out}: could not be written ({error.strerror}; "
            f"{free_space(out.parent)}); nothing replaced what was there"
        ) from error


def atomic_write_text(path: str | os.PathLike[str], text: str) -> Path:
    """Text flavour of :func:`atomic_write_bytes` (UTF-8)."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def free_space(folder: str | os.PathLike[str]) -> str:
    """Free space on ``folder``'s filesystem in words, for messages about failed writes."""
    try:
        free = shutil.disk_usage(folder).free
    except OSError:
        return "free space unknown"
    return f"{free / 2**20:.1f} MiB free there"


def _check_writable_parent(out: Path) -> None:
    parent = out.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise InputError(f"output {out}: cannot create its parent directory ({e.strerror})") from e
    if not os.access(parent, os.W_OK | os.X_OK):
        raise InputError(f"output {out}: directory {parent} is not writable; choose another path")


def _check_parent_writable(out: Path) -> None:
    """Refuse ``out`` when its nearest existing ancestor is a file or cannot be written.

    Creates nothing: a check made before hours of work must not leave empty
    folders behind when that work then fails.
    """
    ancestor = out.absolute().parent
    while not ancestor.exists() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise InputError(
            f"output {out}: {ancestor} is a file, so nothing can be created under it; "
            "choose another path"
        )
    # access() also answers EROFS for a read-only filesystem, where root's
    # permission bits say nothing.
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise InputError(
            f"output {out}: directory {ancestor} is not writable (read-only or no "
            "permission); choose another path"
        )


def check_output_file(
    path: str | os.PathLike[str], *, force: bool = False, what: str = "output"
) -> Path:
    """Check, before any work, that a file can be written at ``path``.

    Call it from an entry point before the long part (a run, a build, an
    evaluation), so a bad path fails in a second with one line instead of
    after the work with the result lost.

    Args:
        path: Where the file will go.
        force: Whether an existing file may be replaced.
        what: How the message names the path (``"output"``, ``"--report"``).

    Returns:
        ``path`` as a Path.

    Raises:
        InputError: ``path`` is a directory or a device/fifo/socket, or its
            folder is a file, read-only, or not writable.
        OutputExistsError: ``path`` exists and ``force`` is false.

    Example:
        >>> check_output_file("out/run.mp4", force=True)      # doctest: +SKIP
        PosixPath('out/run.mp4')
    """
    path = Path(path)
    if path.is_dir():
        raise InputError(
            f"{what} {path}: is a directory; expected a file path such as {path / 'out'}"
        )
    if path.exists():
        if not path.is_file():
            raise InputError(
                f"{what} {path}: exists and is not a regular file (a device, fifo or "
                "socket); choose a file path"
            )
        if not force:
            raise OutputExistsError(
                f"{what} {path}: exists; pass --force (force=True) to replace it, "
                "or choose another path"
            )
    _check_parent_writable(path)
    return path


def _listing(directory: Path, limit: int = 3) -> str:
    names = sorted(p.name for p in directory.iterdir())
    shown = ", ".join(names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


def check_output_dir(
    out: str | os.PathLike[str], *, force: bool = False, marker: str | None = None
) -> Path:
    """Check, before any work, that an output directory can be written or replaced.

    ``force`` replaces only a directory samedge wrote: an empty one, or one
    holding ``marker`` (``samedge.json`` for a model directory,
    :data:`FRAMES_MARKER` for a folder of frames). Anything else is the
    user's, and is refused with the reason.

    Args:
        out: The directory to create or replace.
        force: Whether a non-empty directory samedge wrote may be replaced.
        marker: The file that marks a directory of this kind as samedge's;
            ``None``: only an empty directory is ever replaced.

    Returns:
        ``out`` as a Path.

    Raises:
        OutputExistsError: ``out`` is not empty and ``force`` is false, or it
            holds files samedge did not write.
        InputError: ``out`` is a file, or its parent cannot be written.
    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise InputError(f"output {out}: exists and is a file; expected a directory path")
    if out.is_dir() and any(out.iterdir()):
        if not force:
            raise OutputExistsError(
                f"output {out}: directory exists and is not empty; pass --force (force=True) "
                "to replace it, or choose another path"
            )
        if marker is None or not (out / marker).is_file():
            what = (
                f"it has no {marker}, so samedge did not write it"
                if marker
                else ("samedge replaces only empty directories here")
            )
            raise OutputExistsError(
                f"output {out}: --force replaces only a directory samedge wrote, and {what} "
                f"(it holds {_listing(out)}); remove it yourself or choose another path"
            )
    _check_parent_writable(out)
    return out


@contextlib.contextmanager
def atomic_directory(
    out: str | os.PathLike[str], *, force: bool = False, marker: str | None = None
) -> Iterator[Path]:
    """Yield an empty staging directory that replaces ``out`` when the block succeeds.

    The staging directory sits beside ``out`` (same filesystem, so the final
    rename is atomic). If the block raises, the staging directory is removed and
    ``out`` is untouched. An existing ``out`` is only replaced when ``force`` is
    true and it is samedge's (see :func:`check_output_dir`; checked again just
    before the swap), and is removed only after the new one is in place.

    Args:
        out: The directory to create or replace.
        force: Replace a non-empty ``out`` that holds ``marker``.
        marker: The file marking a directory of this kind as samedge's; the
            block must write it into the staging directory.

    Raises:
        OutputExistsError: ``out`` exists and is not empty, and ``force`` is
            false or ``out`` holds files samedge did not write.
        InputError: ``out`` is a file, or its parent cannot be written.
    """
    out = Path(out)
    check_output_dir(out, force=force, marker=marker)
    _check_writable_parent(out)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".partial", dir=out.parent))
    # mkdtemp creates 0700; a model directory must be readable as mkdir would make it.
    os.chmod(staging, 0o777 & ~_umask())
    try:
        yield staging
    except BaseException as e:
        shutil.rmtree(staging, ignore_errors=True)
        _raise_if_disk_full(e, out)
        raise
    try:
        # Again: the block may have run for hours, and the user may have put
        # something of theirs at ``out`` meanwhile.
        check_output_dir(out, force=force, marker=marker)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    old: Path | None = None
    if out.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".old", dir=out.parent))
        os.replace(out, old / out.name)
    try:
        os.replace(staging, out)
    except BaseException:
        if old is not None:
            os.replace(old / out.name, out)
        shutil.rmtree(staging, ignore_errors=True)
        raise
    finally:
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)


def _staging_entries(out: Path) -> list[Path]:
    """Hidden entries beside ``out`` that samedge's writers of ``out`` create and remove.

    ``.OUT.<random>.work`` (a build's scratch), ``.partial`` and ``.old``
    (:func:`atomic_directory`), ``.OUT.failed-report.json.<random>.tmp``
    (:func:`atomic_write_bytes` of a build's failed report).
    """
    name = re.escape(out.name)
    folder = re.compile(rf"\.{name}\.{_RANDOM}\.(work|partial|old)")
    report = re.compile(rf"\.{name}\.failed-report\.json\.{_RANDOM}\.tmp")
    try:
        children = list(out.parent.iterdir())
    except FileNotFoundError:
        return []
    return sorted(
        p
        for p in children
        if (folder.fullmatch(p.name) and p.is_dir() and not p.is_symlink())
        or (report.fullmatch(p.name) and p.is_file())
    )


def _sweep(out: Path) -> None:
    for entry in _staging_entries(out):
        if entry.name.endswith(".old") and (entry / out.name).is_dir() and not out.exists():
            # Killed between atomic_directory's two renames: the previous
            # output is in here and nothing replaced it; put it back.
            os.replace(entry / out.name, out)
            log.warning("restored %s, which a killed build had moved aside", out)
        if entry.is_dir():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)
        log.info("removed %s, left by a build that was killed", entry)


@contextlib.contextmanager
def claim_output(out: str | os.PathLike[str]) -> Iterator[None]:
    """Hold ``out`` for one writer, after removing what a killed writer left beside it.

    The claim is an exclusive ``flock`` on ``.OUT.lock`` beside ``out``, held
    for the block and removed after it. The kernel drops a lock when its
    process dies, however it dies, so a lock that can be taken means every
    staging entry of ``out`` (:func:`_staging_entries`) belongs to a dead
    writer and is swept; a pid in the file would be reused and say nothing
    reliable. Where ``fcntl`` is missing (Windows), nothing is claimed or swept.

    Raises:
        OutputExistsError: another live process holds ``out`` (names its pid).
        InputError: the parent of ``out`` cannot be created or written.
    """
    out = Path(out)
    _check_writable_parent(out)
    if fcntl is None:
        log.debug("no fcntl here: %s is not locked, stale staging is not swept", out)
        yield
        return
    lock = out.with_name(f".{out.name}.lock")
    while True:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            owner = os.read(fd, 32).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise OutputExistsError(
                f"output {out}: another samedge build (pid {owner}) is writing it; wait "
                "for it to finish or choose another path"
            ) from None
        except BaseException:
            os.close(fd)
            raise
        # The previous holder removes the file before unlocking it, so the file
        # locked here may already be unlinked; only the one at the path counts.
        try:
            same = os.path.samestat(os.fstat(fd), os.stat(lock))
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)
    try:
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        _sweep(out)
        yield
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(lock)
        os.close(fd)
