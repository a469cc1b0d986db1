"""The overview's answers for the fixed-epochs-vs-fixed-updates study, from the numbers.

:func:`answer` is the study's :data:`~flatness.study.plan.StudyPlan.answer`: per optimizer
(case) one sentence per protocol (updates and epochs used, final training losses, the
test-accuracy gap LB − SB in points and the sharpness ratios LB / SB, each with its
paired test over seeds, Holm's correction and the smallest p the design can reach), one
sentence on the gradient and weight norms, and the sentence that answers "does the LB
gap in accuracy and in sharpness survive equal updates and convergence?". The
sections (the tables, the figure and the design's limits) are built by
:mod:`flatness.studies.hoffer2017_tables`.

Wording rules, the same everywhere: a gap *holds* under a protocol when LB lies on the
same side of SB as under E in every seed, *reverses* when it lies on the other side in
every seed, and *does not hold* otherwise; "significant" means a Holm-adjusted Wilcoxon
p below 0.05, which 5 or fewer seeds cannot reach (2/2^n ≥ 0.0625).

References:
    E. Hoffer, I. Hubara and D. Soudry (2017). Train longer, generalize better. NeurIPS.

    D. R. Wilson and T. R. Martinez (2003). The general inefficiency of batch training
    for gradient descent learning. Neural Networks 16(10).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from flatness.report.overview_case import OverviewCase, StudyAnswer
from flatness.report.stats import format_p_value
from flatness.studies.hoffer2017_data import (
    ACCURACY,
    SHARPNESS,
    Gap,
    cells_frame,
    optimizer_name,
    protocol_gaps,
    runs_frame,
)
from flatness.studies.hoffer2017_protocols import PROTOCOLS
from flatness.studies.hoffer2017_tables import answer_sections, answer_tables

__all__ = ["ALPHA", "NORMS", "answer", "fate"]

ALPHA = 0.05
"""The level at which a Holm-adjusted p is called significant."""

NORMS: tuple[str, ...] = ("gradient norm", "weight norm")
"""Measures reported beside sharpness (not sharpness: a network far from a minimum or
with larger weights reads differently)."""


def _size(gap: Gap) -> str:
    return f"×{gap.size:.2f}" if gap.ratio else f"{gap.size:+.1f} points"


def _range(gap: Gap) -> str:
    if gap.test.n < 2:
        return ""
    if gap.ratio:
        return f"seeds ×{gap.low:.2f} to ×{gap.high:.2f}; "
    return f"seeds {gap.low:+.1f} to {gap.high:+.1f}; "


def _test(gap: Gap) -> str:
    t = gap.test
    significant = "significant" if gap.holm_p < ALPHA else "not significant"
    return (
        f"LB higher in {t.wins}/{t.n} seeds, Wilcoxon p = {format_p_value(t.wilcoxon_p)}, "
        f"Holm p = {format_p_value(gap.holm_p)}, {significant}"
    )


def fate(gap: Gap, reference: Gap) -> str:
    """What became of the reference protocol's gap under another protocol.

    Args:
        gap: The gap under the protocol.
        reference: The same quantity's gap under E.

    Returns:
        ``"holds (larger than under E)"`` (or smaller; ratios compared on a log scale),
        ``"reverses"``, ``"does not hold (LB on E's side in k/n seeds)"`` or, when under
        E LB is not on one side of SB in every seed, a dash with that reason.
    """
    if reference.direction == 0:
        return "— (under E LB is not on one side of SB in every seed)"
    same = gap.test.wins if reference.direction > 0 else gap.test.losses
    if gap.direction == reference.direction:
        larger = abs(math.log(gap.size) if gap.ratio else gap.size) > abs(
            math.log(reference.size) if reference.ratio else reference.size
        )
        return f"holds ({'larger' if larger else 'smaller'} than under E)"
    if gap.direction == -reference.direction:
        return "reverses"
    return f"does not hold (LB on E's side in {same}/{gap.test.n} seeds)"


def _spread(values: pd.Series, digits: int = 0) -> str:
    """A mean, or ``low-high`` when the seeds differ."""
    low, high = float(values.min()), float(values.max())
    if math.isclose(low, high):
        return f"{low:.{digits}f}"
    return f"{low:.{digits}f}-{high:.{digits}f}"


def _budget(cells: pd.DataFrame, protocol: str) -> str:
    """Updates, epochs and final training loss of SB and LB under a protocol."""
    parts = []
    for role in ("SB", "LB"):
        rows = cells[(cells["protocol"] == protocol) & (cells["role"] == role)]
        if rows.empty:
            continue
        parts.append(
            f"{role} {_spread(rows['updates'])} updates in {_spread(rows['epochs'])} epochs "
            f"ending at training loss {rows['train loss'].mean():.3f}"
        )
    return "; ".join(parts)


def _protocol_sentence(
    name: str, protocol: str, cells: pd.DataFrame, gaps: dict[str, Gap], epochs_note: str
) -> str:
    accuracy = gaps.get(ACCURACY)
    text = f"{name}, {protocol} ({PROTOCOLS[protocol]}{epochs_note}): {_budget(cells, protocol)}."
    if accuracy is not None:
        text += (
            f" LB − SB test accuracy {_size(accuracy)} (mean over {accuracy.test.n} seeds; "
            f"{_range(accuracy)}{_test(accuracy)})."
        )
    ratios = [
        f"{q} {_size(gaps[q])} ({_range(gaps[q])}{_test(gaps[q])})" for q in SHARPNESS if q in gaps
    ]
    if ratios:
        text += " LB / SB: " + "; ".join(ratios) + "."
    return text


def _norms_sentence(name: str, norms: list[Gap]) -> str | None:
    if not norms:
        return None
    parts = []
    for quantity in NORMS:
        found = [g for g in norms if g.quantity == quantity]
        if found:
            steps = ", ".join(
                f"{g.protocol} {_size(g)} ({g.test.wins}/{g.test.n} seeds higher)" for g in found
            )
            parts.append(f"{quantity} {steps}")
    return (
        f"{name}, LB / SB beside the sharpness (not sharpness: a network far from a minimum "
        "has a larger gradient, and the scale of the weights changes every sharpness "
        f"value): {'; '.join(parts)}."
    )


def _short_sentence(name: str, gaps: list[Gap]) -> str | None:
    """The question answered in one sentence: test accuracy and λ_max under U and C."""
    by_key = {(g.protocol, g.quantity): g for g in gaps}
    parts = []
    for quantity, label in ((ACCURACY, "test-accuracy gap"), ("λ_max", "λ_max ratio")):
        reference = by_key.get(("E", quantity))
        if reference is None:
            continue
        steps = [
            f"{fate(gap, reference).split(' (')[0]} with {condition} ({_size(gap)})"
            for protocol, condition in (("U", "equal updates"), ("C", "convergence"))
            if (gap := by_key.get((protocol, quantity))) is not None
        ]
        if steps:
            parts.append(f"LB's {label} (E: {_size(reference)}) " + " and ".join(steps))
    if not parts:
        return None
    return f"In one sentence, for {name}: " + "; ".join(parts) + "."


def _survival_sentence(name: str, gaps: list[Gap]) -> str:
    """The answer to the study's question for one optimizer."""
    by_key = {(g.protocol, g.quantity): g for g in gaps}
    verdicts = []
    for quantity in (ACCURACY, *SHARPNESS):
        reference = by_key.get(("E", quantity))
        if reference is None:
            continue
        label = "accuracy" if quantity == ACCURACY else quantity
        sides = (
            f"LB {'higher' if reference.direction > 0 else 'lower'} in every seed"
            if reference.direction
            else f"LB higher in {reference.test.wins}/{reference.test.n} seeds"
        )
        steps = [f"under E {_size(reference)} ({sides})"]
        for protocol in ("U", "C"):
            gap = by_key.get((protocol, quantity))
            if gap is not None:
                steps.append(f"under {protocol} {_size(gap)}, {fate(gap, reference)}")
        verdicts.append(f"{label}: " + "; ".join(steps))
    n = max((g.test.n for g in gaps), default=0)
    min_p = min((g.test.min_p for g in gaps), default=float("nan"))
    significant = [g for g in gaps if g.holm_p < ALPHA]
    tail = (
        f"{len(significant)} of the {len(gaps)} tests are significant after Holm's correction"
        if significant
        else f"None of the {len(gaps)} paired tests is significant after Holm's correction "
        f"(with {n} seeds a paired test cannot go below p = {min_p:.4g})"
    )
    return (
        f"Does the LB gap in accuracy and in sharpness survive equal updates (U) and "
        f"convergence (C)? {name}: " + " — ".join(verdicts) + f". {tail}."
    )


