"""The rules every figure of a report follows: regime colours and axis scales.

One place decides, so a regime has one colour in every figure of a report and every
axis is scaled and ticked alike:

- :func:`regime_colors` -- a qualitative palette in a fixed order (seaborn's
  colour-blind palette, Okabe-Ito-like; evenly spaced hues in an interleaved order
  beyond ten): neighbouring regimes, in batch-size or study order, get clearly
  different hues, never the near-alike shades of a sequential map;
- :func:`log_scale` -- an axis is logarithmic when its positive values span more than
  :data:`DECADES` decades (batch sizes, updates, examples, λ, ε-sharpness alike), else
  linear;
- :func:`style_axis` -- applies that decision (or a caller's) with enough labelled
  ticks: 1-2-5 on a log axis spanning under two decades, each decade (minor ticks
  unlabelled) over more, at least two labels always; linear axes get up to six ticks in
  plain or scientific notation.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
import seaborn as sns
from matplotlib.figure import Figure
from matplotlib.ticker import (
    FixedLocator,
    FuncFormatter,
    LogLocator,
    MaxNLocator,
    NullFormatter,
    NullLocator,
    ScalarFormatter,
)

__all__ = [
    "DECADES",
    "Colour",
    "legend_below",
    "log_scale",
    "regime_colors",
    "style_axis",
    "tick_text",
]

Colour = tuple[float, float, float]
"""An RGB colour, each channel in [0, 1]."""

DECADES = 2.0
"""An axis whose positive values span more decades than this is drawn on a log scale."""

QUALITATIVE = 10
"""How many regimes seaborn's colour-blind palette covers; more get interleaved hues."""

MAX_TICKS = 8
"""The most labelled ticks an axis of given tick values (batch sizes) shows."""


def regime_colors(regimes: Sequence[str]) -> dict[str, Colour]:
    """One colour per regime, by position in ``regimes`` (batch-size or study order).

    Up to ten regimes take seaborn's ``"colorblind"`` palette in its order (blue,
    orange, green, red, purple, brown, pink, grey, olive, cyan), so every two
    neighbours differ in hue. Beyond ten, hues evenly spaced on the HUSL circle are
    handed out in an interleaved order (0, 5, 1, 6, ... of ten), so neighbours stay
    about half the circle apart. Pass the same full list of a study's regimes to every
    figure of a report and a regime keeps its colour throughout.

    Args:
        regimes: The regimes, in the order to colour them (duplicates keep the colour
            of their first place).

    Returns:
        Regime → RGB colour.

    Examples:
        >>> colours = regime_colors(["SB", "LB"])
        >>> colours["SB"] != colours["LB"]
        True
    """
    names = list(dict.fromkeys(str(r) for r in regimes))
    n = len(names)
    if n <= QUALITATIVE:
        colours = [tuple(map(float, c)) for c in sns.color_palette("colorblind", QUALITATIVE)]
    else:
        hues = [tuple(map(float, c)) for c in sns.color_palette("husl", n)]
        half = math.ceil(n / 2)
        order = [i for pair in zip(range(half), range(half, n), strict=False) for i in pair]
        order += [i for i in range(n) if i not in order]
        colours = [hues[i] for i in order]
    return {name: (colours[i][0], colours[i][1], colours[i][2]) for i, name in enumerate(names)}


def _positive(values: Any) -> np.ndarray:
    array = np.asarray(values, dtype=float).ravel()
    return array[np.isfinite(array) & (array > 0)]


def log_scale(values: Any, *, zeros: Literal["linear", "drop"] = "linear") -> bool:
    """Whether an axis of ``values`` is drawn on a log scale.

    The rule: the finite positive values span more than :data:`DECADES` decades
    (max/min > 100). Finite values at or below zero make the axis linear
    (``zeros="linear"``, for a measure that can be negative) or are left out of the
    drawing (``zeros="drop"``, for a count such as updates that starts at 0).

    Args:
        values: The values on the axis.
        zeros: What values ≤ 0 mean for the decision.

    Returns:
        ``True`` for a log scale.

    Examples:
        >>> log_scale([20, 2500]), log_scale([32, 1024]), log_scale([0, 10, 5000])
        (True, False, False)
        >>> log_scale([0, 10, 5000], zeros="drop")
        True
    """
    array = np.asarray(values, dtype=float).ravel()
    finite = array[np.isfinite(array)]
    if zeros == "linear" and (finite <= 0).any():
        return False
    positive = _positive(finite)
    return bool(positive.size >= 2 and math.log10(positive.max() / positive.min()) > DECADES)


def tick_text(value: float) -> str:
    """A tick's label to three significant digits: plain digits from 10⁻⁴ to 10⁵, else
    scientific (``2e-05``, ``3e+06``).

    Returns:
        The label.

    Examples:
        >>> tick_text(0.05), tick_text(2000.0), tick_text(3e6), tick_text(2e-5)
        ('0.05', '2000', '3e+06', '2e-05')
        >>> tick_text(0.0009765625), tick_text(12345.0), tick_text(0.0)
        ('0.000977', '12300', '0')
    """
    if value == 0 or 1e-4 <= abs(value) < 1e5:
        return f"{float(f'{value:.3g}'):.10g}"
    return f"{value:.3g}"


