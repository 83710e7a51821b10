"""run_bench's bookkeeping: config validation, model resolution, failures that do not stop it."""

from __future__ import annotations

import shutil

import pytest

import samedge.bench.run as run_module
from samedge.bench.measure import JobResult
from samedge.bench.run import BenchConfig, resolve_models, run_bench
from samedge.errors import InputError, ModelDirError, UnknownNameError
from samedge.predictor import resolve_model


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"objects": ()}, "objects"),
        ({"objects": (1, 0)}, "counts >= 1"),
        ({"objects": (1, 4, 1)}, "1 listed more than once in 1,4,1"),
        ({"runs": 0}, "runs"),
        ({"warmup": -1}, "warmup"),
        ({"backends": ("onnx",)}, "backends"),
        ({"precisions": ("int4",)}, "precisions"),
        ({"parts": ("postprocess",)}, "parts"),
        ({"threads": 0}, "threads"),
        ({"peak_size": 8}, "peak_size"),
        ({"peak_repeats": 0}, "peak_repeats"),
        ({"accuracy_frames": -1}, "accuracy_frames"),
    ],
)
def test_config_validation(kwargs, message):
    with pytest.raises(InputError, match=message):
        BenchConfig(**kwargs)


def test_resolve_models(tmp_path):
    (tiny,) = resolve_models(["samedge_tiny"], tmp_path)
    assert tiny.name == "samedge_tiny"
    assert tiny.precision == "fp32"
    assert tiny.reference == tiny.directory  # an fp32 directory is its own reference
    with pytest.raises(UnknownNameError, match="Did you mean 'sam_vit_b'"):
        resolve_models(["sam_vit_bb"], tmp_path)
    with pytest.raises(ModelDirError, match=r"has no samedge\.json"):
        resolve_models([tmp_path], tmp_path)


def test_failed_jobs_are_recorded_and_a_rewritten_model_is_flagged(tmp_path, monkeypatch):
    model = tmp_path / "tiny"
    shutil.copytree(resolve_model("samedge_tiny"), model)

    def fake_run_job(job, **kwargs):
        # What a re-export under a running benchmark looks like.
        with open(model / "encoder.onnx", "ab") as f:
            f.write(b"\0")
        return JobResult(error="BackendError: it broke")

    monkeypatch.setattr(run_module, "run_job", fake_run_job)
    config = BenchConfig(
        backends=("onnxruntime",), parts=("encoder",), peak_size=0, accuracy_frames=0
    )
    report = run_bench([model], config, machine="test")
    assert report.measurements == ()
    errors = [f["error"] for f in report.failures]
    assert errors[0] == "BackendError: it broke"
    assert "changed during the run" in errors[-1]


def test_the_fastest_of_repeated_peak_measurements_is_kept(monkeypatch):
    from samedge.bench.peak import PeakJob, PeakRate
    from samedge.bench.records import Timing

    def rate(best: float) -> PeakRate:
        timing = Timing.from_seconds([0.01])
        return PeakRate("onnxruntime", "fp32", "cpu", None, 2, 64, best / 2, best, "MatMul fp32",
                        "fp32", timing)  # fmt: skip

    # One measurement slowed by another process (50), one failed, one quiet (90).
    results = iter(
        [JobResult(peak=rate(50.0)), JobResult(error="killed"), JobResult(peak=rate(90.0))]
    )
    calls = []

    def fake_run_job(job, timeout_s):
        calls.append(job)
        return next(results)

    monkeypatch.setattr(run_module, "run_job", fake_run_job)
    job = PeakJob("onnxruntime", "fp32", threads=2, size=64)
    peak, error = run_module._best_peak(job, 3, 10.0)
    assert len(calls) == 3
    assert peak.best_gflops_per_s == 90.0
    assert error is None
    monkeypatch.setattr(run_module, "run_job", lambda job, timeout_s: JobResult(error="no ORT"))
    assert run_module._best_peak(job, 2, 10.0) == (None, "no ORT")
