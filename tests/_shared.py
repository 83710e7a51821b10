"""Constants shared by the test packages (fixtures live in tests/conftest.py)."""

from __future__ import annotations

import math
import os
from pathlib import Path

from samedge.stream.tracking import TrackerConfig

# Random or small models give arbitrary scores and areas; with these thresholds the
# tracker keeps every non-empty mask, so the tests exercise the whole loop.
PERMISSIVE = TrackerConfig(min_score=-1.0, max_area_change=math.inf, min_area=0)

# The shipped model (no torch needed); SAMEDGE_TINY_DIR points the trained-model
# checks at a candidate export before it ships (e.g. one made from a checkpoint).
TINY_DIR = Path(
    os.environ.get("SAMEDGE_TINY_DIR")
    or Path(__file__).resolve().parents[1] / "samedge" / "assets" / "samedge_tiny"
)
TINY_CARD = TINY_DIR / "samedge.json"
