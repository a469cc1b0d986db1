"""Learning curves and sharpness trajectories in a report: the numbers behind them.

A store's ``tracks`` table (:func:`flatness.load_tracks`) holds records taken during
training: per-epoch training histories (``source == "history"``) and the tracker's
measurements (``source == "tracker"``), one row per run × source × step. This module
turns them into what the report shows:

- runs are grouped by schedule/regime (:func:`group_labels`); the runs of one group are
  its seeds, and every curve is drawn as the mean over them with a min–max band
  (:func:`trajectory`);
- a compact table per group: final train and test accuracy, updates used and examples
  seen, mean ± sd over seeds, computed from every record (:func:`training_table`).

:mod:`~flatness.report.learning_figures` draws the curves and
:mod:`~flatness.report.training` puts the section together.

Records taken where the loss was not finite (``nonfinite == 1``) and infinite values are
kept as gaps in the curves; a value simply not recorded at a step (a measure taken at
another cadence) is skipped, so its curve joins the steps where it was measured.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence

import numpy as np
import pandas as pd

from flatness.headlines import DISPLAY_NAMES
from flatness.report.stats import MeanStd, mean_std
from flatness.report.tables import Table, stat_cell, values_frame

__all__ = [
    "FIT",
    "MAX_POINTS",
    "group_labels",
    "measure_label",
    "measure_names",
    "nonfinite_runs",
    "percent_axis",
    "trajectory",
    "training_table",
    "x_column",
]

IDENTITY = ("regime", "schedule", "optimizer")
"""The record fields that name a run's schedule/regime, in the order a label joins them."""

FIT = ("train_loss", "train_accuracy", "test_loss", "test_accuracy")
"""The fit of the model, on the training data and on the test set."""

_BESIDE = ("_stderr", "_converged")
"""What every measure's record holds beside its value (the tracks contract): a field with
either of them is a measure."""

_ORDER = ("lambda_max", "trace", "keskar_sharpness", "keskar")

MAX_POINTS = 400
"""The most points a curve is drawn with; longer tracks are thinned for plotting only."""


def measure_names(tracks: pd.DataFrame) -> list[str]:
    """The measures the tracks record: the fields recorded with an error bar or a
    convergence flag beside them (``NAME_stderr``, ``NAME_converged``), as every tracked
    measure is; fit, hyper-parameters, costs and other fields are not measures.

    ``lambda_max``, ``lambda_2``, ... come first (in order of the index), then the trace
    and ε-sharpness, then the others by name.

    Returns:
        The measure names (the noise scale among them) that hold a value.

    Examples:
        >>> frame = pd.DataFrame({"run": ["a"], "source": ["tracker"], "step": [0],
        ...     "lambda_2": [1.0], "lambda_2_stderr": [0.0], "trace": [3.0],
        ...     "trace_stderr": [0.1], "lambda_max": [2.0], "lambda_max_converged": [1],
        ...     "running_loss": [0.5], "running_loss_note": [""]})
        >>> measure_names(frame)
        ['lambda_max', 'lambda_2', 'trace']
    """
    names = [
        str(column)
        for column in tracks.columns
        if any(f"{column}{beside}" in tracks.columns for beside in _BESIDE)
        and pd.api.types.is_numeric_dtype(tracks[column])
        and tracks[column].notna().any()
    ]

    def order(name: str) -> tuple[int, int, str]:
        match = re.fullmatch(r"lambda_(\d+)", name)
        if name == "lambda_max" or match:
            return (0, int(match.group(1)) if match else 1, name)
        return (1, _ORDER.index(name) if name in _ORDER else len(_ORDER), name)

    return sorted(names, key=order)


def measure_label(name: str) -> str:
    """A tracked measure's name as a report shows it.

    Returns:
        ``λ_max``, ``λ_2``, ``ε-sharpness``, ``noise scale B_simple``, or the name.

    Examples:
        >>> measure_label("lambda_max"), measure_label("lambda_3"), measure_label("grad")
        ('λ_max', 'λ_3', 'grad')
    """
    if re.fullmatch(r"lambda_\d+", name):
        return "λ_" + name.split("_")[1]
    if name == "keskar_sharpness":
        return DISPLAY_NAMES["keskar"]
    return DISPLAY_NAMES.get(name, name)


def _first(values: pd.Series) -> object:
    present = values.dropna()
    return present.iloc[0] if not present.empty else None


