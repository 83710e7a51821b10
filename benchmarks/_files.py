"""Writing files for the benchmark scripts: atomically, so a reader never sees half a file."""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path

__all__ = ["write_atomic", "write_json_and_markdown"]


def write_atomic(path: str | os.PathLike[str], data: str | bytes) -> Path:
    """Write ``data`` to ``path`` through a temporary file beside it and a rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data.encode("utf-8") if isinstance(data, str) else data)
        # mkstemp makes 0600; results are read by everyone, as any file the umask allows.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
    return path


def write_json_and_markdown(output: Path, data: object, markdown: str) -> None:
    """``output`` (.json) and the same name in .md, each atomically; says where."""
    write_atomic(output, json.dumps(data, indent=2) + "\n")
    write_atomic(output.with_suffix(".md"), markdown)
    print(f"wrote {output} and {output.with_suffix('.md')}")
