"""``flatness demo``: two questions about batch size, answered from compact studies.

The demo runs two compact studies side by side and answers one question of each in a
sentence written from its numbers:

(a) **Is increasing B the same as decaying η?** (Smith, Kindermans, Ying & Le, ICLR
    2018, "Don't decay the learning rate, increase the batch size"): the demo case of
    :mod:`flatness.studies.smith2018`, where a step decay of the learning rate and the
    batch-increase schedule change η or B by the same factor at the same epochs; the
    sentence compares their final test accuracies seed by seed, and their updates.
(b) **Do large batches generalize worse once updates are equal?** (Keskar et al., ICLR
    2017, with the control of Hoffer, Hubara & Soudry, NeurIPS 2017, "Train longer,
    generalize better"): the demo case of :mod:`flatness.studies.keskar2017`, where
    ``LB-U`` trains the large batch for as many updates as SB took (``match_updates``);
    the sentence compares LB-U's test accuracy with SB's seed by seed, next to LB's
    under Keskar et al.'s protocol (98% training accuracy, far fewer updates).

Each claim comes with its size (points of test accuracy, mean over seeds), the exact
paired Wilcoxon signed-rank and sign tests over seeds
(:func:`flatness.report.paired.paired_test`) with the smallest p the seeds allow, and
the test set's binomial noise floor (:func:`flatness.report.paired.binomial_floor`).
The two studies' own answers (:func:`flatness.studies.keskar_answers.answer`,
:func:`flatness.studies.smith2018_answers.answer`) follow, with their tables and
figures.

Plans: ``demo`` (the default, what ``flatness demo`` runs: the two studies' ``demo``
cases) and ``ci`` (their CI miniatures, seconds).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from flatness.report.case_runs import scored_runs
from flatness.report.overview_case import AnswerFn, OverviewCase, StudyAnswer
from flatness.report.paired import PairedTest, binomial_floor, paired_test
from flatness.report.render import Bullets, Section
from flatness.report.stats import format_p_value
from flatness.studies import keskar2017, keskar_answers, smith2018
from flatness.studies import smith2018_answers as smith_answers
from flatness.study.plan import StudyPlan, StudySpec

__all__ = [
    "CI",
    "DEMO",
    "QUESTIONS",
    "STUDY",
    "DemoAnswer",
    "demo_runs",
    "equal_updates_sentence",
    "increase_sentence",
    "signed",
]

QUESTIONS: tuple[str, ...] = (
    "Is increasing B the same as decaying η?",
    "Do large batches generalize worse once updates are equal?",
)
"""The demo's two questions, (a) and (b)."""

INCREASE, DECAY = "increase", "decay"
"""Smith et al.'s batch-increase and step-decay regimes (:data:`smith2018.SCHEDULES`)."""

SMALL, LARGE, EQUAL = "SB", "LB", "LB-U"
"""Keskar et al.'s small and large batch, and the large batch with SB's updates."""


def signed(points: float) -> str:
    """A difference in points with its sign, one decimal, and no ``-0.0``.

    Examples:
        >>> signed(-4.46), signed(0.2), signed(-0.04)
        ('-4.5', '+0.2', '0.0')
    """
    text = f"{points:+.1f}"
    return "0.0" if text in ("+0.0", "-0.0") else text


def demo_runs(case: OverviewCase) -> pd.DataFrame:
    """One row per scored checkpoint of a case (:func:`flatness.report.case_runs.scored_runs`):
    regime, seed, batch size, updates, the test set's size and the test accuracy.

    Args:
        case: The case (only its checkpoints are read).

    Returns:
        Columns ``regime``, ``seed``, ``batch_size``, ``updates``, ``n_test``,
        ``test_accuracy``, ``stop_reason``.
    """
    runs = scored_runs(case)
    return pd.DataFrame(
        {
            "regime": runs["regime"],
            "seed": runs["seed"].astype(int),
            "batch_size": runs["batch_size"].astype(int),
            "updates": [int(m.get("updates", -1)) for m in runs["meta"]],
            "n_test": [int(m.get("n_test", 0)) for m in runs["meta"]],
            "test_accuracy": runs["test_accuracy"].astype(float),
            "stop_reason": runs["stop_reason"],
        }
    )


