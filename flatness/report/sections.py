"""The report's sections, one builder each, in the order the report shows them.

Every builder takes the :class:`SectionContext` (the analysis, the frame, the pairs,
the folders and what was written so far) and returns its
:class:`~flatness.report.render.Section`; a section whose data is missing says what to
score to get it (:meth:`SectionContext.left_out`). :data:`SECTIONS` lists them;
:func:`flatness.report.build` runs them and writes the pages.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import cached_property, partial
from pathlib import Path
from typing import Any

import pandas as pd
from matplotlib.figure import Figure

from flatness.atomic import atomic_path
from flatness.report import figures as figs
from flatness.report.analysis import Study
from flatness.report.batchnorm_notes import batchnorm_section
from flatness.report.comparisons import comparison_table, correlation_table, trend_table
from flatness.report.curves import (
    CurveSummary,
    Pair,
    display_path,
)
from flatness.report.frames import density_curves, normalize
from flatness.report.layers import layers_section, without_groups
from flatness.report.parametric import parametric_content, parametric_sentences
from flatness.report.provenance import provenance_table
from flatness.report.render import Bullets, FigureBlock, Links, Paragraph, Section, TableBlock
from flatness.report.summary import pinned_text, summary_sentences
from flatness.report.tables import (
    Table,
    accuracy_table,
    eigenvalues_table,
    keskar_tables,
    measures_table,
    scores_table,
)
from flatness.report.training import training_content

__all__ = ["SECTIONS", "SectionContext"]


@dataclass
class SectionContext:
    """What the section builders read, and what they have written so far.

    Attributes:
        df: The results frame the report is built from.
        study: Its analysis.
        out: The report's folder.
        pairs: The parametric plots, one per stored SB/LB pair.
        summaries: One summary per pair (:func:`~flatness.report.curves.summarize`).
        reference: Keskar et al.'s network shown beside ours, or ``None``.
        info: The store's info (manifest, scoring settings), if any.
        failed: Checkpoints and measures that failed, if any.
        tracks: Records taken during training (:func:`flatness.load_tracks`), if any.
        command: The command that regenerates the report.
        root: Checkpoint paths are shown relative to it.
        figures: The PNG files written.
        tables: The tables shown (their numbers go to ``data/*.csv``).
        data: The CSV files written.
        notes: The sections (or parts) left out, and why.
    """

    df: pd.DataFrame
    study: Study
    out: Path
    pairs: list[Pair]
    summaries: list[CurveSummary]
    reference: str | None = None
    info: Mapping[str, Any] | None = None
    failed: pd.DataFrame | None = None
    tracks: pd.DataFrame | None = None
    command: str | None = None
    root: Path | None = None
    figures: list[Path] = field(default_factory=list)
    tables: list[Table] = field(default_factory=list)
    data: list[Path] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @cached_property
    def summary(self) -> list[str]:
        """The generated summary: the analysis' sentences and one per parametric plot."""
        sentences = summary_sentences(self.study)
        return sentences + parametric_sentences(self.pairs, self.summaries)

    @property
    def figure_dir(self) -> Path:
        """Where the PNG files go (``figures/``)."""
        return self.out / "figures"

    @property
    def pages(self) -> int:
        """Figures per kind: measures are split over pages of a few panels each."""
        return figs.pages(self.study)

    def figure(self, fig: Figure, name: str, caption: str) -> FigureBlock:
        """Save a figure as ``figures/<name>.png`` (``name`` made a bounded, safe file name).

        Returns:
            The block that shows it with its caption.
        """
        path = figs.save(fig, self.figure_dir / f"{figs.file_stem(name)}.png")
        self.figures.append(path)
        return FigureBlock(f"figures/{path.name}", caption)

    def table(self, section: Section, table: Table) -> None:
        """Show ``table`` in ``section`` and keep its numbers for ``data/``."""
        self.tables.append(table)
        section.blocks.append(TableBlock(table))

    def left_out(self, section: Section, text: str) -> None:
        """Say in ``section`` (and in the report's notes) what is missing and why."""
        self.notes.append(f"{section.title}: {text}")
        section.blocks.append(Paragraph(f"Left out: {text}"))

    def part(self, page: int) -> tuple[str, str]:
        """File-name suffix and caption suffix of a figure page (empty for one page).

        Returns:
            ``(suffix, caption)``, e.g. ``("-2", " (part 2 of 3)")``.
        """
        if self.pages == 1:
            return "", ""
        return (f"-{page + 1}" if page else ""), f" (part {page + 1} of {self.pages})"


def summary_section(ctx: SectionContext) -> Section:
    """The generated summary: the analysis' sentences and one per parametric plot.

    Returns:
        The section.
    """
    return Section("Summary", "summary", [Bullets(tuple(ctx.summary))])


def provenance_section(ctx: SectionContext) -> Section:
    """Data, network, settings, versions and dates, and what failed.

    Returns:
        The section.
    """
    prov = provenance_table(
        ctx.df, ctx.study, info=ctx.info, failed=ctx.failed, command=ctx.command
    )
    section = Section("Provenance", "provenance", [TableBlock(prov)])
    failed = ctx.failed
    if failed is not None and not failed.empty:
        lines = []
        for path, error in zip(failed["path"], failed["error"], strict=True):
            shown = display_path(path, ctx.root)
            lines.append(f"{shown}: {str(error).replace(str(path), shown)}")
        section.blocks.append(Bullets(tuple(lines)))
    return section


def accuracy_section(ctx: SectionContext) -> Section:
    """Keskar et al.'s Table 2 for these runs.

    Returns:
        The section.
    """
    section = Section("Accuracy (Table 2)", "accuracy")
    if ctx.study.has_accuracy:
        ctx.table(section, accuracy_table(ctx.study, ctx.reference))
        if ctx.study.single_seed:
            section.blocks.append(Paragraph("One run per regime: no standard deviation (±)."))
    else:
        ctx.left_out(section, "the frame has no test_accuracy column (or only missing values).")
    return section


def sharpness_section(ctx: SectionContext) -> Section:
    """Tables 3 and 4 (ε-sharpness), every other measure and the top eigenvalues per regime.

    Returns:
        The section.
    """
    section = Section("Sharpness per regime (Tables 3 and 4)", "sharpness")
    keskar = keskar_tables(ctx.study, ctx.reference)
    for table in keskar:
        ctx.table(section, table)
    if not keskar:
        ctx.left_out(
            section,
            "no Keskar ε-sharpness in the results; score it with "
            "keskar = {eps = [1e-3, 5e-4], subspace = [0, 100]} in the manifest's [measures].",
        )
    other = measures_table(ctx.study)
    if other is not None:
        ctx.table(section, other)
    top = eigenvalues_table(normalize(without_groups(ctx.df)), ctx.study)
    if top is not None:
        ctx.table(section, top)
    elif not ctx.study.columns:
        ctx.left_out(section, "no scalar measure in the results.")
    return section


def sb_vs_lb_section(ctx: SectionContext) -> Section:
    """SB vs LB per quantity, with the Mann–Whitney test.

    Returns:
        The section.
    """
    section = Section("SB vs LB", "sb-vs-lb")
    comparison = comparison_table(ctx.study)
    if comparison is not None:
        ctx.table(section, comparison)
    else:
        ctx.left_out(section, ctx.study.sb_lb_note or "no two regimes to compare.")
    return section


def _figure_pages(
    ctx: SectionContext,
    section: Section,
    draw: Callable[[int], Figure | None],
    name: str,
    caption: str,
) -> bool:
    """Add one figure per page that ``draw`` returns; whether any was drawn."""
    drawn = False
    for page in range(ctx.pages):
        fig = draw(page)
        if fig is None:
            continue
        drawn = True
        suffix, part_of = ctx.part(page)
        section.blocks.append(ctx.figure(fig, f"{name}{suffix}", f"{caption}{part_of}."))
    return drawn


def batch_size_section(ctx: SectionContext) -> Section:
    """Each measure against the batch size and η/B, and their Kendall τ.

    Returns:
        The section.
    """
    study = ctx.study
    section = Section("Sharpness vs batch size and η/B", "batch-size")
    if not _figure_pages(
        ctx,
        section,
        partial(figs.trend_figure, study, "batch_size"),
        "batch-size",
        "Each measure against the batch size: one point per checkpoint (coloured by "
        "regime), the line joins the means per batch size",
    ):
        ctx.left_out(section, "fewer than two distinct batch sizes in the results.")
    rates = study.learning_rates
    known, runs = study.runs_with_lr, len(study.runs)
    only = "" if known == runs else f" (η is recorded for {known} of {runs} runs only)"
    noise_drawn = len(rates) >= 2 and _figure_pages(
        ctx,
        section,
        partial(figs.trend_figure, study, "lr_over_batch"),
        "noise",
        "Each measure against η/B, the learning rate over the batch size (the scale of "
        "SGD noise, Smith et al. 2018): runs with equal η/B should match if only the "
        f"noise matters{only}",
    )
    if not noise_drawn and len(rates) == 1 and study.batch_trend:
        section.blocks.append(
            Paragraph(
                f"Every run has learning rate η = {rates[0]:g}, so η/B is proportional to "
                "1/B and adds nothing to the batch-size view."
                if known == runs
                else f"{known} of {runs} runs record a learning rate (η = {rates[0]:g}); "
                "the others record none, so η/B is not shown."
            )
        )
    trend = trend_table(study)
    if trend is not None:
        ctx.table(section, trend)
    return section


def correlation_section(ctx: SectionContext) -> Section:
    """Each measure against the test accuracy and the generalization gap.

    Returns:
        The section.
    """
    section = Section("Sharpness vs test accuracy and generalization gap", "correlation")
    for target, name in (("test_accuracy", "test accuracy"), ("generalization_gap", "gap")):
        if target == "generalization_gap" and ctx.study.train_pinned:
            section.blocks.append(Paragraph(pinned_text(ctx.study)))
            continue
        table = correlation_table(ctx.study, target)
        unit = "points" if target == "generalization_gap" else "%"
        if table is None:
            ctx.left_out(section, f"no {name} values or no measures to correlate with it.")
            continue
        ctx.table(section, table)
        _figure_pages(
            ctx,
            section,
            partial(figs.correlation_figure, ctx.study, target),
            f"vs-{target.replace('_', '-')}",
            f"Each measure (x) against the {name} (y, {unit}), one point per checkpoint; "
            "titles give Kendall's τ and Spearman's ρ with bootstrap intervals",
        )
    return section


def parametric_section(ctx: SectionContext) -> Section:
    """The parametric plots of the stored pairs (Keskar et al.'s Figure 3): one figure with
    a band per family of seed pairs (:mod:`~flatness.report.parametric`).

    Returns:
        The section.
    """
    section = Section("Parametric plots (Keskar et al., Figure 3)", "parametric")
    parametric_content(section, ctx.pairs, ctx.summaries, ctx.figure, ctx.table)
    if not ctx.pairs:
        ctx.left_out(
            section,
            "no SB/LB pair was interpolated; name one in the manifest "
            '([[pairs]] sb = "...", lb = "...") and score again.',
        )
    return section


def density_section(ctx: SectionContext) -> Section:
    """The spectral densities, per checkpoint and per regime.

    Returns:
        The section.
    """
    section = Section("Hessian spectral density", "density")
    fig = figs.density_figure(ctx.study, density_curves(without_groups(ctx.df)))
    if fig is not None:
        section.blocks.append(
            ctx.figure(
                fig,
                "density",
                "Stochastic Lanczos quadrature estimates of the Hessian's eigenvalue density "
                "(log scale), coloured by regime: a thin line per checkpoint, a thick line "
                "for each regime's mean.",
            )
        )
    else:
        ctx.left_out(
            section,
            "no spectral density in the results; score density = {} (from Python, load "
            "the results with load_results(store, details=True) to keep its quadrature).",
        )
    return section


def training_section(ctx: SectionContext) -> Section | None:
    """Learning curves, the measures' trajectories and a table per schedule/regime.

    Returns:
        The section, or ``None`` when the report has no tracks (no section, no note).
    """
    if ctx.tracks is None or ctx.tracks.empty:
        return None
    return training_content(ctx.tracks, ctx.figure, ctx.table, ctx.study.regimes)


def data_section(ctx: SectionContext) -> Section:
    """Write ``data/scores.csv`` and every table's numbers (atomically); link them.

    Returns:
        The section.
    """
    data_dir = ctx.out / "data"
    data_dir.mkdir(parents=True, exist_ok=True)
    scores = scores_table(ctx.study)
    scores["path"] = [display_path(p, ctx.root) for p in scores["path"]]
    frames = [("scores", scores)]
    frames += [(t.key, t.values) for t in ctx.tables if t.values is not None]
    for key, frame in frames:
        path = data_dir / f"{key}.csv"
        with atomic_path(path) as tmp:
            frame.to_csv(tmp, index=False)
        ctx.data.append(path)
    return Section(
        "Data",
        "data",
        [
            Paragraph("The numbers behind the tables, as CSV files beside this report:"),
            Links(tuple((f"data/{p.name}", f"data/{p.name}") for p in ctx.data)),
        ],
    )


SECTIONS: tuple[Callable[[SectionContext], Section | None], ...] = (
    summary_section,
    provenance_section,
    accuracy_section,
    sharpness_section,
    sb_vs_lb_section,
    batch_size_section,
    correlation_section,
    parametric_section,
    density_section,
    layers_section,
    batchnorm_section,
    training_section,
    data_section,
)
"""The report's sections in display order; the data section comes last (it writes the
numbers of every table the others showed). A builder returning ``None`` adds no section
(the training section of a report without tracks)."""
