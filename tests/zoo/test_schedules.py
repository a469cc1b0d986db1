"""Schedules: the learning rate and batch size of every epoch, in the formula and in training."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from flatness.zoo import Dataset, TrainConfig, train_network
from flatness.zoo.config import SCHEDULES, scheduled
from flatness.zoo.sweep import _existing_meta

from .conftest import SMALL_MNIST1D

# (settings, epochs to ask about, expected (lr, batch) at each); base batch 8 of 100 examples
TABLE: list[tuple[dict[str, Any], list[float], list[tuple[float, int]]]] = [
    ({"schedule": "constant"}, [0, 1, 5], [(1.0, 8)] * 3),
    (
        {"schedule": "step", "milestones": (3, 1), "factor": 10.0},
        [0, 1, 2, 3],
        [(1.0, 8), (0.1, 8), (0.1, 8), (0.01, 8)],
    ),
    (  # Smith et al.'s hybrid: the batch grows to the cap (20 = 0.2 * 100), then lr decays
        {
            "schedule": "batch_increase",
            "milestones": (1, 2, 3),
            "factor": 2.0,
            "max_batch_fraction": 0.2,
        },
        [0, 1, 2, 3],
        [(1.0, 8), (1.0, 16), (0.625, 20), (0.3125, 20)],
    ),
    (  # the cap defaults to the whole training set
        {"schedule": "batch_increase", "milestones": (1, 2), "factor": 4.0},
        [0, 1, 2],
        [(1.0, 8), (1.0, 32), (0.78125, 100)],
    ),
    (  # eta/B constant: both grow until the batch is capped
        {
            "schedule": "constant_noise",
            "milestones": (1, 2, 3),
            "factor": 2.0,
            "max_batch_fraction": 0.2,
        },
        [0, 1, 2, 3],
        [(1.0, 8), (2.0, 16), (2.5, 20), (2.5, 20)],
    ),
    (  # Goyal et al.: lr for batch 4 scaled to batch 8 (2.0), warmed up over 2 epochs
        {
            "schedule": "linear_scaling",
            "reference_batch_size": 4,
            "warmup_epochs": 2,
            "milestones": (3,),
            "factor": 10.0,
        },
        [0, 0.5, 1, 2, 3],
        [(1.0, 8), (1.25, 8), (1.5, 8), (2.0, 8), (0.2, 8)],
    ),
    (  # no warm-up: the scaled rate from the start
        {"schedule": "linear_scaling", "reference_batch_size": 16},
        [0, 4],
        [(0.5, 8), (0.5, 8)],
    ),
    (  # milestones as fractions of 8 epochs: 0.5 -> epoch 4, 0.75 -> epoch 6
        {"schedule": "step", "milestone_fractions": (0.5, 0.75), "factor": 2.0, "epochs": 8},
        [3, 4, 5, 6, 7],
        [(1.0, 8), (0.5, 8), (0.5, 8), (0.25, 8), (0.25, 8)],
    ),
    (  # a fraction that lands between epochs takes the next epoch: 0.3 * 5 -> 2
        {"schedule": "step", "milestone_fractions": (0.3,), "factor": 2.0, "epochs": 5},
        [1, 2],
        [(1.0, 8), (0.5, 8)],
    ),
]


@pytest.mark.parametrize(("settings", "epochs", "expected"), TABLE)
def test_every_epoch_of_every_schedule(
    settings: dict[str, Any], epochs: list[float], expected: list[tuple[float, int]]
) -> None:
    config = TrainConfig.from_dict({"lr": 1.0, **settings})
    got = [scheduled(config, e, 8, 100) for e in epochs]
    assert [b for _, b in got] == [b for _, b in expected]
    assert [lr for lr, _ in got] == pytest.approx([lr for lr, _ in expected], rel=1e-12)


def test_the_table_covers_every_schedule() -> None:
    assert {s["schedule"] for s, _, _ in TABLE} == set(SCHEDULES)


INVALID: list[tuple[dict[str, Any], str]] = [
    ({"schedule": "cosine"}, "schedule must be one of"),
    ({"schedule": "step", "factor": 1.0}, "factor must be greater than 1"),
    ({"milestones": (2, 2)}, "milestones must differ"),
    ({"milestones": (-1,)}, "milestones must be epochs >= 0"),
    ({"milestones": (1,), "milestone_fractions": (0.5,)}, "milestones .* or milestone_fractions"),
    ({"milestone_fractions": (1.5,)}, r"milestone_fractions must lie in \(0, 1\)"),
    ({"milestone_fractions": (0.5,), "epochs": None, "max_updates": 9}, "give epochs"),
    ({"milestone_fractions": (0.5, 0.45), "epochs": 4}, "must differ .* from milestone_fractions"),
    ({"max_batch_fraction": 0.0}, r"max_batch_fraction must lie in \(0, 1\]"),
    ({"max_batch_fraction": 1.5}, "max_batch_fraction"),
    ({"schedule": "step", "warmup_epochs": 2}, "warmup_epochs applies to .*linear_scaling"),
    (
        {"schedule": "linear_scaling", "reference_batch_size": 8, "warmup_epochs": -1},
        "warmup_epochs must be >= 0",
    ),
    ({"schedule": "linear_scaling"}, "needs reference_batch_size"),
    ({"schedule": "step", "reference_batch_size": 8}, "reference_batch_size"),
    ({"schedule": "linear_scaling", "reference_batch_size": 0}, "reference_batch_size must be"),
    (
        {
            "schedule": "linear_scaling",
            "reference_batch_size": 8,
            "warmup_epochs": 5,
            "milestones": (3, 6),
        },
        r"milestones \[3\] fall inside the warm-up",
    ),
    ({"optimizer": "sgd", "momentum": 1.0}, r"momentum must lie in \[0, 1\)"),
    ({"optimizer": "adam", "nesterov": True}, "nesterov needs optimizer 'sgd'"),
    ({"optimizer": "sgd", "momentum": 0.0, "nesterov": True}, "momentum > 0"),
    ({"history_fit": "full"}, "history_fit must be one of"),
]


@pytest.mark.parametrize(("settings", "message"), INVALID)
def test_invalid_settings_are_refused_by_name(settings: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        TrainConfig.from_dict(settings)


def test_a_batch_above_the_cap_is_refused() -> None:
    config = TrainConfig(schedule="constant_noise", milestones=(1,), max_batch_fraction=0.05)
    assert scheduled(config, 0, 5, 100) == (1e-3, 5)
    with pytest.raises(ValueError, match=r"batch_size 8 exceeds .* max_batch_fraction 0\.05"):
        scheduled(config, 0, 8, 100)


TINY = {"network": "tiny_mlp", "dataset": "mnist1d", "dataset_kwargs": SMALL_MNIST1D}
RUNS = {
    "constant": {},
    "step": {"milestones": (1, 2), "factor": 2.0},
    "batch_increase": {"milestones": (1, 2), "factor": 2.0, "max_batch_fraction": 0.2},
    "constant_noise": {"milestones": (1, 2), "factor": 2.0, "max_batch_fraction": 0.2},
    "linear_scaling": {"reference_batch_size": 10, "warmup_epochs": 1.5, "milestones": (2,)},
}
OPTIMIZERS = {
    "sgd": {"optimizer": "sgd", "lr": 0.05},
    "nesterov": {"optimizer": "sgd", "lr": 0.05, "nesterov": True},
    "adam": {"optimizer": "adam", "lr": 0.002},
}


@pytest.mark.parametrize("optimizer", list(OPTIMIZERS))
@pytest.mark.parametrize("schedule", list(RUNS))
def test_training_follows_the_schedule(
    schedule: str, optimizer: str, small_mnist1d: Dataset
) -> None:
    config = TrainConfig.from_dict(
        {**TINY, **OPTIMIZERS[optimizer], **RUNS[schedule], "schedule": schedule}
        | {"batch_size": 20, "epochs": 3}
    )
    steps: list[tuple[float, float, int]] = []

    def watch(model: nn.Module, info: dict[str, Any]) -> None:
        if info["step"] > 0:  # step 0 is the initial model
            steps.append((info["epoch"], info["lr"], info["batch_size"]))

    history = train_network(config, data=small_mnist1d, on_step=watch).meta["history"]
    planned = [scheduled(config, e, 20, 300) for e in range(3)]
    assert [(h["lr"], h["batch_size"]) for h in history] == planned
    assert len(steps) == history[-1]["updates"]
    # within an epoch the lr is the epoch's, except during a warm-up (every update)
    for epoch_done, lr, batch in steps:
        position = round(epoch_done - 1 / (300 // batch), 9)
        assert lr == pytest.approx(scheduled(config, position, 20, 300)[0], rel=1e-6)
    expected_momentum = 0.9  # SGD's momentum, or Adam's first beta
    assert {h["momentum"] for h in history} == {expected_momentum}
    named = "sgd_nesterov" if config.nesterov else config.optimizer  # its own threshold
    assert {h["optimizer"] for h in history} == {named}


def test_warm_up_raises_the_rate_at_every_update(small_mnist1d: Dataset) -> None:
    config = TrainConfig(
        **TINY, optimizer="sgd", lr=0.01, batch_size=30, epochs=2,
        schedule="linear_scaling", reference_batch_size=10, warmup_epochs=1,
    )  # fmt: skip
    rates: list[float] = []
    train_network(config, data=small_mnist1d, on_step=lambda m, i: rates.append(i["lr"]))
    assert rates.pop(0) == 0.01  # step 0, before the first update
    assert rates[:10] == pytest.approx([0.01 + 0.02 * j / 10 for j in range(10)], rel=1e-12)
    assert rates[10:] == [0.03] * 10


def test_nesterov_reaches_the_optimizer(small_mnist1d: Dataset) -> None:
    base = {**TINY, "optimizer": "sgd", "lr": 0.05, "batch_size": 30, "epochs": 1}
    plain = train_network(TrainConfig(**base), data=small_mnist1d).model.state_dict()
    nesterov = train_network(TrainConfig(**base, nesterov=True), data=small_mnist1d)
    changed = nesterov.model.state_dict()
    assert any(not torch.equal(plain[k], changed[k]) for k in plain)


def test_sweep_skips_a_checkpoint_written_before_the_new_settings(
    tmp_path: Path, small_mnist1d: Dataset
) -> None:
    config = TrainConfig(**TINY, batch_size=30, epochs=1)
    result = train_network(config, tmp_path, data=small_mnist1d, manifest=False)
    assert result.checkpoint is not None
    saved = torch.load(result.checkpoint, weights_only=True)
    for key in ("nesterov", "milestone_fractions", "max_batch_fraction", "warmup_epochs"):
        del saved["meta"]["config"][key]  # as an older flatness wrote it
    torch.save(saved, result.checkpoint)
    assert _existing_meta(result.checkpoint, config, overwrite=False) is not None
    other = TrainConfig(**TINY, batch_size=30, epochs=1, max_batch_fraction=0.5)
    with pytest.raises(ValueError, match="max_batch_fraction"):
        _existing_meta(result.checkpoint, other, overwrite=False)
