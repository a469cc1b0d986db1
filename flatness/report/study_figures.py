"""Figures a study's answer draws from tidy frames: curves with seed bands, points by group.

A built-in study's answer function (``StudyPlan.answer``) reads its cases' stores into
tidy frames (one row per seed × x, say) and draws its overview figures with these two
helpers, so every study's figures follow the report's rules
(:mod:`~flatness.report.figure_style`): one colour per group from a qualitative palette
in the study's order, log axes where the data span more than two decades, enough
labelled ticks, and the numbers of seeds behind every band stated by the caller.

- :func:`curves_figure` -- ``y`` against ``x`` per group: the mean over seeds as a line
  and the min–max over seeds as a band (learning curves, sharpness against updates);
- :func:`points_figure` -- ``y`` against ``x`` per group: one small point per seed and
  the group's mean at each ``x`` as a large marker joined by a line (final accuracy
  against η/B or batch size, say).

Both draw one panel per value of an optional ``panel`` column, save the figure as a PNG
atomically (creating the folder) and return its path.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from flatness.report.figure_style import legend_below, log_scale, regime_colors, style_axis
from flatness.report.figures import panel_grid, save
from flatness.report.learning import trajectory

__all__ = ["LINE_STYLES", "curves_figure", "group_order", "points_figure"]

LINE_STYLES = ("-", "--", ":", "-.")
"""The line styles of the values of a ``style`` column, in order (train solid, test dashed)."""

MAX_TICKED = 12
"""An x axis of at most this many distinct values is labelled at those values."""


def group_order(frame: pd.DataFrame, group: str, order: Sequence[Any] | None = None) -> list[str]:
    """The groups of ``frame`` in drawing (and colour) order, as text.

    Args:
        frame: The data.
        group: The group column.
        order: The study's order of the groups (all of them, so that a group has the
            same colour in every figure); groups not in it follow, sorted.

    Returns:
        The group names present in ``frame``, ordered: by ``order``, then numerically
        when the values are numbers, else by name.

    Examples:
        >>> group_order(pd.DataFrame({"B": [256, 32, 1024]}), "B")
        ['32', '256', '1024']
    """
    values = frame[group].dropna().unique()
    if pd.api.types.is_numeric_dtype(frame[group]):
        values = np.sort(values)
        present = [str(v) for v in values]
    else:
        present = sorted(str(v) for v in values)
    named = [str(g) for g in order or ()]
    return [g for g in named if g in present] + [g for g in present if g not in named]


def _colours(frame: pd.DataFrame, group: str, order: Sequence[Any] | None) -> dict[str, Any]:
    named = [str(g) for g in order or ()]
    shown = group_order(frame, group, order)
    return regime_colors(named + [g for g in shown if g not in named])


def _grid(
    frame: pd.DataFrame, panel: str | None
) -> tuple[Figure, list[tuple[Any, str, pd.DataFrame]]]:
    """A figure of one panel per value of ``panel`` (one panel without): each panel's
    axes, name and rows, in order of first appearance."""
    if panel is None:
        parts = [("", frame)]
    else:
        names = list(dict.fromkeys(frame[panel].dropna().astype(str)))
        parts = [(name, frame[frame[panel].astype(str) == name]) for name in names]
    fig, axes = panel_grid(len(parts))
    fig.set_figwidth(max(fig.get_figwidth(), 6.4))
    return fig, [(ax, name, rows) for ax, (name, rows) in zip(axes, parts, strict=True)]


def _finish(
    fig: Figure,
    colours: dict[str, Any],
    group: str,
    extra: list[Line2D],
    title: str | None,
    path: Path,
) -> Path:
    """Add the legend (groups, then ``extra``) and the title; save the figure."""
    handles = [Line2D([], [], color=c, lw=2, label=g) for g, c in colours.items()] + extra
    legend_below(fig, handles, title=group, columns=8)
    if title:
        fig.suptitle(title, fontsize=10)
    return save(fig, path)


DODGE = 0.02
"""How far apart groups sharing an x are drawn, as a fraction of the x axis' span."""


def _dodge(
    rows: pd.DataFrame, x: str, group: str, log: bool, names: Sequence[str]
) -> dict[str, float]:
    """Each group's offset along x (in log10 units on a log axis): none unless two
    groups share an x value."""
    values = pd.to_numeric(rows[x], errors="coerce")
    shared = rows.assign(_x=values).groupby("_x")[group].nunique().gt(1).any()
    finite = values[np.isfinite(values) & ((values > 0) if log else True)].to_numpy(dtype=float)
    if not shared or finite.size == 0 or len(names) < 2:
        return {}
    where = np.log10(finite) if log else finite
    span = float(where.max() - where.min()) or 1.0
    width = min(DODGE, 5 * DODGE / (len(names) - 1)) * span  # all within ±5 DODGE
    return {g: (i - (len(names) - 1) / 2) * width for i, g in enumerate(names)}


