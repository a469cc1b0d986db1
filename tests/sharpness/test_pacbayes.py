"""PAC-Bayes flatness (Jiang et al. 2019): the bisection against quadratics' closed forms."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from flatness.curvature.objective import Objective
from flatness.sharpness.jiang2019pacbayes import (
    PacBayesFlatnessResult,
    pacbayes_flatness,
    pacbayes_mag_flatness,
)
from tests.conftest import make_data, make_net
from tests.sharpness.test_adaptive import CENTER, D, quadratic_objective, random_rotation
from tests.sharpness.test_average import replay_draws


def test_plain_sigma_solves_half_sigma_squared_trace_equals_threshold() -> None:
    obj = quadratic_objective(D.expand(4, -1), rotation=random_rotation(5, 2))
    res = pacbayes_flatness(obj, threshold=0.05, samples=64, rtol=1e-4, seed=3)
    assert isinstance(res, PacBayesFlatnessResult)
    assert res.converged and res.status == "converged" and res.measure == "pacbayes.flatness"
    lo, hi = res.bracket
    assert lo == res.sigma and hi / lo <= 1 + 1e-4
    # with the same draws for every sigma the estimated increase is 0.5 sigma^2 mean(z'Hz)
    Z = replay_draws(3, 5, 64) @ random_rotation(5, 2).T
    sigma_star = math.sqrt(2 * 0.05 / float((Z**2 * D).sum(1).mean()))
    assert lo <= sigma_star <= hi
    assert res.deviation <= 0.05 and res.deviation == pytest.approx(0.05, rel=3e-4)
    # and in expectation 0.5 sigma^2 tr(H) = threshold: within the Monte Carlo error
    exact = math.sqrt(2 * 0.05 / float(D.sum()))
    assert abs(res.sigma - exact) < 4 * exact * res.deviation_stderr / res.deviation / 2
    assert res.value == 1 / res.sigma**2


def test_magnitude_aware_sigma_solves_its_closed_form() -> None:
    obj = quadratic_objective(D.expand(4, -1), center=CENTER)
    eps, thr = 1e-2, 0.02
    res = pacbayes_mag_flatness(obj, threshold=thr, samples=32, epsilon=eps, rtol=1e-5, seed=4)
    assert res.measure == "pacbayes.mag.flatness" and res.magnitude_aware
    Z2 = replay_draws(4, 5, 32) ** 2
    a = float((Z2 * D * CENTER**2).sum(1).mean())  # E-hat[sum d_i w_i^2 z_i^2]
    b = float((Z2 * D).sum(1).mean())  # E-hat[sum d_i z_i^2]
    alpha_star = math.sqrt((2 * thr - eps**2 * b) / a)
    assert res.bracket[0] <= alpha_star <= res.bracket[1]
    assert res.sigma == pytest.approx(alpha_star, rel=1e-5)


def test_bracket_failures_are_flagged_not_hidden() -> None:
    obj = quadratic_objective(D.expand(2, -1))
    below = pacbayes_flatness(obj, threshold=0.01, samples=4, sigma_bounds=(1.0, 10.0))
    assert below.status == "below_bracket" and not below.converged
    assert below.sigma == 1.0 and below.deviation > 0.01 and below.iterations == 0
    above = pacbayes_flatness(obj, threshold=0.01, samples=4, sigma_bounds=(1e-6, 1e-4))
    assert above.status == "above_bracket" and not above.converged and above.sigma == 1e-4
    short = pacbayes_flatness(obj, threshold=0.01, samples=4, max_iterations=2)
    assert short.status == "max_iterations" and short.iterations == 2 and not short.converged
    assert short.evaluations == 1 + 4 * (2 + 2)


def test_accuracy_criterion_on_a_classifier() -> None:
    net = make_net("relu_mlp")
    X, y = make_data(30)
    obj = Objective(net, (X, y), batch_size=7)
    res = pacbayes_flatness(obj, criterion="accuracy", samples=8, seed=1)
    with torch.no_grad():
        accuracy = float((net(X).argmax(1) == y).double().mean())
    assert res.base == pytest.approx(accuracy, abs=1e-12)
    assert res.criterion == "accuracy" and res.converged
    assert res.deviation <= 0.1
    loss = pacbayes_flatness(obj, criterion="loss", samples=8, seed=1)
    assert loss.base == pytest.approx(float(obj.value()), rel=1e-12)
    assert loss.sigma != res.sigma


def test_accuracy_needs_input_target_batches() -> None:
    obj = Objective(
        make_net("mlp"),
        [{"x": make_data(6)[0]}],
        batch_loss=lambda fn, b: fn(b["x"]).square().mean(),
    )
    with pytest.raises(ValueError, match="accuracy"):
        pacbayes_flatness(obj, criterion="accuracy")


def test_seeds_reproduce_and_the_model_is_not_mutated() -> None:
    net = make_net("bn_mlp")
    before = {k: v.clone() for k, v in net.state_dict().items()}
    obj = Objective(net, make_data(12), loss_fn=F.cross_entropy)
    a = pacbayes_mag_flatness(obj, samples=4, rtol=0.05, seed=9)
    b = pacbayes_mag_flatness(obj, samples=4, rtol=0.05, seed=9)
    assert a.sigma == b.sigma and a.bracket == b.bracket and a.seed == 9
    assert not net.training
    for k, v in net.state_dict().items():
        assert torch.equal(v, before[k]), k
    d = a.to_dict()
    assert d["measure"] == "pacbayes.mag.flatness" and d["bracket"] == list(a.bracket)
    assert "PacBayesFlatnessResult('pacbayes.mag.flatness'" in repr(a)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"threshold": 0.0}, "threshold"),
        ({"samples": 0}, "samples"),
        ({"criterion": "error"}, "criterion"),
        ({"rtol": -1.0}, "rtol"),
        ({"max_iterations": -1}, "max_iterations"),
        ({"epsilon": -1e-3}, "epsilon"),
        ({"sigma_bounds": (1.0, 0.1)}, "sigma_bounds"),
        ({"sigma_bounds": (0.0, 1.0)}, "sigma_bounds"),
        ({"sigma_bounds": 1.0}, "sigma_bounds"),
    ],
)
def test_invalid_settings_are_refused(kwargs: dict, match: str) -> None:
    obj = quadratic_objective(D.expand(2, -1))
    with pytest.raises(ValueError, match=match):
        pacbayes_flatness(obj, **kwargs)
