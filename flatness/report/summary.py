"""The report's summary: sentences written from the numbers, never canned.

Each sentence states a measured fact with its evidence (counts of seeds, means ± std,
bootstrap intervals, p-values) and is left out when its numbers are missing. The
wording follows the sign and size of the numbers: "sharper" or "flatter", "below" or
"above", "excludes zero" or "includes zero".
"""

from __future__ import annotations

import math

from flatness.report.analysis import TARGETS, Study
from flatness.report.correlation import Correlation
from flatness.report.frames import Column
from flatness.report.stats import format_mean_std


def _pct(value: float) -> str:
    return f"{100 * value:.1f}%"


def _accuracy_sentence(study: Study) -> str | None:
    comp = study.comparisons.get("test_accuracy")
    if comp is None or not comp.sb.n or not comp.lb.n:
        return None
    diff = 100 * (comp.lb.mean - comp.sb.mean)
    below, n = comp.losses
    where = "below" if diff < 0 else "above" if diff > 0 else "equal to"
    text = (
        f"{_name('LB', study.lb)} test accuracy is {abs(diff):.2f} points {where} "
        f"{_name('SB', study.sb)}: "
        f"{format_mean_std(100 * comp.lb.mean, 100 * comp.lb.std, comp.lb.n)}% vs "
        f"{format_mean_std(100 * comp.sb.mean, 100 * comp.sb.std, comp.sb.n)}%"
    )
    if n:
        text += f"; LB below SB in {below}/{n} seeds"
    if _finite(comp.test.p_value):
        text += f", Mann–Whitney p = {comp.test.p_value:.2g}"
    return text + "."


def _name(role: str, regime: str | None) -> str:
    return role if regime == role else f"{role} ({regime})"


def _finite(value: float | None) -> bool:
    return value is not None and math.isfinite(value)


def _measure_sentence(study: Study, column: Column) -> str | None:
    comp = study.comparisons.get(column.label)
    if comp is None or not comp.sb.n or not comp.lb.n:
        return None
    above, n = comp.wins
    below, _ = comp.losses
    words = ("sharper", "flatter") if column.sharpness else ("higher", "lower")
    lb, sb = _name("LB", study.lb), _name("SB", study.sb)
    if not n:  # no seed in both regimes: compare the means
        word = words[0] if comp.lb.mean >= comp.sb.mean else words[1]
        head = f"{lb} {word} than {sb} on average by {column.label} (no seed in both)"
    elif above >= below:
        head = f"{lb} {words[0]} than {sb} in {above}/{n} seeds by {column.label}"
    else:
        head = f"{lb} {words[1]} than {sb} in {below}/{n} seeds by {column.label}"
    ratio = comp.ratio
    tail = (
        f": {format_mean_std(comp.lb.mean, comp.lb.std, comp.lb.n)} vs "
        f"{format_mean_std(comp.sb.mean, comp.sb.std, comp.sb.n)}"
    )
    if _finite(ratio):
        tail += f" (LB/SB = {ratio:.3g})"
    if _finite(comp.test.p_value):
        tail += f", Mann–Whitney p = {comp.test.p_value:.2g}"
    return head + tail + "."


def _correlation_sentence(study: Study, target: str, name: str) -> str | None:
    rows = []
    for column in study.columns:
        tau = study.correlations.get((column.label, target, "kendall"))
        if tau is not None and _finite(tau.estimate):
            rows.append((column, tau))
    if not rows:
        return None
    rows.sort(key=lambda item: item[1].estimate)
    most = max(tau.n for _, tau in rows)
    parts = [
        f"{c.label} {tau.text()}" + (f" (n={tau.n})" if tau.n < most else "") for c, tau in rows
    ]
    excluding = [c.label for c, tau in rows if tau.low > 0 or tau.high < 0]
    level = round(100 * float(study.settings.get("confidence", 0.95)))
    sentence = f"Kendall τ(measure, {name}) over {most} checkpoints: " + "; ".join(parts)
    if excluding:
        sentence += f". The {level}% interval excludes zero for: " + ", ".join(excluding) + "."
    else:
        sentence += f". No {level}% interval excludes zero."
    return sentence


def _trend_sentence(study: Study, trends: dict[str, Correlation], name: str) -> str | None:
    if not trends:
        return None
    parts = []
    for label in [*TARGETS.values(), *(c.label for c in study.columns)]:
        tau = trends.get(label)
        if tau is None or not _finite(tau.estimate):
            continue
        if tau.low > 0:
            parts.append(f"{label} rises ({tau.text()})")
        elif tau.high < 0:
            parts.append(f"{label} falls ({tau.text()})")
    if not parts:
        return (
            f"With {name}, neither the accuracy nor any measure shows a trend whose Kendall τ "
            "interval excludes zero."
        )
    return f"With {name}, " + "; ".join(parts) + f" (Kendall τ with {name})."


def summary_sentences(study: Study) -> list[str]:
    """The report's summary, one sentence per measured fact."""
    sizes = study.batch_sizes
    counts = study.seeds_per_regime
    out = [
        f"{len(study.runs)} checkpoints in {len(study.regimes)} regime(s) "
        + ", ".join(f"{r} ({counts[r]})" for r in study.regimes)
        + (f"; batch sizes {', '.join(f'{b:g}' for b in sizes)}." if sizes else ".")
    ]
    if study.single_seed:
        out.append("One checkpoint per regime: no spread over seeds can be shown (no ±).")
    if study.sb_lb_note:
        out.append(study.sb_lb_note[0].upper() + study.sb_lb_note[1:] + ".")
    sentence = _accuracy_sentence(study)
    if sentence:
        out.append(sentence)
    for column in study.columns:
        sentence = _measure_sentence(study, column)
        if sentence:
            out.append(sentence)
    for trends, name in ((study.batch_trend, "batch size"), (study.noise_trend, "η/B")):
        sentence = _trend_sentence(study, trends, name)
        if sentence:
            out.append(sentence)
    for target, name in (("test_accuracy", "test accuracy"), ("generalization_gap", "gap")):
        sentence = _correlation_sentence(study, target, name)
        if sentence:
            out.append(sentence)
    for label, bad in study.non_finite.items():
        out.append(f"{label}: {len(bad)} checkpoint(s) had a non-finite value, left out.")
    return out
