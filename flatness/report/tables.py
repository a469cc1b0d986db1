"""The report's tables, laid out as Keskar et al. laid out theirs.

- :func:`accuracy_table` -- Table 2: train and test accuracy per regime, mean ± std
  over seeds, and the generalization gap;
- :func:`keskar_tables` -- Tables 3 and 4: ε-sharpness per regime and ε, in full space
  and in each random subspace;
- :func:`measures_table` -- every other scalar measure per regime;
- :func:`comparison_table` -- SB vs LB per measure (ratio, seeds, Mann–Whitney);
- :func:`correlation_table` -- Kendall τ and Spearman ρ with bootstrap intervals.

Each returns a :class:`Table` of formatted text cells; the numbers behind them live in
the :class:`~flatness.report.analysis.Study`. With ``reference`` (a network of the
paper), rows SB and LB get the paper's values beside ours.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import pandas as pd

from flatness.report.analysis import TARGETS, Study
from flatness.report.frames import Column, format_setting
from flatness.report.reference import DASH, keskar_value, paper_text
from flatness.report.stats import MeanStd, format_mean_std, format_p_value, mean_std


@dataclass(frozen=True)
class Table:
    """A titled table of text cells with notes printed under it.

    Attributes:
        key: A short file-name-safe name (``table2``); also the CSV's name.
        title: The caption.
        frame: The cells, all text.
        notes: Sentences printed under the table.
        values: The numbers behind the cells (mean, std, n per cell), for CSV export.
    """

    key: str
    title: str
    frame: pd.DataFrame
    notes: tuple[str, ...] = ()
    values: pd.DataFrame | None = None


def _over(study: Study) -> str:
    return "(one run per regime)" if study.single_seed else "(mean ± std over seeds)"


def percent(value: float) -> float:
    """A fraction in percent (accuracies are stored as fractions, shown in %)."""
    return value * 100.0


def stat_cell(stat: MeanStd, scale: float = 1.0) -> str:
    """A table cell for mean ± std over seeds (``scale``: 100 for percent).

    Returns:
        ``"12.3 ± 0.4"`` (see :func:`~flatness.report.stats.format_mean_std`).
    """
    return format_mean_std(stat.mean * scale, stat.std * scale, stat.n)


def paper_table(subspace: int | None) -> int:
    """Keskar et al.'s table of ε-sharpness in this space: 3 (full space) or 4 (subspace).

    Examples:
        >>> paper_table(0), paper_table(100)
        (3, 4)
    """
    return 4 if subspace else 3


def _paper_regime(study: Study, regime: str) -> str | None:
    if regime == study.sb:
        return "SB"
    if regime == study.lb:
        return "LB"
    return None


def _size(study: Study, regime: str) -> str:
    sizes = study.runs.loc[study.runs["regime"] == regime, "batch_size"].dropna().unique()
    return ", ".join(f"{b:g}" for b in sorted(sizes)) or DASH


def _value_rows(records: list[dict[str, object]]) -> pd.DataFrame:
    return pd.DataFrame.from_records(records)


def accuracy_table(study: Study, reference: str | None = None) -> Table:
    """Keskar et al.'s Table 2 for these runs: accuracies (%) per regime, mean ± std."""
    rows, values = [], []
    for regime in study.regimes:
        train = study.accuracy[(regime, "train_accuracy")]
        test = study.accuracy[(regime, "test_accuracy")]
        gap = study.accuracy[(regime, "generalization_gap")]
        row = {
            "regime": regime,
            "batch size": _size(study, regime),
            "runs": str(study.seeds_per_regime[regime]),
            "train accuracy (%)": stat_cell(train, 100.0),
            "test accuracy (%)": stat_cell(test, 100.0),
            "gap (points)": stat_cell(gap, 100.0),
        }
        paper = _paper_regime(study, regime)
        if reference is not None:
            for quantity, head in (("train_accuracy", "train"), ("test_accuracy", "test")):
                row[f"paper {head} (%), {reference}"] = (
                    paper_text(keskar_value(reference, 2, paper, quantity=quantity))
                    if paper
                    else ""
                )
        rows.append(row)
        for name, stat in (("train_accuracy", train), ("test_accuracy", test), ("gap", gap)):
            values.append({"regime": regime, "quantity": name, **_numbers(stat)})
    notes = ["Accuracies in percent; the gap is train minus test accuracy, in points."]
    return Table(
        "table2",
        f"Table 2: accuracy per regime {_over(study)}",
        pd.DataFrame(rows),
        tuple(notes),
        _value_rows(values),
    )


