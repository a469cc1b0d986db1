"""One page over several reports: what was run, a study's answers, links to the reports.

A study may answer its own questions (:data:`~flatness.report.overview_case.AnswerFn`,
:class:`~flatness.report.overview_case.StudyAnswer`); without one, the overview answers
the questions of Keskar et al. case by case (:func:`keskar_answer`).

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
from functools import partial
from pathlib import Path

import pandas as pd

from flatness.atomic import atomic_path, write_text_atomic
from flatness.report.analysis import Study, analyze
from flatness.report.answers import answers as case_answers
from flatness.report.from_store import load_frame
from flatness.report.outputs import list_own_files, read_manifest
from flatness.report.overview_case import AnswerFn, OverviewCase, StudyAnswer
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
    FigureBlock,
    Links,
    Paragraph,
    Section,
    TableBlock,
    to_html,
    to_markdown,
)

__all__ = ["AnswerFn", "Overview", "OverviewCase", "StudyAnswer", "keskar_answer", "write_overview"]


@dataclass(frozen=True)
class Overview:
    """What :func:`write_overview` wrote: the two pages and the answers they give."""

    html: Path
    markdown: Path
    answers: tuple[str, ...]


def _frame(case: OverviewCase) -> pd.DataFrame:
    """The case's results frame (its store, read at the report's edge), with each run's
    metadata (updates, how it stopped, the test set's size)."""
    return load_frame(case.store, checkpoints=case.checkpoints, details=True)


def _load(case: OverviewCase, n_boot: int, confidence: float, seed: int) -> Study:
    return analyze(_frame(case), n_boot=n_boot, confidence=confidence, seed=seed)


def keskar_answer(
    cases: Sequence[OverviewCase],
    out: Path,
    *,
    n_boot: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
) -> StudyAnswer:
    """Keskar et al.'s (ICLR 2017) questions answered case by case (module docstring).

    An :data:`~flatness.report.overview_case.AnswerFn`: the overview of a plan without
    an answer of its own, and a start for a study that extends it.

    Args:
        cases: The cases with measurements, in display order.
        out: The overview's folder (this answer writes no figure).
        n_boot: Bootstrap resamples for Kendall's τ intervals.
        confidence: The intervals' level.
        seed: The bootstrap's seed.

    Returns:
        One paragraph per case, the tables side by side (a section each, those with
        rows) and their numbers by key.
    """
    studies = [_load(case, n_boot, confidence, seed) for case in cases]
    within = [within_taus(study) for study in studies]
    tables = [
        accuracy_overview(cases, studies),
        sharper_overview(cases, studies),
        keskar_overview(cases, studies),
        kendall_overview(cases, studies, confidence),
        within_overview(cases, studies, within, confidence, n_boot),
    ]
    return StudyAnswer(
        answers=tuple(case_answers(cases, studies, within, confidence)) if cases else (),
        sections=tuple(
            Section(t.title, t.key, [TableBlock(t)]) for t in tables if not t.frame.empty
        ),
        tables={t.key: t.values if t.values is not None else t.frame for t in tables},
    )


def write_overview(
    out: str | os.PathLike[str],
    cases: Sequence[OverviewCase],
    *,
    title: str,
    intro: Sequence[str] = (),
    answer: AnswerFn | None = None,
    n_boot: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
) -> Overview:
    """Write ``report.html`` and ``report.md`` over the cases: what was run, the answers,
    the answer's sections, links to the cases' reports.

    Args:
        out: The folder (the cases' reports are usually its subfolders).
        cases: The cases, in display order.
        title: The page's title.
        intro: Paragraphs shown under the title (what was run, how long it took).
        answer: The study's answer function (called with the cases and ``out``; not
            called without cases); ``None``: :func:`keskar_answer` with ``n_boot``,
            ``confidence`` and ``seed``.
        n_boot: Bootstrap resamples for Kendall's τ intervals (:func:`keskar_answer`).
        confidence: The intervals' level (:func:`keskar_answer`).
        seed: The bootstrap's seed (:func:`keskar_answer`).

    Returns:
        The HTML and Markdown paths and the answers.
    """
    base = Path(out)
    base.mkdir(parents=True, exist_ok=True)
    if answer is None:
        answer = partial(keskar_answer, n_boot=n_boot, confidence=confidence, seed=seed)
    result = answer(cases, base) if cases else StudyAnswer(())
    links = tuple(
        (f"{case.name}: {case.title}", Path(os.path.relpath(case.report, base)).as_posix())
        for case in cases
    )
    sections = [Section("What was run", "setup", [Paragraph(text) for text in intro])]
    if cases:
        sections += [
            Section("Answers", "answers", [Bullets(result.answers)]),
            *result.sections,
            Section("Full reports", "reports", [Links(links)]),
        ]
    else:
        sections.append(Section("Answers", "answers", [Paragraph("No case has results to show.")]))
    earlier = read_manifest(base)
    data = base / "data"
    data.mkdir(exist_ok=True)
    written = [
        base / block.path for s in sections for block in s.blocks if isinstance(block, FigureBlock)
    ]
    finished = False
    try:
        for key, frame in result.tables.items():
            with atomic_path(data / f"{key}.csv") as tmp:
                frame.to_csv(tmp, index=False)
            written.append(data / f"{key}.csv")
        html, markdown = base / "report.html", base / "report.md"
        write_text_atomic(markdown, to_markdown(title, sections))
        write_text_atomic(html, to_html(title, sections, base))
        finished = True
    finally:  # an earlier overview's tables and figures not written again are removed
        list_own_files(base, earlier, [p for p in written if p.is_file()], finished)
    return Overview(html, markdown, result.answers)
