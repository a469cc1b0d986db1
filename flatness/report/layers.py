"""The report's per-layer section: λ_max and trace of each parameter group, SB vs LB.

When checkpoints were scored with ``[scoring] groups`` (:mod:`flatness.pipeline.groups`),
each measure that takes a group has rows whose settings name it (``"group"``). This
section gathers them (:func:`group_scores`), tabulates the median of each measure per
group and regime with the LB/SB ratio (:func:`layers_table`), and draws the medians
across the groups, one line per regime over the checkpoints' points
(:func:`layers_figure`): where in the network the sharpness of large-batch minima sits.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from flatness.headlines import DISPLAY_NAMES
from flatness.report import figures as figs
from flatness.report.analysis import Study
from flatness.report.frames import normalize
from flatness.report.render import FigureBlock, Paragraph, Section
from flatness.report.tables import Table

__all__ = [
    "SectionInputs",
    "group_scores",
    "layers_figure",
    "layers_section",
    "layers_table",
    "without_groups",
]

GROUP = "group"
"""The setting that names a row's parameter group (:data:`flatness.pipeline.task_plan.GROUP`)."""

_HEADLINE_COMPONENTS = ("", "1")
"""A measure's headline row: its single value, or the top eigenvalue."""

_FIRST = ("lambda_max", "trace")
"""Measures shown first, in this order (the others follow by name)."""


def without_groups(df: pd.DataFrame) -> pd.DataFrame:
    """The rows of a results frame that are not taken per parameter group.

    The report's other sections compare whole networks; the per-group rows belong to
    this section (they would otherwise be read as measures of their own, labelled
    ``λ_max (group=...)``).

    Returns:
        ``df`` without the rows whose settings name a group (all of it when it has no
        ``settings`` column).

    Examples:
        >>> frame = pd.DataFrame({"settings": ['{"k": 1}', '{"group": "0", "k": 1}']})
        >>> len(without_groups(frame))
        1
    """
    if "settings" not in df.columns:
        return df
    grouped = [_names_group(s) for s in df["settings"].tolist()]
    return df[[not g for g in grouped]]


def _names_group(settings: Any) -> bool:
    if isinstance(settings, str) and settings:
        try:
            settings = json.loads(settings)
        except json.JSONDecodeError:
            return False
    return isinstance(settings, Mapping) and GROUP in settings


def _natural(name: str) -> tuple[Any, ...]:
    return tuple(int(p) if p.isdigit() else p for p in re.split(r"(\d+)", name))


def group_scores(
    df: pd.DataFrame, checkpoints: Sequence[str], order: Sequence[str] = ()
) -> pd.DataFrame:
    """The headline value of each measure per checkpoint and parameter group.

    Args:
        df: The report's (normalized) results frame.
        checkpoints: The checkpoints the report compares (its analysis' runs).
        order: Group names in the order to show them (the manifest's list); others
            follow in natural order (``"2"`` before ``"10"``).

    Returns:
        Columns ``checkpoint``, ``regime``, ``measure`` (the display name), ``group``
        and ``value``, groups as an ordered categorical; empty when no row names a
        group.
    """
    rows = []
    for row in df.itertuples(index=False):
        settings = json.loads(str(row.settings))
        if GROUP not in settings or str(row.component) not in _HEADLINE_COMPONENTS:
            continue
        rank = _FIRST.index(row.measure) if row.measure in _FIRST else len(_FIRST)
        rows.append(
            {
                "rank": (rank, str(row.measure)),
                "checkpoint": row.checkpoint,
                "regime": row.regime,
                "measure": DISPLAY_NAMES.get(str(row.measure), str(row.measure)),
                "group": str(settings[GROUP]),
                "value": float(row.value),
            }
        )
    columns = ["rank", "checkpoint", "regime", "measure", "group", "value"]
    out = pd.DataFrame(rows, columns=columns)
    out = out[out["checkpoint"].isin(list(checkpoints))]
    named = [g for g in order if g in set(out["group"])]
    rest = sorted(set(out["group"]) - set(named), key=_natural)
    out["group"] = pd.Categorical(out["group"], categories=named + rest, ordered=True)
    out = out.sort_values(["rank", "group", "checkpoint"]).drop(columns="rank")
    return out.reset_index(drop=True)


def _cell(value: float) -> str:
    return "—" if not math.isfinite(value) else f"{value:.3g}"


