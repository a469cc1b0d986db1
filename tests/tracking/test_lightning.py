"""The Lightning callback: a tiny CPU fit fills the store; a clear error without Lightning."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import flatness as fl
from tests.tracking.conftest import tiny_data

pl = pytest.importorskip("lightning.pytorch")


class _Classifier(pl.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.net = nn.Sequential(nn.Linear(4, 10), nn.Tanh(), nn.Linear(10, 3)).double()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def training_step(self, batch: tuple, batch_idx: int) -> torch.Tensor:
        x, y = batch
        return F.cross_entropy(self(x), y)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.2, momentum=0.5)


def test_a_lightning_fit_with_the_callback_fills_the_store(tmp_path: Path) -> None:
    from flatness.tracking.lightning import FlatnessCallback

    X, y = data = tiny_data(64)
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(X, y), batch_size=16)
    store = tmp_path / "r.sqlite"
    with fl.Tracker(data, every=3, store=store, run="lit") as tracker:
        trainer = pl.Trainer(
            max_epochs=2, accelerator="cpu", devices=1, logger=False,
            enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
            callbacks=[FlatnessCallback(tracker, regime="SB")],
        )  # fmt: skip
        trainer.fit(_Classifier(), loader)
    df = fl.load_tracks(store)
    assert df["step"].tolist() == [0, 3, 6, 8]  # every 3 updates of 8, and the last
    assert (df["run"] == "lit").all() and (df["regime"] == "SB").all()
    assert df["lr"].tolist() == [0.2] * 4 and df["momentum"].tolist() == [0.5] * 4
    assert df["optimizer"].tolist() == ["sgd"] * 4 and df["batch_size"][1:].tolist() == [16] * 3
    assert df["stability_threshold"][0] == pytest.approx(3.0 / 0.2)
    assert df["epoch"].tolist() == [0.0, 0.75, 1.5, 2.0]
    assert df["examples_seen"].tolist() == [0, 48, 96, 128]
    assert (df["lambda_max_converged"] == 1).all() and df["minibatch_loss"][1:3].notna().all()


def test_without_lightning_the_callback_says_how_to_install_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in ("lightning", "lightning.pytorch", "pytorch_lightning"):
        monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.delitem(sys.modules, "flatness.tracking.lightning", raising=False)
    with pytest.raises(ImportError, match=r"pip install 'flatness\[lightning\]'"):
        importlib.import_module("flatness.tracking.lightning")
    with pytest.raises(ImportError, match="needs PyTorch Lightning"):
        fl.tracking.FlatnessCallback  # noqa: B018
