"""``samedge cache list|clear`` on a real cache with an OpenVINO entry and a TensorRT one."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from samedge.cli import main
from samedge.runtimes import EngineCache
from tests.runtimes._graphs import matmul_add


@pytest.fixture
def cache_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "cache"
    monkeypatch.setenv("SAMEDGE_CACHE_DIR", str(root))
    graph = matmul_add(tmp_path / "decoder.onnx", metadata={"samedge.model": '"mobile_sam"'})
    cache = EngineCache(root)
    key = cache.key(graph, precision="fp16", backend="tensorrt", backend_version="10", device="X")
    cache.put(key, b"e" * 2048, model="sam_vit_b")
    pytest.importorskip("openvino")
    from samedge.runtimes import OpenVinoBackend

    OpenVinoBackend(graph).load()
    return root


def test_cache_list_and_clear(cache_root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["cache", "list"]) == 0
    out = capsys.readouterr().out
    assert "2 entries cached" in out
    assert "tensorrt" in out
    assert "sam_vit_b" in out
    assert "openvino" in out
    assert "mobile_sam" in out
    assert main(["cache", "clear", "--model", "mobile_sam", "--json"]) == 0
    removed = json.loads(capsys.readouterr().out)["removed"]
    assert [e["model"] for e in removed] == ["mobile_sam"]
    assert main(["cache", "list", "--json"]) == 0
    left = json.loads(capsys.readouterr().out)["cached"]
    assert [e["backend"] for e in left] == ["tensorrt"]
    assert main(["cache", "clear"]) == 0
    assert "1 entries removed" in capsys.readouterr().out
    assert main(["cache", "list"]) == 0
    assert "0 entries cached" in capsys.readouterr().out
