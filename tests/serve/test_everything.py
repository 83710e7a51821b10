"""`POST /api/everything`: SAM's automatic mask generation on the latest frame of a live stream."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from samedge.generator import GeneratorConfig, MaskGenerator
from samedge.masks import rle_to_mask
from samedge.serve import ApiError, StreamService
from tests.serve.conftest import make_config

W, H = 160, 120  # conftest.SMALL
LOOSE = {"points_per_side": 8, "pred_iou_thresh": 0.5, "stability_score_thresh": 0.6}


def test_everything_returns_masks_of_the_latest_frame(client):
    r = client.post("/api/everything", json=LOOSE)
    assert r.status_code == 200, r.text
    data = r.json()
    assert (data["width"], data["height"]) == (W, H)
    assert isinstance(data["frame_id"], int)
    assert data["masks"], "samedge_tiny finds objects on the synthetic scene with loose thresholds"
    for m in data["masks"]:
        mask = rle_to_mask(m["rle"])
        assert mask.shape == (H, W)
        assert int(mask.sum()) == m["area"] > 0
        x, y, w, h = m["bbox"]
        assert 0 <= x <= x + w < W
        assert 0 <= y <= y + h < H
        assert m["predicted_iou"] >= 0.5
    # The stream went on meanwhile.
    assert client.get("/health").json()["status"] == "ok"


def test_everything_can_return_its_frame(client):
    import base64

    import cv2

    r = client.post("/api/everything", params={"frame": 1}, json={"points_per_side": 4})
    assert r.status_code == 200, r.text
    jpeg = np.frombuffer(base64.b64decode(r.json()["jpeg"]), np.uint8)
    assert cv2.imdecode(jpeg, cv2.IMREAD_COLOR).shape == (H, W, 3)


def test_everything_without_a_body_uses_the_models_thresholds(client):
    from samedge.models import get_model_spec

    iou, _ = get_model_spec("samedge_tiny").mask_thresholds
    r = client.post("/api/everything")
    assert r.status_code == 200, r.text
    masks = r.json()["masks"]
    # SAM's 0.88 / 0.95 would keep none of samedge_tiny's masks.
    assert masks, "samedge_tiny's own thresholds keep masks of the synthetic scene"
    assert all(m["predicted_iou"] > iou for m in masks)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"pred_iou_thresh": 2}, "pred_iou_thresh"),
        ({"points_per_side": "many"}, "expected a number"),
        ({"poinst_per_side": 8}, "unknown keys 'poinst_per_side'"),
        ([1, 2], "expected a JSON object"),
    ],
)
def test_bad_settings_are_a_one_line_400(client, body, message):
    r = client.post("/api/everything", json=body)
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert message in error
    assert "\n" not in error


def test_one_request_at_a_time(tiny_model, monkeypatch):
    service = StreamService(make_config(tiny_model))
    service.start()
    try:
        assert service.wait_for_frame(timeout=60)
        started, release = threading.Event(), threading.Event()
        generate = MaskGenerator.generate

        def held(self, image, image_format="RGB"):
            started.set()
            release.wait(30)
            return generate(self, image, image_format)

        monkeypatch.setattr(MaskGenerator, "generate", held)
        results: list[dict] = []
        first = threading.Thread(
            target=lambda: results.append(
                service.segment_everything(GeneratorConfig(points_per_side=4))
            )
        )
        first.start()
        assert started.wait(30)
        with pytest.raises(ApiError) as info:
            service.segment_everything()
        assert info.value.status == 409
        release.set()
        first.join(60)
        assert len(results) == 1
        assert np.isfinite(results[0]["seconds"])
    finally:
        release.set()
        service.stop()


def test_everything_on_a_memory_model() -> None:
    """A SAM 2-family session (the built-in memory model) prompts the frame without memory."""
    import contextlib

    from tests.serve.conftest import running_client

    session = contextlib.contextmanager(running_client)
    with session(make_config("samedge_tiny_track")) as client:  # type: ignore[arg-type]
        r = client.post("/api/everything", json=LOOSE)
        assert r.status_code == 200, r.text
        data = r.json()
        assert (data["width"], data["height"]) == (W, H)
        assert data["masks"], "samedge_tiny_track finds objects on the scene (loose thresholds)"
        for m in data["masks"]:
            assert int(rle_to_mask(m["rle"]).sum()) == m["area"] > 0
