"""What the sharpness results share on top of the result contract.

Every sharpness, flatness and landscape measure evaluates the loss (and sometimes its
gradient) at perturbed parameters; none multiplies by the Hessian. :class:`SharpnessResult`
says so once (``matvecs`` is 0) and decides which rows keep a convergence flag in the
results store: only a measure whose ``converged`` is its own accuracy test (PAC-Bayes
flatness: the bisection met ``rtol``) stores it. For the others ``converged`` is either
``True`` (no such notion) or, for Keskar's ε-sharpness, the solver's ``success``, which
is ``False`` whenever L-BFGS-B stops at the paper's budget of 10 iterations — normal,
and not a sign that the value is wrong; their rows keep no flag (``None``), as they
always have, so a report does not list them as not converged.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import ClassVar

from flatness.results import Record, Result

__all__ = ["SharpnessResult"]


@dataclass(frozen=True, eq=False)
class SharpnessResult(Result):
    """Base of the sharpness results (see the module doc).

    Subclasses supply the rest of the contract (``value``, ``stderr``, ``converged``,
    ``evaluations``, ``gradients``, ``gradient_equivalents``, ``seconds``,
    ``settings``) as fields or properties.
    """

    #: Whether the store's rows carry ``converged`` (see the module doc).
    stores_converged: ClassVar[bool] = False

    @property
    def matvecs(self) -> int:
        """Hessian-vector products spent: none, the sharpness measures use none."""
        return 0

    def records(self) -> list[Record]:
        """The rows this result contributes to the results store.

        Returns:
            :meth:`Result.records`, with the convergence flag left out (``None``) unless
            :attr:`stores_converged`.
        """
        rows = super().records()
        if self.stores_converged:
            return rows
        return [dataclasses.replace(row, converged=None) for row in rows]
