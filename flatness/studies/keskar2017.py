"""Keskar et al. (2017): are the minima that large-batch training finds sharper — and is it
the batch size, or that LB trained fewer updates?

Small-batch (SB) and large-batch (LB) networks are trained with Keskar et al.'s
protocol (LB = 10% of the training set, SB twenty times smaller, Adam, until 98%
training accuracy), scored with curvature and sharpness measures, and the overview
answers :data:`QUESTIONS`. Stopping both at 98% training accuracy gives LB 10-34× fewer
updates than SB and leaves it at a higher training loss and gradient norm (issue 15;
Hoffer, Hubara & Soudry 2017), so every case also trains the controls of
:data:`DECONFOUNDED`:

- ``LB-U``: LB trained for exactly as many updates as SB of the same seed (no accuracy
  stop);
- ``SB-C`` and ``LB-C``: both trained until the training loss (eval mode, full training
  set, checked after every epoch) is at most :data:`CONVERGED_LOSS`, at most
  :data:`CONVERGED_EPOCHS` epochs.

Plans:

- ``demo`` (:data:`DEMO`, what ``flatness demo`` runs): an F1-style network (2 × 128)
  on MNIST-1D, SB, LB and LB-U, three seeds, the cheaper measures;
- ``full`` (:data:`FULL`, ``analyses/keskar/run.py``): F1- and C1-style networks on
  MNIST-1D and F1 on scikit-learn's digits, all five regimes, every measure of
  :data:`ALL_MEASURES`;
- ``ci`` (:data:`CI`): a tiny network for seconds, the same regimes (the CI miniature).

The overview's answers are :func:`flatness.studies.keskar_answers.answer`.

Reference:
    N. S. Keskar, D. Mudigere, J. Nocedal, M. Smelyanskiy and P. T. P. Tang (2017).
    On large-batch training for deep learning: Generalization gap and sharp minima.
    ICLR 2017 (arXiv:1609.04836).

    E. Hoffer, I. Hubara and D. Soudry (2017). Train longer, generalize better: closing
    the generalization gap in large batch training of neural networks. NeurIPS 2017.

Examples:
    >>> from flatness.study import describe
    >>> print(describe(CI.cases[0]))  # doctest: +NORMALIZE_WHITESPACE +ELLIPSIS
    tiny-mnist1d: tiny_mlp (width=16, depth=1) on mnist1d; SB (batch 0.5%), LB (batch
    10%), LB-U (batch 10%, as many updates as SB), SB-C (batch 0.5%, ...), LB-C (batch
    10%, ...) × seeds 0, 1, 2; adam, lr 0.001, until 35% training accuracy (at most 5
    epochs); measures lambda_max, keskar, gradient_norm, weight_norm on 100 training
    examples.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flatness.report.overview_case import OverviewCase, StudyAnswer
from flatness.study.plan import Case, Settings, StudyPlan, StudySpec

__all__ = [
    "ALL_MEASURES",
    "C1_SMALL",
    "CI",
    "CONVERGED_EPOCHS",
    "CONVERGED_LOSS",
    "DECONFOUNDED",
    "DEMO",
    "DEMO_MEASURES",
    "F1_DEMO",
    "F1_SMALL",
    "FULL",
    "KESKAR_PROTOCOL",
    "QUESTIONS",
    "SB_LB",
    "STUDY",
    "KeskarCase",
    "design_notes",
]

KESKAR_PROTOCOL: dict[str, Any] = {
    "optimizer": "adam",
    "lr": 1e-3,
    "epochs": 100,
    "target_accuracy": 0.98,
}
"""Adam at its default step, until 98% training accuracy (an epoch cap of 100)."""

SB_LB: dict[str, dict[str, Any]] = {"SB": {"batch_size": "0.5%"}, "LB": {"batch_size": "10%"}}
"""LB = 10% of the training set, SB twenty times smaller (Keskar et al. §2.2)."""

CONVERGED_LOSS = 0.02
"""The training loss the ``-C`` regimes train to. SB's Adam noise keeps its training loss
between 0.01 and 0.03 for tens of epochs on MNIST-1D (measured: F1, seed 0, epochs
36-60), so 0.01 is not reached reliably; 0.02 is a fifth of SB's loss at 98% training
accuracy and a ninth of LB's."""

CONVERGED_EPOCHS = 100
"""The epoch cap of the ``-C`` regimes (the protocol's)."""

