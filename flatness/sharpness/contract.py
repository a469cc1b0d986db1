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

Three small traits state, once each, what several results have in common:
:class:`ForwardPassesOnly` (no gradients; the cost is ``evaluations`` full-data forward
passes), :class:`NoConvergenceTest` (``converged`` is ``True``) and
:class:`NoErrorBar` (``stderr`` is NaN). They hold properties only, no fields, so they
can be mixed into the frozen result dataclasses.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, ClassVar

from flatness.results import Record, Result, gradient_equivalents

__all__ = ["ForwardPassesOnly", "NoConvergenceTest", "NoErrorBar", "SharpnessResult"]


class ForwardPassesOnly:
    """Trait of a result whose measure evaluates the loss only, never its gradient."""

    evaluations: int

    @property
    def gradients(self) -> int:
        """Gradient evaluations spent: none."""
        return 0

    @property
    def gradient_equivalents(self) -> float:
        """The cost in full gradients: ``evaluations`` full-data forward passes."""
        return gradient_equivalents(evaluations=self.evaluations)


class NoConvergenceTest:
    """Trait of a result computed in a fixed number of steps, with no convergence test."""

    @property
    def converged(self) -> bool:
        """``True``: the measure has no convergence test to fail."""
        return True


class NoErrorBar:
    """Trait of a result whose headline has no error bar."""

    @property
    def stderr(self) -> float:
        """NaN: the headline comes from deterministic evaluations, with no error bar."""
        return math.nan


@dataclass(frozen=True, eq=False)
class SharpnessResult(Result):
    """Base of the sharpness results (see the module doc).

    Subclasses supply the rest of the contract (``value``, ``stderr``, ``converged``,
    ``evaluations``, ``gradients``, ``gradient_equivalents``, ``seconds``,
    ``settings``) as fields or properties.
    """

    #: Whether the store's rows carry ``converged`` (see the module doc).
    stores_converged: ClassVar[bool] = False

    #: The fields that are the estimator's keyword arguments of the same name.
    setting_fields: ClassVar[tuple[str, ...]] = ()

    @property
    def matvecs(self) -> int:
        """Hessian-vector products spent: none, the sharpness measures use none."""
        return 0

    @property
    def settings(self) -> dict[str, Any]:
        """The keyword arguments that reproduce this result with its estimator.

        The values of the fields named in :attr:`setting_fields`.
        """
        return {name: getattr(self, name) for name in self.setting_fields}

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
