"""The report's tables that test and relate: SB vs LB, trends, rank correlations.

- :func:`comparison_table` -- SB vs LB per measure (ratio, seeds, Mann–Whitney);
- :func:`trend_table` -- Kendall τ of the accuracy and each measure with the batch size
  (and with η/B, the SGD noise scale of Smith et al. 2018, when the learning rate varies);
- :func:`correlation_table` -- Kendall τ and Spearman ρ of each measure with the test
  accuracy or the generalization gap, with bootstrap intervals.

Each returns a :class:`~flatness.report.tables.Table` (text cells and the numbers behind
them) read from the :class:`~flatness.report.analysis.Study`.
"""

from __future__ import annotations

import math

import pandas as pd

from flatness.report.analysis import TARGETS, Study
from flatness.report.paired import mann_whitney_min_p, paired_min_p
from flatness.report.reference import DASH
from flatness.report.stats import format_p_value
from flatness.report.tables import Table, stat_cell, values_frame

__all__ = [
    "comparison_table",
    "correlation_table",
    "mann_whitney_floor_text",
    "paired_floor_text",
    "trend_table",
]


def comparison_table(study: Study) -> Table | None:
    """SB vs LB for the test accuracy and each measure.

    Returns:
        Means ± std, LB − SB, LB / SB, seeds where LB is higher, the Mann–Whitney p, the
        paired Wilcoxon signed-rank and sign-test p and the Wilcoxon p Holm-adjusted
        over the measures, per quantity; ``None`` when the study has no SB/LB pair.
    """
    if study.sb is None or study.lb is None:
        return None
    n_sb, n_lb = study.seeds_per_regime[study.sb], study.seeds_per_regime[study.lb]
    pairs = (
        study.comparisons["test_accuracy"].paired.n if "test_accuracy" in study.comparisons else 0
    )
    rows, values = [], []
    names = [("test_accuracy", "test accuracy (%)", 100.0)]
    names += [(c.label, c.label, 1.0) for c in study.columns]
    for key, label, scale in names:
        comp = study.comparisons.get(key)
        if comp is None:
            continue
        k, n = comp.wins
        below, _ = comp.losses
        diff = (comp.lb.mean - comp.sb.mean) * scale if comp.sb.n and comp.lb.n else math.nan
        rows.append(
            {
                "quantity": label,
                _regime_header("SB", study.sb): stat_cell(comp.sb, scale),
                _regime_header("LB", study.lb): stat_cell(comp.lb, scale),
                "LB − SB": _fmt(diff, 3),
                "LB / SB": _fmt(comp.ratio, 3, keep_zeros=True),
                "LB higher (seeds)": f"{k}/{n}" if n else DASH,
                "Mann–Whitney p": _p(comp.test.p_value),
                "Wilcoxon p": _p(comp.paired.wilcoxon_p),
                "sign-test p": _p(comp.paired.sign_p),
                "Holm p": "" if key == "test_accuracy" else _p(comp.holm_p),
            }
        )
        values.append(
            {
                "quantity": key,
                "sb_mean": comp.sb.mean,
                "sb_std": comp.sb.std,
                "sb_n": comp.sb.n,
                "lb_mean": comp.lb.mean,
                "lb_std": comp.lb.std,
                "lb_n": comp.lb.n,
                "lb_minus_sb": diff / scale,
                "lb_over_sb": comp.ratio,
                "lb_higher": k,
                "lb_lower": below,
                "seeds_paired": n,
                "mann_whitney_u": comp.test.statistic,
                "mann_whitney_p": comp.test.p_value,
                "mann_whitney_min_p": comp.test.min_p,
                "effect_p_lb_greater": comp.test.effect,
                "wilcoxon_p": comp.paired.wilcoxon_p,
                "wilcoxon_method": comp.paired.method,
                "sign_test_p": comp.paired.sign_p,
                "paired_min_p": comp.paired.min_p,
                "holm_wilcoxon_p": comp.holm_p,
            }
        )
    k_measures = sum(c.label in study.comparisons for c in study.columns)
    notes = [
        "LB higher (seeds): seeds whose LB run's value exceeds the SB run's of the same "
        "seed; LB − SB of the test accuracy is in points. All tests are two-sided: "
        "Mann–Whitney U treats the runs as two unpaired samples; the Wilcoxon "
        "signed-rank and the sign test use the seed pairing (exact).",
        f"Smallest attainable p: {mann_whitney_floor_text(n_sb, n_lb)}; "
        f"{paired_floor_text(pairs)}.",
    ]
    if k_measures:
        notes.append(
            f"Holm p: the Wilcoxon signed-rank p Holm-adjusted over the {k_measures} "
            f"measure{'s' if k_measures != 1 else ''}; a measure is called significant "
            "only when it is below 0.05."
        )
    if study.sb_lb_note:
        notes.append(study.sb_lb_note[0].upper() + study.sb_lb_note[1:] + ".")
    notes.append("LB / SB is shown only when both means are positive.")
    return Table(
        "sb-vs-lb",
        "Each quantity, LB against SB: rank tests over runs and over paired seeds",
        pd.DataFrame(rows),
        tuple(notes),
        values_frame(values),
    )


