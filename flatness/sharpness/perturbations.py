r"""Shared pieces of the perturbation-based sharpness measures.

Adaptive and average-case sharpness (:mod:`flatness.sharpness.adaptive`,
:mod:`flatness.sharpness.average`) and PAC-Bayes flatness
(:mod:`flatness.sharpness.jiang2019pacbayes`) all perturb the flat parameter vector
:math:`w` of an :class:`~flatness.curvature.objective.Objective` and evaluate the loss
there. This module holds what they share:

* the elementwise scale :math:`T_w = \operatorname{diag}(|w| + \eta)` of adaptive
  sharpness (Kwon et al. 2021), or the identity for the plain measures;
* random draws made on the CPU in float64 from a seeded :class:`torch.Generator` and
  only then cast and moved, so a seed gives the same perturbations on every device;
* the split of the objective's examples into chunks of ``m`` examples for
  m-sharpness, and the mean loss and gradient of one chunk.

The checks of their settings (``check_positive``, ``check_nonnegative``,
``check_norm``) live in :mod:`flatness.sharpness.checks` and are re-exported here.

References:
    J. Kwon, J. Kim, H. Park and I. K. Choi (2021). ASAM: Adaptive sharpness-aware
    minimization for scale-invariant learning of deep neural networks. ICML.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from flatness.curvature.batches import map_tensors
from flatness.curvature.objective import Batch, Objective
from flatness.losses import batch_weight
from flatness.sharpness.checks import check_nonnegative, check_norm, check_positive
from flatness.sharpness.ranks import block_start

__all__ = [
    "Chunk",
    "check_nonnegative",
    "check_norm",
    "check_positive",
    "chunk_value",
    "chunk_value_and_gradient",
    "elementwise_scale",
    "example_chunks",
    "random_in_ball",
    "slice_batch",
    "standard_normal",
    "whole_data",
]

Chunk = list[tuple[float, Batch]]
"""A set of examples as ``(weight, batch)`` pairs whose weighted sum is the mean loss."""


def elementwise_scale(theta: Tensor, *, adaptive: bool, eta: float) -> Tensor:
    r"""The diagonal of :math:`T_w`: :math:`|w| + \eta` when adaptive, else ones.

    Returns:
        A tensor like ``theta``.

    Examples:
        >>> elementwise_scale(torch.tensor([-2.0, 0.0, 1.0]), adaptive=True, eta=0.5)
        tensor([2.5000, 0.5000, 1.5000])
        >>> elementwise_scale(torch.tensor([-2.0, 0.0]), adaptive=False, eta=0.5)
        tensor([1., 1.])
    """
    if not adaptive:
        return torch.ones_like(theta)
    return theta.abs() + eta


def standard_normal(
    generator: torch.Generator, dim: int, *, dtype: torch.dtype, device: torch.device
) -> Tensor:
    """One ``N(0, I)`` vector drawn on the CPU in float64, then cast and moved.

    Returns:
        A ``(dim,)`` tensor with ``dtype`` on ``device``.
    """
    z = torch.randn(dim, generator=generator, dtype=torch.float64)
    return z.to(device=device, dtype=dtype)


def random_in_ball(
    generator: torch.Generator,
    dim: int,
    radius: float,
    norm: str,
    *,
    dtype: torch.dtype,
    device: torch.device,
) -> Tensor:
    r"""A point drawn uniformly from the ``norm`` ball of ``radius`` (``"2"`` or ``"inf"``).

    For the :math:`\ell_2` ball the direction is a normalized Gaussian and the radius is
    :math:`\rho\, U^{1/d}`; for the :math:`\ell_\infty` ball each coordinate is uniform
    on :math:`[-\rho, \rho]`.

    Returns:
        A ``(dim,)`` tensor with ``dtype`` on ``device``.

    Examples:
        >>> g = torch.Generator().manual_seed(0)
        >>> x = random_in_ball(g, 5, 0.1, "2", dtype=torch.float64, device=torch.device("cpu"))
        >>> bool(x.norm() <= 0.1)
        True
    """
    if norm == "2":
        z = torch.randn(dim, generator=generator, dtype=torch.float64)
        u = torch.rand((), generator=generator, dtype=torch.float64)
        x = z * (radius * u ** (1.0 / dim) / z.norm().clamp_min(1e-300))
    else:
        x = (2.0 * torch.rand(dim, generator=generator, dtype=torch.float64) - 1.0) * radius
    return x.to(device=device, dtype=dtype)


def slice_batch(batch: Batch, start: int, stop: int) -> Batch:
    """Examples ``start:stop`` of a batch: every tensor with a batch dimension is sliced.

    Returns:
        A batch of the same structure (tensor, mapping, tuple or list), walked by
        :func:`~flatness.curvature.batches.map_tensors`; 0-d tensors and other objects
        are kept as they are.

    Examples:
        >>> slice_batch({"x": torch.arange(4), "t": torch.tensor(7), "n": 3}, 1, 3)
        {'x': tensor([1, 2]), 't': tensor(7), 'n': 3}
    """
    return map_tensors(lambda t: t[start:stop] if t.ndim > 0 else t, batch)


def whole_data(obj: Objective) -> Chunk:
    """All the objective's examples as one chunk.

    Returns:
        The objective's ``(weight, batch)`` pairs (under a process group, this rank's).
    """
    return list(zip(obj.weights, obj.batches, strict=True))


def example_chunks(obj: Objective, m: int) -> list[Chunk]:
    """Split the examples, in the objective's order, into consecutive chunks of ``m``.

    A chunk may span batch boundaries. When ``m`` does not divide the number of
    examples, the last chunk holds the remainder. Each part of a chunk weighs what the
    objective's batches weigh (its examples, or the tokens a token-mean loss declares,
    :func:`~flatness.losses.batch_weight`) over the chunk's total weight, so its
    weighted sum of batch means is the chunk's mean loss as the objective defines it;
    parts without weight (no token enters the loss) are left out, and so are chunks
    without any.

    Under a process group the chunks are the global ones (examples ``c*m`` to
    ``(c+1)*m - 1`` of all ranks' examples in rank order), every rank has every chunk
    and holds the parts that fall in its block (possibly none), and the weights use
    the chunk's total weight over all ranks; :func:`chunk_value` completes the sums
    with the objective's ``reduce``.

    Returns:
        The chunks, each a list of ``(weight, batch)`` pairs.
    """
    start, total = block_start(obj, obj.local_examples)
    count = -(-total // m)
    parts: list[tuple[int, float, Batch]] = []
    position = start
    for batch, size in zip(obj.batches, obj.batch_sizes, strict=True):
        lo = 0
        while lo < size:
            take = min(m - position % m, size - lo)
            part = batch if take == size else slice_batch(batch, lo, lo + take)
            declared = batch_weight(obj.batch_loss, part)
            weight = float(take if declared is None else declared)
            if weight > 0:
                parts.append((position // m, weight, part))
            position += take
            lo += take
    totals = torch.zeros(count, dtype=torch.float64, device=obj.device)
    for c, weight, _ in parts:
        totals[c] += weight
    totals = obj.reduce(totals).cpu()
    chunks: list[Chunk] = [[] for _ in range(count)]
    for c, weight, part in parts:
        chunks[c].append((weight / float(totals[c]), part))
    return [chunk for chunk, weight in zip(chunks, totals.tolist(), strict=True) if weight > 0]


def chunk_value(obj: Objective, theta: Tensor, chunk: Sequence[tuple[float, Batch]]) -> Tensor:
    """The mean loss of the chunk's examples at ``theta``.

    Under a process group every rank calls it with its parts of the same chunk and
    the weighted sum is completed over the ranks (:meth:`~flatness.Objective.reduce`).

    Returns:
        A 0-d tensor, without a graph.
    """
    with torch.no_grad():
        total = torch.zeros((), device=obj.device, dtype=obj.dtype)
        for w, b in chunk:
            total = total + w * obj.batch_mean_loss(theta, b)
    return obj.reduce(total)


def chunk_value_and_gradient(
    obj: Objective, theta: Tensor, chunk: Sequence[tuple[float, Batch]]
) -> tuple[Tensor, Tensor]:
    """The chunk's mean loss at ``theta`` and its gradient (one backward per batch).

    Under a process group the loss and the gradient are completed over the ranks with
    one sum (:meth:`~flatness.Objective.reduce`), as :func:`chunk_value` does.

    Returns:
        ``(loss, gradient)``: a 0-d tensor without a graph and a ``(obj.dim,)`` tensor.
    """
    total = torch.zeros((), device=obj.device, dtype=obj.dtype)
    grad = torch.zeros(obj.dim, device=obj.device, dtype=obj.dtype)
    for w, b in chunk:
        leaf = theta.detach().requires_grad_(True)
        loss = obj.batch_mean_loss(leaf, b)
        if loss.requires_grad:  # a loss that ignores the parameters has a zero gradient
            (g,) = torch.autograd.grad(loss, leaf, allow_unused=True)
            if g is not None:
                grad.add_(g, alpha=w)
        total = total + w * loss.detach()
    both = obj.reduce(torch.cat([total.reshape(1), grad]))  # one collective
    return both[0], both[1:]
