"""Fixtures for the server tests: the reduced random-weight SAM behind the real app."""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("starlette", reason="the serve extra is not installed")
pytest.importorskip("httpx", reason="httpx (starlette's TestClient) is not installed")

from starlette.testclient import TestClient

from samedge.serve import ServeConfig, StreamService, create_app
from samedge.stream.tracking import TrackerConfig

# Random weights give arbitrary scores and areas; with these thresholds the
# tracker keeps every non-empty mask, so objects stay "tracking".
PERMISSIVE = TrackerConfig(min_score=-1.0, max_area_change=math.inf, min_area=0)
BASE_URL = "http://127.0.0.1:8000"
# The shipped model; SAMEDGE_TINY_DIR points the trained-model checks at a candidate
# export before it ships (e.g. one made from a training checkpoint).
TINY_DIR = Path(
    os.environ.get("SAMEDGE_TINY_DIR")
    or Path(__file__).resolve().parents[2] / "samedge" / "assets" / "samedge_tiny"
)
# A small, slow synthetic scene: the API tests need frames, not speed, and the
# machine is shared.
SMALL = {"synthetic_size": (120, 160), "synthetic_fps": 10.0}


@pytest.fixture(scope="session")
def reduced_model(reduced_sam_dir) -> Path:
    """Directory of the reduced SAM export (random weights)."""
    return reduced_sam_dir.dir


def make_config(model: Path, **overrides: object) -> ServeConfig:
    values: dict[str, object] = {
        "model": model,
        "backend": "onnxruntime",
        "port": 0,
        "tracker": PERMISSIVE,
        **SMALL,
    }
    values.update(overrides)
    return ServeConfig(**values)  # type: ignore[arg-type]


def running_client(config: ServeConfig) -> Iterator[TestClient]:
    """A TestClient whose lifespan runs the service; waits for the first frame."""
    service = StreamService(config)
    service.open()
    app = create_app(service)
    with TestClient(app, base_url=BASE_URL) as client:
        if not service.wait_for_frame(timeout=60):
            raise RuntimeError(f"no frame within 60 s: {service.health()}")
        yield client


@pytest.fixture(scope="module")
def client(reduced_model: Path) -> Iterator[TestClient]:
    """The app on the small synthetic scene, running, with no token."""
    yield from running_client(make_config(reduced_model))
