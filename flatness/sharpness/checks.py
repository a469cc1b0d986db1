"""Validation of the settings that the sharpness measures share.

Every measure checks its keyword arguments before it spends an evaluation, with one
message style: the name of the setting, what it must be, and the value it got.
"""

from __future__ import annotations

import math
import numbers
from typing import Literal, TypeAlias

__all__ = [
    "Norm",
    "NormSpec",
    "check_integer",
    "check_nonnegative",
    "check_norm",
    "check_positive",
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
