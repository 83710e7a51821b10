"""``samedge bench --builds``: builds made, measured, reused, rebuilt; failures do not stop it."""

from __future__ import annotations

import json
import os
import shlex
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest

import samedge.bench.builds as builds_module
from samedge._io import sha256_file
from samedge.bench.builds import RECORD_NAME, build_dir, make_builds
from samedge.bench.run import BenchConfig, BenchModel, resolve_models, run_bench
from samedge.cli import main
from samedge.errors import InputError
from samedge.predictor import resolve_model

# samedge_tiny builds in ~10 s with these (the defaults' 100 ground-truth
# scenes take most of a minute); without eval scenes the fp32 gate decides.
CHEAP = ("--frames=4", "--heldout=2", "--eval-scenes=0")


def _config(tmp_path: Path, **kwargs: object) -> BenchConfig:
    base = {"backends": ("onnxruntime",), "parts": ("encoder",), "runs": 1, "warmup": 0,
            "peak_size": 0, "accuracy_frames": 0, "work_dir": tmp_path / "work"}  # fmt: skip
    return BenchConfig(**{**base, **kwargs})  # type: ignore[arg-type]


def _tiny_key() -> str:
    return "samedge_tiny-" + sha256_file(resolve_model("samedge_tiny") / "encoder.onnx")[:8]


def test_fp16_build_is_made_measured_reused_and_rebuilt_when_its_args_change(tmp_path):
    config = _config(tmp_path, builds=("fp16",), build_args=CHEAP, accuracy_frames=1)
    report = run_bench(["samedge_tiny"], config, machine="test")
    assert report.failures == ()
    fp32, fp16 = report.models
    out = tmp_path / "work" / _tiny_key() / "fp16"
    assert (fp32["precision"], fp32["built_by"]) == ("fp32", None)
    assert (fp16["precision"], fp16["directory"]) == ("fp16", str(out))
    source = resolve_model("samedge_tiny")
    expected = ["samedge", "build", str(source), "--precision", "fp16", "-o", str(out),
                "--speed-runs", "0", *CHEAP]  # fmt: skip
    assert fp16["built_by"]["command"] == shlex.join(expected)
    assert fp16["built_by"]["reused"] is False
    assert report.settings["builds"] == ["fp16"]
    assert report.settings["build_args"] == list(CHEAP)
    # Rows read fp32, then its fp16 build, measured against the fp32 directory.
    rows = [(r.model_precision, r.precision) for r in report.rows("encoder")]
    assert rows == [("fp32", "fp32"), ("fp16", "fp16")]
    built = report.rows("encoder")[1]
    assert 0.9 < built.accuracy["mean_iou_vs_fp32"] < 1.0
    assert "accuracy measured here on 1 frames" in built.note
    record = json.loads((out / RECORD_NAME).read_text())
    assert record["build_args"] == list(CHEAP)

    encoder = out / "encoder.onnx"
    mtime = encoder.stat().st_mtime_ns
    again = run_bench(["samedge_tiny"], config, machine="test")
    assert again.failures == ()
    assert again.models[1]["built_by"]["reused"] is True
    assert encoder.stat().st_mtime_ns == mtime
    assert [r.model_precision for r in again.rows("encoder")] == ["fp32", "fp16"]

    (tiny,) = resolve_models(["samedge_tiny"], tmp_path / "work")
    (result,) = make_builds(tiny, ("fp16",), tmp_path / "work", (*CHEAP, "--seed=1"))
    assert result.ok, result.error
    assert (result.output, result.reused) == (out, False)
    assert encoder.stat().st_mtime_ns != mtime
    assert json.loads((out / RECORD_NAME).read_text())["build_args"] == [*CHEAP, "--seed=1"]


def test_a_build_that_misses_its_gate_is_a_failure_and_the_fp32_rows_stay(tmp_path):
    # fp16 is close to fp32 (mean mask IoU ~0.999) but not identical: a gate
    # of 1.0 cannot pass.
    config = _config(tmp_path, builds=("fp16",), build_args=(*CHEAP, "--min-mean-iou=1"))
    report = run_bench(["samedge_tiny"], config, machine="test")
    (failure,) = report.failures
    assert failure["what"] == "build/samedge_tiny/fp16"
    assert failure["error"].startswith("gate failed: mean mask IoU 0.99")
    assert "\n" not in failure["error"]
    assert [m["precision"] for m in report.models] == ["fp32"]
    assert [r.model_precision for r in report.rows("encoder")] == ["fp32"]
    assert not (tmp_path / "work" / _tiny_key() / "fp16").exists()


def _fake_run(code, stderr, calls=None):
    def run(cmd, timeout_s):
        if calls is not None:
            calls.append((list(cmd), timeout_s))
        return code, stderr

    return run


