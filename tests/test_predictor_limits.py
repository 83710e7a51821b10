"""The Predictor never hands out NaN, and bounds its memory for many objects.

NaN comes from real graphs that compute it (a NaN weight), on the real
backends; the OpenVINO case also checks that the compiled-blob cache entry
that produced it is gone afterwards.
"""

from __future__ import annotations

import tracemalloc
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from samedge import ImageEmbedding, NonFiniteOutputError, ObjectPrompt, Predictor
from samedge import predictor as predictor_module
from tests.runtimes._graphs import contract_model_dir

FRAME = np.full((48, 64, 3), 128, np.uint8)


def _nan_encoder_dir(directory: Path) -> Path:
    contract_model_dir(directory)
    model = onnx.load(directory / "encoder.onnx")
    (proj,) = [t for t in model.graph.initializer if t.name == "proj"]
    weights = numpy_helper.to_array(proj).copy()
    weights[0] = np.nan
    proj.CopyFrom(numpy_helper.from_array(weights, "proj"))
    onnx.save(model, directory / "encoder.onnx")
    return directory


def test_nan_embedding_is_an_error_not_empty_masks(tmp_path: Path) -> None:
    predictor = Predictor(_nan_encoder_dir(tmp_path / "m"), backend="onnxruntime")
    with pytest.raises(NonFiniteOutputError) as info:
        predictor.set_image(FRAME)
    message = str(info.value)
    for word in ("mobile_sam", "encoder.onnx", "onnxruntime", "precision fp32", "NaN or inf"):
        assert word in message
    assert not predictor.is_image_set


def test_nan_decoder_output_is_an_error(tmp_path: Path) -> None:
    predictor = Predictor(contract_model_dir(tmp_path / "m"), backend="onnxruntime")
    predictor.set_image(FRAME)
    good = predictor.get_image_embedding()
    poisoned = np.full_like(good, np.nan)
    predictor.set_embedding(ImageEmbedding(poisoned, (48, 64), (24, 32), 32))
    with pytest.raises(NonFiniteOutputError, match=r"decoder\.onnx.*decoder output"):
        predictor.predict(box=np.array([1, 1, 20, 20]))


@pytest.mark.openvino
def test_openvino_nan_drops_the_cache_entry_that_made_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = tmp_path / "cache"
    monkeypatch.setenv("SAMEDGE_CACHE_DIR", str(cache))
    predictor = Predictor(_nan_encoder_dir(tmp_path / "m"), backend="openvino")
    predictor._encoder.load()
    entry = predictor._encoder.cache_path
    assert entry is not None
    assert entry.is_dir()
    with pytest.raises(NonFiniteOutputError, match="openvino") as info:
        predictor.set_image(FRAME)
    assert str(entry) in str(info.value)
    assert "removed" in str(info.value)
    assert not entry.exists()
    # The decoder's entry is someone else's and stays.
    assert len([p for p in (cache / "openvino").iterdir() if p.is_dir()]) == 1


def _prompts(n: int, width: int = 640) -> list[ObjectPrompt]:
    w = width - 31
    return [ObjectPrompt(box=np.array([i % w, 1, i % w + 30, 20 + i % 7])) for i in range(n)]


def test_many_objects_are_decoded_within_the_memory_budget(tmp_path: Path) -> None:
    """60 objects on a SAM-sized (1024 px) input took over twice the budget before."""
    model = contract_model_dir(tmp_path / "m", image_size=1024, embedding=(8, 16, 16))
    predictor = Predictor(model, backend="onnxruntime")
    predictor.set_image(np.zeros((480, 640, 3), np.uint8))
    tracemalloc.start()
    try:
        masks, scores, low_res = predictor.predict_batch(_prompts(60))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    returned = masks.nbytes + scores.nbytes + low_res.nbytes
    assert masks.shape == (60, 3, 480, 640)
    assert peak - returned <= 1.1 * predictor_module.DECODE_BUDGET


def test_chunked_decoding_gives_the_masks_of_one_call(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    predictor = Predictor(contract_model_dir(tmp_path / "m"), backend="onnxruntime")
    predictor.set_image(FRAME)
    prompts = _prompts(7, width=64)
    prompts[3] = ObjectPrompt(
        point_coords=np.array([[5, 5], [9, 9], [20, 30]]), point_labels=np.array([1, 0, 1])
    )
    whole = predictor.predict_batch(prompts, return_logits=True)
    monkeypatch.setattr(predictor_module, "DECODE_BUDGET", 1)  # one object per call
    chunked = predictor.predict_batch(prompts, return_logits=True)
    for a, b in zip(whole, chunked, strict=True):
        np.testing.assert_array_equal(a, b)