def _numbers(stat: object) -> dict[str, float]:
    return {
        "mean": float(getattr(stat, "mean", math.nan)),
        "std": float(getattr(stat, "std", math.nan)),
        "n": float(getattr(stat, "n", 0)),
    }


def keskar_tables(study: Study, reference: str | None = None) -> list[Table]:
    """Tables 3 and 4: ε-sharpness per regime, one column per ε (full space, subspaces)."""
    keskar = [c for c in study.columns if c.measure == "keskar"]
    spaces = sorted({c.subspace for c in keskar})
    tables = []
    for space in spaces:
        cols = sorted((c for c in keskar if c.subspace == space), key=lambda c: -(c.eps or 0))
        number = paper_table(space)
        headers = [_eps_header(c) for c in cols]
        if len(set(headers)) < len(headers):  # other settings vary too: full labels
            headers = [c.label for c in cols]
        rows, values = [], []
        for regime in study.regimes:
            row = {"regime": regime, "batch size": _size(study, regime)}
            paper = _paper_regime(study, regime)
            for col, head in zip(cols, headers, strict=True):
                stat = study.by_regime[(col.label, regime)]
                row[head] = stat_cell(stat)
                values.append({"regime": regime, "column": col.label, **_numbers(stat)})
                if reference is not None:
                    eps = math.nan if col.eps is None else float(col.eps)
                    row[f"paper {head}, {reference}"] = (
                        paper_text(keskar_value(reference, number, paper, eps=eps)) if paper else ""
                    )
            rows.append(row)
        where = "full space (A = I)" if space == 0 else f"a random {space}-dimensional subspace"
        notes = [
            "Metric 2.1 of Keskar et al. (×100): the largest relative rise of the training "
            f"loss in a box of half-width ε(|x|+1), in {where}."
        ]
        if reference is not None and space not in (0, 100):
            notes.append("The paper's Table 4 uses a 100-dimensional subspace.")
        solvers = {
            (c.settings.get("solver"), c.settings.get("maxiter"), c.settings.get("start"))
            for c in cols
        }
        if len(solvers) == 1:
            solver, maxiter, start = solvers.pop()
            if solver:
                notes.append(f"Solver {solver}, {maxiter} iterations, start {start}.")
        tables.append(
            Table(
                f"table{number}" if space in (0, 100) else f"table4-p{space}",
                f"Table {number}: ε-sharpness in {where} {_over(study)}",
                pd.DataFrame(rows),
                tuple(notes),
                _value_rows(values),
            )
        )
    return tables


def _eps_header(column: Column) -> str:
    return f"ε = {format_setting(column.eps)}" if column.eps is not None else column.label


def measures_table(study: Study) -> Table | None:
    """Every scalar measure other than ε-sharpness, mean ± std per regime."""
    cols = [c for c in study.columns if c.measure != "keskar"]
    if not cols:
        return None
    rows, values = [], []
    for regime in study.regimes:
        row = {"regime": regime, "batch size": _size(study, regime)}
        for col in cols:
            stat = study.by_regime[(col.label, regime)]
            row[col.label] = stat_cell(stat)
            values.append({"regime": regime, "column": col.label, **_numbers(stat)})
        rows.append(row)
    return Table(
        "measures",
        f"Curvature and sharpness measures per regime {_over(study)}",
        pd.DataFrame(rows),
        (),
        _value_rows(values),
    )