@dataclass(frozen=True)
class _Contrast:
    """Regime b against regime a over the seeds both have (accuracies in %)."""

    a: str
    b: str
    acc_a: float
    acc_b: float
    updates_a: float
    updates_b: float
    batch_b: int
    test: PairedTest
    floor: float

    @property
    def points(self) -> float:
        """b − a in points of test accuracy (mean over the paired seeds)."""
        return self.acc_b - self.acc_a

    def tests(self) -> str:
        """The paired tests and the design's limit, as a clause."""
        t = self.test
        return (
            f"Wilcoxon p = {format_p_value(t.wilcoxon_p)}, sign p = "
            f"{format_p_value(t.sign_p)}; {t.n} seeds cannot give p below "
            f"{format_p_value(t.min_p)}"
        )


def _contrast(runs: pd.DataFrame, a: str, b: str) -> _Contrast | None:
    by = {label: runs[runs["regime"] == label].set_index("seed") for label in (a, b)}
    seeds = sorted(set(by[a].index) & set(by[b].index))
    if not seeds:
        return None
    first, second = (by[label].loc[seeds] for label in (a, b))
    accuracy = float(np.mean(np.r_[first["test_accuracy"], second["test_accuracy"]]))
    return _Contrast(
        a=a,
        b=b,
        acc_a=100 * float(first["test_accuracy"].mean()),
        acc_b=100 * float(second["test_accuracy"].mean()),
        updates_a=float(first["updates"].mean()),
        updates_b=float(second["updates"].mean()),
        batch_b=int(second["batch_size"].iloc[0]),
        test=paired_test(first["test_accuracy"].to_dict(), second["test_accuracy"].to_dict()),
        floor=binomial_floor(accuracy, int(first["n_test"].max())),
    )


def increase_sentence(name: str, runs: pd.DataFrame) -> str | None:
    """Answer (a) for one case: batch increase against step decay, from the numbers.

    Args:
        name: The case's name.
        runs: :func:`demo_runs` of the case.

    Returns:
        The sentence, or ``None`` when the case lacks either regime.
    """
    c = _contrast(runs, DECAY, INCREASE)
    if c is None:
        return None
    same = abs(c.points) <= c.floor
    verdict = (
        f"the same within the test set's noise (one run's binomial sd is {c.floor:.1f} "
        "points), as Smith et al. report"
        if same
        else f"not the same: the gap exceeds one run's binomial sd of {c.floor:.1f} points"
    )
    return (
        f"(a) {QUESTIONS[0]} {name}: increasing B reached {c.acc_b:.1f}% test accuracy "
        f"and decaying η {c.acc_a:.1f}% (mean of {c.test.n} seeds; increase − decay "
        f"{signed(c.points)} points, higher in {c.test.wins} and lower in {c.test.losses} "
        f"of {c.test.n} seeds; {c.tests()}), with {c.updates_b:.0f} updates against "
        f"{c.updates_a:.0f} ({c.updates_b / c.updates_a:.2f}×): {verdict}; "
        "no equivalence test is possible with these seeds."
    )


def equal_updates_sentence(name: str, runs: pd.DataFrame) -> str | None:
    """Answer (b) for one case: LB with SB's updates against SB, from the numbers.

    Args:
        name: The case's name.
        runs: :func:`demo_runs` of the case.

    Returns:
        The sentence, or ``None`` when the case lacks SB or LB-U.
    """
    c = _contrast(runs, SMALL, EQUAL)
    if c is None:
        return None
    worse = c.test.losses == c.test.n and -c.points > c.floor
    significant = np.isfinite(c.test.wilcoxon_p) and c.test.wilcoxon_p < 0.05
    if worse and significant:
        verdict = "yes: lower in every seed and significant"
    elif worse:
        verdict = "lower in every seed, by more than the noise floor, but not significant"
    elif c.points < 0:
        verdict = "not shown: the gap is not in every seed or within the noise floor"
    else:
        verdict = "no: LB-U is not below SB"
    text = (
        f"(b) {QUESTIONS[1]} {name}: with as many updates as SB ({c.updates_b:.0f}), LB-U "
        f"(batch {c.batch_b}) reached {c.acc_b:.1f}% test accuracy against SB's "
        f"{c.acc_a:.1f}% (mean of {c.test.n} seeds; LB-U − SB {signed(c.points)} points, "
        f"lower in {c.test.losses} of {c.test.n} seeds; {c.tests()}; one run's binomial "
        f"sd is {c.floor:.1f} points): {verdict}"
    )
    lb = _contrast(runs, SMALL, LARGE)
    if lb is not None:
        text += (
            f". Under Keskar et al.'s protocol LB took {lb.updates_b:.0f} updates and ended "
            f"{abs(lb.points):.1f} points {'below' if lb.points < 0 else 'above'} SB (lower "
            f"in {lb.test.losses} of {lb.test.n} seeds)"
        )
    return text + "."


