"""Real faults for tests: a small tmpfs (a full disk), a read-only filesystem.

Mounting needs root (and a kernel that lets this container mount tmpfs);
where either is missing the test is skipped, never faked.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

__all__ = ["fill", "tmpfs"]


@contextlib.contextmanager
def tmpfs(where: Path, size: str = "1m", *, read_only: bool = False) -> Iterator[Path]:
    """Mount a tmpfs of ``size`` at ``where`` (created) for the block; skip without root."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    where.mkdir(parents=True, exist_ok=True)
    options = f"size={size}" + (",ro" if read_only else "")
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(where)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], capture_output=True, check=False)


def fill(where: Path, leave: int = 0) -> Path:
    """Fill the filesystem at ``where`` until at most ``leave`` bytes are free."""
    filler = where / ".filler"
    with open(filler, "wb") as f:
        block = b"\0" * 65536
        try:
            while True:
                free = os.statvfs(where).f_bavail * os.statvfs(where).f_frsize
                if free <= leave:
                    break
                f.write(block[: max(1, min(len(block), free - leave))])
                f.flush()
        except OSError:
            pass
    return filler
