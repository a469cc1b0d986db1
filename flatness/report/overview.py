"""One page over several reports: the questions of Keskar et al., answered case by case.

A *case* is one network on one data set with its own results store and report
(:func:`~flatness.report.from_store.build_from_store`). :func:`write_overview` reads
every case's results frame (:func:`~flatness.report.from_store.load_frame`), runs
:func:`~flatness.report.analysis.analyze` on it and writes ``report.html`` and
``report.md`` that put the cases side by side (the tables in
:mod:`~flatness.report.overview_tables`, the answers in
:mod:`~flatness.report.answers`):

- whether LB is sharper than SB in every seed, by every measure (Keskar et al.'s
  finding is that it is, for ε-sharpness at both ε, in full space and in a subspace);
- whether LB's test accuracy is below SB's, by how much, with the seeds' spread;
- the paper's Tables 2-4 values beside ours;
- how each measure ranks all of a case's checkpoints (batch-size sweep included) by
  test accuracy: Kendall's τ with its bootstrap interval, and the same counted only
  within each batch size (:func:`~flatness.report.correlation.within_kendall`), which
  separates "sharper minima generalize worse" from "both follow the batch size".

Every sentence is written from the numbers; nothing is assumed to agree with the paper.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from flatness.atomic import atomic_path, write_text_atomic
from flatness.report.analysis import Study, analyze
from flatness.report.answers import answers as case_answers
from flatness.report.from_store import load_frame
from flatness.report.overview_case import OverviewCase
from flatness.report.overview_tables import (
    accuracy_overview,
    kendall_overview,
    keskar_overview,
    sharper_overview,
    within_overview,
    within_taus,
)
from flatness.report.render import (
    Bullets,
    Links,
    Paragraph,
    Section,
    TableBlock,
    to_html,
    to_markdown,
)

__all__ = ["Overview", "OverviewCase", "write_overview"]


@dataclass(frozen=True)
class Overview:
    """What :func:`write_overview` wrote: the two pages and the answers they give."""

    html: Path
    markdown: Path
    answers: tuple[str, ...]


def _frame(case: OverviewCase) -> pd.DataFrame:
    """The case's results frame (its store, read at the report's edge)."""
    return load_frame(case.store, checkpoints=case.checkpoints)


def _load(case: OverviewCase, n_boot: int, confidence: float, seed: int) -> Study:
    return analyze(_frame(case), n_boot=n_boot, confidence=confidence, seed=seed)


def write_overview(
    out: str | os.PathLike[str],
    cases: Sequence[OverviewCase],
    *,
    title: str,
    intro: Sequence[str] = (),
    n_boot: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
) -> Overview:
    """Write ``report.html`` and ``report.md`` comparing the cases (module docstring).

    Args:
        out: The folder (the cases' reports are usually its subfolders).
        cases: The cases, in display order.
        title: The page's title.
        intro: Paragraphs shown under the title (what was run, how long it took).
        n_boot: Bootstrap resamples for Kendall's τ intervals.
        confidence: The intervals' level.
        seed: The bootstrap's seed.

    Returns:
        The HTML and Markdown paths and the answers (one sentence per case).
    """
    base = Path(out)
    base.mkdir(parents=True, exist_ok=True)
    studies = [_load(case, n_boot, confidence, seed) for case in cases]
    within = [within_taus(study) for study in studies]
    tables = [
        accuracy_overview(cases, studies),
        sharper_overview(cases, studies),
        keskar_overview(cases, studies),
        kendall_overview(cases, studies, confidence),
        within_overview(cases, studies, within, confidence, n_boot),
    ]
    links = tuple(
        (f"{case.name}: {case.title}", Path(os.path.relpath(case.report, base)).as_posix())
        for case in cases
    )
    sections = [Section("What was run", "setup", [Paragraph(text) for text in intro])]
    answers: list[str] = []
    if cases:
        answers = case_answers(cases, studies, within, confidence)
        sections += [
            Section("Answers", "answers", [Bullets(tuple(answers))]),
            *(Section(t.title, t.key, [TableBlock(t)]) for t in tables if not t.frame.empty),
            Section("Full reports", "reports", [Links(links)]),
        ]
    else:
        sections.append(Section("Answers", "answers", [Paragraph("No case has results to show.")]))
    data = base / "data"
    data.mkdir(exist_ok=True)
    for table in tables:
        with atomic_path(data / f"{table.key}.csv") as tmp:
            (table.values if table.values is not None else table.frame).to_csv(tmp, index=False)
    html, markdown = base / "report.html", base / "report.md"
    write_text_atomic(markdown, to_markdown(title, sections))
    write_text_atomic(html, to_html(title, sections, base))
    return Overview(html, markdown, tuple(answers))
