"""The overview's answers: one paragraph per case, written from the numbers.

For each case, :func:`answers` says whether LB is sharper than SB in every seed by every
ε-sharpness column (Keskar et al.'s finding) and by the other measures, how LB's test
accuracy compares with SB's, and how many measures rank the checkpoints by test accuracy
significantly, over all checkpoints and within each batch size. Nothing is assumed to
agree with the paper.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from flatness.report.analysis import Study
from flatness.report.correlation import Correlation
from flatness.report.overview_case import OverviewCase
from flatness.report.paired import paired_min_p
from flatness.report.summary import ALPHA, design_limits_text, p_values_text, significant
from flatness.report.tables import percent, stat_cell

__all__ = ["answers"]


def _ranking_sentence(study: Study, within: dict[str, Correlation], confidence: float) -> str:
    pooled = [
        (c.label, study.correlations.get((c.label, "test_accuracy", "kendall")))
        for c in study.columns
    ]
    found = [label for label, tau in pooled if tau is not None and significant(tau, confidence)]
    inside = [label for label, tau in within.items() if significant(tau, confidence)]
    n = len(study.runs)
    text = (
        f" Over all {n} checkpoints, {len(found)} of {len(pooled)} measures rank them by "
        f"test accuracy significantly (Kendall's τ"
    )
    taus = [tau.estimate for _, tau in pooled if tau is not None and math.isfinite(tau.estimate)]
    if taus:
        text += f" from {min(taus):+.2f} to {max(taus):+.2f}"
    if not study.within_enough:
        return (
            text + "); too few seeds per regime to count only checkpoints of the same batch size."
        )
    text += "); counting only checkpoints of the same batch size, "
    text += f"{len(inside)} do ({', '.join(inside)})." if inside else "none does."
    return text + ("" if inside else design_limits_text(study))


def _holm_sentence(study: Study, labels: Sequence[str], paired: int) -> str:
    """How many of ``labels`` differ between LB and SB after Holm over the measures."""
    adjusted = [
        study.comparisons[label].holm_p
        for label in labels
        if label in study.comparisons and math.isfinite(study.comparisons[label].holm_p)
    ]
    if not adjusted:
        return ""
    k = sum(c.label in study.comparisons for c in study.columns)
    passed = sum(p < ALPHA for p in adjusted)
    verdict = (
        f"the ε-sharpness difference is {'' if passed else 'not '}significant"
        if len(adjusted) == 1
        else f"{passed} of these {len(adjusted)} ε-sharpness differences are significant"
    )
    return (
        f" After Holm's correction over the {k} measures (Wilcoxon signed-rank, two-sided), "
        f"{verdict} at {ALPHA:g}; with {paired} paired seeds no p can fall below "
        f"{paired_min_p(paired):.2g}."
    )


def answers(
    cases: Sequence[OverviewCase],
    studies: Sequence[Study],
    within: Sequence[dict[str, Correlation]],
    confidence: float,
) -> list[str]:
    """One paragraph per case answering the overview's questions.

    Args:
        cases: The cases (their names).
        studies: Their analyses, in the same order.
        within: Each study's within-batch-size Kendall τ per measure.
        confidence: The level at which a correlation counts as significant.

    Returns:
        The paragraphs, in the cases' order.
    """
    out = []
    for case, study, taus in zip(cases, studies, within, strict=True):
        if study.sb is None or study.lb is None:
            out.append(f"{case.name}: no SB/LB pair to compare.")
            continue
        paired = _paired_seeds(study)
        keskar = [c for c in study.columns if c.measure == "keskar"]
        every = [c for c in keskar if _every(study, c.label, paired)]
        never = [c for c in keskar if _never(study, c.label, paired)]
        if not paired:
            text = f"{case.name}: no seed has both an SB and an LB run; nothing to pair."
        elif keskar and len(every) == len(keskar):
            text = (
                f"{case.name}: LB is sharper than SB in every seed ({paired}) at every ε and "
                f"in every space ({len(keskar)} ε-sharpness column{_s(len(keskar))}), "
                "the direction Keskar et al. report."
            )
        elif keskar:
            missed = [_seeds_note(study, c.label, paired) for c in keskar if c not in every]
            text = (
                f"{case.name}: LB is NOT sharper than SB in every seed by every ε-sharpness "
                f"column; it is in {len(every)} of {len(keskar)}"
                + (f", and flatter in every seed in {len(never)}" if never else "")
                + f" (not in every seed: {', '.join(missed)})."
            )
        else:
            text = f"{case.name}: no ε-sharpness was scored."
        if keskar and paired:
            text += _holm_sentence(study, [c.label for c in keskar], paired)
        others = [c for c in study.columns if c.measure != "keskar" and c.sharpness]
        agree = [c.label for c in others if _every(study, c.label, paired)]
        disagree = [
            _seeds_note(study, c.label, paired)
            for c in others
            if not _every(study, c.label, paired)
        ]
        if others and paired:
            text += f" Other measures higher for LB in every seed: {', '.join(agree) or 'none'}" + (
                f"; not in every seed: {', '.join(disagree)}." if disagree else "."
            )
        text += _accuracy_sentence(study)
        out.append(text + _ranking_sentence(study, taus, confidence))
    return out


def _s(count: int) -> str:
    """The plural ending for ``count`` things."""
    return "" if count == 1 else "s"


def _paired_seeds(study: Study) -> int:
    """Seeds with both an SB and an LB checkpoint."""
    runs = study.runs
    seeds = [set(runs.loc[runs["regime"] == r, "seed"].dropna()) for r in (study.sb, study.lb)]
    return len(seeds[0] & seeds[1])


def _every(study: Study, label: str, paired: int) -> bool:
    """LB above SB in every paired seed (a seed without both values does not count)."""
    comp = study.comparisons.get(label)
    return comp is not None and paired > 0 and comp.wins[0] == comp.wins[1] == paired


def _never(study: Study, label: str, paired: int) -> bool:
    comp = study.comparisons.get(label)
    return comp is not None and paired > 0 and comp.losses[0] == comp.losses[1] == paired


def _seeds_note(study: Study, label: str, paired: int) -> str:
    """The label, with how many seeds could be compared when some lack a value."""
    comp = study.comparisons.get(label)
    compared = comp.wins[1] if comp is not None else 0
    if compared < paired:
        return f"{label} (values for {compared} of {paired} seeds)"
    return label


def _accuracy_sentence(study: Study) -> str:
    comp = study.comparisons.get("test_accuracy")
    if comp is None or not comp.sb.n or not comp.lb.n:
        return " No test accuracy to compare."
    lb = stat_cell(comp.lb, 100.0)
    sb = stat_cell(comp.sb, 100.0)
    diff = percent(comp.lb.mean - comp.sb.mean)
    tests = p_values_text(comp)
    tail = f"lower in {comp.losses[0]}/{comp.losses[1]} seeds" + (f"; {tests})." if tests else ").")
    if diff == 0:
        return f" LB and SB test accuracies are equal on average ({lb} % vs {sb} %; {tail}"
    word = "below" if diff < 0 else "above"
    return f" LB test accuracy is {abs(diff):.2f} points {word} SB's ({lb} % vs {sb} %; {tail}"
