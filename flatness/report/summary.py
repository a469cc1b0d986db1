"""The report's summary: sentences written from the numbers, never canned.

Each sentence states a measured fact with its evidence (counts of seeds, means ± std,
bootstrap intervals, p-values) and is left out when its numbers are missing. The
wording follows the sign and size of the numbers: "sharper" or "flatter", "below" or
"above". A correlation or trend is called significant only when its bootstrap interval
excludes zero *and* its p-value is below one minus the confidence level: with a handful
of checkpoints the percentile interval alone can collapse onto ±1.

Every SB-vs-LB p comes with the smallest p the design can reach (:mod:`flatness.report.
paired`: 2/2ⁿ for n paired seeds, 2/C(n₁+n₂, n₁) for Mann–Whitney); a difference in one of
several measures is called significant only when its Wilcoxon signed-rank p survives
Holm's (1979) correction over the measures. Next to "none is significant within a
regime" stand the simulated power of that test for the design and the test accuracy's
binomial noise floor.
"""

from __future__ import annotations

import math

import numpy as np

from flatness.report.analysis import POWER_TAUS, TARGETS, Comparison, Study
from flatness.report.correlation import Correlation
from flatness.report.frames import Column
from flatness.report.paired import binomial_floor
from flatness.report.stats import format_mean_std, format_p_value

ALPHA = 0.05
"""The level below which a Holm-adjusted p makes an SB-vs-LB difference "significant"."""


def p_values_text(comp: Comparison) -> str:
    """The SB-vs-LB tests of one quantity, each p with the smallest the design can reach.

    Returns:
        E.g. ``"Wilcoxon signed-rank p = 0.06, sign test p = 0.06 (p ≥ 0.062 attainable
        with 5 paired seeds); Mann–Whitney p = 0.008 (≥ 0.0079 with 5 vs 5 runs)"``;
        empty when no test ran.
    """
    parts = []
    pair = comp.paired
    if _finite(pair.wilcoxon_p):
        parts.append(
            f"Wilcoxon signed-rank p = {format_p_value(pair.wilcoxon_p)}, sign test "
            f"p = {format_p_value(pair.sign_p)} (p ≥ {format_p_value(pair.min_p)} attainable with "
            f"{pair.n} paired seeds)"
        )
    test = comp.test
    if _finite(test.p_value):
        parts.append(
            f"Mann–Whitney p = {format_p_value(test.p_value)} (≥ {format_p_value(test.min_p)} "
            f"with {test.n_a} vs {test.n_b} runs)"
        )
    return "; ".join(parts)


def holm_text(comp: Comparison, k: int) -> str:
    """Whether a measure's SB-vs-LB difference survives Holm's correction over k measures.

    Returns:
        E.g. ``"Holm-adjusted over the 4 measures p = 0.25: not significant"``; empty
        without an adjusted p.
    """
    if not _finite(comp.holm_p):
        return ""
    verdict = "significant" if comp.holm_p < ALPHA else "not significant"
    return (
        f"Holm-adjusted (Wilcoxon signed-rank) over the {k} measure{'s' if k != 1 else ''} "
        f"p = {format_p_value(comp.holm_p)}: {verdict}"
    )


def pinned_text(study: Study) -> str:
    """Why the report shows no generalization-gap correlations: training accuracy is pinned.

    Returns:
        One sentence with the training accuracy's spread.
    """
    train = study.runs["train_accuracy"].to_numpy(dtype=float)
    train = train[np.isfinite(train)]
    return (
        "No correlation with the generalization gap is shown: every run ended at the same "
        f"training accuracy ({100 * float(train.mean()):.2f} %, sd "
        f"{100 * float(np.std(train, ddof=1)):.2f} points over {train.size} runs), so the gap "
        "(train minus test) only repeats the test accuracy with its sign flipped."
    )


def power_text(study: Study) -> str:
    """The within-regime τ test's simulated power for this design (leading space).

    Returns:
        One sentence; empty when no regime has enough checkpoints for the test.
    """
    if not study.within_enough:
        return ""
    sizes = sorted(n for n in study.seeds_per_regime.values() if n >= 2)
    powers = ", ".join(f"{100 * study.within_power(t):.0f}% at τ = {t:g}" for t in POWER_TAUS)
    return (
        f" With these regime sizes ({', '.join(map(str, sizes))} checkpoints) the "
        f"within-regime test's power at α = {ALPHA:g} is {powers} (simulated, "
        "bivariate normal data), so a real association can go undetected."
    )


