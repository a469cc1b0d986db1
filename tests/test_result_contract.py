"""Every public estimator's result honours the result contract of :mod:`flatness.results`.

One parametrized test walks :data:`CASES`: each case names an estimator, builds its
target (an Objective or an operator) and gives its settings. The result must expose
the contract's names with the right types, a cost consistent with
:func:`flatness.results.gradient_equivalents`, ``settings`` that reproduce it, and rows
for the results store. To cover another estimator, append a :class:`Case`.

The store rows of the curvature results are compared with the per-measure converters
that ``flatness/pipeline/measures.py`` used before the contract (``_eigen_records``,
``_trace_records``, ``_density_records``, ``_density_details``), copied below as the
reference (the pipeline no longer has them).
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from flatness.curvature import (
    DenseOperator,
    DensityResult,
    EigenResult,
    Objective,
    TraceResult,
    exact_hessian_trace,
    hessian_eigenvalues,
    hessian_trace,
    hutchinson_trace,
    hutchpp_trace,
    power_iteration,
    spectral_density,
)
from flatness.results import Record, Result, ResultContract, finite_or_none, to_plain
from flatness.results import gradient_equivalents as nominal_cost
from tests.conftest import make_data, make_net


def dense_target() -> DenseOperator:
    """A 40 x 40 matrix with a known spectrum: a plain operator, no gradients."""
    return DenseOperator.from_spectrum([6.0, 4.0, 3.0, *np.linspace(-1.0, 1.0, 37)], seed=3)


def model_target() -> Objective:
    """A tiny ReLU network with cross-entropy: its Hessian, and the exact trace's case."""
    X, y = make_data(24)
    return Objective(make_net("relu_mlp"), (X, y), batch_size=8)


@dataclasses.dataclass(frozen=True)
class Case:
    """One estimator call: ``estimator(target(), **settings)``."""

    name: str
    estimator: Callable[..., Result]
    target: Callable[[], Any]
    settings: dict[str, Any]
    #: Whether the estimate repeats to the last bit (products of a plain matrix do;
    #: a model's Hessian products may change strategy between calls).
    bitwise: bool = True

    def run(self) -> Result:
        return self.estimator(self.target(), **self.settings)


CASES: list[Case] = [
    Case("eigen-dense", hessian_eigenvalues, dense_target, {"k": 3, "tol": 1e-8}),
    Case("eigen-dense-SA", hessian_eigenvalues, dense_target, {"which": "SA", "tol": 1e-6}),
    Case("eigen-model", hessian_eigenvalues, model_target, {"k": 2}, bitwise=False),
    Case("power-dense", power_iteration, dense_target, {"k": 2, "maxiter": 50}),
    Case("power-model", power_iteration, model_target, {"maxiter": 20}, bitwise=False),
    Case("hutchinson-dense", hutchinson_trace, dense_target, {"budget": 16}),
    Case("hutchpp-dense", hutchpp_trace, dense_target, {"budget": 30, "seed": 1}),
    Case("hutchpp-model", hutchpp_trace, model_target, {"budget": 12}, bitwise=False),
    Case("trace-dense", hessian_trace, dense_target, {"method": "hutchinson", "budget": 9}),
    Case("trace-exact", hessian_trace, model_target, {"method": "exact"}, bitwise=False),
    Case("exact-trace", exact_hessian_trace, model_target, {}, bitwise=False),
    Case("density-dense", spectral_density, dense_target, {"steps": 8, "runs": 3}),
    Case("density-model", spectral_density, model_target, {"steps": 5, "runs": 2}, bitwise=False),
]


