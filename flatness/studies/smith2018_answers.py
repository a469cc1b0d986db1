"""The Smith et al. (2018) study's answers, written from its numbers.

:func:`answer` is the study's :data:`~flatness.report.overview_case.AnswerFn`. For every
case it gives (it works on any subset of the study's cases and schedules):

1. first, one sentence for all cases: is increasing B the same as decaying η (the
   batch-increase run's final test accuracy against step decay's, within an
   equivalence margin, and its updates);
2. the final test accuracy per schedule (mean ± sd over seeds, in %), with the test
   set's binomial noise floor;
3. the paper's three claims as measured: (i) decay, increase and hybrid reach the same
   test accuracy (gap within :func:`margin`), (ii) increase and hybrid use fewer
   updates (ratio), (iii) constant noise does not beat constant η and B; every gap in
   points with the paired tests over seeds (:func:`flatness.report.paired.paired_test`)
   and the smallest p the seeds allow;
4. the tracked measures at the end of training (increase against decay) and at the end
   of each phase, the largest λ_max against momentum SGD's stability threshold
   2(1 + m)/η (Cohen et al. 2021), and the final networks' sharpness and weight norm.

Tables and figures: :mod:`flatness.studies.smith2018_tables`.

References:
    S. L. Smith, P.-J. Kindermans, C. Ying and Q. V. Le (2018). Don't decay the learning
    rate, increase the batch size. ICLR 2018 (arXiv:1711.00489).

    J. M. Cohen, S. Kaur, Y. Li, J. Z. Kolter and A. Talwalkar (2021). Gradient descent
    on neural networks typically occurs at the edge of stability. ICLR 2021
    (arXiv:2103.00065).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from flatness.report.overview_case import OverviewCase, StudyAnswer
from flatness.report.paired import PairedTest, binomial_floor, holm, paired_test
from flatness.report.stats import format_p_value
from flatness.studies.smith2018_data import (
    ACCURACY,
    TRACKED,
    CaseData,
    at_phase_ends,
    finite_mean,
    load_case,
    phase_ends,
)
from flatness.studies.smith2018_tables import answer_sections, answer_tables

__all__ = [
    "COMPARISONS",
    "MARGIN_POINTS",
    "Comparison",
    "answer",
    "case_sentences",
    "comparison_table",
    "comparisons",
    "first_answer",
    "margin",
]

MARGIN_POINTS = 1.0
"""The equivalence margin's floor: two schedules reach "the same" test accuracy when
their mean paired gap is at most this many points, or the test set's binomial noise
floor if that is larger (:func:`margin`)."""

COMPARISONS: tuple[tuple[str, str, str], ...] = (
    ("decay", "increase", "i"),
    ("decay", "hybrid", "i"),
    ("increase", "hybrid", "i"),
    ("constant", "const-noise", "iii"),
    ("constant", "decay", "context"),
)
"""Accuracy comparisons (a, b, claim): b − a in points, paired over seeds."""


@dataclass(frozen=True)
class Comparison:
    """Schedule b against schedule a in final test accuracy, paired over seeds.

    Attributes:
        a: The reference schedule.
        b: The compared schedule.
        claim: Which claim it tests (``"i"``, ``"iii"``) or ``"context"``.
        gap: Mean over the paired seeds of b − a, in points.
        test: The paired tests.
        margin: The equivalence margin in points.
        holm_p: The Wilcoxon p, Holm-adjusted over the case's comparisons.
    """

    a: str
    b: str
    claim: str
    gap: float
    test: PairedTest
    margin: float
    holm_p: float

    @property
    def within(self) -> bool:
        """Whether |gap| is within the margin."""
        return bool(abs(self.gap) <= self.margin)


def _by_seed(runs: pd.DataFrame, regime: str, column: str = ACCURACY) -> dict[int, float]:
    rows = runs[runs["regime"] == regime]
    return {int(s): float(v) for s, v in zip(rows["seed"], rows[column], strict=True)}


def margin(runs: pd.DataFrame) -> float:
    """The equivalence margin in points: :data:`MARGIN_POINTS` or the noise floor.

    The noise floor is the binomial standard deviation of a test accuracy equal to the
    case's mean final accuracy on its test set
    (:func:`~flatness.report.paired.binomial_floor`).

    Returns:
        ``max(MARGIN_POINTS, floor)``.
    """
    accuracy = float(np.nanmean(runs[ACCURACY])) / 100
    n_test = int(runs["n_test"].max())
    floor = binomial_floor(min(max(accuracy, 0.0), 1.0), n_test) if n_test else 0.0
    return max(MARGIN_POINTS, floor)


def comparisons(runs: pd.DataFrame) -> list[Comparison]:
    """The accuracy comparisons of :data:`COMPARISONS` whose schedules were both trained.

    Returns:
        One :class:`Comparison` per pair, Holm's adjustment taken over them.
    """
    present = set(runs["regime"])
    width = margin(runs)
    found = []
    for a, b, claim in COMPARISONS:
        if a in present and b in present:
            left, right = _by_seed(runs, a), _by_seed(runs, b)
            seeds = sorted(set(left) & set(right))
            diffs = [right[s] - left[s] for s in seeds]
            finite = [d for d in diffs if np.isfinite(d)]
            gap = float(np.mean(finite)) if finite else float("nan")
            found.append((a, b, claim, gap, paired_test(left, right)))
    adjusted = holm([t.wilcoxon_p for *_, t in found]) if found else np.array([])
    return [
        Comparison(a, b, claim, gap, test, width, float(p))
        for (a, b, claim, gap, test), p in zip(found, adjusted, strict=True)
    ]


def _acc(runs: pd.DataFrame, regime: str) -> str:
    values = runs.loc[runs["regime"] == regime, ACCURACY].astype(float)
    if len(values) < 2:
        return f"{values.mean():.1f} %"
    return f"{values.mean():.1f} ± {values.std(ddof=1):.1f} %"


def _updates(runs: pd.DataFrame, regime: str) -> float:
    return float(runs.loc[runs["regime"] == regime, "updates"].mean())


def _test(c: Comparison) -> str:
    t = c.test
    if t.n == 0:
        return "no seed was trained under both"
    return (
        f"{c.b} higher in {t.wins} of {t.n} seeds, Wilcoxon p = "
        f"{format_p_value(t.wilcoxon_p)}, while {t.n} seeds cannot give p below "
        f"{format_p_value(t.min_p)}"
    )


def _gap(c: Comparison) -> str:
    return f"{c.b} − {c.a} = {c.gap:+.1f} points ({_test(c)})"


def _find(found: Sequence[Comparison], a: str, b: str) -> Comparison | None:
    return next((c for c in found if (c.a, c.b) == (a, b)), None)


def _last_means(data: CaseData, measure: str) -> pd.Series:
    """Each schedule's last tracked value of a measure, mean over seeds (finite only)."""
    tracks = data.tracks
    if tracks.empty or measure not in tracks.columns:
        return pd.Series(dtype=float)
    last = tracks.sort_values("step").groupby("run").tail(1)
    return last.groupby("regime")[measure].agg(finite_mean)


