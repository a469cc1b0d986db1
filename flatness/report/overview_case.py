"""A case of an overview (one network on one data set, with its store and report), and
what a study's answer function returns about its cases.

A study answers its questions with an :data:`AnswerFn`: given the cases shown and the
overview's folder, it reads each case's data (:func:`flatness.report.load_frame`,
:func:`flatness.pipeline.readers.load_runs`, :func:`flatness.pipeline.readers.load_tracks`),
writes its figures under ``<folder>/figures/`` and returns a :class:`StudyAnswer`, whose
sentences the overview shows under "Answers" and the command line prints.
:func:`flatness.report.overview.keskar_answer` is the answer of Keskar et al.'s questions.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd

    from flatness.report.render import Section

__all__ = ["AnswerFn", "OverviewCase", "StudyAnswer"]


@dataclass(frozen=True)
class OverviewCase:
    """A case of an overview: its name, title, results store, report and paper network.

    Attributes:
        name: Short name (``"f1-mnist1d"``).
        title: Its report's title.
        store: Its results store.
        report: Its HTML report (linked from the overview).
        reference: Keskar et al.'s network to compare with (``"F1"``), or ``None``.
        checkpoints: Only these checkpoints of the store (SHA-256 digests); ``None``
            for all.
    """

    name: str
    title: str
    store: Path
    report: Path
    reference: str | None = None
    checkpoints: frozenset[str] | None = None


@dataclass(frozen=True)
class StudyAnswer:
    """A study's answers to its questions, written from its cases' numbers.

    Attributes:
        answers: Full sentences (sign, size, significance and the design's limits next
            to each claim), shown under "Answers" and printed by the command line.
        sections: Blocks shown after the answers
            (:class:`flatness.report.render.Section` of paragraphs, bullets, tables and
            figures; figures written under the overview's ``figures/``).
        tables: Key → the numbers behind the answers, written to ``data/<key>.csv``.
    """

    answers: tuple[str, ...]
    sections: tuple[Section, ...] = ()
    tables: Mapping[str, pd.DataFrame] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "answers", tuple(self.answers))
        object.__setattr__(self, "sections", tuple(self.sections))


AnswerFn = Callable[[Sequence[OverviewCase], Path], StudyAnswer]
"""``answer(cases, folder) -> StudyAnswer``: a study's answers over the cases shown
(those whose store holds measurements), with the overview's folder to write figures in."""
