"""What a study run produced: a result per case and per study, and whether a store holds data.

:class:`CaseResult` (:func:`~flatness.study.runner.run_case`) and :class:`StudyResult`
(:func:`~flatness.study.runner.run_study`) are what the runner returns and what the
overview (:mod:`flatness.study.overview`) reads; :func:`has_measurements` tells both
whether a case's store has anything to report. The runner and the overview import them
from here, so the runner can write the overview without the overview reading the runner.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from flatness.results import PlainData

__all__ = ["CaseResult", "StudyResult", "has_measurements"]


@dataclass(frozen=True)
class CaseResult(PlainData):
    """What :func:`run_case` did for one case.

    Attributes:
        name: The case's name.
        manifest: The manifest written.
        store: The results store.
        report: The case's HTML report.
        trained: Networks trained by this call.
        reused_runs: Networks found already trained.
        computed: Measure tasks computed by this call.
        reused_scores: Tasks found in the store.
        failures: Checkpoints or tasks that failed (one line each).
        missed_target: Runs with a target (accuracy or loss) that hit their cap short of
            it (path, accuracy and loss); they are scored and reported all the same.
        checkpoints: SHA-256 digests of the case's checkpoints: its reports show only
            these, even when the store holds runs an earlier plan listed.
        report_rebuilt: Whether the report was written (False: the store had not changed).
        train_seconds: Training time of every run, summed (from the checkpoints' metadata,
            so reused runs count too).
        score_seconds: Measure time of every stored task, summed.
        seconds: Wall-clock seconds (``train``, ``score``, ``report``).
    """

    name: str
    manifest: Path
    store: Path
    report: Path
    trained: int
    reused_runs: int
    computed: int
    reused_scores: int
    failures: tuple[str, ...]
    missed_target: tuple[str, ...]
    checkpoints: tuple[str, ...]
    report_rebuilt: bool
    train_seconds: float
    score_seconds: float
    seconds: Mapping[str, float]


@dataclass(frozen=True)
class StudyResult(PlainData):
    """What :func:`run_study` did: one :class:`CaseResult` per case, and the overview
    (its pages and its answers: the plan's answer sentences).

    Attributes:
        cases: Every case's result, in the plan's order.
        html: The overview's HTML page.
        markdown: The overview's Markdown page.
        answers: The overview's answer sentences (the plan's
            :class:`~flatness.report.overview_case.StudyAnswer`, by default one
            paragraph per case shown).
        seconds: Wall-clock seconds of the whole call.
    """

    cases: tuple[CaseResult, ...]
    html: Path
    markdown: Path
    answers: tuple[str, ...]
    seconds: float

    @property
    def ok(self) -> bool:
        """True when every checkpoint and measure was scored."""
        return not any(case.failures for case in self.cases)


def has_measurements(store: str | os.PathLike[str]) -> bool:
    """Whether a results store holds any measurement (:mod:`flatness.pipeline.readers`).

    The store is only read: none is created where there is none, and a finished store
    in a read-only folder is read.

    Returns:
        True when at least one measurement row is stored.

    Raises:
        StoreError: If the store cannot be read; the message names it and the remedy.
    """
    from flatness.pipeline import readers

    return readers.has_measurements(store)
