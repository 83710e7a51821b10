"""Output handling: refuse, replace, never half-write; the step functions; the CLI."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

pytest.importorskip("torch")

import onnx
import onnxruntime as ort

from samedge import cli, models
from samedge.errors import ExportError, InputError, OutputExistsError
from samedge.exporters import ExportConfig, export_decoder, export_encoder, export_model
from samedge.exporters import export as export_module
from samedge.exporters.graphs import check_ops
from samedge.model_dir import read_model_dir
from samedge.runtimes._graph import read_onnx_metadata
from tests._factories import ExportedModel

QUIET = ExportConfig(progress=False)
# Output handling is the subject here; parity has its own tests.
FAST = ExportConfig(progress=False, verify=False)


def _leftovers(parent: Path) -> list[str]:
    return sorted(p.name for p in parent.iterdir() if p.name.startswith("."))


def test_existing_output_is_refused_and_untouched(
    reduced_sam_dir: ExportedModel, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(OutputExistsError, match="--force"):
        export_model(reduced_sam_dir.spec, reduced_sam_dir.checkpoint, out, config=QUIET)
    assert [p.name for p in out.iterdir()] == ["keep.txt"]
    assert (out / "keep.txt").read_text() == "mine"


def test_force_replaces_existing_output(reduced_sam_dir: ExportedModel, tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "samedge.json").write_text("{}")  # a model directory samedge wrote
    (out / "old.onnx").write_text("old")
    export_model(reduced_sam_dir.spec, reduced_sam_dir.checkpoint, out, config=FAST, force=True)
    assert sorted(p.name for p in out.iterdir()) == [
        "decoder.onnx",
        "encoder.onnx",
        "samedge.json",
    ]
    assert read_model_dir(out).model == "sam_reduced"
    assert _leftovers(tmp_path) == []


def test_force_refuses_a_directory_samedge_did_not_write(
    reduced_sam_dir: ExportedModel, tmp_path: Path
) -> None:
    """--force used to delete everything in the output, the user's files included."""
    out = tmp_path / "out"
    (out / "photos").mkdir(parents=True)
    (out / "keep.txt").write_text("mine")
    with pytest.raises(OutputExistsError, match=r"no samedge\.json, so samedge did not write it"):
        export_model(reduced_sam_dir.spec, reduced_sam_dir.checkpoint, out, config=FAST, force=True)
    assert sorted(p.name for p in out.iterdir()) == ["keep.txt", "photos"]
    assert _leftovers(tmp_path) == []


def test_empty_existing_directory_is_used(reduced_sam_dir: ExportedModel, tmp_path: Path) -> None:
    out = tmp_path / "empty"
    out.mkdir()
    export_model(reduced_sam_dir.spec, reduced_sam_dir.checkpoint, out, config=FAST)
    assert read_model_dir(out).model == "sam_reduced"


