"""Reading checkpoints: every bad file is a CheckpointError that says what to do."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from samedge.errors import CheckpointError  # noqa: E402
from samedge.exporters import export_model  # noqa: E402
from samedge.exporters.builders import (  # noqa: E402
    build_sam_reduced,
    identify_checkpoint,
    read_checkpoint,
)
from tests._factories import ExportedModel  # noqa: E402


@pytest.fixture(scope="module")
def reduced_state() -> dict[str, torch.Tensor]:
    return build_sam_reduced(None, seed=0).state_dict()


@pytest.fixture
def reduced_ckpt(reduced_sam_dir: ExportedModel) -> Path:
    return reduced_sam_dir.checkpoint


def _assert_same_weights(a: torch.nn.Module, b: torch.nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)


def test_checkpoint_round_trip(reduced_ckpt: Path) -> None:
    _assert_same_weights(build_sam_reduced(reduced_ckpt), build_sam_reduced(None, seed=0))


def test_random_weights_depend_on_seed_only() -> None:
    a, b = build_sam_reduced(None, seed=0), build_sam_reduced(None, seed=0)
    _assert_same_weights(a, b)
    c = build_sam_reduced(None, seed=1)
    assert not torch.equal(
        a.image_encoder.patch_embed.proj.weight, c.image_encoder.patch_embed.proj.weight
    )


def test_missing_checkpoint(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match=r"nope\.pth: no such file"):
        export_model("mobile_sam", tmp_path / "nope.pth", tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_directory_as_checkpoint(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match=r"is a directory"):
        read_checkpoint(tmp_path)


def test_empty_checkpoint(tmp_path: Path) -> None:
    (tmp_path / "empty.pth").write_bytes(b"")
    with pytest.raises(CheckpointError, match=r"is empty"):
        read_checkpoint(tmp_path / "empty.pth")


def test_truncated_checkpoint(reduced_ckpt: Path, tmp_path: Path) -> None:
    data = reduced_ckpt.read_bytes()
    half = tmp_path / "half.pth"
    half.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=r"unreadable or truncated.*download it again"):
        export_model("sam_vit_b", half, tmp_path / "out", force=False)
    assert not (tmp_path / "out").exists()


def test_not_a_checkpoint(tmp_path: Path) -> None:
    junk = tmp_path / "photo.pth"
    junk.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 8)
    with pytest.raises(CheckpointError, match=r"photo\.pth: unreadable, not a PyTorch checkpoint"):
        read_checkpoint(junk)


def test_not_a_state_dict(tmp_path: Path) -> None:
    path = tmp_path / "list.pth"
    torch.save([torch.zeros(2)], path)
    with pytest.raises(CheckpointError, match=r"holds a list, expected a state dict"):
        read_checkpoint(path)


def test_pickled_objects_are_refused(reduced_state: dict, tmp_path: Path) -> None:
    path = tmp_path / "trainer.pth"
    torch.save({"model": reduced_state, "args": argparse.Namespace(lr=1.0)}, path)
    with pytest.raises(CheckpointError, match=r"Python objects besides tensors"):
        read_checkpoint(path)


def test_wrapped_state_dict_is_unwrapped(reduced_state: dict, tmp_path: Path) -> None:
    path = tmp_path / "wrapped.pth"
    torch.save({"model": reduced_state, "epoch": 3}, path)
    _assert_same_weights(build_sam_reduced(path), build_sam_reduced(None, seed=0))


def test_dataparallel_prefix_is_removed(reduced_state: dict, tmp_path: Path) -> None:
    path = tmp_path / "ddp.pth"
    torch.save({f"module.{k}": v for k, v in reduced_state.items()}, path)
    _assert_same_weights(build_sam_reduced(path), build_sam_reduced(None, seed=0))


def test_ambiguous_wrapper_is_refused(reduced_state: dict, tmp_path: Path) -> None:
    path = tmp_path / "two.pth"
    torch.save({"model": reduced_state, "ema": reduced_state}, path)
    with pytest.raises(CheckpointError, match=r"exactly one.*'model', 'ema'"):
        read_checkpoint(path)


def test_mobile_sam_checkpoint_given_to_vit_b(
    mobile_sam_dir: ExportedModel, tmp_path: Path
) -> None:
    with pytest.raises(CheckpointError) as info:
        export_model("sam_vit_b", mobile_sam_dir.checkpoint, tmp_path / "out")
    message = str(info.value)
    assert "does not fit sam_vit_b" in message
    assert "looks like a mobile_sam checkpoint" in message
    assert "samedge export mobile_sam" in message
    assert not (tmp_path / "out").exists()


def test_reduced_checkpoint_given_to_mobile_sam(reduced_ckpt: Path, tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match=r"does not fit mobile_sam.*reduced test SAM"):
        export_model("mobile_sam", reduced_ckpt, tmp_path / "out")


def test_unknown_sam_configuration(reduced_state: dict, tmp_path: Path) -> None:
    path = tmp_path / "partial.pth"
    state = dict(reduced_state)
    del state["mask_decoder.iou_token.weight"]
    torch.save(state, path)
    with pytest.raises(CheckpointError, match=r"1 missing.*configuration samedge does not know"):
        build_sam_reduced(path)


def test_non_sam_checkpoint(tmp_path: Path) -> None:
    path = tmp_path / "resnet.pth"
    torch.save({"conv1.weight": torch.zeros(4, 3, 3, 3), "fc.bias": torch.zeros(4)}, path)
    with pytest.raises(CheckpointError, match=r"not a SAM-family checkpoint.*conv1.weight"):
        build_sam_reduced(path)


@pytest.mark.parametrize("name", ["sam_vit_b", "sam_vit_l", "sam_vit_h", "sam_reduced"])
def test_identify_registered_architectures(name: str) -> None:
    from samedge.exporters import builders

    build = getattr(builders, f"build_{name}")
    with torch.device("meta"):  # shapes only: no memory even for ViT-H
        shapes = {k: tuple(v.shape) for k, v in build(None).state_dict().items()}
    assert identify_checkpoint(shapes) == name


def test_identify_mobile_sam(mobile_sam_dir: ExportedModel) -> None:
    assert identify_checkpoint(read_checkpoint(mobile_sam_dir.checkpoint)) == "mobile_sam"
    assert identify_checkpoint({"fc.weight": (3, 3)}) is None
