"""Smith & Le (2018): is it the batch size or the noise scale?

Smith & Le read SGD as a stochastic differential equation whose noise scale is
g = ε(N/B − 1) ≈ εN/B (ε the learning rate, N the training-set size, B the batch size):
runs that share ε/B should reach the same test accuracy and sharpness whatever B is,
and at a fixed ε the test accuracy should peak at an optimal batch size
B_opt ∝ εN. This study trains plain SGD (momentum 0, constant learning rate, a fixed
number of epochs) over a grid of batch sizes × ratios η/B, so every ratio is a diagonal
of the B × η grid, at two training-set sizes N (one case each), and scores every
network with curvature and sharpness measures. The overview
(:func:`flatness.studies.smithle2018_answers.answer`) says whether accuracy and each
measure follow η/B rather than B (Kendall's τ within each level, a variance
decomposition), and whether the best batch size at fixed η grows with N.

Two plans:

- ``ci`` (:data:`CI`): 2 batch sizes × 2 ratios on 500 MNIST-1D examples, 2 seeds, a few
  epochs (seconds; what CI runs);
- ``full`` (:data:`FULL`): 5 batch sizes × 5 ratios (24 cells: η ≤ 2) at N = 2000 and
  N = 4000, 5 seeds, 40 epochs.

Reference:
    S. L. Smith and Q. V. Le (2018). A Bayesian perspective on generalization and
    stochastic gradient descent. ICLR 2018 (arXiv:1710.06451).

    S. L. Smith, P.-J. Kindermans, C. Ying and Q. V. Le (2018). Don't decay the learning
    rate, increase the batch size. ICLR 2018 (arXiv:1711.00489).

Examples:
    >>> sorted({cell["lr"] / cell["batch_size"] for cell in CI.cases[0].regimes.values()})
    [0.00390625, 0.015625]
    >>> len(FULL.cases[0].regimes), FULL.cases[0].regimes["B256-lr2"]
    (24, {'batch_size': 256, 'lr': 2.0})
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from flatness.studies.smithle2018_answers import answer
from flatness.study.plan import Case, StudyPlan, StudySpec

__all__ = [
    "BATCH_SIZES",
    "CI",
    "EPOCHS",
    "FULL",
    "MAX_LR",
    "MEASURES",
    "NETWORK",
    "QUESTIONS",
    "RATIOS",
    "SECTIONS",
    "STUDY",
    "TRAIN_SIZES",
    "noise_grid",
    "regime_label",
]

BATCH_SIZES: tuple[int, ...] = (16, 32, 64, 128, 256)
"""The full plan's batch sizes (a factor 2 apart: the resolution of B_opt)."""

RATIOS: tuple[float, ...] = (2.0**-10, 2.0**-9, 2.0**-8, 2.0**-7, 2.0**-6)
"""The full plan's η/B levels, powers of two so that η = (η/B)·B is exact in floating
point and the grid's anti-diagonals share η."""

MAX_LR = 2.0
"""Cells with a larger η are left out: in the pilot (N = 2000, 40 epochs) η = 4 at B = 256
ended at 10% training accuracy (diverged), η = 2 trained in every cell."""

TRAIN_SIZES: tuple[int, ...] = (2000, 4000)
"""The training-set sizes N of the full plan's two cases."""

N_TEST = 2000
"""MNIST-1D test examples (binomial noise floor of a 60% accuracy: 1.1 points)."""

EPOCHS = 40
"""Every run trains this many epochs (a fixed budget in epochs, not in updates)."""

NETWORK: dict[str, Any] = {"network": "tiny_mlp", "network_kwargs": {"width": 64, "depth": 2}}
"""An F1-style MLP without BatchNorm, 40-64-64-10 (7 434 parameters): BatchNorm would make
the loss invariant to the weights' scale and change the effective learning rate."""

SGD: dict[str, Any] = {"optimizer": "sgd", "momentum": 0.0, "schedule": "constant"}
"""Plain SGD at a constant learning rate: the SDE reading of g = εN/B is for it."""

MEASURES: dict[str, Any] = {
    "lambda_max": {"k": 1},
    "trace": {"method": "hutchpp", "budget": 100},
    "keskar": {"eps": 1e-3, "subspace": 0, "solver": "lbfgsb"},
    "noise_scale": {},
    "gradient_norm": {},
    "weight_norm": {},
}
"""λ_max, the Hessian trace, Keskar's ε-sharpness (ε = 1e-3, full space, L-BFGS-B), the
gradient noise scale B_simple, and the gradient and weight norms beside them."""

SECTIONS: tuple[str, ...] = (
    "accuracy",
    "sharpness",
    "batch-size",
    "correlation",
    "data",
    "provenance",
)
"""The case reports' sections: no generated summary and no SB-vs-LB test (they would
compare the grid's smallest and largest batch sizes, whose η differs 128-fold), no
parametric plot, no density (not scored), no BatchNorm notes (none in the network)."""

QUESTIONS: tuple[str, ...] = (
    "Do test accuracy and each sharpness measure depend on η/B (the noise scale "
    "g ≈ εN/B) rather than on the batch size B: Kendall's τ with B within each η/B "
    "level against τ with η/B within each B, and the share of the variance each explains?",
    "At a fixed learning rate, which batch size gives the best test accuracy, and does "
    "it grow in proportion to the training-set size N (B_opt ∝ εN)?",
)
"""What the overview answers."""