def mann_whitney_floor_text(n_sb: int, n_lb: int) -> str:
    """``"Mann–Whitney p ≥ 0.0079 with 5 vs 5 runs"`` (the exact test's smallest p).

    Examples:
        >>> mann_whitney_floor_text(5, 5)
        'Mann–Whitney p ≥ 0.0079 with 5 vs 5 runs'
        >>> mann_whitney_floor_text(0, 3)
        'no Mann–Whitney test (a regime has no run)'
    """
    floor = mann_whitney_min_p(n_sb, n_lb) if n_sb and n_lb else math.nan
    if not math.isfinite(floor):
        return "no Mann–Whitney test (a regime has no run)"
    return f"Mann–Whitney p ≥ {floor:.2g} with {n_sb} vs {n_lb} runs"


def paired_floor_text(pairs: int) -> str:
    """``"Wilcoxon and sign-test p ≥ 0.062 with 5 paired seeds"``.

    Examples:
        >>> paired_floor_text(5)
        'Wilcoxon and sign-test p ≥ 0.062 with 5 paired seeds'
        >>> paired_floor_text(0)
        'no paired test (no seed was trained in both regimes)'
    """
    if not pairs:
        return "no paired test (no seed was trained in both regimes)"
    return f"Wilcoxon and sign-test p ≥ {paired_min_p(pairs):.2g} with {pairs} paired seeds"


def _regime_header(role: str, regime: str | None) -> str:
    return role if regime == role else f"{role} ({regime})"


def _p(value: float) -> str:
    return DASH if value is None or not math.isfinite(value) else format_p_value(value)


def _fmt(value: float, digits: int, *, keep_zeros: bool = False) -> str:
    """``digits`` significant digits; tiny values in scientific notation.

    Examples:
        >>> _fmt(0.1, 2), _fmt(1.0, 3, keep_zeros=True), _fmt(0.0004, 2), _fmt(float("nan"), 2)
        ('0.1', '1.00', '4.0e-04', '—')
        >>> _fmt(9582.4, 3), _fmt(-403.2, 3)
        ('9582', '-403')
    """
    if value is None or not math.isfinite(value):
        return DASH
    if value != 0 and abs(value) < 10 ** (-digits):
        return f"{value:.1e}"
    if 10**digits <= abs(value) < 1e6:
        return f"{value:.0f}"
    return f"{value:{'#' if keep_zeros else ''}.{digits}g}"


