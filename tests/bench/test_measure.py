"""Variants, jobs in their own processes, and what a failed job leaves."""

from __future__ import annotations

import pytest

from samedge.bench.measure import (
    ISA_CAP,
    AccuracyJob,
    PartJob,
    Variant,
    _time_interleaved,
    measure_accuracy,
    measure_part,
    plan_variants,
    run_job,
)
from samedge.bench.peak import PeakJob
from samedge.errors import InputError
from samedge.predictor import resolve_model


def test_onnxruntime_cpu_is_always_planned():
    variants, _ = plan_variants("fp32", backends=["onnxruntime"])
    assert Variant("onnxruntime", "cpu", expected="fp32") in variants


def test_precision_filter_and_missing_backends_are_explained():
    variants, skipped = plan_variants("int8", precisions=["fp32"])
    assert variants == []
    assert any("--precision fp32" in s for s in skipped)


@pytest.mark.openvino
def test_isa_cap_adds_an_f32_openvino_run():
    variants, skipped = plan_variants("fp32", backends=["openvino"], isa_cap=True)
    capped = [v for v in variants if v.isa == ISA_CAP]
    from samedge.runtimes._hw import cpu_info

    if cpu_info().arch == "x86_64":
        assert capped == [Variant("openvino", "cpu", "fp32", isa=ISA_CAP, expected="fp32")]
    else:
        assert any("--isa-cap" in s for s in skipped)


def test_jobs_round_trip_and_validate():
    variant = Variant("onnxruntime", "cuda:0", providers=("CUDAExecutionProvider",))
    job = PartJob("decoder", "/m", variant, objects=(1, 16), frame_size=(320, 240))
    assert PartJob.from_json(job.to_json()) == job
    acc = AccuracyJob("/m", "/r", variant, threads=2)
    assert AccuracyJob.from_json(acc.to_json()) == acc
    with pytest.raises(InputError, match="part"):
        PartJob("postprocess", "/m", variant)
    with pytest.raises(InputError, match="objects"):
        PartJob("decoder", "/m", variant, objects=(0,))
    with pytest.raises(InputError, match="each count once"):
        PartJob("decoder", "/m", variant, objects=(1, 1))
    with pytest.raises(InputError, match="hint"):
        Variant("openvino", hint="int4")


def test_decoder_part_in_process():
    rows = measure_part(
        PartJob(
            "decoder",
            str(resolve_model("samedge_tiny")),
            Variant("onnxruntime"),
            threads=1,
            runs=2,
            warmup=0,
            objects=(1, 3),
        )
    )
    assert [(r.part, r.objects, r.precision) for r in rows] == [
        ("decoder", 1, "fp32"),
        ("decoder", 3, "fp32"),
    ]
    assert all(r.timing.runs == 2 and r.throughput_per_s > 0 for r in rows)
    assert rows[1].throughput_per_s == pytest.approx(3e3 / rows[1].timing.median_ms)


def test_batch_sizes_are_timed_round_robin():
    order = []
    timings = _time_interleaved(
        {b: (lambda b=b: order.append(b)) for b in (1, 4, 16)}, warmup=1, runs=2
    )
    # Warm-ups first, then one call of each size per round.
    assert order == [1, 4, 16, 1, 4, 16, 1, 4, 16]
    assert list(timings) == [1, 4, 16]
    assert all(t.runs == 2 for t in timings.values())


def test_a_failing_job_is_reported_not_raised(tmp_path):
    result = run_job(PartJob("encoder", str(tmp_path / "nowhere"), Variant("onnxruntime")))
    assert not result.ok
    assert "ModelDirError" in result.error
    assert result.measurements == ()


def test_a_crashing_worker_is_reported(tmp_path):
    python = tmp_path / "python"
    python.write_text("#!/bin/sh\necho 'segfault in backend' >&2\nexit 139\n")
    python.chmod(0o755)
    result = run_job(PeakJob("onnxruntime", "fp32", size=16), python=str(python))
    assert result.error == "worker exited with code 139: segfault in backend"


def test_peak_job_in_a_subprocess():
    result = run_job(PeakJob("onnxruntime", "fp32", threads=1, size=64, runs=2))
    assert result.ok, result.error
    assert result.peak is not None
    assert result.peak.gflops_per_s > 0


def test_accuracy_of_the_reference_against_itself_is_exact():
    tiny = str(resolve_model("samedge_tiny"))
    acc = measure_accuracy(AccuracyJob(tiny, tiny, Variant("onnxruntime"), threads=1, frames=1))
    assert acc["mean_iou_vs_fp32"] == 1.0
    assert acc["cosine_vs_fp32"] == pytest.approx(1.0)
    assert acc["frames"] == 1.0


@pytest.mark.openvino
def test_accuracy_of_openvino_f32_is_close_to_the_reference():
    tiny = str(resolve_model("samedge_tiny"))
    variant = Variant("openvino", "cpu", "fp32")
    acc = measure_accuracy(AccuracyJob(tiny, tiny, variant, threads=1, frames=1))
    assert 0.99 < acc["mean_iou_vs_fp32"] <= 1.0