def regime_label(batch_size: int, lr: float) -> str:
    """A grid cell's regime label, e.g. ``"B16-lr0.125"``.

    Examples:
        >>> regime_label(256, 2.0)
        'B256-lr2'
    """
    return f"B{batch_size}-lr{lr:g}"


def noise_grid(
    batch_sizes: Sequence[int], ratios: Sequence[float], *, max_lr: float = MAX_LR
) -> dict[str, dict[str, Any]]:
    """The regimes of a B × η/B grid: η = ratio · B, cells with η above ``max_lr`` left out.

    Args:
        batch_sizes: Batch sizes B.
        ratios: Learning rate over batch size, η/B (powers of two keep η exact).
        max_lr: The largest learning rate trained.

    Returns:
        Regime label → ``{"batch_size": B, "lr": η}``, ordered by ratio, then B.

    Raises:
        ValueError: If two cells get one label (η not told apart by ``%g``), or no
            ratio level keeps two batch sizes (nothing to compare within a level).

    Examples:
        >>> list(noise_grid([16, 32], [2.0**-5, 2.0**-4], max_lr=1.0))
        ['B16-lr0.5', 'B32-lr1', 'B16-lr1']
    """
    grid: dict[str, dict[str, Any]] = {}
    for ratio in ratios:
        for batch in batch_sizes:
            lr = ratio * batch
            if lr > max_lr:
                continue
            label = regime_label(batch, lr)
            if label in grid:
                raise ValueError(f"two grid cells are both labelled {label!r}")
            grid[label] = {"batch_size": int(batch), "lr": float(lr)}
    sizes = [sum(cell["lr"] == r * cell["batch_size"] for cell in grid.values()) for r in ratios]
    if max(sizes, default=0) < 2:
        raise ValueError("no η/B level keeps two batch sizes below max_lr: nothing to compare")
    return grid


def _train(n_train: int, n_test: int, epochs: int) -> dict[str, Any]:
    return {
        **NETWORK,
        **SGD,
        "dataset": "mnist1d",
        "dataset_kwargs": {"n_train": n_train, "n_test": n_test},
        "epochs": epochs,
    }


def _case(n_train: int, regimes: dict[str, dict[str, Any]], **fields: Any) -> Case:
    return Case(
        name=f"mlp-n{n_train}",
        title=f"Plain SGD on MNIST-1D with N = {n_train}: batch size × η/B",
        train=_train(n_train, fields.pop("n_test", N_TEST), fields.pop("epochs", EPOCHS)),
        regimes=regimes,
        sections=SECTIONS,
        **fields,
    )


_NOTES: tuple[str, ...] = (
    "The grid: B in 16-256 × η/B in 1/1024-1/64 (η = (η/B)·B, powers of two), cells with "
    "η > 2 left out (η = 4 diverged in the pilot); an MLP 40-64-64-10 without BatchNorm "
    "(BatchNorm would change the effective learning rate); measures on a fixed subset of "
    "1000 training examples in eval mode.",
    "Plain SGD (momentum 0) at a constant learning rate for a fixed number of epochs, so "
    "along a diagonal of equal η/B the product η × updates (the SDE's time) is equal "
    "too: η/B sets the noise scale and how far training gets at once.",
    "Low-η/B runs end underfitted (their training accuracy is in the tables): accuracy "
    "along η/B mixes the noise scale with the progress of training.",
    "The endpoint of constant-rate SGD is one sample of a noisy process: seeds are "
    "replicates, and the final iterate (not an average) is scored.",
    "The two N have different (independent, equally sized) test sets: MNIST-1D's test "
    "examples follow the training examples it generates.",
)

CI = StudyPlan(
    name="ci",
    title="Smith & Le (2018) miniature: batch size or noise scale? (CI)",
    cases=(
        _case(
            500,
            noise_grid((16, 64), (2.0**-8, 2.0**-6)),
            n_test=500,
            epochs=3,
            seeds=(0, 1),
            examples=200,
            measures={
                "lambda_max": {"k": 1},
                "keskar": {"eps": 1e-3, "subspace": 0, "solver": "lbfgsb", "maxiter": 3},
                "noise_scale": {},
                "gradient_norm": {},
                "weight_norm": {},
            },
            notes=_NOTES,
        ),
    ),
    answer=answer,
)
"""A miniature for CI: 4 cells × 2 seeds, 3 epochs on 500 examples (seconds)."""

FULL = StudyPlan(
    name="full",
    title="Smith & Le (2018) on MNIST-1D: is it the batch size or the noise scale η/B?",
    cases=tuple(
        _case(
            n,
            noise_grid(BATCH_SIZES, RATIOS),
            seeds=(0, 1, 2, 3, 4),
            examples=1000,
            measures=MEASURES,
            notes=_NOTES,
        )
        for n in TRAIN_SIZES
    ),
    answer=answer,
)
"""The whole study: 24 cells × 5 seeds at each of N = 2000 and 4000 (240 networks)."""

STUDY = StudySpec(
    name="smithle2018",
    title="Smith & Le (2018): is it the batch size or the noise scale g ≈ εN/B?",
    plans={"ci": CI, "full": FULL},
    default_plan="full",
    questions=QUESTIONS,
    citation="S. L. Smith and Q. V. Le (2018). A Bayesian perspective on generalization and "
    "stochastic gradient descent. ICLR 2018 (arXiv:1710.06451).",
)
"""The study, as the registry (:func:`flatness.studies.get_study`) holds it."""
