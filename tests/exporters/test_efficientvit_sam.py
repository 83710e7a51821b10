"""EfficientViT-SAM: registry, export parity, checkpoints, Predictor vs its own predictor, build.

L0 (the smallest) is exported once per module with seeded random weights
(about half a minute here). Its encoder takes 512 px while its prompt encoder
and its predictor's mask upsampling work in 1024 px; the card carries both
sizes and the tests check that samedge's Predictor gives the masks of
``EfficientViTSamPredictor`` on the same weights.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("efficientsam")
skimage_data = pytest.importorskip("skimage.data")

from samedge import graph_names  # noqa: E402
from samedge.errors import CheckpointError, UnknownNameError  # noqa: E402
from samedge.exporters import export_model  # noqa: E402
from samedge.exporters.builders import identify_checkpoint  # noqa: E402
from samedge.exporters.decoder import PromptDecoderGraph  # noqa: E402
from samedge.exporters.efficientvit_sam import (  # noqa: E402
    EFFICIENTVIT_SAM_SIZES,
    build_efficientvit_sam_l0,
)
from samedge.masks import mask_iou  # noqa: E402
from samedge.model_dir import read_model_dir  # noqa: E402
from samedge.models import get_model_spec  # noqa: E402
from samedge.predictor import Predictor  # noqa: E402
from tests._factories import export_random  # noqa: E402

if TYPE_CHECKING:
    from efficientsam.models.efficientvit.sam import EfficientViTSamPredictor

    from tests._factories import ExportedModel

ort = pytest.importorskip("onnxruntime")

SIZES = list(EFFICIENTVIT_SAM_SIZES)
MIN_IOU = 0.99


@pytest.fixture(scope="module")
def l0(tmp_path_factory: pytest.TempPathFactory) -> ExportedModel:
    """EfficientViT-SAM-L0, random weights seed 0, exported and verified (read-only)."""
    return export_random("efficientvit_sam_l0", tmp_path_factory.mktemp("evit") / "l0")


def _meta_model(size: str) -> Any:
    from efficientsam.sam_model_zoo import create_efficientvit_sam_model

    with torch.device("meta"):  # shapes and attributes only: no memory, even for XL1
        return create_efficientvit_sam_model(EFFICIENTVIT_SAM_SIZES[size], pretrained=False)


# -- registry -----------------------------------------------------------------------------


@pytest.mark.parametrize("size", SIZES)
def test_spec_matches_the_package(size: str) -> None:
    spec = get_model_spec(f"efficientvit_sam_{size}")
    model = _meta_model(size)
    prompt_frame, encoder_size = model.image_size
    assert spec.image_size == encoder_size == (512 if size.startswith("l") else 1024)
    assert spec.mask_upsample_size == prompt_frame == 1024
    assert tuple(model.prompt_encoder.input_image_size) == (1024, 1024)
    assert spec.embedding_shape[1:] == tuple(model.prompt_encoder.image_embedding_size)
    # The package normalises in 0..1 after ToTensor; the spec in 0..255.
    normalize = next(t for t in model.transform.transforms if hasattr(t, "mean"))
    np.testing.assert_allclose(np.array(normalize.mean) * 255, spec.pixel_mean, rtol=1e-6)
    np.testing.assert_allclose(np.array(normalize.std) * 255, spec.pixel_std, rtol=1e-6)


def test_unknown_size_suggests_the_closest() -> None:
    with pytest.raises(UnknownNameError, match=r"Did you mean 'efficientvit_sam_l1'"):
        get_model_spec("efficientvit_sam_l11")


# -- export -------------------------------------------------------------------------------


def test_l0_export_is_verified_and_carries_both_sizes(l0: ExportedModel) -> None:
    card = read_model_dir(l0.dir)
    assert (card.model, card.image_size, card.mask_upsample_size) == (
        "efficientvit_sam_l0",
        512,
        1024,
    )
    assert card.embedding_shape == (256, 64, 64)
    parity = card.details["parity"]
    assert parity["passed"] is True
    assert parity["encoder"]["max_abs_diff"] < 1e-3
    assert all(case["mask_iou"] >= 0.99 for case in parity["decoder"])
    encoder = ort.InferenceSession(str(l0.dir / "encoder.onnx"), providers=["CPUExecutionProvider"])
    decoder = ort.InferenceSession(str(l0.dir / "decoder.onnx"), providers=["CPUExecutionProvider"])
    assert [(i.name, i.shape) for i in encoder.get_inputs()] == [("image", [1, 3, 512, 512])]
    assert [o.name for o in encoder.get_outputs()] == list(graph_names.ENCODER_OUTPUTS)
    # SAM's decoder contract, unchanged.
    assert [i.name for i in decoder.get_inputs()] == list(graph_names.DECODER_INPUTS)
    assert [o.name for o in decoder.get_outputs()] == list(graph_names.DECODER_OUTPUTS)


def test_decoder_graph_scales_prompts_only_when_frames_differ() -> None:
    from samedge.exporters.builders import build_sam_reduced

    assert PromptDecoderGraph(build_sam_reduced(None), 256).frame_scale is None
    scale = PromptDecoderGraph(build_efficientvit_sam_l0(None), 512).frame_scale
    assert scale is not None
    assert scale.tolist() == [2.0, 2.0]


# -- checkpoints --------------------------------------------------------------------------


@pytest.mark.parametrize("size", SIZES)
def test_identify_each_size(size: str) -> None:
    shapes = {k: tuple(v.shape) for k, v in _meta_model(size).state_dict().items()}
    assert identify_checkpoint(shapes) == f"efficientvit_sam_{size}"


def test_checkpoint_of_another_size_names_the_size(l0: ExportedModel, tmp_path: Path) -> None:
    with pytest.raises(CheckpointError) as info:
        export_model("efficientvit_sam_l1", l0.checkpoint, tmp_path / "out")
    message = str(info.value)
    assert "does not fit efficientvit_sam_l1" in message
    assert "looks like a efficientvit_sam_l0 checkpoint" in message
    assert "samedge export efficientvit_sam_l0" in message
    assert not (tmp_path / "out").exists()


# -- Predictor vs EfficientViTSamPredictor ------------------------------------------------

# Fractions of the frame, so they fit every image size.
PROMPTS: dict[str, Any] = {
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


def _images() -> dict[str, np.ndarray]:
    # coffee (400x600) resizes to 341 rows at 512 px but 683 (not 682) at
    # 1024: the two frames' rounding differ, as in most real frames.
    return {
        "coffee": skimage_data.coffee(),
        "chelsea": skimage_data.chelsea(),
        "astronaut": skimage_data.astronaut(),
    }


@pytest.fixture(scope="module")
def reference(l0: ExportedModel) -> dict[tuple[str, str, bool], tuple[np.ndarray, ...]]:
    from efficientsam.models.efficientvit.sam import EfficientViTSamPredictor

    ref: EfficientViTSamPredictor = EfficientViTSamPredictor(
        build_efficientvit_sam_l0(l0.checkpoint)
    )
    outputs = {}
    for image_name, image in _images().items():
        h, w = image.shape[:2]
        ref.set_image(image)
        for prompt_name, multimask in CASES:
            outputs[image_name, prompt_name, multimask] = ref.predict(
                multimask_output=multimask, **PROMPTS[prompt_name](h, w)
            )
    return outputs


def _config(backend: str, cache_dir: Path) -> Any:
    if backend == "onnxruntime":
        from samedge.runtimes import OrtConfig

        return OrtConfig(intra_op_threads=2)
    from samedge.runtimes import InferencePrecision, OpenVinoConfig

    # OpenVINO defaults to bf16 on CPUs with AMX: compare in f32.
    return OpenVinoConfig(
        inference_precision=InferencePrecision.FP32, num_threads=2, cache_dir=cache_dir
    )


@pytest.fixture(
    scope="module",
    params=["onnxruntime", pytest.param("openvino", marks=pytest.mark.openvino)],
)
def predictor(
    request: pytest.FixtureRequest, l0: ExportedModel, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Predictor]:
    config = _config(request.param, tmp_path_factory.mktemp("ov_cache"))
    with Predictor(l0.dir, backend=request.param, config=config) as p:
        assert p.precision == "fp32"
        yield p


def test_predictor_agrees_with_efficientvit_sam_predictor(
    predictor: Predictor, reference: dict[tuple[str, str, bool], tuple[np.ndarray, ...]]
) -> None:
    for image_name, image in _images().items():
        predictor.set_image(image)
        h, w = image.shape[:2]
        for prompt_name, multimask in CASES:
            what = f"{image_name}/{prompt_name}/multimask={multimask}"
            masks, scores, low = predictor.predict(
                multimask_output=multimask, **PROMPTS[prompt_name](h, w)
            )
            ref_masks, ref_scores, ref_low = reference[image_name, prompt_name, multimask]
            assert masks.shape == ref_masks.shape == (3 if multimask else 1, h, w), what
            for i, (m, r) in enumerate(zip(masks, ref_masks, strict=True)):
                assert 0.001 < r.mean() < 0.999, f"{what}[{i}]: trivial reference mask"
                iou = mask_iou(m, r)
                assert iou >= MIN_IOU, f"{what}[{i}]: IoU {iou:.5f} < {MIN_IOU}"
            # Prompts land where EfficientViT-SAM puts them up to the two frames'
            # rounding (coffee): logits agree to a small fraction of their spread.
            assert float(np.abs(low - ref_low).max()) <= 0.02 * float(ref_low.std()), what
            np.testing.assert_allclose(scores, ref_scores, atol=0.01, err_msg=what)


# -- build --------------------------------------------------------------------------------


def test_fp16_build_passes_its_gate_and_predicts(l0: ExportedModel, tmp_path: Path) -> None:
    from samedge.calibration import BuildConfig, Precision, build

    out = tmp_path / "l0_fp16"
    config = BuildConfig(precision=Precision.FP16, frames=1, heldout=1, speed_runs=0)
    report = build(l0.dir, out, config)
    assert report.passed
    card = read_model_dir(out)
    assert (card.precision, card.image_size, card.mask_upsample_size) == ("fp16", 512, 1024)
    image = skimage_data.chelsea()
    h, w = image.shape[:2]
    with Predictor(l0.dir, backend="onnxruntime") as fp32, Predictor(out, precision="fp16") as fp16:
        fp32.set_image(image)
        fp16.set_image(image)
        box = np.array([0.2 * w, 0.2 * h, 0.7 * w, 0.8 * h])
        ref, _, _ = fp32.predict(box=box, multimask_output=False)
        got, scores, _ = fp16.predict(box=box, multimask_output=False)
    assert np.isfinite(scores).all()
    assert mask_iou(got[0], ref[0]) >= 0.9
