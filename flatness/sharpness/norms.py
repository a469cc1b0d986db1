r"""The gradient norm and the weight norm: what to read beside a sharpness measure.

Two cheap, deterministic numbers that tell how far a scored point is from a minimum
and at what scale its weights are:

- :func:`gradient_norm`, :math:`\lVert \nabla f(\theta) \rVert_2` of the objective's
  mean loss over all its examples (one full-data gradient), with the
  :math:`\infty`-norm as a second component. Keskar et al.'s ε-sharpness (Metric 2.1)
  assumes a minimum; where the gradient is not small its first-order term
  :math:`\varepsilon \sum_i |g_i| (|x_i| + 1)` is part of the value, and a network
  that trained fewer updates may look sharper for that reason alone (Hoffer, Hubara &
  Soudry 2017, "Train longer, generalize better", NeurIPS).
- :func:`weight_norm`, :math:`\lVert \theta \rVert_2` over the objective's parameters,
  and over the *weights* only (the parameters of layers other than normalization
  layers, biases excluded) as a second component. λ_max and ε-sharpness change with
  the weights' scale: a ReLU network's function is unchanged when one layer is scaled
  by :math:`\alpha` and the next by :math:`1/\alpha`, while its Hessian is not (Dinh,
  Pascanu, Bengio & Bengio 2017, "Sharp minima can generalize for deep nets", ICML),
  and a layer followed by BatchNorm is scale-invariant, so its curvature falls as its
  weights grow (van Laarhoven 2017, "L2 regularization versus batch and weight
  normalization", arXiv:1706.05350).

Both results honour the contract of :mod:`flatness.results`; their store rows are the
headline (component ``""``) and the second norm (``"inf"``, ``"weights"``).

Examples:
    >>> net = torch.nn.Linear(2, 1, bias=False)
    >>> _ = net.weight.data.copy_(torch.tensor([[3.0, 4.0]]))
    >>> X, y = torch.ones(4, 2), torch.zeros(4, 1)
    >>> obj = Objective(net, (X, y), torch.nn.functional.mse_loss)
    >>> weight_norm(obj).value
    5.0
    >>> round(gradient_norm(obj).value, 4)  # f = (3 + 4)^2, gradient 2 * 7 * (1, 1)
    19.799
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from flatness.curvature.objective import Objective
from flatness.results import Meter, Record, format_float, gradient_equivalents
from flatness.sharpness.contract import NoConvergenceTest, NoErrorBar, SharpnessResult

__all__ = [
    "NORMALIZATION_LAYERS",
    "GradientNormResult",
    "WeightNormResult",
    "gradient_norm",
    "weight_norm",
    "weight_parameter_names",
]

NORMALIZATION_LAYERS: tuple[type[nn.Module], ...] = (
    nn.modules.batchnorm._NormBase,
    nn.LayerNorm,
    nn.GroupNorm,
    nn.LocalResponseNorm,
)
"""Layers whose parameters are not counted as weights (BatchNorm, InstanceNorm,
LayerNorm, GroupNorm)."""


@dataclass(frozen=True, eq=False)
class GradientNormResult(NoErrorBar, NoConvergenceTest, SharpnessResult):
    """The gradient's norms at the objective's parameters.

    Besides the fields below it has the result contract's names: ``stderr`` (NaN: an
    exact full-data gradient), ``converged`` (``True``), ``matvecs`` (0),
    ``evaluations`` (0), ``gradients`` (1), ``gradient_equivalents`` (1) and
    ``settings`` (none).

    Attributes:
        value: :math:`\\lVert \\nabla f(\\theta) \\rVert_2`.
        inf_norm: :math:`\\max_i |\\partial_i f(\\theta)|`.
        loss: :math:`f(\\theta)`, the mean loss the gradient is of.
        dim: The number of parameters.
        seconds: Wall-clock seconds.
    """

    value: float
    inf_norm: float
    loss: float
    dim: int
    seconds: float

    @property
    def evaluations(self) -> int:
        """Loss evaluations without a gradient: none."""
        return 0

    @property
    def gradients(self) -> int:
        """Gradient evaluations: one, over all the objective's examples."""
        return 1

    @property
    def gradient_equivalents(self) -> float:
        """The cost in full gradients: one."""
        return gradient_equivalents(gradients=1)

    def records(self) -> list[Record]:
        """The store's rows: the 2-norm (``""``) and the ∞-norm (``"inf"``)."""
        return [Record("", self.value), Record("inf", self.inf_norm)]

    def __repr__(self) -> str:
        return (
            f"GradientNormResult(value={format_float(self.value)}, "
            f"inf_norm={format_float(self.inf_norm)}, loss={format_float(self.loss)}, "
            f"dim={self.dim})"
        )


