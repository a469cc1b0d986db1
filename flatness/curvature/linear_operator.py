"""The contract of the linear operators that the curvature algorithms multiply with.

The algorithms (Lanczos, power iteration, Hutchinson, Hutch++, stochastic Lanczos
quadrature) only need a symmetric operator that multiplies flat vectors. This module
defines that contract (:class:`SymmetricOperator`, and :data:`Target`, what the
estimators take), a dense reference operator for tests and known spectra
(:class:`DenseOperator`) and a scipy view of any operator (:func:`to_scipy`). It knows
no concrete Hessian: :class:`~flatness.curvature.hessian.HessianOperator` implements
the contract, and :mod:`flatness.curvature.operator` turns an Objective into one.

Vectors are 1-D tensors of length ``dim`` (blocks are ``(dim, k)``) on the operator's
device and dtype; nothing here assumes CPU or CUDA.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol, TypeAlias, Union, runtime_checkable

import numpy as np
import torch
from torch import Tensor

__all__ = ["DenseOperator", "SymmetricOperator", "Target", "to_scipy"]

if TYPE_CHECKING:
    from scipy.sparse.linalg import LinearOperator

    from flatness.curvature.objective import Objective


@runtime_checkable
class SymmetricOperator(Protocol):
    """A symmetric linear map on flat vectors, counting the products it performs."""

    @property
    def dim(self) -> int:
        """The number of rows (and columns)."""
        ...

    @property
    def device(self) -> torch.device: ...

    @property
    def dtype(self) -> torch.dtype: ...

    @property
    def matvecs(self) -> int:
        """Matrix-vector products performed so far (a ``(dim, k)`` block counts k)."""
        ...

    def matvec(self, v: Tensor) -> Tensor:
        """Multiply one vector.

        Returns:
            ``A @ v`` for a vector of shape ``(dim,)``.
        """
        ...

    def matmat(self, V: Tensor) -> Tensor:
        """Multiply a block of vectors.

        Returns:
            ``A @ V`` for a block of shape ``(dim, k)``.
        """
        ...


#: What the curvature estimators take first: an objective (a fresh Hessian operator is
#: built and closed around the call) or an operator the caller owns.
Target: TypeAlias = Union["Objective", SymmetricOperator]


class DenseOperator:
    """A symmetric operator backed by an explicit matrix (tests, known spectra).

    Args:
        matrix: A square symmetric tensor (or array); it is symmetrized as
            ``(A + A^T) / 2`` to remove round-off asymmetry.
        device: Where to keep it (default: the tensor's device).
        dtype: Its dtype (default: the tensor's, or float64 for arrays).

    Raises:
        ValueError: If ``matrix`` is not square.

    Examples:
        >>> A = DenseOperator(torch.diag(torch.tensor([3.0, 1.0])))
        >>> A.matvec(torch.tensor([1.0, 1.0]))
        tensor([3., 1.])
        >>> A.matvecs
        1
    """

    def __init__(
        self,
        matrix: Tensor | np.ndarray,
        *,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        A = torch.as_tensor(matrix)
        if A.ndim != 2 or A.shape[0] != A.shape[1]:
            raise ValueError(f"DenseOperator needs a square matrix, got shape {tuple(A.shape)}")
        A = A.to(device=device, dtype=dtype or (A.dtype if A.is_floating_point() else None))
        if not A.is_floating_point():
            A = A.to(torch.float64)
        self.matrix = (A + A.T) / 2
        self._matvecs = 0

    @classmethod
    def from_spectrum(
        cls,
        eigenvalues: Tensor | np.ndarray | list[float],
        *,
        seed: int = 0,
        dtype: torch.dtype = torch.float64,
        device: torch.device | str | None = None,
    ) -> DenseOperator:
        """Build ``Q diag(eigenvalues) Q^T`` with a seeded random orthogonal ``Q``.

        Returns:
            The operator, with exactly the given spectrum.
        """
        lam = torch.as_tensor(eigenvalues, dtype=dtype)
        n = lam.numel()
        gen = torch.Generator().manual_seed(seed)
        Q, R = torch.linalg.qr(torch.randn(n, n, generator=gen, dtype=dtype))
        Q = Q * torch.sign(torch.diagonal(R))
        return cls((Q * lam) @ Q.T, device=device, dtype=dtype)

    @property
    def dim(self) -> int:
        return int(self.matrix.shape[0])

    @property
    def device(self) -> torch.device:
        return self.matrix.device

    @property
    def dtype(self) -> torch.dtype:
        return self.matrix.dtype

    @property
    def matvecs(self) -> int:
        return self._matvecs

    def matvec(self, v: Tensor) -> Tensor:
        """Multiply one vector.

        Returns:
            ``A @ v``.
        """
        self._matvecs += 1
        return self.matrix @ v.to(self.matrix.dtype)

    def matmat(self, V: Tensor) -> Tensor:
        """Multiply a block of vectors (counted as ``k`` products).

        Returns:
            ``A @ V``.
        """
        self._matvecs += int(V.shape[1])
        return self.matrix @ V.to(self.matrix.dtype)

    def close(self) -> None:
        """Nothing to free; present so every operator can be closed alike."""

    def __repr__(self) -> str:
        return f"DenseOperator(dim={self.dim}, dtype={self.dtype}, device={self.device})"


def to_scipy(op: SymmetricOperator) -> LinearOperator:
    """A float64 :class:`scipy.sparse.linalg.LinearOperator` view of ``op``.

    Vectors cross to the operator's device and dtype and back to NumPy on the host,
    so scipy solvers (``eigsh``, ``cg``, ``minres``) can drive any operator.

    Returns:
        A ``(dim, dim)`` linear operator with ``matvec``, ``rmatvec`` and ``matmat``.
    """
    from scipy.sparse.linalg import LinearOperator

    def _mv(x: np.ndarray) -> np.ndarray:
        x = np.asarray(x)
        t = torch.as_tensor(x.reshape(-1), dtype=op.dtype, device=op.device)
        return op.matvec(t).detach().cpu().double().numpy()

    def _mm(X: np.ndarray) -> np.ndarray:
        T = torch.as_tensor(np.asarray(X), dtype=op.dtype, device=op.device)
        return op.matmat(T).detach().cpu().double().numpy()

    return LinearOperator((op.dim, op.dim), matvec=_mv, rmatvec=_mv, matmat=_mm, dtype=np.float64)
