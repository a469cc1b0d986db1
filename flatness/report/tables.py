"""The report's tables, laid out as Keskar et al. laid out theirs.

- :func:`accuracy_table` -- Table 2: train and test accuracy per regime, mean ± std
  over seeds, the generalization gap, and how long each regime trained (updates, final
  training loss, gradient norm, why the runs stopped);
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


def missing_note(study: Study, frame: pd.DataFrame) -> tuple[str, ...]:
    """A sentence saying why a cell shows a dash, when one does.

    Returns:
        One note (empty tuple when no cell is a dash).
    """
    cells = frame.drop(columns=["regime", "batch size"], errors="ignore")
    if not cells.isin([DASH]).to_numpy().any():
        return ()
    why = "the measure was not scored on that regime's checkpoints"
    if study.non_finite:
        why += ", or its estimates there were not finite (listed in the summary)"
    return (f"{DASH}: no value, because {why}.",)


def values_frame(records: list[dict[str, object]]) -> pd.DataFrame:
    """The numbers behind a table's cells, one record a row (what its CSV holds).

    Returns:
        The records as a frame.
    """
    return pd.DataFrame.from_records(records)


STOP_WORDS = {
    "target_accuracy": "reached {target}",
    "target_loss": "reached {target}",
    "epochs": "ran all epochs",
    "max_updates": "hit the update cap",
}
"""How the accuracy table words a run's stop reason (``{target}`` filled from the run)."""


def stop_text(rows: pd.DataFrame) -> str:
    """How a regime's runs stopped, e.g. ``"5/5 reached 98 %"`` or ``"3/5 ran all epochs,
    2/5 hit the update cap"``.

    Returns:
        The text; ``""`` when no run records why it stopped.

    Examples:
        >>> rows = pd.DataFrame({"stop_reason": ["target_accuracy"] * 2 + ["epochs"],
        ...                      "target_accuracy": [0.98] * 3, "target_loss": [None] * 3})
        >>> stop_text(rows)
        '2/3 reached 98 %, 1/3 ran all epochs'
    """
    if "stop_reason" not in rows:
        return ""
    reasons = rows["stop_reason"].where(rows["stop_reason"].notna(), None)
    known = [str(r) for r in reasons if r is not None and str(r) in STOP_WORDS]
    if not known:
        return ""
    total = len(rows)
    parts = []
    for reason in STOP_WORDS:
        count = known.count(reason)
        if not count:
            continue
        target = ""
        if reason == "target_accuracy":
            value = pd.to_numeric(rows.get("target_accuracy"), errors="coerce").dropna()
            target = f"{100 * float(value.iloc[0]):g} %" if len(value) else "the target accuracy"
        elif reason == "target_loss":
            value = pd.to_numeric(rows.get("target_loss"), errors="coerce").dropna()
            target = f"loss ≤ {float(value.iloc[0]):g}" if len(value) else "the target loss"
        parts.append(f"{count}/{total} " + STOP_WORDS[reason].format(target=target))
    unknown = total - len(known)
    if unknown:
        parts.append(f"{unknown}/{total} not recorded")
    return ", ".join(parts)


def _gradient_column(study: Study) -> Column | None:
    """The first ``gradient_norm`` column (the 2-norm), if that measure was scored."""
    return next((c for c in study.columns if c.measure == "gradient_norm"), None)


