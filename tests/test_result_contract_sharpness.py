"""Every sharpness result honours the result contract of :mod:`flatness.results`.

Each public sharpness estimator is called on a tiny network; its result must expose the
contract's names with the right types, reproduce itself from its ``settings``, and give
the store the rows that the per-measure converters of ``flatness/pipeline/measures.py``
gave before the contract (``_scalar_records`` and ``_noise_records``, copied below as the
reference).

The cases live apart from ``tests/test_result_contract.py`` (the curvature walk) for
one reason: several sharpness results keep their existing count fields, which count
loss evaluations *with* their gradients (Keskar, adaptive sharpness) and evaluations
over chunks or single examples (m-sharpness, the noise scale), so their
``gradient_equivalents`` is not ``gradient_equivalents(**counts)`` of those fields; the
tests below check each one's cost in full-data passes instead.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import torch

import flatness.sharpness as sh
from flatness.curvature.objective import Objective
from flatness.results import Record, Result, ResultContract, finite_or_none, to_plain
from flatness.results import gradient_equivalents as nominal_cost
from tests.conftest import make_data, make_net
from tests.test_result_contract import check_to_dict_holds_the_contract


def old_scalar_records(result: Any) -> list[tuple[Any, ...]]:
    """``_scalar_records`` of measures.py before the contract, as plain tuples.

    Before the contract only PAC-Bayes flatness had ``converged`` (and none of these
    results had ``stderr`` but adaptive and average sharpness); the converter read
    them with ``getattr(result, name, None)``.
    """
    had_stderr = isinstance(result, sh.AdaptiveSharpnessResult | sh.AverageSharpnessResult)
    had_converged = isinstance(result, sh.PacBayesFlatnessResult)
    stderr = finite_or_none(result.stderr if had_stderr else None)
    converged = result.converged if had_converged else None
    return [
        (
            "",
            float(result.value),
            stderr,
            "stderr" if stderr is not None else None,
            None if converged is None else bool(converged),
        )
    ]


def old_noise_records(result: Any) -> list[tuple[Any, ...]]:
    """``_noise_records`` of measures.py before the contract, as plain tuples."""
    return [
        ("", result.b_simple, finite_or_none(result.b_simple_stderr), "stderr", None),
        ("trace_cov", result.trace_cov, finite_or_none(result.trace_cov_stderr), "stderr", None),
        (
            "grad_norm_sq",
            result.grad_norm_sq,
            finite_or_none(result.grad_norm_sq_stderr),
            "stderr",
            None,
        ),
    ]


def rows(records: list[Record]) -> list[tuple[Any, ...]]:
    return [(r.component, r.value, r.error, r.error_kind, r.converged) for r in records]


@pytest.fixture(scope="module")
def obj() -> Objective:
    X, y = make_data(24)
    return Objective(make_net("mlp"), (X, y), batch_size=8)


# (id, estimator, settings); the estimators take the objective first
SCALAR_CASES: list[tuple[str, Callable[..., Result], dict[str, Any]]] = [
    ("keskar", sh.keskar_sharpness, {"eps": 1e-3, "maxiter": 3}),
    ("keskar-pga-subspace", sh.keskar_sharpness, {"solver": "pga", "subspace_dim": 4}),
    ("adaptive", sh.adaptive_sharpness, {"rho": 0.05, "steps": 3}),
    ("adaptive-m-inf", sh.adaptive_sharpness, {"rho": 0.05, "steps": 2, "m": 10, "p": "inf"}),
    ("average", sh.average_sharpness, {"sigma": 0.01, "samples": 4}),
    ("pacbayes", sh.pacbayes_flatness, {"samples": 3, "max_iterations": 6}),
    ("pacbayes-mag", sh.pacbayes_mag_flatness, {"samples": 3, "criterion": "accuracy"}),
]


@pytest.mark.parametrize(
    ("name", "estimator", "settings"), SCALAR_CASES, ids=[case[0] for case in SCALAR_CASES]
)
def test_scalar_measures_honour_the_contract(
    obj: Objective, name: str, estimator: Callable[..., Result], settings: dict[str, Any]
) -> None:
    res = estimator(obj, **settings)
    assert isinstance(res, ResultContract)
    assert isinstance(res.value, float) and math.isfinite(res.value)
    assert isinstance(res.stderr, float)
    assert isinstance(res.converged, bool)
    assert res.matvecs == 0
    assert isinstance(res.evaluations, int) and res.evaluations >= 1
    assert isinstance(res.gradients, int) and res.gradients >= 0
    assert res.gradient_equivalents > 0 and res.seconds >= 0
    assert isinstance(res.to_dict(), dict)
    json.dumps(to_plain(res.details()))  # what the store keeps beside the rows
    # the settings reproduce the result (every measure is seeded)
    again: Any = estimator(obj, **res.settings)
    assert again.value == res.value
    # the store's rows are the ones the per-measure converter gave
    assert rows(res.records()) == old_scalar_records(res)


def test_keskar_converged_is_success_and_its_rows_keep_no_flag(obj: Objective) -> None:
    res = sh.keskar_sharpness(obj, maxiter=1, solver="lbfgsb")
    assert res.converged is res.success is False  # the iteration limit, as with the paper's
    assert math.isnan(res.stderr)
    assert res.records() == [Record("", res.value, None, None, None)]
    assert res.gradient_equivalents == nominal_cost(evaluations=1, gradients=res.gradients)


def test_adaptive_cost_is_the_same_in_full_gradients_whatever_m(obj: Objective) -> None:
    whole = sh.adaptive_sharpness(obj, rho=0.05, steps=3)
    chunked = sh.adaptive_sharpness(obj, rho=0.05, steps=3, m=5)
    assert chunked.chunks == 5 and chunked.gradients == 15 and chunked.evaluations == 25
    assert whole.gradient_equivalents == chunked.gradient_equivalents
    assert whole.gradient_equivalents == nominal_cost(evaluations=2, gradients=3)


def test_pacbayes_rows_keep_the_bisection_flag(obj: Objective) -> None:
    res = sh.pacbayes_flatness(obj, samples=3, max_iterations=1)
    assert res.status == "max_iterations"
    (row,) = res.records()
    assert row.converged is False and row.error is None


@pytest.mark.parametrize("method", ["examples", "batches"])
def test_noise_scale_honours_the_contract(obj: Objective, method: str) -> None:
    res = sh.gradient_noise_scale(obj, method=method, groups=3)  # type: ignore[arg-type]
    assert isinstance(res, ResultContract)
    np.testing.assert_equal((res.value, res.stderr), (res.b_simple, res.b_simple_stderr))
    assert res.converged is True and res.matvecs == 0 and res.evaluations == 0
    assert res.gradients == res.num_gradients == (24 if method == "examples" else 3)
    assert res.gradient_equivalents == nominal_cost(gradients=1)
    assert rows(res.records()) == old_noise_records(res)
    again = sh.gradient_noise_scale(obj, **res.settings)
    np.testing.assert_allclose(again.b_simple, res.b_simple, rtol=1e-12)


def test_landscape_value_is_the_largest_rise_above_the_centre(obj: Objective) -> None:
    res = sh.loss_landscape_2d(obj, steps=(3, 5), span=(-0.5, 0.5))
    assert isinstance(res, ResultContract)
    assert res.value == pytest.approx(float(res.loss.max() - obj.value()), abs=1e-15)
    assert res.value >= 0 and math.isnan(res.stderr) and res.converged is True
    assert res.evaluations == 15 and res.gradient_equivalents == nominal_cost(evaluations=15)
    again = sh.loss_landscape_2d(obj, **res.settings)
    np.testing.assert_array_equal(again.loss, res.loss)
    assert rows(res.records()) == [("", res.value, None, None, None)]
    json.dumps(to_plain(res.details()))
    off_centre = sh.loss_landscape_2d(obj, steps=2, span=(0.1, 0.2))
    assert math.isnan(off_centre.value)


def test_interpolation_value_is_the_loss_barrier() -> None:
    X, y = make_data(20)
    a, b = make_net("mlp", seed=0), make_net("mlp", seed=1)
    res = sh.parametric_plot(a, b, train=(X, y), alphas=np.linspace(-1.0, 2.0, 13))
    assert isinstance(res, ResultContract)
    inside = (res.alphas >= 0) & (res.alphas <= 1)
    alphas, losses = res.alphas[inside], res.train_loss[inside]
    line = (1 - alphas) * losses[0] + alphas * losses[-1]
    assert res.value == pytest.approx(float(np.max(losses - line)))
    assert res.value >= 0 and math.isnan(res.stderr) and math.isnan(res.gradient_equivalents)
    again = sh.interpolate_checkpoints(a, b, train=(X, y), **res.settings)
    np.testing.assert_array_equal(again.train_loss, res.train_loss)
    assert rows(res.records()) == [("", res.value, None, None, None)]
    json.dumps(to_plain(res.details()))
    without_ends = sh.parametric_plot(a, b, train=(X, y), alphas=[0.25, 0.5])
    assert math.isnan(without_ends.value)


@pytest.mark.parametrize(
    ("name", "estimator", "settings"), SCALAR_CASES, ids=[case[0] for case in SCALAR_CASES]
)
def test_to_dict_holds_the_contract_names(
    obj: Objective, name: str, estimator: Callable[..., Result], settings: dict[str, Any]
) -> None:
    check_to_dict_holds_the_contract(estimator(obj, **settings))


def test_to_dict_of_the_other_measures_holds_the_contract_names(obj: Objective) -> None:
    check_to_dict_holds_the_contract(sh.gradient_noise_scale(obj, groups=3))
    check_to_dict_holds_the_contract(sh.loss_landscape_2d(obj, steps=3))
    X, y = make_data(20)
    a, b = make_net("mlp", seed=0), make_net("mlp", seed=1)
    check_to_dict_holds_the_contract(sh.parametric_plot(a, b, train=(X, y), alphas=[0.0, 1.0]))


def test_interpolation_settings_reproduce_the_dtype() -> None:
    X, y = make_data(20)
    a, b = make_net("mlp", seed=0), make_net("mlp", seed=1)
    assert next(a.parameters()).dtype == torch.float64
    res = sh.interpolate_checkpoints(a, b, train=(X, y), alphas=[0.0, 0.5], dtype=torch.float32)
    again = sh.interpolate_checkpoints(a, b, train=(X, y), **res.settings)
    assert again.dtype == res.dtype == "float32"
    np.testing.assert_array_equal(again.train_loss, res.train_loss)
