r"""How much of an outcome's variance a grouping of the runs explains, and whether it is all.

A grid study (batch size × learning rate, say) trains every cell with several seeds.
Each candidate explanation is a *grouping* of the cells: "only η/B matters" groups the
cells by η/B, "only B matters" by B. For a grouping g with :math:`k_g` levels,

.. math::
    R^2_g = 1 - \frac{\mathrm{SS}_{\mathrm{within}\,g}}{\mathrm{SS}_{\mathrm{total}}},

the share of the variance across runs that the level means explain (one-way ANOVA's
η², Fisher 1925). The cells' own means explain at most :math:`R^2_{\mathrm{cell}}`; the
rest is the seeds' spread. Whether a grouping leaves out something real is the
lack-of-fit F test with the seeds as pure error (Fisher 1922; Draper & Smith 1998,
§2.1):

.. math::
    F = \frac{(\mathrm{SS}_{\mathrm{within}\,g} - \mathrm{SS}_{\mathrm{within\,cell}})
              / (k_{\mathrm{cell}} - k_g)}
             {\mathrm{SS}_{\mathrm{within\,cell}} / (n - k_{\mathrm{cell}})},

F-distributed with :math:`(k_{\mathrm{cell}} - k_g,\ n - k_{\mathrm{cell}})` degrees of
freedom when the cells of a level share one mean and the seeds' deviations are
independent normal with one variance. Seeds that share an initialization across cells
are not independent; the p-value is then approximate (the caller says so).

References:
    R. A. Fisher (1922). The goodness of fit of regression formulae, and the
    distribution of regression coefficients. J. R. Stat. Soc. 85(4), 597–612.

    R. A. Fisher (1925). Statistical Methods for Research Workers. Oliver and Boyd.

    N. R. Draper and H. Smith (1998). Applied Regression Analysis, 3rd ed. Wiley.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy.stats
from numpy.typing import ArrayLike

from flatness.results import PlainData

__all__ = ["GroupingFit", "grouping_fits"]


@dataclass(frozen=True)
class GroupingFit(PlainData):
    """How well one grouping of the cells explains an outcome.

    Attributes:
        name: The grouping's name (``"η/B"``).
        levels: Its number of levels among the finite values.
        share: :math:`R^2_g`, the share of the variance its level means explain.
        cell_share: :math:`R^2_{\\mathrm{cell}}`, the share the cells' means explain
            (the most any grouping of the cells can explain).
        f: The lack-of-fit F statistic (NaN without a spare degree of freedom).
        df_lack: Its numerator degrees of freedom, :math:`k_{\\mathrm{cell}} - k_g`.
        df_error: Its denominator degrees of freedom, :math:`n - k_{\\mathrm{cell}}`.
        p_value: P(F ≥ f) under "the cells of a level share one mean" (NaN when
            undefined).
        n: Runs with a finite outcome.
    """

    name: str
    levels: int
    share: float
    cell_share: float
    f: float
    df_lack: int
    df_error: int
    p_value: float
    n: int


def _within(y: pd.Series, labels: pd.Series) -> float:
    """The sum of squares of y about the mean of its label."""
    return float(((y - y.groupby(labels).transform("mean")) ** 2).sum())


def grouping_fits(
    y: ArrayLike, groupings: Mapping[str, ArrayLike], cells: ArrayLike
) -> list[GroupingFit]:
    """The share of y's variance each grouping explains, and its lack-of-fit test.

    Args:
        y: The outcome per run (test accuracy, a measure, ...); non-finite runs are
            dropped.
        groupings: Name → a level per run; every cell must lie within one level.
        cells: The cell per run (the finest grouping: the seeds of a cell are its
            replicates).

    Returns:
        One :class:`GroupingFit` per grouping, in the order given.

    Raises:
        ValueError: If the lengths differ, or a cell spans two levels of a grouping.

    Examples:
        >>> y = [1.0, 1.2, 3.0, 3.2, 1.1, 1.3, 2.9, 3.1]
        >>> cell = ["a", "a", "b", "b", "c", "c", "d", "d"]
        >>> ratio = [1, 1, 2, 2, 1, 1, 2, 2]
        >>> batch = [16, 16, 16, 16, 32, 32, 32, 32]
        >>> fits = grouping_fits(y, {"η/B": ratio, "B": batch}, cell)
        >>> [(f.name, round(f.share, 3), f.df_lack, f.df_error) for f in fits]
        [('η/B', 0.986, 2, 4), ('B', 0.0, 2, 4)]
        >>> fits[0].p_value > 0.05, fits[1].p_value < 0.001
        (True, True)
    """
    values = pd.Series(np.asarray(y, dtype=float))
    cell = pd.Series(np.asarray(cells, dtype=object)).astype(str)
    frame = {
        name: pd.Series(np.asarray(g, dtype=object)).astype(str) for name, g in groupings.items()
    }
    for name, labels in [("cells", cell), *frame.items()]:
        if len(labels) != len(values):
            raise ValueError(f"{name}: {len(labels)} labels for {len(values)} outcomes")
    keep = np.isfinite(values.to_numpy())
    values, cell = values[keep], cell[keep]
    n = len(values)
    total = float(((values - values.mean()) ** 2).sum()) if n else float("nan")
    cell_ss = _within(values, cell)
    k_cell = int(cell.nunique())
    cell_share = 1.0 - cell_ss / total if total > 0 else float("nan")
    fits = []
    for name, labels in frame.items():
        labels = labels[keep]
        spanning = (pd.DataFrame({"c": cell, "g": labels}).groupby("c")["g"].nunique() > 1).sum()
        if spanning:
            raise ValueError(f"{name}: {spanning} cells span two levels; cells must nest in it")
        k = int(labels.nunique())
        ss = _within(values, labels)
        df_lack, df_error = k_cell - k, n - k_cell
        f = p = float("nan")
        if df_lack > 0 and df_error > 0 and cell_ss > 0:
            f = ((ss - cell_ss) / df_lack) / (cell_ss / df_error)
            p = float(scipy.stats.f.sf(f, df_lack, df_error))
        share = 1.0 - ss / total if total > 0 else float("nan")
        fits.append(GroupingFit(name, k, share, cell_share, f, df_lack, df_error, p, n))
    return fits