def test_output_under_a_file_is_unwritable(reduced_sam_dir: ExportedModel, tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(InputError, match="cannot create its parent directory"):
        export_model(reduced_sam_dir.spec, reduced_sam_dir.checkpoint, blocker / "out")


@pytest.mark.skipif(
    not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root can write anywhere"
)
def test_read_only_parent_is_unwritable(reduced_sam_dir: ExportedModel, tmp_path: Path) -> None:
    parent = tmp_path / "ro"
    parent.mkdir()
    parent.chmod(0o500)
    try:
        with pytest.raises(InputError, match="not writable"):
            export_model(reduced_sam_dir.spec, reduced_sam_dir.checkpoint, parent / "out")
    finally:
        parent.chmod(0o700)


@pytest.mark.parametrize("error", [RuntimeError("disk full"), KeyboardInterrupt()])
@pytest.mark.parametrize("existing", [False, True])
def test_failure_mid_export_leaves_nothing_half_written(
    reduced_sam_dir: ExportedModel,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    error: BaseException,
    existing: bool,
) -> None:
    out = tmp_path / "out"
    if existing:
        out.mkdir()
        (out / "samedge.json").write_text("old")
    written = []

    def fail_after_encoder(*args: object, **kwargs: object) -> None:
        # The encoder is already in the staging directory when this runs.
        written.extend(p.name for p in Path(args[2]).parent.iterdir())  # type: ignore[arg-type]
        raise error

    monkeypatch.setattr(export_module, "_write_decoder", fail_after_encoder)
    with pytest.raises(type(error)):
        export_model(
            reduced_sam_dir.spec, reduced_sam_dir.checkpoint, out, config=FAST, force=existing
        )
    assert "encoder.onnx" in written
    if existing:
        assert [p.name for p in out.iterdir()] == ["samedge.json"]
    else:
        assert not out.exists()
    assert _leftovers(tmp_path) == []


def test_export_encoder_and_decoder_steps(reduced_sam_dir: ExportedModel, tmp_path: Path) -> None:
    spec, ckpt = reduced_sam_dir.spec, reduced_sam_dir.checkpoint
    enc = export_encoder(spec, ckpt, tmp_path / "enc.onnx", config=QUIET)
    dec = export_decoder(spec, ckpt, tmp_path / "dec.onnx", config=QUIET)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dec.onnx", "enc.onnx"]
    for path in (enc, dec):
        onnx.checker.check_model(str(path))
        assert read_onnx_metadata(path)["samedge.model"] == '"sam_reduced"'
    with pytest.raises(OutputExistsError):
        export_encoder(spec, ckpt, enc, config=QUIET)
    export_decoder(spec, ckpt, dec, config=QUIET, force=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dec.onnx", "enc.onnx"]


def test_external_data_for_large_weights(reduced_sam_dir: ExportedModel, tmp_path: Path) -> None:
    # The path SAM ViT-H's 2.5 GB encoder takes, forced on the small model.
    spec, ckpt = reduced_sam_dir.spec, reduced_sam_dir.checkpoint
    config = ExportConfig(progress=False, external_data=True)
    enc = export_encoder(spec, ckpt, tmp_path / "e.onnx", config=config)
    data = tmp_path / "e.onnx.data"
    assert data.is_file()
    assert data.stat().st_size > enc.stat().st_size
    session = ort.InferenceSession(str(enc), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["image"]
    # Replacing it with an inline export removes the now stale weights file.
    export_encoder(spec, ckpt, enc, config=FAST, force=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["e.onnx"]
    ort.InferenceSession(str(enc), providers=["CPUExecutionProvider"])


def test_non_portable_op_is_rejected() -> None:
    node = onnx.helper.make_node("NonZero", ["x"], ["y"])
    graph = onnx.helper.make_graph(
        [node],
        "g",
        [onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [4])],
        [onnx.helper.make_tensor_value_info("y", onnx.TensorProto.INT64, [1, None])],
    )
    with pytest.raises(ExportError, match="NonZero"):
        check_ops(onnx.helper.make_model(graph), "toy.onnx")


# --------------------------------------------------------------------------- CLI


def _run_cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = cli.main(argv)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_cli_missing_checkpoint(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = _run_cli(
        [
            "export",
            "sam_vit_b",
            "--checkpoint",
            str(tmp_path / "no.pth"),
            "-o",
            str(tmp_path / "o"),
        ],
        capsys,
    )
    assert code == cli.EXIT_ERROR
    lines = err.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("samedge export: error: checkpoint")
    assert "no such file" in lines[0]


def test_cli_checkpoint_of_another_model(
    reduced_sam_dir: ExportedModel, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["export", "sam_vit_h", "--checkpoint", str(reduced_sam_dir.checkpoint)]
    code, _, err = _run_cli([*argv, "-o", str(tmp_path / "o")], capsys)
    assert code == cli.EXIT_ERROR
    assert len(err.strip().splitlines()) == 1
    assert "does not fit sam_vit_h" in err
    assert "reduced test SAM" in err


def test_cli_existing_output(
    reduced_sam_dir: ExportedModel, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["export", "mobile_sam", "--random-weights", "-o", str(reduced_sam_dir.dir)]
    code, _, err = _run_cli(argv, capsys)
    assert code == cli.EXIT_ERROR
    assert len(err.strip().splitlines()) == 1
    assert "exists and is not empty" in err
    assert "--force" in err


def test_cli_export_success(
    reduced_sam_dir: ExportedModel,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Register the reduced model for this test so the CLI path runs in seconds.
    monkeypatch.setitem(models.MODELS, "sam_reduced", reduced_sam_dir.spec)
    out = tmp_path / "cli"
    argv = ["-q", "export", "sam_reduced", "--checkpoint", str(reduced_sam_dir.checkpoint)]
    code, stdout, err = _run_cli([*argv, "-o", str(out), "--json"], capsys)
    assert code == 0, err
    assert "exported sam_reduced" in stdout
    assert "mask IoU" in stdout
    assert '"verified": true' in stdout
    assert read_model_dir(out).model == "sam_reduced"
