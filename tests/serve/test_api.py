"""The prompt API over HTTP: what works, and a 4xx with a message for everything else."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest

from samedge.masks import rle_to_mask
from samedge.serve import ApiError, PromptSpec, StreamService, create_app, parse_prompt
from tests.serve.conftest import BASE_URL, make_config, running_client

W, H = 160, 120  # conftest.SMALL


def wait_decoded(client, oid: int, timeout: float = 20.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        obj = client.get(f"/api/objects/{oid}", params={"masks": 1}).json()
        if obj["state"] != "pending":
            return obj
        time.sleep(0.05)
    raise AssertionError(f"object {oid} was never decoded: {obj}")


@pytest.fixture(autouse=True)
def _no_objects(client):
    client.delete("/api/objects")
    yield
    client.delete("/api/objects")


def test_add_get_update_patch_remove(client):
    r = client.post("/api/objects", json={"points": [[80, 60]], "labels": [1]})
    assert r.status_code == 201, r.text
    oid = r.json()["id"]
    assert r.json()["prompt"] == {"points": [[80.0, 60.0]], "labels": [1], "box": None}
    obj = wait_decoded(client, oid)
    assert obj["state"] == "tracking"
    mask = rle_to_mask(obj["rle"])
    assert mask.shape == (H, W)
    assert int(mask.sum()) == obj["area"] > 0
    ys, xs = np.nonzero(mask)
    assert obj["box"] == [float(xs.min()), float(ys.min()), float(xs.max()), float(ys.max())]

    listed = client.get("/api/objects").json()
    assert [o["id"] for o in listed["objects"]] == [oid]
    assert "rle" not in listed["objects"][0]
    assert listed["frame_id"] is not None

    r = client.patch(f"/api/objects/{oid}", json={"points": [[10, 10]], "labels": [0]})
    assert r.status_code == 200, r.text
    assert r.json()["prompt"]["points"] == [[80.0, 60.0], [10.0, 10.0]]
    assert r.json()["prompt"]["labels"] == [1, 0]

    r = client.put(f"/api/objects/{oid}", json={"box": [20, 20, 90, 100]})
    assert r.status_code == 200, r.text
    assert r.json()["prompt"] == {"points": [], "labels": [], "box": [20.0, 20.0, 90.0, 100.0]}

    r = client.patch(f"/api/objects/{oid}", json={"points": [[30, 40]]})
    assert r.json()["prompt"] == {
        "points": [[30.0, 40.0]],
        "labels": [1],
        "box": [20.0, 20.0, 90.0, 100.0],
    }

    assert client.delete(f"/api/objects/{oid}").status_code == 204
    assert client.get("/api/objects").json()["objects"] == []
    r = client.delete(f"/api/objects/{oid}")
    assert r.status_code == 404
    assert f"object {oid}: no such object" in r.json()["error"]


def test_box_prompt_and_clear(client):
    a = client.post("/api/objects", json={"box": [0, 0, W, H]}).json()["id"]
    b = client.post("/api/objects", json={"points": [[5, 5], [6, 6]], "box": [0, 0, 50, 50]})
    assert b.status_code == 201
    assert b.json()["id"] == a + 1
    assert client.delete("/api/objects").json() == {"removed": 2}
    assert client.get("/api/objects").json()["objects"] == []


def test_info_health_and_page(client):
    info = client.get("/api/info").json()
    assert info["backend"] == "onnxruntime"
    assert info["precision"] == "fp32"
    assert info["frame"] == {"height": H, "width": W}
    assert info["synthetic"]["width"] == W
    assert info["limits"]["max_body_bytes"] == 65536
    health = client.get("/health")
    assert health.status_code == 200
    assert health.json()["status"] == "ok"
    page = client.get("/")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert "<canvas" in page.text
    assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
    assert page.headers["referrer-policy"] == "no-referrer"


BAD_BODIES = [
    # (body, status, words in the message)
    ({"points": [[W + 1, 10]]}, 422, "outside the 160x120"),
    ({"points": [[-1, 10]]}, 422, "outside"),
    ({"points": [[10, H + 0.5]]}, 422, "outside"),
    ({"box": [0, 0, W + 5, 10]}, 422, "inside the 160x120"),
    ({"box": [50, 10, 20, 40]}, 422, "x0 <= x1"),
    ({"box": [1, 2, 3]}, 422, "expected [x0, y0, x1, y1]"),
    ({"box": "1,2,3,4"}, 422, "box"),
    ({"points": [[10, 10]], "labels": [1, 0]}, 422, "2 labels for 1 points"),
    ({"points": [[10, 10]], "labels": [2]}, 422, "labels[0]: got 2"),
    ({"points": [[10, 10]], "labels": [True]}, 422, "labels[0]: got true"),
    ({"points": [[10, "a"]]}, 422, "points[0][1]"),
    ({"points": [[True, 1]]}, 422, "points[0][0]: got true"),
    ({"points": [[1, 2, 3]]}, 422, "expected [x, y]"),
    ({"points": [10, 10]}, 422, "points[0]"),
    ({"points": "10,10"}, 422, "expected [[x, y], ...]"),
    ({"points": [[1, 1]] * 33}, 422, "the limit is 32"),
    ({}, 422, "no points and no box"),
    ({"points": []}, 422, "no points and no box"),
    ({"point": [[1, 1]]}, 422, 'unknown field "point"'),
    ([1, 2], 422, "expected a JSON object"),
    ("hello", 422, "expected a JSON object"),
]


@pytest.mark.parametrize(("body", "status", "words"), BAD_BODIES)
def test_bad_prompt_bodies(client, body, status, words):
    r = client.post("/api/objects", json=body)
    assert r.status_code == status, r.text
    assert words in r.json()["error"]
    assert client.get("/api/objects").json()["objects"] == []  # nothing was added


@pytest.mark.parametrize("method", ["put", "patch"])
def test_bad_update_bodies(client, method):
    oid = client.post("/api/objects", json={"points": [[10, 10]]}).json()["id"]
    r = getattr(client, method)(f"/api/objects/{oid}", json={"points": [[W + 10, 10]]})
    assert r.status_code == 422
    assert "outside" in r.json()["error"]
    r = getattr(client, method)(f"/api/objects/{oid + 100}", json={"points": [[10, 10]]})
    assert r.status_code == 404
    assert f"ids: {oid}" in r.json()["error"]
    if method == "patch":
        # Refining past the point limit is refused, and the prompt stays as it was.
        r = client.patch(f"/api/objects/{oid}", json={"points": [[1, 1]] * 32})
        assert r.status_code == 422
        assert "the limit is 32" in r.json()["error"]
        assert client.get(f"/api/objects/{oid}").json()["prompt"]["points"] == [[10.0, 10.0]]


RAW_BAD = [
    # (content, content-type, status, words)
    (b"{not json", "application/json", 400, "not valid JSON"),
    (b"null", "application/json", 422, "got NoneType, expected a JSON object"),
    (b"", "application/json", 400, "not valid JSON"),
    (b'{"points": [[NaN, 1]]}', "application/json", 422, "NaN"),
    (b'{"points": [[Infinity, 1]]}', "application/json", 422, "Infinity"),
    (b'{"points": [[1e400, 1]]}', "application/json", 422, "finite"),
    (b"\xff\xfe{}", "application/json", 400, "body"),
    (b"[" * 20000 + b"]" * 20000, "application/json", 400, "nested too deeply"),
    (b'{"points": [[1, 1]]}', "text/plain", 415, "expected application/json"),
    (b'{"points": [[1, 1]]}', "application/x-www-form-urlencoded", 415, "application/json"),
    (b'{"points": [[1, 1]]}', None, 415, "got no Content-Type"),
]


@pytest.mark.parametrize(("content", "ctype", "status", "words"), RAW_BAD)
def test_malformed_bodies(client, content, ctype, status, words):
    headers = {"Content-Type": ctype} if ctype else {}
    r = client.post("/api/objects", content=content, headers=headers)
    assert r.status_code == status, r.text
    assert words in r.json()["error"]


def test_body_size_is_bounded(client):
    big = json.dumps({"points": [[1, 1]], "pad": "x" * 70_000}).encode()
    r = client.post("/api/objects", content=big, headers={"Content-Type": "application/json"})
    assert r.status_code == 413
    assert "the limit is 65536 bytes" in r.json()["error"]

    def chunks():  # no Content-Length: the server counts while reading
        for _ in range(20):
            yield b" " * 4096

    r = client.post("/api/objects", content=chunks(), headers={"Content-Type": "application/json"})
    assert r.status_code == 413
    assert "more than 65536 bytes" in r.json()["error"]


@pytest.mark.parametrize(
    ("method", "path", "status", "words"),
    [
        ("get", "/api/objects/abc", 422, 'object id: got "abc"'),
        ("get", "/api/objects/0", 422, "positive integer"),
        ("get", "/api/objects/-3", 422, "positive integer"),
        ("delete", "/api/objects/99999999999999", 422, "positive integer"),
        ("get", "/api/objects/12345", 404, "no such object"),
        ("get", "/api/objects?masks=maybe", 422, '?masks=: got "maybe"'),
        ("put", "/api/objects", 405, "method PUT not allowed"),
        ("post", "/api/objects/1", 405, "method POST not allowed"),
        ("post", "/health", 405, "not allowed"),
        ("get", "/nope", 404, "Not Found"),
    ],
)
def test_bad_paths_and_methods(client, method, path, status, words):
    r = client.request(method.upper(), path)
    assert r.status_code == status, r.text
    assert words in r.json()["error"]


def test_object_limit_is_409(tiny_model):
    config = make_config(tiny_model, max_objects=2)
    for client in running_client(config):
        for _ in range(2):
            assert client.post("/api/objects", json={"points": [[5, 5]]}).status_code == 201
        r = client.post("/api/objects", json={"points": [[5, 5]]})
        assert r.status_code == 409
        assert "the limit is 2" in r.json()["error"]


def test_prompts_before_the_pipeline_runs_are_503(tiny_model):
    from starlette.testclient import TestClient

    service = StreamService(make_config(tiny_model))
    app = create_app(service, manage=False)  # never started
    with TestClient(app, base_url=BASE_URL) as client:
        r = client.post("/api/objects", json={"points": [[5, 5]]})
        assert r.status_code == 503
        assert "not running" in r.json()["error"]
        r = client.get("/health")
        assert r.status_code == 503
        assert r.json()["status"] == "created"


def test_parse_prompt_unit():
    spec = parse_prompt({"points": [[1, 2.5]], "labels": [0], "box": [0, 0, 3, 4]})
    assert spec == PromptSpec(((1.0, 2.5),), (0,), (0.0, 0.0, 3.0, 4.0))
    with pytest.raises(ApiError) as e:
        parse_prompt({"points": [[1, 1]] * 3}, max_points=2)
    assert e.value.status == 422
    assert parse_prompt({"box": [1, 2, 1, 2]}).box == (1.0, 2.0, 1.0, 2.0)  # a degenerate box
