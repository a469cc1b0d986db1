"""grouping_fits: variance shares and the lack-of-fit F test with seeds as pure error."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.stats

from flatness.report.variance_shares import grouping_fits


def _grid(seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    batch = np.repeat([16, 32, 64, 16, 32, 64], 4)
    ratio = np.repeat([1, 1, 1, 2, 2, 2], 4)
    cells = np.repeat(np.arange(6), 4)
    noise = rng.normal(0.0, 0.1, size=24)
    return {"batch": batch, "ratio": ratio, "cells": cells, "noise": noise}


def test_a_constant_grouping_is_one_way_anova_over_the_cells() -> None:
    g = _grid()
    y = g["noise"] + g["ratio"] + 0.05 * g["batch"] / 16
    (fit,) = grouping_fits(y, {"none": np.zeros(24)}, g["cells"])
    groups = [y[g["cells"] == c] for c in range(6)]
    expected = scipy.stats.f_oneway(*groups)
    assert fit.share == pytest.approx(0.0, abs=1e-12)
    assert fit.f == pytest.approx(expected.statistic)
    assert fit.p_value == pytest.approx(expected.pvalue)
    assert (fit.df_lack, fit.df_error, fit.n, fit.levels) == (5, 18, 24, 1)


def test_shares_are_the_level_means_r_squared() -> None:
    g = _grid(1)
    y = g["noise"] + g["ratio"]
    ratio, batch = grouping_fits(y, {"η/B": g["ratio"], "B": g["batch"]}, g["cells"])
    total = ((y - y.mean()) ** 2).sum()
    means = {r: y[g["ratio"] == r].mean() for r in (1, 2)}
    within = sum(((y[g["ratio"] == r] - m) ** 2).sum() for r, m in means.items())
    assert ratio.share == pytest.approx(1 - within / total)
    assert ratio.share > 0.9 > 0.1 > batch.share
    # y depends on the ratio only: its lack of fit is seed noise, B's is not
    assert ratio.p_value > 0.01
    assert batch.p_value < 1e-6
    assert ratio.cell_share >= ratio.share


def test_non_finite_runs_are_dropped() -> None:
    g = _grid(2)
    y = g["noise"] + g["ratio"]
    y[0] = np.nan
    (fit,) = grouping_fits(y, {"η/B": g["ratio"]}, g["cells"])
    assert fit.n == 23 and fit.df_error == 23 - 6


def test_cells_must_nest_in_each_grouping() -> None:
    g = _grid()
    with pytest.raises(ValueError, match="span two levels"):
        grouping_fits(g["noise"], {"seed": np.tile([0, 1, 2, 3], 6)}, g["cells"])
    with pytest.raises(ValueError, match="labels"):
        grouping_fits(g["noise"], {"B": g["batch"][:-1]}, g["cells"])


def test_no_replicates_give_no_test() -> None:
    (fit,) = grouping_fits([1.0, 2.0, 3.0], {"B": [1, 1, 2]}, [0, 1, 2])
    assert np.isnan(fit.f) and np.isnan(fit.p_value) and fit.df_error == 0
