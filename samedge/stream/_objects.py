"""Objects by stable id and their waiting prompts: what every tracker shares.

:class:`~samedge.stream.tracking.Tracker` (re-prompting) and
:class:`~samedge.stream.memory.MemoryTracker` (SAM 2's memory) differ in how
they follow an object from frame to frame, not in how objects are prompted,
numbered, removed and listed. :class:`PromptedObjects` is that common part:
the thread-safe table of entries, prompt validation, id allocation and the
object limit. A subclass says how an entry is made and what a new prompt for
a known object does.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING, Generic, Protocol, TypeVar, cast

import numpy as np

from samedge.errors import InputError, PromptError
from samedge.prompts import ObjectPrompt

if TYPE_CHECKING:
    from samedge.stream.tracking import TrackedObject

__all__ = ["PromptedObjects"]


class _Entry(Protocol):
    object_id: int
    prompt: ObjectPrompt | None
    generation: int

    def snapshot(self) -> TrackedObject: ...


E = TypeVar("E", bound=_Entry)


class PromptedObjects(Generic[E]):
    """A thread-safe table of tracked objects with their waiting prompts.

    Subclasses implement :meth:`_new_entry` and :meth:`_prompt_known`, and may
    word the too-many-objects error (:meth:`_limit_error`).

    Args:
        max_objects: Most objects at once; None for no limit.
    """

    def __init__(self, max_objects: int | None) -> None:
        self._max_objects = max_objects
        self._lock = threading.Lock()
        self._entries: dict[int, E] = {}
        self._next_id = 1

    # -- what a subclass decides ---------------------------------------------------------

    def _new_entry(self, object_id: int, prompt: ObjectPrompt) -> E:
        """A new entry for ``object_id``, prompted with ``prompt``."""
        raise NotImplementedError

    def _prompt_known(self, entry: E, prompt: ObjectPrompt) -> None:
        """Give a known object a new prompt (called under the lock)."""
        raise NotImplementedError

    # -- prompts -------------------------------------------------------------------------

    def add(
        self,
        point_coords: np.ndarray | Sequence[Sequence[float]] | None = None,
        point_labels: np.ndarray | Sequence[float] | None = None,
        box: np.ndarray | Sequence[float] | None = None,
        *,
        object_id: int | None = None,
    ) -> int:
        """Prompt an object; it is decoded on the next ``step``.

        With ``object_id`` of an existing object, the prompt is for that
        object (the subclass says what that means).

        Args:
            point_coords: ``(N, 2)`` (x, y) points in frame pixels.
            point_labels: ``(N,)`` labels, 1 foreground, 0 background;
                ``None`` with points means all foreground.
            box: XYXY box in frame pixels.
            object_id: Prompt this object, or create it with this id;
                ``None`` gives the next free id.

        Returns:
            The object's id.

        Raises:
            PromptError: malformed points, labels or box (see
                :class:`~samedge.prompts.ObjectPrompt`), or too many objects.
            InputError: ``object_id`` is not a positive int.
        """
        if point_coords is not None and point_labels is None:
            try:
                n = len(np.asarray(point_coords, dtype=np.float64).reshape(-1, 2))
            except (TypeError, ValueError) as e:
                raise PromptError(
                    f"point_coords: got {point_coords!r}, expected (N, 2) (x, y) points ({e})"
                ) from e
            point_labels = np.ones(n, np.float64)
        # ObjectPrompt converts and validates sequences itself (with its own messages).
        prompt = ObjectPrompt(
            point_coords=cast("np.ndarray | None", point_coords),
            point_labels=cast("np.ndarray | None", point_labels),
            box=cast("np.ndarray | None", box),
        )
        return self.add_prompt(prompt, object_id=object_id)

    def add_prompt(self, prompt: ObjectPrompt, *, object_id: int | None = None) -> int:
        """:meth:`add` for a ready :class:`~samedge.ObjectPrompt` (its ``mask_input``,
        if any, is fed to the decoder with the points).

        Raises:
            PromptError: ``prompt`` is not an ObjectPrompt, or too many objects.
            InputError: ``object_id`` is not a positive int.
        """
        if not isinstance(prompt, ObjectPrompt):
            raise PromptError(
                f"prompt: got {type(prompt).__name__}, expected a samedge.ObjectPrompt "
                "(points and/or a box)"
            )
        if object_id is not None and (
            isinstance(object_id, bool)
            or not isinstance(object_id, (int, np.integer))
            or object_id <= 0
        ):
            raise InputError(f"object_id: got {object_id!r}, expected a positive int or None")
        with self._lock:
            if object_id is not None and int(object_id) in self._entries:
                entry = self._entries[int(object_id)]
                self._prompt_known(entry, prompt)
                return entry.object_id
            limit = self._max_objects
            if limit is not None and len(self._entries) >= limit:
                raise self._limit_error(len(self._entries), limit)
            oid = int(object_id) if object_id is not None else self._next_id
            self._next_id = max(self._next_id, oid + 1)
            self._entries[oid] = self._new_entry(oid, prompt)
            return oid

    def _limit_error(self, count: int, limit: int) -> PromptError:
        """The error for a new object past ``limit``."""
        return PromptError(
            f"tracker: already {count} objects, the limit is {limit}; remove one first"
        )

    def remove(self, object_id: int) -> None:
        """Stop tracking an object (and drop whatever the tracker kept of it).

        Raises:
            InputError: no object has this id.
        """
        with self._lock:
            if object_id not in self._entries:
                known = ", ".join(map(str, sorted(self._entries))) or "none"
                raise InputError(f"object_id: got {object_id!r}, no such object (ids: {known})")
            del self._entries[object_id]

    def clear(self) -> None:
        """Remove every object (ids keep counting up)."""
        with self._lock:
            self._entries.clear()

    @property
    def objects(self) -> dict[int, TrackedObject]:
        """Snapshot of every object, by id."""
        with self._lock:
            return {oid: e.snapshot() for oid, e in sorted(self._entries.items())}

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)

    def __contains__(self, object_id: object) -> bool:
        with self._lock:
            return object_id in self._entries