def _end_ratio(data: CaseData, measure: str = "lambda_max") -> float:
    """Increase's last tracked value of a measure over decay's (means over seeds)."""
    means = _last_means(data, measure)
    if not {"increase", "decay"} <= set(means.index):
        return float("nan")
    return float(means["increase"] / means["decay"])


def _clause(data: CaseData) -> str:
    """One case's part of the first answer."""
    runs, name = data.runs, data.case.name
    found = comparisons(runs)
    pair = _find(found, "decay", "increase")
    if pair is None:
        return f"{name} did not train both step decay and batch increase"
    verdict = (
        f"yes, within the ±{pair.margin:.1f}-point margin"
        if pair.within
        else f"no, the gap is beyond the ±{pair.margin:.1f}-point margin"
    )
    ratio = _updates(runs, "decay") / _updates(runs, "increase")
    sharp = _end_ratio(data)
    ending = f", ending {sharp:.2f}× as sharp by the tracked λ_max" if np.isfinite(sharp) else ""
    return (
        f"on {name}, {verdict}: batch increase reached {_acc(runs, 'increase')} and step "
        f"decay {_acc(runs, 'decay')} test accuracy after the same {data.epochs} epochs, "
        f"{_gap(pair)}, with {ratio:.1f}× fewer updates "
        f"({_updates(runs, 'increase'):.0f} vs {_updates(runs, 'decay'):.0f}){ending}"
    )


def first_answer(data: Sequence[CaseData]) -> str:
    """The one-sentence answer to "Is increasing B the same as decaying η?".

    Returns:
        The sentence, with one clause per case.
    """
    text = "; ".join(_clause(d) for d in data)
    return f"Is increasing B the same as decaying η? {text[:1].upper()}{text[1:]}."


