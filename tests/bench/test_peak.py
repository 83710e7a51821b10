"""The peak GEMM graphs run through samedge's backends and give a positive rate."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest

from samedge.bench.peak import PeakJob, PeakRate, gemm_graph, measure_peak
from samedge.errors import InputError


@pytest.mark.parametrize("form", ["MatMul fp32", "Q/DQ MatMul", "MatMulInteger"])
def test_gemm_graph_computes_a_matrix_product(form):
    model = gemm_graph(form, 32)
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    a = (
        np.arange(32 * 32, dtype=np.uint8).reshape(32, 32) % 7
        if form == "MatMulInteger"
        else np.eye(32, dtype=np.float32)
    )
    (y,) = session.run(None, {"a": a})
    assert y.shape == (32, 32)
    if form == "MatMul fp32":  # identity @ W == W
        w = next(t for t in model.graph.initializer if t.name == "w")
        from onnx import numpy_helper

        np.testing.assert_allclose(y, numpy_helper.to_array(w))


def test_onnxruntime_peak_rates_are_positive():
    for precision, graph in (("fp32", "MatMul fp32"), ("int8", "MatMulInteger")):
        rate = measure_peak(PeakJob("onnxruntime", precision, threads=1, size=64, runs=2))
        assert rate.gflops_per_s > 0
        assert rate.best_gflops_per_s >= rate.gflops_per_s
        assert rate.graph == graph
        assert rate.ran_in == precision
        assert PeakRate.from_json(rate.to_json()) == rate


@pytest.mark.openvino
def test_openvino_peak_rates_are_positive():
    for precision, ran_in in (("fp32", "fp32"), ("int8", "int8")):
        rate = measure_peak(PeakJob("openvino", precision, threads=1, size=64, runs=2))
        assert rate.gflops_per_s > 0
        assert rate.ran_in == ran_in


def test_bad_jobs_are_refused():
    with pytest.raises(InputError, match="precision"):
        PeakJob("onnxruntime", "int4")
    with pytest.raises(InputError, match="size"):
        PeakJob("onnxruntime", "fp32", size=4)
    with pytest.raises(InputError, match="form"):
        gemm_graph("Conv", 32)
    job = PeakJob("onnxruntime", "fp32", providers=("CPUExecutionProvider",), isa="AVX2")
    assert PeakJob.from_json(job.to_json()) == job
