"""The settings of a training run, and the schedules they describe.

:class:`TrainConfig` holds everything that determines a run of
:func:`flatness.zoo.train_network`; two runs with equal configs (and the same data)
give identical weights on CPU. :func:`scheduled` gives the learning rate and batch
size of an epoch under the ``"constant"``, ``"step"`` and ``"batch_increase"``
schedules.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

OPTIMIZERS = ("adam", "sgd")
SCHEDULES = ("constant", "step", "batch_increase")


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
        lr: Initial learning rate.
        momentum: Momentum of SGD (ignored by Adam).
        weight_decay: L2 penalty of the optimizer.
        schedule: ``"constant"``, ``"step"`` or ``"batch_increase"``.
        milestones: Epochs after which the schedule applies ``factor``.
        factor: Learning-rate divisor (``"step"``) or batch-size multiplier
            (``"batch_increase"``) at each milestone; greater than 1.
        epochs: Cap on the number of epochs (``None`` for no cap).
        max_updates: Cap on the number of updates (``None`` for no cap).
        target_accuracy: Stop once the training accuracy (eval mode, full training set,
            checked after every epoch) reaches this fraction; ``None`` never stops early.
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
    weight_decay: float = 0.0
    schedule: str = "constant"
    milestones: tuple[int, ...] = ()
    factor: float = 5.0
    epochs: int | None = 100
    max_updates: int | None = None
    target_accuracy: float | None = None
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
        object.__setattr__(self, "milestones", tuple(sorted(int(m) for m in self.milestones)))

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
        if "milestones" in values:
            values["milestones"] = tuple(values["milestones"])
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


def scheduled(config: TrainConfig, epoch: int, base_batch: int, n_train: int) -> tuple[float, int]:
    """Learning rate and batch size for an epoch (0-based) under the config's schedule.

    Examples:
        >>> cfg = TrainConfig(schedule="batch_increase", milestones=(2, 4), factor=5.0, lr=0.1)
        >>> [scheduled(cfg, e, 10, 100) for e in (0, 2, 4)]
        [(0.1, 10), (0.1, 50), (0.04, 100)]
    """
    passed = sum(1 for m in config.milestones if epoch >= m)
    scale = config.factor**passed
    if config.schedule == "step":
        return config.lr / scale, base_batch
    if config.schedule == "batch_increase":
        wanted = base_batch * scale
        batch = min(round(wanted), n_train)
        return config.lr * batch / wanted, batch
    return config.lr, base_batch
