r"""BatchNorm running statistics: telling when they are stale, and recomputing them.

A network is analysed in eval mode, where BatchNorm normalizes with the running
means and variances kept during training. After a few steps with a large learning
rate, or when the weights changed without the statistics (weight averaging, pruning,
loading weights into a fresh model), those statistics no longer describe the
activations, and the eval-mode loss is far above the loss the same weights reach with
each batch's own statistics (a ResNet-18 after a few steps: 69.6 against 1.32). Every
curvature number is then taken at a point that is not the trained network.

:func:`batchnorm_check` compares the two losses on one batch;
:func:`recompute_batchnorm` resets the statistics and averages them over data, with
the normalization layers alone in training mode and ``momentum=None`` (a cumulative
average: the plain mean of the batches' statistics, as after stochastic weight
averaging, Izmailov et al. 2018), on a copy of the model unless asked otherwise.

References:
    S. Ioffe and C. Szegedy (2015). Batch normalization: Accelerating deep network
    training by reducing internal covariate shift. ICML.

    P. Izmailov, D. Podoprikhin, T. Garipov, D. Vetrov and A. G. Wilson (2018).
    Averaging weights leads to wider optima and better generalization. UAI.
"""

from __future__ import annotations

import copy
import dataclasses
import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.modules.batchnorm import _NormBase

from flatness.curvature.batches import Batch, batch_size_of, move_batch, split_batches
from flatness.curvature.objective import BatchLossFn, LossFn, Objective

__all__ = [
    "STALE_GAP",
    "STALE_RATIO",
    "BatchNormCheck",
    "StaleBatchNormWarning",
    "batchnorm_check",
    "norm_layers",
    "recompute_batchnorm",
    "recompute_running_statistics",
]

STALE_RATIO = 2.0
"""Stale when the eval-mode loss is more than this many times the train-mode loss ..."""

STALE_GAP = 0.5
"""... and more than this many nats above it (both must hold)."""


class StaleBatchNormWarning(UserWarning):
    """A model's BatchNorm running statistics do not describe its activations."""


def norm_layers(model: nn.Module) -> list[tuple[str, _NormBase]]:
    """The normalization layers of ``model`` that track running statistics.

    Returns:
        ``(name, layer)`` pairs in the order of ``named_modules``.

    Examples:
        >>> [n for n, _ in norm_layers(nn.Sequential(nn.Linear(2, 2), nn.BatchNorm1d(2)))]
        ['1']
    """
    return [
        (name, m)
        for name, m in model.named_modules()
        if isinstance(m, _NormBase) and m.track_running_stats
    ]


def _forward(model: nn.Module, batch: Batch) -> Any:
    """Call the model on a batch's inputs: ``model(**batch)`` for a dict, else ``model(x)``."""
    if isinstance(batch, Mapping):
        return model(**batch)
    if isinstance(batch, tuple | list):
        return model(batch[0])
    return model(batch)


def recompute_running_statistics(model: nn.Module, batches: Sequence[Batch]) -> None:
    """Reset the running statistics of ``model`` and average them over ``batches``, in place.

    The normalization layers alone run in training mode with momentum ``None``
    (cumulative averages: every batch counts alike); no gradients are recorded, and
    the model is left in ``eval()`` mode with its layers' momenta restored.

    Args:
        model: The network (changed in place).
        batches: Batches on the model's device: ``(inputs, targets)`` pairs (the
            inputs are fed), dicts of keyword inputs or input tensors.
    """
    layers = [m for _, m in norm_layers(model)]
    momenta = [m.momentum for m in layers]
    model.eval()
    for m in layers:
        m.reset_running_stats()
        m.momentum = None  # cumulative moving average: the plain mean over batches
        m.train()
    try:
        with torch.no_grad():
            for batch in batches:
                _forward(model, batch)
    finally:
        for m, momentum in zip(layers, momenta, strict=True):
            m.momentum = momentum
        model.eval()


