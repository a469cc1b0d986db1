"""Smith, Kindermans, Ying & Le (2018): is increasing the batch size the same as decaying η?

Smith et al. train with SGD and momentum under five schedules that change the learning
rate η and the batch size B at the same milestones, and claim that (i) decaying η by a
factor, increasing B by that factor, or a hybrid of both (B grows to a cap, then η
decays) reach the same test accuracy after the same number of epochs, (ii) the
batch-increase schedule needs far fewer parameter updates, and (iii) holding SGD's
noise scale g = εN/(B(1 − m)) constant (η and B grown together) does not do better
than constant η and B: the noise scale, not η alone, is what the schedule anneals.

This study trains an F1-style network (3 × 128 units) on MNIST-1D without BatchNorm
and with it, under the five schedules of :data:`SCHEDULES` (η and B per phase in
:func:`phases`), tracks λ_max, the Hessian trace, ε-sharpness and the gradient noise
scale at every epoch (:data:`TRACK`), scores the final networks (:data:`MEASURES`) and
answers :data:`QUESTIONS` in :func:`flatness.studies.smith2018_answers.answer`.

Plans:

- ``ci`` (:data:`CI`): a tiny MLP on 500 MNIST-1D examples, 3 schedules, 2 seeds, 5
  epochs (seconds; what CI runs);
- ``demo`` (:data:`DEMO`): the MLP without BatchNorm, decay vs increase vs constant,
  3 seeds (what ``flatness demo`` runs beside the Keskar case);
- ``full`` (:data:`FULL`): both networks, all five schedules, 5 seeds.

Reference:
    S. L. Smith, P.-J. Kindermans, C. Ying and Q. V. Le (2018). Don't decay the learning
    rate, increase the batch size. ICLR 2018 (arXiv:1711.00489).

Examples:
    >>> [(epoch, lr, batch) for epoch, lr, batch in phases(FULL.cases[0], "increase")]
    [(0, 0.05, 32), (6, 0.05, 160), (12, 0.05, 800), (16, 0.05, 4000)]
    >>> [(epoch, round(lr, 6), batch) for epoch, lr, batch in phases(FULL.cases[0], "hybrid")]
    [(0, 0.05, 32), (6, 0.05, 160), (12, 0.01, 160), (16, 0.002, 160)]
"""

from __future__ import annotations

from typing import Any

from flatness.studies.smith2018_answers import answer
from flatness.study.plan import Case, StudyPlan, StudySpec
from flatness.zoo.config import TrainConfig, resolve_batch_size
from flatness.zoo.schedules import scheduled

__all__ = [
    "BASE_BATCH",
    "CAP",
    "CI",
    "DEMO",
    "EPOCHS",
    "FULL",
    "LR",
    "MEASURES",
    "N_TEST",
    "N_TRAIN",
    "NOTES",
    "QUESTIONS",
    "SCHEDULES",
    "SECTIONS",
    "STUDY",
    "TRACK",
    "WIDTH",
    "phases",
]

N_TRAIN = 4000
"""MNIST-1D training examples (the data set's default)."""

N_TEST = 2000
"""MNIST-1D test examples (binomial noise floor of a 66 % accuracy: 1.1 points)."""

BASE_BATCH = 32
"""The initial batch size B₀ (0.8 % of N): 32·5³ = 4000 = N, so the pure batch-increase
schedule's last phase is full-batch gradient descent and never needs the cap."""

LR = 0.05
"""The initial learning rate η₀. In the pilot (seed 0, no BatchNorm, 3 × 256 units) it
trained stably and constant η = 0.05 ended 3-4 points below step decay; η₀ = 0.1 did
not train at B = 20 (34 % test accuracy)."""

EPOCHS = 20
"""Every run trains 20 epochs (Smith et al. compare schedules at equal epochs)."""

MILESTONES = (0.3, 0.6, 0.8)
"""Milestones as fractions of the epochs: the first epochs changed are 6, 12 and 16."""

FACTOR = 5.0
"""η ÷ 5 or B × 5 at each milestone (Smith et al.'s factor for their CIFAR-10 runs)."""

CAP = 0.04
"""The hybrid's and the constant-noise run's batch cap, a fraction of N (B ≤ 160): the
hybrid grows B once and then decays η twice; the constant-noise run grows η and B once.
Without the cap (B up to 4000) constant noise needs η = 0.05 · 125 = 6.25; in the pilot
a cap of 800 (η = 1.25) diverged in the no-BatchNorm network (loss NaN by epoch 13)."""

WIDTH = 128
"""Units per hidden layer (3 layers, 23 k parameters on MNIST-1D): half the Keskar
study's F1-style width, so that tracking every epoch fits the study's time budget."""