def floor_text(study: Study) -> str:
    """The test accuracy's binomial noise floor beside the seeds' spread (leading space).

    Returns:
        One sentence; empty when the test-set size is unknown.
    """
    n_test = study.n_test
    accuracy = study.runs["test_accuracy"].to_numpy(dtype=float)
    accuracy = accuracy[np.isfinite(accuracy)]
    if not n_test or not accuracy.size:
        return ""
    floor = binomial_floor(float(accuracy.mean()), n_test)
    spreads = [
        study.accuracy[(r, "test_accuracy")].std
        for r in study.regimes
        if _finite(study.accuracy[(r, "test_accuracy")].std)
    ]
    spread = (
        f", against a spread between seeds of {100 * float(np.mean(spreads)):.2f} points "
        "(sd within a regime, averaged over the regimes)"
        if spreads
        else ""
    )
    return (
        f" A test accuracy measured on {n_test} test examples varies by "
        f"{floor:.2f} points (binomial sd) from the test set alone{spread}."
    )


def design_limits_text(study: Study) -> str:
    """:func:`power_text` and :func:`floor_text`: what the design can detect.

    Returns:
        Up to two sentences (leading space), empty when nothing applies.
    """
    return power_text(study) + floor_text(study)


def level_text(confidence: float) -> str:
    """The confidence level as a percentage, as given: ``0.995`` -> ``"99.5%"``.

    Examples:
        >>> level_text(0.95), level_text(0.995)
        ('95%', '99.5%')
    """
    return f"{100 * confidence:.10g}%"


def significant(tau: Correlation, confidence: float) -> bool:
    """Whether ``tau``'s interval excludes zero and its p-value is below 1 − confidence.

    Returns:
        True when both hold.
    """
    if not (_finite(tau.low) and _finite(tau.high) and _finite(tau.p_value)):
        return False
    return (tau.low > 0 or tau.high < 0) and tau.p_value < 1.0 - confidence


def _accuracy_sentence(study: Study) -> str | None:
    comp = study.comparisons.get("test_accuracy")
    if comp is None or not comp.sb.n or not comp.lb.n:
        return None
    diff = 100 * (comp.lb.mean - comp.sb.mean)
    below, n = comp.losses
    lb, sb = _name("LB", study.lb), _name("SB", study.sb)
    if diff == 0:
        text = f"{lb} and {sb} test accuracies are equal on average: "
    else:
        where = "below" if diff < 0 else "above"
        text = f"{lb} test accuracy is {abs(diff):.2f} points {where} {sb}: "
    text += (
        f"{format_mean_std(100 * comp.lb.mean, 100 * comp.lb.std, comp.lb.n)}% vs "
        f"{format_mean_std(100 * comp.sb.mean, 100 * comp.sb.std, comp.sb.n)}%"
    )
    if n:
        text += f"; LB below SB in {below}/{n} seeds"
    tests = p_values_text(comp)
    return text + (f"; {tests}" if tests else "") + "." + floor_text(study)


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
        if comp.lb.mean == comp.sb.mean:
            head = (
                f"{lb} and {sb} equal on average by {column.label} "
                "(no seed was trained in both regimes)"
            )
        else:
            word = words[0] if comp.lb.mean > comp.sb.mean else words[1]
            head = (
                f"{lb} {word} than {sb} on average by {column.label} "
                "(no seed was trained in both regimes)"
            )
    elif above > below:
        head = f"{lb} {words[0]} than {sb} in {above}/{n} seeds by {column.label}"
    elif below > above:
        head = f"{lb} {words[1]} than {sb} in {below}/{n} seeds by {column.label}"
    elif above == 0:
        head = f"{lb} and {sb} equal in all {n} seeds by {column.label}"
    else:
        head = (
            f"No direction between {lb} and {sb} by {column.label}: "
            f"{words[0]} in {above}/{n} seeds, {words[1]} in {below}/{n}"
        )
    ratio = comp.ratio
    tail = (
        f": {format_mean_std(comp.lb.mean, comp.lb.std, comp.lb.n)} vs "
        f"{format_mean_std(comp.sb.mean, comp.sb.std, comp.sb.n)}"
    )
    if _finite(ratio):
        tail += f" (LB/SB = {ratio:.3g})"
    tests = p_values_text(comp)
    if tests:
        tail += f"; {tests}"
    k = sum(c.label in study.comparisons for c in study.columns)
    holm = holm_text(comp, k) if k > 1 else ""
    if holm:
        tail += f"; {holm}"
    elif k == 1 and _finite(comp.paired.wilcoxon_p):
        verdict = "significant" if comp.paired.wilcoxon_p < ALPHA else "not significant"
        tail += f": {verdict} (one measure, no correction)"
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
    confidence = float(study.settings.get("confidence", 0.95))
    level = level_text(confidence)
    alpha = f"{1 - confidence:.10g}"
    sentence = f"Kendall τ(measure, {name}) over {most} checkpoints: " + "; ".join(parts)
    if not int(study.settings.get("n_boot", 0)):
        return sentence + ". No bootstrap intervals were computed (n_boot = 0)."
    found = [c.label for c, tau in rows if significant(tau, confidence)]
    if found:
        sentence += (
            f". Significant (the {level} interval excludes zero and p < {alpha}): "
            + ", ".join(found)
            + "."
        )
    else:
        sentence += f". None is significant (a {level} interval excluding zero with p < {alpha})."
        if target == "test_accuracy" and len(study.regimes) > 1 and study.within_enough:
            inside = [
                c.label
                for c, _ in rows
                if significant(study.correlations[(c.label, target, "within")], confidence)
            ]
            sentence += (
                " Counting only pairs of checkpoints from the same regime, "
                + (f"significant: {', '.join(inside)}." if inside else "none is either.")
                + ("" if inside else power_text(study))
            )
    return sentence + _within_clause(study, target, found, confidence)


