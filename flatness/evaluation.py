r"""The mean loss and accuracy of a model over fixed data: one implementation.

Training (:mod:`flatness.zoo.train`), scoring (:mod:`flatness.pipeline.scorer`),
tracking and the landscapes (:mod:`flatness.sharpness.interpolation`,
:mod:`flatness.sharpness.landscape`) all ask the same question of a model: its mean
loss and its accuracy on a data set. They ask it here. The loss is the weighted mean of
the batch means,

.. math::

    \bar\ell = \sum_b \frac{n_b}{N}\, \bar\ell_b, \qquad
    \mathrm{acc} = \frac{1}{N_{ex}} \sum_i [\arg\max_c\, o_{ic} = y_i],

with :math:`n_b` the examples of batch :math:`b`, or the weight its loss declares (the
tokens of a language model's loss, :class:`~flatness.losses.WeightedBatchLoss`), taken
the way :mod:`flatness.losses` takes it (``loss_fn`` of ``(x, y)`` pairs or dict
batches, Hugging Face outputs, or a ``batch_loss`` hook) and accumulated in the same
order and dtype as :meth:`flatness.Objective.value`, so the two agree exactly for the
same model, batches and loss. Under a process group, a data-parallel objective's
``reduce`` completes each rank's partial sums (``reduce=``). This module depends only on
:mod:`flatness.curvature.batches` and :mod:`flatness.losses`, never on ``zoo`` or the
pipeline, so every layer may import it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from flatness.curvature.batches import Batch, batch_size_of, map_tensors
from flatness.losses import (
    BatchLossFn,
    LossFn,
    batch_weight,
    default_batch_loss,
    model_logits,
)

__all__ = ["evaluate", "mean_loss_and_accuracy", "xy_pair"]


def _class_labels(out: Any, y: Any) -> bool:
    return (
        isinstance(out, Tensor)
        and isinstance(y, Tensor)
        and out.ndim == 2
        and y.ndim == 1
        and out.shape[0] == y.shape[0]
        and not y.is_floating_point()
        and not y.is_complex()
        and y.dtype != torch.bool
    )


def _targets(batch: Batch) -> Any:
    if isinstance(batch, tuple | list) and len(batch) == 2:
        return batch[1]
    return batch.get("labels") if isinstance(batch, Mapping) else None


def _scores(outputs: list[Any]) -> Tensor | None:
    """The logits of the batch's one model call (``None`` for several calls or none)."""
    if len(outputs) != 1:
        return None
    try:
        return model_logits(outputs[0])
    except TypeError:
        return None


def xy_pair(batch: Batch, what: str) -> tuple[Any, Any]:
    """Split an ``(inputs, targets)`` batch.

    Args:
        batch: The batch.
        what: How to name the data in the error message.

    Returns:
        ``(inputs, targets)``.

    Raises:
        ValueError: If ``batch`` is not a pair.

    Examples:
        >>> xy_pair((1, 2), "train")
        (1, 2)
    """
    if not (isinstance(batch, tuple | list) and len(batch) == 2):
        raise ValueError(
            f"{what} must be an (inputs, targets) pair or a list of (inputs, targets) "
            f"batches; got a batch of type {type(batch).__name__}"
        )
    return batch[0], batch[1]