SCHEDULES: dict[str, dict[str, Any]] = {
    "decay": {"schedule": "step"},
    "increase": {"schedule": "batch_increase", "max_batch_fraction": 1.0},
    "hybrid": {"schedule": "batch_increase", "max_batch_fraction": CAP},
    "constant": {"schedule": "constant"},
    "const-noise": {"schedule": "constant_noise", "max_batch_fraction": CAP},
}
"""The five regimes (:mod:`flatness.zoo.schedules`): η ÷ 5 at the milestones; B × 5
instead; B × 5 up to :data:`CAP`, then η ÷ 5; η and B constant; η and B × 5 together
up to the cap (η/B and the noise scale constant)."""

TRACK: dict[str, Any] = {
    "measures": {
        "lambda_max": {},
        "trace": {"method": "hutchpp", "budget": 12},
        "keskar_sharpness": {"maxiter": 3},
        "noise_scale": {"groups": 5},
    },
    "every": "epoch",
    "examples": 256,
}
"""Tracked at step 0 and after every epoch on a fixed subset of 256 training examples:
λ_max (warm-started Lanczos), the trace (Hutch++, 12 products), ε-sharpness (ε = 1e-3,
full space, 3 ascent steps) and the gradient noise scale B_simple (McCandlish et al.
2018, per-example gradients)."""

MEASURES: dict[str, Any] = {
    "lambda_max": {"k": 1},
    "trace": {"method": "hutchpp", "budget": 60},
    "keskar": {"eps": 1e-3, "subspace": 0, "solver": "lbfgsb"},
    "gradient_norm": {},
    "weight_norm": {},
}
"""The final networks' measures (on 1000 training examples): λ_max, the trace, Keskar's
ε-sharpness (ε = 1e-3, full space, L-BFGS-B as in Keskar et al.), the gradient norm and
the weight norm."""

SECTIONS: tuple[str, ...] = (
    "provenance",
    "accuracy",
    "sharpness",
    "batchnorm",
    "training",
    "data",
)
"""The case reports' sections: no summary or correlation section (both read the regimes
as batch sizes and name an SB and an LB, which five schedules with one initial batch size
do not have), no SB-vs-LB test or parametric plot, no batch-size section (B changes
within a run), no spectral density (not scored)."""

QUESTIONS: tuple[str, ...] = (
    "Is increasing the batch size the same as decaying the learning rate: do step decay, "
    "batch increase and the hybrid reach the same test accuracy after the same epochs?",
    "How many fewer parameter updates does the batch-increase schedule use?",
    "Does constant noise (η and B grown together) do better than constant η and B?",
    "How do λ_max, the trace, ε-sharpness and the gradient noise scale move at each "
    "phase of each schedule?",
)
"""What the overview answers."""

NOTES: tuple[str, ...] = (
    "SGD with heavy-ball momentum 0.9, no weight decay, no data augmentation, 20 epochs "
    "of MNIST-1D (N = 4000) with B₀ = 32 and η₀ = 0.05; Smith et al. trained a "
    "Wide ResNet on CIFAR-10 (and Inception-ResNet-V2 on ImageNet) with weight decay "
    "and augmentation, for hundreds of epochs.",
    "Smith et al.'s noise scale is g = εN/(B(1 − m)); the tracked noise scale is a "
    "different quantity, McCandlish et al.'s B_simple = tr(Σ)/|G|², measured on 256 "
    "training examples in evaluation mode.",
    "The constant-noise run grows η and B only once (B ≤ 160, η ≤ 0.25): a larger cap "
    "diverged in the pilot. So 'constant noise' here is constant noise for the first "
    "two phases and constant η and B after.",
    "Milestones are at epochs 6, 12 and 16; an epoch is one pass in full batches (the "
    "last partial batch is dropped), so the full-batch phase makes one update per epoch.",
)
"""Design notes each case report prints under "Design and its limits"."""


def _train(network: str, width: int, depth: int, **data: Any) -> dict[str, Any]:
    kwargs: dict[str, Any] = {"width": width, "depth": depth}
    if network == "tiny_mlp":
        kwargs["batchnorm"] = False
    return {
        "network": network,
        "network_kwargs": kwargs,
        "dataset": "mnist1d",
        "dataset_kwargs": {
            "n_train": data.get("n_train", N_TRAIN),
            "n_test": data.get("n_test", N_TEST),
        },
        "optimizer": "sgd",
        "momentum": 0.9,
        "lr": data.get("lr", LR),
        "batch_size": data.get("batch_size", BASE_BATCH),
        "epochs": data.get("epochs", EPOCHS),
        "milestone_fractions": list(MILESTONES),
        "factor": FACTOR,
        "history_fit": "full_train",
    }