def answer(cases: Sequence[OverviewCase], out: Path) -> StudyAnswer:
    """The study's answers, sections and tables (the plan's ``answer``).

    Args:
        cases: The study's cases (one optimizer each), as the overview lists them.
        out: The overview's folder (its figure goes to ``figures/``).

    Returns:
        Per optimizer: the question answered in one sentence (accuracy and λ_max), the
        same for every sharpness measure with the tests, one sentence per protocol and
        one on the gradient and weight norms; the sections of
        :func:`~flatness.studies.hoffer2017_tables.answer_sections`; the tables of
        :func:`~flatness.studies.hoffer2017_tables.answer_tables`.
    """
    frame = runs_frame(cases)
    if frame.empty:
        return StudyAnswer(answers=("No case has scored runs: nothing to compare.",))
    cells = cells_frame(frame)
    gaps = protocol_gaps(cells)
    norms = protocol_gaps(cells, quantities=NORMS)
    answers: list[str] = []
    for case in cases:
        rows = cells[cells["case"] == case.name]
        if rows.empty:
            continue
        name = optimizer_name(str(rows["optimizer"].iloc[0]))
        mine = [g for g in gaps if g.case == case.name]
        short = _short_sentence(name, mine)
        answers += [*([short] if short else []), _survival_sentence(name, mine)]
        for protocol in PROTOCOLS:
            found = {g.quantity: g for g in mine if g.protocol == protocol}
            if not found:
                continue
            epochs = rows.loc[rows["protocol"] == protocol, "epochs"]
            note = f", {int(epochs.iloc[0])} epochs" if protocol in "EL" and len(epochs) else ""
            answers.append(_protocol_sentence(name, protocol, rows, found, note))
        sentence = _norms_sentence(name, [g for g in norms if g.case == case.name])
        if sentence:
            answers.append(sentence)
    n_seeds = int(np.max(cells.groupby(["case", "regime"])["seed"].nunique()))
    return StudyAnswer(
        answers=tuple(answers),
        sections=answer_sections(frame, cells, gaps, out, n_seeds=n_seeds),
        tables=answer_tables(frame, cells, [*gaps, *norms]),
    )
