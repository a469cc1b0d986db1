r"""Projected L-BFGS over a box, on the device: Keskar's ε-sharpness in ≤ 15 gradients.

Maximizes :math:`f` over :math:`\mathcal{B} = \{y : |y_i| \le b_i\}` (minimizes
:math:`h = -f`) with the projected quasi-Newton scheme of Kim, Sra and Dhillon (2010),
whose steps are those of L-BFGS-B (Byrd, Lu, Nocedal and Zhu 1995) simplified:
a *target* point in the box, then a backtracking search on the segment towards it.
At iterate :math:`y` with gradient :math:`g = \nabla h(y)`:

1. **Binding set.** A coordinate at a face whose gradient pushes out of the box,
   :math:`(y_i = -b_i,\ g_i > 0)` or :math:`(y_i = b_i,\ g_i < 0)`, is held where it
   is; the others are *free* (:math:`F`).
2. **Target.** The L-BFGS two-loop recursion (Nocedal 1980) on the free coordinates:
   :math:`t = P\bigl(y - [H]_{FF}\, g_F\bigr)`, with :math:`H` the L-BFGS inverse
   Hessian of the stored pairs, :math:`[H]_{FF}` its principal submatrix on
   :math:`F` (Kim, Sra and Dhillon 2010) and :math:`P` the projection onto the box.
   A pair :math:`(s, r)` is stored only if its curvature is positive,
   :math:`s^\top r > \epsilon\, r^\top r` (L-BFGS-B's test, checked once), so
   :math:`H` and :math:`[H]_{FF}` are positive definite and :math:`t - y` is a
   descent direction for :math:`h`. Without a stored pair (the first iteration, or
   :math:`f` convex along the steps, as near a minimum of the loss) the target is the
   vertex that maximizes the linear model of :math:`f` on the box, :math:`t_i = b_i
   \operatorname{sign}(\partial_i f)` — where L-BFGS-B's generalized Cauchy point
   goes when the box is small against the model's step, and the Frank–Wolfe vertex.
   The coordinates already at that vertex are exactly the binding ones.
3. **Search.** :math:`y + \beta (t - y)` with :math:`\beta = 1` first, then
   backtracking by safeguarded quadratic interpolation (:math:`\beta \in [0.1, 0.5]`
   times the last) until the Armijo condition :math:`h(y + \beta p) \le h(y) + c_1
   \beta\, g^\top p` holds (:math:`c_1 = 10^{-4}`). The segment stays in the box. Where
   :math:`f` is convex along it the linear model underestimates :math:`f`, so the first
   trial is accepted: one evaluation per iteration.

It stops at a first-order maximum (the linear model's gain over the box, the
Frank–Wolfe gap, is at rounding level: a projected gradient of 0), when the steps gain
only rounding (:math:`4\epsilon |f|` for the dtype's machine :math:`\epsilon`), after
``maxiter`` iterations, or when the evaluation budget is spent: at most ``maxiter + 1 +
max(1, maxiter // 3)`` evaluations (14 for the paper's 10 iterations), so an
ε-sharpness costs at most that many gradients plus one forward pass. Unlike
L-BFGS-B's absolute tolerances these tests do not stop early on a loss that is small
or flat across the box. Everything stays on the device of ``y0`` in its dtype; the
host reads a few numbers per iteration. Per iteration, besides the evaluation: about
seven passes over ``n`` and four per stored pair. Memory: ``2 * min(memory, maxiter -
1)`` vectors like ``y`` (the pairs) plus a few.

Differences from L-BFGS-B: the target is the projected quasi-Newton point instead of
the generalized Cauchy point followed by subspace minimization, and the search is
Armijo backtracking instead of the Moré–Thuente line search (which may spend several
evaluations on the curvature condition). ``scipy_lbfgsb_ascent`` in
:mod:`flatness.sharpness.box_ascent` runs the original.

References:
    D. Kim, S. Sra and I. S. Dhillon (2010). Tackling box-constrained optimization via
    a new projected quasi-Newton approach. SIAM J. Sci. Comput. 32(6), 3548–3563.

    R. H. Byrd, P. Lu, J. Nocedal and C. Zhu (1995). A limited memory algorithm for
    bound constrained optimization. SIAM J. Sci. Comput. 16(5), 1190–1208.

    J. Nocedal (1980). Updating quasi-Newton matrices with limited storage. Math.
    Comp. 35(151), 773–782.
"""

