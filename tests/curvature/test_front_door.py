"""The typed front door of the curvature estimators: Hessian options, warm starts, old paths."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import torch

import flatness
from flatness.curvature import (
    DenseOperator,
    HessianOperator,
    HessianOptions,
    Objective,
    hessian_eigenvalues,
    hessian_trace,
    hutchinson_trace,
    hutchpp_trace,
    power_iteration,
    spectral_density,
)
from flatness.curvature.operator import as_operator, operator_for
from tests.conftest import make_data, make_net

F64 = torch.float64


def _objective() -> Objective:
    X, y = make_data(16)
    return Objective(make_net("mlp"), (X, y), batch_size=8)


def _spectrum_operator() -> DenseOperator:
    gen = torch.Generator().manual_seed(0)
    bulk = (4.0 * torch.rand(395, generator=gen, dtype=F64)).tolist()
    return DenseOperator.from_spectrum([10.0, 8.0, 6.0, 5.0, 4.5, *bulk], seed=1)


ESTIMATORS: dict[str, tuple[Callable[..., Any], dict[str, Any]]] = {
    "eigenvalues": (hessian_eigenvalues, {}),
    "power": (power_iteration, {"maxiter": 5}),
    "trace": (hessian_trace, {"budget": 6}),
    "hutchinson": (hutchinson_trace, {"budget": 4}),
    "hutchpp": (hutchpp_trace, {"budget": 6}),
    "density": (spectral_density, {"steps": 3, "runs": 1}),
}


# ------------------------------------------------------------------ HessianOptions


@pytest.mark.parametrize("name", list(ESTIMATORS))
def test_hessian_options_reach_the_operator(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    built: list[HessianOperator] = []
    original = HessianOperator.from_options.__func__  # type: ignore[attr-defined]

    def spy(cls: type[HessianOperator], objective: Objective, options: Any) -> HessianOperator:
        op = original(cls, objective, options)
        built.append(op)
        return op

    monkeypatch.setattr(HessianOperator, "from_options", classmethod(spy))
    estimator, settings = ESTIMATORS[name]
    options = HessianOptions(strategy="double_backward", batched=False)
    res = estimator(_objective(), hessian=options, **settings)
    assert len(built) == 1 and built[0].strategy == "double_backward"
    assert built[0].choices["strategy"] == "double_backward"
    assert res.settings["hessian"] == options


@pytest.mark.parametrize("name", list(ESTIMATORS))
def test_loose_hessian_keywords_still_work_with_a_deprecation_warning(name: str) -> None:
    estimator, settings = ESTIMATORS[name]
    obj = _objective()
    with pytest.warns(DeprecationWarning, match="hessian=flatness.HessianOptions") as caught:
        old = estimator(obj, strategy="double_backward", **settings)
    assert caught[0].filename == __file__  # the warning points at the caller
    new = estimator(obj, hessian=HessianOptions(strategy="double_backward"), **settings)
    assert old.settings["hessian"] == HessianOptions(strategy="double_backward")
    np.testing.assert_allclose(old.value, new.value, rtol=1e-10)


def test_hessian_options_are_checked() -> None:
    with pytest.raises(ValueError, match="strategy"):
        HessianOptions(strategy="magic")  # type: ignore[arg-type]
    obj = _objective()
    with pytest.raises(TypeError, match="both"):
        hessian_eigenvalues(obj, hessian=HessianOptions(), strategy="retained")  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="unexpected keyword"):
        hessian_eigenvalues(obj, stratgy="retained")  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="HessianOptions"):
        hessian_eigenvalues(obj, hessian={"strategy": "retained"})  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="apply to an Objective"):
        power_iteration(DenseOperator(torch.eye(3)), hessian=HessianOptions())


def test_as_operator_and_operator_for_take_options() -> None:
    obj = _objective()
    op, owned = as_operator(obj, hessian=HessianOptions(strategy="forward_over_reverse"))
    assert owned and isinstance(op, HessianOperator) and op.strategy == "forward_over_reverse"
    with pytest.warns(DeprecationWarning) as caught:
        with operator_for(obj, strategy="retained") as op2:
            assert isinstance(op2, HessianOperator) and op2.strategy == "retained"
    assert caught[0].filename == __file__
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the new way does not warn
        with operator_for(obj, HessianOptions()) as op3:
            assert op3.dim == obj.dim


def test_flatness_exports_the_options() -> None:
    assert flatness.HessianOptions is HessianOptions


# ---------------------------------------------------------------------- warm start


def test_warm_start_from_converged_vectors_takes_far_fewer_products() -> None:
    A = _spectrum_operator()
    cold = hessian_eigenvalues(A, k=5, tol=1e-8, return_eigenvectors=True, multiplicity_check=False)
    assert cold.all_converged and cold.eigenvectors is not None
    for v0 in (cold, cold.eigenvectors, cold.eigenvectors.numpy()):
        warm = hessian_eigenvalues(A, k=5, tol=1e-8, v0=v0, multiplicity_check=False)  # type: ignore[arg-type]
        assert warm.all_converged
        np.testing.assert_allclose(warm.eigenvalues, cold.eigenvalues, rtol=1e-10)
        assert warm.matvecs <= cold.matvecs / 3  # 13 products instead of 44
    top = hessian_eigenvalues(A, tol=1e-8, v0=cold.eigenvectors[:, 0])
    assert top.eigenvalues[0] == pytest.approx(10.0, rel=1e-10) and top.matvecs <= 3


def test_warm_start_with_the_multiplicity_check_finds_the_same_values() -> None:
    A = _spectrum_operator()
    always = {"multiplicity_check": "always"}  # no cluster here: True would not search
    cold = hessian_eigenvalues(A, k=5, tol=1e-8, return_eigenvectors=True, **always)
    warm = hessian_eigenvalues(A, k=5, tol=1e-8, v0=cold, **always)
    np.testing.assert_allclose(warm.eigenvalues, cold.eigenvalues, rtol=1e-10)
    assert warm.all_converged and warm.multiplicity_checked
    assert warm.matvecs < cold.matvecs  # the complement search costs the same in both


def test_warm_start_from_nearby_vectors_still_converges() -> None:
    A = _spectrum_operator()
    cold = hessian_eigenvalues(A, k=3, tol=1e-8, return_eigenvectors=True)
    assert cold.eigenvectors is not None
    gen = torch.Generator().manual_seed(5)
    nearby = cold.eigenvectors + 1e-3 * torch.randn(400, 3, generator=gen, dtype=F64)
    warm = hessian_eigenvalues(A, k=3, tol=1e-8, v0=nearby, multiplicity_check=False)
    np.testing.assert_allclose(warm.eigenvalues, [10.0, 8.0, 6.0], rtol=1e-8)


def test_warm_start_of_a_model_hessian() -> None:
    obj = _objective()
    cold = hessian_eigenvalues(obj, k=2, tol=1e-6, return_eigenvectors=True)
    warm = hessian_eigenvalues(obj, k=2, tol=1e-6, v0=cold, multiplicity_check=False)
    np.testing.assert_allclose(warm.eigenvalues, cold.eigenvalues, rtol=1e-5)
    assert warm.settings["v0"] is cold.eigenvectors


def test_invalid_warm_starts_are_refused() -> None:
    A = DenseOperator.from_spectrum([3.0, 2.0, 1.0, 0.5])
    without_vectors = hessian_eigenvalues(A)
    with pytest.raises(ValueError, match="return_eigenvectors=True"):
        hessian_eigenvalues(A, v0=without_vectors)
    with pytest.raises(ValueError, match="shape"):
        hessian_eigenvalues(A, v0=torch.ones(5, dtype=F64))
    with pytest.raises(ValueError, match="shape"):
        hessian_eigenvalues(A, v0=torch.ones(4, 2, 1, dtype=F64))
    with pytest.raises(ValueError, match="nonzero"):
        hessian_eigenvalues(A, v0=torch.zeros(4, dtype=F64))


# ------------------------------------------------------------- old import paths


def test_names_keep_their_old_import_paths() -> None:
    from flatness.curvature import lanczos, thick_restart
    from flatness.curvature.eigenvalues import power_iteration as old_power
    from flatness.curvature.exact_trace import check_piecewise_linear as old_check
    from flatness.curvature.hessian import STRATEGIES, Strategy
    from flatness.curvature.piecewise_linear import check_piecewise_linear

    for name in ("lanczos_eigenpairs", "thick_restart_lanczos", "RitzPairs", "check_which"):
        assert getattr(lanczos, name) is getattr(thick_restart, name)
    from flatness.curvature.lanczos import residual_bounds  # noqa: F401  (the from-form too)

    with pytest.raises(AttributeError):
        _ = lanczos.no_such_name  # type: ignore[attr-defined]
    assert old_power is power_iteration and old_check is check_piecewise_linear
    assert "double_backward" in STRATEGIES and Strategy is not None


def test_an_unknown_strategy_is_refused_alike_by_options_and_operator() -> None:
    message = "strategy must be 'auto' or one of"
    with pytest.raises(ValueError, match=message):
        HessianOptions(strategy="fastest")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=message):
        HessianOperator(_objective(), strategy="fastest")  # type: ignore[arg-type]
