"""The plain-Lanczos floor: how many products top-k needs, against what flatness spends.

:func:`plain_lanczos_products` runs the textbook Lanczos process with full
reorthogonalization and no restart (Lanczos 1950; Golub & Van Loan 2013, §10.1) on any
operator with ``dim``/``matvec``/``dtype``/``device``, from a given start vector, and
counts the products until the ``k`` wanted Ritz pairs all meet flatness's residual rule
(:func:`flatness.curvature.thick_restart.residual_bounds`), judged with the estimate
:math:`\\beta_j |s_{j,i}|` after every step. It is written here independently of
flatness's solver so that it measures the floor rather than flatness itself; the
benchmarks (``benchmark_curvature.py``) import it.

:func:`compare_products` gives, for one operator, flatness's products for top-``k``
(default settings, with and without the multiplicity check) next to the floor from the
same start vector (flatness draws it from ``torch.Generator().manual_seed(seed)``).

Run as a script it trains the BatchNorm MLP of the benchmarks (``mlp_bn`` on MNIST-1D,
4000 examples) small-batch and large-batch and prints the comparison for top-1 and
top-5::

    python analyses/lanczos_floor.py

References:
    C. Lanczos (1950). An iteration method for the solution of the eigenvalue problem of
    linear differential and integral operators. J. Res. Nat. Bur. Standards 45, 255–282.

    G. H. Golub and C. F. Van Loan (2013). Matrix Computations, 4th ed., §10.1. Johns
    Hopkins.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

import flatness as fl
from flatness.curvature.thick_restart import order_by_which, residual_bounds


@dataclass(frozen=True)
class Floor:
    """The plain-Lanczos floor of one top-k question.

    Attributes:
        products: Operator products until every wanted Ritz pair met the residual rule.
        values: The wanted Ritz values then, most wanted first.
        converged: Whether the rule was met within the step limit.
    """

    products: int
    values: tuple[float, ...]
    converged: bool


def plain_lanczos_products(
    op: Any, k: int, *, v0: torch.Tensor, tol: float = 1e-4, which: str = "LA", max_steps: int = 300
) -> Floor:
    """Products plain Lanczos (full reorthogonalization, no restart) needs for top-``k``.

    Args:
        op: An operator with ``dim``, ``dtype``, ``device`` and ``matvec``.
        k: How many eigenpairs.
        v0: The start vector.
        tol: The relative residual tolerance of flatness's rule.
        which: ``"LA"``, ``"SA"`` or ``"LM"``.
        max_steps: The most products to spend.

    Returns:
        The :class:`Floor`.
    """
    n, dtype, device = op.dim, op.dtype, op.device
    steps = min(max_steps, n)
    V = torch.zeros(n, steps + 1, dtype=dtype, device=device)
    V[:, 0] = v0.to(device=device, dtype=dtype) / torch.linalg.vector_norm(v0)
    T = np.zeros((steps, steps))
    scale = 0.0
    theta = np.zeros(0)
    for j in range(steps):
        w = op.matvec(V[:, j]).detach()
        coef = torch.zeros(j + 1, dtype=dtype, device=device)
        for _ in range(2):  # classical Gram–Schmidt, twice
            c = V[:, : j + 1].T @ w
            w = w - V[:, : j + 1] @ c
            coef = coef + c
        h = coef.to(device="cpu", dtype=torch.float64).numpy()
        T[: j + 1, j] = h  # column j of V^T A V; beta_{j-1} arrives as h[j - 1]
        T[j, : j + 1] = h
        beta = float(torch.linalg.vector_norm(w))
        theta, S = np.linalg.eigh(T[: j + 1, : j + 1])
        scale = max(scale, float(np.abs(theta).max()), beta)
        wanted = order_by_which(theta, which)[:k]
        if j + 1 >= k:
            res = np.abs(beta * S[j, wanted])
            if np.all(res <= residual_bounds(theta[wanted], tol, scale, dtype)):
                return Floor(j + 1, tuple(float(t) for t in theta[wanted]), True)
        V[:, j + 1] = w / beta
    wanted = order_by_which(theta, which)[:k]
    return Floor(steps, tuple(float(t) for t in theta[wanted]), False)


def compare_products(
    obj: fl.Objective, k: int, *, tol: float = 1e-4, seed: int = 0
) -> dict[str, Any]:
    """flatness's top-``k`` products against the floor from the same start vector.

    Returns:
        ``{"floor": Floor, "flatness": products, "no_check": products without the
        multiplicity check, "ratio": flatness / floor, "checked": whether the
        multiplicity check ran to its end}``.
    """
    res = fl.hessian_eigenvalues(obj, k=k, tol=tol, seed=seed)
    nomc = fl.hessian_eigenvalues(obj, k=k, tol=tol, seed=seed, multiplicity_check=False)
    start = torch.randn(obj.dim, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    with fl.HessianOperator(obj) as H:
        floor = plain_lanczos_products(H, k, v0=start, tol=tol)
    return {
        "floor": floor,
        "flatness": res.matvecs,
        "no_check": nomc.matvecs,
        "ratio": res.matvecs / floor.products,
        "checked": res.multiplicity_checked,
        "values": res.eigenvalues,
    }


def main() -> int:
    """Train the BatchNorm MLP SB and LB and print top-1/top-5 products vs the floor."""
    torch.set_num_threads(1)
    from flatness.zoo import TrainConfig, load_dataset, train_network

    data = load_dataset("mnist1d", n_train=4000, n_test=1000, seed=0)
    X, y = data.train
    for regime, batch in (("SB", 64), ("LB", "10%")):
        config = TrainConfig(
            network="mlp_bn", epochs=3, dataset="mnist1d",
            dataset_kwargs={"n_train": 4000, "n_test": 1000, "seed": 0},
            batch_size=batch, regime=regime, milestones=(),
        )  # fmt: skip
        model = train_network(config, data=data).model.eval()
        obj = fl.Objective(model, (X, y))
        for k in (1, 5):
            row = compare_products(obj, k)
            print(
                f"BN MLP {regime} top-{k}: flatness {row['flatness']} products "
                f"(without the multiplicity check {row['no_check']}), plain Lanczos "
                f"{row['floor'].products}: ratio {row['ratio']:.2f}; "
                f"multiplicity checked {row['checked']}; values "
                f"{np.round(row['values'], 4).tolist()}",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
