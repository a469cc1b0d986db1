"""The settings of a training run, and the schedules they describe.

:class:`TrainConfig` holds everything that determines a run of
:func:`flatness.zoo.train_network`; two runs with equal configs (and the same data)
give identical weights on CPU. :func:`scheduled` gives the learning rate and batch
size of an epoch under the schedules of :mod:`flatness.zoo.schedules` (re-exported
here).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from flatness.zoo.schedules import SCHEDULES, milestone_epochs, scheduled

__all__ = [
    "HISTORY_FITS",
    "OPTIMIZERS",
    "SCHEDULES",
    "TrainConfig",
    "resolve_batch_size",
    "scheduled",
]

OPTIMIZERS = ("adam", "sgd")
HISTORY_FITS = ("epoch_average", "full_train")


@dataclass(frozen=True)
class TrainConfig:
    """Everything that determines a training run.

    Attributes:
        network: A registered network name (``"f1"``, ``"c1"``, ...) or a model factory
            ``"package.module:function"`` (called with ``**network_kwargs``).
        network_kwargs: Settings of the network (e.g. ``{"width": 512, "depth": 5}``).
        dataset: A registered data set name or a data factory string.
        dataset_kwargs: Settings of the data set (e.g. ``{"n_train": 4000}``).
        batch_size: Examples per update, or a percentage of the training set (``"10%"``).
        optimizer: ``"adam"`` (Keskar et al.) or ``"sgd"`` (with ``momentum``).
        lr: Initial learning rate (with ``"linear_scaling"``: the rate tuned for
            ``reference_batch_size``).
        momentum: Heavy-ball momentum of SGD, in [0, 1) (ignored by Adam).
        nesterov: Nesterov momentum (SGD with ``momentum > 0`` only).
        weight_decay: L2 penalty of the optimizer.
        schedule: One of :data:`SCHEDULES` (see :mod:`flatness.zoo.schedules`).
        milestones: Epochs (0-based index of the first epoch changed) where the schedule
            applies ``factor``.
        milestone_fractions: The milestones as fractions of ``epochs`` instead (each in
            (0, 1); milestone ``ceil(f * epochs)``); not together with ``milestones``.
        factor: Learning-rate divisor (``"step"``, ``"linear_scaling"``) or batch-size
            multiplier (``"batch_increase"``, ``"constant_noise"``) at each milestone;
            greater than 1.
        max_batch_fraction: Cap of the growing-batch schedules, a fraction of the
            training set in (0, 1]; beyond it ``"batch_increase"`` decays the learning
            rate instead (Smith et al.'s hybrid) and ``"constant_noise"`` stops growing.
        warmup_epochs: Linear warm-up of ``"linear_scaling"`` (Goyal et al.: 5), in epochs.
        reference_batch_size: The batch size ``lr`` was tuned for (``"linear_scaling"``).
        history_fit: What the per-epoch history's ``train_loss``/``train_accuracy`` are:
            ``"epoch_average"`` (the running average over the epoch's updates, free) or
            ``"full_train"`` (a pass over the training set in eval mode after the epoch);
            ``target_accuracy`` or ``target_loss`` makes that pass anyway.
        epochs: Cap on the number of epochs (``None`` for no cap).
        max_updates: Cap on the number of updates (``None`` for no cap).
        target_accuracy: Stop once the training accuracy (eval mode, full training set,
            checked after every epoch) reaches this fraction; ``None`` never stops early.
        target_loss: Stop once the training loss (eval mode, full training set, checked
            after every epoch) is at most this; ``None`` never stops early. With both
            targets training stops at whichever is reached first.
        seed: Seed of the initialisation, the shuffling and dropout.
        checkpoint_every: Also save a checkpoint every this many epochs (0: final only).
        regime: A label for the run (``"SB"``, ``"LB"``) recorded in the metadata.
        device: Where to train (``"cpu"``, ``"cuda"``, ...).
    """

    network: str = "f1"
    network_kwargs: dict[str, Any] = field(default_factory=dict)
    dataset: str = "mnist1d"
    dataset_kwargs: dict[str, Any] = field(default_factory=dict)
    batch_size: int | str = 64
    optimizer: str = "adam"
    lr: float = 1e-3
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 0.0
    schedule: str = "constant"
    milestones: tuple[int, ...] = ()
    milestone_fractions: tuple[float, ...] = ()
    factor: float = 5.0
    max_batch_fraction: float = 1.0
    warmup_epochs: float = 0.0
    reference_batch_size: int | None = None
    history_fit: str = "epoch_average"
    epochs: int | None = 100
    max_updates: int | None = None
    target_accuracy: float | None = None
    target_loss: float | None = None
    seed: int = 0
    checkpoint_every: int = 0
    regime: str | None = None
    device: str = "cpu"

    def __post_init__(self) -> None:
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {self.optimizer!r}")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"schedule must be one of {SCHEDULES}, got {self.schedule!r}")
        if self.schedule != "constant" and self.factor <= 1:
            raise ValueError(f"factor must be greater than 1, got {self.factor}")
        if self.epochs is None and self.max_updates is None:
            raise ValueError("give a cap: epochs, max_updates or both")
        if self.lr <= 0:
            raise ValueError(f"lr must be positive, got {self.lr}")
        if self.target_loss is not None and not self.target_loss > 0:
            raise ValueError(f"target_loss must be positive, got {self.target_loss}")
        object.__setattr__(self, "milestones", tuple(sorted(int(m) for m in self.milestones)))
        object.__setattr__(self, "milestone_fractions", tuple(self.milestone_fractions))
        self._check_schedule()
        self._check_optimizer()
        if self.history_fit not in HISTORY_FITS:
            raise ValueError(f"history_fit must be one of {HISTORY_FITS}, got {self.history_fit!r}")

    def _check_schedule(self) -> None:
        milestones = self.milestone_epochs
        if not 0 < self.max_batch_fraction <= 1:
            raise ValueError(
                f"max_batch_fraction must lie in (0, 1] (a fraction of the training set), "
                f"got {self.max_batch_fraction}"
            )
        if self.warmup_epochs < 0:
            raise ValueError(f"warmup_epochs must be >= 0, got {self.warmup_epochs}")
        scaling = self.schedule == "linear_scaling"
        if self.warmup_epochs and not scaling:
            raise ValueError(
                f"warmup_epochs applies to schedule 'linear_scaling' only, not {self.schedule!r}"
            )
        if scaling != (self.reference_batch_size is not None):
            raise ValueError(
                "schedule 'linear_scaling' needs reference_batch_size (the batch size lr "
                "was tuned for), and only it takes one"
            )
        if self.reference_batch_size is not None and self.reference_batch_size < 1:
            raise ValueError(
                f"reference_batch_size must be a positive number of examples, "
                f"got {self.reference_batch_size}"
            )
        early = [m for m in milestones if m < self.warmup_epochs]
        if early:
            raise ValueError(
                f"milestones {early} fall inside the warm-up (warmup_epochs "
                f"{self.warmup_epochs}); decays start after it"
            )

    def _check_optimizer(self) -> None:
        if not 0 <= self.momentum < 1:
            raise ValueError(f"momentum must lie in [0, 1), got {self.momentum}")
        if self.nesterov and (self.optimizer != "sgd" or self.momentum == 0):
            raise ValueError(
                "nesterov needs optimizer 'sgd' with momentum > 0, got optimizer "
                f"{self.optimizer!r} with momentum {self.momentum}"
            )

    def regime_label(self, n_train: int) -> str:
        """The run's regime: ``regime``, else ``"B<batch size in examples>"``.

        Examples:
            >>> TrainConfig(batch_size="10%").regime_label(4000)
            'B400'
        """
        return self.regime or f"B{resolve_batch_size(self.batch_size, n_train)}"

    @property
    def milestone_epochs(self) -> tuple[int, ...]:
        """The milestones as sorted epoch indices (from ``milestones`` or the fractions).

        Raises:
            ValueError: For invalid milestones (see
                :func:`flatness.zoo.schedules.milestone_epochs`).
        """
        return milestone_epochs(self.milestones, self.milestone_fractions, self.epochs)

    def to_dict(self) -> dict[str, Any]:
        """The settings as plain types (``None`` settings are left out)."""
        out = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if value is None:
                continue
            out[f.name] = list(value) if isinstance(value, tuple) else value
        return out

    @classmethod
    def from_dict(cls, settings: Mapping[str, Any]) -> TrainConfig:
        """Build a config from plain settings (e.g. a sweep table or checkpoint metadata).

        Raises:
            TypeError: If a key is not a setting.
        """
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(settings) - names)
        if unknown:
            raise TypeError(f"unknown training settings {unknown}; known are {sorted(names)}")
        values = dict(settings)
        for key in ("milestones", "milestone_fractions"):
            if key in values:
                values[key] = tuple(values[key])
        return cls(**values)


def resolve_batch_size(spec: int | str, n_train: int) -> int:
    """Turn a batch size or a percentage of the training set into a number of examples.

    Examples:
        >>> resolve_batch_size("10%", 4000), resolve_batch_size(64, 4000)
        (400, 64)
    """
    if isinstance(spec, str) and spec.strip().endswith("%"):
        size = round(float(spec.strip()[:-1]) / 100 * n_train)
    else:
        size = int(spec)
    if not 1 <= size <= n_train:
        raise ValueError(
            f"batch size {spec!r} gives {size} examples; it must lie in [1, {n_train}] "
            "(the training set)"
        )
    return size