def mean_loss_and_accuracy(
    model_fn: Callable[..., Any],
    batches: Iterable[Batch],
    loss_fn: LossFn | None,
    *,
    batch_loss: BatchLossFn | None = None,
    what: str = "data",
    reduce: Callable[[Tensor], Tensor] | None = None,
) -> tuple[Tensor, float | None]:
    r"""The weighted mean loss and the accuracy of a model over batches.

    Accumulated in the same order as :meth:`flatness.Objective.value` (see the module
    doc), so the loss equals it exactly for the same model, batches and loss. No
    gradients are recorded; the model is called as it is (set its mode first).

    Args:
        model_fn: Calls the model (already in the wanted mode).
        batches: ``(inputs, targets)`` batches, dicts of model inputs, or what
            ``batch_loss`` takes.
        loss_fn: ``loss_fn(output, target)`` returning the mean loss of a batch
            (``None``: a dict batch's model's own ``.loss``; see
            :func:`~flatness.losses.default_batch_loss`).
        batch_loss: A ``batch_loss(model_fn, batch)`` hook instead of ``loss_fn``
            (e.g. :data:`flatness.causal_lm_loss`, whose batches weigh their tokens).
        what: How to name the data in errors.
        reduce: Under a process group, the sum over the ranks that completes a partial
            sum in place (a data-parallel objective's
            :meth:`~flatness.Objective.reduce`): ``batches`` are then this rank's
            shard, the weights are taken over all ranks' total weight and the loss,
            the correct predictions and the examples are summed over the ranks (two
            collectives), so every rank gets the values of one process on all the
            data (the loss equals :meth:`~flatness.Objective.value`'s). ``None``: the
            batches are all the data.

    Returns:
        The mean loss (a 0-d tensor) and the accuracy, or ``None`` when the outputs are
        not ``(n, classes)`` scores with integer labels ``(n,)`` (the targets of a pair,
        a dict batch's ``labels``) in every batch (of every rank).

    Raises:
        ValueError: If the batches hold no examples (or no batch weighs anything; under
            a process group, on all ranks together).

    Examples:
        >>> net = nn.Linear(2, 3)
        >>> X, y = torch.randn(5, 2), torch.randint(0, 3, (5,))
        >>> loss, acc = mean_loss_and_accuracy(net, [(X[:3], y[:3]), (X[3:], y[3:])],
        ...                                    F.cross_entropy)
        >>> bool(torch.isclose(loss, F.cross_entropy(net(X), y))), 0.0 <= acc <= 1.0
        (True, True)
    """
    data = list(batches)
    sizes = [batch_size_of(b) for b in data]
    declared = [
        batch_weight(batch_loss, b) if n > 0 else 0 for b, n in zip(data, sizes, strict=True)
    ]
    counts = [n if c is None else c for n, c in zip(sizes, declared, strict=True)]
    total_w = sum(counts)
    device = torch.device("cpu")
    if reduce is not None:  # the global weight and examples, before any weighting
        device = _device_of(data)  # where the sums over the ranks are taken (nccl: the GPU)
        both = reduce(
            torch.tensor([float(total_w), float(sum(sizes))], dtype=torch.float64, device=device)
        )
        total_w, examples = int(both[0]), int(both[1])
    else:
        examples = sum(sizes)
    if examples == 0 or total_w == 0:
        raise ValueError(f"{what} holds no examples")
    outputs: list[Any] = []

    def seen(*args: Any, **kwargs: Any) -> Any:
        outputs.append(model_fn(*args, **kwargs))
        return outputs[-1]

    total: Tensor | None = None
    correct = 0
    labelled = True
    with torch.no_grad():
        for c, batch in zip(counts, data, strict=True):
            if c == 0:
                continue
            outputs.clear()
            if batch_loss is not None:
                loss = batch_loss(seen, batch)
            else:
                loss = default_batch_loss(seen, batch, loss_fn)
            if total is None:
                total = torch.zeros((), device=loss.device, dtype=loss.dtype)
            total = total + (c / total_w) * loss
            y = _targets(batch)
            out = _scores(outputs) if labelled else None
            if out is not None and _class_labels(out, y):
                correct += int((out.argmax(dim=-1) == y).sum())
            else:
                labelled = False
    if reduce is not None:
        return _reduced(reduce, total, correct, labelled, examples, device)
    assert total is not None
    return total, (correct / examples if labelled else None)


def _device_of(data: list[Batch]) -> torch.device:
    """The device of the first tensor of the batches (the CPU when there is none)."""
    found: list[torch.device] = []
    for batch in data[:1]:
        map_tensors(lambda t: found.append(t.device) or t, batch)  # type: ignore[func-returns-value]
    return found[0] if found else torch.device("cpu")


def _reduced(
    reduce: Callable[[Tensor], Tensor],
    total: Tensor | None,
    correct: int,
    labelled: bool,
    examples: int,
    device: torch.device,
) -> tuple[Tensor, float | None]:
    """Complete a rank's partial loss and counts with one sum over the ranks."""
    if total is None:  # a rank whose batches weigh nothing adds zeros
        total = torch.zeros((), dtype=torch.float64, device=device)
    counts = torch.tensor([float(correct), 0.0 if labelled else 1.0], dtype=torch.float64)
    counts = counts.to(total.device)
    if total.dtype == torch.float64:  # one collective
        both = reduce(torch.cat([total.detach().reshape(1), counts]))
        loss, counts = both[0], both[1:]
    else:  # the loss summed in its dtype, as Objective.value sums it
        loss, counts = reduce(total.detach().clone()), reduce(counts)
    accuracy = float(counts[0]) / examples if float(counts[1]) == 0 else None
    return loss, accuracy


def evaluate(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    *,
    batch_size: int = 1024,
    loss_fn: LossFn = F.cross_entropy,
) -> tuple[float, float]:
    """Mean loss and accuracy of ``model`` on ``(x, y)`` in eval mode.

    The data is split into consecutive batches of ``batch_size`` and passed to
    :func:`mean_loss_and_accuracy`; the model's training mode is restored afterwards.

    Args:
        model: The classifier.
        x: Inputs, examples along the first dimension.
        y: Integer class labels.
        batch_size: Examples per forward pass.
        loss_fn: ``loss_fn(output, target)`` returning the mean loss of a batch.

    Returns:
        ``(loss, accuracy)`` over all examples; ``(0.0, 0.0)`` for empty data, and an
        accuracy of NaN when the targets are not class labels.

    Raises:
        ValueError: If ``batch_size`` is not positive.

    Examples:
        >>> net = nn.Linear(2, 3)
        >>> X, y = torch.randn(5, 2), torch.randint(0, 3, (5,))
        >>> loss, acc = evaluate(net, X, y, batch_size=2)
        >>> abs(loss - F.cross_entropy(net(X), y).item()) < 1e-6, 0.0 <= acc <= 1.0
        (True, True)
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    if x.shape[0] == 0:
        return 0.0, 0.0
    batches = [
        (x[start : start + batch_size], y[start : start + batch_size])
        for start in range(0, x.shape[0], batch_size)
    ]
    was_training = model.training
    model.eval()
    try:
        loss, accuracy = mean_loss_and_accuracy(model, batches, loss_fn)
    finally:
        model.train(was_training)
    return float(loss), (float("nan") if accuracy is None else accuracy)