def eigenvalues_table(tidy: pd.DataFrame, study: Study) -> Table | None:
    """The top Hessian eigenvalues (``lambda_max`` with ``k`` ≥ 2) per regime, mean ± std.

    Args:
        tidy: The normalized results frame (:func:`~flatness.report.frames.normalize`),
            whose ``lambda_max`` rows carry one component per eigenvalue.
        study: The analysis (its runs decide which checkpoints count and their regime).

    Returns:
        ``None`` when no ``lambda_max`` result has two or more components.
    """
    rows = tidy[(tidy["measure"] == "lambda_max") & tidy["component"].str.fullmatch(r"\d+")]
    if rows.empty:
        return None
    counts = rows.groupby("settings")["component"].nunique()
    if counts.max() < 2:
        return None
    rows = rows[rows["settings"] == counts.idxmax()]
    regime_of = dict(zip(study.runs["checkpoint"], study.runs["regime"].astype(str), strict=True))
    rows = rows[rows["checkpoint"].isin(regime_of)]
    ks = sorted({int(c) for c in rows["component"]})
    table, values = [], []
    for regime in study.regimes:
        mine = rows[rows["checkpoint"].map(regime_of) == regime]
        line = {"regime": regime, "batch size": _size(study, regime)}
        for k in ks:
            stat = mean_std(mine.loc[mine["component"] == str(k), "value"].to_numpy(float))
            line[f"λ_{k}"] = stat_cell(stat)
            values.append({"regime": regime, "component": k, **_numbers(stat)})
        table.append(line)
    return Table(
        "eigenvalues",
        f"Top {len(ks)} Hessian eigenvalues per regime {_over(study)}",
        pd.DataFrame(table),
        ("Thick-restart Lanczos; λ_1 is λ_max. Mean ± std over checkpoints.",),
        _value_rows(values),
    )


def comparison_table(study: Study) -> Table | None:
    """SB vs LB for the test accuracy and each measure."""
    if study.sb is None or study.lb is None:
        return None
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
                "effect_p_lb_greater": comp.test.effect,
            }
        )
    notes = [
        "LB higher (seeds): seeds where the LB run's value exceeds the SB run's of the "
        "same seed. Mann–Whitney U test of LB vs SB, two-sided.",
    ]
    n_sb, n_lb = study.seeds_per_regime[study.sb], study.seeds_per_regime[study.lb]
    if n_sb and n_lb:
        floor = 2.0 / math.comb(n_sb + n_lb, n_sb)
        if floor > 0.01:
            notes.append(
                f"With {n_sb} SB and {n_lb} LB runs, the smallest two-sided Mann–Whitney "
                f"p-value possible is {floor:.2g}."
            )
    if study.sb_lb_note:
        notes.append(study.sb_lb_note[0].upper() + study.sb_lb_note[1:] + ".")
    notes.append("LB / SB is shown only when both means are positive.")
    return Table("sb-vs-lb", "SB vs LB", pd.DataFrame(rows), tuple(notes), _value_rows(values))


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


def correlation_table(study: Study, target: str) -> Table | None:
    """Kendall τ and Spearman ρ (bootstrap CI, p-value) of each measure with ``target``."""
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
            row["SB vs LB, Mann–Whitney p"] = _p(comp.test.p_value)
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
            "runs (two-sided)."
        )
    notes = (note,)
    return Table(
        f"correlation-{target.replace('_', '-')}",
        f"Rank correlation of each measure with the {TARGETS[target]}",
        pd.DataFrame(rows),
        notes,
        _value_rows(values),
    )


def scores_table(study: Study) -> pd.DataFrame:
    """One row per checkpoint with its run columns and every measure's value (for CSV)."""
    wide = study.wide
    keep = ["checkpoint", "path", "regime", "batch_size", "lr", "seed", "epoch"]
    keep += ["train_accuracy", "test_accuracy", "generalization_gap"]
    runs = study.runs[keep].set_index("checkpoint")
    return runs.join(wide, how="left").reset_index()


__all__ = [
    "Table",
    "accuracy_table",
    "comparison_table",
    "correlation_table",
    "keskar_tables",
    "measures_table",
    "scores_table",
]
