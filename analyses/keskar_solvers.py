"""Keskar's ε-sharpness with each maximizer, interleaved, in gradient equivalents.

One model, one objective: the unit is the median time of one full-data
``obj.value_and_gradient()``; each round calls every solver once, in turn, so a load
change on a shared machine hits every solver of the round alike, and the per-round
ratios of their times are reported with their min–max.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Sequence
from typing import Any

import flatness as fl

__all__ = ["SOLVERS", "compare_solvers", "median_seconds"]

SOLVERS = ("projected-lbfgs", "lbfgsb", "pga")
"""The maximizers compared: the default (projected L-BFGS on the device), scipy's
L-BFGS-B (the paper's) and projected sign-gradient ascent."""


def median_seconds(fn: Any, repeats: int, warmup: int = 1) -> float:
    """Median wall seconds of ``repeats`` calls of ``fn`` after ``warmup`` untimed ones.

    Returns:
        The median.
    """
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def compare_solvers(
    obj: fl.Objective,
    *,
    rounds: int,
    eps: float = 1e-3,
    maxiter: int = 10,
    subspace_dim: int | None = None,
    warmup: bool = True,
    solvers: Sequence[str] = SOLVERS,
    unit_repeats: int = 5,
) -> dict[str, Any]:
    """Every solver on ``obj``, ``rounds`` interleaved rounds (seed 0, random start).

    Args:
        obj: The objective.
        rounds: Rounds of one call per solver.
        eps: The box size.
        maxiter: The iteration limit (the paper's 10).
        subspace_dim: ``None`` for the full space.
        warmup: One untimed call of each solver first.
        solvers: The solvers, in the order of a round.
        unit_repeats: Repeats of the gradient that defines the unit.

    Returns:
        ``{"grad_s", "value_s", "solvers": {name: {...}}}``; each solver has its result
        (``value``, ``evaluations``, ``gradients``, ``iterations``, ``at_bound``,
        ``message``, ``nominal``: the nominal gradient equivalents), ``seconds`` (one per
        round) and ``cost`` (seconds over the unit, per round); ``ratios`` maps each
        solver to its per-round time ratios ``scipy / solver``.
    """
    obj.check_determinism()  # once per objective, before any timing (not part of a call)
    grad_s = median_seconds(obj.value_and_gradient, unit_repeats)
    value_s = median_seconds(obj.value, unit_repeats)

    def call(solver: str) -> fl.KeskarResult:
        return fl.keskar_sharpness(
            obj, eps=eps, subspace_dim=subspace_dim, solver=solver, maxiter=maxiter, seed=0
        )

    if warmup:
        for solver in solvers:
            call(solver)
    out: dict[str, dict[str, Any]] = {s: {"seconds": []} for s in solvers}
    for _ in range(rounds):
        for solver in solvers:
            start = time.perf_counter()
            res = call(solver)
            out[solver]["seconds"].append(time.perf_counter() - start)
            out[solver].update(
                value=res.value,
                evaluations=res.evaluations,
                gradients=res.gradients,
                iterations=res.iterations,
                at_bound=res.at_bound,
                message=res.message,
                nominal=res.gradient_equivalents,
            )
    for solver in solvers:
        out[solver]["cost"] = [s / grad_s for s in out[solver]["seconds"]]
    ratios = {}
    if "lbfgsb" in out:
        base = out["lbfgsb"]["seconds"]
        ratios = {
            s: [b / t for b, t in zip(base, out[s]["seconds"], strict=True)]
            for s in solvers
            if s != "lbfgsb"
        }
    return {"grad_s": grad_s, "value_s": value_s, "solvers": out, "ratios": ratios}