DECONFOUNDED: dict[str, dict[str, Any]] = {
    **SB_LB,
    "LB-U": {"batch_size": "10%", "match_updates": "SB"},
    "SB-C": {
        "batch_size": "0.5%",
        "target_accuracy": None,
        "target_loss": CONVERGED_LOSS,
        "epochs": CONVERGED_EPOCHS,
    },
    "LB-C": {
        "batch_size": "10%",
        "target_accuracy": None,
        "target_loss": CONVERGED_LOSS,
        "epochs": CONVERGED_EPOCHS,
    },
}
"""SB and LB as Keskar et al. trained them, LB with SB's number of updates (``LB-U``),
and both trained to a training loss of :data:`CONVERGED_LOSS` (``SB-C``, ``LB-C``)."""

F1_SMALL: dict[str, Any] = {"width": 256, "depth": 3}
"""The F1-style network at the built-in data's scale: 3 × (Linear 256, BatchNorm, ReLU)."""

F1_DEMO: dict[str, Any] = {"width": 128, "depth": 2}
"""The demo's smaller F1-style network: 2 × (Linear 128, BatchNorm, ReLU)."""

C1_SMALL: dict[str, Any] = {"channels": 32, "hidden": [192, 96]}
"""The C1-style network at the built-in data's scale: 2 × (Conv 32×5, BatchNorm, ReLU,
max-pool), then dense 192 and 96 with BatchNorm, ReLU and dropout 0.5."""

ALL_MEASURES: dict[str, Any] = {
    "lambda_max": {"k": 5},
    "trace": {"method": "hutchpp", "budget": 30},
    "keskar": {"eps": [1e-3, 5e-4], "subspace": [0, 100], "solver": "lbfgsb", "draws": 3},
    "adaptive_sharpness": {"rho": 0.05},
    "average_sharpness": {"sigma": 0.01},
    "gradient_norm": {},
    "weight_norm": {},
}
"""Every measure the full study scores. ε-sharpness is maximized by scipy's L-BFGS-B,
the paper's method, in full space and averaged over three random 100-dimensional
subspaces; the gradient and weight norms say how far from a minimum and at what scale
each network is. Left out for the budget: the spectral density (45 s a checkpoint on a
loaded 2-core machine) and the gradient noise scale."""

DEMO_MEASURES: dict[str, Any] = {
    "lambda_max": {"k": 5},
    "keskar": {"eps": [1e-3], "subspace": [0, 100], "solver": "lbfgsb"},
    "gradient_norm": {},
    "weight_norm": {},
}
"""The demo's cheaper set: λ_max, ε-sharpness at ε = 1e-3 (full space and one subspace)
and the gradient and weight norms."""

SECTIONS: tuple[str, ...] = (
    "summary",
    "accuracy",
    "sharpness",
    "sb-vs-lb",
    "correlation",
    "parametric",
    "training",
    "data",
    "provenance",
)
"""The case reports' sections (no batch-size sweep, no spectral density)."""

QUESTIONS: tuple[str, ...] = (
    "Is LB sharper and less accurate than SB as Keskar et al. trained them (both until "
    "98% training accuracy), by every ε-sharpness column and λ_max, paired over seeds?",
    "Does it still hold when LB trains as many updates as SB (SB vs LB-U)?",
    "Does it still hold when both train to the same low training loss (SB-C vs LB-C)?",
    "How far from a minimum (gradient norm, training loss) and at what weight scale is "
    "each regime, beside the scale-dependent measures?",
)
"""What the overview answers for every case."""


def design_notes(
    network: str, ours: str, paper: str, dataset: str, sb_examples: int, converged: bool = True
) -> tuple[str, ...]:
    """The design notes a case report prints under "Design and its limits".

    Args:
        network: The paper's network name (``"F1"``).
        ours: Our network, in words.
        paper: The paper's network, in words.
        dataset: Our data set, in words.
        sb_examples: SB's batch size in examples.
        converged: Whether the case trains SB-C and LB-C.

    Returns:
        The notes, one paragraph each.
    """
    return (
        f"Network: {ours}; Keskar et al.'s {network} is {paper}. Ours is scaled down to "
        f"{dataset}; compare the shape of the results (who is sharper, by how much), not "
        "the scale.",
        f"Batch sizes: SB = 0.5% of the training set = {sb_examples} examples (the paper's "
        "SB is 256 examples on 50,000-60,000), LB = 10%, as in the paper.",
        "Updates differ by regime: SB and LB stop at 98% training accuracy, so LB takes "
        "10-34× fewer updates and stops at a higher training loss and gradient norm (the "
        "confound). LB-U trains LB for as many updates as SB of the same seed"
        + (
            f"; SB-C and LB-C train both to a training loss of {CONVERGED_LOSS} (checked "
            f"after every epoch, at most {CONVERGED_EPOCHS} epochs)."
            if converged
            else "."
        ),
        "BatchNorm: every measure evaluates the networks in eval mode (BatchNorm's running "
        "statistics, no dropout), while Keskar et al.'s Keras code evaluated sharpness with "
        "batch statistics; λ_max and ε-sharpness differ between the two conventions.",
        "ε-sharpness is scale-dependent (the box is ε(|x| + 1)) and so is λ_max: read them "
        "beside the weight norms. The subspace values are means over three random "
        "100-dimensional subspaces with N(0, 1) entries.",
    )


