"""The Smith & Le (2018) study's overview figures and tables.

:func:`answer_sections` turns the study's numbers
(:mod:`flatness.studies.smithle2018_data`) into the sections the overview shows after
its answers: per training-set size N, test accuracy and the measures against η/B
coloured by B and against B coloured by η/B; the variance shares and τ of every
outcome; the best batch size at each learning rate; and the B × η grid with means and
spreads over seeds. Each table's numbers are also returned for ``data/<key>.csv``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from flatness.report.render import FigureBlock, Paragraph, Section, TableBlock
from flatness.report.stats import format_mean_std, format_p_value
from flatness.report.study_figures import points_figure
from flatness.report.tables import Table
from flatness.studies.smithle2018_data import ACCURACY, measure_columns, ratio_text

__all__ = ["FIGURE_MEASURES", "answer_sections", "grid_table"]

FIGURE_MEASURES = ("λ_max", "ε-sharpness", "noise scale B_simple")
"""The measures drawn beside test accuracy (label prefixes), when scored."""


def _figure_columns(frame: pd.DataFrame) -> list[str]:
    measures = measure_columns(frame)
    picked = [next((c for c in measures if c.startswith(m)), None) for m in FIGURE_MEASURES]
    return [ACCURACY, *(c for c in picked if c is not None)]


def _long(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per run × quantity drawn: ``value``, ``quantity``, ``η/B``, ``B``."""
    parts = []
    for column in _figure_columns(runs):
        part = pd.DataFrame(
            {
                "η/B": runs["ratio"].to_numpy(),
                "η/B level": runs["ratio"].map(ratio_text).to_numpy(),
                "B": runs["batch_size"].to_numpy(),
                "value": pd.to_numeric(runs[column], errors="coerce").to_numpy(),
                "quantity": column,
            }
        )
        parts.append(part)
    return pd.concat(parts, ignore_index=True)


_VIEWS = (
    # x, group, file suffix, title, x label, caption
    ("η/B", "B", "ratio", "against η/B, one colour per batch size", "η/B",
     "test accuracy and measures against η/B (log axis), one colour per batch size B; small "
     "points are single seeds ({seeds} per cell), large ones the means. If only η/B "
     "mattered, the colours would lie on one curve."),
    ("B", "η/B level", "batch", "against B, one colour per η/B", "batch size B",
     "the same against the batch size B (log axis), one colour per η/B level. If only η/B "
     "mattered, every colour would be flat."),
)  # fmt: skip
"""The two views of each case: against η/B coloured by B, and against B coloured by η/B."""


def _figures(frame: pd.DataFrame, out: Path) -> list[FigureBlock]:
    blocks = []
    ratios = [ratio_text(r) for r in sorted(frame["ratio"].unique())]
    for (case, n), runs in frame.groupby(["case", "n_train"], sort=False):
        long = _long(runs)
        seeds = int(runs.groupby(["batch_size", "lr"]).size().min())
        for x, group, suffix, title, xlabel, caption in _VIEWS:
            path = points_figure(
                long,
                x=x,
                y="value",
                group=group,
                panel="quantity",
                logx=True,
                order=ratios if group == "η/B level" else None,
                path=out / "figures" / f"smithle2018-{case}-{suffix}.png",
                title=f"N = {n}: {title}",
                xlabel=xlabel,
            )
            text = f"N = {n}: {caption.format(seeds=seeds)}"
            blocks.append(FigureBlock(f"figures/{path.name}", text))
    return blocks


def grid_table(frame: pd.DataFrame) -> tuple[Table, pd.DataFrame]:
    """The B × η grid: per N and cell, means ± sd over seeds.

    Returns:
        ``(table, numbers)``: the shown table, and one row per cell with the mean and
        sd of every outcome (the CSV).
    """
    outcomes = ["train accuracy (%)", ACCURACY, *measure_columns(frame)]
    keys = ["n_train", "ratio", "batch_size", "lr"]
    grouped = frame.groupby(keys, sort=True)
    numbers = grouped[outcomes].agg(["mean", "std"])
    numbers.columns = [f"{c} {stat}" for c, stat in numbers.columns]
    numbers.insert(0, "updates", grouped["updates"].first())
    numbers.insert(1, "seeds", grouped.size())
    numbers = numbers.reset_index()
    numbers.insert(4, "g = ηN/B", numbers["lr"] * numbers["n_train"] / numbers["batch_size"])
    shown = pd.DataFrame(
        {
            "N": numbers["n_train"].astype(str),
            "η/B": numbers["ratio"].map(ratio_text),
            "B": numbers["batch_size"].astype(str),
            "η": numbers["lr"].map(lambda v: f"{v:g}"),
            "g": numbers["g = ηN/B"].map(lambda v: f"{v:.3g}"),
            "updates": numbers["updates"].astype(str),
        }
    )
    for column in outcomes:
        shown[column] = [
            format_mean_std(m, s, int(n))
            for m, s, n in zip(
                numbers[f"{column} mean"], numbers[f"{column} std"], numbers["seeds"], strict=True
            )
        ]
    table = Table(
        "grid",
        "Every cell of the grid: means ± sd over seeds",
        shown,
        notes=(
            "g = ηN/B is Smith & Le's noise scale; cells on one η/B level share it at one N.",
            "Measures on the fixed scoring subset of the training set (eval mode).",
        ),
        values=numbers,
    )
    return table, numbers


