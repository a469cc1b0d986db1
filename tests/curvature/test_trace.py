"""Tests of the stochastic trace estimators (Hutchinson, Hutch++) and TraceResult."""

from __future__ import annotations

import dataclasses
import math
import sys
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import Tensor

import flatness.curvature.trace as trace_module
from flatness.curvature.hutchinson import hutchinson_trace
from flatness.curvature.meyer2021hutchpp import hutchpp_trace
from flatness.curvature.objective import Objective
from flatness.curvature.operator import DenseOperator
from flatness.curvature.options import HessianOptions
from flatness.curvature.trace import TraceResult, hessian_trace

ESTIMATORS = {"hutchinson": hutchinson_trace, "hutchpp": hutchpp_trace}


@pytest.fixture(autouse=True, scope="module")
def _one_thread() -> Iterator[None]:
    # Tiny dense products: threads only add overhead on a shared machine.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def decaying(n: int, power: float) -> Tensor:
    return torch.arange(1, n + 1, dtype=torch.float64) ** -power


class ScriptedOperator:
    """An operator whose quadratic forms ``z^T A z`` follow a script (Rademacher probes).

    ``matmat`` returns ``Z * c_j / n`` column by column, so ``z_j^T (A z_j) = c_j``
    exactly for probes with entries ``±1``.
    """

    def __init__(self, values: list[float], dim: int = 4) -> None:
        self.values = values
        self._dim = dim
        self._matvecs = 0

    @property
    def dim(self) -> int:
        return self._dim

    @property
    def device(self) -> torch.device:
        return torch.device("cpu")

    @property
    def dtype(self) -> torch.dtype:
        return torch.float64

    @property
    def matvecs(self) -> int:
        return self._matvecs

    def matvec(self, v: Tensor) -> Tensor:
        return self.matmat(v[:, None])[:, 0]

    def matmat(self, V: Tensor) -> Tensor:
        k = int(V.shape[1])
        c = torch.tensor(
            [self.values[(self._matvecs + j) % len(self.values)] for j in range(k)],
            dtype=torch.float64,
        )
        self._matvecs += k
        return V * c / self._dim


# --------------------------------------------------------------------- exactness


