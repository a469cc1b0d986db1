"""What accuracy each budget buys: Hutch++ and Hutchinson against the exact trace.

On one model (a piecewise-linear network with cross-entropy, whose exact Hessian trace
:func:`flatness.hessian_trace` computes with ``method="exact"``), for several seeds:

* fixed budgets (10, 30, 100 products): the relative error of the estimate and the
  relative standard error it reports;
* a target standard error with the budget as a cap (``target_stderr``): the products
  spent, the error, and whether the target was met;
* PyHessian 0.1's ``trace()`` (Hutchinson with Rademacher probes, stopping when the
  running mean changes by less than 1e-3 relative; Yao et al. 2020), seeded through
  torch's global generator: its products and error.

Times are wall seconds of the whole call (the objective, the operator or PyHessian's
constructor included).
"""

from __future__ import annotations

import copy
import statistics
import time
from collections.abc import Sequence
from typing import Any

import peers
import torch
from torch import Tensor, nn

import flatness as fl

__all__ = ["BUDGETS", "TARGETS", "trace_accuracy"]

BUDGETS = (10, 30, 100)
TARGETS = (0.1, 0.05)
"""Relative target standard errors tried with the budget as a cap."""


def _summary(errors: list[float], products: list[float], seconds: list[float]) -> dict[str, Any]:
    return {
        "median_error": statistics.median(errors),
        "max_error": max(errors),
        "products": (min(products), statistics.median(products), max(products)),
        "seconds": statistics.median(seconds),
    }


def trace_accuracy(
    model: nn.Module,
    X: Tensor,
    y: Tensor,
    *,
    seeds: Sequence[int] = range(5),
    budgets: Sequence[int] = BUDGETS,
    targets: Sequence[float] = TARGETS,
    cap: int = 1000,
) -> dict[str, Any]:
    """Relative errors against the exact trace, per method and budget, and PyHessian's.

    Args:
        model: A piecewise-linear classifier in eval mode.
        X: Inputs.
        y: Class labels.
        seeds: Seeds of the probes (PyHessian: of torch's global generator).
        budgets: Fixed budgets.
        targets: Relative target standard errors, run with ``budget=cap``.
        cap: The cap on products for the target runs.

    Returns:
        ``{"exact", "dim", "fixed": {(method, budget): summary}, "target":
        {(method, target): summary + met}, "pyhessian": summary}``; a summary holds the
        median and largest relative error, the (min, median, max) products, the median
        seconds and, for fixed budgets, ``stderr``: the median reported relative
        standard error.
    """
    obj = fl.Objective(model, (X, y))
    exact = fl.hessian_trace(obj, method="exact").estimate

    def rel(estimate: float) -> float:
        return abs(estimate - exact) / abs(exact)

    def run(**kwargs: Any) -> tuple[fl.TraceResult, float]:
        start = time.perf_counter()
        res = fl.hessian_trace(fl.Objective(model, (X, y)), **kwargs)
        return res, time.perf_counter() - start

    fixed: dict[tuple[str, int], dict[str, Any]] = {}
    target: dict[tuple[str, float], dict[str, Any]] = {}
    for method in ("hutchpp", "hutchinson"):
        for budget in budgets:
            runs = [run(method=method, budget=budget, seed=s) for s in seeds]
            fixed[(method, budget)] = {
                **_summary(
                    [rel(r.estimate) for r, _ in runs],
                    [r.matvecs for r, _ in runs],
                    [t for _, t in runs],
                ),
                "stderr": statistics.median(r.stderr / abs(exact) for r, _ in runs),
            }
        for goal in targets:
            runs = [run(method=method, budget=cap, target_stderr=goal, seed=s) for s in seeds]
            target[(method, goal)] = {
                **_summary(
                    [rel(r.estimate) for r, _ in runs],
                    [r.matvecs for r, _ in runs],
                    [t for _, t in runs],
                ),
                "met": sum(r.converged for r, _ in runs),
            }
    ph = []
    for s in seeds:
        torch.manual_seed(s)
        ph.append(peers.pyhessian_trace(copy.deepcopy(model), X, y))
    ok = [r for r in ph if r.error is None]
    pyhessian = (
        _summary(
            [rel(r.values[0]) for r in ok],
            [r.products or 0 for r in ok],
            [r.seconds for r in ok],
        )
        if ok
        else {"error": ph[0].error}
    )
    return {
        "exact": exact,
        "dim": obj.dim,
        "fixed": fixed,
        "target": target,
        "pyhessian": pyhessian,
        "seeds": len(list(seeds)),
    }
