"""The gradient norm and the weight norm against hand values, and their contract."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

import flatness.sharpness.norms as nm
from flatness.curvature.objective import Objective
from flatness.pipeline.measures import get_measure
from flatness.results import Record
from tests.test_result_contract import check_to_dict_holds_the_contract


def linear_bn() -> nn.Module:
    """Linear(2, 2) with known weights and bias, then BatchNorm with known γ, β."""
    net = nn.Sequential(nn.Linear(2, 2), nn.BatchNorm1d(2))
    with torch.no_grad():
        net[0].weight.copy_(torch.tensor([[1.0, 2.0], [2.0, 0.0]]))  # ||W||^2 = 9
        net[0].bias.copy_(torch.tensor([4.0, 0.0]))  # 16
        net[1].weight.copy_(torch.tensor([1.0, 2.0]))  # 5
        net[1].bias.copy_(torch.tensor([0.0, 1.0]))  # 1
    return net.eval()


def test_weight_norm_is_the_two_norm_over_all_and_over_the_weights() -> None:
    net = linear_bn()
    obj = Objective(net, (torch.zeros(3, 2), torch.tensor([0, 1, 0])))
    res = nm.weight_norm(obj)
    assert res.value == pytest.approx(math.sqrt(9 + 16 + 5 + 1))
    assert res.weights == pytest.approx(3.0)  # the linear layer's weight only
    assert (res.dim, res.weights_dim) == (10, 4)
    assert res.records() == [Record("", res.value), Record("weights", res.weights)]
    assert res.gradient_equivalents == 0.0 and res.matvecs == 0 and res.converged
    assert math.isnan(res.stderr)


def test_weight_norm_of_a_group_counts_only_the_group() -> None:
    obj = Objective(linear_bn(), (torch.zeros(3, 2), torch.tensor([0, 1, 0])), params="1")
    res = nm.weight_norm(obj)
    assert res.value == pytest.approx(math.sqrt(6.0))
    assert math.isnan(res.weights) and res.weights_dim == 0  # BatchNorm has no weights


def test_weight_parameter_names_leave_out_norm_layers_and_biases() -> None:
    net = nn.Sequential(nn.Conv1d(1, 2, 3), nn.LayerNorm(2), nn.Linear(2, 2, bias=False))
    assert nm.weight_parameter_names(net) == {"0.weight", "2.weight"}


def test_gradient_norm_matches_the_hand_gradient_of_a_squared_loss() -> None:
    # f(w) = mean_i (w . x_i - y_i)^2 with x = (1, 0), (0, 2); y = 0; w = (1, 1):
    # residuals 1 and 2, gradient = mean(2 r_i x_i) = ((2*1*1 + 0)/2, (0 + 2*2*2)/2) = (1, 4)
    net = nn.Linear(2, 1, bias=False)
    with torch.no_grad():
        net.weight.copy_(torch.tensor([[1.0, 1.0]]))
    X, y = torch.tensor([[1.0, 0.0], [0.0, 2.0]]), torch.zeros(2, 1)
    obj = Objective(net, (X, y), nn.functional.mse_loss, batch_size=1, dtype=torch.float64)
    res = nm.gradient_norm(obj)
    assert res.value == pytest.approx(math.sqrt(17.0))
    assert res.inf_norm == pytest.approx(4.0)
    assert res.loss == pytest.approx(2.5)
    assert res.records() == [Record("", res.value), Record("inf", 4.0)]
    assert (res.gradients, res.evaluations, res.gradient_equivalents) == (1, 0, 1.0)
    assert res.settings == {}


def test_gradient_norm_is_zero_at_a_minimum() -> None:
    net = nn.Linear(1, 1, bias=False)
    with torch.no_grad():
        net.weight.fill_(2.0)
    X = torch.tensor([[1.0], [3.0]])
    obj = Objective(net, (X, 2 * X), nn.functional.mse_loss, dtype=torch.float64)
    assert nm.gradient_norm(obj).value == 0.0


@pytest.mark.parametrize("name", ["gradient_norm", "weight_norm"])
def test_the_measures_take_no_settings_and_honour_the_contract(name: str) -> None:
    measure = get_measure(name)
    assert measure.defaults() == {} and list(measure.tasks({})) == [{}]
    obj = Objective(linear_bn(), (torch.randn(4, 2), torch.tensor([0, 1, 0, 1])))
    result = measure.compute(obj, {})
    check_to_dict_holds_the_contract(result)
    rows, details = measure.run(obj, {})
    assert [r.component for r in rows] == ["", "inf" if name == "gradient_norm" else "weights"]
    assert details["value"] == rows[0].value
    assert measure.compute(obj, {}).value == result.value  # deterministic
