"""When a tracker measures: every N updates, every epoch, log-spaced, or within a budget.

A :class:`Cadence` is asked once per training step (:meth:`Cadence.due`). Counting
cadences (``every=N``, ``"log"`` and ``"budget"``) keep the next step that is due, so
a loop that calls the tracker only now and then (every few steps, or from a step other
than 0) still measures at the first call at or past each due step, once.

Log-spaced steps are :math:`0` and :math:`10^{i/d}` rounded to the nearest integer, for
:math:`i = 0, 1, \\dots` with :math:`d` points per decade (duplicates dropped), the
usual grid for quantities that change fast early in training and slowly later (e.g.
Cohen et al. 2021's sharpness curves, Smith et al. 2018's learning curves): a run of
:math:`T` updates is measured about :math:`d \\log_{10} T` times.

``"budget"`` (the default) keeps the tracker's share of the work below ``overhead``:
it measures at a log-spaced step only while the measurements so far cost at most
``overhead`` times the training so far, both counted in single-example gradients (a
training update of batch size :math:`B` costs :math:`B`; a measurement costs its
:attr:`~flatness.results.Result.gradient_equivalents` times the examples it was taken
on, :meth:`Cadence.charge`). The count is deterministic, so two runs of one seed
measure at the same steps, and every measured step lies on the log grid, so runs of
other seeds share most of them. Without the examples seen (no batch size given) it is
the plain log grid.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, field
from typing import Literal

__all__ = [
    "DEFAULT_EVERY",
    "DEFAULT_OVERHEAD",
    "DEFAULT_PER_DECADE",
    "Cadence",
    "Every",
    "log_spaced_after",
]

Every = int | Literal["epoch", "log", "budget"]
"""A cadence as the tracker takes it: a number of updates, ``"epoch"``, ``"log"`` or
``"budget"``."""

DEFAULT_PER_DECADE = 10
"""Log-spaced measurements per decade of steps."""

DEFAULT_EVERY: Every = "budget"
"""A tracker's cadence unless told: log-spaced steps within the ``overhead`` budget."""

DEFAULT_OVERHEAD = 0.1
"""The share of the training's work that ``every="budget"`` allows the measurements."""


def log_spaced_after(step: int, per_decade: int = DEFAULT_PER_DECADE) -> int:
    """The first log-spaced step after ``step``.

    Args:
        step: A step (``>= 0``).
        per_decade: Points per decade.

    Returns:
        The least :math:`s > \\text{step}` that is :math:`10^{i/d}` rounded (``i`` an
        integer).

    Examples:
        >>> s, seen = 0, [0]
        >>> while s < 40:
        ...     s = log_spaced_after(s, 5)
        ...     seen.append(s)
        >>> seen
        [0, 1, 2, 3, 4, 6, 10, 16, 25, 40]
    """
    i = max(0, math.floor(per_decade * math.log10(step)) if step > 0 else 0)
    while True:
        candidate = round(10 ** (i / per_decade))
        if candidate > step:
            return candidate
        i += 1


@dataclass
class Cadence:
    """Decides at each step whether a tracker measures.

    Args:
        every: ``N`` (a positive integer: steps 0, N, 2N, ...), ``"epoch"`` (at each
            call with ``epoch_end=True``), ``"log"`` (log-spaced steps) or ``"budget"``
            (log-spaced steps within ``overhead``; see the module doc).
        per_decade: Points per decade for ``"log"`` and ``"budget"``.
        overhead: The budget's share for ``"budget"``.

    Raises:
        ValueError: For another ``every``, a non-positive ``per_decade`` or
            ``overhead``.

    Examples:
        >>> c = Cadence(3)
        >>> [s for s in range(10) if c.due(s)]
        [0, 3, 6, 9]
        >>> c = Cadence("epoch")
        >>> c.due(5), c.due(6, epoch_end=True)
        (False, True)
        >>> c = Cadence("budget", overhead=0.5)   # measurements of 100 example-gradients
        >>> due = []
        >>> for step in range(41):   # 10 examples per update
        ...     if c.due(step, examples_seen=10 * step):
        ...         due.append(step)
        ...         c.charge(100.0)
        >>> due   # at most half of the training's 10 * step
        [0, 20, 40]
    """

    every: Every
    per_decade: int = DEFAULT_PER_DECADE
    overhead: float = DEFAULT_OVERHEAD
    _next: int = field(default=0, init=False, repr=False)
    _spent: float = field(default=0.0, init=False, repr=False)

    def __post_init__(self) -> None:
        ok = self.every in ("epoch", "log", "budget") or (
            isinstance(self.every, numbers.Integral)
            and not isinstance(self.every, bool)
            and int(self.every) >= 1
        )
        if not ok:
            raise ValueError(
                "every must be a positive number of updates, 'epoch', 'log' or 'budget', "
                f"got {self.every!r}"
            )
        if not (isinstance(self.overhead, numbers.Real) and self.overhead > 0):
            raise ValueError(f"overhead must be a positive share, got {self.overhead!r}")
        if not (isinstance(self.per_decade, numbers.Integral) and self.per_decade >= 1):
            raise ValueError(f"per_decade must be a positive integer, got {self.per_decade!r}")

    def due(self, step: int, *, epoch_end: bool = False, examples_seen: int | None = None) -> bool:
        """Whether to measure at ``step`` (and, if so, move on to the next due step).

        Args:
            step: Updates so far.
            epoch_end: Whether this call ends an epoch.
            examples_seen: Training examples seen so far (for ``"budget"``).

        Returns:
            True when a measurement is due.
        """
        if self.every == "epoch":
            return epoch_end
        if step < self._next:
            return False
        if self.every in ("log", "budget"):
            self._next = log_spaced_after(step, self.per_decade)
        else:
            n = int(self.every)
            self._next = (step // n + 1) * n
        if self.every == "budget" and examples_seen is not None:
            return self._spent <= self.overhead * examples_seen
        return True

    def charge(self, example_gradients: float) -> None:
        """Count a measurement's cost against the budget.

        Args:
            example_gradients: Its cost in single-example gradients.
        """
        self._spent += float(example_gradients)
