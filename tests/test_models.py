"""Model registry, model cards and the error hierarchy."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

import samedge
from samedge.errors import InputError, ModelDirError, SamedgeError, UnknownNameError
from samedge.model_dir import CARD_NAME, ModelCard, read_model_dir, write_model_card
from samedge.models import MODELS, ModelSpec, get_model_spec, list_models


def test_registry_has_the_family() -> None:
    assert {"sam_vit_b", "sam_vit_l", "sam_vit_h", "mobile_sam"} <= set(list_models())
    spec = get_model_spec("sam_vit_h")
    assert spec.image_size == 1024
    assert spec.embedding_shape == (256, 64, 64)
    assert spec.low_res_mask_size == 256


def test_unknown_model_lists_names_and_suggests() -> None:
    with pytest.raises(UnknownNameError) as info:
        get_model_spec("mobilesam")
    message = str(info.value)
    assert "Did you mean 'mobile_sam'?" in message
    assert all(name in message for name in MODELS)
    assert isinstance(info.value, ValueError)
    assert isinstance(info.value, KeyError)


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"image_size": 0}, "image_size"),
        ({"pixel_std": (1.0, 0.0, 1.0)}, "pixel_std"),
        ({"embedding_shape": (256, 0, 64)}, "embedding_shape"),
        ({"builder": "no_colon"}, "builder"),
    ],
)
def test_spec_validation(change: dict[str, object], match: str) -> None:
    with pytest.raises(InputError, match=match):
        replace(get_model_spec("sam_vit_b"), **change)  # type: ignore[arg-type]


def _card() -> ModelCard:
    return ModelCard.from_spec(get_model_spec("mobile_sam"), checkpoint_sha256="ab" * 32)


def _model_dir(tmp_path: Path, card: ModelCard) -> Path:
    write_model_card(tmp_path, card)
    (tmp_path / card.encoder).write_bytes(b"e")
    (tmp_path / card.decoder).write_bytes(b"d")
    return tmp_path


def test_card_round_trips_through_json_and_metadata(tmp_path: Path) -> None:
    card = _card()
    assert read_model_dir(_model_dir(tmp_path, card)) == card
    assert ModelCard.from_metadata(card.to_metadata(), "x.onnx") == replace(card, details={})


def test_model_dir_missing_pieces(tmp_path: Path) -> None:
    with pytest.raises(ModelDirError, match="not found"):
        read_model_dir(tmp_path / "nope")
    with pytest.raises(ModelDirError, match=r"has no samedge\.json"):
        read_model_dir(tmp_path)
    d = _model_dir(tmp_path, _card())
    (d / "decoder.onnx").unlink()
    with pytest.raises(ModelDirError, match=r"missing decoder\.onnx"):
        read_model_dir(d)


def test_model_dir_from_newer_samedge(tmp_path: Path) -> None:
    d = _model_dir(tmp_path, _card())
    data = json.loads((d / CARD_NAME).read_text())
    data.update(format_version=99, samedge_version="9.0.0")
    (d / CARD_NAME).write_text(json.dumps(data))
    with pytest.raises(ModelDirError, match=r"newer than this samedge.*pip install -U"):
        read_model_dir(d)


def test_model_dir_malformed_card(tmp_path: Path) -> None:
    d = _model_dir(tmp_path, _card())
    (d / CARD_NAME).write_text("{not json")
    with pytest.raises(ModelDirError, match="unreadable"):
        read_model_dir(d)
    (d / CARD_NAME).write_text(json.dumps({"model": "x"}))
    with pytest.raises(ModelDirError, match="missing keys"):
        read_model_dir(d)
    (d / CARD_NAME).write_text(json.dumps({**json.loads(_card().to_json()), "precision": "int4"}))
    with pytest.raises(ModelDirError, match="precision"):
        read_model_dir(d)


def test_every_public_error_is_a_samedge_error() -> None:
    errors = [getattr(samedge, n) for n in samedge.__all__ if n.endswith("Error")]
    assert errors
    assert all(issubclass(e, SamedgeError) for e in errors)


def test_public_names_exist() -> None:
    for name in samedge.__all__:
        assert hasattr(samedge, name), name
    assert isinstance(get_model_spec("mobile_sam"), ModelSpec)
