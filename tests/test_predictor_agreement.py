"""Predictor vs segment_anything's PyTorch SamPredictor on the same weights.

The reduced test SAM (256 px) and MobileSAM (1024 px) are exported with
seeded random weights (session fixtures in conftest.py); the PyTorch model is
rebuilt from the very checkpoint the export read. Both predictors get the same
real photographs (scikit-image's non-square samples, so padding and cropping
are exercised) and the same prompts. FP32 on every backend: each mask's IoU
must be >= 0.99, and the low-resolution logits must agree closely as well
(random weights give logits near 0, so the logits are the sharper check).

OpenVINO defaults to bf16 on CPUs with AMX; these tests pin it to f32.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pytest

from samedge.masks import mask_iou
from samedge.predictor import Predictor
from samedge.prompts import ObjectPrompt

torch = pytest.importorskip("torch")
sam_package = pytest.importorskip("segment_anything")
skimage_data = pytest.importorskip("skimage.data")

if TYPE_CHECKING:
    from segment_anything import SamPredictor

    from tests._factories import ExportedModel

MIN_IOU = 0.99

Prompt = Callable[[int, int], dict[str, Any]]

# Prompts in fractions of the frame, so they fit every image size.
PROMPTS: dict[str, Prompt] = {
    "point": lambda h, w: {
        "point_coords": np.array([[0.4 * w, 0.5 * h]]),
        "point_labels": np.array([1]),
    },
    "box": lambda h, w: {"box": np.array([0.2 * w, 0.2 * h, 0.7 * w, 0.8 * h])},
    "points+box": lambda h, w: {
        "point_coords": np.array([[0.4 * w, 0.5 * h], [0.1 * w, 0.1 * h]]),
        "point_labels": np.array([1, 0]),
        "box": np.array([0.2 * w, 0.2 * h, 0.7 * w, 0.8 * h]),
    },
}
CASES = [(name, multimask) for name in PROMPTS for multimask in (True, False)]


def _images(model: str) -> dict[str, np.ndarray]:
    # MobileSAM's PyTorch encoder takes seconds per frame on a small CPU: one
    # non-square photo covers its padding and cropping; the reduced SAM gets three.
    names = ("chelsea",) if model == "mobile_sam" else ("astronaut", "chelsea", "coffee")
    return {name: getattr(skimage_data, name)() for name in names}


@dataclass
class Reference:
    """SamPredictor's outputs for every image and prompt case."""

    model: ExportedModel
    images: dict[str, np.ndarray]
    embeddings: dict[str, np.ndarray]
    outputs: dict[tuple[str, str, bool], tuple[np.ndarray, ...]]
    mask_rounds: dict[tuple[str, str], tuple[np.ndarray, tuple[np.ndarray, ...]]]
    batches: dict[str, tuple[list[ObjectPrompt], tuple[np.ndarray, ...]]]


def _sam_predictor(model: ExportedModel) -> SamPredictor:
    from samedge.exporters.builders import resolve_builder

    return sam_package.SamPredictor(resolve_builder(model.spec)(model.checkpoint))


def _batch_reference(
    ref: SamPredictor, h: int, w: int
) -> tuple[list[ObjectPrompt], tuple[np.ndarray, ...]]:
    """Three box-only objects through SamPredictor.predict_torch in one call."""
    boxes = np.array(
        [
            [0.1 * w, 0.1 * h, 0.5 * w, 0.6 * h],
            [0.4 * w, 0.3 * h, 0.9 * w, 0.9 * h],
            [0.3 * w, 0.05 * h, 0.6 * w, 0.5 * h],
        ]
    )
    boxes_t = torch.as_tensor(ref.transform.apply_boxes(boxes, (h, w)), dtype=torch.float)
    masks, scores, low = ref.predict_torch(None, None, boxes=boxes_t, multimask_output=True)
    prompts = [ObjectPrompt(box=b) for b in boxes]
    return prompts, (masks.numpy(), scores.numpy(), low.numpy())


def _reference(model: ExportedModel) -> Reference:
    ref = _sam_predictor(model)
    images = _images(model.spec.name)
    embeddings, outputs, rounds, batches = {}, {}, {}, {}
    with torch.no_grad():
        for image_name, image in images.items():
            h, w = image.shape[:2]
            ref.set_image(image)
            embeddings[image_name] = ref.get_image_embedding().numpy()
            for prompt_name, multimask in CASES:
                outputs[image_name, prompt_name, multimask] = ref.predict(
                    multimask_output=multimask, **PROMPTS[prompt_name](h, w)
                )
            for prompt_name in PROMPTS:
                # A second round fed the best first-round logits, as in SAM's notebooks.
                _, scores, low = outputs[image_name, prompt_name, True]
                mask_input = low[np.argmax(scores)][None]
                rounds[image_name, prompt_name] = (
                    mask_input,
                    ref.predict(
                        mask_input=mask_input, multimask_output=False, **PROMPTS[prompt_name](h, w)
                    ),
                )
            batches[image_name] = _batch_reference(ref, h, w)
    return Reference(model, images, embeddings, outputs, rounds, batches)


@pytest.fixture(scope="module")
def reduced_reference(reduced_sam_dir: ExportedModel) -> Reference:
    return _reference(reduced_sam_dir)