from __future__ import annotations

import math
from collections import deque

import torch
from torch import Tensor

from flatness.sharpness.box_ascent import Ascent, Evaluate, at_bound, projected_gradient

__all__ = ["ARMIJO", "projected_lbfgs_ascent", "evaluation_budget"]

ARMIJO = 1e-4
"""The sufficient-increase constant :math:`c_1` of the backtracking search."""

_RELATIVE = 4.0
"""Gains below this many machine epsilons of :math:`|f|` are rounding: the search stops."""

_ROUNDING = "no further gain: the steps change f by rounding only"


def evaluation_budget(maxiter: int) -> int:
    """The most evaluations :func:`projected_lbfgs_ascent` spends for ``maxiter`` iterations.

    One at the start, one per iteration, and ``max(1, maxiter // 3)`` for backtracking.

    Returns:
        ``maxiter + 1 + max(1, maxiter // 3)``.

    Examples:
        >>> evaluation_budget(10)
        14
    """
    return maxiter + 1 + max(1, maxiter // 3)


def _two_loop(gf: Tensor, free: Tensor, pairs: deque[tuple[Tensor, Tensor, float]]) -> Tensor:
    """:math:`[H]_{FF} \nabla f_F`: the two-loop recursion on the masked gradient, masked.

    ``free`` is 1 on the free coordinates and 0 elsewhere; the pairs are :math:`(s, r,
    s^\top r)` with :math:`r` the change of :math:`\nabla h = -\nabla f` and
    :math:`s^\top r > 0`, so :math:`H` is positive definite and so is its principal
    submatrix :math:`[H]_{FF}` (Kim, Sra and Dhillon 2010). Four passes over ``n`` per
    pair, in place.
    """
    q = gf * free
    alphas = []
    for s, r, sr in reversed(pairs):
        a = float(torch.dot(s, q)) / sr
        q.add_(r, alpha=-a)
        alphas.append(a)
    s, r, sr = pairs[-1]
    q.mul_(sr / float(torch.dot(r, r)))  # H0 = (s'r / r'r) I
    for (s, r, sr), a in zip(pairs, reversed(alphas), strict=True):
        beta = float(torch.dot(r, q)) / sr
        q.add_(s, alpha=a - beta)
    return q.mul_(free)


def projected_lbfgs_ascent(
    evaluate: Evaluate,
    y0: Tensor,
    bound: Tensor,
    maxiter: int,
    *,
    memory: int = 10,
    max_evaluations: int | None = None,
) -> Ascent:
    r"""Maximize over the box :math:`|y_i| \le b_i` by projected L-BFGS, on the device.

    See the module's docstring for the algorithm.

    Args:
        evaluate: ``evaluate(y) -> (f(y), ∇f(y))``, on the device and dtype of ``y0``.
        y0: The start; clamped into the box.
        bound: The half-widths :math:`b_i > 0`, like ``y0``.
        maxiter: The iteration limit.
        memory: The most curvature pairs kept (L-BFGS-B's default: 10).
        max_evaluations: The evaluation budget (default :func:`evaluation_budget`).

    Returns:
        An :class:`~flatness.sharpness.box_ascent.Ascent`: the best point evaluated,
        with ``status`` 0 (a first-order maximum, or no gain left above rounding),
        1 (iteration or evaluation limit) or 2 (a non-finite value of :math:`f`).

    Raises:
        ValueError: If ``maxiter``, ``memory`` or ``max_evaluations`` is below 1.

    Examples:
        >>> c, d = torch.tensor([0.5, 3.0, -2.0]), torch.tensor([-1.0, 1.0, 1.0])
        >>> def f(y):  # concave in y[0] (maximum inside the box), convex in the others
        ...     return 0.5 * (d * (y - c) ** 2).sum(), d * (y - c)
        >>> res = projected_lbfgs_ascent(f, torch.zeros(3), torch.ones(3), maxiter=10)
        >>> res.point.tolist(), res.success
        ([0.5, -1.0, 1.0], True)
    """
    if maxiter < 1 or memory < 1:
        raise ValueError(f"maxiter and memory must be positive, got {maxiter!r} and {memory!r}")
    budget = evaluation_budget(maxiter) if max_evaluations is None else max_evaluations
    if budget < 1:
        raise ValueError(f"max_evaluations must be positive, got {max_evaluations!r}")
    eps = torch.finfo(y0.dtype).eps
    ftol = _RELATIVE * eps
    y = torch.clamp(y0, min=-bound, max=bound)
    f_t, g = evaluate(y)  # g = ∇f: the ascent works with f's gradient throughout
    f = float(f_t)
    evaluations, iterations = 1, 0
    best = (f, y, g)
    pairs: deque[tuple[Tensor, Tensor, float]] = deque(maxlen=memory)
    status, message = 1, f"iteration limit reached ({maxiter} iterations)"
    while True:
        if not math.isfinite(f):
            status, message = 2, f"the function is {f} at an evaluated point"
            break
        # the vertex that maximizes the linear model; a coordinate already there is at
        # the face its gradient pushes towards (binding), the others are free
        vertex = torch.sign(g).mul_(bound)
        free = vertex.ne(y)
        gap = float(torch.dot(g, vertex)) - float(torch.dot(g, y))  # the model's gain
        if gap <= ftol * abs(f):
            status, message = 0, "first-order maximum: the linear model gains nothing in the box"
            break
        if iterations >= maxiter:
            break
        if evaluations >= budget:
            status, message = 1, f"evaluation limit reached ({budget} evaluations)"
            break
        hg = _two_loop(g, free.to(g.dtype), pairs) if pairs else None
        if hg is None:
            target, p, slope = vertex, vertex - y, gap
        else:
            target = torch.clamp(hg.add_(y), min=-bound, max=bound)
            p = target - y
            slope = float(torch.dot(g, p))  # > 0: H_F is positive definite
        del vertex, free, hg
        if not slope > ftol * abs(f):
            status, message = 0, _ROUNDING
            break
        step, accepted = 1.0, False
        while evaluations < budget and step * slope > ftol * abs(f):
            y_new = target if step == 1.0 else torch.add(y, p, alpha=step)
            f_t, g_new = evaluate(y_new)
            evaluations += 1
            f_new = float(f_t)
            if f_new > best[0]:
                best = (f_new, y_new, g_new)
            gain = f_new - f
            if gain >= ARMIJO * step * slope:
                accepted = True
                break
            if not math.isfinite(f_new):
                step *= 0.1
                continue
            # the maximizer of the quadratic in step through f(y), its slope and f(y_new)
            curvature = step * slope - gain
            trial = slope * step * step / (2 * curvature) if curvature > 0 else 0.5 * step
            step = min(max(trial, 0.1 * step), 0.5 * step)
        if not accepted:
            if evaluations >= budget:
                status, message = 1, f"evaluation limit reached ({budget} evaluations)"
            else:
                status, message = 0, _ROUNDING
            break
        iterations += 1
        if iterations < maxiter:  # the pair for h = -f: s = the step, r = the change of ∇h
            s_k, r_k = (p if step == 1.0 else p.mul_(step)), g - g_new
            sr, rr = float(torch.dot(s_k, r_k)), float(torch.dot(r_k, r_k))
            if sr > eps * rr:  # positive curvature (L-BFGS-B's test), else skipped
                pairs.append((s_k, r_k, sr))
        del target, p
        y, f, g = y_new, f_new, g_new
        if gain <= ftol * abs(f):
            status, message = 0, _ROUNDING
            break
    f_best, y_best, g_best = best
    pg = projected_gradient(y_best, g_best, bound)
    return Ascent(
        value=f_best,
        point=y_best,
        gradient=g_best,
        success=status == 0,
        status=status,
        message=message,
        iterations=iterations,
        evaluations=evaluations,
        gradients=evaluations,
        at_bound=at_bound(y_best, bound),
        projected_gradient=pg,
    )
