"""Export + parity of random-weight models, and the ONNX I/O contract."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest

pytest.importorskip("torch")

from samedge._io import sha256_file
from samedge.errors import InputError, ModelDirError, ParityError, UnknownNameError
from samedge.exporters import ExportConfig, export_model, verify_export
from samedge.exporters.graphs import PORTABLE_OPS
from samedge.model_dir import read_model_dir
from samedge.runtimes._graph import read_onnx_metadata
from tests._factories import ExportedModel, save_random_checkpoint

ort = pytest.importorskip("onnxruntime")


def _session(path: Path) -> ort.InferenceSession:
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def _dims(values: list) -> dict[str, list]:
    return {v.name: [d if isinstance(d, (int, str)) else None for d in v.shape] for v in values}


@pytest.mark.parametrize("fixture", ["reduced_sam_dir", "mobile_sam_dir"])
def test_export_writes_verified_model_dir(fixture: str, request: pytest.FixtureRequest) -> None:
    exported: ExportedModel = request.getfixturevalue(fixture)
    card = read_model_dir(exported.dir)
    spec = exported.spec
    assert sorted(p.name for p in exported.dir.iterdir()) == [
        "decoder.onnx",
        "encoder.onnx",
        "samedge.json",
    ]
    assert card.model == spec.name
    assert card.image_size == spec.image_size
    assert card.embedding_shape == spec.embedding_shape
    assert card.opset == 17
    assert card.checkpoint_sha256 == sha256_file(exported.checkpoint)
    parity = card.details["parity"]
    assert parity["passed"] is True
    cases = parity["decoder"]
    assert {(c["batch"], c["points"]) for c in cases} >= {(1, 1), (1, 3), (4, 1), (4, 3)}
    assert any("box" in c["name"] for c in cases)
    assert any("mask" in c["name"] for c in cases)
    for case in cases:
        assert case["max_abs_diff"] < 1e-3
        assert case["mask_iou"] >= 0.99
    assert parity["encoder"]["max_abs_diff"] < 1e-3


@pytest.mark.parametrize("fixture", ["reduced_sam_dir", "mobile_sam_dir"])
def test_metadata_in_both_graphs_matches_card(fixture: str, request: pytest.FixtureRequest) -> None:
    exported: ExportedModel = request.getfixturevalue(fixture)
    card = read_model_dir(exported.dir)
    for name in ("encoder.onnx", "decoder.onnx"):
        meta = read_onnx_metadata(exported.dir / name)
        assert meta == card.to_metadata()
        assert json.loads(meta["samedge.checkpoint_sha256"]) == card.checkpoint_sha256
        assert json.loads(meta["samedge.model"]) == exported.spec.name


def test_io_names_and_dynamic_dims(reduced_sam_dir: ExportedModel) -> None:
    c, h, w = reduced_sam_dir.spec.embedding_shape
    s = reduced_sam_dir.spec.image_size
    encoder = _session(reduced_sam_dir.dir / "encoder.onnx")
    assert _dims(encoder.get_inputs()) == {"image": [1, 3, s, s]}
    assert _dims(encoder.get_outputs()) == {"image_embeddings": [1, c, h, w]}
    decoder = _session(reduced_sam_dir.dir / "decoder.onnx")
    assert _dims(decoder.get_inputs()) == {
        "image_embeddings": [1, c, h, w],
        "point_coords": ["B", "N", 2],
        "point_labels": ["B", "N"],
        "mask_input": ["B", 1, 4 * h, 4 * w],
        "has_mask_input": ["B"],
    }
    assert _dims(decoder.get_outputs()) == {
        "low_res_masks": ["B", 4, 4 * h, 4 * w],
        "iou_predictions": ["B", 4],
    }
    for value in [*encoder.get_inputs(), *decoder.get_inputs()]:
        assert value.type == "tensor(float)"


def test_decoder_runs_at_unseen_batch_and_point_counts(reduced_sam_dir: ExportedModel) -> None:
    c, h, w = reduced_sam_dir.spec.embedding_shape
    decoder = _session(reduced_sam_dir.dir / "decoder.onnx")
    rng = np.random.default_rng(3)
    for b, n in [(1, 1), (3, 5), (16, 2)]:
        masks, iou = decoder.run(
            None,
            {
                "image_embeddings": rng.normal(size=(1, c, h, w)).astype(np.float32),
                "point_coords": rng.uniform(0, 255, (b, n, 2)).astype(np.float32),
                "point_labels": np.ones((b, n), np.float32),
                "mask_input": np.zeros((b, 1, 4 * h, 4 * w), np.float32),
                "has_mask_input": np.zeros(b, np.float32),
            },
        )
        assert masks.shape == (b, 4, 4 * h, 4 * w)
        assert iou.shape == (b, 4)
        assert np.isfinite(masks).all()


def test_graphs_use_the_portable_forms(reduced_sam_dir: ExportedModel) -> None:
    encoder = onnx.load(str(reduced_sam_dir.dir / "encoder.onnx"))
    decoder = onnx.load(str(reduced_sam_dir.dir / "decoder.onnx"))
    enc_ops = {n.op_type for n in encoder.graph.node}
    dec_ops = {n.op_type for n in decoder.graph.node}
    assert enc_ops | dec_ops <= PORTABLE_OPS
    assert "LayerNormalization" in enc_ops  # one op per nn.LayerNorm at opset 17
    assert "Erf" in enc_ops
    assert "Gelu" not in enc_ops
    # Nothing is repeated with OneHot/Tile; the batched decoder keeps the
    # embedding at batch 1 (only the output tokens are broadcast, with Expand).
    assert "Expand" in dec_ops
    assert not {"OneHot", "Tile"} & dec_ops
    # No ConvTranspose: the output upscaling runs as channels-last MatMuls.
    assert "ConvTranspose" not in dec_ops
    assert {o.domain or "" for o in encoder.opset_import} == {""}
    assert encoder.opset_import[0].version == 17


def test_verify_export_passes_for_the_right_checkpoint(reduced_sam_dir: ExportedModel) -> None:
    report = verify_export(reduced_sam_dir.dir, reduced_sam_dir.spec, reduced_sam_dir.checkpoint)
    assert report.passed
    assert report.worst_mask_iou >= 0.99
    assert "encoder" in report.summary()


def test_verify_export_catches_other_weights(
    reduced_sam_dir: ExportedModel, tmp_path: Path
) -> None:
    other = save_random_checkpoint(reduced_sam_dir.spec, tmp_path / "seed1.pth", seed=1)
    with pytest.raises(ParityError, match="FAIL"):
        verify_export(reduced_sam_dir.dir, reduced_sam_dir.spec, other)


def test_verify_export_rejects_a_directory_of_another_model(
    reduced_sam_dir: ExportedModel,
) -> None:
    with pytest.raises(ModelDirError, match="holds an export of sam_reduced"):
        verify_export(reduced_sam_dir.dir, "mobile_sam", None)


def test_report_summary_and_dict(reduced_sam_dir: ExportedModel, tmp_path: Path) -> None:
    out = tmp_path / "again"
    report = export_model(
        reduced_sam_dir.spec,
        reduced_sam_dir.checkpoint,
        out,
        config=ExportConfig(progress=False),
    )
    text = report.summary()
    assert "encoder.onnx" in text
    assert "decoder.onnx" in text
    assert "B4 N3 mask input" in text
    assert "FAIL" not in text
    data = report.to_dict()
    assert data["verified"] is True
    assert set(data["files"]) == {"encoder.onnx", "decoder.onnx", "samedge.json"}
    assert data["checkpoint_sha256"] == sha256_file(reduced_sam_dir.checkpoint)
    json.dumps(data)  # JSON-serialisable for `samedge export --json`
    # Same checkpoint, same seed: the same graphs byte for byte.
    for name in ("encoder.onnx", "decoder.onnx"):
        assert sha256_file(out / name) == sha256_file(reduced_sam_dir.dir / name)


def test_failed_parity_leaves_nothing(reduced_sam_dir: ExportedModel, tmp_path: Path) -> None:
    out = tmp_path / "strict"
    # Zero tolerance cannot hold: ONNX Runtime and PyTorch round differently.
    strict = ExportConfig(progress=False, atol=0.0, rtol=0.0)
    with pytest.raises(ParityError, match="past the tolerance"):
        export_model(reduced_sam_dir.spec, reduced_sam_dir.checkpoint, out, config=strict)
    assert not out.exists()
    assert list(tmp_path.iterdir()) == []


def test_no_verify_skips_parity(reduced_sam_dir: ExportedModel, tmp_path: Path) -> None:
    report = export_model(
        reduced_sam_dir.spec,
        reduced_sam_dir.checkpoint,
        tmp_path / "unverified",
        config=ExportConfig(progress=False, verify=False),
    )
    assert report.parity is None
    assert not report.verified
    assert "NOT verified" in report.summary()
    assert read_model_dir(tmp_path / "unverified").details["parity"] is None


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"opset": 16}, "opset: got 16"),
        ({"opset": 21}, "opset: got 21"),
        ({"atol": -1.0}, "atol"),
        ({"min_mask_iou": 0.0}, "min_mask_iou"),
        ({"seed": -1}, "seed"),
        ({"batched_decoder": 1}, "batched_decoder: got 1, expected True or False"),
    ],
)
def test_config_validation(kwargs: dict, match: str) -> None:
    with pytest.raises(InputError, match=match):
        ExportConfig(**kwargs)


def test_unknown_model_name_suggests(tmp_path: Path) -> None:
    with pytest.raises(UnknownNameError, match="sam_vit_b"):
        export_model("sam_vit_bb", None, tmp_path / "x")
    assert not (tmp_path / "x").exists()


@pytest.mark.openvino
def test_openvino_builds_and_agrees(reduced_sam_dir: ExportedModel) -> None:
    """OpenVINO compiles both graphs with B and N left dynamic and matches ONNX Runtime."""
    import openvino as ov

    _, h, w = reduced_sam_dir.spec.embedding_shape
    s = reduced_sam_dir.spec.image_size
    core = ov.Core()
    # f32: the CPU plugin would pick bf16 on CPUs that have it; the graph is under test here.
    f32 = {"INFERENCE_PRECISION_HINT": "f32"}
    rng = np.random.default_rng(5)
    image = rng.uniform(0, 255, (1, 3, s, s)).astype(np.float32)
    encoder = core.compile_model(str(reduced_sam_dir.dir / "encoder.onnx"), "CPU", f32)
    (embedding,) = _session(reduced_sam_dir.dir / "encoder.onnx").run(None, {"image": image})
    assert np.abs(encoder(image)["image_embeddings"] - embedding).max() < 1e-3
    decoder = core.compile_model(str(reduced_sam_dir.dir / "decoder.onnx"), "CPU", f32)
    reference = _session(reduced_sam_dir.dir / "decoder.onnx")
    for b, n in [(1, 1), (4, 3), (7, 2)]:
        feeds = {
            "image_embeddings": embedding,
            "point_coords": rng.uniform(0, s - 1, (b, n, 2)).astype(np.float32),
            "point_labels": rng.choice([-1, 0, 1, 2, 3], (b, n)).astype(np.float32),
            "mask_input": rng.normal(0, 4, (b, 1, 4 * h, 4 * w)).astype(np.float32),
            "has_mask_input": rng.choice([0, 1], b).astype(np.float32),
        }
        got = decoder(feeds)
        masks, iou = reference.run(None, feeds)
        assert got["low_res_masks"].shape == (b, 4, 4 * h, 4 * w)
        assert np.abs(got["low_res_masks"] - masks).max() < 1e-3
        assert np.abs(got["iou_predictions"] - iou).max() < 1e-3


def test_batched_decoder_matches_sams_own_form() -> None:
    """The batched decoder is SAM's ``predict_masks`` rearranged: same outputs, any B, N, masks."""
    torch = pytest.importorskip("torch")
    from samedge.exporters.decoder import PromptDecoderGraph
    from samedge.exporters.export import build_model, resolve_spec

    spec = resolve_spec("sam_reduced")
    sam = build_model(spec, None)
    batched = PromptDecoderGraph(sam, spec.image_size).eval()
    own = PromptDecoderGraph(sam, spec.image_size, batched=False).eval()
    assert batched.batched is not None
    assert own.batched is None
    c, h, w = spec.embedding_shape
    gen = torch.Generator().manual_seed(3)
    embedding = torch.randn(1, c, h, w, generator=gen)
    for b, n in ((1, 1), (3, 2), (5, 4)):
        coords = torch.rand(b, n, 2, generator=gen) * spec.image_size
        labels = torch.randint(-1, 4, (b, n), generator=gen).float()
        mask = torch.randn(b, 1, 4 * h, 4 * w, generator=gen) * 5
        has = (torch.arange(b) % 2).float()
        with torch.no_grad():
            got = batched(embedding, coords, labels, mask, has)
            want = own(embedding, coords, labels, mask, has)
        for g, ref in zip(got, want, strict=True):
            assert g.shape == ref.shape
            torch.testing.assert_close(g, ref, rtol=1e-4, atol=1e-4 * float(ref.abs().max()))