def test_timeouts_and_crashes_are_one_line_errors(tmp_path, monkeypatch):
    (tiny,) = resolve_models(["samedge_tiny"], tmp_path)
    calls: list[tuple[list[str], float]] = []
    monkeypatch.setattr(builds_module, "_run", _fake_run(None, "", calls))
    (result,) = make_builds(tiny, ("int8",), tmp_path, ("--no-attention-int8",), timeout_s=5)
    assert result.error == "timed out after 5 s (process group killed)"
    assert result.what == "build/samedge_tiny/int8"
    ((cmd, timeout),) = calls
    out = str(tmp_path / _tiny_key() / "int8")
    assert cmd == [sys.executable, "-m", "samedge", "build", str(tiny.directory),
                   "--precision", "int8", "-o", out, "--speed-runs", "0", "--force",
                   "--no-attention-int8"]  # fmt: skip
    assert timeout == 5
    stderr = "INFO loading\nsamedge build: error: calibration: no frames in /x\n\n"
    monkeypatch.setattr(builds_module, "_run", _fake_run(1, stderr))
    (result,) = make_builds(tiny, ("int8",), tmp_path)
    assert result.error == "exit code 1: samedge build: error: calibration: no frames in /x"
    monkeypatch.setattr(builds_module, "_run", _fake_run(-9, ""))
    (result,) = make_builds(tiny, ("fp16",), tmp_path)
    assert result.error == "killed by signal 9 and no error output"


def test_a_timed_out_process_group_is_killed(tmp_path):
    pid_file = tmp_path / "grandchild.pid"
    code = (
        "import subprocess, sys, time\n"
        "p = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])\n"
        f"open({str(pid_file)!r}, 'w').write(str(p.pid))\n"
        "time.sleep(60)\n"
    )
    start = time.perf_counter()
    assert builds_module._run([sys.executable, "-c", code], 3.0)[0] is None
    assert time.perf_counter() - start < 30  # SIGTERM, not the 30 s grace and SIGKILL
    assert pid_file.exists(), "the child did not start its grandchild within the timeout"
    pid = int(pid_file.read_text())
    for _ in range(50):
        try:
            state = Path(f"/proc/{pid}/stat").read_text().split()[2]
        except FileNotFoundError:
            break
        if state == "Z":  # killed; a reaper in this container has not collected it yet
            break
        time.sleep(0.1)
    else:
        pytest.fail(f"grandchild {pid} still runs")


def test_only_fp32_sources_are_built_and_build_dirs_sit_beside_bench_exports(tmp_path, caplog):
    int8 = BenchModel("samedge_tiny", tmp_path / "int8", "int8", "a user's build")
    with caplog.at_level("INFO", logger="samedge.bench.builds"):
        assert make_builds(int8, ("fp16",), tmp_path) == []
    assert "fp32 directories only" in caplog.text
    export = BenchModel("mobile_sam", tmp_path / "mobile_sam-seed0" / "fp32", "fp32", "random",
                        checkpoint=tmp_path / "mobile_sam-seed0" / "checkpoint.pth")  # fmt: skip
    assert build_dir(export, "int8", tmp_path, "ab" * 32) == tmp_path / "mobile_sam-seed0" / "int8"
    user = replace(export, directory=tmp_path / "mine", checkpoint=None)
    assert (
        build_dir(user, "fp16", tmp_path, "0123456789" * 6)
        == tmp_path / "mobile_sam-01234567" / "fp16"
    )


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"builds": ("fp8",)}, r"builds: got \['fp8'\], expected values from fp16, int8"),
        ({"builds": ("fp16", "fp16")}, "each precision once"),
        ({"builds": "fp16"}, "expected a tuple"),
        ({"builds": ("int8",), "build_args": ["--frames=4"]}, "tuple of strings"),
        ({"builds": ("int8",), "build_args": ("--precision", "fp16")}, "bench sets --precision"),
        ({"builds": ("int8",), "build_args": ("--prec=fp16",)}, "bench sets --precision"),
        ({"builds": ("int8",), "build_args": ("-o", "x")}, "-o/--output"),
        ({"builds": ("int8",), "build_args": ("--out=x",)}, "-o/--output"),
        ({"build_args": ("--frames=4",)}, "without builds"),
    ],
)
def test_bad_builds_settings(kwargs, message):
    with pytest.raises(InputError, match=message):
        BenchConfig(**kwargs)


class _StopError(Exception):
    pass


def test_cli_turns_builds_and_build_args_into_the_config_and_the_command(tmp_path, monkeypatch):
    import samedge.bench

    seen = {}

    def fake_run_bench(models, config, *, command, machine, notes):
        seen.update(config=config, command=command)
        raise _StopError

    monkeypatch.setattr(samedge.bench, "run_bench", fake_run_bench)
    argv = ["-q", "bench", "samedge_tiny", "--builds", "fp16,int8",
            "--build-arg=--frames=16", "--build-arg=--no-attention-int8",
            "--output", str(tmp_path), "--machine", "m"]  # fmt: skip
    with pytest.raises(_StopError):
        main(argv)
    config = seen["config"]
    assert config.builds == ("fp16", "int8")
    assert config.build_args == ("--frames=16", "--no-attention-int8")
    words = shlex.split(seen["command"])
    assert words[words.index("--builds") + 1] == "fp16,int8"
    assert [w for w in words if w.startswith("--build-arg")] == [
        "--build-arg=--frames=16",
        "--build-arg=--no-attention-int8",
    ]
    # The recorded command parses back to the same settings.
    seen.clear()
    with pytest.raises(_StopError):
        main(["-q", *words[1:]])
    assert seen["config"] == config


def test_cli_bad_builds_is_a_one_line_error(capsys, tmp_path):
    assert main(["-q", "bench", "samedge_tiny", "--builds", "fp16,fp8", "-o", str(tmp_path)]) == 1
    err = capsys.readouterr().err.strip()
    assert err == ("samedge bench: error: builds: got ['fp8'], expected values from fp16, int8")
    assert os.listdir(tmp_path) == []
