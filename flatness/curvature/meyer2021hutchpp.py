"""Hutch++: a low-rank sketch taken exactly plus Hutchinson on the rest.

R. A. Meyer, C. Musco, C. Musco and D. P. Woodruff, "Hutch++: Optimal Stochastic
Trace Estimation", Symposium on Simplicity in Algorithms (SOSA), 2021.

With a random sketch :math:`S \\in \\mathbb{R}^{n \\times s}`, an orthonormal basis
:math:`Q` of the range of :math:`AS` and the projector :math:`P = QQ^\\top`,

.. math::

    \\operatorname{tr}(A)
    = \\operatorname{tr}(Q^\\top A Q) + \\operatorname{tr}\\big((I-P) A (I-P)\\big)
    \\approx \\operatorname{tr}(Q^\\top A Q)
      + \\frac{1}{r} \\sum_{i=1}^r g_i^\\top (I-P) A (I-P) g_i .

The first term is computed exactly; only the residual, whose Frobenius norm is small
when the spectrum decays, is estimated by Hutchinson's method. For a budget of
:math:`m` products, :math:`s = \\lfloor m/3 \\rfloor` go to the sketch, at most
:math:`s` to :math:`AQ` and the rest (at least a third) to the residual probes
:math:`g_i`, which are independent of :math:`S`, so the estimator is unbiased for any
:math:`Q`. Hutch++ reaches relative error :math:`\\varepsilon` on positive
semi-definite matrices with :math:`O(1/\\varepsilon)` products instead of
Hutchinson's :math:`O(1/\\varepsilon^2)`.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from flatness.curvature.hutchinson import (
    ProbeSettings,
    TraceSamples,
    draw_probes,
    quadratic_forms,
    run_trace_estimator,
    sample_quadratic_forms,
    sample_stats,
)
from flatness.curvature.operator import SymmetricOperator, Target
from flatness.curvature.options import HessianOptions, ProbeDistribution, resolve_hessian_options
from flatness.curvature.trace_result import TraceResult

if TYPE_CHECKING:
    from typing_extensions import Unpack

    from flatness.curvature.options import HessianKeywords


def hutchpp_trace(
    target: Target,
    *,
    budget: int = 100,
    target_stderr: float | None = None,
    absolute: bool = False,
    min_probes: int = 10,
    block_size: int = 8,
    distribution: ProbeDistribution = "rademacher",
    seed: int = 0,
    hessian: HessianOptions | None = None,
    **legacy: Unpack[HessianKeywords],
) -> TraceResult:
    """Hutch++ estimate of the trace of a symmetric operator (Meyer et al., SOSA 2021).

    .. math::

        \\hat t = \\operatorname{tr}(Q^\\top A Q)
        + \\frac{1}{r} \\sum_{i=1}^r g_i^\\top (I - QQ^\\top) A (I - QQ^\\top) g_i,
        \\qquad Q = \\operatorname{orth}(A S),

    with :math:`s = \\lfloor \\text{budget}/3 \\rfloor` sketch columns (capped at the
    dimension). Directions of :math:`AS` with singular values below
    :math:`n \\epsilon\\,\\sigma_{\\max}` are dropped, so a matrix of rank
    :math:`k < s` costs only :math:`k` products for its low-rank part and the products
    saved go to more residual probes. The standard error comes from the residual
    samples alone (the low-rank part is exact). When the sketch spans the whole space
    (``budget >= 3 * dim``) the trace is exact and no residual probes are drawn.

    With ``target_stderr`` the budget is a cap and the run stops as soon as the target
    is met: the sketch grows block by block only while a block saves more residual
    probes than the :math:`2 \times` ``block_size`` products it costs (its share of
    :math:`AS` and :math:`AQ`; the residual's Frobenius norm, estimated from each new
    block, predicts the probes the target needs — the trade-off of adaptive Hutch++,
    Persson, Cortinovis and Kressner 2022), at most ``budget // 3`` columns; then the
    residual phase stops with the same rule as
    :func:`~flatness.curvature.hutchinson.hutchinson_trace`: at least ``min_probes``
    residual probes and a standard error at most ``target_stderr * |estimate|`` (or at
    most ``target_stderr`` with ``absolute=True``). On a spectrum of a few outliers
    over a small bulk (a Hessian's shape) a 1 % target costs tens of products where
    Hutchinson needs thousands.

    Args:
        target: A :class:`flatness.Objective` (its Hessian) or a
            :class:`~flatness.curvature.operator.SymmetricOperator`.
        budget: Most operator products to spend.
        target_stderr: Optional target standard error, relative to ``|estimate|``
            unless ``absolute`` is set.
        absolute: Read ``target_stderr`` in the units of the trace.
        min_probes: Residual probes required before the target may stop the run.
        block_size: Vectors per ``matmat`` call.
        distribution: ``"rademacher"`` or ``"gaussian"`` (sketch and residual probes).
        seed: Seed of the CPU generator that draws sketch and probes.
        hessian: How to multiply the Hessian when ``target`` is an Objective.
        **legacy: Deprecated: the fields of ``hessian`` as loose keywords.

    Returns:
        A :class:`~flatness.curvature.trace_result.TraceResult` with ``method="hutchpp"``;
        ``probes`` counts the residual probes and ``sketch_rank`` the rank of
        :math:`Q`.

    Raises:
        ValueError: If an option is out of range.
        TypeError: If ``target`` is neither an Objective nor an operator, or Hessian
            options come with an operator.

    Examples:
        >>> from flatness.curvature.operator import DenseOperator
        >>> A = DenseOperator.from_spectrum([1.0 / i**2 for i in range(1, 41)], seed=1)
        >>> tr = hutchpp_trace(A, budget=30, seed=0)
        >>> tr.matvecs, tr.sketch_rank, tr.probes
        (30, 10, 10)
        >>> abs(tr.estimate - 1.6202) < 0.01
        True
        >>> hutchpp_trace(A, budget=120).stderr  # the sketch spans R^40: exact
        0.0
    """
    probes = ProbeSettings(
        budget=budget,
        target_stderr=target_stderr,
        absolute=absolute,
        min_probes=min_probes,
        block_size=block_size,
        distribution=distribution,
        seed=seed,
    )
    return run_trace_estimator(
        "hutchpp", _hutchpp, target, probes, resolve_hessian_options(hessian, legacy)
    )


def orthonormal_range(Y: Tensor, *, truncate: bool = True) -> Tensor:
    """An orthonormal basis of the column space of ``Y`` (shape ``(n, s)``, ``s <= n``).

    A thin QR factorization :math:`Y = Q_0 R` followed by an SVD of the small factor,
    :math:`R = U \\Sigma V^\\top`, gives :math:`Q = Q_0 U`; with ``truncate`` the
    columns whose singular value is at most :math:`\\max(n, s)\\,\\epsilon\\,
    \\sigma_{\\max}` are dropped.

    Returns:
        ``Q`` with orthonormal columns spanning (the numerically significant part of)
        the range of ``Y``.

    Examples:
        >>> Y = torch.tensor([[1.0, 2.0], [0.0, 0.0], [1.0, 2.0]], dtype=torch.float64)
        >>> orthonormal_range(Y).shape
        torch.Size([3, 1])
    """
    qr: tuple[Tensor, Tensor] = torch.linalg.qr(Y, mode="reduced")
    Q0, R = qr
    if not truncate:
        return Q0
    svd: tuple[Tensor, Tensor, Tensor] = torch.linalg.svd(R)
    U, sigma, _ = svd
    if sigma.numel() == 0:
        return Q0[:, :0]
    tolerance = max(Y.shape) * torch.finfo(Y.dtype).eps * sigma[0]
    keep = int((sigma > tolerance).sum())
    return Q0 @ U[:, :keep]


def _hutchpp(op: SymmetricOperator, probes: ProbeSettings) -> TraceSamples:
    """Hutch++ on ``op``: a sketch, its exact trace, Hutchinson on the residual."""
    budget, block_size, distribution = probes.budget, probes.block_size, probes.distribution
    n, dtype, device = op.dim, op.dtype, op.device
    generator = torch.Generator().manual_seed(probes.seed)

    # 1. Sketch: Y = A S with s = budget // 3 columns (all of R^n at most); with a
    #    target, only as many as pay for themselves.
    sketch = min(budget // 3, n)
    if probes.target_stderr is not None and sketch < n:
        Y = _adaptive_sketch(op, generator, probes, sketch)
    else:
        Y = torch.empty(n, sketch, dtype=dtype, device=device)
        for j in range(0, sketch, block_size):
            count = min(block_size, sketch - j)
            S = draw_probes(generator, n, count, distribution, dtype=dtype, device=device)
            Y[:, j : j + count] = op.matmat(S).detach()
    # With a full sketch any orthonormal Q spans R^n and tr(Q^T A Q) is the exact trace.
    exact = Y.shape[1] == n
    sketch = int(Y.shape[1])
    Q = orthonormal_range(Y, truncate=not exact)
    del Y
    rank = int(Q.shape[1])

    # 2. The low-rank part, tr(Q^T A Q), exactly.
    low_rank = 0.0
    for j in range(0, rank, block_size):
        Qb = Q[:, j : j + block_size]
        low_rank += math.fsum(quadratic_forms(Qb, op.matmat(Qb)))

    # 3. Hutchinson on the residual (I - QQ^T) A (I - QQ^T) with the products left.
    samples, met = sample_quadratic_forms(
        op,
        generator,
        0 if exact else budget - sketch - rank,
        target_stderr=probes.target_stderr,
        absolute=probes.absolute,
        min_probes=probes.min_probes,
        block_size=block_size,
        distribution=distribution,
        project=Q,
        offset=low_rank,
    )
    if exact:
        return TraceSamples(low_rank, 0.0, True, samples, rank)
    mean, stderr = sample_stats(samples)
    estimate = low_rank + mean if samples else math.nan
    return TraceSamples(estimate, stderr, probes.converged(met, stderr), samples, rank)


def _adaptive_sketch(
    op: SymmetricOperator, generator: torch.Generator, probes: ProbeSettings, cap: int
) -> Tensor:
    r"""The sketch :math:`AS` grown block by block while it saves more products than it costs.

    Each new block :math:`S_b` (``block_size`` probes) gives, before it joins the basis
    :math:`Q` of the earlier blocks, an unbiased estimate of the residual's squared
    Frobenius norm, :math:`r^2 = \lVert (I - QQ^\top) A S_b \rVert_F^2 / |S_b|`
    (:math:`\mathbb{E}[S_b S_b^\top] = |S_b|\, I`). Hutchinson's variance on the
    residual is at most :math:`2 r^2` per probe, so the target standard error
    :math:`\tau` needs about :math:`m(Q) = \max(m_{\min}, 2 r^2 / \tau^2)` residual
    probes (:math:`\tau` relative to the mean of the sketch's own quadratic forms
    :math:`s_j^\top A s_j`, a Hutchinson estimate of the trace, unless absolute). A
    block costs :math:`2 |S_b|` products (its sketch and its share of :math:`AQ`); the
    sketch stops growing once a block saved fewer residual probes than that, once
    :math:`m(Q) = m_{\min}`, or at ``cap`` columns. The same trade-off decides the
    sketch size of adaptive Hutch++ (Persson, Cortinovis and Kressner 2022, "Improved
    variants of the Hutch++ algorithm for trace estimation", SIAM J. Matrix Anal. Appl.
    43(3)); the residual probes stay independent of :math:`S`, so the estimate stays
    unbiased.
    """
    n, dtype, device = op.dim, op.dtype, op.device
    blocks: list[Tensor] = []
    forms: list[float] = []
    Q = torch.empty(n, 0, dtype=dtype, device=device)
    taken, previous = 0, math.inf
    while taken < cap:
        count = min(probes.block_size, cap - taken)
        S = draw_probes(generator, n, count, probes.distribution, dtype=dtype, device=device)
        AS = op.matmat(S).detach()
        taken += count
        forms.extend(quadratic_forms(S, AS))
        residual = AS - Q @ (Q.T @ AS)
        r2 = float((residual * residual).sum()) / count
        blocks.append(AS)
        Q = orthonormal_range(torch.cat(blocks, dim=1))
        assert probes.target_stderr is not None
        scale = 1.0 if probes.absolute else abs(math.fsum(forms) / len(forms))
        tau = probes.target_stderr * scale
        need = max(probes.min_probes, 2 * r2 / tau**2) if tau > 0 else math.inf
        if need <= probes.min_probes or previous - need < 2 * count:
            break
        previous = need
    return torch.cat(blocks, dim=1)
