"""The report's tables, laid out as Keskar et al. laid out theirs.

- :func:`accuracy_table` -- Table 2: train and test accuracy per regime, mean ± std
  over seeds, and the generalization gap;
- :func:`keskar_tables` -- Tables 3 and 4: ε-sharpness per regime and ε, in full space
  and in each random subspace;
- :func:`measures_table` -- every other scalar measure per regime;
- :func:`eigenvalues_table` -- the top-k Hessian eigenvalues per regime;
- :func:`scores_table` -- every checkpoint's values (for CSV).

The tables that test and relate (SB vs LB, trends with the batch size, correlations with
accuracy) are in :mod:`flatness.report.comparisons`.

Each returns a :class:`Table` of formatted text cells; the numbers behind them live in
the :class:`~flatness.report.analysis.Study`. With ``reference`` (a network of the
paper), rows SB and LB get the paper's values beside ours.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import pandas as pd

from flatness.report.analysis import Study
from flatness.report.frames import Column, format_setting
from flatness.report.reference import DASH, keskar_value, paper_text
from flatness.report.stats import MeanStd, format_mean_std, mean_std


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
    """A fraction in percent (accuracies are stored as fractions, shown in %).

    Returns:
        ``value`` × 100.
    """
    return value * 100.0


def stat_cell(stat: MeanStd, scale: float = 1.0) -> str:
    """A table cell for mean ± std over seeds (``scale``: 100 for percent).

    Returns:
        ``"12.3 ± 0.4"`` (see :func:`~flatness.report.stats.format_mean_std`).
    """
    return format_mean_std(stat.mean * scale, stat.std * scale, stat.n)


def paper_table(subspace: int | None) -> int:
    """Keskar et al.'s table of ε-sharpness in this space: 3 (full space) or 4 (subspace).

    Returns:
        The table's number.

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


def values_frame(records: list[dict[str, object]]) -> pd.DataFrame:
    """The numbers behind a table's cells, one record a row (what its CSV holds).

    Returns:
        The records as a frame.
    """
    return pd.DataFrame.from_records(records)


def accuracy_table(study: Study, reference: str | None = None) -> Table:
    """Keskar et al.'s Table 2 for these runs: accuracies (%) per regime, mean ± std.

    Returns:
        The table: train and test accuracy and the gap per regime, the paper's
        values beside SB and LB with ``reference``.
    """
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
        values_frame(values),
    )


def _numbers(stat: object) -> dict[str, float]:
    return {
        "mean": float(getattr(stat, "mean", math.nan)),
        "std": float(getattr(stat, "std", math.nan)),
        "n": float(getattr(stat, "n", 0)),
    }


def keskar_tables(study: Study, reference: str | None = None) -> list[Table]:
    """Tables 3 and 4: ε-sharpness per regime, one column per ε (full space, subspaces).

    Returns:
        One table per space (empty when no ε-sharpness was scored).
    """
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
                values_frame(values),
            )
        )
    return tables


def _eps_header(column: Column) -> str:
    return f"ε = {format_setting(column.eps)}" if column.eps is not None else column.label


def measures_table(study: Study) -> Table | None:
    """Every scalar measure other than ε-sharpness, mean ± std per regime.

    Returns:
        The table, or ``None`` when there is no other measure.
    """
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
        values_frame(values),
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
        values_frame(values),
    )


def scores_table(study: Study) -> pd.DataFrame:
    """One row per checkpoint with its run columns and every measure's value (for CSV).

    Returns:
        The frame.
    """
    wide = study.wide
    keep = ["checkpoint", "path", "regime", "batch_size", "lr", "seed", "epoch"]
    keep += ["train_accuracy", "test_accuracy", "generalization_gap"]
    runs = study.runs[keep].set_index("checkpoint")
    return runs.join(wide, how="left").reset_index()


__all__ = [
    "Table",
    "accuracy_table",
    "eigenvalues_table",
    "keskar_tables",
    "measures_table",
    "paper_table",
    "percent",
    "scores_table",
    "stat_cell",
    "values_frame",
]
