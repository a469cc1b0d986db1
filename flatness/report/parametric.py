"""Parametric plots over seeds: the pairs of one design drawn as one band, tabulated with mean ± sd.

A study trains SB and LB with several seeds and interpolates each seed's pair
(``Case.pair_seeds``; one ``[[pairs]]`` entry per seed). The pairs that differ only in
the seed form a :class:`PairFamily` (:func:`pair_families`): their SB and LB paths are
alike once ``seed<k>`` is masked, and their settings (path, BatchNorm handling) are the
same. A family of several pairs is shown as one figure (:func:`band_figure`): per split
(train/test) and metric (loss/accuracy), every pair's curve thin, their mean thick and
the band from their minimum to their maximum at each α; its table
(:func:`family_table`) gives each pair's barrier and rises beyond each end
(:mod:`~flatness.report.curves`) and their mean ± sd; its sentence
(:func:`family_sentence`) compares the rises beyond LB and beyond SB over the pairs with
an exact paired test (:func:`~flatness.report.paired.paired_test`), its smallest
attainable p beside it. A family of one pair keeps the single-pair figure, table and
sentence.

Reference:
    N. S. Keskar et al. (2017). On large-batch training for deep learning:
    Generalization gap and sharp minima. ICLR 2017, Section 2.1 and Figure 3.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from flatness.report.curves import CurveSummary, Pair, curve_sentence, curve_table
from flatness.report.figure_style import legend_below, regime_colors, style_axis
from flatness.report.figures import parametric_figure
from flatness.report.paired import paired_test
from flatness.report.render import FigureBlock, Section, TableBlock
from flatness.report.stats import format_p_value, mean_std
from flatness.report.tables import DASH, Table, values_frame

__all__ = [
    "PairFamily",
    "band_figure",
    "family_sentence",
    "family_table",
    "pair_families",
    "parametric_content",
    "parametric_sentences",
]

SEED = re.compile(r"seed\d+")
"""The seed in a checkpoint's path (``sb/seed3/final.pt``), masked to group pairs."""

PANELS = (("train", "loss"), ("test", "loss"), ("train", "accuracy"), ("test", "accuracy"))
"""The band figure's panels, row by row: loss on top, accuracy below; train left."""


@dataclass(frozen=True)
class PairFamily:
    """The parametric plots of one design over seeds.

    Attributes:
        label: What the pairs share: ``SB path → LB path`` with the seed masked.
        pairs: The pairs, in the report's order.
        summaries: Their summaries (:func:`~flatness.report.curves.summarize`), in order.
    """

    label: str
    pairs: tuple[Pair, ...]
    summaries: tuple[CurveSummary, ...]

    @property
    def settings(self) -> dict[str, Any]:
        """The scoring settings the pairs share (path, BatchNorm handling)."""
        return self.pairs[0].settings


def _masked(path: str) -> str:
    return SEED.sub("seed*", path)


def pair_families(pairs: Sequence[Pair], summaries: Sequence[CurveSummary]) -> list[PairFamily]:
    """Group the pairs that differ only in the seed.

    Two pairs belong together when their SB paths, and their LB paths, are the same with
    every ``seed<k>`` masked, and their settings are the same. A pair whose paths name
    no seed is a family of its own (two such pairs may be one pair labelled twice).

    Args:
        pairs: The report's pairs (:func:`~flatness.report.curves.pairs`).
        summaries: One summary per pair, in the same order.

    Returns:
        The families, in the order of their first pair.

    Raises:
        ValueError: If ``pairs`` and ``summaries`` differ in length.
    """
    if len(pairs) != len(summaries):
        raise ValueError(f"{len(pairs)} pairs but {len(summaries)} summaries")
    groups: dict[tuple[str, str, str], list[int]] = {}
    for i, pair in enumerate(pairs):
        seeded = bool(SEED.search(pair.sb_path) or SEED.search(pair.lb_path))
        key = (
            _masked(pair.sb_path),
            _masked(pair.lb_path),
            json.dumps(pair.settings, sort_keys=True, default=str) if seeded else f"#{i}",
        )
        groups.setdefault(key, []).append(i)
    return [
        PairFamily(
            label=f"{sb} → {lb}",
            pairs=tuple(pairs[i] for i in members),
            summaries=tuple(summaries[i] for i in members),
        )
        for (sb, lb, _), members in groups.items()
    ]


def _curves(family: PairFamily, split: str, metric: str) -> pd.DataFrame:
    """α × pair: the values of one split and metric (accuracy in %)."""
    columns = {}
    for pair in family.pairs:
        rows = pair.frame[(pair.frame["split"] == split) & (pair.frame["metric"] == metric)]
        columns[pair.label] = rows.groupby("alpha")["value"].mean()
    frame = pd.DataFrame(columns).sort_index()
    return frame * 100 if metric == "accuracy" else frame