def phases(case: Case, regime: str) -> list[tuple[int, float, int]]:
    """The learning rate and batch size of each phase of a regime of a case.

    Args:
        case: A case of this study.
        regime: One of its regime labels.

    Returns:
        ``(first epoch, η, B)`` for the start of training and each milestone, in order.

    Raises:
        KeyError: For a regime the case does not train.
    """
    settings = {**case.train, **case.regimes[regime]}
    config = TrainConfig.from_dict(settings)
    n_train = int(config.dataset_kwargs.get("n_train", N_TRAIN))
    base = resolve_batch_size(config.batch_size, n_train)
    starts = [0, *config.milestone_epochs]
    return [(start, *scheduled(config, start, base, n_train)) for start in starts]


def _case(name: str, title: str, network: str, regimes: list[str], **fields: Any) -> Case:
    train = _train(
        network, fields.pop("width", WIDTH), fields.pop("depth", 3), **fields.pop("data", {})
    )
    return Case(
        name=name,
        title=title,
        train=train,
        regimes={label: dict(SCHEDULES[label]) for label in regimes},
        pair_seed=None,
        notes=(
            *NOTES,
            f"{len(fields['seeds'])} seeds per schedule: a paired test over "
            f"{len(fields['seeds'])} seeds cannot give p below "
            f"{min(1.0, 2 / 2 ** len(fields['seeds'])):g}.",
        ),
        **{"sections": SECTIONS, **fields},
    )


CI = StudyPlan(
    name="ci",
    title="Smith et al. (2018) miniature: η decay vs batch increase (CI)",
    cases=(
        _case(
            "mlp-ci",
            "Tiny MLP on 500 MNIST-1D examples: decay vs increase vs constant (CI)",
            "tiny_mlp",
            ["decay", "increase", "constant"],
            width=16,
            depth=1,
            data={"n_train": 500, "n_test": 500, "batch_size": 4, "epochs": 5, "lr": 0.02},
            seeds=(0, 1),
            examples=100,
            track={
                "measures": {"lambda_max": {}, "noise_scale": {"groups": 5}},
                "every": "epoch",
                "examples": 32,
                "test": False,
            },
            measures={"lambda_max": {"k": 1}},
            sections=("accuracy",),
        ),
    ),
    answer=answer,
)
"""A miniature for CI: B₀ = 4 on 500 examples (4·5³ = 500), 5 epochs, 2 seeds (seconds)."""

_NO_BN = ("tiny_mlp", "MLP without BatchNorm")
_BN = ("f1", "F1-style network (BatchNorm)")

DEMO = StudyPlan(
    name="demo",
    title="Smith et al. (2018) demo: is increasing B the same as decaying η?",
    cases=(
        _case(
            "mlp-mnist1d",
            f"{_NO_BN[1]} on MNIST-1D: η decay vs batch increase vs constant (demo)",
            _NO_BN[0],
            ["decay", "increase", "constant"],
            seeds=(0, 1, 2),
            examples=500,
            track={
                "measures": {"lambda_max": {}, "keskar_sharpness": {"maxiter": 3}},
                "every": "epoch",
                "examples": 256,
            },
            measures={"lambda_max": {"k": 1}, "keskar": MEASURES["keskar"], "gradient_norm": {}},
        ),
    ),
    answer=answer,
)
"""The demo: 9 networks of the MLP without BatchNorm, λ_max and ε-sharpness tracked."""

FULL = StudyPlan(
    name="full",
    title="Smith et al. (2018) on MNIST-1D: don't decay the learning rate, increase the "
    "batch size?",
    cases=tuple(
        _case(
            name,
            f"{label} on MNIST-1D: five η and B schedules",
            network,
            list(SCHEDULES),
            seeds=(0, 1, 2, 3, 4),
            examples=1000,
            track=TRACK,
            measures=MEASURES,
        )
        for name, (network, label) in (("mlp-mnist1d", _NO_BN), ("f1-mnist1d", _BN))
    ),
    answer=answer,
)
"""The whole study: 2 networks × 5 schedules × 5 seeds (50 networks), tracked every epoch."""

STUDY = StudySpec(
    name="smith2018",
    title="Smith et al. (2018): is increasing the batch size the same as decaying the "
    "learning rate?",
    plans={"ci": CI, "demo": DEMO, "full": FULL},
    default_plan="full",
    questions=QUESTIONS,
    citation="S. L. Smith, P.-J. Kindermans, C. Ying and Q. V. Le (2018). Don't decay the "
    "learning rate, increase the batch size. ICLR 2018 (arXiv:1711.00489).",
)
"""The study, as the registry (:func:`flatness.studies.get_study`) holds it."""
