"""The Training section's figures: learning curves, measure trajectories, the noise scale.

Drawn on matplotlib ``Figure`` objects (no ``pyplot``) like every figure of a report
(:mod:`~flatness.report.figures`), by the report's rules
(:mod:`~flatness.report.figure_style`): one colour per schedule/regime from the
qualitative palette, a regime keeping its colour of the other figures; counts (updates,
examples) and measures on a log axis where they span more than two decades; the mean
over seeds as a line and the band of :func:`~flatness.report.learning.trajectory`
shaded:

- :func:`fit_figure` -- loss and accuracy on the training data (solid) and the test set
  (dashed) against epochs (linear: schedules' milestones are fractions of them), updates
  and examples seen (Smith, Kindermans, Ying and Le, ICLR 2018, compare schedules by
  updates and by epochs);
- :func:`measures_figure` -- each measure against updates, with the stability threshold
  2/η of gradient descent on the λ_max panel where the optimizer has one (Cohen et al.,
  ICLR 2021: λ_max climbs to 2/η and hovers there);
- :func:`noise_figure` -- the gradient noise scale B_simple against updates beside the
  batch size (McCandlish et al., 2018: batches beyond B_simple bring diminishing returns).

:func:`training_figures` draws them all and saves each through the report's ``figure``
callback (bounded file names, atomic writes).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from flatness.report.figure_style import (
    DECADES,
    legend_below,
    log_scale,
    regime_colors,
    style_axis,
)
from flatness.report.figures import PANELS_PER_FIGURE, panel_grid
from flatness.report.frames import regime_order
from flatness.report.learning import (
    FIT,
    measure_label,
    measure_names,
    nonfinite_runs,
    percent_axis,
    trajectory,
    x_column,
)
from flatness.report.render import FigureBlock

__all__ = [
    "fit_figure",
    "group_colours",
    "measures_figure",
    "noise_figure",
    "training_figures",
]

X_AXES = {"epoch": "epochs", "updates": "updates", "examples_seen": "examples seen"}
"""The x axes of the learning curves, and their labels."""

FIT_ON = {
    "subset": "the tracker's fixed training subset",
    "epoch_average": "the running average over each epoch's batches",
    "full_train": "the full training set",
}
"""How the training fit was measured (the record's ``fit_on``)."""

NOISE = "noise_scale"

MIN_WIDTH = 6.4
"""The narrowest figure (inches): a figure of one or two panels still holds its legend."""


def group_colours(
    tracks: pd.DataFrame, labels: pd.Series, order: Sequence[str] = ()
) -> dict[str, Any]:
    """One colour per schedule/regime, by the report's rule
    (:func:`~flatness.report.figure_style.regime_colors`), in drawing order.

    Colours go by position in ``order`` (the study's regimes, so a regime has the colour
    it has in the report's other figures), then the other groups by their runs' first
    batch size (:func:`~flatness.report.frames.regime_order`).

    Args:
        tracks: The records (their ``batch_size`` orders groups not in ``order``).
        labels: Run → schedule/regime.
        order: The report's regimes, in its order.

    Returns:
        Group → colour, in drawing order (the groups of ``labels`` only).
    """
    runs = tracks.sort_values("step") if "step" in tracks else tracks
    first = runs.drop_duplicates("run")
    first.index = first["run"].astype(str)
    sizes = (
        pd.to_numeric(first["batch_size"], errors="coerce")
        if "batch_size" in first
        else pd.Series(np.nan, index=first.index)
    )
    per_run = pd.DataFrame(
        {"regime": labels.astype(str), "batch_size": sizes.reindex(labels.index.astype(str))}
    )
    named = [str(g) for g in order]
    rest = [g for g in regime_order(per_run) if g not in named]
    colours = regime_colors(named + rest)
    present = set(labels.astype(str))
    return {g: colours[g] for g in named + rest if g in present}


def _log_x(ax: Any, values: pd.Series, label: str) -> bool:
    """Scale and label an x axis of counts (updates, examples) by the report's rule; the
    records at 0 are not drawn on a log scale.

    Returns:
        Whether it is on a log scale.
    """
    x = pd.to_numeric(values, errors="coerce").to_numpy(dtype=float)
    log_x = log_scale(x, zeros="drop")
    style_axis(ax, "x", x, log=log_x, label=label + (" (log scale)" if log_x else ""))
    ax.xaxis.label.set_fontsize(8)
    return log_x


def _draw(ax: Any, curve: pd.DataFrame, colour: Any, style: str, scale: float, log_x: bool) -> None:
    """A curve's mean as a line and its band shaded (gaps where the mean is NaN); a solid
    or dashed curve of few points marks them."""
    if log_x:
        curve = curve[curve["x"] > 0]
    if curve.empty:
        return
    x = curve["x"].to_numpy(dtype=float)
    mean = curve["mean"].to_numpy(dtype=float) * scale
    marked = len(curve) <= 30 and style != ":"
    ax.plot(x, mean, style, color=colour, lw=1.4, marker="o" if marked else None, ms=2.5)
    low = curve["low"].to_numpy(dtype=float) * scale
    high = curve["high"].to_numpy(dtype=float) * scale
    if np.isfinite(low).any() and np.isfinite(high).any():
        ax.fill_between(x, low, high, color=colour, alpha=0.2, lw=0)


def _legend(fig: Figure, colours: dict[str, Any], extra: Sequence[tuple[str, str]] = ()) -> None:
    handles = [Line2D([], [], color=c, lw=2, label=str(g)) for g, c in colours.items()]
    handles += [Line2D([], [], color="0.3", ls=style, lw=1.2, label=text) for style, text in extra]
    legend_below(fig, handles)


def _groups(
    tracks: pd.DataFrame, labels: pd.Series, colours: dict[str, Any]
) -> dict[str, pd.DataFrame]:
    """The records of each schedule/regime, in the colours' (drawing) order."""
    group = tracks["run"].astype(str).map(labels).astype(str)
    return {g: tracks[group == g] for g in colours if (group == g).any()}


def _recorded(tracks: pd.DataFrame, column: str) -> bool:
    return column in tracks and bool(tracks[column].notna().any())


def fit_figure(tracks: pd.DataFrame, labels: pd.Series, colours: dict[str, Any]) -> Figure | None:
    """Loss (top row) and accuracy in % (bottom row) against epochs, updates and examples
    seen: training data solid, test set dashed; one colour per schedule/regime.

    Args:
        tracks: The records of one source (history or tracker).
        labels: Run → schedule/regime (:func:`~flatness.report.learning.group_labels`).
        colours: Schedule/regime → colour.

    Returns:
        The figure, or ``None`` when no loss or accuracy is recorded against any axis.
    """
    axes_x = [a for a in X_AXES if x_column(tracks, a) is not None]
    rows = [
        metric
        for metric in ("loss", "accuracy")
        if any(_recorded(tracks, f"{split}_{metric}") for split in ("train", "test"))
    ]
    if not axes_x or not rows:
        return None
    fig = Figure(figsize=(3.4 * len(axes_x), 2.7 * len(rows) + 0.5), layout="constrained")
    grid = np.atleast_2d(fig.subplots(len(rows), len(axes_x), squeeze=False))
    groups = _groups(tracks, labels, colours)
    for i, metric in enumerate(rows):
        for j, axis in enumerate(axes_x):
            ax = grid[i][j]
            x = x_column(tracks, axis)
            assert x is not None
            # epochs stay linear: schedules' milestones are fractions of the epochs
            log_x = axis != "epoch" and _log_x(ax, tracks[x], X_AXES[axis])
            shown: list[float] = []
            for group, members in groups.items():
                for split, style in (("train", "-"), ("test", "--")):
                    curve = trajectory(members, x, f"{split}_{metric}")
                    scale = percent_axis(metric)
                    _draw(ax, curve, colours[group], style, scale, log_x)
                    shown += list(curve["mean"].dropna() * scale)
            style_axis(
                ax, "y", np.asarray(shown, dtype=float), log=None if metric == "loss" else False
            )
            if axis == "epoch":
                ax.set_xlabel(X_AXES[axis], fontsize=8)
            if j == 0:
                ax.set_ylabel("accuracy (%)" if metric == "accuracy" else "loss", fontsize=8)
            ax.tick_params(labelsize=7)
    _legend(fig, {g: colours[g] for g in groups}, (("-", "train"), ("--", "test")))
    return fig


def _updates_axis(ax: Any, tracks: pd.DataFrame, x: str) -> bool:
    log_x = _log_x(ax, tracks[x], "updates")
    ax.tick_params(labelsize=7)
    return log_x


def measures_figure(
    tracks: pd.DataFrame,
    labels: pd.Series,
    colours: dict[str, Any],
    measures: Sequence[str],
) -> Figure | None:
    """Each measure against updates; the λ_max panel also shows each schedule/regime's
    stability threshold (the records' ``stability_threshold``: 2/η for SGD, (2 + 2β)/η
    with heavy-ball momentum β) as a dotted line where it is defined.

    Args:
        tracks: The records.
        labels: Run → schedule/regime.
        colours: Schedule/regime → colour.
        measures: The measures to draw, one panel each.

    Returns:
        The figure, or ``None`` without measures.
    """
    if not measures:
        return None
    x = x_column(tracks, "updates") or "step"
    groups = _groups(tracks, labels, colours)
    fig, axes = panel_grid(len(measures))
    fig.set_figwidth(max(fig.get_figwidth(), MIN_WIDTH))  # room for the legend
    threshold = False
    for ax, name in zip(axes, measures, strict=True):
        log_x = _updates_axis(ax, tracks, x)
        shown: list[float] = []
        for group, members in groups.items():
            curve = trajectory(members, x, name)
            _draw(ax, curve, colours[group], "-", 1.0, log_x)
            shown += list(curve["mean"].dropna())
            if name == "lambda_max" and "stability_threshold" in members:
                line = trajectory(members, x, "stability_threshold")
                line = line[np.isfinite(line["mean"].to_numpy(dtype=float))]
                if not line.empty:
                    threshold = True
                    line = line.assign(low=np.nan, high=np.nan)
                    _draw(ax, line, colours[group], ":", 1.0, log_x)
                    shown += list(line["mean"])
        style_axis(ax, "y", np.asarray(shown, dtype=float))
        ax.set_title(measure_label(name), fontsize=9)
    _legend(
        fig,
        {g: colours[g] for g in groups},
        ((":", "stability threshold 2/η"),) if threshold else (),
    )
    return fig


def noise_figure(tracks: pd.DataFrame, labels: pd.Series, colours: dict[str, Any]) -> Figure | None:
    """The gradient noise scale B_simple against updates (solid), each schedule/regime's
    batch size beside it (dotted).

    Returns:
        The figure, or ``None`` when no noise scale is recorded.
    """
    if NOISE not in tracks or not tracks[NOISE].notna().any():
        return None
    x = x_column(tracks, "updates") or "step"
    fig = Figure(figsize=(5.6, 3.6), layout="constrained")
    ax = fig.subplots()
    log_x = _updates_axis(ax, tracks, x)
    shown: list[float] = []
    groups = _groups(tracks, labels, colours)
    batch = False
    for group, members in groups.items():
        curve = trajectory(members, x, NOISE)
        _draw(ax, curve, colours[group], "-", 1.0, log_x)
        shown += list(curve["mean"].dropna())
        if "batch_size" in members and members["batch_size"].notna().any():
            sizes = trajectory(members[members[NOISE].notna()], x, "batch_size")
            _draw(ax, sizes.assign(low=np.nan, high=np.nan), colours[group], ":", 1.0, log_x)
            shown += list(sizes["mean"].dropna())
            batch = True
    style_axis(ax, "y", np.asarray(shown, dtype=float))
    ax.set_ylabel("B_simple (examples)", fontsize=8)
    ax.set_title("gradient noise scale B_simple", fontsize=9)
    _legend(fig, {g: colours[g] for g in groups}, ((":", "batch size"),) if batch else ())
    return fig


def _fit_on(tracks: pd.DataFrame, default: str) -> str:
    kinds = sorted(tracks["fit_on"].dropna().astype(str).unique()) if "fit_on" in tracks else []
    return "; ".join(FIT_ON.get(k, k) for k in kinds) or default


def _threshold_note(tracks: pd.DataFrame, labels: pd.Series) -> str:
    """What the caption says about the stability threshold of each schedule/regime."""
    if "stability_threshold" not in tracks:
        return " No record holds a stability threshold, so none is drawn."
    finite = np.isfinite(pd.to_numeric(tracks["stability_threshold"], errors="coerce"))
    group = tracks["run"].astype(str).map(labels)
    drawn = set(group[finite])
    text = (
        " Dotted on the λ_max panel: the stability threshold 2/η of each run's optimizer "
        "((2 + 2β)/η with heavy-ball momentum β), mean over seeds."
        if drawn
        else ""
    )
    reasons: dict[str, list[str]] = {}
    for label in sorted(set(labels) - drawn, key=str):
        rows = tracks[group == label]
        notes = rows["threshold_note"].dropna() if "threshold_note" in rows else pd.Series()
        names = (
            sorted(rows["optimizer"].dropna().astype(str).unique()) if "optimizer" in rows else []
        )
        reason = (
            str(notes.iloc[0]).rstrip(".") if not notes.empty else "no learning rate recorded"
        ) + (f" (optimizer {', '.join(names)})" if names else "")
        reasons.setdefault(reason, []).append(label)
    for reason, without in reasons.items():
        text += f" No threshold drawn for {', '.join(without)}: {reason}."
    return text


def _infinite_text(tracks: pd.DataFrame) -> str:
    """The caption's count of infinite noise scales (|G|² estimated at or below zero)."""
    values = pd.to_numeric(tracks[NOISE], errors="coerce")
    infinite = int(np.isinf(values).sum())
    if not infinite:
        return ""
    return (
        f" {infinite} of {int(values.notna().sum())} records have an infinite B_simple (the "
        "squared mean gradient estimated at or below zero: the gradient is lost in its "
        "noise); they are gaps in the lines."
    )


def training_figures(
    tracks: pd.DataFrame,
    labels: pd.Series,
    figure: Callable[[Figure, str, str], FigureBlock],
    order: Sequence[str] = (),
) -> list[FigureBlock]:
    """Draw and save the Training section's figures.

    Args:
        tracks: :func:`flatness.load_tracks`'s frame.
        labels: Run → schedule/regime.
        figure: Saves a figure under a name with a caption and returns its block
            (:meth:`flatness.report.sections.SectionContext.figure`).
        order: The report's regimes in its order: a regime's colour is the one it has
            in the report's other figures (:func:`group_colours`).

    Returns:
        The figure blocks, in the order the section shows them.
    """
    colours = group_colours(tracks, labels, order)
    blocks: list[FigureBlock] = []
    gaps = nonfinite_runs(tracks)
    gap_text = (
        f" Records with a non-finite loss ({', '.join(gaps)}) are gaps in the curves."
        if gaps
        else ""
    )
    band = (
        "Lines: mean over seeds; bands: their min–max. Updates and examples seen are on a "
        f"log scale where they span more than {DECADES:g} decades (records at 0 not shown "
        "there)."
    )
    sources = {
        "history": ("per-epoch training history", "the running average over each epoch's batches"),
        "tracker": ("tracker's records", FIT_ON["subset"]),
    }
    for source, (name, default) in sources.items():
        rows = tracks[tracks["source"] == source]
        if rows.empty or not any(_recorded(rows, c) for c in FIT):
            continue
        fig = fit_figure(rows, labels, colours)
        if fig is not None:
            blocks.append(
                figure(
                    fig,
                    f"training-{source}",
                    f"Learning curves from the {name}: loss (top) and accuracy (bottom) on the "
                    f"training data (solid; {_fit_on(rows, default)}) and the test set "
                    f"(dashed) against epochs, updates and examples seen. {band}{gap_text}",
                )
            )
    measures = [m for m in measure_names(tracks) if m != NOISE]
    for page in range(math.ceil(len(measures) / PANELS_PER_FIGURE)):
        chunk = measures[page * PANELS_PER_FIGURE : (page + 1) * PANELS_PER_FIGURE]
        fig = measures_figure(tracks, labels, colours, chunk)
        if fig is None:
            continue
        part = f" (part {page + 1})" if len(measures) > PANELS_PER_FIGURE else ""
        blocks.append(
            figure(
                fig,
                f"training-measures{'-' + str(page + 1) if page else ''}",
                f"Each measure against updates{part}. {band} With one run, the band is ±1 "
                f"standard error of the estimate where the record has one."
                f"{_threshold_note(tracks, labels) if 'lambda_max' in chunk else ''}{gap_text}",
            )
        )
    fig = noise_figure(tracks, labels, colours)
    if fig is not None:
        blocks.append(
            figure(
                fig,
                "training-noise-scale",
                "The gradient noise scale B_simple = tr(Σ)/|G|² against updates (McCandlish et "
                f"al. 2018), each schedule/regime's batch size dotted beside it. {band}"
                f"{_infinite_text(tracks)}{gap_text}",
            )
        )
    return blocks
