"""From a target to an operator: an Objective's Hessian operator, or the caller's own.

The curvature estimators take a :data:`~flatness.curvature.linear_operator.Target`: an
:class:`~flatness.curvature.objective.Objective` or any
:class:`~flatness.curvature.linear_operator.SymmetricOperator`. :func:`as_operator` and
:func:`operator_for` build a :class:`~flatness.curvature.hessian.HessianOperator` for an
Objective (and close it after the call); :func:`operator_choices` and
:func:`hessian_gradient_equivalents` read what a result records of the operator. The
operator contract (:class:`SymmetricOperator`, :class:`DenseOperator`, :func:`to_scipy`)
lives in :mod:`flatness.curvature.linear_operator` and stays importable from here.

Vectors are 1-D tensors of length ``dim`` (blocks are ``(dim, k)``) on the operator's
device and dtype; nothing here assumes CPU or CUDA.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from flatness.curvature.hessian import HessianOperator
from flatness.curvature.linear_operator import DenseOperator, SymmetricOperator, Target, to_scipy
from flatness.curvature.objective import Objective
from flatness.curvature.options import HessianKeywords, HessianOptions, resolve_hessian_options
from flatness.results import gradient_equivalents

if TYPE_CHECKING:
    from typing_extensions import Unpack

__all__ = [
    "DenseOperator",
    "SymmetricOperator",
    "Target",
    "as_operator",
    "hessian_gradient_equivalents",
    "operator_choices",
    "operator_for",
    "to_scipy",
]


def as_operator(
    target: Target,
    hessian: HessianOptions | None = None,
    **legacy: Unpack[HessianKeywords],
) -> tuple[SymmetricOperator, bool]:
    """Return ``(operator, owned)`` for an Objective or an existing operator.

    An :class:`~flatness.curvature.objective.Objective` becomes a fresh
    :class:`~flatness.curvature.hessian.HessianOperator` built with ``hessian``
    (``owned=True``: the caller must ``close()`` it to free retained graphs); an object
    that already satisfies :class:`SymmetricOperator` is returned as is (``owned=False``).

    Args:
        target: An Objective or a symmetric operator.
        hessian: How to multiply an Objective's Hessian (default
            :class:`~flatness.curvature.options.HessianOptions`).
        **legacy: Deprecated: the fields of ``hessian`` as loose keywords.

    Returns:
        The operator and whether it was built here.

    Raises:
        TypeError: If ``target`` is neither, or Hessian options come with an operator.
    """
    options = resolve_hessian_options(hessian, legacy)
    if isinstance(target, Objective):
        return HessianOperator.from_options(target, options), True
    if options is not None:
        raise TypeError(
            f"Hessian options {options} apply to an Objective, "
            f"not to an existing operator {type(target).__name__}"
        )
    if isinstance(target, SymmetricOperator):
        return target, False
    raise TypeError(
        f"expected a flatness.Objective or an operator with dim/matvec/matmat, "
        f"got {type(target).__name__}"
    )


@contextmanager
def operator_for(
    target: Target,
    hessian: HessianOptions | None = None,
    **legacy: Unpack[HessianKeywords],
) -> Iterator[SymmetricOperator]:
    """:func:`as_operator` as a context: an operator built here is closed on exit.

    Args:
        target: An Objective or a symmetric operator.
        hessian: How to multiply an Objective's Hessian.
        **legacy: Deprecated: the fields of ``hessian`` as loose keywords.

    Yields:
        The operator.

    Raises:
        TypeError: As :func:`as_operator`.

    Examples:
        >>> import torch
        >>> with operator_for(DenseOperator(torch.eye(3))) as op:
        ...     op.dim
        3
    """
    options = resolve_hessian_options(hessian, legacy, stacklevel=4)
    op, owned = as_operator(target, hessian=options)
    try:
        yield op
    finally:
        close = getattr(op, "close", None)
        if owned and callable(close):
            close()


def operator_choices(op: SymmetricOperator) -> dict[str, Any]:
    """The choices of ``op`` that change the last bits of its products, for a result.

    Returns:
        A copy of ``op.numerics`` for an operator that reports them (a
        :class:`~flatness.curvature.hessian.HessianOperator`: strategy, retained
        batches, fallback, vectorized blocks, threads, ``deterministic``); ``{}`` for
        others.

    Examples:
        >>> import torch
        >>> operator_choices(DenseOperator(torch.eye(2)))
        {}
    """
    numerics = getattr(op, "numerics", None)
    return dict(numerics) if isinstance(numerics, Mapping) else {}


def hessian_gradient_equivalents(op: SymmetricOperator, matvecs: int) -> float:
    """The cost of ``matvecs`` products with ``op`` in full gradients.

    A Hessian-vector product of a model costs about two gradients
    (:data:`~flatness.results.COST_HVP`); a product with a plain matrix (a
    :class:`DenseOperator`, a user's operator) is no gradient at all.

    Returns:
        ``COST_HVP * matvecs`` for a :class:`~flatness.curvature.hessian.HessianOperator`,
        NaN for any other operator.

    Examples:
        >>> import torch
        >>> hessian_gradient_equivalents(DenseOperator(torch.eye(2)), 10)
        nan
    """
    if isinstance(op, HessianOperator):
        return gradient_equivalents(matvecs=matvecs)
    return math.nan
