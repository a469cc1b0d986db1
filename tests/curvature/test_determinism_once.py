"""The determinism check runs once per objective (θ₀ and the batches never change)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from flatness.curvature.hessian import HessianOperator
from flatness.curvature.objective import Objective
from tests.conftest import make_data, make_net


def _counted(net: nn.Module) -> list[int]:
    calls = [0]

    def hook(*_: object) -> None:
        calls[0] += 1

    net.register_forward_hook(hook)
    return calls


def test_a_second_operator_on_the_same_objective_evaluates_no_extra_forward() -> None:
    net = make_net("mlp")
    calls = _counted(net)
    obj = Objective(net, make_data(n=12), batch_size=6)
    HessianOperator(obj, strategy="double_backward").close()
    assert calls[0] == 2  # the check: the first batch twice
    HessianOperator(obj, strategy="double_backward").close()
    obj.check_determinism()
    assert calls[0] == 2


def test_a_looser_tolerance_is_answered_from_the_remembered_check() -> None:
    net = make_net("mlp")
    calls = _counted(net)
    obj = Objective(net, make_data(n=12))
    obj.check_determinism(rtol=1e-12)
    obj.check_determinism(rtol=1e-6)
    assert calls[0] == 2


def test_a_random_objective_is_still_refused_every_time() -> None:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(8, 6), nn.Dropout(0.5), nn.Linear(6, 3)).double()
    obj = Objective(net, make_data(n=12), train_mode=True)
    for _ in range(2):
        with pytest.raises(RuntimeError, match="not deterministic"):
            obj.check_determinism()
