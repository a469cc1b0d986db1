"""The curvature engine: the Objective, Hessian-vector products and the algorithms on them.

Arrows point one way: algorithms (eigenvalues, trace, density) take an
:class:`~flatness.curvature.objective.Objective` or any
:class:`~flatness.curvature.operator.SymmetricOperator` and return result dataclasses;
they know nothing about checkpoints, files or the results store. How an Objective's
Hessian is multiplied is one :class:`~flatness.curvature.options.HessianOptions`
passed as ``hessian=``; every result honours the contract of :mod:`flatness.results`.

Modules: ``objective`` (the loss as a function of flat parameters), ``batches``
(the data it is taken over), ``parameters`` (which parameters, where in the flat
vector), ``precision`` (float32 for low-precision models), ``determinism`` (the
refusal of a random loss), ``attention`` (fused attention in second-order passes) and
``double_backward`` (the second backward of a product), ``linear_operator`` (the operator contract,
:data:`~flatness.curvature.linear_operator.Target`), ``hessian`` (Hessian-vector
products) and ``graph_memory`` (what its retained graphs hold), ``operator`` (from a
target to an operator: :func:`~flatness.curvature.operator.operator_for`), ``options``
(typed options, :func:`~flatness.curvature.options.deterministic_hessian`);
``lanczos_kernel`` (the Lanczos kernel), ``thick_restart`` (Wu & Simon's eigensolver),
``eigen_result``, ``eigenvalues`` and ``power_iteration`` (extremal eigenvalues);
``trace_result``, ``hutchinson``, ``meyer2021hutchpp``, ``exact_trace``,
``piecewise_linear`` and ``trace`` (the trace and its dispatcher); ``density``
(stochastic Lanczos quadrature). Each result type lives in its own module below the
algorithms that return it, so the imports point one way (no module imports back);
``lanczos`` keeps the Lanczos names importable from their path before the split.
"""

from flatness.curvature.attention import SecondOrderError
from flatness.curvature.density import DensityResult, spectral_density
from flatness.curvature.eigenvalues import EigenResult, hessian_eigenvalues
from flatness.curvature.exact_trace import exact_hessian_trace
from flatness.curvature.hessian import HessianOperator
from flatness.curvature.hutchinson import hutchinson_trace
from flatness.curvature.meyer2021hutchpp import hutchpp_trace
from flatness.curvature.objective import Objective
from flatness.curvature.operator import (
    DenseOperator,
    SymmetricOperator,
    Target,
    as_operator,
    operator_for,
    to_scipy,
)
from flatness.curvature.options import HessianOptions, deterministic_hessian
from flatness.curvature.piecewise_linear import check_piecewise_linear
from flatness.curvature.power_iteration import power_iteration
from flatness.curvature.trace import TraceResult, hessian_trace

__all__ = [
    "DenseOperator",
    "DensityResult",
    "EigenResult",
    "HessianOperator",
    "HessianOptions",
    "Objective",
    "SecondOrderError",
    "SymmetricOperator",
    "Target",
    "TraceResult",
    "as_operator",
    "check_piecewise_linear",
    "deterministic_hessian",
    "exact_hessian_trace",
    "hessian_eigenvalues",
    "hessian_trace",
    "hutchinson_trace",
    "hutchpp_trace",
    "operator_for",
    "power_iteration",
    "spectral_density",
    "to_scipy",
]