def group_labels(tracks: pd.DataFrame) -> pd.Series:
    """The schedule/regime of each run: the group whose runs are one another's seeds.

    A label joins those identity fields (regime, schedule, optimizer, in this order) that
    tell runs apart beyond the fields before them (the first one present when none
    does), each distinct value once; runs that record none of them are each their own
    group, named by their run.

    Args:
        tracks: :func:`flatness.load_tracks`'s frame.

    Returns:
        Run name → label.

    Examples:
        >>> frame = pd.DataFrame({"run": ["a", "b", "c"], "schedule": ["step"] * 3,
        ...     "optimizer": ["sgd", "sgd", "adam"]})
        >>> group_labels(frame).to_dict()
        {'a': 'sgd', 'b': 'sgd', 'c': 'adam'}
        >>> frame["regime"] = ["SB", "LB", "LB"]
        >>> group_labels(frame).to_dict()
        {'a': 'SB · sgd', 'b': 'LB · sgd', 'c': 'LB · adam'}
    """
    present = [c for c in IDENTITY if c in tracks.columns and tracks[c].notna().any()]
    if not present:
        runs = tracks["run"].astype(str).drop_duplicates()
        return pd.Series(runs.to_numpy(), index=runs.to_numpy(), name="group")
    per_run = tracks.groupby("run", sort=False)[present].agg(_first)
    varied: list[str] = []
    distinct = 1
    for column in present:  # each field that tells runs apart the earlier ones did not
        n = len(per_run[[*varied, column]].astype(str).drop_duplicates())
        if n > distinct:
            varied, distinct = [*varied, column], n
    varied = varied or present[:1]
    labels = [
        " · ".join(dict.fromkeys(str(row[c]) for c in varied if row[c] is not None)) or str(run)
        for run, row in per_run.iterrows()
    ]
    return pd.Series(labels, index=per_run.index.astype(str), name="group")


def x_column(tracks: pd.DataFrame, axis: str) -> str | None:
    """The column of an x axis, if recorded: ``updates`` falls back on ``step`` (the
    updates so far when the record was taken).

    Returns:
        The column's name, or ``None`` when ``axis`` holds no value.
    """
    if axis == "updates" and ("updates" not in tracks or tracks["updates"].isna().all()):
        return "step"
    return axis if axis in tracks and tracks[axis].notna().any() else None


def _gaps(rows: pd.DataFrame, y: str) -> pd.Series:
    """``y`` with the values to draw as gaps (non-finite loss, infinite values) as NaN and
    the values not recorded dropped."""
    values = pd.to_numeric(rows[y], errors="coerce").astype(float)
    flagged = (
        pd.to_numeric(rows["nonfinite"], errors="coerce").fillna(0).astype(bool)
        if "nonfinite" in rows
        else pd.Series(False, index=rows.index)
    )
    keep = values.notna() | flagged
    shown = values.where(np.isfinite(values) & ~flagged)
    return shown[keep]


def trajectory(rows: pd.DataFrame, x: str, y: str, *, max_points: int = MAX_POINTS) -> pd.DataFrame:
    """One group's curve of ``y`` against ``x``: the mean over its runs and a band.

    At each ``x`` the runs recorded there give the mean and the band: the min–max over
    them with two or more runs; with one run, ±1 standard error of the estimate when
    ``y`` has a ``<y>_stderr`` column (else no band). A non-finite value at an ``x``
    makes the mean and band a gap there. A curve longer than ``max_points`` is thinned to
    about that many evenly spaced points, its gaps kept.

    Args:
        rows: The group's records (several runs).
        x: The x column (``step``, ``epoch``, ``updates``, ``examples_seen``).
        y: The quantity.
        max_points: The most points kept.

    Returns:
        Columns ``x``, ``mean``, ``low``, ``high``, ``n`` (runs recorded at that x), sorted
        by x; empty when nothing is recorded.
    """
    columns = ["x", "mean", "low", "high", "n"]
    if y not in rows or x not in rows:
        return pd.DataFrame(columns=columns)
    values = _gaps(rows, y)
    frame = pd.DataFrame(
        {
            "x": pd.to_numeric(rows.loc[values.index, x], errors="coerce"),
            "y": values,
            "run": rows.loc[values.index, "run"],
        }
    )
    if f"{y}_stderr" in rows:
        frame["se"] = pd.to_numeric(rows.loc[values.index, f"{y}_stderr"], errors="coerce")
    frame = frame[np.isfinite(frame["x"].astype(float))]
    if frame.empty:
        return pd.DataFrame(columns=columns)
    grouped = frame.groupby("x", sort=True)
    gap = frame["y"].isna().groupby(frame["x"], sort=True).any()
    out = pd.DataFrame(
        {
            "mean": grouped["y"].mean(),
            "low": grouped["y"].min(),
            "high": grouped["y"].max(),
            "n": grouped["run"].nunique(),
        }
    )
    if frame["run"].nunique() == 1:
        se = grouped["se"].mean() if "se" in frame else pd.Series(np.nan, index=out.index)
        out["low"], out["high"] = out["mean"] - se, out["mean"] + se
    out.loc[gap, ["mean", "low", "high"]] = np.nan
    out = out.reset_index()[columns]
    if len(out) > max_points:
        keep = set(np.linspace(0, len(out) - 1, max_points).round().astype(int))
        keep |= set(np.flatnonzero(out["mean"].isna().to_numpy()))
        out = out.iloc[sorted(keep)]
    return out.reset_index(drop=True)


