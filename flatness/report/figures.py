"""The report's figures, drawn with seaborn on matplotlib ``Figure`` objects.

Figures are built without ``pyplot`` (no global state, no display needed) and saved
as PNG by :func:`save`. Colours and axes follow :mod:`~flatness.report.figure_style`:
one qualitative colour per regime in batch-size order (neighbours clearly apart), the
same in every figure; an axis is logarithmic where its positive values span more than
two decades.

- :func:`trend_figure` -- each measure (and the accuracies) against batch size or
  η/B, one point per seed and the mean at each value;
- :func:`correlation_figure` -- each measure against test accuracy or generalization
  gap, with Kendall's τ and Spearman's ρ in the panel titles;
- :func:`parametric_figure` -- Keskar et al.'s Figure 3: loss and accuracy on train
  and test along the line from the SB (α = 0) to the LB (α = 1) minimiser;
- :func:`density_figure` -- SLQ spectral densities, SB vs LB, on a log scale.
"""

from __future__ import annotations

import hashlib
import math
import re
import textwrap
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure
from matplotlib.text import Text

from flatness.atomic import atomic_path
from flatness.curvature.density import gaussian_smoothing
from flatness.report.analysis import TARGETS, Study
from flatness.report.figure_style import log_scale, regime_colors, style_axis
from flatness.report.frames import DensityCurve

DPI = 110
PANEL = (3.3, 2.7)
COLUMNS = 4


palette = regime_colors
"""The report's regime colours (:func:`~flatness.report.figure_style.regime_colors`)."""

log_worthy = log_scale
"""The report's log-scale rule (:func:`~flatness.report.figure_style.log_scale`)."""


STEM_LIMIT = 90
"""The longest figure file name (without ``.png``) :func:`file_stem` gives."""


def file_stem(name: str, limit: int = STEM_LIMIT) -> str:
    """A safe, bounded file name for a figure named ``name`` (a label from the data, say).

    Lowercase letters, digits and ``-`` only; a name longer than ``limit`` is cut and
    given an 8-character hash of the whole name, so two long names alike at the start
    stay apart.

    Returns:
        The file name's stem, at most ``limit`` characters.

    Examples:
        >>> file_stem("parametric-1-SB vs LB")
        'parametric-1-sb-vs-lb'
        >>> stem = file_stem("parametric-1-" + "/runs/long" * 40)
        >>> len(stem), stem[-9:] == "-" + stem[-8:]
        (90, True)
    """
    slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") or "figure"
    if len(slug) <= limit:
        return slug
    digest = hashlib.sha256(name.encode("utf-8", "surrogatepass")).hexdigest()[:8]
    return f"{slug[: limit - 9].rstrip('-')}-{digest}"


def plain_labels(fig: Figure) -> Figure:
    """Show every text of ``fig`` as typed: no mathtext, no TeX (tick labels excepted).

    Titles, legends and axis labels carry labels from the data (regimes, measures,
    paths); matplotlib would parse ``$...$`` in them as mathtext (and fail on ``$x^$``)
    or hand them to TeX. Tick labels are matplotlib's own and keep their formatting.

    Returns:
        ``fig``.
    """
    ticks: set[int] = set()
    for ax in fig.axes:
        for axis in (ax.xaxis, ax.yaxis):
            ticks.add(id(axis.get_offset_text()))
            for tick in (*axis.get_major_ticks(), *axis.get_minor_ticks()):
                ticks.update((id(tick.label1), id(tick.label2)))
    for text in fig.findobj(Text):
        if id(text) not in ticks:
            text.set_parse_math(False)
            text.set_usetex(False)
    return fig


def save(fig: Figure, path: Path) -> Path:
    """Write ``fig`` as a PNG (creating the folder; atomically) and return the path.

    Its labels are shown as typed (:func:`plain_labels`).

    Returns:
        The PNG's path.
    """
    plain_labels(fig)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=DPI, metadata={"Software": None}, format="png")
    return path