def accuracy_table(study: Study, reference: str | None = None) -> Table:
    """Keskar et al.'s Table 2 for these runs, with how long and how far each regime trained.

    Per regime: train and test accuracy (%) and the gap (points), mean ± std over seeds;
    the updates taken and the final training loss (evaluated) when the runs record them;
    the gradient norm when the ``gradient_norm`` measure was scored; and how the runs
    stopped (e.g. ``5/5 reached 98 %``). The paper's values beside SB and LB with
    ``reference``.

    Returns:
        The table.
    """
    rows, values = [], []
    runs = study.runs
    has = {
        c: c in runs and pd.to_numeric(runs[c], errors="coerce").notna().any()
        for c in ("updates", "train_loss")
    }
    grad = _gradient_column(study)
    for regime in study.regimes:
        train = study.accuracy[(regime, "train_accuracy")]
        test = study.accuracy[(regime, "test_accuracy")]
        gap = study.accuracy[(regime, "generalization_gap")]
        mine = runs[runs["regime"] == regime]
        row = {
            "regime": regime,
            "batch size": _size(study, regime),
            "runs": str(study.seeds_per_regime[regime]),
            "train accuracy (%)": stat_cell(train, 100.0),
            "test accuracy (%)": stat_cell(test, 100.0),
            "gap (points)": stat_cell(gap, 100.0),
        }
        extra: list[tuple[str, MeanStd]] = []
        if has["updates"]:
            extra.append(("updates", mean_std(mine["updates"].to_numpy(dtype=float))))
        if has["train_loss"]:
            extra.append(("final training loss", mean_std(mine["train_loss"].to_numpy(float))))
        if grad is not None:
            extra.append(("gradient norm", study.by_regime[(grad.label, regime)]))
        for head, stat in extra:
            row[head] = stat_cell(stat)
            values.append({"regime": regime, "quantity": head.replace(" ", "_"), **_numbers(stat)})
        stopped = stop_text(mine)
        if stopped:
            row["stopped"] = stopped
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
    if has["train_loss"]:
        notes.append(
            "Final training loss: the checkpoint's loss on the training set, evaluated after "
            "training (eval mode)."
        )
    if grad is not None:
        notes.append(
            "Gradient norm: the norm of the scoring loss's gradient at the checkpoint"
            + (f" ({grad.label})" if grad.label != "gradient norm" else "")
            + "; far from zero means the run did not end at a minimum."
        )
    frame = pd.DataFrame(rows)
    if "stopped" in frame:
        frame["stopped"] = frame["stopped"].fillna("not recorded")
    return Table(
        "table2",
        f"Table 2: accuracy and training per regime {_over(study)}",
        frame,
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
        frame = pd.DataFrame(rows)
        tables.append(
            Table(
                f"table{number}" if space in (0, 100) else f"table4-p{space}",
                f"Table {number}: ε-sharpness in {where} {_over(study)}",
                frame,
                tuple(notes) + missing_note(study, frame),
                values_frame(values),
            )
        )
    return tables


def _eps_header(column: Column) -> str:
    return f"ε = {format_setting(column.eps)}" if column.eps is not None else column.label


def measures_table(study: Study) -> Table | None:
    """Every scalar measure other than ε-sharpness, mean ± std per regime.

    The weight norm (``weight_norm``) comes first, beside the measures whose values scale
    with the weights (λ_max, the trace, ...): a larger curvature can come from smaller
    weights alone (Dinh et al., 2017, "Sharp minima can generalize for deep nets").

    Returns:
        The table, or ``None`` when there is no other measure.
    """
    cols = [c for c in study.columns if c.measure != "keskar"]
    if not cols:
        return None
    cols.sort(key=lambda c: c.measure != "weight_norm")
    rows, values = [], []
    for regime in study.regimes:
        row = {"regime": regime, "batch size": _size(study, regime)}
        for col in cols:
            stat = study.by_regime[(col.label, regime)]
            row[col.label] = stat_cell(stat)
            values.append({"regime": regime, "column": col.label, **_numbers(stat)})
        rows.append(row)
    frame = pd.DataFrame(rows)
    notes = missing_note(study, frame)
    if any(c.measure == "weight_norm" for c in cols):
        notes = (
            "Weight norm first: curvature measures change when the weights are rescaled "
            "(Dinh et al., 2017), so compare them with it.",
            *notes,
        )
    return Table("measures", f"Other measures {_over(study)}", frame, notes, values_frame(values))


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
    keep += [c for c in ("updates", "stop_reason", "train_loss") if c in study.runs]
    runs = study.runs[keep].set_index("checkpoint")
    return runs.join(wide, how="left").reset_index()


__all__ = [
    "Table",
    "accuracy_table",
    "eigenvalues_table",
    "keskar_tables",
    "measures_table",
    "missing_note",
    "paper_table",
    "percent",
    "scores_table",
    "stat_cell",
    "stop_text",
    "values_frame",
]
