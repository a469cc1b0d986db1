"""The shared checks of the sharpness settings: one message style for every measure."""

from __future__ import annotations

import math
from typing import Any

import pytest

from flatness.sharpness import perturbations
from flatness.sharpness.checks import check_integer, check_nonnegative, check_norm, check_positive


@pytest.mark.parametrize(
    ("minimum", "message"),
    [(0, "a non-negative integer"), (1, "a positive integer"), (2, "an integer >= 2")],
)
def test_check_integer_names_the_requirement(minimum: int, message: str) -> None:
    assert check_integer("n", minimum, minimum=minimum) == minimum
    for bad in (minimum - 1, True, 2.0):
        with pytest.raises(ValueError, match=f"n must be {message}, got"):
            check_integer("n", bad, minimum=minimum)  # type: ignore[arg-type]


def test_real_number_checks() -> None:
    assert check_positive("rho", 2) == 2.0
    assert check_nonnegative("eta", 0) == 0.0
    for bad in (0.0, -1.0, math.inf, math.nan, True, "1"):
        with pytest.raises(ValueError, match=r"rho must be (a )?positive"):
            check_positive("rho", bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"eta must be a finite number >= 0 \(hint\)"):
        check_nonnegative("eta", -1.0, " (hint)")


def test_norms() -> None:
    twos: list[Any] = [2, 2.0, "l2", " L2 "]
    infinities: list[Any] = [math.inf, "inf", "linf"]
    assert [check_norm(p) for p in twos] == ["2"] * 4
    assert [check_norm(p) for p in infinities] == ["inf"] * 3
    for bad in (1, "l1", True):
        with pytest.raises(ValueError, match="p must be 2"):
            check_norm(bad)  # type: ignore[arg-type]


def test_old_import_path_of_the_checks() -> None:
    assert perturbations.check_positive is check_positive
    assert perturbations.check_norm is check_norm