def trend_table(study: Study) -> Table | None:
    """Kendall τ of the accuracy and each measure with the batch size and with η/B.

    Returns:
        The table, or ``None`` when no trend was computed (fewer than two batch sizes).
    """
    trend, trend_values = [], []
    for label in [*TARGETS.values(), *(c.label for c in study.columns)]:
        row = {"quantity": label}
        for by, trends, head in (
            ("batch_size", study.batch_trend, "τ with batch size [CI]"),
            ("lr_over_batch", study.noise_trend, "τ with η/B [CI]"),
        ):
            if label in trends:
                tau = trends[label]
                row[head] = tau.text()
                row[f"p ({head.split(' [')[0]})"] = format_p_value(tau.p_value)
                trend_values.append(
                    {
                        "quantity": label,
                        "versus": by,
                        "tau": tau.estimate,
                        "low": tau.low,
                        "high": tau.high,
                        "p_value": tau.p_value,
                        "n": tau.n,
                    }
                )
        if len(row) > 1:
            trend.append(row)
    if not trend:
        return None
    return Table(
        "trend",
        "Kendall τ per quantity, with its bootstrap interval [CI] and p-value",
        pd.DataFrame(trend).fillna(DASH),
        (),
        pd.DataFrame(trend_values),
    )


def correlation_table(study: Study, target: str) -> Table | None:
    """Kendall τ and Spearman ρ (bootstrap CI, p-value) of each measure with ``target``.

    Args:
        study: The analysis.
        target: A key of :data:`~flatness.report.analysis.TARGETS`.

    Returns:
        The table (with τ within regime when there are several regimes), or ``None``
        when ``target`` has no values or no measure was correlated with it.

    Raises:
        ValueError: For an unknown ``target``.
    """
    if target not in TARGETS:
        raise ValueError(f"target={target!r}: choose one of {list(TARGETS)}")
    if not study.runs[target].notna().any():
        return None
    rows, values = [], []
    for col in study.columns:
        tau = study.correlations.get((col.label, target, "kendall"))
        rho = study.correlations.get((col.label, target, "spearman"))
        if tau is None or rho is None:
            continue
        row = {
            "measure": col.label,
            "n": str(tau.n),
            "Kendall τ [CI]": tau.text(),
            "p (τ)": _p(tau.p_value),
            "Spearman ρ [CI]": rho.text(),
            "p (ρ)": _p(rho.p_value),
        }
        within = study.correlations.get((col.label, target, "within"))
        if within is not None and len(study.regimes) > 1:
            row["τ within regime [CI]"] = within.text()
            row["p (within)"] = _p(within.p_value)
        comp = study.comparisons.get(col.label)
        if comp is not None:
            row["SB vs LB, Holm p"] = _p(comp.holm_p)
        rows.append(row)
        for result in (tau, rho, within):
            if result is None:
                continue
            values.append(
                {
                    "measure": col.label,
                    "target": target,
                    "method": result.method,
                    "estimate": result.estimate,
                    "low": result.low,
                    "high": result.high,
                    "p_value": result.p_value,
                    "n": result.n,
                    "confidence": result.confidence,
                    "n_boot": result.n_boot,
                    "degenerate": result.degenerate,
                }
            )
    if not rows:
        return None
    level = f"{100 * float(study.settings.get('confidence', 0.95)):.10g}"
    note = (
        f"Over all checkpoints; {level}% percentile bootstrap intervals from "
        f"{study.settings.get('n_boot')} resamples (seed {study.settings.get('seed')})."
    )
    if len(study.regimes) > 1:
        note += (
            " τ within regime counts only pairs of checkpoints from the same regime (same "
            "batch size and learning rate, different seeds): when the measure and the "
            "target both follow the batch size, τ over all checkpoints can be strong while "
            "this one is not; p (within) is a permutation test within regimes."
        )
    if study.sb is not None:
        note += (
            " The last column tests whether the measure differs between the SB and LB "
            "runs: the two-sided Wilcoxon signed-rank p over the paired seeds, "
            "Holm-adjusted over the measures (the SB vs LB table has the other tests)."
        )
    notes = (note,)
    return Table(
        f"correlation-{target.replace('_', '-')}",
        f"Rank correlation of each measure with the {TARGETS[target]}",
        pd.DataFrame(rows),
        notes,
        values_frame(values),
    )
