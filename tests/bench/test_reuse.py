"""Bench's caches measure the current code: an export made by other exporter code, or a
build whose source decoder changed, is made again instead of reused."""

from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path

import onnx
import pytest

pytest.importorskip("torch")

import samedge.bench.checkpoints as checkpoints_module
import samedge.exporters as exporters_module
import samedge.exporters.graphs as graphs_module
from samedge._io import sha256_file
from samedge.bench.builds import make_builds
from samedge.bench.run import BenchModel, _random_export
from samedge.model_dir import read_model_dir, write_model_card
from samedge.predictor import resolve_model
from tests.bench.test_builds import CHEAP


def test_exported_with_names_torch_onnx_and_the_exporters_source() -> None:
    made_by = graphs_module.exported_with()
    assert set(made_by) == {"torch", "onnx", "exporters_sha256"}
    assert len(made_by["exporters_sha256"]) == 64
    assert graphs_module.exported_with() == made_by  # a function of the source, not of time


def test_a_random_weight_export_is_reused_only_when_the_exporters_are_the_same(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    checkpoint = tmp_path / "checkpoints" / "mobile_sam-random-seed0.pth"
    checkpoint.parent.mkdir()
    checkpoint.write_bytes(b"weights")
    monkeypatch.setattr(checkpoints_module, "random_checkpoint", lambda *a, **k: checkpoint)
    source = resolve_model("samedge_tiny")
    made = []

    def fake_export(name, weights, out, config=None, force=False):
        # A model directory "exported" from ``weights`` by the exporters of this moment.
        made.append(name)
        shutil.rmtree(out, ignore_errors=True)
        shutil.copytree(source, out)
        card = read_model_dir(out)
        card = replace(card, checkpoint_sha256=sha256_file(weights))
        write_model_card(
            out, replace(card, details={"exported_with": graphs_module.exported_with()})
        )

    monkeypatch.setattr(exporters_module, "export_model", fake_export)
    out, _ = _random_export("mobile_sam", tmp_path, 0)
    assert made == ["mobile_sam"]
    assert _random_export("mobile_sam", tmp_path, 0)[0] == out
    assert made == ["mobile_sam"]  # reused

    changed = {**graphs_module.exported_with(), "exporters_sha256": "0" * 64}
    monkeypatch.setattr(graphs_module, "exported_with", lambda: changed)
    _random_export("mobile_sam", tmp_path, 0)
    assert made == ["mobile_sam", "mobile_sam"]  # other exporter code: exported again
    assert read_model_dir(out).details["exported_with"]["exporters_sha256"] == "0" * 64

    # An export from before the exporters were recorded is made again too.
    card = read_model_dir(out)
    write_model_card(out, replace(card, details={}))
    _random_export("mobile_sam", tmp_path, 0)
    assert len(made) == 3


def test_a_build_is_made_again_when_its_source_decoder_changes(tmp_path: Path) -> None:
    source = tmp_path / "tiny"
    shutil.copytree(resolve_model("samedge_tiny"), source)
    model = BenchModel("samedge_tiny", source, "fp32", "copy of the built-in model")
    (first,) = make_builds(model, ("fp16",), tmp_path / "work", CHEAP)
    assert first.ok, first.error
    assert not first.reused
    (again,) = make_builds(model, ("fp16",), tmp_path / "work", CHEAP)
    assert again.reused

    # Same encoder, another decoder (as a re-export with changed decoder code makes).
    decoder = onnx.load(source / "decoder.onnx")
    onnx.helper.set_model_props(decoder, {"test": "another decoder"})
    onnx.save(decoder, source / "decoder.onnx")
    (rebuilt,) = make_builds(model, ("fp16",), tmp_path / "work", CHEAP)
    assert rebuilt.ok, rebuilt.error
    assert not rebuilt.reused
    assert rebuilt.output == first.output
