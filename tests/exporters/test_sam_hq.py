"""SAM-HQ: the extra encoder output / decoder input, parity, checkpoints, Predictor agreement.

A reduced SAM-HQ (the package's own classes, 256 px, 2-block ViT; like the
reduced SAM) is exported per module, so the whole path runs in seconds: the
encoder's ``hq_features`` output, the decoder's matching input, parity, and
samedge's Predictor against ``segment_anything_hq.SamPredictor`` on the same
weights. The registered ViT-B export is in the ``slow`` test at the end.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("segment_anything_hq")
skimage_data = pytest.importorskip("skimage.data")

from samedge import graph_names  # noqa: E402
from samedge.errors import CheckpointError, InputError  # noqa: E402
from samedge.exporters import ExportConfig, export_model  # noqa: E402
from samedge.exporters.builders import build_sam_reduced, identify_checkpoint  # noqa: E402
from samedge.exporters.sam_hq import (  # noqa: E402
    build_sam_hq_reduced,
    build_sam_hq_vit_b,
    reduced_sam_hq_spec,
)
from samedge.masks import mask_iou  # noqa: E402
from samedge.model_dir import read_model_dir  # noqa: E402
from samedge.models import ModelSpec, get_model_spec  # noqa: E402
from samedge.predictor import ImageEmbedding, Predictor  # noqa: E402
from tests._factories import ExportedModel, export_random  # noqa: E402

ort = pytest.importorskip("onnxruntime")

MIN_IOU = 0.99


@pytest.fixture(scope="module")
def hq(tmp_path_factory: pytest.TempPathFactory) -> ExportedModel:
    """The reduced SAM-HQ, random weights seed 0, exported and verified (read-only)."""
    return export_random(reduced_sam_hq_spec(), tmp_path_factory.mktemp("hq") / "hq_reduced")


def _io(path: Path) -> tuple[list[tuple[str, list[Any]]], list[tuple[str, list[Any]]]]:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return (
        [(i.name, i.shape) for i in session.get_inputs()],
        [(o.name, o.shape) for o in session.get_outputs()],
    )


# -- registry and graphs ------------------------------------------------------------------


@pytest.mark.parametrize("size", ["b", "l", "h"])
def test_registered_with_the_hq_features(size: str) -> None:
    spec = get_model_spec(f"sam_hq_vit_{size}")
    assert spec.image_size == 1024
    assert spec.extra_features == ((graph_names.HQ_FEATURES, (32, 256, 256)),)


def test_extra_features_are_validated() -> None:
    base = get_model_spec("sam_hq_vit_b")
    with pytest.raises(InputError, match=r"extra_features: got .*positive dims"):
        ModelSpec(**{**base.__dict__, "extra_features": (("hq_features", (32, 0, 256)),)})


def test_export_adds_one_encoder_output_and_one_decoder_input(hq: ExportedModel) -> None:
    card = read_model_dir(hq.dir)
    parity = card.details["parity"]
    assert parity["passed"] is True
    assert set(parity["encoder"]["extras"]) == {graph_names.HQ_FEATURES}
    assert all(case["mask_iou"] >= 0.99 for case in parity["decoder"])
    enc_in, enc_out = _io(hq.dir / "encoder.onnx")
    assert enc_in == [("image", [1, 3, 256, 256])]
    assert enc_out == [
        (graph_names.IMAGE_EMBEDDINGS, [1, 256, 16, 16]),
        (graph_names.HQ_FEATURES, [1, 32, 64, 64]),
    ]
    dec_in, dec_out = _io(hq.dir / "decoder.onnx")
    # SAM's five inputs keep their names and order; the HQ features come last.
    assert [name for name, _ in dec_in] == [*graph_names.DECODER_INPUTS, graph_names.HQ_FEATURES]
    assert dec_in[-1] == (graph_names.HQ_FEATURES, [1, 32, 64, 64])
    assert dec_out == [
        (graph_names.LOW_RES_MASKS, ["B", 4, 64, 64]),
        (graph_names.IOU_PREDICTIONS, ["B", 4]),
    ]


# -- checkpoints --------------------------------------------------------------------------


def test_sam_checkpoint_given_to_sam_hq(tmp_path: Path) -> None:
    path = tmp_path / "sam.pth"
    torch.save(build_sam_reduced(None).state_dict(), path)
    with pytest.raises(CheckpointError, match=r"does not fit sam_hq_reduced .*missing.*hf_token"):
        build_sam_hq_reduced(path)


def test_identify_hq_apart_from_sam() -> None:
    with torch.device("meta"):
        hq_shapes = {k: tuple(v.shape) for k, v in build_sam_hq_vit_b(None).state_dict().items()}
    assert identify_checkpoint(hq_shapes) == "sam_hq_vit_b"


# -- Predictor vs segment_anything_hq.SamPredictor ----------------------------------------


PROMPTS: dict[str, Any] = {
    "point": lambda h, w: {
        "point_coords": np.array([[0.4 * w, 0.5 * h]]),
        "point_labels": np.array([1]),
    },
    "box": lambda h, w: {"box": np.array([0.2 * w, 0.2 * h, 0.7 * w, 0.8 * h])},
}
IMAGES = ("chelsea", "coffee")


@pytest.fixture(scope="module")
def reference(hq: ExportedModel) -> dict[tuple[str, str, bool], tuple[np.ndarray, ...]]:
    from segment_anything_hq import SamPredictor

    ref = SamPredictor(build_sam_hq_reduced(hq.checkpoint))
    outputs = {}
    for image_name in IMAGES:
        image = getattr(skimage_data, image_name)()
        h, w = image.shape[:2]
        ref.set_image(image)
        for prompt_name in PROMPTS:
            for multimask in (True, False):
                outputs[image_name, prompt_name, multimask] = ref.predict(
                    multimask_output=multimask, **PROMPTS[prompt_name](h, w)
                )
    return outputs


@pytest.fixture(
    scope="module",
    params=["onnxruntime", pytest.param("openvino", marks=pytest.mark.openvino)],
)
def predictor(
    request: pytest.FixtureRequest, hq: ExportedModel, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Predictor]:
    if request.param == "onnxruntime":
        from samedge.runtimes import OrtConfig

        config: Any = OrtConfig(intra_op_threads=2)
    else:
        from samedge.runtimes import InferencePrecision, OpenVinoConfig

        config = OpenVinoConfig(
            inference_precision=InferencePrecision.FP32,
            num_threads=2,
            cache_dir=tmp_path_factory.mktemp("ov_cache"),
        )
    with Predictor(hq.dir, backend=request.param, config=config) as p:
        yield p


def test_predictor_agrees_with_sam_hq_predictor(
    predictor: Predictor, reference: dict[tuple[str, str, bool], tuple[np.ndarray, ...]]
) -> None:
    for image_name in IMAGES:
        image = getattr(skimage_data, image_name)()
        h, w = image.shape[:2]
        predictor.set_image(image)
        for prompt_name in PROMPTS:
            for multimask in (True, False):
                what = f"{image_name}/{prompt_name}/multimask={multimask}"
                masks, scores, low = predictor.predict(
                    multimask_output=multimask, **PROMPTS[prompt_name](h, w)
                )
                ref_masks, ref_scores, ref_low = reference[image_name, prompt_name, multimask]
                # SAM-HQ's multimask output is the best of the three: samedge returns
                # all three (each with the HQ mask added) and their scores.
                pick = int(np.argmax(scores)) if multimask else 0
                assert ref_masks.shape == (1, h, w), what
                assert 0.001 < ref_masks[0].mean() < 0.999, f"{what}: trivial reference mask"
                iou = mask_iou(masks[pick], ref_masks[0])
                assert iou >= MIN_IOU, f"{what}: IoU {iou:.5f} < {MIN_IOU}"
                np.testing.assert_allclose(scores[pick], ref_scores[0], atol=1e-3, err_msg=what)
                diff = float(np.abs(low[pick] - ref_low[0]).max())
                assert diff <= 0.02 * float(ref_low.std()), f"{what}: logits differ by {diff:.2e}"


def test_embedding_without_hq_features_is_refused(predictor: Predictor) -> None:
    image = skimage_data.chelsea()
    embedding = predictor.encode(image)
    assert set(embedding.extras) == {graph_names.HQ_FEATURES}
    bare = ImageEmbedding(
        embedding.features, embedding.original_size, embedding.input_size, embedding.image_size
    )
    predictor.set_embedding(bare)
    with pytest.raises(InputError, match=r"carries extras \[\].*needs \['hq_features'\]"):
        predictor.predict(box=np.array([10, 10, 200, 200]))
    predictor.set_embedding(embedding)
    masks, _, _ = predictor.predict(box=np.array([10, 10, 200, 200]), multimask_output=False)
    assert masks.shape == (1, *image.shape[:2])


# -- the registered ViT-B -----------------------------------------------------------------


@pytest.mark.slow
def test_sam_hq_vit_b_export_parity(tmp_path: Path) -> None:
    """Random-weight ViT-B HQ: 4.4 GiB peak, about 4 minutes on 2 shared cores."""
    report = export_model(
        "sam_hq_vit_b", None, tmp_path / "hq_b", config=ExportConfig(progress=False)
    )
    assert report.verified
    assert report.parity is not None
    assert report.parity.encoder is not None
    assert set(report.parity.encoder.extras) == {graph_names.HQ_FEATURES}
    card = read_model_dir(tmp_path / "hq_b")
    assert (card.model, card.image_size) == ("sam_hq_vit_b", 1024)


def test_fp16_and_int8_builds_feed_the_hq_features(hq: ExportedModel, tmp_path: Path) -> None:
    # The build measures the decoder with the encoder's hq_features, as the Predictor runs it.
    from samedge.calibration import BuildConfig, GateConfig, Precision, build

    # Random weights: the report must be measured, whatever the gate says of it.
    lenient = GateConfig(min_mean_iou=0.0, min_p5_iou=0.0)
    for precision in (Precision.FP16, Precision.INT8):
        out = tmp_path / precision.value
        config = BuildConfig(
            precision=precision, frames=2, heldout=1, speed_runs=0, gate=lenient, fallback=False
        )
        report = build(hq.dir, out, config)
        assert report.fidelity.masks > 0
        assert 0.0 <= report.fidelity.mean_iou <= 1.0
        with Predictor(out, backend="onnxruntime") as p:
            p.set_image(np.zeros((64, 96, 3), np.uint8))
            masks, _, _ = p.predict(box=np.array([10, 10, 50, 40]), multimask_output=False)
        assert masks.shape == (1, 64, 96)
