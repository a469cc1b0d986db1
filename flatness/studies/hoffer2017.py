"""Fixed epochs, fixed updates or convergence: does the large-batch gap survive?

Keskar et al. (2017) stop SB and LB at the same training accuracy with the same Adam
step, so LB trains with twenty times fewer updates; Wilson & Martinez (2003) find that
with a fixed number of epochs small batches win, and Hoffer, Hubara & Soudry (2017) that
the gap closes once LB trains for as many updates. This study trains an F1-style network
on MNIST-1D at three batch sizes (SB = 0.5 %, MB = 2.5 %, LB = 10 % of the training set)
with Adam and with SGD (one case each) under four protocols
(:data:`~flatness.studies.hoffer2017_protocols.PROTOCOLS`):

- **E** -- :data:`EPOCHS` epochs for every batch size;
- **U** -- the number of updates SB makes in E (:data:`EPOCHS` × ⌊N / B_SB⌋) for every
  batch size (``max_updates``, no epoch cap);
- **C** -- until the full training set's loss (eval mode, checked after every epoch) is
  at most :data:`TARGET_LOSS`, capped at :data:`C_EPOCHS` epochs;
- **L** -- :data:`EPOCHS` epochs with the learning rate scaled with B: SGD by Goyal et
  al.'s linear rule from SB's rate with a linear warm-up of :data:`WARMUP_EPOCHS`
  epochs (schedule ``"linear_scaling"``), Adam by √(B / B_SB).

Every network is scored with λ_max, the Hessian trace (Hutch++), Keskar's ε-sharpness
(ε = 1e-3, full space, L-BFGS-B) and the gradient and weight norms on a fixed subset of
1000 training examples; the overview
(:func:`flatness.studies.hoffer2017_answers.answer`) answers :data:`QUESTIONS`.

Two plans:

- ``ci`` (:data:`CI`): a tiny MLP on 500 MNIST-1D examples, SB and LB under E, U, C
  and L, 2 seeds (seconds; what CI runs);
- ``full`` (:data:`FULL`): the study, :data:`SEEDS`.

References:
    D. R. Wilson and T. R. Martinez (2003). The general inefficiency of batch training
    for gradient descent learning. Neural Networks 16(10).

    E. Hoffer, I. Hubara and D. Soudry (2017). Train longer, generalize better: closing
    the generalization gap in large batch training of neural networks. NeurIPS 2017
    (arXiv:1705.08741).

    N. S. Keskar et al. (2017). On large-batch training for deep learning:
    Generalization gap and sharp minima. ICLR 2017 (arXiv:1609.04836).

Examples:
    >>> regimes = FULL.cases[1].regimes
    >>> list(regimes)  # doctest: +NORMALIZE_WHITESPACE
    ['SB', 'MB', 'LB', 'U-MB', 'U-LB', 'C-SB', 'C-MB', 'C-LB', 'L-MB', 'L-LB']
    >>> regimes["U-LB"]["max_updates"], regimes["L-LB"]["schedule"]
    (4000, 'linear_scaling')
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from flatness.studies.hoffer2017_answers import answer
from flatness.studies.hoffer2017_protocols import protocol_regimes
from flatness.study.plan import Case, StudyPlan, StudySpec

__all__ = [
    "ADAM",
    "BATCH_SIZES",
    "CI",
    "CI_SECTIONS",
    "C_EPOCHS",
    "EPOCHS",
    "FULL",
    "MEASURES",
    "NETWORK",
    "QUESTIONS",
    "SECTIONS",
    "SEEDS",
    "SGD",
    "STUDY",
    "TARGET_LOSS",
    "WARMUP_EPOCHS",
]

N_TRAIN = 4000
"""MNIST-1D training examples (its generator's default split, 4000/1000)."""

BATCH_SIZES: dict[str, int] = {"SB": 20, "MB": 100, "LB": 400}
"""0.5 %, 2.5 % and 10 % of the training set (Keskar et al.'s SB and LB, and their
geometric middle rounded to a divisor of N)."""

EPOCHS = 20
"""E's epochs (and L's). In the pilot (seed 0, Adam) SB ended them at 89 % training
accuracy and LB at 79 %: E compares networks that have not converged, as fixed-epoch
comparisons do."""

TARGET_LOSS = 0.05
"""C's threshold on the full training set's mean cross-entropy (about 99.3 % training
accuracy). In the pilot SB reached it after 70-75 epochs (14000-15000 updates), LB after
74 (Adam) and 131 (SGD) epochs."""

C_EPOCHS = 200
"""C's cap in epochs; a run that stops there has not converged and is named."""

WARMUP_EPOCHS = 2.0
"""L's linear warm-up for SGD (Goyal et al. warm up 5 of 90 epochs; 2 of 20 here)."""

SEEDS: tuple[int, ...] = (0, 1, 2, 3, 4)
"""Seeds of the full plan (paired: seed k of SB and of LB start from the same weights)."""

NETWORK: dict[str, Any] = {"network": "f1", "network_kwargs": {"width": 128, "depth": 2}}
"""Keskar et al.'s F1 scaled down: 2 × (Linear 128, BatchNorm, ReLU), 23 050 parameters
(F1 is 5 × 512)."""

ADAM: dict[str, Any] = {"optimizer": "adam", "lr": 1e-3}
"""Adam at its default step (Keskar et al.'s optimizer)."""

SGD: dict[str, Any] = {"optimizer": "sgd", "lr": 0.01, "momentum": 0.9}
"""SGD with heavy-ball momentum 0.9 at the rate chosen for SB: in the pilot (seed 0, 30
epochs) η = 0.01 and 0.03 ended at 67.8 % and 68.1 % test accuracy, η = 0.1 at 63.7 %;
0.01 keeps LB's linearly scaled rate (0.2) stable."""

MEASURES: dict[str, Any] = {
    "lambda_max": {"k": 1},
    "trace": {"method": "hutchpp", "budget": 100},
    "keskar": {"eps": 1e-3, "subspace": 0, "solver": "lbfgsb"},
    "gradient_norm": {},
    "weight_norm": {},
}
"""λ_max, the Hessian trace (Hutch++, 100 products), Keskar's ε-sharpness (ε = 1e-3,
full space, maximized by scipy's L-BFGS-B as in the paper), and the gradient and weight
norms: a network far from a minimum or with larger weights reads differently."""

SECTIONS: tuple[str, ...] = (
    "summary",
    "accuracy",
    "sharpness",
    "sb-vs-lb",
    "correlation",
    "training",
    "data",
    "provenance",
)
"""The case reports' sections: no batch-size trend (its regimes mix four protocols at
three batch sizes), no parametric plot and no density (not computed)."""

CI_SECTIONS: tuple[str, ...] = ("accuracy", "data")
"""The CI miniature's case reports: Table 2 and the data (its test checks the overview)."""

QUESTIONS: tuple[str, ...] = (
    "Does the LB gap in accuracy and in sharpness survive equal updates and convergence "
    "(per optimizer)?",
    "Under each protocol (equal epochs, equal updates, convergence, learning rate scaled "
    "with B): LB's test accuracy minus SB's in points, and LB's sharpness over SB's "
    "(λ_max, ε-sharpness, trace), over paired seeds, with the updates and epochs used "
    "and the final training loss?",
)
"""What the overview answers."""


def _case(
    name: str,
    optimizer: Mapping[str, Any],
    *,
    title: str,
    train: Mapping[str, Any],
    regimes: dict[str, dict[str, Any]],
    seeds: tuple[int, ...],
    examples: int,
    measures: Mapping[str, Any],
    notes: tuple[str, ...],
    sections: tuple[str, ...],
) -> Case:
    return Case(
        name=name,
        title=title,
        train={**train, **optimizer},
        regimes=regimes,
        seeds=seeds,
        examples=examples,
        measures=dict(measures),
        reference="F1",
        sections=sections,
        notes=notes,
    )


def _notes(
    optimizer: Mapping[str, Any], *, small: int, target_loss: float, c_epochs: int, batchnorm: bool
) -> tuple[str, ...]:
    scaled = (
        f"L scales SGD's rate linearly from SB's (η = {optimizer['lr']:g} × B / {small}) "
        f"after a linear warm-up of {WARMUP_EPOCHS:g} epochs (Goyal et al. 2017)"
        if optimizer["optimizer"] == "sgd"
        else f"L scales Adam's step with √(B / {small}) from {optimizer['lr']:g}"
    )
    return (
        "Regimes SB, MB and LB are the equal-epochs protocol (E); U-, C- and L- prefix the "
        "equal-updates, convergence and scaled-learning-rate protocols. SB's E run is also "
        "its U run (E's epochs of SB are U's budget of updates) and its L run (a scale of "
        "one), so this report's SB-vs-LB comparison is the equal-epochs one; the overview "
        "compares every protocol.",
        f"U trains every batch size for the updates SB makes in E; C stops once the "
        f"training loss (full training set, eval mode) is at most {target_loss:g} or at "
        f"{c_epochs} epochs; {scaled}.",
        "The summary's trends with the batch size and with η/B pool the four protocols "
        "(they share batch sizes); the overview compares the protocols one at a time.",
    ) + (
        (
            "BatchNorm layers are evaluated with their running statistics (eval mode) when "
            f"scored, while they trained on batch statistics (B = {small} for SB).",
        )
        if batchnorm
        else ()
    )


def _train(n_train: int, n_test: int, network: Mapping[str, Any], epochs: int) -> dict[str, Any]:
    data = {"dataset": "mnist1d", "dataset_kwargs": {"n_train": n_train, "n_test": n_test}}
    return {**network, **data, "epochs": epochs}


def _plan_cases(
    *,
    n_train: int,
    n_test: int,
    network: Mapping[str, Any],
    batch_sizes: Mapping[str, int],
    roles: tuple[str, ...],
    epochs: int,
    target_loss: float,
    c_epochs: int,
    seeds: tuple[int, ...],
    examples: int,
    measures: Mapping[str, Any],
    sections: tuple[str, ...] = SECTIONS,
    suffix: str = "",
) -> tuple[Case, ...]:
    cases = []
    for name, optimizer in (("adam", ADAM), ("sgd", SGD)):
        regimes = protocol_regimes(
            optimizer, batch_sizes, n_train=n_train, epochs=epochs, target_loss=target_loss,
            c_epochs=c_epochs, warmup_epochs=WARMUP_EPOCHS, roles=roles,
        )  # fmt: skip
        label = "Adam" if name == "adam" else "SGD with momentum"
        cases.append(
            _case(
                name,
                optimizer,
                title=f"{label}: SB vs LB under equal epochs, updates, convergence and "
                f"scaled learning rates{suffix}",
                train=_train(n_train, n_test, network, epochs),
                regimes=regimes,
                seeds=seeds,
                examples=examples,
                measures=measures,
                sections=sections,
                notes=_notes(
                    optimizer,
                    small=batch_sizes["SB"],
                    target_loss=target_loss,
                    c_epochs=c_epochs,
                    batchnorm=network["network"] == "f1",
                ),
            )
        )
    return tuple(cases)


CI = StudyPlan(
    name="ci",
    title="Fixed epochs vs fixed updates vs convergence, miniature (CI)",
    cases=_plan_cases(
        n_train=500,
        n_test=500,
        network={"network": "tiny_mlp", "network_kwargs": {"width": 16, "depth": 1}},
        batch_sizes={"SB": 10, "LB": 100},
        roles=("SB", "LB"),
        epochs=2,
        target_loss=1.9,
        c_epochs=6,
        seeds=(0, 1),
        examples=200,
        measures={
            "lambda_max": {"k": 1},
            "trace": {"method": "hutchpp", "budget": 12},
            "keskar": {"eps": 1e-3, "subspace": 0, "solver": "lbfgsb", "maxiter": 3},
            "gradient_norm": {},
            "weight_norm": {},
        },
        sections=CI_SECTIONS,
        suffix=" (CI)",
    ),
    answer=answer,
)
"""A miniature for CI: SB (10) and LB (100) of a 16-unit MLP on 500 examples, 2 seeds."""

FULL = StudyPlan(
    name="full",
    title="Fixed epochs, fixed updates or convergence: does the large-batch gap survive? "
    "(F1-style network on MNIST-1D, Adam and SGD)",
    cases=_plan_cases(
        n_train=N_TRAIN,
        n_test=1000,
        network=NETWORK,
        batch_sizes=BATCH_SIZES,
        roles=("SB", "MB", "LB"),
        epochs=EPOCHS,
        target_loss=TARGET_LOSS,
        c_epochs=C_EPOCHS,
        seeds=SEEDS,
        examples=1000,
        measures=MEASURES,
    ),
    answer=answer,
)
"""The whole study: 10 regimes × the seeds, for Adam and for SGD."""

STUDY = StudySpec(
    name="hoffer2017",
    title="Fixed epochs vs fixed updates vs convergence: does the large-batch gap in "
    "accuracy and sharpness survive equal updates and convergence?",
    plans={"ci": CI, "full": FULL},
    default_plan="full",
    questions=QUESTIONS,
    citation="E. Hoffer, I. Hubara and D. Soudry (2017). Train longer, generalize better: "
    "closing the generalization gap in large batch training of neural networks. NeurIPS "
    "2017 (arXiv:1705.08741); D. R. Wilson and T. R. Martinez (2003). The general "
    "inefficiency of batch training for gradient descent learning. Neural Networks 16(10).",
)
"""The study, as the registry (:func:`flatness.studies.get_study`) holds it."""
