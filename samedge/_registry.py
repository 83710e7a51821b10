"""Name look-up shared by every registry (models, backends, precisions)."""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping
from typing import TypeVar

from samedge.errors import UnknownNameError

T = TypeVar("T")


def unknown_name_message(kind: str, name: str, valid: Iterable[str]) -> str:
    """Build "unknown X 'y'; valid: a, b, c (did you mean 'b'?)"."""
    names = sorted(valid)
    close = difflib.get_close_matches(name, names, n=1, cutoff=0.5)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    return f"unknown {kind} {name!r}; valid names: {', '.join(names)}.{hint}"


def lookup(registry: Mapping[str, T], name: str, kind: str) -> T:
    """Return ``registry[name]`` or raise an error that lists the valid names.

    Raises:
        UnknownNameError: ``name`` is not in the registry.
    """
    try:
        return registry[name]
    except KeyError:
        raise UnknownNameError(unknown_name_message(kind, name, registry)) from None