def _is_float_or_floats(x: Any) -> bool:
    if isinstance(x, tuple):
        return len(x) > 0 and all(isinstance(v, float) for v in x)
    return isinstance(x, float)


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_result_honours_the_contract(case: Case) -> None:
    res = case.run()
    assert isinstance(res, Result) and isinstance(res, ResultContract)
    # value, stderr and converged share a shape: a scalar or a tuple for top-k
    assert _is_float_or_floats(res.value) and _is_float_or_floats(res.stderr)
    if isinstance(res.value, tuple):
        assert isinstance(res.stderr, tuple) and len(res.stderr) == len(res.value)
        assert isinstance(res.converged, tuple) and len(res.converged) == len(res.value)
        assert all(isinstance(c, bool) for c in res.converged)
    else:
        assert isinstance(res.converged, bool)
    # the cost
    for count in (res.matvecs, res.evaluations, res.gradients):
        assert isinstance(count, int) and count >= 0
    assert isinstance(res.gradient_equivalents, float)
    assert isinstance(res.seconds, float) and res.seconds >= 0
    if isinstance(case.target(), Objective):
        assert res.gradient_equivalents == pytest.approx(
            nominal_cost(matvecs=res.matvecs, evaluations=res.evaluations, gradients=res.gradients)
        )
        assert res.gradient_equivalents > 0
    else:  # a product with a plain matrix is no gradient
        assert math.isnan(res.gradient_equivalents)
    # the settings reproduce the result
    assert isinstance(res.settings, dict)
    again = case.estimator(case.target(), **res.settings)
    if case.bitwise:
        assert again.value == res.value
    else:
        np.testing.assert_allclose(again.value, res.value, rtol=1e-6)
    # plain dicts for pandas and the store; rows for the store
    assert isinstance(res.to_dict(), dict)
    json.dumps(to_plain(res.details()))
    records = res.records()
    assert records and all(isinstance(r, Record) for r in records)


# ------------------------------------------------- the store rows, as they were


def old_eigen_records(result: Any) -> list[Record]:
    """``_eigen_records`` of measures.py before the contract."""
    return [
        Record(str(i + 1), float(v), finite_or_none(r), "residual", bool(c))
        for i, (v, r, c) in enumerate(
            zip(result.eigenvalues, result.residuals, result.converged, strict=True)
        )
    ]


def old_trace_records(result: Any) -> list[Record]:
    """``_trace_records`` of measures.py before the contract."""
    return [Record("", result.estimate, finite_or_none(result.stderr), "stderr", result.converged)]


def old_density_records(result: Any) -> list[Record]:
    """``_density_records`` of measures.py before the contract."""
    n = result.dim
    return [
        Record(
            "trace", n * result.moments(1), finite_or_none(n * result.moments_stderr(1)), "stderr"
        ),
        Record(
            "frobenius2",
            n * result.moments(2),
            finite_or_none(n * result.moments_stderr(2)),
            "stderr",
        ),
        Record("ritz_max", float(result.nodes.max())),
        Record("ritz_min", float(result.nodes.min())),
    ]


def old_density_details(result: Any) -> dict[str, Any]:
    """``_density_details`` of measures.py before the contract."""
    keep = ("sigma", "steps", "runs", "dim", "lanczos_steps", "nodes", "weights")
    return {k: to_plain(getattr(result, k)) for k in keep}


def _same_rows(new: list[Record], old: list[Any]) -> None:
    as_tuples = [(r.component, r.value, r.error, r.error_kind, r.converged) for r in old]
    assert [(r.component, r.value, r.error, r.error_kind, r.converged) for r in new] == as_tuples


def _eigen_results() -> list[EigenResult]:
    A = dense_target()
    return [
        hessian_eigenvalues(A, k=3, tol=1e-8),
        power_iteration(A, k=2, maxiter=5),  # stops early: some flags False
        # a budget that ends before any Ritz value exists: NaN values, infinite residuals
        hessian_eigenvalues(A, k=3, max_matvecs=1, verify=False),
    ]


