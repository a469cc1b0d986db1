"""The target standard error as a stopping rule with the budget as a cap (issue 19)."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest
import torch

from flatness.curvature.hutchinson import hutchinson_trace
from flatness.curvature.meyer2021hutchpp import hutchpp_trace
from flatness.curvature.operator import DenseOperator


@pytest.fixture(autouse=True, scope="module")
def _one_thread() -> Iterator[None]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def outliers_and_bulk(n: int = 2000) -> torch.Tensor:
    """A Hessian-like spectrum: a few large outliers over a small bulk of both signs."""
    gen = torch.Generator().manual_seed(0)
    bulk = 0.02 * torch.randn(n - 6, generator=gen, dtype=torch.float64)
    return torch.cat([torch.tensor([60.0, 35.0, 20.0, 12.0, 8.0, 5.0], dtype=torch.float64), bulk])


def test_hutchpp_with_a_target_sketches_only_what_pays() -> None:
    lam = outliers_and_bulk()
    A = DenseOperator.from_spectrum(lam, seed=1)
    tr = hutchpp_trace(A, budget=3000, target_stderr=0.01, seed=0)
    # a fixed split would spend 1000 products on the sketch and as many on A Q first
    assert tr.converged and tr.matvecs < 100
    assert tr.stderr <= 0.01 * abs(tr.estimate)
    assert abs(tr.estimate - float(lam.sum())) <= 4 * tr.stderr + 1e-9
    assert tr.sketch_rank >= 6  # the outliers are taken exactly


def test_hutchpp_with_a_target_is_cheaper_than_hutchinson_on_outliers() -> None:
    A = DenseOperator.from_spectrum(outliers_and_bulk(), seed=2)
    pp = hutchpp_trace(A, budget=3000, target_stderr=0.01, seed=0)
    plain = hutchinson_trace(A, budget=1000, target_stderr=0.01, block_size=100, seed=0)
    assert pp.converged and pp.matvecs < 100
    assert not plain.converged  # Hutchinson needs about 5000 probes here


def test_hutchpp_with_a_target_stays_unbiased() -> None:
    lam = outliers_and_bulk(120)
    A = DenseOperator.from_spectrum(lam, seed=3)
    runs = [hutchpp_trace(A, budget=600, target_stderr=0.05, seed=s) for s in range(60)]
    estimates = np.array([r.estimate for r in runs])
    se_of_mean = estimates.std(ddof=1) / np.sqrt(len(runs))
    assert abs(estimates.mean() - float(lam.sum())) <= 4 * se_of_mean + 1e-9


def test_without_a_target_the_split_is_the_fixed_third() -> None:
    A = DenseOperator.from_spectrum(outliers_and_bulk(), seed=1)
    tr = hutchpp_trace(A, budget=90, seed=0)
    assert tr.matvecs == 90 and tr.sketch_rank == 30 and tr.probes == 30