F1_NOTES = design_notes(
    "F1",
    "3 × (Linear 256, BatchNorm, ReLU), 146k parameters",
    "5 × (Linear 512, BatchNorm, ReLU) on MNIST (784 inputs, about 1.2M parameters)",
    "MNIST-1D (40 inputs, 4000 training and 1000 test signals)",
    20,
)
C1_NOTES = design_notes(
    "C1",
    "2 × (Conv 32×5, BatchNorm, ReLU, max-pool), dense 192 and 96 with BatchNorm, ReLU and "
    "dropout 0.5 (1-D convolutions), 87k parameters",
    "2 × (Conv 64 5×5, BatchNorm, ReLU, max-pool 3×3), dense 384 and 192 with BatchNorm, "
    "ReLU and dropout, on CIFAR-10",
    "MNIST-1D (40 inputs, 4000 training and 1000 test signals)",
    20,
    converged=False,
)
DIGITS_NOTES = design_notes(
    "F1",
    "3 × (Linear 256, BatchNorm, ReLU) on 64 inputs",
    "5 × (Linear 512, BatchNorm, ReLU) on MNIST (784 inputs)",
    "scikit-learn's 8×8 digits (1437 training and 360 test images)",
    7,
)


@dataclass(frozen=True)
class KeskarCase(Case):
    """A :class:`~flatness.study.plan.Case` with Keskar et al.'s defaults: the SB/LB
    regimes, five seeds, every measure and the parametric plot of seed 0."""

    regimes: Settings = field(default_factory=lambda: dict(SB_LB))
    seeds: tuple[int, ...] = (0, 1, 2, 3, 4)
    pair_seed: int | None = 0
    measures: Settings = field(default_factory=lambda: dict(ALL_MEASURES))


def _train(network: str, kwargs: dict[str, Any], dataset: str, **data: Any) -> dict[str, Any]:
    return {
        **KESKAR_PROTOCOL,
        "network": network,
        "network_kwargs": dict(kwargs),
        "dataset": dataset,
        "dataset_kwargs": data,
    }


def _deconfounded(
    name: str,
    title: str,
    train: dict[str, Any],
    seeds: tuple[int, ...],
    regimes: tuple[str, ...] = tuple(DECONFOUNDED),
    **kwargs: Any,
) -> KeskarCase:
    """A case with ``regimes`` of :data:`DECONFOUNDED`, parametric plots for every seed."""
    return KeskarCase(
        name=name,
        title=title,
        train=train,
        regimes={k: dict(DECONFOUNDED[k]) for k in regimes},
        seeds=seeds,
        pair_seed=None,
        pair_seeds=seeds,
        sections=SECTIONS,
        **kwargs,
    )


def _answer(cases: Sequence[OverviewCase], out: Path) -> StudyAnswer:
    """The overview's answers: :func:`flatness.studies.keskar_answers.answer`."""
    from flatness.studies.keskar_answers import answer

    return answer(cases, out)


DEMO = StudyPlan(
    name="demo",
    title="flatness demo: are LB minima sharper once LB has trained as many updates?",
    cases=(
        KeskarCase(
            name="f1-mnist1d",
            title="F1-style network (2 × 128) on MNIST-1D: SB vs LB vs LB with SB's updates",
            train=_train("f1", F1_DEMO, "mnist1d"),
            regimes={k: dict(DECONFOUNDED[k]) for k in ("SB", "LB", "LB-U")},
            seeds=(0, 1, 2),
            pair_seed=None,
            pair_seeds=(0, 1, 2),
            reference="F1",
            measures=DEMO_MEASURES,
            sections=SECTIONS,
            notes=design_notes(
                "F1",
                "2 × (Linear 128, BatchNorm, ReLU), 23k parameters",
                "5 × (Linear 512, BatchNorm, ReLU) on MNIST",
                "MNIST-1D (40 inputs, 4000 training and 1000 test signals)",
                20,
            )[:3],
        ),
    ),
    answer=_answer,
)
"""The reduced study ``flatness demo`` runs: 9 networks, 4 measures."""

