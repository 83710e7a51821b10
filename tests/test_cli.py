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


def test_info_prints_onnx_metadata(tiny_model: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["info", str(tiny_model / "encoder.onnx")]) == 0
    out = capsys.readouterr().out
    assert 'samedge.model = "samedge_tiny"' in out
    assert "samedge.checkpoint_sha256" in out


def test_info_bad_file_is_one_line_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bogus = tmp_path / "x.onnx"
    bogus.write_bytes(b"not onnx")
    assert main(["info", str(bogus)]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("samedge info: error:")
    assert "not an ONNX model" in err
    assert len(err.splitlines()) == 1


def test_no_command_prints_help(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    assert "export" in capsys.readouterr().out


def test_unknown_model_choice_is_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["export", "sam_vit_x", "--random-weights", "-o", "x"])
    assert info.value.code == 2
    assert "invalid choice" in capsys.readouterr().err


def _captured(monkeypatch: pytest.MonkeyPatch, module: str, name: str) -> list[object]:
    """Replace ``module.name`` (the library call a command makes) with a recorder."""
    import importlib

    seen: list[object] = []

    def record(config: object) -> object:
        seen.append(config)
        raise SystemExit(0)  # stop before any work: the config is what is tested

    monkeypatch.setattr(importlib.import_module(module), name, record)
    return seen


def test_run_without_flags_is_the_configs_own_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    from samedge.stream.demo import RunConfig

    seen = _captured(monkeypatch, "samedge.stream.demo", "run_demo")
    with pytest.raises(SystemExit):
        main(["run"])
    assert seen == [RunConfig()]


def test_run_flags_reach_the_config(monkeypatch: pytest.MonkeyPatch) -> None:
    from samedge.stream.reconnect import ReconnectPolicy

    seen = _captured(monkeypatch, "samedge.stream.demo", "run_demo")
    with pytest.raises(SystemExit):
        main(
            [
                *("run", "--frames", "0", "--no-video", "--point", "3,4", "--overlap", "off"),
                *("--reconnect-delay", "2", "--backend", "onnxruntime", "--seed", "7"),
            ]
        )
    (config,) = seen
    assert config.frames is None  # 0: until the source ends
    assert config.output is None
    assert config.points == ((3.0, 4.0),)
    assert config.overlap is False
    assert config.reconnect == ReconnectPolicy(initial_delay=2.0)
    assert (config.backend, config.seed) == ("onnxruntime", 7)


def test_serve_flags_reach_the_config(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("starlette")
    from samedge.serve import ServeConfig

    seen = _captured(monkeypatch, "samedge.serve", "serve")
    monkeypatch.delenv("SAMEDGE_TOKEN", raising=False)
    with pytest.raises(SystemExit):
        main(["serve"])
    with pytest.raises(SystemExit):
        main(["serve", "--allowed-host", "cam.local", "--allowed-host", "10.0.0.5", "--port", "0"])
    default, flagged = seen
    assert default == ServeConfig()
    assert flagged.allowed_hosts == ("cam.local", "10.0.0.5")
    assert flagged.port == 0