def _moved(values: np.ndarray, step: float, log: bool) -> np.ndarray:
    return values * 10.0**step if log else values + step


def _ylabel(ylabel: str | None, panel: str, y: str) -> str:
    """The y label: the caller's, else none under a panel's title (it names the
    quantity), else the column's name."""
    if ylabel is not None:
        return ylabel
    return "" if panel else y


def _decide(values: pd.Series, forced: bool | None, zeros: Literal["linear", "drop"]) -> bool:
    if forced is not None:
        return forced
    return log_scale(pd.to_numeric(values, errors="coerce"), zeros=zeros)


def curves_figure(
    frame: pd.DataFrame,
    *,
    x: str,
    y: str,
    group: str,
    path: Path,
    seed: str = "seed",
    panel: str | None = None,
    style: str | None = None,
    order: Sequence[Any] | None = None,
    logx: bool | None = None,
    logy: bool | None = None,
    title: str | None = None,
    xlabel: str | None = None,
    ylabel: str | None = None,
) -> Path:
    """Draw ``y`` against ``x`` per group: the mean over seeds and the min–max band.

    At each ``x`` the seeds recorded there give the mean (line) and the band (their
    minimum to maximum; none with one seed). Non-finite ``y`` values are gaps. With
    ``x`` on a log scale, rows at ``x`` ≤ 0 (updates 0, say) are not drawn.

    Args:
        frame: Tidy data: one row per (group, seed, x[, panel][, style]).
        x: The x column (epochs, updates, examples seen, ...).
        y: The y column.
        group: The column whose values get one colour each (regime, schedule).
        path: The PNG to write (its folder is created).
        seed: The column of the seed (the band is over its values).
        panel: A column with one panel per value (a measure's name, say), in order of
            first appearance.
        style: A column whose values get the line styles of :data:`LINE_STYLES` in
            order of first appearance (``split``: train solid, test dashed, say).
        order: The study's order of the groups, for colours that match its other
            figures (see :func:`group_order`).
        logx: Force a log (``True``) or linear x axis; ``None`` applies the two-decade
            rule of :func:`~flatness.report.figure_style.log_scale` (zeros dropped).
        logy: The same for y (per panel); values ≤ 0 keep it linear under the rule.
        title: The figure's title.
        xlabel: The x axis label, with its unit (default ``x``).
        ylabel: The y axis label, with its unit (default: ``y``; none on panels,
            whose titles name the quantity).

    Returns:
        ``path``.

    Raises:
        ValueError: If a named column is missing or the frame is empty.
    """
    _check(frame, [x, y, group, seed, *(c for c in (panel, style) if c)])
    colours = _colours(frame, group, order)
    styles = (
        {v: LINE_STYLES[i % len(LINE_STYLES)] for i, v in enumerate(dict.fromkeys(frame[style]))}
        if style
        else {None: "-"}
    )
    use_logx = _decide(frame[x], logx, "drop")
    fig, panels = _grid(frame, panel)
    for ax, name, rows in panels:
        if use_logx:
            rows = rows[pd.to_numeric(rows[x], errors="coerce") > 0]
        shown: list[float] = []
        for g in group_order(rows, group, order):
            members = rows[rows[group].astype(str) == g]
            for value, line in styles.items():
                part = members if style is None else members[members[style] == value]
                curve = trajectory(part.assign(run=part[seed].astype(str)), x, y)
                if curve.empty:
                    continue
                xs = curve["x"].to_numpy(dtype=float)
                ax.plot(xs, curve["mean"].to_numpy(dtype=float), line, color=colours[g], lw=1.4)
                low, high = curve["low"].to_numpy(dtype=float), curve["high"].to_numpy(dtype=float)
                if (curve["n"] > 1).any():
                    ax.fill_between(xs, low, high, color=colours[g], alpha=0.2, lw=0)
                shown += [*curve["mean"].dropna(), *curve["low"].dropna(), *curve["high"].dropna()]
        style_axis(ax, "x", rows[x], log=use_logx, label=xlabel or x, zeros="drop")
        style_axis(
            ax, "y", np.asarray(shown, dtype=float), log=logy, label=_ylabel(ylabel, name, y)
        )
        if name:
            ax.set_title(name, fontsize=9)
        ax.tick_params(labelsize=7)
    extra = (
        [Line2D([], [], color="0.3", ls=s, lw=1.2, label=str(v)) for v, s in styles.items()]
        if style
        else []
    )
    drawn = {g: colours[g] for g in group_order(frame, group, order)}
    return _finish(fig, drawn, group, extra, title, path)