def _final(rows: pd.DataFrame, y: str) -> float:
    """A run's final ``y``: at its last record holding ``y`` or flagged non-finite (NaN)."""
    values = _gaps(rows.sort_values("step"), y)
    return float(values.iloc[-1]) if not values.empty else math.nan


def _fit_rows(rows: pd.DataFrame, y: str) -> pd.DataFrame:
    """A run's records to read its final fit from: its history when that records ``y``
    (the training's own per-epoch record), else the tracker's."""
    history = rows[rows["source"] == "history"]
    if y in history and history[y].notna().any():
        return history
    return rows[rows["source"] != "history"]


def _largest(rows: pd.DataFrame, column: str | None) -> float:
    if column is None:
        return math.nan
    values = pd.to_numeric(rows[column], errors="coerce")
    return float(values.max()) if values.notna().any() else math.nan


def training_table(tracks: pd.DataFrame) -> Table:
    """Per schedule/regime: the runs, final train and test accuracy (%), updates used and
    examples seen, mean ± sd over seeds.

    Computed from every record (never the thinned curves). A run's final accuracy is
    that of its last record holding it, from its per-epoch history when it has one, else
    from the tracker; a run whose last such record is non-finite counts as missing (the
    table's notes say how many).

    Args:
        tracks: :func:`flatness.load_tracks`'s frame (at least ``run``, ``source``,
            ``step``).

    Returns:
        The table; its ``values`` hold mean, std and n per group and quantity.
    """
    labels = group_labels(tracks)
    updates, examples = x_column(tracks, "updates"), x_column(tracks, "examples_seen")
    per_run: dict[str, dict[str, float]] = {}
    for run, rows in tracks.groupby(tracks["run"].astype(str), sort=False):
        per_run[str(run)] = {
            **{y: _final(_fit_rows(rows, y), y) for y in ("train_accuracy", "test_accuracy")},
            "updates": _largest(rows, updates),
            "examples_seen": _largest(rows, examples),
        }
    quantities = {
        "train_accuracy": ("final train accuracy (%)", 100.0),
        "test_accuracy": ("final test accuracy (%)", 100.0),
        "updates": ("updates", 1.0),
        "examples_seen": ("examples seen", 1.0),
    }
    rows_out, values, missing = [], [], 0
    for group in sorted(set(labels), key=str):
        runs = [run for run, label in labels.items() if label == group]
        row: dict[str, str] = {"schedule/regime": group, "runs": str(len(runs))}
        for key, (head, scale) in quantities.items():
            stat: MeanStd = mean_std([per_run[r][key] for r in runs])
            row[head] = stat_cell(stat, scale) if stat.n else "—"
            if key in ("train_accuracy", "test_accuracy"):
                missing += stat.dropped
            values.append(
                {"group": group, "quantity": key, "mean": stat.mean, "std": stat.std, "n": stat.n}
            )
        rows_out.append(row)
    notes = [
        "Mean ± sd over the runs (seeds) of each schedule/regime; a single run shows no ±. "
        "Final accuracies from each run's per-epoch history when it has one (fit as "
        "recorded there), else from the tracker's last record.",
    ]
    if missing:
        notes.append(
            f"{missing} final accurac{'y is' if missing == 1 else 'ies are'} missing or "
            "non-finite and left out of the means."
        )
    return Table(
        "training",
        "Training per schedule/regime",
        pd.DataFrame(rows_out),
        tuple(notes),
        values_frame(values),
    )


def percent_axis(quantity: str) -> float:
    """The factor a quantity is shown with (accuracies in percent).

    Returns:
        ``100`` for accuracies, else ``1``.
    """
    return 100.0 if quantity.endswith("accuracy") else 1.0


def nonfinite_runs(tracks: pd.DataFrame) -> Sequence[str]:
    """The runs with a record flagged non-finite.

    Returns:
        Their names, sorted.
    """
    if "nonfinite" not in tracks:
        return []
    flagged = pd.to_numeric(tracks["nonfinite"], errors="coerce").fillna(0).astype(bool)
    return sorted(tracks.loc[flagged, "run"].astype(str).unique())
