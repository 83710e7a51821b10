"""The backend interface every runtime implements.

A backend wraps one ONNX graph on one inference engine. Construction is cheap
and does no I/O beyond checking the path; the engine is built or compiled on
the first :meth:`Backend.load` (or the first :meth:`Backend.infer`), so a
Predictor can be created, inspected and configured before paying for a
TensorRT build. :meth:`Backend.infer` validates the feeds against the input
specs (names, dtypes, ranks, fixed sizes, and dynamic sizes that share a
symbolic name) and only then calls the backend's :meth:`Backend._infer`.

Errors from the wrapped library are turned into :class:`BackendError` here,
once for every backend: a graph that fails to load names the path and carries
the library's own message on one line.
"""

from __future__ import annotations

import abc
import contextlib
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, ClassVar

import numpy as np

from samedge.errors import BackendError, InputError, SamedgeError

__all__ = ["Backend", "Dim", "TensorSpec", "one_line"]

# A dimension is a fixed size, or a symbolic name for a dynamic one ("B", "N").
Dim = int | str


@dataclass(frozen=True)
class TensorSpec:
    """Name, dtype and shape of one graph input or output.

    Attributes:
        name: Tensor name in the graph.
        dtype: numpy dtype the caller passes or receives.
        shape: Fixed sizes as ints, dynamic ones as symbolic names.
    """

    name: str
    dtype: np.dtype
    shape: tuple[Dim, ...]

    def check(self, value: np.ndarray) -> None:
        """Raise :class:`InputError` when ``value`` does not fit this spec."""
        if not isinstance(value, np.ndarray):
            raise InputError(
                f"{self.name}: got {type(value).__name__}, expected a numpy array "
                f"of dtype {self.dtype} and shape {self.shape_str()}"
            )
        if value.dtype != self.dtype:
            raise InputError(
                f"{self.name}: got dtype {value.dtype}, expected {self.dtype}; "
                f"convert with .astype(np.{self.dtype})"
            )
        if value.ndim != len(self.shape) or any(
            isinstance(d, int) and d != s for d, s in zip(self.shape, value.shape, strict=True)
        ):
            raise InputError(
                f"{self.name}: got shape {tuple(value.shape)}, expected {self.shape_str()}"
            )

    def shape_str(self) -> str:
        return "(" + ", ".join(str(d) for d in self.shape) + ")"


def one_line(error: BaseException | str, limit: int = 500) -> str:
    """A library's error message on one line, without its source-location noise.

    OpenVINO prefixes every level with ``Exception from src/...cpp:NN:`` and ONNX
    Runtime spreads index lists over lines; users need the message itself.
    """
    text = str(error)
    text = re.sub(r"Exception from \S+:\d+:\s*", "", text)
    text = " ".join(text.split())
    if not text and isinstance(error, BaseException):
        text = type(error).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