def panel_grid(n: int) -> tuple[Figure, list[Any]]:
    """A figure of ``n`` panels, at most :data:`COLUMNS` a row (the unused ones hidden).

    Returns:
        The figure and its ``n`` axes, row by row.
    """
    cols = min(COLUMNS, n)
    rows = math.ceil(n / cols)
    fig = Figure(figsize=(PANEL[0] * cols, PANEL[1] * rows), layout="constrained")
    axes = np.atleast_1d(fig.subplots(rows, cols, squeeze=False)).ravel().tolist()
    for ax in axes[n:]:
        ax.set_visible(False)
    return fig, axes[:n]


def _wrap(text: str, width: int = 34) -> str:
    return "\n".join(textwrap.wrap(text, width)) or text


PANELS_PER_FIGURE = 16
"""Measures per figure; more measures spread over several figures (:func:`pages`)."""


def pages(study: Study) -> int:
    """How many figures the per-measure grids take (at least one).

    Returns:
        The number of figures a per-measure grid takes.
    """
    return max(1, math.ceil(len(study.columns) / PANELS_PER_FIGURE))


def _page_labels(study: Study, page: int) -> list[str]:
    chunk = study.columns[page * PANELS_PER_FIGURE : (page + 1) * PANELS_PER_FIGURE]
    return [column.label for column in chunk]


def _panels(study: Study, page: int) -> list[tuple[str, pd.Series]]:
    table = study.runs.set_index("checkpoint")
    panels: list[tuple[str, pd.Series]] = []
    if study.has_accuracy and page == 0:
        panels.append(("test accuracy (%)", table["test_accuracy"] * 100))
        if table["generalization_gap"].notna().any():
            panels.append(("generalization gap (points)", table["generalization_gap"] * 100))
    for label in _page_labels(study, page):
        panels.append((label, study.wide[label]))
    return panels


def _scatter(
    ax: Any, frame: pd.DataFrame, x: str, y: str, study: Study, colours: Any, *, legend: bool
) -> None:
    """One point per checkpoint, coloured by regime (in batch-size order)."""
    sns.scatterplot(
        data=frame,
        x=x,
        y=y,
        hue="regime",
        palette=colours,
        hue_order=[r for r in study.regimes if r in set(frame["regime"])],
        ax=ax,
        s=28,
        zorder=2,
        legend=legend,
    )


def _regime_means(ax: Any, frame: pd.DataFrame, x: str, colours: dict[str, Any]) -> None:
    """Each regime's mean value at its x, a large diamond in its colour."""
    means = frame.groupby(["regime", x], observed=True)["value"].mean().reset_index()
    for regime, rows in means.groupby("regime", observed=True):
        ax.scatter(
            rows[x],
            rows["value"],
            marker="D",
            s=46,
            color=colours.get(str(regime), "0.5"),
            edgecolors="black",
            linewidths=0.6,
            zorder=3,
        )


AXES = {"batch_size": "batch size", "lr_over_batch": "η/B"}
"""The x axes of :func:`trend_figure`."""

AXES_UNITS = {"batch_size": "batch size (examples)", "lr_over_batch": "η/B (per example)"}
"""The x axes' labels, with units."""