def _detail(title: str, anchor: str, answer: StudyAnswer) -> list[Section]:
    return [Section(title, anchor, [Bullets(answer.answers)]), *answer.sections]


@dataclass(frozen=True)
class DemoAnswer:
    """The demo's :data:`~flatness.report.overview_case.AnswerFn`: (a) and (b), then
    each study's own answers, sections and tables.

    Attributes:
        keskar: Names of the Keskar cases.
        smith: Names of the Smith cases.
        keskar_answer: The Keskar study's answer function.
        smith_answer: The Smith study's answer function.
    """

    keskar: frozenset[str]
    smith: frozenset[str]
    keskar_answer: AnswerFn = keskar_answers.answer
    smith_answer: AnswerFn = smith_answers.answer

    def __call__(self, cases: Sequence[OverviewCase], out: Path) -> StudyAnswer:
        """The answers over the cases shown (module docstring)."""
        keskar = [case for case in cases if case.name in self.keskar]
        smith = [case for case in cases if case.name in self.smith]
        sentences: list[str] = []
        for chosen, write in ((smith, increase_sentence), (keskar, equal_updates_sentence)):
            for case in chosen:
                sentence = write(case.name, demo_runs(case))
                if sentence:
                    sentences.append(sentence)
        sections: list[Section] = []
        tables: dict[str, pd.DataFrame] = {}
        parts: list[tuple[str, str, list[OverviewCase], Callable[..., StudyAnswer]]] = [
            ("Smith et al. (2018) in detail", "smith-detail", smith, self.smith_answer),
            ("Keskar et al. (2017) in detail", "keskar-detail", keskar, self.keskar_answer),
        ]
        for title, anchor, chosen, answer in parts:
            if chosen:
                result = answer(chosen, out)
                sections += _detail(title, anchor, result)
                tables.update(_prefixed(result.tables, tables, anchor.split("-")[0]))
        return StudyAnswer(tuple(sentences), tuple(sections), tables)


def _prefixed(
    new: Mapping[str, pd.DataFrame], old: Mapping[str, pd.DataFrame], prefix: str
) -> dict[str, pd.DataFrame]:
    """``new`` with the keys that ``old`` already has prefixed (no table overwrites one)."""
    return {(f"{prefix}-{k}" if k in old else k): v for k, v in new.items()}


def _plan(name: str, title: str, keskar: StudyPlan, smith: StudyPlan) -> StudyPlan:
    return StudyPlan(
        name=name,
        title=title,
        cases=(*keskar.cases, *smith.cases),
        answer=DemoAnswer(
            frozenset(c.name for c in keskar.cases), frozenset(c.name for c in smith.cases)
        ),
    )


DEMO = _plan(
    "demo",
    "Is increasing B the same as decaying η, and do large batches generalize worse "
    "once updates are equal?",
    keskar2017.DEMO,
    smith2018.DEMO,
)
"""What ``flatness demo`` runs: Keskar's demo case (SB, LB, LB-U) and Smith's (decay,
increase, constant)."""

CI = _plan(
    "demo-ci",
    "flatness demo, miniature (CI)",
    keskar2017.CI,
    smith2018.CI,
)
"""The two studies' CI miniatures under the demo's answer (seconds)."""

STUDY = StudySpec(
    name="demo",
    title="Batch size in two questions: Smith et al. (2018) and Keskar et al. (2017) "
    "with the equal-updates control",
    plans={"demo": DEMO, "ci": CI},
    default_plan="demo",
    questions=QUESTIONS,
    citation="S. L. Smith et al. (2018), Don't decay the learning rate, increase the batch "
    "size, ICLR 2018; N. S. Keskar et al. (2017), On large-batch training for deep "
    "learning, ICLR 2017; E. Hoffer et al. (2017), Train longer, generalize better, "
    "NeurIPS 2017.",
)
"""The demo, as the registry (:func:`flatness.studies.get_study`) holds it."""