def _claim_i(data: CaseData, found: Sequence[Comparison]) -> str | None:
    equal = [c for c in found if c.claim == "i"]
    if not equal:
        return None
    inside = sum(c.within for c in equal)
    verdict = (
        "holds as measured: every gap is within the margin"
        if inside == len(equal)
        else f"does not hold as measured: {len(equal) - inside} of {len(equal)} gaps exceed "
        "the margin"
    )
    anneal = _find(found, "constant", "decay")
    weak = (
        f" Annealing itself moved accuracy by only {anneal.gap:+.1f} points here (decay "
        "− constant), within the margin, so this test of equivalence is weak: schedules "
        "that barely matter are trivially the same."
        if anneal is not None and anneal.within
        else ""
    )
    return (
        f"{data.case.name}, claim (i), same accuracy after the same epochs: "
        + "; ".join(_gap(c) for c in equal)
        + f". Margin ±{equal[0].margin:.1f} points; the claim {verdict} (with this few "
        "seeds 'same' rests on the margin, not on a test)." + weak
    )


def _claim_ii(data: CaseData) -> str | None:
    runs = data.runs
    present = set(runs["regime"])
    if "decay" not in present or not present & {"increase", "hybrid"}:
        return None
    decay = _updates(runs, "decay")
    parts = [
        f"{regime} {_updates(runs, regime):.0f} ({decay / _updates(runs, regime):.1f}× fewer)"
        for regime in ("increase", "hybrid")
        if regime in present
    ]
    examples = runs.groupby("regime")["examples"].mean()
    seen = (
        f"every schedule saw {examples.min():.0f} training examples"
        if examples.min() == examples.max()
        else f"the schedules saw {examples.min():.0f} to {examples.max():.0f} training "
        "examples (an epoch drops its last partial batch)"
    )
    return (
        f"{data.case.name}, claim (ii), fewer updates: step decay used {decay:.0f} updates, "
        + ", ".join(parts)
        + f"; {seen}."
    )


def _claim_iii(data: CaseData, found: Sequence[Comparison]) -> str | None:
    noise = _find(found, "constant", "const-noise")
    if noise is None:
        return None
    if noise.gap > noise.margin:
        verdict = (
            "did better by more than the margin (on the mean gap; no test over these "
            "seeds can be significant): as measured, the claim does not hold here"
        )
    elif noise.gap < -noise.margin:
        verdict = "did worse by more than the margin: it does not improve, as claimed"
    else:
        verdict = "does not improve by more than the margin, as claimed"
    text = f"{data.case.name}, claim (iii), constant noise: {_gap(noise)}; constant noise {verdict}"
    anneal = _find(found, "constant", "decay")
    if anneal is not None:
        text += f". For scale, annealing: {_gap(anneal)}"
    return text + "."


def _tracked_end(data: CaseData) -> str | None:
    parts = []
    for name, label in TRACKED.items():
        means = _last_means(data, name)
        if not {"decay", "increase"} <= set(means.index):
            continue
        inc, dec = means["increase"], means["decay"]
        if not (np.isfinite(inc) and np.isfinite(dec)):
            parts.append(f"{label} not finite in any seed of one of them")
            continue
        parts.append(f"{label} {inc:.3g} vs {dec:.3g} ({inc / dec:.2f}×)")
    if not parts:
        return None
    return (
        f"{data.case.name}, tracked at the end of training (mean over seeds, increase vs "
        "decay): " + ", ".join(parts) + "."
    )


def _tracks_of(data: CaseData, measure: str) -> pd.DataFrame | None:
    """The case's tracker records when they hold the measure, else ``None``."""
    tracks = data.tracks
    return None if tracks.empty or measure not in tracks.columns else tracks


def _listing(data: CaseData, means: pd.Series, digits: str) -> str:
    """``"decay 1.2, increase 3.4, ..."``: a value per schedule, in display order."""
    return ", ".join(f"{r} {means[r]:{digits}}" for r in data.regimes if r in means.index)


def _stability(data: CaseData) -> str | None:
    tracks = _tracks_of(data, "lambda_max")
    if tracks is None:
        return None
    share = tracks["lambda_max"].astype(float) / tracks["stability_threshold"].astype(float)
    peaks = share.groupby(tracks["run"]).max()
    regime = tracks.groupby("run")["regime"].first()
    means = peaks.groupby(regime).agg(finite_mean)
    if means.isna().all():
        return None
    parts = _listing(data, means, ".2f")
    return (
        f"{data.case.name}, the largest tracked λ_max as a fraction of momentum SGD's "
        f"stability threshold 2(1 + m)/η (mean over seeds of each run's peak; 1 is the "
        f"edge of stability of Cohen et al. 2021): {parts}."
    )


