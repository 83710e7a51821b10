"""The peers of ``samedge bench``: PyTorch, samexporter, the OpenVINO notebook recipe.

Tiny models only (samedge_tiny: 256 px); the samexporter run needs its own
environment (``python benchmarks/peers.py setup-samexporter``) and skips
without it. No timing is asserted: only that each peer ran what it says, on
the threads it was given, and recorded sane numbers.
"""

from __future__ import annotations

import json
import os
from dataclasses import replace
from pathlib import Path

import numpy as np
import peer_workers as workers
import pytest
from peers import (
    API,
    ENGINE,
    SAMEXPORTER_ENV,
    SAMEXPORTER_PYTHON_ENV,
    PeerSkip,
    PeersReport,
    default_work_dir,
    main,
    random_checkpoint,
    run_peers,
    run_peers_report,
    samexporter_env_python,
)

from samedge.bench import Measurement
from samedge.errors import (
    BackendUnavailableError,
    CheckpointError,
    InputError,
    UnknownNameError,
)

pytest.importorskip("torch")


def _check_rows(rows: list[Measurement], suite: str, backend: str, threads: int) -> None:
    for r in rows:
        assert (r.suite, r.model, r.backend) == (suite, "samedge_tiny", backend)
        assert r.threads == threads
        assert r.timing.runs >= 1
        assert 0 < r.timing.min_ms <= r.timing.median_ms <= r.timing.p99_ms
        assert r.peak_rss_mib is not None
        assert r.peak_rss_mib > 50
        assert r.note.startswith((f"{ENGINE}:", f"{API}:"))
        items = (r.objects or 0) if r.part == "decoder" else 1
        assert r.throughput_per_s == pytest.approx(items * 1e3 / r.timing.median_ms)


def _kinds(rows: list[Measurement]) -> list[tuple[str, int | None, str]]:
    return sorted((r.part, r.objects, r.note.split(":")[0]) for r in rows)


# --------------------------------------------------------------------------- checkpoints


def test_random_checkpoint_is_reused_loadable_and_has_no_identical_constant_tensors(
    tmp_path: Path,
) -> None:
    import torch

    from samedge.exporters.tiny_model import build_samedge_tiny

    path = random_checkpoint("samedge_tiny", tmp_path, seed=3)
    assert path == tmp_path / "checkpoints" / "samedge_tiny-random-seed3.pth"
    stamp = path.stat().st_mtime_ns
    assert random_checkpoint("samedge_tiny", tmp_path, seed=3).stat().st_mtime_ns == stamp
    state = torch.load(path, weights_only=True)
    constant = [
        k
        for k, t in state.items()
        if t.is_floating_point() and t.numel() > 1 and bool((t == t.reshape(-1)[0]).all())
    ]
    assert constant == []  # identical tensors would be shared through Identity nodes in ONNX
    assert not any(k.endswith("running_var") and bool((t <= 0).any()) for k, t in state.items())
    build_samedge_tiny(path)  # the real loading path takes it (strict)
    other = random_checkpoint("samedge_tiny", tmp_path, seed=4)
    assert not torch.equal(
        torch.load(other, weights_only=True)["mask_decoder.iou_token.weight"],
        state["mask_decoder.iou_token.weight"],
    )


def test_random_checkpoint_unknown_model(tmp_path: Path) -> None:
    with pytest.raises(UnknownNameError, match="mobile_sam"):
        random_checkpoint("mobile_sm", tmp_path)


# --------------------------------------------------------------------------- arguments


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"runs": 0}, InputError, "runs: got 0"),
        ({"warmup": -1}, InputError, "warmup: got -1"),
        ({"threads": 0}, InputError, "threads: got 0"),
        ({"objects": (1, 0)}, InputError, "objects"),
        ({"objects": ()}, InputError, "objects"),
        ({"checkpoints": {"mobile_sam": Path("x.pth")}}, InputError, "not among models"),
        ({"checkpoints": {"samedge_tiny": Path("/nonexistent.pth")}}, CheckpointError, "no such"),
    ],
)
def test_bad_arguments_raise_before_any_work(
    tmp_path: Path, kwargs: dict[str, object], error: type[Exception], match: str
) -> None:
    with pytest.raises(error, match=match):
        run_peers(["samedge_tiny"], work_dir=tmp_path, **kwargs)  # type: ignore[arg-type]
    assert not (tmp_path / "checkpoints").exists()