def layers_table(scores: pd.DataFrame, study: Study) -> Table:
    """Each measure's median per group and regime, with LB/SB of the medians.

    Returns:
        The table (its numbers, with the number of checkpoints, in ``values``).
    """
    regimes = [r for r in study.regimes if r in set(scores["regime"])]
    medians = (
        scores.groupby(["measure", "group", "regime"], observed=True)["value"]
        .agg(["median", "count"])
        .reset_index()
    )
    cells, values = [], []
    order = {m: i for i, m in enumerate(dict.fromkeys(scores["measure"]))}
    medians = medians.sort_values(
        ["measure", "group"], key=lambda c: c.map(order) if c.name == "measure" else c
    )
    for (measure, group), part in medians.groupby(["measure", "group"], observed=True, sort=False):
        by = part.set_index("regime")
        row: dict[str, str] = {"measure": str(measure), "group": str(group)}
        number: dict[str, Any] = {"measure": measure, "group": group}
        for regime in regimes:
            median = float(by["median"].get(regime, math.nan))
            row[f"{regime} median"] = _cell(median)
            number[f"{regime}_median"] = median
            number[f"{regime}_n"] = int(by["count"].get(regime, 0))
        if study.sb in by.index and study.lb in by.index:
            ratio = float(by.loc[study.lb, "median"] / by.loc[study.sb, "median"])
            row["LB/SB"] = _cell(ratio)
            number["lb_over_sb"] = ratio
        cells.append(row)
        values.append(number)
    return Table(
        "layers",
        "Per-layer sharpness: median over checkpoints per parameter group and regime",
        pd.DataFrame(cells),
        notes=(
            "Each group's value is taken of the Hessian block of its parameters (the other "
            "parameters held fixed); λ_max is the block's top eigenvalue.",
        ),
        values=pd.DataFrame(values),
    )


def layers_figure(scores: pd.DataFrame, study: Study) -> Figure:
    """λ_max and trace (every measure scored per group) across the groups, per regime.

    One panel per measure: a faint point per checkpoint and group, and a line through
    each regime's medians; a log scale when the values span a factor of ten.

    Returns:
        The figure.
    """
    measures = list(dict.fromkeys(scores["measure"]))
    fig, axes = figs.panel_grid(len(measures))
    colours = figs.palette(study.regimes)
    groups = list(scores["group"].cat.categories)
    where = {g: i for i, g in enumerate(groups)}
    for ax, measure in zip(axes, measures, strict=True):
        part = scores[scores["measure"] == measure]
        for regime in [r for r in study.regimes if r in set(part["regime"])]:
            mine = part[part["regime"] == regime]
            x = np.array([where[g] for g in mine["group"]], dtype=float)
            ax.scatter(x, mine["value"], color=colours[regime], alpha=0.35, s=12)
            med = mine.groupby("group", observed=True)["value"].median()
            ax.plot(
                [where[g] for g in med.index], med.to_numpy(), "-o", color=colours[regime],
                label=regime, markersize=4,
            )  # fmt: skip
        if figs.log_worthy(part["value"].to_numpy(dtype=float)):
            ax.set_yscale("log")
        ax.set_xticks(range(len(groups)), groups, rotation=45 if len(groups) > 4 else 0)
        ax.set_xlabel("parameter group")
        ax.set_title(f"{measure} per group")
    axes[0].legend(fontsize="small")
    return fig


class SectionInputs(Protocol):
    """What the sections built outside :mod:`flatness.report.sections` read of its
    :class:`~flatness.report.sections.SectionContext` (typed here, so that they need
    not import the module that lists them)."""

    df: pd.DataFrame
    study: Study
    info: Mapping[str, Any] | None
    root: Path | None

    def table(self, section: Section, table: Table) -> None:
        """Show a table in a section and keep its numbers for ``data/``."""

    def figure(self, fig: Figure, name: str, caption: str) -> FigureBlock:
        """Save a figure and return the block that shows it."""


def layers_section(ctx: SectionInputs) -> Section | None:
    """The per-layer section, or ``None`` when nothing was scored per parameter group.

    Args:
        ctx: The report's :class:`~flatness.report.sections.SectionContext`.

    Returns:
        The section with the table and the figure.
    """
    study = ctx.study
    info: Mapping[str, Any] = ctx.info or {}
    named = (info.get("scoring") or {}).get("groups")
    order = [str(g) for g in named] if isinstance(named, list) else []
    scores = group_scores(normalize(ctx.df), list(study.runs["checkpoint"]), order)
    if scores.empty:
        return None
    section = Section("Per-layer sharpness", "layers")
    section.blocks.append(
        Paragraph(
            f"{scores['checkpoint'].nunique()} checkpoints scored per parameter group "
            f"({', '.join(map(str, scores['group'].cat.categories))}): where in the network "
            "the curvature sits, SB vs LB."
        )
    )
    ctx.table(section, layers_table(scores, study))
    section.blocks.append(
        ctx.figure(
            layers_figure(scores, study),
            "layers",
            "Per-layer λ_max and trace: a point per checkpoint, a line through each "
            "regime's medians across the parameter groups (SB blue, LB red).",
        )
    )
    return section