@pytest.fixture(scope="module")
def mobile_reference(mobile_sam_dir: ExportedModel) -> Reference:
    return _reference(mobile_sam_dir)


def _fp32_config(backend: str, cache_dir: Path) -> Any:
    if backend == "onnxruntime":
        from samedge.runtimes import OrtConfig

        return OrtConfig(intra_op_threads=2)
    from samedge.runtimes import InferencePrecision, OpenVinoConfig

    return OpenVinoConfig(
        inference_precision=InferencePrecision.FP32, num_threads=2, cache_dir=cache_dir
    )


BACKENDS = [
    pytest.param("onnxruntime", id="onnxruntime"),
    pytest.param("openvino", id="openvino", marks=pytest.mark.openvino),
]


@pytest.fixture(scope="module", params=["reduced", "mobile_sam"])
def reference(request: pytest.FixtureRequest) -> Reference:
    name = "reduced_reference" if request.param == "reduced" else "mobile_reference"
    return request.getfixturevalue(name)  # type: ignore[no-any-return]


@pytest.fixture(scope="module", params=BACKENDS)
def predictor(
    request: pytest.FixtureRequest, reference: Reference, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Predictor]:
    backend = request.param
    config = _fp32_config(backend, tmp_path_factory.mktemp("ov_cache"))
    with Predictor(reference.model.dir, backend=backend, config=config) as p:
        assert p.backend_name == backend
        assert p.precision == "fp32"
        yield p


def _assert_agree(
    ours: tuple[np.ndarray, ...],
    ref: tuple[np.ndarray, ...],
    what: str,
) -> None:
    masks, scores, low = ours
    ref_masks, ref_scores, ref_low = ref
    assert masks.shape == ref_masks.shape, what
    assert masks.dtype == ref_masks.dtype == np.bool_, what
    assert scores.shape == ref_scores.shape, what
    assert low.shape == ref_low.shape, what
    flat_masks, flat_ref = (
        masks.reshape(-1, *masks.shape[-2:]),
        ref_masks.reshape(-1, *ref_masks.shape[-2:]),
    )
    for i, (m, r) in enumerate(zip(flat_masks, flat_ref, strict=True)):
        # A mask that is all or nothing would make IoU meaningless.
        assert 0.01 < r.mean() < 0.99, f"{what}[{i}]: trivial reference mask"
        iou = mask_iou(m, r)
        assert iou >= MIN_IOU, f"{what}[{i}]: IoU {iou:.5f} < {MIN_IOU}"
    scale = float(ref_low.std())
    diff = float(np.abs(low - ref_low).max())
    assert diff <= 0.1 * scale, f"{what}: low-res logits differ by {diff:.2e} (std {scale:.2e})"
    corr = float(np.corrcoef(low.ravel(), ref_low.ravel())[0, 1])
    assert corr >= 0.999, f"{what}: low-res logits correlate {corr:.5f}"
    np.testing.assert_allclose(scores, ref_scores, atol=0.01, err_msg=what)


def test_embeddings_agree(predictor: Predictor, reference: Reference) -> None:
    for name, image in reference.images.items():
        predictor.set_image(image)
        ours, ref = predictor.get_image_embedding(), reference.embeddings[name]
        assert ours.shape == ref.shape
        corr = float(np.corrcoef(ours.ravel(), ref.ravel())[0, 1])
        assert corr >= 0.9999, f"{name}: embedding correlation {corr:.6f}"


def test_prompts_agree(predictor: Predictor, reference: Reference) -> None:
    for image_name, image in reference.images.items():
        predictor.set_image(image)
        h, w = image.shape[:2]
        assert predictor.original_size == (h, w)
        for prompt_name, multimask in CASES:
            ours = predictor.predict(multimask_output=multimask, **PROMPTS[prompt_name](h, w))
            _assert_agree(
                ours,
                reference.outputs[image_name, prompt_name, multimask],
                f"{reference.model.spec.name}/{image_name}/{prompt_name}/multimask={multimask}",
            )
        for prompt_name in PROMPTS:
            mask_input, ref = reference.mask_rounds[image_name, prompt_name]
            ours = predictor.predict(
                mask_input=mask_input, multimask_output=False, **PROMPTS[prompt_name](h, w)
            )
            _assert_agree(ours, ref, f"{image_name}/{prompt_name}/mask_input")


def test_predict_batch_agrees_with_batched_sam(predictor: Predictor, reference: Reference) -> None:
    for image_name, image in reference.images.items():
        predictor.set_image(image)
        prompts, ref = reference.batches[image_name]
        ours = predictor.predict_batch(prompts, multimask_output=True)
        _assert_agree(ours, ref, f"{image_name}/predict_batch")


def test_return_logits_matches_thresholded_masks(
    predictor: Predictor, reference: Reference
) -> None:
    _image_name, image = next(iter(reference.images.items()))
    predictor.set_image(image)
    h, w = image.shape[:2]
    kwargs = PROMPTS["point"](h, w)
    masks, _, _ = predictor.predict(**kwargs)
    logits, _, _ = predictor.predict(return_logits=True, **kwargs)
    assert logits.dtype == np.float32
    assert logits.shape == masks.shape
    np.testing.assert_array_equal(logits > 0, masks)