def trend_figure(study: Study, by: str = "batch_size", page: int = 0) -> Figure | None:
    """Each measure against batch size (or η/B): one point per checkpoint, a line through
    the means at each x; where regimes share an x (LB for equal epochs and for equal
    updates, say), each regime's mean as a diamond instead (they are not averaged).

    Args:
        study: The analysed results.
        by: ``"batch_size"`` or ``"lr_over_batch"`` (learning rate / batch size).
        page: Which :data:`PANELS_PER_FIGURE` measures to draw (the accuracies are on
            the first page).

    Returns:
        The figure, or ``None`` when fewer than two distinct x values are known.
    """
    x = study.axis(by)
    distinct = sorted({float(v) for v in x.dropna()})
    if len(distinct) < 2:
        return None
    panels = _panels(study, page)
    if not panels:
        return None
    colours = regime_colors(study.regimes)
    runs = study.runs.set_index("checkpoint")
    name = AXES[by]
    ticks = distinct if len(distinct) <= 12 else []
    # regimes sharing an x (LB trained for equal epochs and for equal updates, say) are
    # not averaged together: each regime's mean is marked instead of a line through x
    shared = bool(
        pd.DataFrame({"x": x, "regime": runs["regime"]})
        .dropna()
        .groupby("x")["regime"]
        .nunique()
        .gt(1)
        .any()
    )
    fig, axes = panel_grid(len(panels))
    for ax, (label, values) in zip(axes, panels, strict=True):
        frame = pd.DataFrame(
            {name: x, "value": values.astype(float), "regime": runs["regime"]}
        ).dropna(subset=[name, "value"])
        if frame.empty:
            ax.set_title(_wrap(label) + "\n(no finite values)", fontsize=9)
            continue
        if shared:
            _regime_means(ax, frame, name, colours)
        else:
            means = frame.groupby(name)["value"].mean()
            ax.plot(means.index, means.to_numpy(), color="0.3", lw=1.2, zorder=1, label="mean")
        _scatter(ax, frame, name, "value", study, colours, legend=ax is axes[0])
        style_axis(ax, "x", frame[name].to_numpy(), ticks=ticks, label=AXES_UNITS[by])
        style_axis(ax, "y", frame["value"].to_numpy())
        ax.set_title(_wrap(label), fontsize=9)
        ax.set_ylabel("")
    if axes[0].get_legend() is not None:
        sns.move_legend(axes[0], "best", fontsize=7, title_fontsize=7)
    means = "diamonds: each regime's mean" if shared else "line: mean"
    fig.suptitle(f"Sharpness and accuracy vs {name} (points: seeds, {means})", fontsize=11)
    return fig


def correlation_figure(study: Study, target: str, page: int = 0) -> Figure | None:
    """Each measure (x) against ``target`` (y), coloured by regime, τ and ρ in the titles;
    ``page`` picks which :data:`PANELS_PER_FIGURE` measures.

    ``None`` when the runs have no ``target`` values or there are no measures.

    Returns:
        The figure, or ``None`` when there is nothing to draw.

    Raises:
        ValueError: For a ``target`` not in :data:`~flatness.report.analysis.TARGETS`.
    """
    if target not in TARGETS:
        raise ValueError(f"target={target!r}: choose one of {list(TARGETS)}")
    if not study.runs[target].notna().any() or not study.columns:
        return None
    runs = study.runs.set_index("checkpoint")
    labels = _page_labels(study, page)
    if not labels:
        return None
    colours = regime_colors(study.regimes)
    fig, axes = panel_grid(len(labels))
    for ax, label in zip(axes, labels, strict=True):
        frame = pd.DataFrame(
            {
                "x": study.wide[label].astype(float),
                "y": runs[target].astype(float) * 100,
                "regime": runs["regime"],
            }
        ).dropna()
        tau = study.correlations[(label, target, "kendall")]
        rho = study.correlations[(label, target, "spearman")]
        if frame.empty:
            ax.set_title(_wrap(label) + "\n(no finite values)", fontsize=8)
            continue
        _scatter(ax, frame, "x", "y", study, colours, legend=ax is axes[0])
        style_axis(ax, "x", frame["x"].to_numpy())
        style_axis(ax, "y", frame["y"].to_numpy(), log=False)
        ax.set_title(f"{_wrap(label)}\nτ {tau.text()}\nρ {rho.text()}", fontsize=8)
        ax.set_xlabel("")
        ax.set_ylabel(f"{TARGETS[target]} (%)" if ax is axes[0] else "")
    if axes and axes[0].get_legend() is not None:
        sns.move_legend(axes[0], "best", fontsize=7, title_fontsize=7)
    fig.suptitle(f"Measures vs {TARGETS[target]} (one point per checkpoint)", fontsize=11)
    return fig


