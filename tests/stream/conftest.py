"""Fixtures for the stream tests: a predictor on the reduced random-weight SAM."""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path

import pytest

from samedge.stream.tracking import TrackerConfig

# Random weights give arbitrary scores and areas; with these thresholds the
# tracker keeps every non-empty mask, so the tests exercise the whole loop.
PERMISSIVE = TrackerConfig(min_score=-1.0, max_area_change=math.inf, min_area=0)

TINY_CARD = (
    Path(__file__).resolve().parents[2] / "samedge" / "assets" / "samedge_tiny" / ("samedge.json")
)


@pytest.fixture(scope="session")
def reduced_model(reduced_sam_dir) -> Path:
    """Directory of the reduced SAM export (random weights)."""
    return reduced_sam_dir.dir


@pytest.fixture
def predictor(reduced_model: Path) -> Iterator[object]:
    from samedge.predictor import Predictor

    with Predictor(reduced_model, backend="onnxruntime") as p:
        yield p
