"""Validation of the settings and the objective that the sharpness measures share.

Every measure checks its keyword arguments before it spends an evaluation, with one
message style: the name of the setting, what it must be, and the value it got.

Every measure built on loss differences also refuses an objective whose loss is not a
fixed function of the parameters (dropout or another random layer active with
``train_mode=True``, a stochastic loss) with :func:`require_deterministic`, called at
the estimator's entry: Keskar's ε-sharpness, adaptive and average sharpness, PAC-Bayes
flatness and the 2-D landscape. Their differences of two losses would otherwise
measure the randomness (a positive "sharpness" at a minimum, a negative average). The
message is the curvature functions' (:meth:`~flatness.Objective.check_determinism`),
prefixed with the measure's name. A training-mode objective without random layers
(BatchNorm with batch statistics) is deterministic and accepted.

The gradient noise scale (:func:`~flatness.sharpness.gradient_noise_scale`) does not
call it: it measures the spread of gradients, and with ``method="batches"`` the
randomness of a training-mode objective (dropout masks) is part of the training
gradient noise it estimates; ``method="examples"`` needs an eval-mode objective and
says so itself. The interpolation measures build no objective and evaluate in
``eval()`` mode.
"""

from __future__ import annotations

import math
import numbers
from typing import TYPE_CHECKING, Literal, TypeAlias

if TYPE_CHECKING:
    from flatness.curvature.objective import Objective

__all__ = [
    "Norm",
    "NormSpec",
    "check_integer",
    "check_nonnegative",
    "check_norm",
    "check_positive",
    "require_deterministic",
]

Norm: TypeAlias = Literal["2", "inf"]
"""The norm of a perturbation ball, as results record it."""

NormSpec: TypeAlias = float | Literal["2", "inf", "l2", "linf"]
"""What a caller may pass for a norm: ``2``, ``float("inf")`` or one of the strings."""


def check_positive(name: str, value: float) -> float:
    """Check that a setting is a positive, finite number.

    Returns:
        ``value`` as a float.

    Raises:
        ValueError: Unless ``value`` is a real number (not a bool), finite and ``> 0``.

    Examples:
        >>> check_positive("rho", 1)
        1.0
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"{name} must be a positive number, got {value!r}")
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be positive and finite, got {value!r}")
    return float(value)


def check_nonnegative(name: str, value: float, hint: str = "") -> float:
    """Check that a setting is a finite number ``>= 0``.

    Args:
        name: The setting's name, for the message.
        value: Its value.
        hint: Appended to the requirement in the message.

    Returns:
        ``value`` as a float.

    Raises:
        ValueError: Unless ``value`` is a real number (not a bool), finite and ``>= 0``.
    """
    if (
        isinstance(value, bool)
        or not isinstance(value, numbers.Real)
        or not (math.isfinite(value) and value >= 0)
    ):
        raise ValueError(f"{name} must be a finite number >= 0{hint}, got {value!r}")
    return float(value)


def check_integer(name: str, value: int, *, minimum: int) -> int:
    """Check that a setting is an integer of at least ``minimum``.

    Returns:
        ``value``.

    Raises:
        ValueError: Unless ``value`` is an ``int`` (not a bool) and ``>= minimum``.

    Examples:
        >>> check_integer("steps", 3, minimum=1)
        3
        >>> check_integer("steps", 0, minimum=1)
        Traceback (most recent call last):
        ...
        ValueError: steps must be a positive integer, got 0
    """
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        what = {0: "a non-negative integer", 1: "a positive integer"}.get(
            minimum, f"an integer >= {minimum}"
        )
        raise ValueError(f"{name} must be {what}, got {value!r}")
    return value


def check_norm(p: NormSpec) -> Norm:
    """Normalize the norm of a perturbation ball to ``"2"`` or ``"inf"``.

    Returns:
        ``"2"`` or ``"inf"``.

    Raises:
        ValueError: For any other norm.

    Examples:
        >>> check_norm(2), check_norm("inf"), check_norm(float("inf"))
        ('2', 'inf', 'inf')
    """
    if isinstance(p, str) and p.strip().lower() in ("2", "l2"):
        return "2"
    if isinstance(p, str) and p.strip().lower() in ("inf", "linf"):
        return "inf"
    if isinstance(p, numbers.Real) and not isinstance(p, bool):
        if float(p) == 2.0:
            return "2"
        if float(p) == math.inf:
            return "inf"
    raise ValueError(f'p must be 2 or "inf" (the l2 or l-infinity ball), got {p!r}')


def require_deterministic(obj: Objective, measure: str) -> None:
    r"""Refuse an objective whose loss changes between two evaluations at one point.

    Evaluates the objective's first batch twice at :math:`\theta_0` (two forward
    passes, not counted in the measure's cost) with
    :meth:`~flatness.Objective.check_determinism`. Under a process group each rank
    checks its own first batch and all ranks raise when one fails
    (:func:`~flatness.sharpness.ranks.agree_on_error`).

    Args:
        obj: The objective the measure is about to evaluate.
        measure: The measure's name, put in front of the message.

    Raises:
        RuntimeError: If the two evaluations differ: the curvature functions' message
            ("the objective is not deterministic ... dropout ... use train_mode=False"),
            prefixed with ``measure``.
        FloatingPointError: If the loss at :math:`\theta_0` is NaN or infinite.
    """
    from flatness.sharpness.ranks import agree_on_error  # ranks imports the objective

    try:
        agree_on_error(obj, obj.check_determinism)
    except FloatingPointError as err:
        raise FloatingPointError(f"{measure}: {err}") from None
    except RuntimeError as err:
        raise RuntimeError(f"{measure}: {err}") from None