def _log_ticks(lo: float, hi: float) -> list[float]:
    """Labelled ticks of a log axis over [lo, hi]: 1-2-5 (or 1 … 9) under two decades,
    else each decade; the two ends when nothing nicer lands inside."""
    first, last = math.floor(math.log10(lo)), math.ceil(math.log10(hi))
    tolerance = 1e-9 * hi

    def within(mantissas: Sequence[int]) -> list[float]:
        return [
            m * 10.0**k
            for k in range(first, last + 1)
            for m in mantissas
            if lo - tolerance <= m * 10.0**k <= hi + tolerance
        ]

    if math.log10(hi / lo) >= DECADES:
        ticks = within((1,))
        if len(ticks) >= 2:
            return ticks
    for mantissas in ((1, 2, 5), (1, 2, 3, 4, 5, 6, 7, 8, 9)):
        ticks = within(mantissas)
        if len(ticks) >= 2:
            return ticks
    return [float(f"{lo:.2g}"), float(f"{hi:.2g}")] if lo != hi else [lo]


def _spread(ticks: Sequence[float], log: bool) -> list[float]:
    """Given tick values thinned so labels do not overlap: at most :data:`MAX_TICKS`, each
    at least 1/12 of the span from the one kept before it (both ends kept)."""
    shown = sorted(set(float(t) for t in ticks if not log or t > 0))
    if len(shown) <= 2:
        return shown
    where = np.log10(shown) if log else np.asarray(shown)
    gap = (where[-1] - where[0]) / 12
    kept = [0]
    for i in range(1, len(shown)):
        if where[i] - where[kept[-1]] >= gap:
            kept.append(i)
    if kept[-1] != len(shown) - 1:
        kept[-1] = len(shown) - 1
    if len(kept) > MAX_TICKS:
        step = math.ceil(len(kept) / MAX_TICKS)
        kept = kept[::step] + ([kept[-1]] if kept[::step][-1] != kept[-1] else [])
    return [shown[i] for i in kept]


def style_axis(
    ax: Any,
    axis: Literal["x", "y"],
    values: Any,
    *,
    log: bool | None = None,
    ticks: Sequence[float] = (),
    label: str | None = None,
    zeros: Literal["linear", "drop"] = "linear",
) -> bool:
    """Scale and tick one axis of a panel by the house rules.

    Args:
        ax: The panel.
        axis: ``"x"`` or ``"y"``.
        values: The values drawn on that axis (they decide the scale and ticks).
        log: Force a log (``True``) or linear (``False``) scale; ``None`` decides by
            :func:`log_scale`. A log scale needs positive values: without any, the
            axis stays linear.
        ticks: Distinct values to label (batch sizes): labelled at those values, thinned
            where they would overlap, instead of the automatic ticks.
        label: The axis label (name and unit), if any.
        zeros: How values ≤ 0 count (see :func:`log_scale`).

    Returns:
        Whether the axis is on a log scale.
    """
    target = ax.xaxis if axis == "x" else ax.yaxis
    positive = _positive(values)
    use_log = log_scale(values, zeros=zeros) if log is None else bool(log)
    use_log = use_log and positive.size > 0
    if label is not None:
        (ax.set_xlabel if axis == "x" else ax.set_ylabel)(label)
    if use_log:
        (ax.set_xscale if axis == "x" else ax.set_yscale)("log")
        shown = _spread(ticks, True) if ticks else _log_ticks(positive.min(), positive.max())
        if not ticks and math.log10(positive.max() / positive.min()) > 6:
            target.set_major_locator(LogLocator(numticks=7))
        else:
            target.set_major_locator(FixedLocator(shown))
        target.set_minor_locator(LogLocator(subs=tuple(range(2, 10)), numticks=12))
        target.set_minor_formatter(NullFormatter())
        target.set_major_formatter(FuncFormatter(lambda v, _: tick_text(v)))
        return True
    (ax.set_xscale if axis == "x" else ax.set_yscale)("linear")
    target.set_minor_locator(NullLocator())
    if ticks:
        target.set_major_locator(FixedLocator(_spread(ticks, False)))
        target.set_major_formatter(FuncFormatter(lambda v, _: tick_text(v)))
    else:
        target.set_major_locator(MaxNLocator(6, steps=[1, 2, 2.5, 5, 10], min_n_ticks=3))
        target.set_major_formatter(ScalarFormatter())
        ax.ticklabel_format(axis=axis, style="sci", scilimits=(-3, 5))
    return False


def legend_below(
    fig: Figure, handles: Sequence[Any], *, title: str | None = None, columns: int = 5
) -> None:
    """The figure's one legend, centred below its panels, small and frameless.

    Args:
        fig: The figure (with a constrained layout, which makes room for the legend).
        handles: The legend's artists, each with its label.
        title: The legend's title (the grouping's name, say).
        columns: The most entries a row.
    """
    fig.legend(
        handles=list(handles),
        title=title,
        loc="outside lower center",
        ncols=max(1, min(len(handles), columns)),
        fontsize=7,
        title_fontsize=7,
        frameon=False,
    )
