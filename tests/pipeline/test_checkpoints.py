"""Checkpoint formats, safe loading, identity by content, and clear errors."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from flatness.pipeline.checkpoints import (
    CheckpointError,
    file_sha256,
    load_checkpoint,
    load_into,
)
from tests.pipeline.conftest import save_run
from tests.pipeline.factories import tiny_net


def _same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    return all(
        torch.equal(x, y)
        for x, y in zip(a.state_dict().values(), b.state_dict().values(), strict=True)
    )


def test_plain_state_dict_and_dict_with_meta(tmp_path: Path) -> None:
    plain = load_checkpoint(save_run(tmp_path / "a.pt", 3))
    wrapped = load_checkpoint(save_run(tmp_path / "b.pth", 3, meta={"batch_size": 64, "lr": 0.1}))
    assert plain.format == "state_dict" and plain.meta == {}
    assert wrapped.format == "dict" and wrapped.meta == {"batch_size": 64, "lr": 0.1}
    a, b = load_into(tiny_net(seed=9), plain), load_into(tiny_net(seed=8), wrapped)
    assert _same_weights(a, tiny_net(seed=3)) and _same_weights(b, tiny_net(seed=3))
    assert not a.training


def test_lightning_checkpoint_prefix_is_stripped(tmp_path: Path) -> None:
    net = tiny_net(seed=4)
    payload = {
        "state_dict": {f"model.{k}": v for k, v in net.state_dict().items()}
        | {"loss_fn.weight": torch.ones(3)},
        "epoch": 7,
        "global_step": 700,
        "pytorch-lightning_version": "2.4.0",
        "hyper_parameters": {"learning_rate": 0.05, "batch_size": 128},
        "optimizer_states": [],
    }
    torch.save(payload, tmp_path / "last.ckpt")
    ckpt = load_checkpoint(tmp_path / "last.ckpt")
    assert ckpt.format == "lightning"
    assert ckpt.meta["epoch"] == 7 and ckpt.meta["lr"] == 0.05 and ckpt.meta["batch_size"] == 128
    assert _same_weights(load_into(tiny_net(seed=0), ckpt), net)


def test_safetensors_with_metadata(tmp_path: Path) -> None:
    net = tiny_net(seed=5)
    meta = {"meta": json.dumps({"batch_size": 16, "regime": "SB"}), "epoch": "12"}
    save_file(
        {k: v.contiguous() for k, v in net.state_dict().items()}, tmp_path / "m.safetensors", meta
    )
    ckpt = load_checkpoint(tmp_path / "m.safetensors")
    assert ckpt.format == "safetensors"
    assert ckpt.meta == {"batch_size": 16, "regime": "SB", "epoch": 12}
    assert _same_weights(load_into(tiny_net(), ckpt), net)


def test_identity_is_the_content_not_the_name(tmp_path: Path) -> None:
    first = save_run(tmp_path / "a.pt", 1)
    moved = tmp_path / "elsewhere" / "renamed.pt"
    moved.parent.mkdir()
    shutil.copy(first, moved)
    assert load_checkpoint(first).sha256 == load_checkpoint(moved).sha256 == file_sha256(first)
    save_run(moved, 2)
    assert load_checkpoint(moved).sha256 != load_checkpoint(first).sha256


class _Payload:
    """Unpickling this object writes a marker file: a stand-in for malicious code."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        return (Path.write_text, (self.marker, "code ran"))


def test_malicious_pickle_runs_no_code_unless_trusted(tmp_path: Path) -> None:
    marker = tmp_path / "pwned.txt"
    evil = tmp_path / "evil.pt"
    torch.save({"state_dict": tiny_net().state_dict(), "meta": _Payload(marker)}, evil)
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(evil)
    message = str(info.value)
    assert str(evil) in message and "--trust-pickle" in message and "trust_pickle=True" in message
    assert not marker.exists()
    # the flag really is what stands between the file and the code
    load_checkpoint(evil, trust_pickle=True)
    assert marker.read_text() == "code ran"


@pytest.mark.parametrize("cut", [0, 10, 0.5])
def test_truncated_or_garbage_file(tmp_path: Path, cut: float) -> None:
    good = save_run(tmp_path / "good.pt", 0).read_bytes()
    bad = tmp_path / "bad.pt"
    bad.write_bytes(
        b"not a checkpoint at all" if cut == 0 else good[: int(cut if cut > 1 else len(good) * cut)]
    )
    with pytest.raises(CheckpointError, match=r"bad\.pt: .*(corrupt|not a readable)"):
        load_checkpoint(bad)


def test_corrupt_safetensors(tmp_path: Path) -> None:
    path = tmp_path / "x.safetensors"
    path.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{broken")
    with pytest.raises(CheckpointError, match=r"x\.safetensors: the safetensors file is corrupt"):
        load_checkpoint(path)


def test_missing_file_and_no_weights(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match=r"nope\.pt: no such checkpoint file"):
        load_checkpoint(tmp_path / "nope.pt")
    torch.save({"optimizer": {"lr": 0.1}}, tmp_path / "opt.pt")
    with pytest.raises(CheckpointError, match=r"opt\.pt: no weights found.*\['optimizer'\]"):
        load_checkpoint(tmp_path / "opt.pt")


def test_nan_weights_are_named(tmp_path: Path) -> None:
    net = tiny_net()
    with torch.no_grad():
        net[2].bias[1] = float("nan")
    torch.save(net.state_dict(), tmp_path / "nan.pt")
    with pytest.raises(CheckpointError, match=r"nan\.pt: NaN or Inf values in 2\.bias"):
        load_checkpoint(tmp_path / "nan.pt")


def test_mismatched_state_dict_lists_keys_and_shapes(tmp_path: Path) -> None:
    ckpt = load_checkpoint(save_run(tmp_path / "r.pt", 0))
    with pytest.raises(CheckpointError) as info:
        load_into(tiny_net(hidden=6), ckpt)
    assert "r.pt" in str(info.value) and "shape: 0.weight (4, 5) vs model (6, 5)" in str(info.value)
    extra = torch.nn.Sequential(*tiny_net(), torch.nn.Linear(3, 2))
    with pytest.raises(CheckpointError, match=r"missing: 3\.weight, 3\.bias"):
        load_into(extra, ckpt)
