r"""Learning-rate and batch-size schedules of a training run, epoch by epoch.

:func:`scheduled` gives the learning rate and batch size at a position in training
(in epochs; a fraction of an epoch only matters during a warm-up). Every schedule
except ``"constant"`` changes something at the *milestones*: epochs (``milestones``,
the 0-based index of the first epoch that sees the change) or fractions of the
epoch cap (``milestone_fractions``, milestone :math:`\lceil f \cdot \mathrm{epochs}\rceil`).
With :math:`k` milestones passed, :math:`\eta_0` the configured ``lr``, :math:`B_0`
the configured ``batch_size``, :math:`\gamma` the ``factor`` and :math:`B_{\max}`
the cap ``⌊max_batch_fraction · n_train⌋``:

``"constant"``
    :math:`\eta = \eta_0,\ B = B_0`.
``"step"``
    Step decay: :math:`\eta = \eta_0 / \gamma^k,\ B = B_0`.
``"batch_increase"``
    Smith, Kindermans, Ying & Le (ICLR 2018), "Don't decay the learning rate,
    increase the batch size", including their hybrid: :math:`B = \min(B_0\gamma^k,
    B_{\max})` and :math:`\eta = \eta_0 B / (B_0 \gamma^k)`, so the learning rate stays
    :math:`\eta_0` while the batch can grow and decays by the rest of the factor once
    the batch is capped; :math:`\eta/B` follows ``"step"`` at every epoch.
``"constant_noise"``
    The SGD noise scale :math:`g \approx \eta N / B` (Smith & Le, ICLR 2018) held
    constant: :math:`B = \min(B_0\gamma^k, B_{\max})` and :math:`\eta = \eta_0 B / B_0`.
``"linear_scaling"``
    Goyal et al. (2017), "Accurate, Large Minibatch SGD": the learning rate
    :math:`\eta_0` is tuned for ``reference_batch_size`` :math:`B_r` and scaled to
    :math:`\hat\eta = \eta_0 B_0 / B_r`, reached by a linear warm-up from
    :math:`\eta_0` over ``warmup_epochs`` (updated at every step, as in the paper),
    then step decay :math:`\hat\eta / \gamma^k` at the milestones; :math:`B = B_0`.

The batch size only changes at epoch boundaries (an epoch is one pass over the
shuffled training set in full batches).
"""

from __future__ import annotations

import math
from typing import Protocol


class ScheduleSettings(Protocol):
    """The settings a schedule reads (a :class:`~flatness.zoo.TrainConfig` has them all)."""

    @property
    def schedule(self) -> str: ...
    @property
    def lr(self) -> float: ...
    @property
    def factor(self) -> float: ...
    @property
    def milestone_epochs(self) -> tuple[int, ...]: ...
    @property
    def max_batch_fraction(self) -> float: ...
    @property
    def warmup_epochs(self) -> float: ...
    @property
    def reference_batch_size(self) -> int | None: ...


SCHEDULES = ("constant", "step", "batch_increase", "constant_noise", "linear_scaling")
"""The schedule names :class:`~flatness.zoo.TrainConfig` accepts."""

GROWING_BATCH = ("batch_increase", "constant_noise")
"""Schedules whose batch size grows at the milestones (capped by ``max_batch_fraction``)."""

_EPS = 1e-9


def milestone_epochs(
    milestones: tuple[int, ...], fractions: tuple[float, ...], epochs: int | None
) -> tuple[int, ...]:
    """The milestones as epoch indices, from epochs or from fractions of the epoch cap.

    Args:
        milestones: Epoch indices (the first epoch, 0-based, that sees the change).
        fractions: Fractions of ``epochs`` in (0, 1); milestone ``ceil(f * epochs)``.
        epochs: The epoch cap (needed with ``fractions``).

    Returns:
        The sorted epoch indices.

    Raises:
        ValueError: If both kinds are given, a fraction lies outside (0, 1), fractions
            come without an epoch cap, or a milestone is negative or repeated.

    Examples:
        >>> milestone_epochs((), (0.5, 0.75), 10), milestone_epochs((3, 1), (), None)
        ((5, 8), (1, 3))
    """
    if milestones and fractions:
        raise ValueError("give milestones (epochs) or milestone_fractions, not both")
    if fractions:
        bad = [f for f in fractions if not 0 < f < 1]
        if bad:
            raise ValueError(f"milestone_fractions must lie in (0, 1), got {bad}")
        if epochs is None:
            raise ValueError("milestone_fractions are fractions of epochs: give epochs")
        found = tuple(math.ceil(f * epochs - _EPS) for f in fractions)
    else:
        found = tuple(int(m) for m in milestones)
    if any(m < 0 for m in found):
        raise ValueError(f"milestones must be epochs >= 0, got {list(found)}")
    if len(set(found)) != len(found):
        raise ValueError(
            f"milestones must differ (each applies the factor once), got {list(found)}"
            + (f" from milestone_fractions {list(fractions)}" if fractions else "")
        )
    return tuple(sorted(found))


def max_batch(config: ScheduleSettings, n_train: int) -> int:
    """The largest batch a growing-batch schedule reaches: ``⌊max_batch_fraction · n_train⌋``.

    Examples:
        >>> from flatness.zoo.config import TrainConfig
        >>> max_batch(TrainConfig(max_batch_fraction=0.1), 4000)
        400
    """
    return max(1, math.floor(round(config.max_batch_fraction * n_train, 9)))


def scheduled(
    config: ScheduleSettings, epoch: float, base_batch: int, n_train: int
) -> tuple[float, int]:
    """Learning rate and batch size at a position in training under the config's schedule.

    Args:
        config: The run's settings (schedule, lr, factor, milestones, ...).
        epoch: Epochs done so far (0-based epoch index; a fraction of an epoch moves
            only a warm-up).
        base_batch: The configured batch size in examples.
        n_train: Training examples.

    Returns:
        ``(learning rate, batch size)``.

    Raises:
        ValueError: If a growing-batch schedule starts above its cap.

    Examples:
        >>> from flatness.zoo.config import TrainConfig
        >>> cfg = TrainConfig(schedule="batch_increase", milestones=(2, 4), factor=5.0, lr=0.1)
        >>> [scheduled(cfg, e, 10, 100) for e in (0, 2, 4)]
        [(0.1, 10), (0.1, 50), (0.04, 100)]
    """
    passed = sum(1 for m in config.milestone_epochs if math.floor(epoch) >= m)
    scale = config.factor**passed
    if config.schedule == "step":
        return config.lr / scale, base_batch
    if config.schedule in GROWING_BATCH:
        cap = max_batch(config, n_train)
        if base_batch > cap:
            raise ValueError(
                f"batch_size {base_batch} exceeds the cap of schedule {config.schedule!r}: "
                f"max_batch_fraction {config.max_batch_fraction} of {n_train} training "
                f"examples is {cap}; raise max_batch_fraction or lower batch_size"
            )
        wanted = base_batch * scale
        batch = min(round(wanted), cap)
        if config.schedule == "batch_increase":
            return config.lr * batch / wanted, batch
        return config.lr * batch / base_batch, batch
    if config.schedule == "linear_scaling":
        assert config.reference_batch_size is not None  # checked by TrainConfig
        peak = config.lr * base_batch / config.reference_batch_size
        if epoch < config.warmup_epochs:
            return config.lr + (peak - config.lr) * epoch / config.warmup_epochs, base_batch
        return peak / scale, base_batch
    return config.lr, base_batch
