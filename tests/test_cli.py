"""`samedge info` and the CLI's error contract."""

from __future__ import annotations

from pathlib import Path

import pytest

from samedge import __version__
from samedge.cli import main


def test_info_lists_backends_and_the_auto_choice(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["info"]) == 0
    out = capsys.readouterr().out
    assert f"samedge {__version__}" in out
    for name in ("onnxruntime", "openvino", "tensorrt"):
        assert name in out
    assert "auto choice:" in out
    assert out.count("auto choice:") == 1


def test_info_prints_onnx_metadata(reduced_sam_dir, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["info", str(reduced_sam_dir.dir / "encoder.onnx")]) == 0
    out = capsys.readouterr().out
    assert 'samedge.model = "sam_reduced"' in out
    assert "samedge.checkpoint_sha256" in out


def test_info_bad_file_is_one_line_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bogus = tmp_path / "x.onnx"
    bogus.write_bytes(b"not onnx")
    assert main(["info", str(bogus)]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("samedge info: error:")
    assert "not a loadable ONNX model" in err
    assert len(err.splitlines()) == 1


def test_no_command_prints_help(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    assert "export" in capsys.readouterr().out


def test_unknown_model_choice_is_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["export", "sam_vit_x", "--random-weights", "-o", "x"])
    assert info.value.code == 2
    assert "invalid choice" in capsys.readouterr().err
