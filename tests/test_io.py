"""Atomic writes: nothing half-written lands, nothing the user had is lost."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from samedge._io import atomic_directory, atomic_write_bytes, atomic_write_text, sha256_file
from samedge.errors import InputError, OutputExistsError


def _entries(parent: Path) -> list[str]:
    return sorted(p.name for p in parent.iterdir())


def test_atomic_write_replaces_whole_file(tmp_path: Path) -> None:
    target = tmp_path / "a.json"
    atomic_write_text(target, "old")
    atomic_write_bytes(target, b"new")
    assert target.read_bytes() == b"new"
    assert _entries(tmp_path) == ["a.json"]


def test_atomic_write_failure_keeps_old_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "a.bin"
    target.write_bytes(b"old")

    def boom(fd: int) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "fsync", boom)
    with pytest.raises(OSError, match="disk full"):
        atomic_write_bytes(target, b"new")
    assert target.read_bytes() == b"old"
    assert _entries(tmp_path) == ["a.bin"]


def test_files_and_directories_follow_umask(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        path = atomic_write_text(tmp_path / "f.txt", "x")
        with atomic_directory(tmp_path / "d") as staging:
            (staging / "x").write_text("x")
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert stat.S_IMODE((tmp_path / "d").stat().st_mode) == 0o755


def test_atomic_directory_swaps_in_on_success(tmp_path: Path) -> None:
    out = tmp_path / "model"
    with atomic_directory(out) as staging:
        (staging / "encoder.onnx").write_bytes(b"e")
        assert not out.exists()
    assert (out / "encoder.onnx").read_bytes() == b"e"
    assert _entries(tmp_path) == ["model"]


def test_atomic_directory_refuses_existing_without_force(tmp_path: Path) -> None:
    out = tmp_path / "model"
    out.mkdir()
    (out / "keep.txt").write_text("user data")
    with pytest.raises(OutputExistsError, match="--force"), atomic_directory(out):
        pass
    assert (out / "keep.txt").read_text() == "user data"


def test_atomic_directory_accepts_empty_existing_dir(tmp_path: Path) -> None:
    out = tmp_path / "model"
    out.mkdir()
    with atomic_directory(out) as staging:
        (staging / "x").write_text("1")
    assert (out / "x").read_text() == "1"


def test_atomic_directory_force_replaces_and_failure_keeps_old(tmp_path: Path) -> None:
    out = tmp_path / "model"
    out.mkdir()
    (out / "old.txt").write_text("old")

    def fail_midway() -> None:
        with atomic_directory(out, force=True) as staging:
            (staging / "half.onnx").write_bytes(b"half")
            raise RuntimeError("mid-export")

    with pytest.raises(RuntimeError, match="mid-export"):
        fail_midway()
    assert _entries(out) == ["old.txt"]
    assert _entries(tmp_path) == ["model"]
    with atomic_directory(out, force=True) as staging:
        (staging / "new.txt").write_text("new")
    assert _entries(out) == ["new.txt"]
    assert _entries(tmp_path) == ["model"]


def test_atomic_directory_rejects_a_file_path(tmp_path: Path) -> None:
    out = tmp_path / "model"
    out.write_text("not a dir")
    with pytest.raises(InputError, match="is a file"), atomic_directory(out, force=True):
        pass
    assert out.read_text() == "not a dir"


def test_sha256_file(tmp_path: Path) -> None:
    path = tmp_path / "x"
    path.write_bytes(b"abc")
    assert sha256_file(path) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
