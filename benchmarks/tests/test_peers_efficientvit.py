"""EfficientViT-SAM's own predictor as the pytorch peer (no timing asserted)."""

from __future__ import annotations

from pathlib import Path

import pytest
from peers import API, ENGINE, run_peers_report

pytest.importorskip("torch")
pytest.importorskip("efficientsam", reason="the export extra (efficientsam) is not installed")


def test_efficientvit_sam_peer_runs_its_own_predictor(tmp_path: Path) -> None:
    report = run_peers_report(
        ["efficientvit_sam_l0"],
        peers=("pytorch", "openvino-notebook"),
        runs=1,
        warmup=0,
        threads=1,
        objects=(1, 2),
        work_dir=tmp_path,
    )
    rows = list(report.measurements)
    assert {(r.suite, r.model, r.backend, r.precision, r.threads) for r in rows} == {
        ("pytorch", "efficientvit_sam_l0", "torch", "fp32", 1)
    }
    assert sorted((r.part, r.objects, r.note.split(":")[0]) for r in rows) == [
        ("decoder", 1, API),
        ("decoder", 1, ENGINE),
        ("decoder", 2, API),
        ("decoder", 2, ENGINE),
        ("encoder", None, API),
        ("encoder", None, ENGINE),
        ("predictor", 1, API),
    ]
    assert all("EfficientViTSamPredictor" in r.note for r in rows if r.note.startswith(API))
    assert all(r.timing.median_ms > 0 for r in rows)
    assert (
        "EfficientViTSamPredictor" in report.details["pytorch/efficientvit_sam_l0"]["loaded_with"]
    )
    # The notebook converts SAM's own modules: left out, with the reason.
    assert [(s.suite, s.model) for s in report.skipped] == [
        ("openvino-notebook", "efficientvit_sam_l0")
    ]
