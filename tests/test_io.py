"""Atomic writes: nothing half-written lands, nothing the user had is lost."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from samedge._io import (
    FRAMES_MARKER,
    atomic_directory,
    atomic_write_bytes,
    atomic_write_text,
    check_output_dir,
    check_output_file,
    sha256_file,
)
from samedge.errors import InputError, OutputExistsError, OutputWriteError
from tests._faults import fill, tmpfs


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
    (out / "samedge.json").write_text("old card")

    def fail_midway() -> None:
        with atomic_directory(out, force=True, marker="samedge.json") as staging:
            (staging / "half.onnx").write_bytes(b"half")
            raise RuntimeError("mid-export")

    with pytest.raises(RuntimeError, match="mid-export"):
        fail_midway()
    assert _entries(out) == ["samedge.json"]
    assert _entries(tmp_path) == ["model"]
    with atomic_directory(out, force=True, marker="samedge.json") as staging:
        (staging / "samedge.json").write_text("new")
    assert _entries(out) == ["samedge.json"]
    assert (out / "samedge.json").read_text() == "new"
    assert _entries(tmp_path) == ["model"]


@pytest.mark.parametrize("marker", [None, "samedge.json"])
def test_force_refuses_a_directory_samedge_did_not_write(
    tmp_path: Path, marker: str | None
) -> None:
    """--force used to delete everything in D, the user's files included."""
    out = tmp_path / "photos"
    (out / "album").mkdir(parents=True)
    (out / "holiday.jpg").write_bytes(b"jpeg")
    with (
        pytest.raises(OutputExistsError, match=r"did not write|only empty") as info,
        atomic_directory(out, force=True, marker=marker),
    ):
        pass
    assert "album" in str(info.value)
    assert "remove it yourself" in str(info.value)
    assert _entries(out) == ["album", "holiday.jpg"]
    assert _entries(tmp_path) == ["photos"]


def test_force_refuses_when_the_directory_changes_hands_during_the_work(tmp_path: Path) -> None:
    out = tmp_path / "model"

    def build() -> None:
        with atomic_directory(out, force=True, marker="samedge.json") as staging:
            (staging / "samedge.json").write_text("new")
            out.mkdir()
            (out / "notes.txt").write_text("mine")  # the user's, made while the work ran

    with pytest.raises(OutputExistsError, match="did not write"):
        build()
    assert _entries(out) == ["notes.txt"]
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


def test_check_output_file_refuses_before_any_work(tmp_path: Path) -> None:
    folder = tmp_path / "x.mp4"
    folder.mkdir()
    with pytest.raises(InputError, match="is a directory"):
        check_output_file(folder, force=True)
    existing = tmp_path / "a.json"
    existing.write_text("{}")
    with pytest.raises(OutputExistsError, match="--force"):
        check_output_file(existing)
    assert check_output_file(existing, force=True) == existing
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(InputError, match="is a file"):
        check_output_file(blocker / "sub" / "out.json")
    with pytest.raises(InputError, match="not a regular file"):
        check_output_file("/dev/null", force=True)
    # Nothing was created by checking.
    assert not (tmp_path / "new").exists()
    check_output_file(tmp_path / "new" / "deeper" / "out.json")
    assert not (tmp_path / "new").exists()


def test_check_output_dir(tmp_path: Path) -> None:
    blocker = tmp_path / "f"
    blocker.write_text("x")
    with pytest.raises(InputError, match="is a file"):
        check_output_dir(blocker, force=True, marker="samedge.json")
    ours = tmp_path / "ours"
    ours.mkdir()
    (ours / "samedge.json").write_text("{}")
    (ours / "encoder.onnx").write_bytes(b"e")
    with pytest.raises(OutputExistsError, match="--force"):
        check_output_dir(ours, marker="samedge.json")
    assert check_output_dir(ours, force=True, marker="samedge.json") == ours
    with pytest.raises(OutputExistsError, match=r"has no \.samedge-frames"):
        check_output_dir(ours, force=True, marker=FRAMES_MARKER)


def test_read_only_place_is_refused_up_front(tmp_path: Path) -> None:
    with tmpfs(tmp_path / "ro", read_only=True) as ro:
        with pytest.raises(InputError, match="not writable"):
            check_output_file(ro / "eval.json")
        with pytest.raises(InputError, match="not writable"):
            check_output_dir(ro / "model", marker="samedge.json")


def test_full_disk_is_an_output_write_error_and_the_old_output_stays(tmp_path: Path) -> None:
    with tmpfs(tmp_path / "disk", size="1m") as disk:
        target = atomic_write_text(disk / "report.json", "old")
        model = disk / "model"
        with atomic_directory(model) as staging:
            (staging / "samedge.json").write_text("old card")
        fill(disk, leave=4096)
        with pytest.raises(OutputWriteError, match=r"report\.json: could not be written"):
            atomic_write_bytes(target, b"x" * 200_000)
        assert target.read_text() == "old"

        def write_big() -> None:
            with atomic_directory(model, force=True, marker="samedge.json") as staging:
                (staging / "samedge.json").write_text("new")
                (staging / "encoder.onnx").write_bytes(b"w" * 200_000)

        with pytest.raises(OutputWriteError, match="nothing replaced"):
            write_big()
        assert (model / "samedge.json").read_text() == "old card"
        assert sorted(p.name for p in disk.iterdir()) == [".filler", "model", "report.json"]
