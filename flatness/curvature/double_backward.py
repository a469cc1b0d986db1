"""The second backward pass of a Hessian-vector product (Pearlmutter 1994).

With the gradient :math:`g = \\nabla_\\theta \\ell` computed with ``create_graph=True``,
:math:`H v = \\nabla_\\theta \\langle g, v \\rangle`: one more backward through the
gradient's graph. :func:`second_derivative` takes it (vectorized over k vectors when
asked), treating missing and constant gradients as zero, and turns autograd's
"derivative ... is not implemented" into one clear
:class:`~flatness.curvature.attention.SecondOrderError`.

References:
    B. A. Pearlmutter (1994). Fast exact multiplication by the Hessian. Neural
    Computation 6(1), 147–160.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import Tensor

from flatness.curvature.attention import second_order_errors

__all__ = ["second_derivative", "zeros_for_none"]


def zeros_for_none(grads: Sequence[Tensor | None], like: Mapping[str, Tensor]) -> list[Tensor]:
    """The gradients, zeros in place of ``None`` (parameters the loss does not use).

    Returns:
        One tensor per entry of ``like``.
    """
    return [
        torch.zeros_like(t) if g is None else g for g, t in zip(grads, like.values(), strict=True)
    ]


def second_derivative(
    grads: Sequence[Tensor | None],
    params: Sequence[Tensor],
    v_parts: Sequence[Tensor],
    *,
    retain_graph: bool = False,
    batched: bool = False,
) -> list[Tensor]:
    """Differentiate ``<grads, v>`` with respect to ``params`` (the second backward).

    Gradients that are ``None`` or constant (a parameter the loss ignores, or a
    gradient that no longer depends on the parameters) contribute zero, as they do to
    the Hessian. With ``batched=True`` each ``v_parts[i]`` has a leading dimension of
    k vectors and the products are vectorized with ``is_grads_batched``.

    Returns:
        One tensor per parameter (with the leading dimension k when batched).

    Raises:
        SecondOrderError: If an operation of the forward has no double backward (see
            :func:`~flatness.curvature.attention.explain_second_order_failure`).
    """
    live = [g for g in grads if g is not None and g.requires_grad]
    parts = [v for g, v in zip(grads, v_parts, strict=True) if g is not None and g.requires_grad]
    lead = tuple(v_parts[0].shape[:1]) if batched else ()
    res: Sequence[Tensor | None] = [None] * len(params)
    if live:
        with second_order_errors("double_backward"):
            res = torch.autograd.grad(
                live,
                params,
                grad_outputs=parts,
                retain_graph=retain_graph,
                allow_unused=True,
                is_grads_batched=batched,
            )
    return [
        torch.zeros(*lead, *p.shape, dtype=p.dtype, device=p.device) if r is None else r
        for p, r in zip(params, res, strict=True)
    ]
