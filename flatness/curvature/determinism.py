"""The refusal of a random objective: two evaluations of one loss must agree.

A loss that changes between two evaluations at the same parameters (dropout left on, a
model with random layers, a stochastic loss) makes every curvature estimate and every
sharpness measure built on loss differences meaningless.
:meth:`~flatness.curvature.objective.Objective.check_determinism` evaluates the first
batch twice, once per objective, and :func:`require_same_loss` judges the two losses.
"""

from __future__ import annotations

import math

__all__ = ["require_same_loss"]


def require_same_loss(first: float, second: float, *, rtol: float) -> None:
    """Refuse two evaluations of the same loss that disagree, naming the likely causes.

    Args:
        first: The loss of the first evaluation.
        second: The loss of the second, at the same parameters on the same batch.
        rtol: Relative (and absolute) tolerance.

    Raises:
        FloatingPointError: If the loss is NaN or infinite.
        RuntimeError: If the two losses differ by more than ``rtol``.

    Examples:
        >>> require_same_loss(1.0, 1.0, rtol=1e-10)
    """
    if not math.isfinite(first):
        raise FloatingPointError(
            f"the loss is {first} at the given parameters: check the weights "
            "and the data for NaN/Inf or overflow"
        )
    if not math.isclose(first, second, rel_tol=rtol, abs_tol=rtol):
        raise RuntimeError(
            "the objective is not deterministic: two evaluations of the same batch at the "
            f"same parameters gave {first:.10g} and {second:.10g}. Likely causes: "
            "dropout or another random layer active (train_mode=True), or a stochastic "
            "loss. Curvature and sharpness measures need a fixed function: use "
            "train_mode=False (the default)."
        )
