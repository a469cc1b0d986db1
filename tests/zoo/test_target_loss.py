"""Training until a target training loss, and why a run stopped (``stop_reason``)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from flatness.zoo import TrainConfig, load_dataset, train_network

BASE = {"network": "tiny_mlp", "dataset": "digits_flat", "batch_size": 32, "lr": 0.01}


def test_target_loss_stops_at_the_first_epoch_at_or_below_it() -> None:
    data = load_dataset("digits_flat")
    result = train_network(TrainConfig(**BASE, epochs=12, target_loss=0.2), data=data)
    meta = result.meta
    losses = [h["train_loss"] for h in meta["history"]]
    assert meta["reached_target"] and meta["stop_reason"] == "target_loss"
    assert losses[-1] <= 0.2 < min(losses[:-1])
    assert meta["epoch"] == len(losses) < 12
    assert {h["fit_on"] for h in meta["history"]} == {"full_train"}
    assert meta["train_loss"] == pytest.approx(losses[-1])


def test_both_targets_stop_at_whichever_comes_first() -> None:
    data = load_dataset("digits_flat")
    by_loss = train_network(TrainConfig(**BASE, epochs=12, target_loss=0.2), data=data).meta
    both = TrainConfig(**BASE, epochs=12, target_loss=0.2, target_accuracy=0.999)
    meta = train_network(both, data=data).meta
    assert meta["stop_reason"] == "target_loss" and meta["epoch"] == by_loss["epoch"]
    both = TrainConfig(**BASE, epochs=12, target_loss=1e-4, target_accuracy=0.9)
    meta = train_network(both, data=data).meta
    assert meta["stop_reason"] == "target_accuracy" and meta["train_loss"] > 1e-4


def test_stop_reason_of_caps_and_unchanged_weights() -> None:
    data = load_dataset("digits_flat")
    capped = train_network(TrainConfig(**BASE, epochs=None, max_updates=7), data=data).meta
    assert capped["stop_reason"] == "max_updates" and not capped["reached_target"]
    missed = TrainConfig(**BASE, epochs=1, target_loss=1e-6)
    plain = TrainConfig(**BASE, epochs=1, history_fit="full_train")
    a, b = train_network(missed, data=data), train_network(plain, data=data)
    assert a.meta["stop_reason"] == b.meta["stop_reason"] == "epochs"
    assert not a.meta["reached_target"]
    for p, q in zip(a.model.parameters(), b.model.parameters(), strict=True):
        assert torch.equal(p, q)  # a target only decides when to stop


@pytest.mark.parametrize("bad", [0.0, -1.0])
def test_target_loss_must_be_positive(bad: float) -> None:
    with pytest.raises(ValueError, match="target_loss must be positive"):
        TrainConfig(target_loss=bad)


def test_describe_names_both_targets() -> None:
    from flatness.study.plan import Case, describe

    train = {**BASE, "epochs": 5, "target_accuracy": 0.98, "target_loss": 0.05}
    text = describe(Case("m", "t", train, {"SB": {}}, (0,)))
    assert "until 98% training accuracy or training loss 0.05" in text


def test_the_runner_warns_only_about_runs_that_had_a_target(tmp_path: Path) -> None:
    from flatness.study.runner import _missed_target
    from flatness.zoo.sweep import SweepRun

    def run(name: str, config: dict[str, object]) -> SweepRun:
        meta = {"reached_target": False, "train_accuracy": 0.5, "train_loss": 1.5,
                "config": config}  # fmt: skip
        return SweepRun(TrainConfig(), tmp_path / name / "final.pt", meta, "trained")

    runs = [run("fixed", {"epochs": 3}), run("acc", {"target_accuracy": 0.9}),
            run("loss", {"target_loss": 0.1})]  # fmt: skip
    assert _missed_target(runs, tmp_path) == (
        "acc/final.pt (50.0%, loss 1.5)",
        "loss/final.pt (50.0%, loss 1.5)",
    )
