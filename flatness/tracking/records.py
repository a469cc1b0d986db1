r"""The fields of a tracker's record: hyper-parameters, thresholds, and measures.

A record is one flat mapping per measured step (the ``tracks`` table keeps it as
JSON, :func:`flatness.load_tracks` reads it back as one row). The reports read its
fields by these names:

- hyper-parameters (:func:`hyperparameter_fields`): ``lr``, ``batch_size``,
  ``lr_over_batch`` (:math:`\eta/B`, the ratio Smith & Le 2018 and Jastrzębski et al.
  2018 tie to the noise of SGD), ``momentum``, ``optimizer`` and the stability
  threshold (:func:`stability_threshold`);
- each measure NAME (:func:`measure_fields`): ``NAME``, ``NAME_stderr``,
  ``NAME_converged`` (0/1), ``NAME_matvecs``, ``NAME_gradient_equivalents`` and
  ``NAME_seconds``.

Gradient descent on a quadratic with step size :math:`\eta` diverges along an
eigenvector whose eigenvalue exceeds :math:`2/\eta`; with heavy-ball momentum
:math:`\beta` the bound is :math:`(2 + 2\beta)/\eta` (Cohen, Kaur, Li, Kolter &
Talwalkar, ICLR 2021, "Gradient Descent on Neural Networks Typically Occurs at the
Edge of Stability", §2 and App. B). Adaptive optimizers precondition the step, so
the raw Hessian's :math:`\lambda_{\max}` is not compared with :math:`2/\eta` for them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from flatness.results import ResultContract

__all__ = [
    "ADAPTIVE_NOTE",
    "hyperparameter_fields",
    "measure_fields",
    "stability_threshold",
]

ADAPTIVE_NOTE = "2/η does not apply to adaptive optimizers"
"""The ``threshold_note`` of a record whose optimizer is not (momentum) SGD."""


def stability_threshold(lr: float | None, momentum: float = 0.0, optimizer: str = "sgd") -> float:
    r"""The largest sharpness at which (momentum) gradient descent is stable.

    Args:
        lr: The learning rate :math:`\eta`.
        momentum: The heavy-ball momentum :math:`\beta`.
        optimizer: The optimizer's name; only ``"sgd"`` has the threshold.

    Returns:
        :math:`(2 + 2\beta)/\eta`; NaN for another optimizer or without a positive
        learning rate.

    Examples:
        >>> stability_threshold(0.1), stability_threshold(0.5, momentum=0.5)
        (20.0, 6.0)
        >>> stability_threshold(0.1, optimizer="adam")
        nan
    """
    if optimizer.lower() != "sgd" or lr is None or not lr > 0:
        return math.nan
    return (2.0 + 2.0 * float(momentum)) / float(lr)


def hyperparameter_fields(
    *, lr: float | None, batch_size: int | None, momentum: float, optimizer: str
) -> dict[str, Any]:
    """The record's hyper-parameter fields.

    Returns:
        ``lr``, ``batch_size``, ``lr_over_batch``, ``momentum``, ``optimizer``,
        ``stability_threshold``, and ``threshold_note`` where the threshold does not
        apply (another optimizer than SGD). Unknown values are NaN.

    Examples:
        >>> hyperparameter_fields(lr=0.1, batch_size=10, momentum=0.0, optimizer="sgd")
        ... # doctest: +NORMALIZE_WHITESPACE
        {'lr': 0.1, 'batch_size': 10, 'lr_over_batch': 0.01, 'momentum': 0.0,
         'optimizer': 'sgd', 'stability_threshold': 20.0}
    """
    out: dict[str, Any] = {
        "lr": math.nan if lr is None else float(lr),
        "batch_size": math.nan if batch_size is None else int(batch_size),
        "lr_over_batch": math.nan if lr is None or not batch_size else float(lr) / batch_size,
        "momentum": float(momentum),
        "optimizer": optimizer,
        "stability_threshold": stability_threshold(lr, momentum, optimizer),
    }
    if optimizer.lower() != "sgd":
        out["threshold_note"] = ADAPTIVE_NOTE
    return out


def _floats(x: Any) -> list[float]:
    return [float(v) for v in x] if isinstance(x, Sequence) and not isinstance(x, str) else [x]


def measure_fields(
    name: str, result: ResultContract, components: Sequence[str] | None = None
) -> dict[str, Any]:
    """A measure's fields in a record, from its result (the result contract's names).

    Args:
        name: The measure's name.
        result: Its result.
        components: Names for the entries of a tuple ``value`` (default: ``name``,
            ``name_2``, ...); the cost fields go with the first.

    Returns:
        ``{component: value, component_stderr: ..., component_converged: 0/1}`` for
        each component, and ``name_matvecs``, ``name_gradient_equivalents``,
        ``name_seconds`` for the call.

    Examples:
        >>> from flatness.curvature.operator import DenseOperator
        >>> from flatness.curvature.eigenvalues import hessian_eigenvalues
        >>> A = DenseOperator.from_spectrum([3.0, 2.0, 1.0])
        >>> fields = measure_fields("lambda_max", hessian_eigenvalues(A, k=2),
        ...                         ["lambda_max", "lambda_2"])
        >>> round(fields["lambda_2"], 6), fields["lambda_max_converged"]
        (2.0, 1)
        >>> "lambda_max_matvecs" in fields, "lambda_2_matvecs" in fields
        (True, False)
    """
    values = _floats(result.value)
    stderrs = _floats(result.stderr)
    flags = _floats(result.converged)
    names = list(components or [name, *(f"{name}_{i + 2}" for i in range(len(values) - 1))])
    out: dict[str, Any] = {}
    for i, (component, value) in enumerate(zip(names, values, strict=True)):
        out[component] = float(value)
        out[f"{component}_stderr"] = float(stderrs[i] if len(stderrs) > 1 else stderrs[0])
        out[f"{component}_converged"] = int(bool(flags[i] if len(flags) > 1 else flags[0]))
    first = names[0]
    out[f"{first}_matvecs"] = int(result.matvecs)
    out[f"{first}_gradient_equivalents"] = float(result.gradient_equivalents)
    out[f"{first}_seconds"] = float(result.seconds)
    return out
