"""Training: determinism, checkpoints, schedules, stopping, SB vs LB sanity."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from flatness.zoo import (
    Dataset,
    TrainConfig,
    build_network,
    import_factory,
    load_dataset,
    resolve_batch_size,
    train_network,
)
from flatness.zoo.config import scheduled

from .conftest import SMALL_MNIST1D

TINY = {"network": "tiny_mlp", "dataset": "mnist1d", "dataset_kwargs": SMALL_MNIST1D, "lr": 0.01}


def _assert_plain(value: Any, where: str = "meta") -> None:
    if isinstance(value, dict):
        for k, v in value.items():
            assert isinstance(k, str), where
            _assert_plain(v, f"{where}.{k}")
    elif isinstance(value, list):
        for i, v in enumerate(value):
            _assert_plain(v, f"{where}[{i}]")
    else:
        assert type(value) in (str, int, float, bool), f"{where} is {type(value)}"


def test_training_is_deterministic_for_a_seed(small_mnist1d: Dataset) -> None:
    # C1 has BatchNorm and dropout: seeded shuffling, init and dropout all matter.
    config = TrainConfig(
        network="c1",
        network_kwargs={"channels": 4, "hidden": [16, 8]},
        dataset="mnist1d",
        dataset_kwargs=SMALL_MNIST1D,
        batch_size=50,
        epochs=2,
    )
    a = train_network(config, data=small_mnist1d).model.state_dict()
    b = train_network(config, data=small_mnist1d).model.state_dict()
    for name, value in a.items():
        assert torch.equal(value, b[name]), name
    c = train_network(
        TrainConfig(**{**config.to_dict(), "seed": 1}), data=small_mnist1d
    ).model.state_dict()
    assert not torch.equal(a["features.0.weight"], c["features.0.weight"])


def test_checkpoint_round_trips_with_weights_only(tmp_path: Path, small_mnist1d: Dataset) -> None:
    config = TrainConfig(**TINY, batch_size=30, epochs=2, checkpoint_every=1, regime="SB")
    result = train_network(config, tmp_path, data=small_mnist1d)
    assert result.checkpoint == tmp_path / "final.pt"
    assert [p.name for p in result.checkpoints] == ["epoch0001.pt", "epoch0002.pt", "final.pt"]
    assert not list(tmp_path.glob("*.tmp"))

    saved = torch.load(result.checkpoint, weights_only=True)
    meta = saved["meta"]
    _assert_plain(meta)
    for key in (
        "model", "data", "batch_size", "lr", "optimizer", "schedule", "seed", "epoch",
        "updates", "train_loss", "train_accuracy", "test_loss", "test_accuracy",
        "reached_target", "versions", "regime", "config",
    ):  # fmt: skip
        assert key in meta, key
    assert meta["versions"].keys() >= {"torch", "flatness", "python"}
    assert (meta["batch_size"], meta["epoch"], meta["updates"]) == (30, 2, 20)
    assert meta["data"] == {"name": "mnist1d", "kwargs": SMALL_MNIST1D}
    assert meta["model"]["kwargs"]["input_shape"] == [40]

    # What `flatness score` will do: rebuild from the recorded factory and load.
    model = import_factory(meta["model"]["factory"])(**meta["model"]["kwargs"])
    model.load_state_dict(saved["state_dict"])
    model.eval()
    x = small_mnist1d.test[0]
    assert torch.equal(model(x), result.model(x))
    acc = float((model(x).argmax(1) == small_mnist1d.test[1]).float().mean())
    assert acc == pytest.approx(meta["test_accuracy"])


@pytest.mark.parametrize("batch_size", [16, "20%"])
def test_small_and_large_batches_learn(small_mnist1d: Dataset, batch_size: int | str) -> None:
    epochs = 4 if batch_size == 16 else 15
    result = train_network(
        TrainConfig(**TINY, batch_size=batch_size, epochs=epochs), data=small_mnist1d
    )
    assert result.meta["train_accuracy"] > 0.3  # chance is 0.1


def test_stops_at_target_and_reports_honestly() -> None:
    data = load_dataset("digits_flat")
    base = {"network": "tiny_mlp", "dataset": "digits_flat", "batch_size": 32, "lr": 0.01}
    reached = train_network(TrainConfig(**base, epochs=50, target_accuracy=0.8), data=data)
    assert reached.meta["reached_target"] and reached.meta["epoch"] < 50
    assert reached.meta["train_accuracy"] >= 0.8
    missed = train_network(TrainConfig(**base, epochs=1, target_accuracy=1.0), data=data)
    assert not missed.meta["reached_target"] and missed.meta["epoch"] == 1


def test_update_cap_and_sgd(small_mnist1d: Dataset) -> None:
    config = TrainConfig(**TINY, optimizer="sgd", batch_size=10, epochs=None, max_updates=45)
    result = train_network(config, data=small_mnist1d)
    assert result.meta["updates"] == 45 and result.meta["epoch"] == 2


def test_schedules() -> None:
    step = TrainConfig(schedule="step", milestones=(3, 1), factor=10.0, lr=1.0)
    assert [scheduled(step, e, 8, 100) for e in (0, 1, 3)] == [(1.0, 8), (0.1, 8), (0.01, 8)]
    grow = TrainConfig(schedule="batch_increase", milestones=(1, 2), factor=4.0, lr=1.0)
    assert [scheduled(grow, e, 8, 100) for e in (0, 1, 2)] == [(1.0, 8), (1.0, 32), (0.78125, 100)]


def test_batch_increase_run(small_mnist1d: Dataset) -> None:
    config = TrainConfig(
        **TINY, batch_size=20, schedule="batch_increase", milestones=(1, 2), factor=3.0, epochs=3
    )
    history = train_network(config, data=small_mnist1d).meta["history"]
    assert [h["batch_size"] for h in history] == [20, 60, 180]
    assert [h["updates"] for h in history] == [15, 20, 21]


def test_invalid_settings() -> None:
    assert resolve_batch_size("0.5%", 4000) == 20
    with pytest.raises(ValueError, match="must lie in"):
        resolve_batch_size(500, 400)
    with pytest.raises(ValueError, match="optimizer"):
        TrainConfig(optimizer="rmsprop")
    with pytest.raises(ValueError, match="cap"):
        TrainConfig(epochs=None)
    with pytest.raises(TypeError, match="unknown training settings"):
        TrainConfig.from_dict({"learning_rate": 0.1})


def test_user_model_factory(small_mnist1d: Dataset, tmp_path: Path) -> None:
    config = TrainConfig(
        network="flatness.zoo.networks:build_network",
        network_kwargs={"name": "tiny_mlp", "input_shape": [40], "num_classes": 10},
        dataset="mnist1d",
        dataset_kwargs=SMALL_MNIST1D,
        batch_size=100,
        epochs=1,
    )
    meta = train_network(config, tmp_path, data=small_mnist1d).meta
    assert meta["model"] == {"factory": config.network, "kwargs": config.network_kwargs}
    built = build_network("tiny_mlp", input_shape=[40], num_classes=10)
    assert sum(p.numel() for p in built.parameters()) == 2698