def parametric_figure(curve: pd.DataFrame, *, title: str) -> Figure:
    """Keskar et al.'s parametric plot for one SB/LB pair.

    Args:
        curve: Rows of :func:`flatness.load_curves` for one pair and settings: columns
            ``alpha``, ``split`` (train/test), ``metric`` (loss/accuracy), ``value``.
        title: The figure's title.

    Returns:
        The figure: loss (left axis) and accuracy (right axis) against α.
    """
    fig = Figure(figsize=(6.4, 4.4), layout="constrained")
    ax = fig.subplots()
    twin = ax.twinx()
    styles = {"train": "-", "test": "--"}
    for split, style in styles.items():
        rows = curve[(curve["split"] == split) & (curve["metric"] == "loss")].sort_values("alpha")
        if not rows.empty:
            ax.plot(rows["alpha"], rows["value"], style, color="tab:blue", label=f"{split} loss")
        rows = curve[(curve["split"] == split) & (curve["metric"] == "accuracy")]
        rows = rows.sort_values("alpha")
        if not rows.empty:
            twin.plot(
                rows["alpha"], rows["value"] * 100, style, color="tab:red", label=f"{split} acc."
            )
    loss = curve.loc[curve["metric"] == "loss", "value"].to_numpy(dtype=float)
    style_axis(ax, "y", loss)
    for x, name in ((0.0, "SB"), (1.0, "LB")):
        ax.axvline(x, color="0.6", lw=0.8, ls=":")
        ax.annotate(name, (x, 1.0), xycoords=("data", "axes fraction"), ha="center", va="bottom")
    ax.set_xlabel("α  (θ = (1 − α) θ_SB + α θ_LB)")
    ax.set_ylabel("cross-entropy loss", color="tab:blue")
    twin.set_ylabel("accuracy (%)", color="tab:red")
    handles = ax.get_legend_handles_labels()
    twin_handles = twin.get_legend_handles_labels()
    fig.legend(
        handles[0] + twin_handles[0],
        handles[1] + twin_handles[1],
        fontsize=8,
        loc="outside lower center",
        ncols=4,
        frameon=False,
    )
    ax.set_title(title, fontsize=10, pad=14)
    return fig


def density_figure(study: Study, curves: Sequence[DensityCurve]) -> Figure | None:
    """The smoothed SLQ spectral densities, coloured by regime (log y): a thin line per
    checkpoint and a thick line for each regime's mean.

    All densities are evaluated on one grid spanning every quadrature node, with one
    Gaussian width (1% of the span), so the curves compare.

    Returns:
        The figure, or ``None`` when no density was scored.
    """
    if not curves:
        return None
    lo = min(float(c.nodes[c.weights > 0].min()) for c in curves)
    hi = max(float(c.nodes[c.weights > 0].max()) for c in curves)
    span = max(hi - lo, 1e-12)
    sigma = 0.01 * span
    grid = np.linspace(lo - 0.05 * span, hi + 0.05 * span, 2000)
    colours = regime_colors(study.regimes)
    fig = Figure(figsize=(6.4, 4.0), layout="constrained")
    ax = fig.subplots()
    floor = 1e-12
    for regime in [r for r in study.regimes if any(c.regime == r for c in curves)]:
        members = [c for c in curves if c.regime == regime]
        densities = [gaussian_smoothing(grid, c.nodes, c.weights, sigma) for c in members]
        colour = colours.get(regime, "0.5")
        for density in densities:
            ax.plot(grid, np.maximum(density, floor), color=colour, lw=0.6, alpha=0.35)
        ax.plot(
            grid,
            np.maximum(np.mean(densities, axis=0), floor),
            color=colour,
            lw=1.8,
            label=f"{regime} (mean of {len(members)})",
        )
    ax.set_yscale("log")
    ax.set_ylim(bottom=max(1e-8, ax.get_ylim()[0]))
    ax.set_xlabel("eigenvalue")
    ax.set_ylabel("density (log scale)")
    ax.legend(title="regime", fontsize=7, title_fontsize=7)
    ax.set_title(
        f"Hessian spectral density (SLQ, Gaussian width {sigma:.3g}); thin: checkpoints",
        fontsize=9,
    )
    return fig