FULL = StudyPlan(
    name="keskar-mnist1d",
    title="Keskar et al. (2017) on built-in data, de-confounded: are large-batch minima "
    "sharper once LB has trained as long?",
    cases=(
        _deconfounded(
            "f1-mnist1d",
            "F1-style network on MNIST-1D: SB vs LB, equal updates, equal training loss",
            _train("f1", F1_SMALL, "mnist1d"),
            (0, 1, 2, 3),
            reference="F1",
            notes=F1_NOTES,
        ),
        _deconfounded(
            "f1-digits",
            "F1-style network on scikit-learn's digits: SB vs LB, equal updates, equal "
            "training loss",
            _train("f1", F1_SMALL, "digits_flat"),
            (0, 1, 2, 3, 4),
            reference="F1",
            examples=None,
            notes=DIGITS_NOTES,
        ),
        _deconfounded(
            "c1-mnist1d",
            "C1-style network on MNIST-1D: SB vs LB and LB with SB's number of updates",
            _train("c1", C1_SMALL, "mnist1d"),
            (0, 1, 2),
            ("SB", "LB", "LB-U"),
            reference="C1",
            notes=(
                *C1_NOTES,
                "This case trains no SB-C and LB-C: at 0.1 s a large-batch update on a "
                "quiet 2-core CPU, LB-U's 2000 updates a seed and the convergence runs "
                "would take most of the study's 30-minute budget.",
            ),
        ),
    ),
    answer=_answer,
)
"""The whole study (``flatness study keskar2017 --plan full``, ``analyses/keskar/run.py``):
four seeds for F1 on MNIST-1D, five on digits, three for C1 and no convergence regimes
for C1 (LB-U's 2000-4000 large-batch updates a seed are most of the budget)."""

CI = StudyPlan(
    name="keskar-ci",
    title="Keskar et al. (2017), miniature: SB vs LB, equal updates, equal training loss",
    cases=(
        KeskarCase(
            name="tiny-mnist1d",
            title="tiny MLP on MNIST-1D (200 signals)",
            train={
                **_train("tiny_mlp", {"width": 16, "depth": 1}, "mnist1d", n_train=200, n_test=100),
                "epochs": 5,
                "target_accuracy": 0.35,
            },
            regimes={
                **{k: dict(v) for k, v in DECONFOUNDED.items()},
                "SB-C": {"batch_size": "0.5%", "target_accuracy": None, "target_loss": 1.6},
                "LB-C": {"batch_size": "10%", "target_accuracy": None, "target_loss": 1.6},
            },
            seeds=(0, 1, 2),
            pair_seed=None,
            pair_seeds=(0,),
            examples=100,
            reference="F1",
            measures={
                "lambda_max": {"k": 1, "max_matvecs": 30},
                "keskar": {"eps": [1e-3], "subspace": [0, 10], "maxiter": 2, "draws": 2},
                "gradient_norm": {},
                "weight_norm": {},
            },
            sections=("summary", "accuracy", "sharpness", "sb-vs-lb"),
            notes=("A miniature for CI: a 16-unit MLP on 200 MNIST-1D signals, 5 epochs.",),
        ),
    ),
    answer=_answer,
)
"""The CI miniature: seconds on one core (a 16-unit MLP, 200 training signals, at most 5
epochs, until 35% training accuracy; training-loss target 1.6 for the ``-C`` regimes)."""

STUDY = StudySpec(
    name="keskar2017",
    title="Keskar et al. (2017): are large-batch minima sharper, and is it the batch size "
    "or the number of updates?",
    plans={"demo": DEMO, "full": FULL, "ci": CI},
    default_plan="demo",
    questions=QUESTIONS,
    citation="N. S. Keskar et al. (2017). On large-batch training for deep learning: "
    "Generalization gap and sharp minima. ICLR 2017 (arXiv:1609.04836).",
)
"""The study, as the registry (:func:`flatness.studies.get_study`) holds it."""
