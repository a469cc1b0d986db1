"""The refusal of a non-deterministic objective reads true for curvature and sharpness."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from flatness.curvature.objective import Objective
from flatness.sharpness import keskar_sharpness

FIXED = "Curvature and sharpness measures need a fixed function: use train_mode=False"


def _dropout_objective() -> Objective:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(3, 8), nn.ReLU(), nn.Dropout(0.5), nn.Linear(8, 2)).double()
    X = torch.randn(16, 3, dtype=torch.float64)
    return Objective(net, (X, (X[:, 0] > 0).long()), train_mode=True)


def test_the_curvature_message_names_both_kinds_of_measure() -> None:
    with pytest.raises(RuntimeError, match="not deterministic") as err:
        _dropout_objective().check_determinism()
    assert FIXED in str(err.value)


def test_a_sharpness_measure_gives_the_same_message() -> None:
    with pytest.raises(RuntimeError, match="keskar_sharpness: the objective") as err:
        keskar_sharpness(_dropout_objective(), maxiter=2)
    assert FIXED in str(err.value) and "dropout" in str(err.value)
