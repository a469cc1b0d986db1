r"""The noise scale's per-group gradient sums: accumulated, combined over ranks, estimated.

:func:`~flatness.sharpness.noise_scale.gradient_noise_scale` feeds unit gradients
:math:`g_u` (of examples or batches) to a :class:`GroupAccumulator`, which keeps only
per-group sums (``groups`` vectors of the parameter dimension), never the gradients.
:class:`GroupSums` turns any union of groups into the estimates of
:math:`\operatorname{tr}\Sigma`, :math:`\lVert G\rVert^2` and :math:`B_\mathrm{simple}`,
and :func:`jackknife` gives their delete-a-group standard errors (see the noise scale's
module doc for the formulas).

Under a process group each rank feeds the units of its own block of examples, placed
at their global positions so that the seeded assignment of units to groups is the one
a single process makes. What is reduced over the ranks (one sum of the parameter
dimension for the shift and one of ``groups`` such vectors, plus the scalars): the
reference :math:`r` (rank 0's, so all ranks shift by the same vector), and per group
:math:`H_k = \sum_{u \in k} n_u (g_u - r)`, :math:`\sum_{u\in k} n_u \lVert g_u -
r\rVert^2`, the examples and the units. Each rank first moves its sums from its own
reference :math:`r_\rho` to :math:`r` exactly (:math:`d = r_\rho - r`:
:math:`H_k \mathrel{+}= n_k d`, :math:`S_k \mathrel{+}= 2 d^\top H_k + n_k \lVert d
\rVert^2`), so the reduced sums are those of one process on all the data up to
rounding.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

__all__ = ["GroupAccumulator", "GroupSums", "jackknife"]


class GroupAccumulator:
    """Running per-group sums of unit gradients, randomly (seeded) assigned to groups.

    Args:
        num_units: Units over all ranks.
        m: Groups.
        dim: Parameters.
        seed: Seed of the assignment (a permutation of all units).
        device: Where the sums of the parameter dimension live.
        dtype: Their dtype.
        start: The global position of this rank's first unit (0 in one process).
    """

    def __init__(
        self,
        num_units: int,
        m: int,
        dim: int,
        *,
        seed: int,
        device: torch.device,
        dtype: torch.dtype,
        start: int = 0,
    ) -> None:
        gen = torch.Generator().manual_seed(seed)
        self.assign = torch.empty(num_units, dtype=torch.long)
        self.assign[torch.randperm(num_units, generator=gen)] = torch.arange(num_units) % m
        self.dtype = dtype
        self.H = torch.zeros(m, dim, device=device, dtype=dtype)
        self.sq = torch.zeros(m, dtype=torch.float64)
        self.examples = torch.zeros(m, dtype=torch.float64)
        self.units = torch.zeros(m, dtype=torch.float64)
        self.ref: Tensor | None = None
        self.pos = start

    def consume(self, g: Tensor, sizes: Tensor) -> None:
        """Add unit gradients ``g`` ``(c, dim)`` of ``sizes`` ``(c,)`` examples each."""
        g = g.to(dtype=self.dtype)
        w = sizes.to(device=g.device, dtype=self.dtype)
        if self.ref is None:
            self.ref = (w[:, None] * g).sum(0) / w.sum()
        h = g - self.ref
        idx = self.assign[self.pos : self.pos + g.shape[0]]
        self.H.index_add_(0, idx.to(g.device), w[:, None] * h)
        self.sq.index_add_(0, idx, sizes * (h * h).sum(1).cpu().double())
        self.examples.index_add_(0, idx, sizes)
        self.units.index_add_(0, idx, torch.ones_like(sizes))
        self.pos += g.shape[0]

    def combine(self, reduce: Callable[[Tensor], Tensor], rank: int) -> None:
        """Sum the ranks' groups (see the module doc); every rank of the group calls it.

        Args:
            reduce: The objective's sum over the ranks, in place.
            rank: This rank (rank 0's reference is the common one).
        """
        assert self.ref is not None
        common = reduce(self.ref.clone() if rank == 0 else torch.zeros_like(self.ref))
        d = self.ref - common
        counts = self.examples.to(device=self.H.device, dtype=self.dtype)
        extra = 2.0 * (self.H @ d) + counts * (d @ d)
        self.sq += extra.cpu().double()
        self.H += counts[:, None] * d
        self.ref = common
        self.H = reduce(self.H)
        scalars = reduce(torch.cat([self.sq, self.examples, self.units]).to(self.H.device)).cpu()
        self.sq, self.examples, self.units = scalars.double().split(len(self.units))

    def sums(self) -> GroupSums:
        """The :class:`GroupSums` of what was consumed (and combined).

        Returns:
            The per-group sums as float64 arrays.
        """
        ref = self.ref
        assert ref is not None
        H = self.H
        return GroupSums(
            gram=(H @ H.T).cpu().double().numpy(),
            r_dot=(H @ ref).cpu().double().numpy(),
            r_sq=float(ref.cpu().double() @ ref.cpu().double()),
            sq=self.sq.numpy(),
            examples=self.examples.numpy(),
            units=self.units.numpy(),
        )


@dataclass(frozen=True)
class GroupSums:
    """Per-group sums, from which any union of groups' estimates follows exactly.

    With a reference vector :math:`r` and :math:`h_u = g_u - r` (the shift keeps the
    subtraction below well conditioned): ``gram[j, k]`` is :math:`H_j^\\top H_k` with
    :math:`H_k = \\sum_{u \\in k} n_u h_u`, ``r_dot[k]`` is :math:`r^\\top H_k`,
    ``sq[k]`` is :math:`\\sum_{u\\in k} n_u \\lVert h_u\\rVert^2`, ``examples[k]`` and
    ``units[k]`` count examples and units.
    """

    gram: np.ndarray
    r_dot: np.ndarray
    r_sq: float
    sq: np.ndarray
    examples: np.ndarray
    units: np.ndarray

    def estimate(self, keep: np.ndarray) -> tuple[float, float, float, float]:
        """``(tr Σ, |G|² unbiased, B_simple, |ḡ|²)`` from the groups in ``keep``."""
        n = float(self.examples[keep].sum())
        k = float(self.units[keep].sum())
        hh = float(self.gram[np.ix_(keep, keep)].sum())
        rh = float(self.r_dot[keep].sum())
        spread = max(float(self.sq[keep].sum()) - hh / n, 0.0)  # sum n_u |g_u - g_bar|^2
        trace = spread / (k - 1.0) if k > 1 else math.nan
        plug_in = self.r_sq + 2.0 * rh / n + hh / (n * n)
        g2 = plug_in - trace / n
        b = trace / g2 if g2 > 0 else math.inf
        return trace, g2, b, plug_in


def jackknife(sums: GroupSums) -> tuple[float, float, float]:
    """Delete-a-group jackknife standard errors of ``(tr Σ, |G|², B_simple)``."""
    m = len(sums.units)
    total_units = int(sums.units.sum())
    if m < 2 or any(total_units - int(u) < 2 for u in sums.units):
        return math.nan, math.nan, math.nan
    rows = []
    for k in range(m):
        keep = np.ones(m, dtype=bool)
        keep[k] = False
        rows.append(sums.estimate(keep)[:3])
    values = np.asarray(rows, dtype=np.float64)
    out = []
    for col in values.T:
        if not np.isfinite(col).all():
            out.append(math.nan)
            continue
        out.append(float(math.sqrt((m - 1) / m * np.sum((col - col.mean()) ** 2))))
    return out[0], out[1], out[2]