def band_figure(family: PairFamily, *, title: str) -> Figure:
    """One figure of the family: per split and metric, each pair thin, the mean thick, the
    min–max band over the pairs shaded.

    Args:
        family: Two or more pairs (one works too: its band is empty).
        title: The figure's title.

    Returns:
        The figure: four panels (train/test loss on top, train/test accuracy below)
        against α; a loss axis is logarithmic where its values span more than two
        decades (:func:`~flatness.report.figure_style.log_scale`).
    """
    colours = regime_colors([pair.label for pair in family.pairs])
    fig = Figure(figsize=(7.6, 6.0), layout="constrained")
    axes = fig.subplots(2, 2, sharex=True).ravel()
    for ax, (split, metric) in zip(axes, PANELS, strict=True):
        curves = _curves(family, split, metric)
        if curves.empty:
            ax.set_title(f"{split} {metric}: not recorded", fontsize=9)
            continue
        alphas = curves.index.to_numpy(dtype=float)
        for label, values in curves.items():
            ax.plot(alphas, values.to_numpy(), color=colours[str(label)], lw=0.8, alpha=0.7)
        if curves.shape[1] > 1:
            ax.fill_between(
                alphas, curves.min(axis=1), curves.max(axis=1), color="0.5", alpha=0.25, lw=0
            )
        ax.plot(alphas, curves.mean(axis=1).to_numpy(), color="black", lw=1.8)
        for x, name in ((0.0, "SB"), (1.0, "LB")):
            ax.axvline(x, color="0.6", lw=0.8, ls=":")
            ax.annotate(
                name, (x, 1.0), xycoords=("data", "axes fraction"), ha="center", va="bottom"
            )
        unit = "accuracy (%)" if metric == "accuracy" else "cross-entropy loss"
        style_axis(
            ax,
            "y",
            curves.to_numpy(dtype=float),
            log=False if metric == "accuracy" else None,
            label=f"{split} {unit}",
        )
        ax.tick_params(labelsize=7)
    for ax in axes[2:]:
        ax.set_xlabel("α  (θ = (1 − α) θ_SB + α θ_LB)", fontsize=8)
    handles: list[Any] = [
        Line2D([], [], color="black", lw=1.8, label=f"mean of {len(family.pairs)}")
    ]
    handles.append(Patch(color="0.5", alpha=0.25, label="min–max over pairs"))
    handles += [Line2D([], [], color=c, lw=0.8, label=g) for g, c in colours.items()]
    legend_below(fig, handles, columns=4)
    fig.suptitle(title, fontsize=10)
    return fig


FIELDS = {
    "train loss SB (α=0)": "loss_sb",
    "train loss LB (α=1)": "loss_lb",
    "barrier on [0, 1]": "barrier",
    "rise beyond SB": "rise_sb",
    "rise beyond LB": "rise_lb",
}
"""The table's numeric columns and the summary fields behind them."""


def family_table(family: PairFamily, key: str = "parametric") -> Table:
    """Each pair's endpoints, barrier and rises, and (for several pairs) their mean ± sd.

    Args:
        family: The pairs.
        key: The table's key (its CSV's name).

    Returns:
        The table of :func:`~flatness.report.curves.curve_table` with a last row
        ``mean ± sd (n pairs)``; its values hold one record per pair and the mean and sd.
    """
    table = curve_table(list(family.summaries))
    records: list[dict[str, object]] = [
        {"pair": s.label, "step": s.step}
        | {column: getattr(s, name) for column, name in FIELDS.items()}
        | {"test accuracy SB (%)": 100 * s.test_accuracy_sb}
        | {"test accuracy LB (%)": 100 * s.test_accuracy_lb}
        for s in family.summaries
    ]
    frame = table.frame
    if len(family.summaries) > 1:
        row: dict[str, str] = {"pair": f"mean ± sd ({len(family.summaries)} pairs)"}
        for column, name in FIELDS.items():
            stat = mean_std([getattr(s, name) for s in family.summaries])
            row[column] = stat.text() if stat.n else DASH
            records += [
                {"pair": "mean", "column": column, "value": stat.mean, "n": stat.n},
                {"pair": "sd", "column": column, "value": stat.std, "n": stat.n},
            ]
        sb = mean_std([100 * s.test_accuracy_sb for s in family.summaries])
        lb = mean_std([100 * s.test_accuracy_lb for s in family.summaries])
        row["test acc. SB / LB (%)"] = f"{sb.text()} / {lb.text()}"
        frame = pd.concat([frame, pd.DataFrame([row])], ignore_index=True)
    return Table(key, table.title, frame, table.notes, values_frame(records))


def _finite(values: Sequence[float]) -> list[float]:
    return [v for v in values if math.isfinite(v)]


