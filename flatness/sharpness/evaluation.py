"""The mean loss and accuracy of a model over fixed ``(x, y)`` batches.

Shared by the landscape functions (:mod:`flatness.sharpness.interpolation`,
:mod:`flatness.sharpness.landscape`), which evaluate many points of parameter space
with the same batches. The loss is accumulated in the same order as
:meth:`flatness.Objective.value`, so the two agree exactly.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F  # noqa: F401  (used by the doctest)
from torch import Tensor, nn  # noqa: F401  (nn is used by the doctest)

from flatness.curvature.objective import Batch, LossFn, batch_size_of


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


def xy_pair(batch: Batch, what: str) -> tuple[Any, Any]:
    """Split an ``(inputs, targets)`` batch; a clear error names ``what`` otherwise."""
    if not (isinstance(batch, tuple | list) and len(batch) == 2):
        raise ValueError(
            f"{what} must be an (inputs, targets) pair or a list of (inputs, targets) "
            f"batches; got a batch of type {type(batch).__name__}"
        )
    return batch[0], batch[1]


def mean_loss_and_accuracy(
    model_fn: Callable[..., Any],
    batches: Sequence[Batch],
    loss_fn: LossFn,
    *,
    what: str = "data",
) -> tuple[Tensor, float | None]:
    r"""The example-weighted mean loss and the accuracy of a model over ``(x, y)`` batches.

    .. math::

        \bar\ell = \sum_b \frac{n_b}{N}\, \bar\ell_b, \qquad
        \mathrm{acc} = \frac{1}{N} \sum_i [\arg\max_c\, o_{ic} = y_i],

    accumulated in the same order as :meth:`flatness.Objective.value`, so the loss equals
    it exactly for the same model, batches and loss.

    Args:
        model_fn: Calls the model (already in the wanted mode).
        batches: ``(inputs, targets)`` batches.
        loss_fn: ``loss_fn(output, target)`` returning the mean loss of a batch.
        what: How to name the data in errors.

    Returns:
        The mean loss (a 0-d tensor) and the accuracy, or ``None`` when the outputs are
        not ``(n, classes)`` scores with integer labels ``(n,)`` in every batch.

    Examples:
        >>> net = nn.Linear(2, 3)
        >>> X, y = torch.randn(5, 2), torch.randint(0, 3, (5,))
        >>> loss, acc = mean_loss_and_accuracy(net, [(X[:3], y[:3]), (X[3:], y[3:])],
        ...                                    F.cross_entropy)
        >>> bool(torch.isclose(loss, F.cross_entropy(net(X), y))), 0.0 <= acc <= 1.0
        (True, True)
    """
    sizes = [batch_size_of(b) for b in batches]
    total_n = sum(sizes)
    if total_n == 0:
        raise ValueError(f"{what} holds no examples")
    total: Tensor | None = None
    correct = 0
    labelled = True
    with torch.no_grad():
        for n, batch in zip(sizes, batches, strict=True):
            x, y = xy_pair(batch, what)
            out = model_fn(x)
            loss = loss_fn(out, y)
            if total is None:
                total = torch.zeros((), device=loss.device, dtype=loss.dtype)
            total = total + (n / total_n) * loss
            if labelled and _class_labels(out, y):
                correct += int((out.argmax(dim=-1) == y).sum())
            else:
                labelled = False
    assert total is not None
    return total, (correct / total_n if labelled else None)