@dataclass(frozen=True, eq=False)
class WeightNormResult(NoErrorBar, NoConvergenceTest, SharpnessResult):
    """The parameters' 2-norm, over all of them and over the weights only.

    Besides the fields below it has the result contract's names: ``stderr`` (NaN),
    ``converged`` (``True``), ``matvecs``, ``evaluations`` and ``gradients`` (0),
    ``gradient_equivalents`` (0) and ``settings`` (none).

    Attributes:
        value: :math:`\\lVert \\theta \\rVert_2` over the objective's parameters.
        weights: The 2-norm over the weights (:func:`weight_parameter_names`); NaN when
            the objective has none.
        dim: The number of parameters.
        weights_dim: The number of weights.
        seconds: Wall-clock seconds.
    """

    value: float
    weights: float
    dim: int
    weights_dim: int
    seconds: float

    @property
    def evaluations(self) -> int:
        """Loss evaluations: none."""
        return 0

    @property
    def gradients(self) -> int:
        """Gradient evaluations: none."""
        return 0

    @property
    def gradient_equivalents(self) -> float:
        """The cost in full gradients: none."""
        return 0.0

    def records(self) -> list[Record]:
        """The store's rows: all parameters (``""``) and the weights only (``"weights"``)."""
        return [Record("", self.value), Record("weights", self.weights)]

    def __repr__(self) -> str:
        return (
            f"WeightNormResult(value={format_float(self.value)}, "
            f"weights={format_float(self.weights)}, dim={self.dim}, "
            f"weights_dim={self.weights_dim})"
        )


def gradient_norm(obj: Objective) -> GradientNormResult:
    """The 2-norm and the ∞-norm of the gradient of the objective's mean loss.

    One full-data gradient in the objective's mode (eval mode by default: BatchNorm's
    running statistics, no dropout) and dtype; under a process group it is the
    gradient over all ranks' examples. The model is not modified.

    Args:
        obj: The objective.

    Returns:
        A :class:`GradientNormResult`.

    Examples:
        >>> net = torch.nn.Linear(3, 2)
        >>> X = torch.randn(8, 3, generator=torch.Generator().manual_seed(0))
        >>> res = gradient_norm(Objective(net, (X, (X[:, 0] > 0).long())))
        >>> res.value >= res.inf_norm > 0, res.gradient_equivalents
        (True, 1.0)
    """
    with Meter() as meter:
        loss, grad = obj.value_and_gradient()
        grad = grad.detach()
        two = float(torch.linalg.vector_norm(grad.double()))
        inf = float(grad.abs().max()) if grad.numel() else 0.0
    return GradientNormResult(
        value=two, inf_norm=inf, loss=float(loss), dim=obj.dim, seconds=meter.seconds
    )


def weight_parameter_names(model: nn.Module) -> frozenset[str]:
    """The names of a model's *weights*: parameters outside normalization layers, not biases.

    A parameter counts as a weight unless it belongs to one of
    :data:`NORMALIZATION_LAYERS` or its own name is ``bias``.

    Args:
        model: The network.

    Returns:
        The weights' names as ``model.named_parameters()`` gives them.

    Examples:
        >>> net = torch.nn.Sequential(torch.nn.Linear(2, 3), torch.nn.BatchNorm1d(3))
        >>> sorted(weight_parameter_names(net))
        ['0.weight']
    """
    norm_params = {
        f"{prefix}.{name}" if prefix else name
        for prefix, module in model.named_modules()
        if isinstance(module, NORMALIZATION_LAYERS)
        for name, _ in module.named_parameters(recurse=False)
    }
    return frozenset(
        name
        for name, _ in model.named_parameters()
        if name not in norm_params and name.rsplit(".", 1)[-1] != "bias"
    )


def weight_norm(obj: Objective) -> WeightNormResult:
    """The 2-norm of the objective's parameters, and of its weights only.

    Taken over the parameters the objective varies (all trainable ones by default, or
    a group's), at :math:`\\theta_0`; the weights are those of
    :func:`weight_parameter_names` (BatchNorm/LayerNorm parameters and biases left
    out). No evaluation of the loss.

    Args:
        obj: The objective.

    Returns:
        A :class:`WeightNormResult`.

    Examples:
        >>> net = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.BatchNorm1d(2))
        >>> obj = Objective(net, (torch.randn(4, 2), torch.tensor([0, 1, 0, 1])))
        >>> res = weight_norm(obj)
        >>> res.dim, res.weights_dim, res.value > res.weights
        (10, 4, True)
    """
    with Meter() as meter:
        keep = weight_parameter_names(obj.model)
        theta = obj.theta0.detach().double()
        total = float(torch.linalg.vector_norm(theta))
        parts = [theta[b.offset : b.offset + b.numel] for b in obj.blocks if b.name in keep]
        weights_dim = sum(p.numel() for p in parts)
        weights = float(torch.linalg.vector_norm(torch.cat(parts))) if parts else math.nan
    return WeightNormResult(
        value=total, weights=weights, dim=obj.dim, weights_dim=weights_dim, seconds=meter.seconds
    )
