"""Every sharpness measure refuses a non-deterministic objective, as the Hessian does.

An objective in training mode on a network with dropout gives a different loss at
each evaluation; a measure built on loss differences then returns noise with
``success=True``. One shared check (:func:`flatness.sharpness.checks.require_deterministic`)
runs at each estimator's entry and raises the curvature functions' message. The
gradient noise scale with ``method="batches"`` is exempt on purpose: the randomness
of a training-mode objective is part of the gradient noise it measures.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import torch
from torch import nn

from flatness.curvature.objective import Objective
from flatness.sharpness import (
    adaptive_sharpness,
    average_sharpness,
    gradient_noise_scale,
    keskar_sharpness,
    loss_landscape_2d,
    pacbayes_flatness,
    pacbayes_mag_flatness,
)
from flatness.sharpness.checks import require_deterministic

MEASURES: dict[str, Callable[[Objective], Any]] = {
    "keskar_sharpness": lambda obj: keskar_sharpness(obj, maxiter=2),
    "adaptive_sharpness": lambda obj: adaptive_sharpness(obj, rho=0.05, steps=2),
    "average_sharpness": lambda obj: average_sharpness(obj, sigma=0.05, samples=2),
    "pacbayes_flatness": lambda obj: pacbayes_flatness(obj, samples=2, max_iterations=2),
    "pacbayes_mag_flatness": lambda obj: pacbayes_mag_flatness(obj, samples=2, max_iterations=2),
    "loss_landscape_2d": lambda obj: loss_landscape_2d(obj, steps=3),
}


def _dropout_objective(train_mode: bool) -> Objective:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(3, 8), nn.ReLU(), nn.Dropout(0.5), nn.Linear(8, 2)).double()
    X = torch.randn(16, 3, dtype=torch.float64)
    return Objective(net, (X, (X[:, 0] > 0).long()), train_mode=train_mode)


@pytest.mark.parametrize("name", sorted(MEASURES))
def test_measure_refuses_a_random_objective(name: str) -> None:
    with pytest.raises(RuntimeError, match=f"{name}: the objective is not deterministic") as err:
        MEASURES[name](_dropout_objective(train_mode=True))
    assert "dropout" in str(err.value) and "train_mode=False" in str(err.value)


@pytest.mark.parametrize("name", sorted(MEASURES))
def test_measure_runs_in_eval_mode(name: str) -> None:
    res = MEASURES[name](_dropout_objective(train_mode=False))
    assert res.value == res.value  # a number, not NaN


def test_train_mode_without_randomness_is_accepted() -> None:
    """BatchNorm in training mode is a fixed function of the batch: not refused."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.ReLU(), nn.Linear(4, 2)).double()
    X = torch.randn(16, 3, dtype=torch.float64)
    obj = Objective(net, (X, (X[:, 0] > 0).long()), train_mode=True)
    require_deterministic(obj, "test")
    assert average_sharpness(obj, sigma=0.05, samples=2).samples == 2


def test_noise_scale_of_batches_accepts_a_training_mode_objective() -> None:
    """The dropout noise of training-mode batches is gradient noise: measured, not refused."""
    obj = _dropout_objective(train_mode=True)
    obj4 = Objective(obj.model, obj.batches[0], batch_size=4, train_mode=True)
    res = gradient_noise_scale(obj4, method="batches", groups=2)
    assert res.num_gradients == 4
    with pytest.raises(ValueError, match="train_mode=True"):
        gradient_noise_scale(obj, method="examples")