def family_sentence(family: PairFamily) -> str | None:
    """One sentence on the family: the rises beyond each end over the pairs, tested.

    With one pair, :func:`~flatness.report.curves.curve_sentence`. With several: the
    mean ± sd of the rise beyond LB and beyond SB, in how many pairs LB's is larger,
    the exact paired tests (Wilcoxon signed-rank and sign) with the smallest p the
    number of pairs allows, and in how many pairs a barrier separates the minimisers.

    Returns:
        The sentence, or ``None`` when no pair reaches beyond both ends.
    """
    if len(family.pairs) == 1:
        return curve_sentence(family.summaries[0])
    usable = [s for s in family.summaries if math.isfinite(s.rise_sb) and math.isfinite(s.rise_lb)]
    if not usable:
        return None
    n = len(family.summaries)
    test = paired_test({s.label: s.rise_sb for s in usable}, {s.label: s.rise_lb for s in usable})
    steps = sorted({s.step for s in usable})
    step = f"{steps[0]:g}" if len(steps) == 1 else f"{steps[0]:g}–{steps[-1]:g}"
    rise_lb = mean_std([s.rise_lb for s in usable]).text()
    rise_sb = mean_std([s.rise_sb for s in usable]).text()
    text = (
        f"Parametric plots over {n} seed pairs ({family.label}): stepping α = {step} beyond "
        f"each end, the training loss rises by {rise_lb} beyond LB and {rise_sb} beyond SB "
        f"(mean ± sd over {len(usable)} pairs); the rise beyond LB is the larger in "
        f"{test.wins}/{test.n} pairs (Wilcoxon signed-rank p = "
        f"{format_p_value(test.wilcoxon_p)}, sign test p = {format_p_value(test.sign_p)}; "
        f"with {test.n} pairs no p below {format_p_value(test.min_p)} is attainable)"
    )
    barriers = _finite([s.barrier for s in family.summaries])
    if barriers:
        above = sum(b > 1e-12 for b in barriers)
        text += f"; a barrier separates the two minimisers in {above}/{len(barriers)} pairs" + (
            f" (largest {max(barriers):.3g})" if above else ""
        )
    clamped = sum(bool(s.clamped) for s in family.summaries)
    if clamped:
        text += (
            f". In {clamped} pairs BatchNorm running variances extrapolated beyond the ends "
            'were negative and clamped to zero (score with bn = "recompute" to avoid it)'
        )
    return text + "."


def parametric_sentences(pairs: Sequence[Pair], summaries: Sequence[CurveSummary]) -> list[str]:
    """The summary's sentences on the parametric plots: one per family of pairs.

    Returns:
        The sentences (none for families whose pairs never reach beyond both ends).
    """
    sentences = (family_sentence(f) for f in pair_families(pairs, summaries))
    return [s for s in sentences if s]


def _settings_text(pair: Pair) -> str:
    if not pair.settings:
        return ""
    return (
        f" Path: {pair.settings.get('curve', 'linear')}; BatchNorm statistics, if the "
        f"network has any: {pair.settings.get('bn', '?')}."
    )


def parametric_content(
    section: Section,
    pairs: Sequence[Pair],
    summaries: Sequence[CurveSummary],
    figure: Callable[[Figure, str, str], FigureBlock],
    table: Callable[[Section, Table], None],
) -> None:
    """Fill the parametric section: a figure per family of pairs, and their tables.

    A family of several seed pairs gets :func:`band_figure` and its own
    :func:`family_table` (each pair and the mean ± sd); the pairs alone in their family
    keep Keskar et al.'s single-pair figure
    (:func:`~flatness.report.figures.parametric_figure`) and share one table.

    Args:
        section: The section to fill.
        pairs: The report's pairs.
        summaries: One summary per pair.
        figure: Saves a figure under a name with a caption and returns its block.
        table: Shows a table in a section and keeps its numbers for ``data/``.
    """
    families = pair_families(pairs, summaries)
    several = [f for f in families if len(f.pairs) > 1]
    singles = [f for f in families if len(f.pairs) == 1]
    for family in families:
        pair = family.pairs[0]
        if len(family.pairs) == 1:
            index = next(i for i, p in enumerate(pairs) if p is pair)
            title = f"{pair.label}: {pair.sb_path} (α=0) → {pair.lb_path} (α=1)"
            section.blocks.append(
                figure(
                    parametric_figure(pair.frame, title=title),
                    f"parametric-{index + 1}-{pair.label}",
                    f"Parametric plot, {title}: cross-entropy loss (blue, left axis) and "
                    "accuracy (red, right axis) on the training (solid) and test (dashed) "
                    f"sets.{_settings_text(pair)}",
                )
            )
            continue
        number = several.index(family) + 1
        title = f"{len(family.pairs)} seed pairs: {family.label}"
        section.blocks.append(
            figure(
                band_figure(family, title=title),
                f"parametric-seeds-{number}-{family.label}",
                f"Parametric plots of {len(family.pairs)} seed pairs (SB and LB of one seed "
                f"each; {family.label}): loss (top) and accuracy (bottom) on the training "
                "(left) and test (right) sets against α. Thin: each pair; thick: their "
                "mean; shaded: their minimum to maximum at each α. A loss axis is "
                f"logarithmic where the values span more than two decades.{_settings_text(pair)}",
            )
        )
        key = "parametric-seeds" if len(several) == 1 else f"parametric-seeds-{number}"
        shown = family_table(family, key)
        if len(several) > 1:
            shown = replace(shown, title=f"{shown.title}: {family.label}")
        table(section, shown)
    if singles:
        section.blocks.append(TableBlock(curve_table([f.summaries[0] for f in singles])))