class Backend(abc.ABC):
    """One ONNX graph on one inference engine.

    Subclasses set :attr:`name` (and :attr:`config_class` when they take a
    config), implement :meth:`_load`, :meth:`_infer` and :meth:`_close`, and fill
    ``self._inputs`` / ``self._outputs`` in ``_load``. Their constructor is
    ``__init__(model_path, config=None, *, device=None)`` where ``device`` is
    samedge's backend-neutral device string (``"cpu"``, ``"gpu:0"``, ``"cuda:1"``,
    ``"npu"``; see :func:`samedge.runtimes.select_backend`); it must stay cheap.

    One instance serves one thread at a time (OpenVINO's infer request and
    TensorRT's execution context hold per-call state); open one per thread.

    Example:
        >>> from samedge.runtimes import open_backend          # doctest: +SKIP
        >>> with open_backend("model/decoder.onnx") as b:       # doctest: +SKIP
        ...     out = b.infer(feeds)
    """

    name: ClassVar[str]
    #: The frozen config dataclass the constructor accepts (``None``: takes none).
    config_class: ClassVar[type[Any] | None] = None

    def __init__(self, model_path: str | os.PathLike[str]) -> None:
        path = Path(model_path)
        if not path.is_file():
            raise InputError(f"model {path}: no such file; expected an .onnx graph")
        self.model_path = path
        self._inputs: tuple[TensorSpec, ...] = ()
        self._outputs: tuple[TensorSpec, ...] = ()
        self._loaded = False

    # -- public -----------------------------------------------------------------

    def load(self) -> None:
        """Build or compile the engine (cached on disk where the backend supports it).

        Raises:
            BackendError: the library could not load the graph; the message names
                the path and carries the library's own message.
        """
        if self._loaded:
            return
        try:
            self._load()
        except SamedgeError:
            self._discard()
            raise
        except Exception as e:  # every SDK raises its own untyped errors
            self._discard()
            raise BackendError(
                f"{self.name} could not load {self.model_path}: {one_line(e)}"
            ) from e
        self._loaded = True

    @property
    def is_loaded(self) -> bool:
        """Whether the engine is built/compiled and held in memory."""
        return self._loaded

    @property
    def inputs(self) -> tuple[TensorSpec, ...]:
        self.load()
        return self._inputs

    @property
    def outputs(self) -> tuple[TensorSpec, ...]:
        self.load()
        return self._outputs

    @property
    def precision(self) -> str:
        """Precision the engine actually computes in (``"fp32"``, ``"bf16"``, ...)."""
        return "fp32"

    @property
    def device(self) -> str:
        """Device the engine runs on, in the backend's own words."""
        return "CPU"

    @property
    def cache_path(self) -> Path | None:
        """Where this graph's compiled engine is cached on disk; ``None`` when it is not."""
        return None

    def drop_cache(self) -> Path | None:
        """Delete this graph's cached engine (e.g. one that produced NaN); what was removed.

        The engine in memory stays until :meth:`close`; the next load rebuilds.
        """
        return None

    def infer(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run the graph on ``feeds`` (name -> array) and return name -> array.

        Raises:
            InputError: a feed is missing, unexpected, or of the wrong dtype/shape,
                or two feeds disagree on a dynamic size they share (e.g. ``B``).
            BackendError: the library failed while running the graph.
        """
        if not isinstance(feeds, Mapping):
            raise InputError(
                f"{self.model_path.name}: feeds: got {type(feeds).__name__}, expected a dict "
                "of input name -> numpy array"
            )
        self.load()
        expected = {spec.name for spec in self._inputs}
        missing = expected - feeds.keys()
        extra = feeds.keys() - expected
        if missing or extra:
            parts = []
            if missing:
                parts.append(f"missing {sorted(missing)}")
            if extra:
                parts.append(f"unexpected {sorted(extra)}")
            raise InputError(
                f"{self.model_path.name}: inputs {'; '.join(parts)}; "
                f"the graph takes {sorted(expected)}"
            )
        bound: dict[str, tuple[int, str]] = {}
        for spec in self._inputs:
            value = feeds[spec.name]
            spec.check(value)
            for dim, size in zip(spec.shape, value.shape, strict=True):
                if isinstance(dim, int):
                    continue
                first = bound.setdefault(dim, (size, spec.name))
                if first[0] != size:
                    raise InputError(
                        f"{spec.name}: dimension {dim} is {size}, but {first[1]} has "
                        f"{dim} = {first[0]}; inputs sharing {dim} must agree"
                    )
        try:
            return self._infer(feeds)
        except SamedgeError:
            raise
        except Exception as e:
            raise BackendError(
                f"{self.name} failed to run {self.model_path.name}: {one_line(e)}"
            ) from e

    def close(self) -> None:
        """Release the engine; the backend can be loaded again afterwards."""
        if self._loaded:
            self._loaded = False
            self._close()

    def _discard(self) -> None:
        # A failed _load may have created part of the engine; release what it made.
        # The half-built state may not close cleanly, and then the load error wins.
        with contextlib.suppress(Exception):
            self._close()

    def __enter__(self) -> Backend:
        self.load()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        state = f"{self.device}, {self.precision}" if self._loaded else "not loaded"
        return f"{type(self).__name__}({str(self.model_path)!r}, {state})"

    # -- for subclasses -----------------------------------------------------------

    @abc.abstractmethod
    def _load(self) -> None:
        """Create the session/engine and set ``self._inputs`` and ``self._outputs``."""

    @abc.abstractmethod
    def _infer(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run validated feeds; return every output as a numpy array."""

    @abc.abstractmethod
    def _close(self) -> None:
        """Release what ``_load`` created; must also undo a ``_load`` that failed halfway."""