def _final_sharpness(data: CaseData) -> str | None:
    runs = data.runs
    names = ("λ_max", "trace", "ε-sharpness", "weight norm")
    labels = [c for c in runs.columns if c.startswith(names)]
    if not labels:
        return None
    parts = []
    for label in labels:
        means = runs.groupby("regime")[label].agg(finite_mean)
        parts.append(f"{label}: {_listing(data, means, '.3g')}")
    return (
        f"{data.case.name}, sharpness and weight norm of the final networks on the scoring "
        "examples (mean over seeds): " + "; ".join(parts) + "."
    )


def _phase_lambda(data: CaseData) -> str | None:
    tracks = _tracks_of(data, "lambda_max")
    if tracks is None:
        return None
    ends = phase_ends(data.history)
    at = at_phase_ends(tracks, ends)
    if at.empty:
        return None
    means = at.groupby(["regime", "phase end"])["lambda_max"].agg(finite_mean)
    parts = [
        f"{r} " + ", ".join(f"{means.get((r, e), float('nan')):.3g}" for e in ends)
        for r in data.regimes
        if r in set(at["regime"])
    ]
    return (
        f"{data.case.name}, tracked λ_max at the end of each phase (after epochs "
        f"{', '.join(map(str, ends))}; mean over seeds): " + "; ".join(parts) + "."
    )


def case_sentences(data: CaseData) -> list[str]:
    """The answers for one case (after the first answer).

    Returns:
        The accuracy per schedule, then claims (i)-(iii) and the tracked measures, each
        a sentence written from the numbers (claims whose schedules are missing are
        left out).
    """
    runs = data.runs
    found = comparisons(runs)
    accuracy = ", ".join(f"{r} {_acc(runs, r)}" for r in data.regimes)
    n_seeds = int(runs.groupby("regime")["seed"].nunique().min())
    floor = binomial_floor(float(np.nanmean(runs[ACCURACY])) / 100, int(runs["n_test"].max()))
    sentences = [
        f"{data.case.name}, final test accuracy after {data.epochs} epochs (mean ± sd over "
        f"{n_seeds} seeds): {accuracy}; the binomial noise floor of one accuracy on "
        f"{int(runs['n_test'].max())} test examples is {floor:.1f} points."
    ]
    for sentence in (
        _claim_i(data, found),
        _claim_ii(data),
        _claim_iii(data, found),
        _tracked_end(data),
        _phase_lambda(data),
        _stability(data),
        _final_sharpness(data),
    ):
        if sentence is not None:
            sentences.append(sentence)
    return sentences


def comparison_table(found: dict[str, list[Comparison]]) -> pd.DataFrame:
    """Every accuracy comparison of every case as numbers.

    Args:
        found: Case name → its :func:`comparisons`.

    Returns:
        One row per case × comparison: ``case``, ``claim``, ``a``, ``b``, ``gap
        (points)``, ``margin (points)``, ``within margin``, ``seeds``, ``b higher``,
        ``b lower``, ``wilcoxon p``, ``sign p``, ``smallest attainable p``, ``holm p``.
    """
    rows = [
        {
            "case": name,
            "claim": c.claim,
            "a": c.a,
            "b": c.b,
            "gap (points)": c.gap,
            "margin (points)": c.margin,
            "within margin": c.within,
            "seeds": c.test.n,
            "b higher": c.test.wins,
            "b lower": c.test.losses,
            "wilcoxon p": c.test.wilcoxon_p,
            "sign p": c.test.sign_p,
            "smallest attainable p": c.test.min_p,
            "holm p": c.holm_p,
        }
        for name, cases in found.items()
        for c in cases
    ]
    return pd.DataFrame(rows)


def answer(cases: Sequence[OverviewCase], out: Path) -> StudyAnswer:
    """The study's answers, tables and figures over any of its cases.

    Args:
        cases: The cases shown (any subset of the study's cases).
        out: The overview's folder (figures go to ``figures/``).

    Returns:
        The answers (the first is :func:`first_answer`), the sections (schedules, per
        schedule numbers, phase-end measures, figures, limits) and the tables written
        to ``data/``.
    """
    data = [d for d in (load_case(case) for case in cases) if not d.runs.empty]
    if not data:
        return StudyAnswer(("No case has trained runs to answer from.",))
    answers = [first_answer(data)]
    for d in data:
        answers += case_sentences(d)
    found = {d.case.name: comparisons(d.runs) for d in data}
    tables = answer_tables(data, comparison_table(found))
    return StudyAnswer(tuple(answers), tuple(answer_sections(data, tables, out)), tables)