def _within_clause(study: Study, target: str, pooled: list[str], confidence: float) -> str:
    """Which measures still rank checkpoints when only pairs within a regime count."""
    if not pooled or len(study.regimes) < 2:
        return ""
    if not study.within_enough:
        return (
            " Whether this holds with the batch size fixed cannot be tested: too few seeds "
            "per regime (τ within a regime needs three checkpoints in at least one)."
        )
    within = [study.correlations.get((label, target, "within")) for label in pooled]
    kept = [
        label
        for label, tau in zip(pooled, within, strict=True)
        if tau is not None and _finite(tau.estimate) and significant(tau, confidence)
    ]
    defined = sum(tau is not None and _finite(tau.estimate) for tau in within)
    if not defined:
        return ""
    if not kept:
        return (
            " Counting only pairs of checkpoints from the same regime (different seeds), "
            "none of them is significant: the association may come from the regime "
            "(batch size) alone." + power_text(study)
        )
    return (
        " Counting only pairs of checkpoints from the same regime, still significant: "
        + ", ".join(kept)
        + "."
    )


def _trend_sentence(study: Study, trends: dict[str, Correlation], name: str) -> str | None:
    if not trends:
        return None
    confidence = float(study.settings.get("confidence", 0.95))
    if not int(study.settings.get("n_boot", 0)):
        return None
    parts = []
    for label in [*TARGETS.values(), *(c.label for c in study.columns)]:
        tau = trends.get(label)
        if tau is None or not _finite(tau.estimate) or not significant(tau, confidence):
            continue
        parts.append(f"{label} {'rises' if tau.estimate > 0 else 'falls'} ({tau.text()})")
    if not parts:
        return (
            f"With {name}, neither the accuracy nor any measure shows a significant trend "
            f"(Kendall τ with a {level_text(confidence)} interval excluding zero and "
            f"p < {1 - confidence:.10g})."
        )
    return f"With {name}, " + "; ".join(parts) + f" (Kendall τ with {name})."


def summary_sentences(study: Study) -> list[str]:
    """The report's summary, one sentence per measured fact.

    Returns:
        The sentences: accuracies, each measure SB vs LB, correlations and trends.
    """
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
    if study.snapshots:
        out.append(
            f"{len(study.snapshots)} checkpoint(s) are earlier epochs of runs that have a "
            "later one (same regime, batch size, learning rate and seed); every statistic "
            "uses each run's last epoch."
        )
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
        if target == "generalization_gap" and study.train_pinned:
            out.append(pinned_text(study))
            continue
        sentence = _correlation_sentence(study, target, name)
        if sentence:
            out.append(sentence)
    for label, bad in study.non_finite.items():
        out.append(f"{label}: {len(bad)} checkpoint(s) had a non-finite value, left out.")
    for label, stuck in study.not_converged.items():
        out.append(
            f"{label}: {len(stuck)} estimate(s) did not converge (kept in the statistics): "
            f"{', '.join(stuck[:3])}{', ...' if len(stuck) > 3 else ''}."
        )
    for label, relative in study.uncertain.items():
        out.append(
            f"{label}: the estimates are noisy (median standard error {100 * relative:.0f}% "
            "of the value); differences between checkpoints may be noise."
        )
    return out
