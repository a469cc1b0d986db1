r"""Merging an objective's batches into one, where that changes nothing but the cost.

An :class:`~flatness.curvature.objective.Objective` splits its data into batches so
that no pass holds more than a batch; its value is the weighted mean of the batch means,

.. math::
    f(\theta) = \sum_b \frac{n_b}{N}\,\bar\ell_b(\theta),

exactly the mean loss of one batch holding all ``N`` examples, *when* each batch mean
is a mean of per-example losses that do not see the other examples of the batch. Then
a Hessian operator may multiply through one graph of all the data instead of one per
batch: the same function and the same products up to rounding, with a fixed Python
and autograd overhead per product paid once instead of once per batch (on a 3.4k
parameter MLP with 4000 examples, four batches made a product 1.6× slower than one).

:func:`merge_refusal` says when that holds: ``(inputs, targets)`` tensor batches, a
plain ``loss_fn`` (the Objective's contract: the *mean* loss of a batch), weights that
count examples, and eval mode with no layer that normalizes over the batch in eval
mode (a BatchNorm without running statistics). A ``batch_loss`` hook, dict batches,
token-weighted losses and training mode are never merged: nothing tells that their
batches are independent. :func:`merged_batch` concatenates the batches.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from flatness.curvature.objective import Objective

__all__ = ["merge_refusal", "merged_batch"]


def _pair(batch: Any) -> tuple[Tensor, Tensor] | None:
    if isinstance(batch, tuple | list) and len(batch) == 2:
        x, y = batch
        if isinstance(x, Tensor) and isinstance(y, Tensor) and x.ndim >= 1 and y.ndim >= 1:
            return x, y
    return None


def merge_refusal(objective: Objective) -> str | None:
    """Why ``objective``'s batches may not be merged into one, or ``None`` if they may.

    Returns:
        A short reason (for the operator's record), or ``None`` when merging is exact.

    Examples:
        >>> net = nn.Sequential(nn.Linear(3, 2))
        >>> obj = Objective(net, (torch.randn(10, 3), torch.randint(0, 2, (10,))), batch_size=4)
        >>> merge_refusal(obj) is None
        True
        >>> merge_refusal(Objective(net, (torch.randn(10, 3), torch.randint(0, 2, (10,)))))
        'one batch'
    """
    host = getattr(objective.batches, "host", objective.batches)
    if len(host) < 2:
        return "one batch"
    if objective.batch_loss is not None or objective.loss_fn is None:
        return "a batch_loss or the model's own loss"
    if objective.train_mode:
        return "training mode"
    if getattr(objective, "weighted_by", "examples") != "examples":
        return "weights that are not example counts"
    pairs = [_pair(b) for b in host]
    if any(p is None for p in pairs):
        return "batches that are not (inputs, targets) tensors"
    first = pairs[0]
    assert first is not None
    for p in pairs:
        assert p is not None
        for t, t0 in zip(p, first, strict=True):
            if t.shape[1:] != t0.shape[1:] or t.dtype != t0.dtype or t.device != t0.device:
                return "batches of different shapes"
    for module in objective.model.modules():
        if isinstance(module, nn.modules.batchnorm._NormBase) and (
            not module.track_running_stats or module.running_mean is None
        ):
            return "a BatchNorm without running statistics"
    return None


def merged_batch(batches: Sequence[Any]) -> tuple[Tensor, Tensor]:
    """One ``(inputs, targets)`` batch holding all of ``batches``, in order.

    Returns:
        The concatenated inputs and targets.

    Raises:
        ValueError: If a batch is not an ``(inputs, targets)`` tensor pair.
    """
    pairs = [_pair(b) for b in batches]
    if any(p is None for p in pairs):
        raise ValueError("only (inputs, targets) tensor batches can be merged")
    xs = [p[0] for p in pairs if p is not None]
    ys = [p[1] for p in pairs if p is not None]
    return torch.cat(xs), torch.cat(ys)