def test_eigen_records_are_the_rows_of_before() -> None:
    for res in _eigen_results():
        assert res.value == res.eigenvalues and res.stderr == res.residuals
        _same_rows(res.records(), old_eigen_records(res))
        assert all(r.error_kind == "residual" for r in res.records())
    starved = _eigen_results()[-1]
    errors = [r.error for r in starved.records()]
    assert errors[0] is not None and errors[1:] == [None, None]  # one Ritz value after 1 step
    assert math.isnan(starved.value[1]) and starved.converged == (False, False, False)


def test_trace_records_are_the_rows_of_before() -> None:
    A = dense_target()
    results: list[TraceResult] = [
        hutchinson_trace(A, budget=16),
        hutchpp_trace(A, budget=30),
        hutchinson_trace(A, budget=1),  # one probe: no standard error
        hutchinson_trace(A, budget=8, target_stderr=1e-9, min_probes=2),  # target missed
    ]
    for res in results:
        assert res.value == res.estimate
        _same_rows(res.records(), old_trace_records(res))
    assert results[2].records() == [Record("", results[2].estimate, None, "stderr", False)]


def test_density_records_and_details_are_those_of_before() -> None:
    for runs in (3, 1):  # one run: no standard errors
        res: DensityResult = spectral_density(dense_target(), steps=8, runs=runs)
        assert res.value == res.dim * res.moments(1)
        assert res.converged is True
        if runs == 1:
            assert math.isnan(res.stderr)
        _same_rows(res.records(), old_density_records(res))
        assert res.details() == old_density_details(res)


def test_settings_stay_out_of_repr_and_details() -> None:
    res = hessian_eigenvalues(dense_target(), k=2)
    assert "settings" not in repr(res) and "settings" not in res.details()
    assert res.settings["k"] == 2 and res.settings["hessian"] is None


def test_hessian_cost_counts_products_of_a_model_only() -> None:
    obj = model_target()
    res = hutchinson_trace(obj, budget=8)
    assert res.gradient_equivalents == 2.0 * res.matvecs == 16.0
    exact = exact_hessian_trace(obj)
    assert exact.matvecs == 0 and exact.gradients == 3  # one backward pass per class
    assert exact.gradient_equivalents == 3.0


#: The contract's names every estimator result's ``to_dict()`` holds, whether the
#: result keeps them as fields or as properties.
CONTRACT_NAMES = (
    "value",
    "stderr",
    "converged",
    "matvecs",
    "evaluations",
    "gradients",
    "gradient_equivalents",
    "seconds",
    "settings",
)


def check_to_dict_holds_the_contract(res: Result) -> None:
    """``to_dict()`` has every contract name, as plain data; ``details()`` stays the fields."""
    full = res.to_dict()
    for name in CONTRACT_NAMES:
        assert name in full, name
        np.testing.assert_equal(full[name], to_plain(getattr(res, name)))
    short = res.to_dict(include_arrays=False)
    assert set(CONTRACT_NAMES) - {"settings"} <= set(short) and "settings" not in short
    json.dumps(to_plain(res.details()))


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_to_dict_holds_the_contract_names(case: Case) -> None:
    check_to_dict_holds_the_contract(case.run())


def test_summaries_that_are_not_estimates_do_not_claim_the_contract() -> None:
    """Reports, score and study summaries and statistics convert to dicts but yield no
    store rows: they are :class:`PlainData`, not estimator :class:`Result` s."""
    from flatness.pipeline.scoring import ScoreSummary
    from flatness.report.build import Report
    from flatness.report.correlation import Correlation
    from flatness.report.stats import MeanStd, RankTest, mean_std
    from flatness.results import PlainData
    from flatness.study.outcome import CaseResult, StudyResult

    for cls in (ScoreSummary, Report, Correlation, MeanStd, RankTest, CaseResult, StudyResult):
        assert issubclass(cls, PlainData) and not issubclass(cls, Result), cls
        assert not hasattr(cls, "records"), cls
    summary = mean_std([1.0, 2.0, 3.0])
    assert summary.to_dict()["mean"] == 2.0
