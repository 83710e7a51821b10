"""``build``'s output is checked before any work, and --force replaces only a model directory.

The calibration source here does not exist: reading it would be the first
piece of work, so getting the output error instead shows the check came first.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from samedge.calibration import BuildConfig, build
from samedge.errors import InputError, OutputExistsError
from tests._faults import tmpfs

UNREADABLE = BuildConfig(calibration="/no/such/frames")


def test_a_file_at_the_output_is_refused_before_the_build(tmp_path: Path) -> None:
    target = tmp_path / "model.onnx"
    target.write_text("not a directory")
    with pytest.raises(InputError, match="exists and is a file"):
        build("samedge_tiny", target, UNREADABLE, force=True)
    assert target.read_text() == "not a directory"


def test_force_refuses_a_directory_samedge_did_not_write(tmp_path: Path) -> None:
    out = tmp_path / "D"
    (out / "sub").mkdir(parents=True)
    (out / "thesis.tex").write_text("mine")
    with pytest.raises(OutputExistsError, match=r"no samedge\.json, so samedge did not write it"):
        build("samedge_tiny", out, UNREADABLE, force=True)
    assert sorted(p.name for p in out.iterdir()) == ["sub", "thesis.tex"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["D"]


def test_a_read_only_place_is_refused_before_the_build(tmp_path: Path) -> None:
    with (
        tmpfs(tmp_path / "ro", read_only=True) as ro,
        pytest.raises(InputError, match="not writable"),
    ):
        build("samedge_tiny", ro / "int8", UNREADABLE)
