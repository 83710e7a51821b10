"""Engine cache: keys, atomic writes, corruption detection."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import pytest

from samedge import _io
from samedge.errors import EngineCacheError, InputError
from samedge.runtimes import CacheKey, EngineCache, default_cache_root
from samedge.runtimes.cache import OV_ENTRY_NAME, clear_cache, list_cache
from tests.runtimes._graphs import matmul_add, qdq

BLOB = b"\x00engine bytes\xff" * 1000


def _key(**overrides: str | None) -> CacheKey:
    fields: dict[str, str | None] = {
        "onnx_sha256": "ab" * 32,
        "precision": "fp16",
        "backend": "tensorrt",
        "backend_version": "10.13.0.35",
        "device": "NVIDIA Jetson AGX Orin",
        "compute_capability": "8.7",
        "profile": "B=1..16,N=1..10",
    }
    fields.update(overrides)
    return CacheKey(**fields)  # type: ignore[arg-type]


def test_default_root_precedence(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("SAMEDGE_CACHE_DIR", str(tmp_path / "explicit"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache_root() == tmp_path / "explicit"
    assert EngineCache().root == tmp_path / "explicit"
    monkeypatch.delenv("SAMEDGE_CACHE_DIR")
    assert default_cache_root() == tmp_path / "xdg" / "samedge"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_cache_root() == tmp_path / "home" / ".cache" / "samedge"
    assert EngineCache(tmp_path / "given").root == tmp_path / "given"


def test_round_trip_and_sidecar(tmp_path: Path) -> None:
    cache = EngineCache(tmp_path)
    key = _key()
    assert cache.get(key) is None
    path = cache.put(key, BLOB)
    assert path == cache.path(key)
    assert path.parent == tmp_path / "engines" / "tensorrt"
    assert cache.get(key) == BLOB
    meta = json.loads(path.with_suffix(".json").read_text())
    assert meta["key"] == key.to_dict()
    assert meta["size"] == len(BLOB)
    assert len(meta["sha256"]) == 64
    assert not [p for p in path.parent.iterdir() if p.suffix == ".tmp"]


@pytest.mark.parametrize(
    "change",
    [
        {"precision": "int8"},
        {"device": "NVIDIA GeForce RTX 4090"},
        {"compute_capability": "8.9"},
        {"compute_capability": None},
        {"backend_version": "8.6.2"},
        {"profile": "B=1..8,N=1..10"},
        {"onnx_sha256": "cd" * 32},
        {"backend": "openvino"},
    ],
)
def test_every_field_changes_the_key(tmp_path: Path, change: dict[str, str | None]) -> None:
    cache = EngineCache(tmp_path)
    cache.put(_key(), BLOB)
    other = _key(**change)
    assert other.digest != _key().digest
    assert cache.path(other) != cache.path(_key())
    assert cache.get(other) is None
    assert cache.get(_key()) == BLOB


def test_key_hashes_the_graph_content(tmp_path: Path) -> None:
    a = matmul_add(tmp_path / "a.onnx")
    b = tmp_path / "copy-with-another-name.onnx"
    b.write_bytes(a.read_bytes())
    fields = {
        "precision": "fp32",
        "backend": "tensorrt",
        "backend_version": "10.13",
        "device": "GPU",
    }
    key_a = EngineCache.key(a, **fields)
    assert key_a == EngineCache.key(b, **fields)
    assert key_a != EngineCache.key(qdq(tmp_path / "q.onnx"), **fields)
    with pytest.raises(InputError, match="cannot read"):
        EngineCache.key(tmp_path / "absent.onnx", **fields)


def test_key_fields_are_validated() -> None:
    with pytest.raises(InputError, match="precision"):
        _key(precision="")
    with pytest.raises(InputError, match="letters, digits"):
        _key(backend="../escape")


def test_crash_while_writing_the_blob_leaves_nothing_loadable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = EngineCache(tmp_path)

    def crash(src: str, dst: str) -> None:  # the process dies before the rename
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(_io.os, "replace", crash)
    with pytest.raises(EngineCacheError, match="cannot write"):
        cache.put(_key(), BLOB)
    monkeypatch.undo()
    assert cache.get(_key()) is None
    assert not cache.path(_key()).exists()
    assert not list((tmp_path / "engines" / "tensorrt").iterdir())  # no temp file left


def test_killed_between_blob_and_sidecar_is_a_miss(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    cache = EngineCache(tmp_path)
    blob = cache.path(_key())
    blob.parent.mkdir(parents=True)
    blob.write_bytes(BLOB)  # blob renamed into place, sidecar never written
    (blob.parent / f".{blob.name}.abc123.tmp").write_bytes(BLOB[:10])  # a killed write
    with caplog.at_level(logging.WARNING, logger="samedge.runtimes.cache"):
        assert cache.get(_key()) is None
    assert "interrupted" in caplog.text
    assert not blob.exists()
    cache.put(_key(), BLOB)
    assert cache.get(_key()) == BLOB


def test_corrupt_blob_is_detected_deleted_and_rebuilt(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    cache = EngineCache(tmp_path)
    path = cache.put(_key(), BLOB)
    damaged = bytearray(path.read_bytes())
    damaged[100] ^= 0xFF
    path.write_bytes(bytes(damaged))
    with caplog.at_level(logging.WARNING, logger="samedge.runtimes.cache"):
        assert cache.get(_key()) is None
    assert "checksum" in caplog.text
    assert not path.exists()
    assert not path.with_suffix(".json").exists()
    rebuilt = BLOB + b"rebuilt"
    cache.put(_key(), rebuilt)
    assert cache.get(_key()) == rebuilt


def test_truncated_blob_is_a_miss(tmp_path: Path) -> None:
    cache = EngineCache(tmp_path)
    path = cache.put(_key(), BLOB)
    with open(path, "r+b") as f:
        f.truncate(len(BLOB) // 2)
    assert cache.get(_key()) is None


@pytest.mark.parametrize(
    "sidecar",
    ["{not json", '{"format": 999}', "[]", None],
    ids=["unreadable", "other-format", "not-a-dict", "foreign-key"],
)
def test_bad_sidecar_is_a_miss(tmp_path: Path, sidecar: str | None) -> None:
    cache = EngineCache(tmp_path)
    path = cache.put(_key(), BLOB)
    meta_path = path.with_suffix(".json")
    if sidecar is None:
        meta = json.loads(meta_path.read_text())
        meta["key"]["precision"] = "int8"  # an entry that was made from something else
        sidecar = json.dumps(meta)
    meta_path.write_text(sidecar)
    assert cache.get(_key()) is None
    assert not path.exists()


def test_orphan_sidecar_is_removed(tmp_path: Path) -> None:
    cache = EngineCache(tmp_path)
    path = cache.put(_key(), BLOB)
    path.unlink()
    assert cache.get(_key()) is None
    assert not path.with_suffix(".json").exists()


def test_invalidate(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    cache = EngineCache(tmp_path)
    cache.put(_key(), BLOB)
    with caplog.at_level(logging.WARNING, logger="samedge.runtimes.cache"):
        cache.invalidate(_key(), "TensorRT could not deserialize it")
    assert "could not deserialize" in caplog.text
    assert cache.get(_key()) is None


def test_unwritable_root_is_an_engine_cache_error(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    cache = EngineCache(blocker)
    with pytest.raises(EngineCacheError, match="SAMEDGE_CACHE_DIR"):
        cache.put(_key(), BLOB)
    with pytest.raises(EngineCacheError, match="SAMEDGE_CACHE_DIR"):
        cache.subdir("openvino")
    with pytest.raises(InputError, match="expected bytes"):
        EngineCache(tmp_path).put(_key(), "text")  # type: ignore[arg-type]


def test_subdir_is_created(tmp_path: Path) -> None:
    path = EngineCache(tmp_path / "root").subdir("openvino")
    assert path == tmp_path / "root" / "openvino"
    assert path.is_dir()
    assert os.access(path, os.W_OK)


def test_list_and_clear_cache(tmp_path: Path) -> None:
    root = tmp_path / "cache"
    cache = EngineCache(root)
    enc = tmp_path / "enc.onnx"
    matmul_add(enc)
    key = cache.key(enc, precision="fp16", backend="tensorrt", backend_version="10", device="Orin")
    cache.put(key, b"engine" * 100, model="mobile_sam")
    ov_entry = root / "openvino" / "abc123"
    ov_entry.mkdir(parents=True)
    (ov_entry / "blob1.blob").write_bytes(b"x" * 50)
    (ov_entry / OV_ENTRY_NAME).write_text(
        json.dumps(
            {
                "model": "sam_vit_b",
                "graph": "encoder.onnx",
                "key": {"device": "CPU", "inference_precision": "default", "openvino": "2026"},
            }
        )
    )
    legacy = root / "openvino" / "123456789.blob"  # an older samedge's shared directory
    legacy.write_bytes(b"old")
    timing = cache.subdir("tensorrt") / "timing-10.3-sm87-Orin.cache"  # TensorRT's builder
    timing.write_bytes(b"t" * 10)
    entries = list_cache(root)
    by_model = {(e.backend, e.model): e for e in entries}
    assert set(by_model) == {
        ("tensorrt", "mobile_sam"),
        ("tensorrt", "?"),
        ("openvino", "sam_vit_b"),
        ("openvino", "?"),
    }
    assert "timing cache" in by_model["tensorrt", "?"].detail
    trt = by_model["tensorrt", "mobile_sam"]
    assert trt.size_bytes >= 600
    assert trt.detail.startswith("fp16, Orin")
    assert 0 <= trt.age_s < 600
    assert by_model["openvino", "sam_vit_b"].size_bytes >= 50
    assert by_model["openvino", "sam_vit_b"].to_dict()["path"] == str(ov_entry)

    removed = clear_cache(root, model="sam_vit_b")
    assert [e.path for e in removed] == [ov_entry]
    assert not ov_entry.exists()
    assert cache.get(key) == b"engine" * 100
    removed = clear_cache(root)
    assert len(removed) == 3
    assert list_cache(root) == []
    assert not legacy.exists()
    assert not timing.exists()
    assert list_cache(tmp_path / "nowhere") == []


def test_content_hash_is_remembered_until_the_file_changes(tmp_path: Path) -> None:
    from samedge.runtimes._graph import onnx_content_hash

    cache = EngineCache(tmp_path / "cache")
    graph = matmul_add(tmp_path / "m.onnx")
    first = cache.content_hash(graph)
    assert first == onnx_content_hash(graph)
    (memo,) = (tmp_path / "cache" / "hashes").iterdir()
    memo.write_text("f" * 64)  # what a later process reads instead of hashing again
    assert cache.content_hash(graph) == "f" * 64
    matmul_add(graph, metadata={"samedge.model": '"changed"'})  # rewritten: new identity
    assert cache.content_hash(graph) == onnx_content_hash(graph) != first
    clear_cache(tmp_path / "cache")
    assert not (tmp_path / "cache" / "hashes").exists()
