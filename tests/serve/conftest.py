"""Fixtures for the server tests: the shipped samedge_tiny behind the real app (no torch)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("starlette", reason="the serve extra is not installed")
pytest.importorskip("httpx", reason="httpx (starlette's TestClient) is not installed")

from starlette.testclient import TestClient

from samedge.serve import ServeConfig, StreamService, create_app
from tests._shared import PERMISSIVE

BASE_URL = "http://127.0.0.1:8000"
# A small, slow synthetic scene: the API tests need frames, not speed, and the
# machine is shared.
SMALL = {"synthetic_size": (120, 160), "synthetic_fps": 10.0}


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
def client(tiny_model: Path) -> Iterator[TestClient]:
    """The app on the small synthetic scene, running, with no token."""
    yield from running_client(make_config(tiny_model))
