"""Predictor behaviour over stand-in backends (no torch, no ONNX needed).

The stand-ins follow the encoder/decoder I/O contract with simple, exactly
known maths: the decoder draws a disc around an object's first point or fills
its box, in the encoder's input frame. So coordinate handling, batching,
selection and upsampling can be checked end to end against the original
frame. Agreement with segment_anything on real graphs is in
``test_predictor_agreement.py``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest

import samedge.runtimes
from samedge.errors import (
    BackendError,
    ImageError,
    InputError,
    ModelDirError,
    PredictorStateError,
    ProfileLimitError,
    PromptError,
)
from samedge.model_dir import ModelCard, write_model_card
from samedge.models import SAM_PIXEL_MEAN, SAM_PIXEL_STD
from samedge.postprocess import postprocess_masks
from samedge.predictor import BUILTIN_MODELS, ImageEmbedding, Predictor, resolve_model
from samedge.preprocess import Resample, resize_longest_side
from samedge.prompts import ObjectPrompt
from samedge.runtimes.base import Backend, TensorSpec

S = 64  # encoder input side
GRID = 8  # embedding h = w
L = 4 * GRID  # low-res mask side
C = 4  # embedding channels
MEAN = SAM_PIXEL_MEAN
F32 = np.dtype(np.float32)


class FakeEncoder(Backend):
    name: ClassVar[str] = "fake"

    def __init__(self, model_path: Path) -> None:
        super().__init__(model_path)
        self.seen: list[np.ndarray] = []
        self.closed = 0

    def _load(self) -> None:
        self._inputs = (TensorSpec("image", F32, (1, 3, S, S)),)
        self._outputs = (TensorSpec("image_embeddings", F32, (1, C, GRID, GRID)),)

    def _infer(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        image = feeds["image"]
        self.seen.append(image.copy())
        pooled = image.reshape(1, 3, GRID, S // GRID, GRID, S // GRID).mean(axis=(3, 5))
        return {"image_embeddings": np.concatenate([pooled, pooled[:, :1]], axis=1)}

    def _close(self) -> None:
        self.closed += 1

    @property
    def precision(self) -> str:
        return "bf16"

    @property
    def device(self) -> str:
        return "FAKE:0" if self._loaded else "not loaded"


class FakeDecoder(Backend):
    """Object b's mask k: a disc of radius 4(k+1) px (input frame) around its first
    point, or its box filled; plus mask_input where has_mask_input is 1."""

    name: ClassVar[str] = "fake"
    max_objects = 16

    def __init__(self, model_path: Path) -> None:
        super().__init__(model_path)
        self.seen: list[dict[str, np.ndarray]] = []
        self.closed = 0

    def _load(self) -> None:
        self._inputs = (
            TensorSpec("image_embeddings", F32, (1, C, GRID, GRID)),
            TensorSpec("point_coords", F32, ("B", "N", 2)),
            TensorSpec("point_labels", F32, ("B", "N")),
            TensorSpec("mask_input", F32, ("B", 1, L, L)),
            TensorSpec("has_mask_input", F32, ("B",)),
        )
        self._outputs = (
            TensorSpec("low_res_masks", F32, ("B", 4, L, L)),
            TensorSpec("iou_predictions", F32, ("B", 4)),
        )

    def _infer(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        self.seen.append({k: v.copy() for k, v in feeds.items()})
        coords, labels = feeds["point_coords"], feeds["point_labels"]
        B = coords.shape[0]
        if self.max_objects < B:
            raise ProfileLimitError(
                f"decoder: got B={B} objects, the engine profile allows up to "
                f"{self.max_objects}; rebuild with a larger max_objects"
            )
        # Pixel centres of the low-res grid, in input-frame pixels.
        centres = (np.arange(L) + 0.5) * (S / L) - 0.5
        yy, xx = np.meshgrid(centres, centres, indexing="ij")
        masks = np.empty((B, 4, L, L), np.float32)
        for b in range(B):
            if labels[b, 0] == 2:  # box: corners at 0 and 1
                (x0, y0), (x1, y1) = coords[b, 0], coords[b, 1]
                inside = np.minimum.reduce([xx - x0, x1 - xx, yy - y0, y1 - yy])
                for k in range(4):
                    masks[b, k] = inside + k
            else:
                x, y = coords[b, 0]
                dist = np.hypot(xx - x, yy - y)
                for k in range(4):
                    masks[b, k] = 4.0 * (k + 1) - dist
        masks += feeds["has_mask_input"][:, None, None, None] * feeds["mask_input"]
        iou = (np.arange(4, dtype=np.float32)[None] + np.arange(B)[:, None]) / 10
        return {"low_res_masks": masks, "iou_predictions": iou.astype(np.float32)}

    def _close(self) -> None:
        self.closed += 1


def _card(**kwargs: Any) -> ModelCard:
    fields: dict[str, Any] = {
        "model": "fake_sam",
        "image_size": S,
        "pixel_mean": MEAN,
        "pixel_std": SAM_PIXEL_STD,
        "embedding_shape": (C, GRID, GRID),
    }
    fields.update(kwargs)
    return ModelCard(**fields)


def _model_dir(root: Path, **card: Any) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "encoder.onnx").write_bytes(b"stand-in")
    (root / "decoder.onnx").write_bytes(b"stand-in")
    write_model_card(root, _card(**card))
    return root


@pytest.fixture
def opened(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """Route open_backend to the stand-ins; record each call."""
    calls: list[dict[str, Any]] = []

    def fake_open_backend(
        model_path: Path, backend: str = "auto", *, config: Any = None, device: Any = None
    ) -> Backend:
        calls.append(
            {"path": Path(model_path), "backend": backend, "config": config, "device": device}
        )
        cls = FakeEncoder if Path(model_path).name == "encoder.onnx" else FakeDecoder
        instance = cls(Path(model_path))
        calls[-1]["instance"] = instance
        return instance

    monkeypatch.setattr(samedge.runtimes, "open_backend", fake_open_backend, raising=False)
    return calls


@pytest.fixture
def model_dir(tmp_path: Path) -> Path:
    return _model_dir(tmp_path / "fake_model")


@pytest.fixture
def predictor(model_dir: Path, opened: list[dict[str, Any]]) -> Predictor:
    return Predictor(model_dir)


def _frame(h: int = 48, w: int = 96, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


# -- model resolution --------------------------------------------------------------------


def test_resolve_model_directory(model_dir: Path) -> None:
    assert resolve_model(model_dir) == model_dir
    assert resolve_model(str(model_dir)) == model_dir


def test_resolve_builtin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    builtin = _model_dir(tmp_path / "tiny")
    # An absolute path joined onto the package directory stays absolute.
    monkeypatch.setitem(BUILTIN_MODELS, "samedge_tiny", str(builtin))
    assert resolve_model("samedge_tiny") == builtin


def test_missing_builtin_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(BUILTIN_MODELS, "samedge_tiny", str(tmp_path / "absent"))
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ModelDirError, match=r"files are not in this installation.*reinstall"):
        resolve_model("samedge_tiny")


@pytest.mark.parametrize(
    ("name", "pattern"),
    [
        (
            "samedge_tiyn",
            r"no such directory.*valid names: samedge_tiny.*Did you mean 'samedge_tiny'",
        ),
        ("out/mobile_sam_typo", r"'out/mobile_sam_typo': no such directory"),
        ("mobile_sam", r"is an architecture, not a built model.*samedge export mobile_sam"),
    ],
)
def test_unknown_models(
    name: str, pattern: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ModelDirError, match=pattern):
        resolve_model(name)


def test_model_path_is_a_file(model_dir: Path) -> None:
    with pytest.raises(ModelDirError, match="is a file, expected a model directory"):
        resolve_model(model_dir / "encoder.onnx")
    with pytest.raises(ModelDirError, match="got int"):
        resolve_model(3)  # type: ignore[arg-type]


def test_model_dir_missing_a_file(model_dir: Path, opened: list[dict[str, Any]]) -> None:
    (model_dir / "decoder.onnx").unlink()
    with pytest.raises(ModelDirError, match=r"missing decoder\.onnx"):
        Predictor(model_dir)
    assert not opened


def test_model_dir_from_a_newer_samedge(model_dir: Path, opened: list[dict[str, Any]]) -> None:
    card = json.loads((model_dir / "samedge.json").read_text())
    card["format_version"] = 99
    card["samedge_version"] = "9.0.0"
    (model_dir / "samedge.json").write_text(json.dumps(card))
    with pytest.raises(ModelDirError, match=r"format_version 99 .*samedge 9\.0\.0.*pip install -U"):
        Predictor(model_dir)


def test_precision_must_match_the_directory(model_dir: Path, opened: list[dict[str, Any]]) -> None:
    with pytest.raises(ModelDirError, match=r"holds fp32, int8 was asked for.*samedge build"):
        Predictor(model_dir, precision="int8")
    with pytest.raises(InputError, match=r"precision: got 'int4'"):
        Predictor(model_dir, precision="int4")
    assert Predictor(model_dir, precision="fp32").card.precision == "fp32"


# -- construction and lifetime -------------------------------------------------------------


def test_opens_both_graphs_with_the_callers_settings(
    model_dir: Path, opened: list[dict[str, Any]]
) -> None:
    config = object()
    p = Predictor(model_dir, backend="onnxruntime", device="cpu", config=config)
    assert [c["path"].name for c in opened] == ["encoder.onnx", "decoder.onnx"]
    # One decision for both graphs, which carries the device.
    assert opened[0]["backend"] is opened[1]["backend"] is p.backend_choice
    for call in opened:
        assert (call["backend"].name, call["backend"].device) == ("onnxruntime", "cpu")
        assert call["config"] is config
    assert p.backend_reason == p.backend_choice.reason
    assert p.backend_name == "fake"
    assert p.precision == "bf16"
    assert p.device == "FAKE:0"
    assert "fake_sam" in repr(p)


def test_close_and_context_manager(model_dir: Path, opened: list[dict[str, Any]]) -> None:
    with Predictor(model_dir) as p:
        p.set_image(_frame())
        assert p.is_image_set
    encoder, decoder = (c["instance"] for c in opened)
    assert encoder.closed == 1
    assert decoder.closed == 1
    assert not p.is_image_set
    p.close()  # closing twice is harmless
    assert encoder.closed == 1


def test_graphs_not_following_the_contract(
    model_dir: Path, opened: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    original = FakeDecoder._load

    def no_mask_load(self: FakeDecoder) -> None:
        original(self)
        self._inputs = tuple(self._inputs[:3])

    monkeypatch.setattr(FakeDecoder, "_load", no_mask_load)
    p = Predictor(model_dir)
    with pytest.raises(ModelDirError, match=r"decoder.onnx inputs .* expected .*has_mask_input"):
        p.set_image(_frame())


# -- state ---------------------------------------------------------------------------------


def test_everything_needs_an_image_first(predictor: Predictor) -> None:
    assert not predictor.is_image_set
    with pytest.raises(PredictorStateError, match=r"predict: no image is set; call set_image"):
        predictor.predict(point_coords=np.array([[1, 1]]), point_labels=np.array([1]))
    with pytest.raises(PredictorStateError, match="predict_batch"):
        predictor.predict_batch([ObjectPrompt(box=[0, 0, 5, 5])])
    with pytest.raises(PredictorStateError, match="get_image_embedding"):
        predictor.get_image_embedding()
    with pytest.raises(PredictorStateError, match="original_size"):
        _ = predictor.original_size
    with pytest.raises(RuntimeError):  # SamPredictor raises RuntimeError here
        predictor.predict(box=np.array([0, 0, 5, 5]))


def test_set_image_feeds_the_encoder_the_preprocessed_frame(
    predictor: Predictor, opened: list[dict[str, Any]]
) -> None:
    frame = _frame(48, 96)
    predictor.set_image(frame)
    assert predictor.original_size == (48, 96)
    assert predictor.input_size == (32, 64)
    encoder = opened[0]["instance"]
    x = encoder.seen[-1]
    np.testing.assert_array_equal(
        x[0, :, :32], predictor.transform.apply_image(frame).transpose(2, 0, 1).astype(np.float32)
    )
    assert np.all(x[0, 0, 32:] == np.float32(MEAN[0]))
    emb = predictor.get_image_embedding()
    assert emb.shape == (1, C, GRID, GRID)
    assert emb.dtype == np.float32
    assert not emb.flags.writeable


def test_bgr_frames(predictor: Predictor, opened: list[dict[str, Any]]) -> None:
    frame = _frame()
    predictor.set_image(frame)
    rgb_emb = predictor.get_image_embedding().copy()
    predictor.set_image(np.ascontiguousarray(frame[..., ::-1]), image_format="BGR")
    np.testing.assert_array_equal(predictor.get_image_embedding(), rgb_emb)


def test_a_bad_frame_keeps_the_previous_one(predictor: Predictor) -> None:
    predictor.set_image(_frame())
    before = predictor.get_image_embedding()
    for bad, error in (
        (np.zeros((48, 96, 3), np.float32), ImageError),
        (np.zeros((48, 96, 4), np.uint8), ImageError),
        (np.zeros((0, 96, 3), np.uint8), ImageError),
    ):
        with pytest.raises(error):
            predictor.set_image(bad)
    with pytest.raises(InputError, match="image_format"):
        predictor.set_image(_frame(), image_format="RGBA")
    assert predictor.get_image_embedding() is before


def test_grayscale_frame(predictor: Predictor) -> None:
    predictor.set_image(np.full((20, 30), 7, np.uint8))
    assert predictor.original_size == (20, 30)


def test_reset_image(predictor: Predictor) -> None:
    predictor.set_image(_frame())
    predictor.reset_image()
    assert not predictor.is_image_set
    with pytest.raises(PredictorStateError):
        predictor.predict(box=np.array([0, 0, 5, 5]))


# -- encode / set_embedding ------------------------------------------------------------------


def test_set_image_is_encode_then_set_embedding(
    model_dir: Path, opened: list[dict[str, Any]]
) -> None:
    frame = _frame(48, 96)
    whole, split = Predictor(model_dir), Predictor(model_dir)
    whole.set_image(frame)
    emb = split.encode(frame)
    assert isinstance(emb, ImageEmbedding)
    assert not split.is_image_set  # encode alone sets nothing
    split.set_embedding(emb)
    assert split.get_image_embedding() is emb.features
    assert not emb.features.flags.writeable
    np.testing.assert_array_equal(split.get_image_embedding(), whole.get_image_embedding())
    assert (split.original_size, split.input_size) == (whole.original_size, whole.input_size)
    assert (emb.original_size, emb.input_size, emb.image_size) == ((48, 96), (32, 64), S)
    box = np.array([10, 5, 60, 40])
    for a, b in zip(whole.predict(box=box), split.predict(box=box), strict=True):
        np.testing.assert_array_equal(a, b)
    # BGR goes through encode like through set_image.
    bgr = split.encode(np.ascontiguousarray(frame[..., ::-1]), image_format="BGR")
    np.testing.assert_array_equal(bgr.features, emb.features)


def test_encode_leaves_the_current_frame_alone(
    predictor: Predictor, opened: list[dict[str, Any]]
) -> None:
    first, second = _frame(48, 96, seed=1), _frame(60, 40, seed=2)
    predictor.set_image(first)
    current = predictor.get_image_embedding()
    ahead = predictor.encode(second)
    assert predictor.get_image_embedding() is current
    assert predictor.original_size == (48, 96)
    assert not np.array_equal(ahead.features, current)
    # Predictions still use the first frame's embedding and geometry.
    decoder = opened[1]["instance"]
    masks, _, _ = predictor.predict(box=np.array([0, 0, 20, 20]))
    assert masks.shape[1:] == (48, 96)
    np.testing.assert_array_equal(decoder.seen[-1]["image_embeddings"], current)
    predictor.set_embedding(ahead)
    masks, _, _ = predictor.predict(box=np.array([0, 0, 20, 20]))
    assert masks.shape[1:] == (60, 40)
    assert predictor.input_size == (64, 43)
    np.testing.assert_array_equal(decoder.seen[-1]["image_embeddings"], ahead.features)


def test_encode_errors_keep_the_current_frame(predictor: Predictor) -> None:
    predictor.set_image(_frame())
    before = predictor.get_image_embedding()
    with pytest.raises(ImageError, match="dtype float32"):
        predictor.encode(np.zeros((48, 96, 3), np.float32))
    with pytest.raises(InputError, match="image_format"):
        predictor.encode(_frame(), image_format="RGBA")
    assert predictor.get_image_embedding() is before


def test_a_failing_encoder_in_set_image_leaves_no_frame_but_not_in_encode(
    predictor: Predictor, opened: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """SamPredictor forgets the old frame before its encoder runs; encode() never touches it."""
    predictor.set_image(_frame())
    before = predictor.get_image_embedding()
    encoder = opened[0]["instance"]

    def broken(feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        raise RuntimeError("device lost")

    monkeypatch.setattr(encoder, "_infer", broken)
    with pytest.raises(BackendError, match="device lost"):
        predictor.encode(_frame(seed=3))
    assert predictor.get_image_embedding() is before
    with pytest.raises(BackendError, match="device lost"):
        predictor.set_image(_frame(seed=3))
    assert not predictor.is_image_set


def test_set_embedding_refuses_what_does_not_fit(
    model_dir: Path, tmp_path: Path, opened: list[dict[str, Any]]
) -> None:
    predictor = Predictor(model_dir)
    with pytest.raises(InputError, match=r"embedding: got ndarray, expected an ImageEmbedding"):
        predictor.set_embedding(np.zeros((1, C, GRID, GRID), np.float32))  # type: ignore[arg-type]
    other = Predictor(_model_dir(tmp_path / "other", image_size=2 * S))
    emb = predictor.encode(_frame())
    with pytest.raises(InputError, match=rf"computed for a {S}-px encoder.*takes {2 * S} px"):
        other.set_embedding(emb)
    assert not other.is_image_set
    wrong = ImageEmbedding(np.zeros((1, C + 1, GRID, GRID), np.float32), (48, 96), (32, 64), S)
    with pytest.raises(InputError, match=r"features \(1, 5, 8, 8\).*makes \(1, 4, 8, 8\)"):
        predictor.set_embedding(wrong)


@pytest.mark.parametrize(
    ("fields", "match"),
    [
        ({"features": np.zeros((1, C, GRID, GRID))}, r"features: got float64 \(1, 4, 8, 8\)"),
        ({"features": [[0.0]]}, "features: got list, expected a float32"),
        ({"original_size": [48, 96]}, r"original_size: got \[48, 96\], expected \(height"),
        ({"input_size": (32, 0)}, "input_size: got"),
        ({"image_size": 0}, "image_size: got 0, expected a positive int"),
        ({"input_size": (32, 63)}, r"input_size: got \(32, 63\), expected \(32, 64\)"),
    ],
)
def test_image_embedding_checks_its_fields(fields: dict[str, Any], match: str) -> None:
    args: dict[str, Any] = {
        "features": np.zeros((1, C, GRID, GRID), np.float32),
        "original_size": (48, 96),
        "input_size": (32, 64),
        "image_size": S,
    }
    args.update(fields)
    with pytest.raises(InputError, match=match):
        ImageEmbedding(**args)


def test_a_writeable_embedding_is_copied_read_only(predictor: Predictor) -> None:
    features = np.ones((1, C, GRID, GRID), np.float32)
    predictor.set_embedding(ImageEmbedding(features, (48, 96), (32, 64), S))
    held = predictor.get_image_embedding()
    assert not held.flags.writeable
    assert features.flags.writeable  # the caller's array is left as it was
    features[:] = 7.0
    assert float(held.max()) == 1.0  # and changing it does not reach the predictor


def test_image_embedding_is_public() -> None:
    import samedge

    assert samedge.ImageEmbedding is ImageEmbedding
    assert "ImageEmbedding" in samedge.__all__


# -- predict -------------------------------------------------------------------------------


def test_point_prompt_lands_where_clicked(predictor: Predictor) -> None:
    predictor.set_image(_frame(48, 96))  # scale 2/3 to the 32×64 input
    x, y = 30, 20
    masks, scores, low = predictor.predict(
        point_coords=np.array([[x, y]]), point_labels=np.array([1])
    )
    assert masks.shape == (3, 48, 96)
    assert masks.dtype == np.bool_
    assert scores.shape == (3,)
    assert scores.dtype == np.float32
    np.testing.assert_allclose(scores, [0.1, 0.2, 0.3])
    assert low.shape == (3, L, L)
    assert low.dtype == np.float32
    # Multimask outputs 1..3: discs of radius 8, 12, 16 input px = 12, 18, 24 frame px.
    for k, radius in enumerate((12, 18, 24)):
        assert masks[k, y, x]
        assert masks[k, y, x + radius - 3]
        assert not masks[k, y, x + radius + 3]
        assert masks[k].sum() == pytest.approx(np.pi * radius**2, rel=0.15)


def test_single_mask_and_logits(predictor: Predictor) -> None:
    predictor.set_image(_frame())
    masks, scores, _low = predictor.predict(
        point_coords=np.array([[30, 20]]), point_labels=np.array([1]), multimask_output=False
    )
    assert masks.shape == (1, 48, 96)
    assert scores.tolist() == pytest.approx([0.0])
    logits, _, _ = predictor.predict(
        point_coords=np.array([[30, 20]]),
        point_labels=np.array([1]),
        multimask_output=False,
        return_logits=True,
    )
    assert logits.dtype == np.float32
    np.testing.assert_array_equal(logits > 0, masks)


def test_box_prompt_fills_the_box(predictor: Predictor, opened: list[dict[str, Any]]) -> None:
    predictor.set_image(_frame(48, 96))
    box = np.array([15, 9, 75, 39])
    masks, _, _ = predictor.predict(box=box, multimask_output=False)
    expected = np.zeros((48, 96), bool)
    expected[9:40, 15:76] = True
    iou = (masks[0] & expected).sum() / (masks[0] | expected).sum()
    assert iou > 0.9
    decoder = opened[1]["instance"]
    np.testing.assert_array_equal(decoder.seen[-1]["point_labels"], [[2, 3]])
    np.testing.assert_allclose(decoder.seen[-1]["point_coords"], [[[10, 6], [50, 26]]])


def test_mask_input_round_trip(predictor: Predictor, opened: list[dict[str, Any]]) -> None:
    predictor.set_image(_frame())
    pts, lbl = np.array([[30, 20]]), np.array([1])
    _, scores, low = predictor.predict(point_coords=pts, point_labels=lbl)
    best = low[np.argmax(scores)][None]
    masks, _, _low2 = predictor.predict(
        point_coords=pts, point_labels=lbl, mask_input=best, multimask_output=False
    )
    fed = opened[1]["instance"].seen[-1]
    np.testing.assert_array_equal(fed["has_mask_input"], [1])
    np.testing.assert_array_equal(fed["mask_input"][0], best)
    assert masks.shape == (1, 48, 96)
    with pytest.raises(
        PromptError, match=r"mask_input: got shape \(1, 16, 16\), expected \(1, 32, 32\)"
    ):
        predictor.predict(point_coords=pts, point_labels=lbl, mask_input=np.zeros((1, 16, 16)))


@pytest.mark.parametrize(
    ("kwargs", "pattern"),
    [
        ({}, "no points and no box"),
        ({"point_coords": np.array([[1, 1]])}, "without point_labels"),
        (
            {"point_coords": np.array([[1, 1], [2, 2]]), "point_labels": np.array([1])},
            "1 labels for 2 points",
        ),
        ({"point_coords": np.array([[97, 1]]), "point_labels": np.array([1])}, "outside the 96×48"),
        ({"box": np.array([50, 0, 10, 10])}, "x1 < x0"),
        ({"box": np.array([0, 0, 10, 49])}, "outside"),
        ({"point_coords": np.array([[np.nan, 1]]), "point_labels": np.array([1])}, "NaN"),
    ],
)
def test_bad_prompts_through_predict(
    predictor: Predictor, kwargs: dict[str, Any], pattern: str
) -> None:
    predictor.set_image(_frame(48, 96))
    with pytest.raises(PromptError, match=pattern):
        predictor.predict(**kwargs)


# -- predict_batch ----------------------------------------------------------------------------


def test_predict_batch_matches_one_by_one(
    predictor: Predictor, opened: list[dict[str, Any]]
) -> None:
    predictor.set_image(_frame(48, 96))
    prompts = [
        ObjectPrompt(point_coords=[[30, 20]], point_labels=[1]),
        ObjectPrompt(box=[10, 5, 60, 40]),
        ObjectPrompt(point_coords=[[80, 30], [5, 5]], point_labels=[1, 0], box=[60, 10, 95, 47]),
    ]
    masks, scores, low = predictor.predict_batch(prompts)
    assert masks.shape == (3, 3, 48, 96)
    assert scores.shape == (3, 3)
    assert low.shape == (3, 3, L, L)
    decoder = opened[1]["instance"]
    assert len(decoder.seen) == 1  # one decoder call for the batch
    np.testing.assert_array_equal(
        decoder.seen[0]["point_labels"], [[1, -1, -1, -1], [2, 3, -1, -1], [1, 0, 2, 3]]
    )
    for i, p in enumerate(prompts):
        m, _, lo = predictor.predict(
            point_coords=p.point_coords, point_labels=p.point_labels, box=p.box
        )
        np.testing.assert_array_equal(masks[i], m)
        np.testing.assert_array_equal(low[i], lo)
    single, _, _ = predictor.predict_batch(prompts, multimask_output=False, return_logits=True)
    assert single.shape == (3, 1, 48, 96)
    assert single.dtype == np.float32


def test_predict_batch_bad_input(predictor: Predictor) -> None:
    predictor.set_image(_frame(48, 96))
    with pytest.raises(PromptError, match="empty sequence"):
        predictor.predict_batch([])
    with pytest.raises(PromptError, match=r"prompts\[1\]\.box: .*outside"):
        predictor.predict_batch([ObjectPrompt(box=[0, 0, 5, 5]), ObjectPrompt(box=[0, 0, 500, 5])])


def test_profile_limit_error_propagates(predictor: Predictor) -> None:
    predictor.set_image(_frame(48, 96))
    prompts = [ObjectPrompt(box=[0, 0, 5, 5])] * (FakeDecoder.max_objects + 1)
    with pytest.raises(ProfileLimitError, match="allows up to 16"):
        predictor.predict_batch(prompts)
    # The predictor stays usable.
    assert predictor.predict_batch(prompts[:2])[0].shape[0] == 2


def test_fast_resample_option(model_dir: Path, opened: list[dict[str, Any]]) -> None:
    frame = _frame(48, 96)
    fast = Predictor(model_dir, resample=Resample.FAST)
    fast.set_image(frame)
    fed = opened[0]["instance"].seen[-1][0, :, :32]
    expected = resize_longest_side(frame, S, Resample.FAST).transpose(2, 0, 1)
    np.testing.assert_array_equal(fed, expected.astype(np.float32))
    # The default is PIL-exact, which differs from OpenCV on this downscale.
    exact = resize_longest_side(frame, S).transpose(2, 0, 1).astype(np.float32)
    assert not np.array_equal(fed, exact)
    # Masks go to the frame by the one-warp fast path too.
    masks, _, low = fast.predict(box=np.array([5, 5, 40, 30]), multimask_output=False)
    np.testing.assert_array_equal(
        masks, postprocess_masks(low, S, fast.input_size, fast.original_size, exact=False)
    )
    with pytest.raises(InputError, match=r"resample: got 'fast', expected Resample\.EXACT"):
        Predictor(model_dir, resample="fast")  # type: ignore[arg-type]


def test_mask_resample_is_separate_from_the_frame_resize(
    model_dir: Path, opened: list[dict[str, Any]]
) -> None:
    frame = _frame(48, 96)
    box = np.array([5, 5, 40, 30])
    mixed = Predictor(model_dir, mask_resample=Resample.FAST)
    assert (mixed.resample, mixed.mask_resample) == (Resample.EXACT, Resample.FAST)
    mixed.set_image(frame)
    masks, _, low = mixed.predict(box=box, multimask_output=False)
    np.testing.assert_array_equal(
        masks, postprocess_masks(low, S, mixed.input_size, mixed.original_size, exact=False)
    )
    exact = Predictor(model_dir)
    assert exact.mask_resample is Resample.EXACT
    exact.set_image(frame)
    masks, _, low = exact.predict(box=box, multimask_output=False)
    np.testing.assert_array_equal(
        masks, postprocess_masks(low, S, exact.input_size, exact.original_size)
    )
    with pytest.raises(InputError, match=r"mask_resample: got 'fast', expected Resample\.EXACT"):
        Predictor(model_dir, mask_resample="fast")  # type: ignore[arg-type]


def test_builtin_samedge_tiny_end_to_end() -> None:
    try:
        model_dir = resolve_model("samedge_tiny")
    except ModelDirError as e:
        pytest.skip(f"samedge_tiny is not built into this checkout yet: {e}")
    frame = _frame(120, 200)
    with Predictor("samedge_tiny", backend="onnxruntime") as p:
        assert p.model_dir == model_dir
        p.set_image(frame)
        masks, scores, low = p.predict(
            point_coords=np.array([[100, 60]]), point_labels=np.array([1])
        )
    assert masks.shape == (3, 120, 200)
    assert masks.dtype == np.bool_
    assert scores.shape == (3,)
    assert low.shape == (3, p.mask_size, p.mask_size)
