"""``samedge eval BUILD --reference/--fidelity``: a build against its FP32 pipeline."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import pytest

from samedge.errors import InputError, ModelDirError
from samedge.evaluate import FidelityReport, evaluate_fidelity
from samedge.predictor import resolve_model

pytest.importorskip("onnx")
pytest.importorskip("onnxconverter_common")

HELDOUT = 2


@pytest.fixture(scope="module")
def dirs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """``(fp32, fp16)``: a copy of samedge_tiny and an FP16 build of it."""
    from samedge.calibration import BuildConfig, GateConfig, Precision, build

    root = tmp_path_factory.mktemp("fidelity")
    # A copy, so the build's recorded source stays put whatever happens to the package's.
    fp32 = Path(shutil.copytree(resolve_model("samedge_tiny"), root / "fp32"))
    fp16 = root / "fp16"
    # A gate anything passes: these tests measure a build, they do not judge it.
    anything = GateConfig(min_mean_iou=0.0, min_p5_iou=0.0)
    config = BuildConfig(precision=Precision.FP16, frames=2, heldout=HELDOUT, speed_runs=0,
                         eval_scenes=0, gate=anything)  # fmt: skip
    build(fp32, fp16, config)
    return fp32, fp16


def test_provenance_and_the_builds_frames_reproduce_its_report(dirs: tuple[Path, Path]) -> None:
    from samedge.calibration.frames import CALIBRATION_SEED

    fp32, fp16 = dirs
    report = evaluate_fidelity(fp16, frames=HELDOUT, seed=CALIBRATION_SEED)
    assert isinstance(report, FidelityReport)
    assert report.reference == str(fp32)
    assert report.reference_from == "provenance"
    assert report.source_matches is True
    assert report.precision == "fp16"
    built = json.loads((fp16 / "report.json").read_text())["fidelity"]
    assert report.fidelity.to_dict() == built


def test_explicit_reference_on_fresh_frames(dirs: tuple[Path, Path]) -> None:
    fp32, fp16 = dirs
    report = evaluate_fidelity(fp16, fp32, frames=3)
    assert report.reference_from == "argument"
    assert report.fidelity.frames == 3
    assert report.fidelity.masks == 3 * 24 * 4
    assert report.fidelity.cosine_min > 0.99  # fp16 of a small CNN: a loose bound
    assert 0.0 <= report.fidelity.worst_iou <= report.fidelity.p5_iou <= 1.0
    assert "seed 2026" in report.frames
    text = report.summary()
    assert "embedding cosine" in text
    assert "mask IoU mean" in text
    d = report.to_dict()
    assert d["fidelity"]["frames"] == 3
    assert d["source_matches"] is True
    json.dumps(d)  # JSON-ready


def test_a_different_reference_is_flagged(
    dirs: tuple[Path, Path], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    import onnx

    fp32, fp16 = dirs
    other = Path(shutil.copytree(fp32, tmp_path / "other"))
    model = onnx.load(str(other / "encoder.onnx"))
    model.doc_string = "same graph, other bytes"
    onnx.save(model, str(other / "encoder.onnx"))
    with caplog.at_level(logging.WARNING, logger="samedge._fidelity"):
        report = evaluate_fidelity(fp16, other, frames=1)
    assert report.source_matches is False
    assert "not the one" in caplog.text
    assert "warning: the reference is not the fp32 model" in report.summary()


def test_bad_inputs(dirs: tuple[Path, Path], tmp_path: Path) -> None:
    fp32, fp16 = dirs
    with pytest.raises(ModelDirError, match="records no fp32 source"):
        evaluate_fidelity(fp32)
    with pytest.raises(ModelDirError, match="is fp16; expected the fp32"):
        evaluate_fidelity(fp16, fp16)
    with pytest.raises(InputError, match="frames"):
        evaluate_fidelity(fp16, fp32, frames=0)
    with pytest.raises(InputError, match="not 'synthetic'"):
        evaluate_fidelity(fp16, fp32, source=str(tmp_path), seed=3)
    moved = Path(shutil.copytree(fp16, tmp_path / "moved"))
    card = json.loads((moved / "samedge.json").read_text())
    card["details"]["source"]["model_dir"] = str(tmp_path / "gone")
    (moved / "samedge.json").write_text(json.dumps(card))
    with pytest.raises(ModelDirError, match="which no longer exists; pass the fp32"):
        evaluate_fidelity(moved)


def test_cli_eval_fidelity(dirs: tuple[Path, Path], capsys: pytest.CaptureFixture[str]) -> None:
    from samedge.cli import main

    fp32, fp16 = dirs
    assert main(["eval", str(fp16), "--fidelity", "--frames", "1", "--json"]) == 0
    out = capsys.readouterr().out
    assert "vs fp32" in out
    data = json.loads(out[out.index("{") :])
    assert data["reference"] == str(fp32)
    assert data["fidelity"]["frames"] == 1
    assert main(["eval", str(fp16), "--frames", "1"]) == 1
    err = capsys.readouterr().err.strip()
    assert err == "samedge eval: error: --frames (for fidelity): not used with procedural scenes"
    assert main(["eval", str(fp16), "--fidelity", "--clicks", "2", "--backend", "openvino"]) == 1
    err = capsys.readouterr().err.strip()
    assert "--clicks (for procedural scenes or COCO), --backend" in err
    assert err.endswith("not used with fidelity")
