"""Average-case sharpness: Monte Carlo against the closed form 0.5 σ² tr(T H T) of a quadratic."""

from __future__ import annotations

import math

import pytest
import torch

from flatness.curvature.objective import Objective
from flatness.sharpness.average import AverageSharpnessResult, average_sharpness
from tests.conftest import make_data, make_net
from tests.sharpness.test_adaptive import CENTER, D, quadratic_objective, random_rotation


def replay_draws(seed: int, dim: int, samples: int) -> torch.Tensor:
    """The standard normal draws the estimator makes for ``seed`` (CPU, float64)."""
    gen = torch.Generator().manual_seed(seed)
    return torch.stack(
        [torch.randn(dim, generator=gen, dtype=torch.float64) for _ in range(samples)]
    )


def test_plain_value_is_half_sigma_squared_trace_within_error_bars() -> None:
    obj = quadratic_objective(D.expand(4, -1), rotation=random_rotation(5, 1))
    res = average_sharpness(obj, sigma=0.1, samples=400, adaptive=False, seed=0)
    exact = 0.5 * 0.1**2 * float(D.sum())
    assert abs(res.value - exact) < 4 * res.stderr
    assert res.stderr < 0.1 * exact


def test_adaptive_value_scales_the_noise_by_weight_magnitudes() -> None:
    obj = quadratic_objective(D.expand(4, -1), center=CENTER)
    eta = 0.05
    res = average_sharpness(obj, sigma=0.1, samples=400, eta=eta, seed=1)
    exact = 0.5 * 0.1**2 * float((D * (CENTER.abs() + eta) ** 2).sum())
    assert abs(res.value - exact) < 4 * res.stderr


def test_value_is_exactly_the_mean_over_the_seeded_draws() -> None:
    obj = quadratic_objective(D.expand(3, -1), center=CENTER)
    res = average_sharpness(obj, sigma=0.2, samples=7, seed=5)
    Z = replay_draws(5, 5, 7)
    per_draw = 0.5 * ((0.2 * CENTER.abs() * Z) ** 2 * D).sum(1)
    assert res.sample_values == pytest.approx(per_draw.tolist(), rel=1e-12)
    assert res.value == pytest.approx(float(per_draw.mean()), rel=1e-12)
    assert res.stderr == pytest.approx(float(per_draw.std() / math.sqrt(7)), rel=1e-10)


def test_network_result_is_reproducible_and_records_its_evidence() -> None:
    obj = Objective(make_net("mlp"), make_data(16))
    a = average_sharpness(obj, sigma=0.05, samples=6, seed=2)
    b = average_sharpness(obj, sigma=0.05, samples=6, seed=2)
    c = average_sharpness(obj, sigma=0.05, samples=6, seed=3)
    assert isinstance(a, AverageSharpnessResult)
    assert a.value == b.value and a.sample_values == b.sample_values
    assert a.value != c.value
    assert (a.samples, a.evaluations, a.seed, a.sigma) == (6, 7, 2, 0.05)
    assert a.loss == pytest.approx(float(obj.value()), rel=1e-12)
    assert a.perturbed_loss == pytest.approx(a.loss + a.value)
    assert "sample_values" not in a.to_dict(include_arrays=False)
    assert "AverageSharpnessResult(adaptive" in repr(a)


def test_one_sample_has_no_error_bar() -> None:
    obj = quadratic_objective(D.expand(2, -1))
    assert math.isnan(average_sharpness(obj, sigma=0.1, samples=1, adaptive=False).stderr)


def test_model_is_not_mutated() -> None:
    net = make_net("bn_mlp")
    before = {k: v.clone() for k, v in net.state_dict().items()}
    average_sharpness(Objective(net, make_data(10)), sigma=0.1, samples=3)
    assert not net.training
    for k, v in net.state_dict().items():
        assert torch.equal(v, before[k]), k


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"sigma": 0.0}, "sigma"),
        ({"sigma": float("inf")}, "sigma"),
        ({"sigma": 0.1, "samples": 0}, "samples"),
        ({"sigma": 0.1, "samples": 2.0}, "samples"),
        ({"sigma": 0.1, "eta": -1e-3}, "eta"),
    ],
)
def test_invalid_settings_are_refused(kwargs: dict, match: str) -> None:
    obj = quadratic_objective(D.expand(2, -1))
    with pytest.raises(ValueError, match=match):
        average_sharpness(obj, **kwargs)