def _taus(fits: pd.DataFrame, column: str) -> list[str]:
    return [
        f"{t:+.2f} (p {format_p_value(p)})" if np.isfinite(t) else "n/a"
        for t, p in zip(fits[column], fits[f"p {column}"], strict=True)
    ]


def _fits_table(fits: pd.DataFrame) -> Table:
    def pct(v: float) -> str:
        return f"{100 * v:.0f}%" if np.isfinite(v) else "n/a"

    shown = pd.DataFrame(
        {
            "N": fits["n_train"].astype(str),
            "outcome": fits["outcome"],
            "η/B": fits["share η/B"].map(pct),
            "B": fits["share B"].map(pct),
            "η": fits["share η"].map(pct),
            "cells": fits["share cells"].map(pct),
            "τ with B within η/B": _taus(fits, "tau B within η/B"),
            "τ with η/B within B": _taus(fits, "tau η/B within B"),
            "only η/B: Holm p": fits["p holm η/B"].map(format_p_value),
            "only B: Holm p": fits["p holm B"].map(format_p_value),
        }
    )
    return Table(
        "fits",
        "Share of each outcome's variance across runs explained by η/B, B, η and the cells",
        shown,
        notes=(
            "Measures on a log10 scale, accuracy in points. 'only η/B: Holm p' is the "
            "lack-of-fit F test of 'the cells of one η/B level share a mean' with the "
            "seeds as pure error, Holm-adjusted over the case's tests.",
            "τ: pooled within-group Kendall τ-b with a permutation p (shuffles within groups).",
        ),
        values=fits,
    )


def _best_table(best: pd.DataFrame) -> Table:
    shown = pd.DataFrame(
        {
            "N": best["n_train"].astype(str),
            "η": best["lr"].map(lambda v: f"{v:g}"),
            "batch sizes trained": best["sizes"],
            "best B": best["best"].astype(str) + np.where(best["edge"], " (edge)", ""),
            "its test accuracy (%)": [
                format_mean_std(m, s, int(n))
                for m, s, n in zip(
                    best["best_accuracy"], best["best_sd"], best["seeds"], strict=True
                )
            ],
            "runner-up B": best["runner_up"].astype(str),
            "margin (points)": best["margin"].map(lambda v: f"{v:.1f}"),
        }
    )
    return Table(
        "best-batch",
        "The batch size of the best mean test accuracy at each learning rate",
        shown,
        notes=("Learning rates trained with fewer than 3 batch sizes are left out.",),
        values=best,
    )


def answer_sections(
    frame: pd.DataFrame, fits: pd.DataFrame, best: pd.DataFrame, out: Path
) -> tuple[tuple[Section, ...], dict[str, pd.DataFrame]]:
    """The overview's sections after the answers, and their tables' numbers.

    Args:
        frame: :func:`~flatness.studies.smithle2018_data.grid_frame`'s rows.
        fits: :func:`~flatness.studies.smithle2018_data.fit_table` of ``frame``.
        best: :func:`~flatness.studies.smithle2018_data.best_batches` of ``frame``.
        out: The overview's folder (figures are written to ``figures/``).

    Returns:
        ``(sections, tables)``: the figures, the variance shares, the best batch sizes
        and the grid; ``tables`` maps each table's key to its numbers.
    """
    grid, numbers = grid_table(frame)
    fit_shown, best_shown = _fits_table(fits), _best_table(best)
    sections = (
        Section("Against η/B and against B", "noise-figures", list(_figures(frame, out))),
        Section(
            "η/B, B or η: which explains each outcome",
            "noise-fits",
            [
                Paragraph(
                    "Each candidate explanation groups the grid's cells: by η/B, by B or by "
                    "η. A grouping's share is the part of the variance across runs its "
                    "level means explain; the cells' own means bound every share."
                ),
                TableBlock(fit_shown),
            ],
        ),
        Section(
            "The best batch size at a fixed learning rate", "best-batch", [TableBlock(best_shown)]
        ),
        Section("The grid", "grid", [TableBlock(grid)]),
    )
    tables = {"fits": fits, "best-batch": best, "grid": numbers}
    return sections, tables
