"""The report's "Training" section, and the report of a store that holds training only.

:func:`training_content` is the section of records taken during training
(:func:`flatness.load_tracks`: a tracker's measurements, per-epoch histories): the table
of :func:`~flatness.report.learning.training_table` and the figures of
:mod:`~flatness.report.learning_figures`. A report shows it when it has such records
(``training_section`` in :data:`flatness.report.sections.SECTIONS`; no section, no note
without them). :func:`build_training` writes a report of that section alone, for a store
whose checkpoints are not scored yet (a training loop's tracker writes such a store):
``flatness report`` runs it there.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import pandas as pd
from matplotlib.figure import Figure

from flatness.atomic import atomic_path, write_text_atomic
from flatness.report import figures as figs
from flatness.report.frames import ReportInputError
from flatness.report.learning import group_labels, training_table
from flatness.report.learning_figures import training_figures
from flatness.report.outputs import Report, list_own_files, read_manifest
from flatness.report.render import (
    FigureBlock,
    Links,
    Paragraph,
    Section,
    TableBlock,
    to_html,
    to_markdown,
)
from flatness.report.tables import Table

__all__ = ["build_training", "training_content"]

SaveFigure = Callable[[Figure, str, str], FigureBlock]
"""Saves a figure under a name with a caption and returns the block that shows it."""
ShowTable = Callable[[Section, Table], None]
"""Shows a table in a section and keeps its numbers for ``data/``."""


def training_content(
    tracks: pd.DataFrame, figure: SaveFigure, table: ShowTable, order: Sequence[str] = ()
) -> Section:
    """The Training section of ``tracks`` (not empty): what it holds, the table, the figures.

    Args:
        tracks: :func:`flatness.load_tracks`'s frame.
        figure: Saves a figure (:meth:`~flatness.report.sections.SectionContext.figure`).
        table: Shows a table (:meth:`~flatness.report.sections.SectionContext.table`).
        order: The report's regimes in its order, so that a regime's curves have its
            colour of the report's other figures.

    Returns:
        The section.
    """
    section = Section("Training", "training")
    labels = group_labels(tracks)
    runs_per_group = labels.value_counts()
    single = sorted(str(g) for g, n in runs_per_group.items() if n == 1)
    intro = (
        f"{tracks['run'].nunique()} runs in {len(runs_per_group)} schedules/regimes, "
        f"{len(tracks)} records. Curves: the mean over each schedule/regime's runs (seeds) "
        "with a band from their minimum to their maximum."
    )
    if single:
        intro += (
            f" One run only (no band over seeds): {', '.join(single)}; for a measure with a "
            "standard error, that run's band is ±1 standard error."
        )
    section.blocks.append(Paragraph(intro))
    table(section, training_table(tracks))
    section.blocks.extend(training_figures(tracks, labels, figure, order))
    return section


def build_training(
    tracks: pd.DataFrame,
    out: str | os.PathLike[str],
    *,
    title: str | None = None,
    command: str | None = None,
) -> Report:
    """Write a report of training alone: the Training section and its numbers.

    For a store that holds records taken during training and no measurement of a
    checkpoint yet. The folder is handled as :func:`flatness.report.build` handles it
    (atomic files, an earlier report's leftovers removed, nothing else touched).

    Args:
        tracks: :func:`flatness.load_tracks`'s frame.
        out: The report's folder (created).
        title: The page's title (default ``Training report``).
        command: The command that regenerates the report, printed on the page.

    Returns:
        The :class:`~flatness.report.outputs.Report` written (no summary; its note says
        that the comparison sections need scored checkpoints).

    Raises:
        flatness.report.ReportInputError: If ``tracks`` is empty.
    """
    started = time.perf_counter()
    if tracks.empty:
        raise ReportInputError("no records taken during training (the tracks are empty)")
    base = Path(out)
    base.mkdir(parents=True, exist_ok=True)
    earlier = read_manifest(base)
    figures: list[Path] = []
    data: list[Path] = []
    tables: list[Table] = []

    def figure(fig: Figure, name: str, caption: str) -> FigureBlock:
        path = figs.save(fig, base / "figures" / f"{figs.file_stem(name)}.png")
        figures.append(path)
        return FigureBlock(f"figures/{path.name}", caption)

    def table(section: Section, shown: Table) -> None:
        tables.append(shown)
        section.blocks.append(TableBlock(shown))

    note = (
        "sharpness and accuracy comparisons: no checkpoint is scored yet (flatness score "
        "scores them), so this report shows training only."
    )
    about = [Paragraph(f"Left out: {note}")]
    about += [Paragraph(f"Made by: {command}")] if command else []
    heading = title or "Training report"
    markdown, html_page = base / "report.md", base / "report.html"
    finished = False
    try:
        section = training_content(tracks, figure, table)
        for shown in tables:
            path = base / "data" / f"{shown.key}.csv"
            path.parent.mkdir(parents=True, exist_ok=True)
            with atomic_path(path) as tmp:
                (shown.values if shown.values is not None else shown.frame).to_csv(tmp, index=False)
            data.append(path)
        links = Links(tuple((f"data/{p.name}", f"data/{p.name}") for p in data))
        sections = [
            Section("About this report", "about", list(about)),
            section,
            Section("Data", "data", [Paragraph("The numbers behind the table:"), links]),
        ]
        write_text_atomic(markdown, to_markdown(heading, sections))
        write_text_atomic(html_page, to_html(heading, sections, base))
        finished = True
    finally:
        list_own_files(base, earlier, [*figures, *data], finished)
    return Report(
        out=base,
        html=html_page,
        markdown=markdown,
        figures=tuple(figures),
        data=tuple(data),
        summary=(),
        notes=(note,),
        seconds=time.perf_counter() - started,
    )