def points_figure(
    frame: pd.DataFrame,
    *,
    x: str,
    y: str,
    group: str,
    path: Path,
    panel: str | None = None,
    order: Sequence[Any] | None = None,
    logx: bool | None = None,
    logy: bool | None = None,
    title: str | None = None,
    xlabel: str | None = None,
    ylabel: str | None = None,
    dodge: bool | None = None,
) -> Path:
    """Draw ``y`` against ``x``: a small point per row (seed), each group's mean at each
    ``x`` as a large marker, the means of a group joined by a line.

    An x axis with at most :data:`MAX_TICKED` distinct values (batch sizes, η/B levels)
    is labelled at those values. Where groups share an ``x`` (every batch size at one
    η/B, say), the groups are drawn side by side around it (neighbours :data:`DODGE` of
    the axis' span apart, all within ±5 of that; in log units on a log axis) so that no
    group hides another.

    Args:
        frame: Tidy data: one row per seed (and group, x[, panel]).
        x: The x column (η/B, batch size, ...).
        y: The y column (test accuracy in %, λ_max, ...).
        group: The column whose values get one colour each.
        path: The PNG to write (its folder is created).
        panel: A column with one panel per value, in order of first appearance.
        order: The study's order of the groups (see :func:`group_order`).
        logx: Force a log (``True``) or linear x axis; ``None``: the two-decade rule.
        logy: The same for y (per panel).
        title: The figure's title.
        xlabel: The x axis label, with its unit (default ``x``).
        ylabel: The y axis label, with its unit (default: ``y``; none on panels,
            whose titles name the quantity).
        dodge: Draw groups that share an x beside one another (``None``: where they
            do; ``False``: never).

    Returns:
        ``path``.

    Raises:
        ValueError: If a named column is missing or the frame is empty.
    """
    _check(frame, [x, y, group, *(c for c in (panel,) if c)])
    colours = _colours(frame, group, order)
    values = pd.to_numeric(frame[x], errors="coerce")
    distinct = sorted(set(values[np.isfinite(values)].tolist()))
    ticks = distinct if len(distinct) <= MAX_TICKED else []
    use_logx = _decide(frame[x], logx, "linear")
    fig, panels = _grid(frame, panel)
    for ax, name, rows in panels:
        names = group_order(rows, group, order)
        shift = _dodge(rows, x, group, use_logx, names) if dodge is not False else {}
        for g in names:
            members = rows[rows[group].astype(str) == g]
            xs = pd.to_numeric(members[x], errors="coerce").to_numpy(dtype=float)
            ys = pd.to_numeric(members[y], errors="coerce").to_numpy(dtype=float)
            means = pd.Series(ys).groupby(xs).mean().dropna()
            step = shift.get(g, 0.0)
            ax.scatter(_moved(xs, step, use_logx), ys, s=12, color=colours[g], alpha=0.55, lw=0)
            ax.plot(
                _moved(means.index.to_numpy(dtype=float), step, use_logx),
                means.to_numpy(),
                "-o",
                color=colours[g],
                ms=6,
                mec="white",
                mew=0.6,
                lw=1.2,
                zorder=3,
            )
        style_axis(ax, "x", rows[x], log=use_logx, ticks=ticks, label=xlabel or x)
        style_axis(
            ax,
            "y",
            pd.to_numeric(rows[y], errors="coerce"),
            log=logy,
            label=_ylabel(ylabel, name, y),
        )
        if name:
            ax.set_title(name, fontsize=9)
        ax.tick_params(labelsize=7)
    extra = [
        Line2D([], [], color="0.3", marker="o", ls="", ms=3, alpha=0.55, label="one seed"),
        Line2D([], [], color="0.3", marker="o", ls="-", ms=6, label="mean over seeds"),
    ]
    drawn = {g: colours[g] for g in group_order(frame, group, order)}
    return _finish(fig, drawn, group, extra, title, path)


def _check(frame: pd.DataFrame, columns: list[str]) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValueError(f"no column {missing} in the frame (columns: {list(frame.columns)})")
    if frame.empty:
        raise ValueError("nothing to draw: the frame is empty")
