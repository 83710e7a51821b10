"""Fixtures for the stream tests: a predictor on the shipped samedge_tiny (no torch)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest


@pytest.fixture
def predictor(tiny_model: Path) -> Iterator[object]:
    from samedge.predictor import Predictor

    with Predictor(tiny_model, backend="onnxruntime") as p:
        yield p