def test_rademacher_hutchinson_is_exact_on_a_diagonal() -> None:
    d = torch.randn(30, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    tr = hutchinson_trace(DenseOperator(torch.diag(d)), budget=12, seed=5)
    assert tr.estimate == pytest.approx(float(d.sum()), abs=1e-12)
    assert tr.stderr <= 1e-14  # every sample is tr(A), up to the summation order
    assert tr.converged and tr.probes == 12


def test_hutchpp_is_exact_when_the_sketch_spans_the_space() -> None:
    lam = torch.randn(20, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    A = DenseOperator.from_spectrum(lam, seed=2)
    for budget in (60, 61, 100):
        tr = hutchpp_trace(A, budget=budget, seed=0)
        assert tr.estimate == pytest.approx(float(lam.sum()), abs=1e-10)
        assert tr.stderr == 0.0 and tr.converged
        assert tr.probes == 0 and tr.sketch_rank == 20
        assert tr.matvecs == 40  # n for the sketch, n for tr(Q^T A Q)


def test_hutchpp_is_exact_on_a_low_rank_operator() -> None:
    lam = [5.0, -3.0, 2.0, 1.0, 0.5] + [0.0] * 55
    A = DenseOperator.from_spectrum(lam, seed=3)
    tr = hutchpp_trace(A, budget=30, seed=0)
    assert tr.estimate == pytest.approx(5.5, abs=1e-10)
    assert tr.stderr < 1e-10
    assert tr.sketch_rank == 5  # dependent sketch directions are dropped ...
    assert tr.probes == 30 - 10 - 5  # ... and the products saved go to the residual
    assert tr.matvecs == 30


@settings(max_examples=15, deadline=None)
@given(
    n=st.integers(8, 40),
    rank=st.integers(0, 6),
    seed=st.integers(0, 2**31 - 1),
    distribution=st.sampled_from(["rademacher", "gaussian"]),
)
def test_hutchpp_exact_below_a_third_of_the_budget(
    n: int, rank: int, seed: int, distribution: str
) -> None:
    gen = torch.Generator().manual_seed(seed)
    lam = torch.zeros(n, dtype=torch.float64)
    lam[:rank] = torch.randn(rank, generator=gen, dtype=torch.float64) * 10
    A = DenseOperator.from_spectrum(lam, seed=seed)
    tr = hutchpp_trace(A, budget=3 * rank + 3, seed=seed, distribution=distribution)
    assert tr.estimate == pytest.approx(float(lam.sum()), abs=1e-9)
    assert tr.matvecs <= 3 * rank + 3


# ------------------------------------------------------------ statistics over seeds


@pytest.mark.parametrize("method", ["hutchinson", "hutchpp"])
def test_unbiased_and_nominal_coverage(method: str) -> None:
    # 200 independent seeds on one 50 x 50 operator with spectrum 1/i.
    lam = decaying(50, 1.0)
    A = DenseOperator.from_spectrum(lam, seed=4)
    true = float(lam.sum())
    runs = [ESTIMATORS[method](A, budget=60, seed=s) for s in range(200)]
    estimates = np.array([r.estimate for r in runs])
    stderrs = np.array([r.stderr for r in runs])
    # Unbiased: the mean over seeds lies within 4 of its own standard errors.
    assert abs(estimates.mean() - true) < 4 * estimates.std(ddof=1) / math.sqrt(200)
    # The normal 95% interval covers at about the nominal rate (0.93 for Hutchinson,
    # 0.95 for Hutch++ here). It is slightly optimistic with few probes, being a
    # z-interval on an estimated stderr: at budget 30 (only 10 residual Hutch++
    # probes) coverage on this operator falls to 0.90 for Hutch++, 0.925 for Hutchinson.
    coverage = float(np.mean(np.abs(estimates - true) <= 1.96 * stderrs))
    assert 0.88 <= coverage <= 0.99
    # The reported stderr agrees with the spread of the estimates over seeds.
    assert stderrs.mean() == pytest.approx(estimates.std(ddof=1), rel=0.25)


def test_hutchpp_beats_hutchinson_on_a_decaying_spectrum() -> None:
    lam = decaying(50, 2.0)
    A = DenseOperator.from_spectrum(lam, seed=5)
    true = float(lam.sum())
    errors = {
        name: np.mean([abs(f(A, budget=30, seed=s).estimate - true) for s in range(100)])
        for name, f in ESTIMATORS.items()
    }
    # Observed ratio is about 1/25; ask for a clear factor of 10.
    assert errors["hutchpp"] < errors["hutchinson"] / 10


# ------------------------------------------------------------------------ stopping


@pytest.mark.parametrize("method", ["hutchinson", "hutchpp"])
def test_stops_once_the_relative_target_is_met(method: str) -> None:
    A = DenseOperator.from_spectrum(decaying(200, 0.5), seed=6)
    tr = ESTIMATORS[method](A, budget=300, target_stderr=0.02, seed=0)
    assert tr.converged
    assert tr.matvecs < 300
    assert tr.stderr <= 0.02 * abs(tr.estimate)
    assert tr.probes >= 10
    # One block earlier the target was not met yet (it is checked after every block).
    previous = np.asarray(tr.samples[: tr.probes - 8])
    se = previous.std(ddof=1) / math.sqrt(previous.size)
    offset = tr.estimate - float(np.mean(tr.samples))  # Hutch++'s exact low-rank part
    assert previous.size < 10 or se > 0.02 * abs(offset + previous.mean())


def test_absolute_target() -> None:
    A = DenseOperator.from_spectrum(decaying(40, 1.0), seed=7)
    tr = hutchinson_trace(A, budget=5000, target_stderr=0.05, absolute=True, seed=1)
    assert tr.converged and tr.stderr <= 0.05 and tr.probes < 5000
    assert not tr.relative_target


def test_minimum_number_of_probes_is_honoured() -> None:
    # Rademacher probes on a diagonal give stderr 0 from the second probe on.
    A = DenseOperator(torch.diag(torch.arange(1.0, 9.0, dtype=torch.float64)))
    tr = hutchinson_trace(A, budget=100, target_stderr=0.01, block_size=1, seed=0)
    assert tr.probes == 10 and tr.converged
    tr = hutchinson_trace(A, budget=100, target_stderr=0.01, min_probes=25, block_size=8)
    assert tr.probes == 32  # the target is checked at block boundaries
    low_rank = DenseOperator.from_spectrum([3.0, 1.0] + [0.0] * 48, seed=8)
    tr = hutchpp_trace(low_rank, budget=120, target_stderr=0.01, min_probes=12, block_size=4)
    assert tr.sketch_rank == 2 and tr.stderr < 1e-12
    assert tr.probes == 12 and tr.converged


def test_never_stops_because_the_running_mean_stands_still() -> None:
    # The samples alternate 1, 3, 1, 3, ...: after every block of two the running
    # mean is exactly 2.0 (a relative change of 0, which stops PyHessian), but the
    # stderr (about 1/sqrt(m)) stays far above the 0.1% target for 200 probes.
    op = ScriptedOperator([1.0, 3.0])
    tr = hutchinson_trace(op, budget=200, target_stderr=1e-3, block_size=2, seed=0)
    assert tr.estimate == pytest.approx(2.0)
    assert tr.probes == 200 and tr.matvecs == 200
    assert not tr.converged
    assert tr.stderr == pytest.approx(1.0 / math.sqrt(199), rel=1e-9)


@pytest.mark.parametrize("method", ["hutchinson", "hutchpp"])
def test_not_converged_when_the_budget_runs_out_first(method: str) -> None:
    A = DenseOperator.from_spectrum(decaying(80, 0.5), seed=9)
    tr = ESTIMATORS[method](A, budget=40, target_stderr=1e-6, seed=0)
    assert not tr.converged
    assert tr.matvecs == 40
    assert math.isfinite(tr.stderr) and tr.stderr > 1e-6 * abs(tr.estimate)


def test_fixed_budget_without_target_is_converged_with_an_error_bar() -> None:
    A = DenseOperator.from_spectrum(decaying(30, 1.0), seed=10)
    tr = hutchinson_trace(A, budget=20)
    assert tr.converged and tr.stderr > 0 and tr.target_stderr is None
    single = hutchinson_trace(A, budget=1)
    assert math.isnan(single.stderr) and not single.converged


# ------------------------------------------------------------- bookkeeping, dtypes


@pytest.mark.parametrize("method", ["hutchinson", "hutchpp"])
@pytest.mark.parametrize("budget", [1, 2, 7, 31, 100])
@pytest.mark.parametrize("block_size", [1, 3, 8])
def test_budget_counts_products_exactly(method: str, budget: int, block_size: int) -> None:
    A = DenseOperator.from_spectrum(decaying(150, 1.0), seed=11)
    A.matvec(torch.ones(150, dtype=torch.float64))  # the counter need not start at 0
    before = A.matvecs
    tr = ESTIMATORS[method](A, budget=budget, block_size=block_size, seed=0)
    assert A.matvecs - before == tr.matvecs == budget  # full rank, dim > budget
    assert tr.budget == budget
    assert tr.probes == len(tr.samples)


@pytest.mark.parametrize("method", ["hutchinson", "hutchpp"])
def test_seeds_are_reproducible(method: str) -> None:
    A = DenseOperator.from_spectrum(decaying(40, 1.0), seed=12)
    f = ESTIMATORS[method]
    first, again = f(A, budget=45, seed=3), f(A, budget=45, seed=3)
    assert first.samples == again.samples and first.estimate == again.estimate
    assert f(A, budget=45, seed=4).estimate != first.estimate
    # The j-th probe of a seed does not depend on how probes are blocked.
    blocked = f(A, budget=45, seed=3, block_size=1)
    assert blocked.estimate == pytest.approx(first.estimate, rel=1e-12)


@pytest.mark.parametrize("method", ["hutchinson", "hutchpp"])
@pytest.mark.parametrize("distribution", ["rademacher", "gaussian"])
def test_float32_operator_sees_the_float64_probes(method: str, distribution: str) -> None:
    lam = decaying(40, 1.0)
    A64 = DenseOperator.from_spectrum(lam, seed=13)
    A32 = DenseOperator(A64.matrix, dtype=torch.float32)
    f = ESTIMATORS[method]
    r64 = f(A64, budget=60, seed=2, distribution=distribution)
    r32 = f(A32, budget=60, seed=2, distribution=distribution)
    assert isinstance(r32.estimate, float) and math.isfinite(r32.stderr)
    assert r32.estimate == pytest.approx(r64.estimate, rel=1e-4)
    assert r32.matvecs == r64.matvecs == 60


def test_gaussian_probes() -> None:
    lam = decaying(50, 1.0)
    A = DenseOperator(torch.diag(lam))
    tr = hutchinson_trace(A, budget=400, distribution="gaussian", seed=0)
    assert tr.distribution == "gaussian"
    assert tr.stderr > 0  # unlike Rademacher probes, not exact on a diagonal
    assert abs(tr.estimate - float(lam.sum())) < 4 * tr.stderr
    # Per-probe variance 2 ||A||_F^2 for Gaussian probes.
    assert np.var(tr.samples, ddof=1) == pytest.approx(2 * float((lam**2).sum()), rel=0.3)


@pytest.mark.parametrize("method", ["hutchinson", "hutchpp"])
def test_owned_operator_is_closed_even_on_error(
    method: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    closed: list[bool] = []

    class Failing(DenseOperator):
        def matmat(self, V: Tensor) -> Tensor:
            raise RuntimeError("out of memory")

        def close(self) -> None:
            closed.append(True)

    op = Failing(torch.eye(5, dtype=torch.float64))
    # every estimator builds its operator through operator_for, which calls as_operator
    monkeypatch.setattr(
        sys.modules["flatness.curvature.operator"], "as_operator", lambda target, **kw: (op, True)
    )
    with pytest.raises(RuntimeError, match="out of memory"):
        ESTIMATORS[method](object(), budget=10)
    assert closed == [True]


@pytest.mark.parametrize(
    "options",
    [
        {"budget": 0},
        {"budget": 2.5},
        {"block_size": 0},
        {"min_probes": 1},
        {"target_stderr": -0.1},
        {"target_stderr": math.inf},
        {"distribution": "uniform"},
    ],
)
@pytest.mark.parametrize("method", ["hutchinson", "hutchpp"])
def test_invalid_options_are_refused(method: str, options: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        ESTIMATORS[method](DenseOperator(torch.eye(3)), **options)


def test_hessian_options_need_an_objective() -> None:
    with pytest.raises(TypeError, match="Hessian options"):
        hutchinson_trace(DenseOperator(torch.eye(3)), hessian=HessianOptions())
    with pytest.warns(DeprecationWarning), pytest.raises(TypeError, match="Hessian options"):
        hutchinson_trace(DenseOperator(torch.eye(3)), strategy="double_backward")


# ---------------------------------------------------------- result and dispatcher


def test_trace_result_record() -> None:
    A = DenseOperator.from_spectrum(decaying(30, 1.0), seed=14)
    tr = hutchpp_trace(A, budget=30, seed=0)
    low, high = tr.ci(0.95)
    assert low == pytest.approx(tr.estimate - 1.959964 * tr.stderr)
    assert high == pytest.approx(tr.estimate + 1.959964 * tr.stderr)
    assert tr.ci(0.5)[1] - tr.ci(0.5)[0] < high - low
    with pytest.raises(ValueError):
        tr.ci(1.0)
    text = repr(tr)
    assert text.startswith("TraceResult(method='hutchpp', estimate=")
    assert "samples" not in text and "sketch_rank=10" in text
    full = tr.to_dict()
    assert len(full["samples"]) == tr.probes and full["method"] == "hutchpp"
    assert "samples" not in tr.to_dict(include_arrays=False)
    assert tr.relative_stderr == pytest.approx(tr.stderr / abs(tr.estimate))
    with pytest.raises(dataclasses.FrozenInstanceError):
        tr.estimate = 0.0  # type: ignore[misc]
    nan = TraceResult(estimate=1.0, stderr=math.nan, method="hutchinson", matvecs=1, seconds=0)
    assert all(math.isnan(x) for x in nan.ci())


def test_dispatcher_routes_to_the_estimators() -> None:
    A = DenseOperator.from_spectrum(decaying(30, 1.0), seed=15)
    for method in ("hutchinson", "hutchpp"):
        tr = hessian_trace(A, method=method, budget=21, seed=1, block_size=4)
        direct = ESTIMATORS[method](A, budget=21, seed=1, block_size=4)
        assert tr.method == method and tr.estimate == direct.estimate
    assert hessian_trace(A).method == "hutchpp"
    with pytest.raises(ValueError, match="unknown trace method"):
        hessian_trace(A, method="slq")


def test_dispatcher_passes_the_exact_settings_on(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[object, dict[str, object]]] = []

    def exact_hessian_trace(target: object, **kwargs: object) -> TraceResult:
        calls.append((target, kwargs))
        return TraceResult(estimate=3.0, stderr=0.0, method="exact", matvecs=3, seconds=0.0)

    monkeypatch.setattr(trace_module, "exact_hessian_trace", exact_hessian_trace)
    net = torch.nn.Linear(2, 2)
    target = Objective(net, (torch.randn(4, 2), torch.tensor([0, 1, 0, 1])))
    # the stochastic settings are ignored; the exact ones are passed on
    tr = hessian_trace(
        target, method="exact", budget=7, seed=2, block_size=16, exact_method="examples"
    )
    assert tr.method == "exact" and tr.stderr == 0.0
    assert calls == [
        (
            target,
            {"chunk_size": None, "memory_bytes": 256 * 2**20, "check": True, "method": "examples"},
        )
    ]
    assert tr.settings["exact_method"] == "examples" and tr.settings["method"] == "exact"
    with pytest.raises(TypeError, match=r"needs a flatness\.Objective"):
        hessian_trace(DenseOperator(torch.eye(2)), method="exact")