def recompute_batchnorm(
    model: nn.Module,
    data: Any,
    *,
    batch_size: int = 1024,
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
    inplace: bool = False,
) -> nn.Module:
    """A model whose BatchNorm running statistics are recomputed on ``data``.

    Args:
        model: The network; left unchanged unless ``inplace``.
        data: What an :class:`~flatness.curvature.objective.Objective` takes: an
            ``(inputs, targets)`` pair (split into batches of ``batch_size``), a list of
            batches or a DataLoader.
        batch_size: Examples per forward pass for a tensor pair. BatchNorm normalizes
            with each batch's statistics while they are gathered, so very small batches
            give noisier averages.
        device: Where to run (default: the model's device).
        dtype: Floating precision of the inputs (default: the model's).
        inplace: Change ``model`` itself instead of a copy.

    Returns:
        The model (a deep copy unless ``inplace``) with recomputed statistics, in eval
        mode; a model without BatchNorm is returned as it is (copied unless
        ``inplace``).

    Raises:
        ValueError: If ``data`` holds no example.

    Examples:
        >>> _ = torch.manual_seed(0)
        >>> net = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))
        >>> X = 5 + torch.randn(64, 3)
        >>> fresh = recompute_batchnorm(net, (X, torch.zeros(64)))
        >>> torch.allclose(fresh[1].running_mean, net[0](X).mean(0), atol=1e-5)
        True
        >>> net[1].running_mean.abs().max().item()  # the original is untouched
        0.0
    """
    target = model if inplace else copy.deepcopy(model)
    first = next(iter(target.parameters()), None)
    dev = (
        torch.device(device)
        if device is not None
        else (first.device if first is not None else torch.device("cpu"))
    )
    dt = dtype if dtype is not None else (first.dtype if first is not None else None)
    batches = [move_batch(b, dev, dt) for b in split_batches(data, batch_size)]
    batches = [b for b in batches if batch_size_of(b) > 0]
    if not batches:
        raise ValueError("recompute_batchnorm: the data holds no example")
    recompute_running_statistics(target, batches)
    return target


@dataclasses.dataclass(frozen=True)
class BatchNormCheck:
    """The loss of one batch in eval mode (running statistics) and in training mode.

    Attributes:
        eval_loss: With the running statistics (how the model is analysed).
        train_mode_loss: With the batch's own statistics.
        examples: The batch's number of examples.
    """

    eval_loss: float
    train_mode_loss: float
    examples: int

    @property
    def stale(self) -> bool:
        """Whether the running statistics look stale: the eval-mode loss is more than
        :data:`STALE_RATIO` times the train-mode loss and more than :data:`STALE_GAP`
        nats above it (a NaN eval-mode loss against a finite one counts as stale)."""
        if math.isnan(self.eval_loss):
            return math.isfinite(self.train_mode_loss)
        return (
            self.eval_loss > STALE_RATIO * self.train_mode_loss
            and self.eval_loss - self.train_mode_loss > STALE_GAP
        )

    def to_dict(self) -> dict[str, Any]:
        """The check as plain data (what a run's metadata keeps).

        Returns:
            ``eval_loss``, ``train_mode_loss``, ``examples`` and ``stale``.
        """
        return {**dataclasses.asdict(self), "stale": self.stale}


def batchnorm_check(
    model: nn.Module,
    batch: Batch,
    *,
    loss_fn: LossFn | None = F.cross_entropy,
    batch_loss: BatchLossFn | None = None,
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
) -> BatchNormCheck:
    """Compare the eval-mode loss of one batch with its training-mode loss.

    Neither the model nor its running statistics change (the training-mode pass runs
    on copies of the buffers). Dropout is on in the training-mode pass, which adds a
    little noise: the rule of :attr:`BatchNormCheck.stale` looks for a large gap.

    Args:
        model: The network.
        batch: One batch (the first of the scoring data).
        loss_fn: ``loss_fn(output, target)`` for ``(x, y)`` batches.
        batch_loss: Instead, ``batch_loss(model_fn, batch)``.
        device: Where to evaluate (default: the model's device).
        dtype: Floating precision (default: the model's).

    Returns:
        The two losses.

    Examples:
        >>> _ = torch.manual_seed(0)
        >>> net = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Linear(4, 2))
        >>> X, y = 100 + 50 * torch.randn(32, 3), torch.randint(0, 2, (32,))
        >>> batchnorm_check(net, (X, y)).stale  # the statistics never saw these inputs
        True
        >>> batchnorm_check(recompute_batchnorm(net, (X, y)), (X, y)).stale
        False
    """
    kwargs: dict[str, Any] = {
        "loss_fn": loss_fn,
        "batch_loss": batch_loss,
        "device": device,
        "dtype": dtype,
    }
    losses = [
        float(Objective(model, [batch], train_mode=mode, **kwargs).value())
        for mode in (False, True)
    ]
    return BatchNormCheck(losses[0], losses[1], batch_size_of(batch))
