r"""The Lanczos basis: how many vectors it holds, where it lives, how it is restarted.

A thick-restart Lanczos run (:mod:`flatness.curvature.thick_restart`) holds a basis of
``m`` vectors of the operator's dimension; for a network that is ``m`` copies of the
model, the largest memory the eigensolver itself needs. :func:`plan_basis` chooses
``m`` from ``k`` and the memory budget and the device the basis is kept on (the
operator's, or the host's when the operator is on an accelerator and the basis would
crowd it); :func:`restart_in_place` rotates the basis to the kept Ritz vectors without
a second copy of it.

The rule (:func:`default_basis_size`, then :func:`plan_basis`):

1. ``m = 2k + 10``, capped at the dimension: the ``k`` wanted vectors, as many again
   kept as a buffer at a restart, and ten more for the restart's polynomial filter
   (Wu & Simon 2000 keep about half the basis). Top-1 holds 12 vectors.
2. With an explicit memory budget
   (:attr:`~flatness.curvature.options.HessianOptions.memory_budget`), the basis and
   the ``k`` Ritz vectors returned, :math:`(m + k)\,n` numbers, may take at most half
   of it; a larger ``m`` is cut down to fit, to no fewer than ``k + 2`` vectors (the
   least a thick restart works with), so ``memory_budget=0`` asks for the least
   memory: no retained graph and ``k + 2`` vectors. The default budget
   (:func:`~flatness.curvature.graph_memory.default_memory_budget`, a share of the
   memory free at the time) never cuts ``m``: the size changes the products' last
   bits, which must not depend on what else the machine holds. Either way the retained
   gradient graphs get what the basis leaves of the budget when both share a device.
3. For ``k >= 2`` the products :math:`W = A V` are kept beside the basis (``m``
   vectors more), so that the ``k`` residuals are measured from them instead of ``k``
   more products (:func:`~flatness.curvature.thick_restart.lanczos_eigenpairs`);
   under an explicit budget only where both fit in its half. Top-1 keeps none: its
   verification is one product.
4. ``basis_device="auto"`` keeps the basis on the operator's device, unless the
   operator is on an accelerator and the basis of step 1 does not fit in its half of
   the budget there: then the basis lives in host memory (two vectors cross per
   product) with the host's budget. ``"cpu"`` keeps it on the host always,
   ``"operator"`` with the operator always.

References:
    K. Wu and H. Simon (2000). Thick-restart Lanczos method for large symmetric
    eigenvalue problems. SIAM J. Matrix Anal. Appl. 22(2), 602–616.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from flatness.curvature.graph_memory import default_memory_budget
from flatness.curvature.options import BasisDevice, check_basis_device

__all__ = [
    "BASIS_SHARE",
    "BasisPlan",
    "default_basis_size",
    "plan_basis",
    "restart_in_place",
]

#: The share of the memory budget the Lanczos basis (with the returned Ritz vectors)
#: may take; the retained graphs get the rest.
BASIS_SHARE = 0.5

_HOST = torch.device("cpu")


def default_basis_size(k: int, dim: int) -> int:
    """The thick-restart basis size for ``k`` eigenpairs, before any memory cap.

    Returns:
        ``2k + 10`` capped at ``dim`` (12 vectors for top-1, 20 for top-5).

    Examples:
        >>> default_basis_size(1, 1000), default_basis_size(5, 1000), default_basis_size(3, 7)
        (12, 20, 7)
    """
    return min(2 * k + 10, dim)


@dataclass(frozen=True)
class BasisPlan:
    """The basis a Lanczos run will hold.

    Attributes:
        size: The vectors in the basis, ``m``.
        device: Where the basis lives.
        nbytes: The bytes of the basis, the kept products and the ``k`` Ritz vectors.
        capped: Whether the memory budget made ``size`` smaller than asked.
        products: Whether the products :math:`A V` are kept beside the basis.
        graph_budget: The bytes left for retained gradient graphs on the operator's
            device (the budget less ``nbytes`` when the basis shares it), ``None``
            when no budget was given.
    """

    size: int
    device: torch.device
    nbytes: int
    capped: bool
    graph_budget: int | None
    products: bool = False

    def describe(self) -> dict[str, object]:
        """The plan as plain values, for a result's ``choices``.

        Returns:
            ``{"size", "device", "bytes", "capped", "products"}``.
        """
        return {
            "size": self.size,
            "device": str(self.device),
            "bytes": self.nbytes,
            "capped": self.capped,
            "products": self.products,
        }


def plan_basis(
    k: int,
    dim: int,
    *,
    dtype: torch.dtype,
    device: torch.device,
    budget: int | None = None,
    basis_device: BasisDevice = "auto",
    basis_size: int | None = None,
    cut: bool = True,
) -> BasisPlan:
    """Choose the basis size and device from ``k``, the dimension and the budget.

    Args:
        k: How many eigenpairs are wanted.
        dim: The operator's dimension.
        dtype: The operator's dtype (the basis's).
        device: The operator's device.
        budget: The memory budget in bytes on the operator's device (``None``: no cap
            and no budget to share; the default of an Objective's operator is
            :func:`~flatness.curvature.graph_memory.default_memory_budget`).
        basis_device: ``"auto"``, ``"cpu"`` or ``"operator"`` (see the module docs).
        basis_size: An explicit size; it is kept as given (capped at ``dim``), never cut
            by the budget.
        cut: Whether ``budget`` may cut the size (the caller's explicit budget); the
            default budget only shares what the basis leaves with the graphs.

    Returns:
        The :class:`BasisPlan`.

    Raises:
        ValueError: For an unknown ``basis_device``.

    Examples:
        >>> plan = plan_basis(1, 1000, dtype=torch.float32, device=torch.device("cpu"),
        ...                   budget=10 * 4000)
        >>> plan.size, plan.capped, plan.graph_budget
        (4, True, 20000)
        >>> plan_basis(1, 1000, dtype=torch.float32, device=torch.device("cpu")).size
        12
    """
    check_basis_device(basis_device)
    per_vector = dim * torch.empty((), dtype=dtype).element_size()
    wanted = default_basis_size(k, dim) if basis_size is None else min(int(basis_size), dim)
    accelerator = device.type != "cpu"
    if basis_device == "cpu" or (
        basis_device == "auto"
        and accelerator
        and budget is not None
        and (wanted + k) * per_vector > BASIS_SHARE * budget
    ):
        where = _HOST
    else:
        where = device
    on_operator = where == device or not accelerator
    room = budget if on_operator else default_memory_budget(_HOST)
    size, capped = wanted, False
    if basis_size is None and cut and room is not None:
        fits = int(BASIS_SHARE * room) // per_vector - k
        least = min(k + 2, dim)
        if fits < wanted:
            size, capped = max(fits, least), True
    products = k >= 2
    if products and cut and room is not None:
        products = (2 * size + k) * per_vector <= BASIS_SHARE * room
    nbytes = ((2 if products else 1) * size + k) * per_vector
    graph_budget = None if budget is None else (budget - nbytes if on_operator else budget)
    return BasisPlan(size, where, nbytes, capped, graph_budget, products)


def restart_in_place(V: Tensor, s: int, coeffs: Tensor, *, chunk_bytes: int = 1 << 24) -> None:
    """Overwrite the leading columns of ``V`` with ``V[:, :s] @ coeffs``, slab by slab.

    A thick restart replaces the basis by ``l`` Ritz vectors :math:`V_s S_l`. Computed
    at once that is a second ``(dim, l)`` array next to the basis; here the rows are
    rotated in slabs of about ``chunk_bytes``, so the restart needs no more than one
    slab beyond the basis. Each row of the result depends only on the same row of
    ``V``, so the slabs give the same numbers as the whole product.

    Args:
        V: The basis, ``(dim, m)``, updated in place.
        s: The columns in use.
        coeffs: The coefficients ``(s, l)`` of the kept Ritz vectors, on ``V``'s device
            and dtype, ``l <= s``.
        chunk_bytes: The size of a slab.

    Examples:
        >>> V = torch.eye(3, dtype=torch.float64)
        >>> restart_in_place(V, 3, torch.tensor([[0.0], [1.0], [0.0]], dtype=torch.float64))
        >>> V[:, 0].tolist()
        [0.0, 1.0, 0.0]
    """
    n, keep = V.shape[0], coeffs.shape[1]
    rows = max(1, chunk_bytes // max(1, s * V.element_size()))
    for lo in range(0, n, rows):
        hi = min(n, lo + rows)
        V[lo:hi, :keep] = V[lo:hi, :s] @ coeffs
