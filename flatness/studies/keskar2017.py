"""Keskar et al. (2017): are the minima that large-batch training finds sharper?

Small-batch (SB) and large-batch (LB) networks are trained with Keskar et al.'s
protocol (LB = 10% of the training set, SB twenty times smaller, Adam, until 98%
training accuracy), scored with curvature and sharpness measures, and the overview
answers :data:`QUESTIONS`. Two plans:

- ``demo`` (:data:`DEMO`, what ``flatness demo`` runs): one case, an F1-style network on
  MNIST-1D, three seeds, the cheaper measures: about a minute and a half on a 2-core CPU;
- ``full`` (:data:`FULL`, ``analyses/keskar/run.py``): F1- and C1-style networks on
  MNIST-1D with five seeds, a six-size batch sweep with three seeds, F1 on
  scikit-learn's digits, and every measure.

Reference:
    N. S. Keskar, D. Mudigere, J. Nocedal, M. Smelyanskiy and P. T. P. Tang (2017).
    On large-batch training for deep learning: Generalization gap and sharp minima.
    ICLR 2017 (arXiv:1609.04836).

Examples:
    >>> from flatness.study import describe
    >>> print(describe(DEMO.cases[0]))  # doctest: +NORMALIZE_WHITESPACE
    f1-mnist1d: f1 (width=256, depth=3) on mnist1d; SB (batch 0.5%), LB (batch 10%)
    × seeds 0, 1, 2; adam, lr 0.001, until 98% training accuracy (at most 100
    epochs); measures lambda_max, trace, keskar, adaptive_sharpness on 1000 training
    examples.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from flatness.study.plan import Case, Settings, StudyPlan, StudySpec

__all__ = [
    "ALL_MEASURES",
    "C1_SMALL",
    "DEMO",
    "DEMO_MEASURES",
    "F1_SMALL",
    "FULL",
    "KESKAR_PROTOCOL",
    "QUESTIONS",
    "SB_LB",
    "STUDY",
    "KeskarCase",
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

F1_SMALL: dict[str, Any] = {"width": 256, "depth": 3}
"""The F1-style network at the built-in data's scale: 3 × (Linear 256, BatchNorm, ReLU)."""

C1_SMALL: dict[str, Any] = {"channels": 32, "hidden": [192, 96]}
"""The C1-style network at the built-in data's scale: 2 × (Conv 32×5, BatchNorm, ReLU,
max-pool), then dense 192 and 96 with BatchNorm, ReLU and dropout 0.5."""

ALL_MEASURES: dict[str, Any] = {
    "lambda_max": {"k": 5},
    "trace": {"method": "hutchpp", "budget": 100},
    "density": {"steps": 60, "runs": 5},
    "keskar": {"eps": [1e-3, 5e-4], "subspace": [0, 100], "solver": "lbfgsb"},
    "adaptive_sharpness": {"rho": 0.05},
    "average_sharpness": {"sigma": 0.01},
    "noise_scale": {},
}
"""Every measure the full study scores. ε-sharpness is maximized by scipy's L-BFGS-B,
the paper's method (the package's default is projected L-BFGS on the device)."""

DEMO_MEASURES: dict[str, Any] = {
    "lambda_max": {"k": 5},
    "trace": {"method": "hutchpp", "budget": 100},
    "keskar": {"eps": [1e-3, 5e-4], "subspace": [0, 100], "solver": "lbfgsb"},
    "adaptive_sharpness": {"rho": 0.05},
}
"""The demo's cheaper set: no spectral density, average sharpness or noise scale."""

QUESTIONS: tuple[str, ...] = (
    "Is LB sharper than SB in every seed, by every ε-sharpness column and by the other "
    "measures (Keskar et al.'s Tables 3 and 4)?",
    "Is LB's test accuracy below SB's, by how much, with the seeds' spread (Table 2)?",
    "How does each measure rank the checkpoints by test accuracy (Kendall's τ), over all "
    "checkpoints and within each batch size?",
)
"""What the overview answers for every case."""


@dataclass(frozen=True)
class KeskarCase(Case):
    """A :class:`~flatness.study.plan.Case` with Keskar et al.'s defaults: the SB/LB
    regimes, five seeds, every measure and the parametric plot of seed 0."""

    regimes: Settings = field(default_factory=lambda: dict(SB_LB))
    seeds: tuple[int, ...] = (0, 1, 2, 3, 4)
    pair_seed: int | None = 0
    measures: Settings = field(default_factory=lambda: dict(ALL_MEASURES))


def _f1(dataset: str, **data: Any) -> dict[str, Any]:
    return {
        **KESKAR_PROTOCOL,
        "network": "f1",
        "network_kwargs": dict(F1_SMALL),
        "dataset": dataset,
        "dataset_kwargs": data,
    }


DEMO = StudyPlan(
    name="demo",
    title="flatness demo: SB vs LB minima of an F1-style network on MNIST-1D",
    cases=(
        KeskarCase(
            name="f1-mnist1d",
            title="F1-style network on MNIST-1D: SB vs LB (demo, 3 seeds)",
            train=_f1("mnist1d"),
            seeds=(0, 1, 2),
            reference="F1",
            measures=DEMO_MEASURES,
        ),
    ),
)
"""The reduced study ``flatness demo`` runs: 6 networks, 4 measures (7 scalar columns)."""

FULL = StudyPlan(
    name="keskar-mnist1d",
    title="Keskar et al. (2017) on built-in data: are large-batch minima sharper?",
    cases=(
        KeskarCase(
            name="f1-mnist1d",
            title="F1-style network on MNIST-1D: SB vs LB and a batch-size sweep",
            train=_f1("mnist1d"),
            sweep={f"B{b}": {"batch_size": b} for b in (40, 80, 160, 240)},
            sweep_seeds=(0, 1, 2),
            reference="F1",
        ),
        KeskarCase(
            name="c1-mnist1d",
            title="C1-style network on MNIST-1D: SB vs LB",
            train={
                **KESKAR_PROTOCOL,
                "network": "c1",
                "network_kwargs": dict(C1_SMALL),
                "dataset": "mnist1d",
            },
            reference="C1",
        ),
        KeskarCase(
            name="f1-digits",
            title="F1-style network on scikit-learn's digits: SB vs LB",
            train=_f1("digits_flat"),
            reference="F1",
            examples=None,
        ),
    ),
)
"""The whole study (``flatness study keskar2017 --plan full``, ``analyses/keskar/run.py``)."""

STUDY = StudySpec(
    name="keskar2017",
    title="Keskar et al. (2017): are large-batch minima sharper, and does it explain the "
    "generalization gap?",
    plans={"demo": DEMO, "full": FULL},
    default_plan="demo",
    questions=QUESTIONS,
    citation="N. S. Keskar et al. (2017). On large-batch training for deep learning: "
    "Generalization gap and sharp minima. ICLR 2017 (arXiv:1609.04836).",
)
"""The study, as the registry (:func:`flatness.studies.get_study`) holds it."""