def test_bad_model_and_peer_names(tmp_path: Path) -> None:
    with pytest.raises(UnknownNameError, match="mobile_sam"):
        run_peers(["mobilesam"], work_dir=tmp_path)
    with pytest.raises(InputError, match="models"):
        run_peers("mobile_sam", work_dir=tmp_path)
    with pytest.raises(InputError, match="peers"):
        run_peers_report(["samedge_tiny"], work_dir=tmp_path, peers=("tensorflow",))


# --------------------------------------------------------------------------- samexporter env


def test_missing_samexporter_env_names_the_setup_command(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(SAMEXPORTER_PYTHON_ENV, raising=False)
    with pytest.raises(BackendUnavailableError) as info:
        run_peers(["mobile_sam"], work_dir=tmp_path)
    message = str(info.value)
    assert f"setup-samexporter --work-dir {tmp_path}" in message
    assert str(tmp_path / SAMEXPORTER_ENV) in message
    assert not (tmp_path / "checkpoints").exists()  # raised before building anything


def test_samexporter_python_given_or_from_the_environment_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(InputError, match=r"samexporter_python: .* is not a file"):
        samexporter_env_python(tmp_path, tmp_path / "nope")
    monkeypatch.setenv(SAMEXPORTER_PYTHON_ENV, str(tmp_path / "missing"))
    with pytest.raises(InputError, match=SAMEXPORTER_PYTHON_ENV):
        samexporter_env_python(tmp_path)
    fake = tmp_path / "python"
    fake.write_text("")
    monkeypatch.setenv(SAMEXPORTER_PYTHON_ENV, str(fake))
    assert samexporter_env_python(tmp_path) == fake


def test_samexporter_skips_models_it_cannot_export_and_the_cli_writes_json(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # samedge_tiny is not a samexporter model: no environment is needed, and the
    # skip (with its reason) is in the JSON the command line writes.
    monkeypatch.delenv(SAMEXPORTER_PYTHON_ENV, raising=False)
    out = tmp_path / "peers.json"
    argv = ["run", "--models", "samedge_tiny", "--peers", "samexporter"]
    assert main([*argv, "--work-dir", str(tmp_path), "--output", str(out)]) == 0
    record = json.loads(out.read_text())
    assert record["command"].startswith("python benchmarks/peers.py run --models samedge_tiny")
    assert record["measurements"] == []
    assert record["skipped"][0]["suite"] == "samexporter"
    assert "exports only" in record["skipped"][0]["reason"]
    assert record["versions"]["main"]["torch"]
    assert record["machine"]["cores"] >= 1


# --------------------------------------------------------------------------- worker helpers


def test_clicks_prompts_and_agreement() -> None:
    xy = workers.clicks(5)
    h, w = workers.FRAME_SIZE
    assert xy.shape == (5, 2)
    assert ((xy >= 0) & (xy < [w, h])).all()
    assert len({tuple(p) for p in xy.tolist()}) == 5
    prompt = workers.notebook_prompt(3, 1024)
    assert prompt["point_coords"].shape == (3, 2, 2)
    np.testing.assert_array_equal(prompt["point_labels"][:, 1], -1)  # SAM's padding point
    np.testing.assert_array_equal(prompt["point_coords"][:, 1], 0)
    np.testing.assert_allclose(prompt["point_coords"][:, 0], workers.clicks(3) * 1024 / w)
    a = np.array([[1.0, -1.0], [1.0, -1.0]])
    same = workers.agreement([(a, a)], [(a, a)])
    assert same == {
        "mask_iou_vs_fp32": 1.0,
        "min_mask_iou_vs_fp32": 1.0,
        "embedding_cosine_vs_fp32": 1.0,
    }
    half = workers.agreement([(a, -a)], [(a, np.array([[1.0, 1.0], [-1.0, -1.0]]))])
    assert half["mask_iou_vs_fp32"] == pytest.approx(1 / 3, abs=1e-4)
    assert half["embedding_cosine_vs_fp32"] == pytest.approx(-1.0)


def test_notebook_preprocess_matches_segment_anything() -> None:
    from segment_anything.utils.transforms import ResizeLongestSide

    frame = workers.bench_frame()
    x = workers.notebook_preprocess(frame, 256)
    assert x.shape == (1, 3, 256, 256)
    assert x.dtype == np.float32
    resized = ResizeLongestSide(256).apply_image(frame)
    h, w = resized.shape[:2]
    assert (h, w) == (192, 256)
    assert np.abs(x[0, :, h:, :]).max() == 0  # padded after normalising, as SAM does
    np.testing.assert_allclose(x[0, 0, :h, :w], (resized[..., 0] - 123.675) / 58.395, rtol=1e-5)


# --------------------------------------------------------------------------- peers


def test_pytorch_peer_on_samedge_tiny(tmp_path: Path) -> None:
    report = run_peers_report(
        ["samedge_tiny"],
        peers=("pytorch",),
        runs=2,
        warmup=1,
        threads=1,
        objects=(1, 3),
        work_dir=tmp_path,
    )
    assert isinstance(report, PeersReport)
    assert report.skipped == ()
    rows = list(report.measurements)
    _check_rows(rows, "pytorch", "torch", threads=1)
    assert {r.precision for r in rows} == {"fp32"}
    assert _kinds(rows) == [
        ("decoder", 1, API),
        ("decoder", 1, ENGINE),
        ("decoder", 3, API),
        ("decoder", 3, ENGINE),
        ("encoder", None, API),
        ("encoder", None, ENGINE),
        ("predictor", 1, API),
    ]
    assert "samedge" in report.details["pytorch/samedge_tiny"]["loaded_with"]
    assert report.details["checkpoint/samedge_tiny"].endswith("samedge_tiny-random-seed0.pth")
    assert report.versions["main"]["segment-anything"]


@pytest.mark.openvino
def test_openvino_notebook_recipe_on_samedge_tiny(tmp_path: Path) -> None:
    report = run_peers_report(
        ["samedge_tiny"],
        peers=("openvino-notebook",),
        runs=1,
        warmup=0,
        threads=1,
        objects=(1, 2),
        work_dir=tmp_path,
    )
    assert report.skipped == ()
    rows = list(report.measurements)
    _check_rows(rows, "openvino-notebook", "openvino", threads=1)
    default = [r for r in rows if r.precision != "int8"]
    int8 = [r for r in rows if r.precision == "int8"]
    assert {r.precision for r in default} <= {"bf16", "fp16", "fp32"}
    assert len({r.precision for r in default}) == 1
    assert len(default) == 7  # encoder x2, decoder x2 x2 objects, predictor
    assert _kinds(int8) == [
        ("encoder", None, API),
        ("encoder", None, ENGINE),
        ("predictor", 1, API),
    ]
    for r in rows:
        assert r.build_s is not None
        assert r.build_s > 0
        assert r.engine_mib is not None
        assert r.engine_mib > 0
        assert 0 <= r.accuracy["min_mask_iou_vs_fp32"] <= r.accuracy["mask_iou_vs_fp32"] <= 1
        assert -1 <= r.accuracy["embedding_cosine_vs_fp32"] <= 1
    # INT8 build time includes the NNCF quantization on top of the conversion.
    details = report.details["openvino-notebook/samedge_tiny/int8"]
    int8_encoder = next(r for r in int8 if r.part == "encoder")
    assert (int8_encoder.build_s or 0) > details["nncf_quantize_s"]
    assert details["subset_size"] == 32
    assert details["nncf_quantize_s"] > 0
    assert (tmp_path / "peers" / "openvino-notebook").is_dir()


def _samexporter_python() -> Path | None:
    given = os.environ.get(SAMEXPORTER_PYTHON_ENV)
    if given:
        return Path(given)
    python = default_work_dir() / SAMEXPORTER_ENV / "bin" / "python"
    return python if python.is_file() else None


@pytest.mark.slow
@pytest.mark.skipif(
    _samexporter_python() is None,
    reason="no samexporter environment: create it with "
    "`python benchmarks/peers.py setup-samexporter` (or set SAMEDGE_SAMEXPORTER_PYTHON)",
)
def test_samexporter_peer_on_mobile_sam(tmp_path: Path) -> None:
    report = run_peers_report(
        ["mobile_sam"],
        peers=("samexporter",),
        runs=1,
        warmup=0,
        threads=1,
        objects=(1, 2),
        work_dir=tmp_path,
        samexporter_python=_samexporter_python(),
    )
    assert report.skipped == ()
    rows = list(report.measurements)
    assert {(r.suite, r.backend, r.model, r.threads) for r in rows} == {
        ("samexporter", "onnxruntime", "mobile_sam", 1)
    }
    fp32 = [r for r in rows if r.precision == "fp32"]
    int8 = [r for r in rows if r.precision == "int8"]
    assert len(fp32) == 7
    assert _kinds(int8) == [
        ("encoder", None, API),
        ("encoder", None, ENGINE),
        ("predictor", 1, API),
    ]
    decoder_two = [r for r in fp32 if r.part == "decoder" and r.objects == 2]
    assert all("2 calls" in r.note for r in decoder_two)  # its decoder takes one object
    for r in rows:
        assert r.build_s is not None
        assert r.build_s > 0
        assert r.engine_mib is not None
        assert r.engine_mib > 1
    for r in int8:
        assert 0 <= r.accuracy["mask_iou_vs_fp32"] <= 1
    assert report.versions["samexporter"]["samexporter"] == "0.5.0"
    assert "samexporter" in report.details["samexporter/mobile_sam/fp32"]["samexporter_file"]


def test_add_peers_without_samexporter_env_still_runs_the_others(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import peers as peers_module

    from samedge.bench import BenchReport, Timing
    from tests.bench._rows import _report, _row

    asked: list[list[str]] = []
    row = Measurement(suite="pytorch", model="mobile_sam", backend="torch", precision="fp32",
                      part="encoder", timing=Timing.from_seconds([0.5] * 3), device="CPU",
                      note="engine: image_encoder")  # fmt: skip

    def fake_report(models: list[str], *, peers: list[str], **kwargs: object) -> PeersReport:
        asked.append(list(peers))
        assert kwargs["runs"] == 20
        assert kwargs["work_dir"] == tmp_path / "peers"
        if "samexporter" in peers:
            raise BackendUnavailableError("no samexporter environment: run setup-samexporter")
        skip = PeerSkip("openvino-notebook", "mobile_sam", "nncf failed", "int8")
        return PeersReport((row,), (skip,), {}, {})

    monkeypatch.setattr(peers_module, "run_peers_report", fake_report)
    base = _report([_row(model="mobile_sam", ms=100.0)])
    settings = {**base.settings, "runs": 20, "warmup": 1, "threads": 2, "objects": [1],
                "work_dir": str(tmp_path)}  # fmt: skip
    models = ({"name": "mobile_sam", "precision": "fp32", "checkpoint": str(tmp_path / "c.pth")},)
    report: BenchReport = peers_module.add_peers(
        replace(base, settings=settings, models=models), command="python benchmarks/peers.py add x"
    )
    assert asked == [list(peers_module.PEERS), ["pytorch", "openvino-notebook"]]
    assert row in report.measurements
    assert report.command.endswith("&& python benchmarks/peers.py add x")
    assert report.failures[0]["what"] == "peers/samexporter"
    assert "setup-samexporter" in report.failures[0]["error"]
    assert report.failures[1] == {"what": "peers/openvino-notebook/mobile_sam/int8",
                                  "error": "nncf failed"}  # fmt: skip
    assert any(r["peer_suite"] == "pytorch" for r in report.ratios)
