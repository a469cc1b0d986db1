"""Sharpness, flatness and landscape measures evaluated on an :class:`~flatness.Objective`.

Each measure is a plain function taking the objective (or models and data, for
landscapes) first and keyword-only settings after it, and returning a frozen result
dataclass with its value, settings, seconds, evaluations and, where it applies, an
error bar.
"""

from flatness.sharpness.keskar import KESKAR_EPS, KeskarResult, keskar_sharpness, random_subspace

__all__ = [
    # Keskar et al. (2017) epsilon-sharpness
    "KESKAR_EPS",
    "KeskarResult",
    "keskar_sharpness",
    "random_subspace",
]
