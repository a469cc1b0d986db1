"""From a tidy results frame to the two frames a report is made of.

A report reads one tidy DataFrame, the one :func:`flatness.load_results` returns (one
row per checkpoint × measure × settings × component), or a research project's own
frame with at least the columns ``measure`` and ``value`` and one of ``regime`` or
``batch_size``. From it come:

- the *runs*: one row per checkpoint with its regime, batch size, seed and train/test
  accuracy (:func:`runs_frame`);
- the *scores*: one row per checkpoint × scalar measure, the measure's headline value
  under a readable label such as ``ε-sharpness (full, ε=1e-3)`` (:func:`scores_frame`,
  from :mod:`flatness.headlines`, which the score table of ``flatness score`` shares).

The headline of a measure is its single value or its first component (the largest
eigenvalue of ``lambda_max``); the spectral density is a figure, not a scalar, and is
read from the ``details`` column by :func:`density_curves`.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from flatness.headlines import (
    ACCURACY_COLUMNS,
    DISPLAY_NAMES,
    NOT_SHARPNESS,
    RESERVED_LABELS,
    RUN_COLUMNS,
    Column,
    format_setting,
    measure_label,
    scores_frame,
    wide_scores,
)

__all__ = [
    "DISPLAY_NAMES",
    "NOT_SHARPNESS",
    "RESERVED_LABELS",
    "Column",
    "DensityCurve",
    "META_COLUMNS",
    "ReportInputError",
    "column_label",
    "density_curves",
    "format_setting",
    "last_snapshots",
    "normalize",
    "regime_order",
    "runs_frame",
    "scores_frame",
    "wide_scores",
]

column_label = measure_label
"""The label of a measure scored with some settings (:func:`flatness.headlines.measure_label`)."""


class ReportInputError(ValueError):
    """The frame handed to the report cannot make one; the message says what it lacks."""


def _parse_settings(text: Any) -> dict[str, Any]:
    if isinstance(text, Mapping):
        return dict(text)
    if text is None or (isinstance(text, float) and math.isnan(text)) or text == "":
        return {}
    try:
        parsed = json.loads(str(text))
    except json.JSONDecodeError as exc:
        raise ReportInputError(f"column 'settings' holds {text!r}, which is not JSON") from exc
    return parsed if isinstance(parsed, dict) else {"value": parsed}


def normalize(df: pd.DataFrame) -> pd.DataFrame:
    """Check a results frame and fill in the columns a report relies on.

    Adds ``checkpoint`` (from ``path``, or regime/batch size/seed, when absent),
    ``settings`` (``"{}"``), ``component`` (``""``) and missing run columns as NaN, and a
    ``generalization_gap`` from the accuracies when absent.

    Returns:
        A checked copy of ``df`` with those columns, repeated rows dropped.

    Raises:
        ReportInputError: If the frame is empty or lacks ``measure``/``value`` or both
            ``regime`` and ``batch_size``.
    """
    if not isinstance(df, pd.DataFrame):
        raise ReportInputError(f"expected a pandas DataFrame, got {type(df).__name__}")
    if df.empty:
        raise ReportInputError(
            "the results frame is empty: score some checkpoints first (`flatness score`)"
        )
    missing = [c for c in ("measure", "value") if c not in df.columns]
    if missing:
        raise ReportInputError(
            f"the results frame lacks column(s) {missing}; it needs one row per checkpoint "
            "and measure with 'measure' and 'value' (flatness.load_results gives one)"
        )
    if "regime" not in df.columns and "batch_size" not in df.columns:
        raise ReportInputError(
            "the results frame needs a 'regime' or a 'batch_size' column to compare runs"
        )
    out = df.copy()
    for column in (*RUN_COLUMNS, *ACCURACY_COLUMNS):
        if column not in out.columns:
            out[column] = np.nan
    for column in ("batch_size", "lr", "epoch", *ACCURACY_COLUMNS, "value"):
        out[column] = pd.to_numeric(out[column], errors="coerce").astype(float)
    if "generalization_gap" in out.columns:
        out["generalization_gap"] = pd.to_numeric(out["generalization_gap"], errors="coerce")
    for column in ("train_accuracy", "test_accuracy"):
        worst = out[column].abs().max()
        if pd.notna(worst) and worst > 1.0 + 1e-9:
            raise ReportInputError(
                f"column {column!r} holds {worst:g}, above 1: give accuracies as fractions "
                "in [0, 1] (divide percentages by 100)"
            )
    sized = [f"B{b:g}" if pd.notna(b) else "unlabelled" for b in out["batch_size"]]
    out["regime"] = [
        str(r) if pd.notna(r) and str(r) != "" else b
        for r, b in zip(out["regime"], sized, strict=True)
    ]
    if "checkpoint" not in out.columns:
        if out["path"].notna().all():
            out["checkpoint"] = out["path"].astype(str)
        else:
            out["checkpoint"] = [
                f"{r}/B{b:g}/lr{lr:g}/seed{s}"
                for r, b, lr, s in zip(
                    out["regime"], out["batch_size"], out["lr"], out["seed"], strict=True
                )
            ]
    out["checkpoint"] = out["checkpoint"].astype(str)
    if "settings" not in out.columns:
        out["settings"] = "{}"
    out["settings"] = [json.dumps(_parse_settings(s), sort_keys=True) for s in out["settings"]]
    if "component" not in out.columns:
        out["component"] = ""
    out["component"] = out["component"].fillna("").astype(str)
    if "generalization_gap" not in out.columns:
        out["generalization_gap"] = out["train_accuracy"] - out["test_accuracy"]
    return _check_duplicates(out)


def _check_duplicates(out: pd.DataFrame) -> pd.DataFrame:
    """Drop repeated rows; refuse two different values for one measurement."""
    keys = ["checkpoint", "measure", "settings", "component"]
    rows = out.drop_duplicates([*keys, "value"])
    clash = rows[rows.duplicated(keys, keep=False)]
    if not clash.empty:
        first = clash.iloc[0]
        values = clash.loc[(clash[keys] == first[keys]).all(axis=1), "value"].tolist()
        hint = (
            "add a 'checkpoint' (or 'path' or 'seed') column that tells the runs apart"
            if "seed" in out and out["seed"].isna().any()
            else "keep one row per checkpoint, measure, settings and component"
        )
        raise ReportInputError(
            f"{len(clash)} rows give different values for the same measurement, e.g. "
            f"checkpoint {first['checkpoint']!r}, measure {first['measure']!r}: {values}; {hint}"
        )
    return rows.reset_index(drop=True)


def regime_order(runs: pd.DataFrame) -> list[str]:
    """Regimes sorted by their median batch size (unknown sizes last; SB before LB).

    Returns:
        The regimes' names in that order.

    Examples:
        >>> runs = pd.DataFrame({"regime": ["LB", "SB", "B64"], "batch_size": [400, 16, 64]})
        >>> regime_order(runs)
        ['SB', 'B64', 'LB']
        >>> regime_order(pd.DataFrame({"regime": ["LB", "SB"], "batch_size": [None, None]}))
        ['SB', 'LB']
    """
    sizes = runs.groupby("regime")["batch_size"].median()

    def key(regime: str) -> tuple[bool, float, int, str]:
        size = float(sizes[regime])
        role = {"SB": 0, "LB": 2}.get(regime, 1)  # without sizes: SB first, LB last
        return (math.isnan(size), float(np.nan_to_num(size)), role, regime)

    return sorted(sizes.index.astype(str), key=key)


META_COLUMNS = ("updates", "stop_reason", "n_test", "target_accuracy", "target_loss")
"""Run columns read from a checkpoint's training metadata (the ``meta`` column) when the
frame has no such column: updates taken, why training stopped (``"target_accuracy"``,
``"target_loss"``, ``"epochs"``, ``"max_updates"``), the test-set size and the targets."""


def _meta_fields(meta: Any) -> dict[str, Any]:
    """The :data:`META_COLUMNS` of one checkpoint's training metadata (JSON text or dict)."""
    if isinstance(meta, str) and meta:
        try:
            meta = json.loads(meta)
        except json.JSONDecodeError:
            meta = None
    if not isinstance(meta, Mapping):
        return {}
    raw = meta.get("config")
    config: Mapping[str, Any] = raw if isinstance(raw, Mapping) else {}
    stop = meta.get("stop_reason")
    if stop is None and meta.get("reached_target") and config.get("target_accuracy") is not None:
        stop = "target_accuracy"  # checkpoints trained before stop_reason was recorded
    return {
        "updates": meta.get("updates"),
        "stop_reason": stop,
        "n_test": meta.get("n_test"),
        "target_accuracy": config.get("target_accuracy"),
        "target_loss": config.get("target_loss"),
    }


def runs_frame(df: pd.DataFrame) -> pd.DataFrame:
    """One row per checkpoint: its run metadata and evaluated accuracies.

    The :data:`META_COLUMNS` come from the frame's own columns of those names, else from
    its ``meta`` column (``load_results(details=True)``), else are NaN.

    Returns:
        The frame, ordered by regime (see :func:`regime_order`) and seed; the regime
        column is an ordered categorical.
    """
    columns = ["checkpoint", *RUN_COLUMNS, *ACCURACY_COLUMNS, "generalization_gap"]
    first = df.drop_duplicates("checkpoint")
    runs = first[columns].reset_index(drop=True)
    parsed = [_meta_fields(m) for m in first["meta"]] if "meta" in first else []
    for column in META_COLUMNS:
        if column in first:
            runs[column] = first[column].to_numpy()
        else:
            runs[column] = [p.get(column) for p in parsed] if parsed else np.nan
        if column != "stop_reason":
            runs[column] = pd.to_numeric(runs[column], errors="coerce").astype(float)
    order = regime_order(runs)
    runs["regime"] = pd.Categorical(runs["regime"], categories=order, ordered=True)
    return runs.sort_values(["regime", "seed", "checkpoint"]).reset_index(drop=True)


def last_snapshots(runs: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    """Keep the last epoch of each run when a run has several checkpoints.

    A *run* is a (regime, batch size, learning rate, seed); checkpoints of one run at
    different epochs are not independent samples, so statistics over seeds must count
    the run once. Checkpoints without a seed, or whose epochs are unknown or equal, are
    all kept.

    Returns:
        ``(runs, dropped)``: the rows kept and the checkpoints left out.

    Examples:
        >>> runs = pd.DataFrame({"checkpoint": ["a", "b", "c"], "regime": "SB",
        ...     "batch_size": 16.0, "lr": 0.1, "seed": [0, 0, 1], "epoch": [5, 10, 10]})
        >>> kept, dropped = last_snapshots(runs)
        >>> list(kept["checkpoint"]), dropped
        (['b', 'c'], ['a'])
    """
    keys = ["regime", "batch_size", "lr", "seed"]
    keyed = runs[runs["seed"].notna()].copy()
    for key in keys:
        keyed[key] = keyed[key].astype(object).where(keyed[key].notna(), "?")
    dropped: list[str] = []
    for _, group in keyed.groupby(keys, sort=False, observed=True):
        epochs = pd.to_numeric(group["epoch"], errors="coerce")
        if len(group) < 2 or epochs.isna().any() or epochs.nunique() < len(group):
            continue
        last = group.loc[epochs.idxmax(), "checkpoint"]
        dropped += [str(c) for c in group["checkpoint"] if c != last]
    kept = runs[~runs["checkpoint"].astype(str).isin(dropped)].reset_index(drop=True)
    return kept, dropped


@dataclass(frozen=True)
class DensityCurve:
    """The SLQ quadrature of one checkpoint's Hessian spectrum, read from ``details``."""

    checkpoint: str
    regime: str
    seed: Any
    nodes: np.ndarray
    weights: np.ndarray
    sigma: float | None


def density_curves(df: pd.DataFrame) -> list[DensityCurve]:
    """Every stored spectral density (one per checkpoint; the first settings if several).

    Returns:
        One :class:`DensityCurve` per checkpoint. Needs the ``details`` column
        (``load_results(store, details=True)``); without it, or without ``density``
        rows, the list is empty.
    """
    if "details" not in df.columns:
        return []
    rows = df[(df["measure"] == "density") & df["details"].notna()]
    out = []
    for checkpoint, group in rows.groupby("checkpoint", sort=False):
        first = group.sort_values("settings").iloc[0]
        try:
            details = json.loads(first["details"])
            nodes = np.asarray(details["nodes"], dtype=np.float64)
            weights = np.asarray(details["weights"], dtype=np.float64)
        except (TypeError, KeyError, ValueError, json.JSONDecodeError):
            continue
        if nodes.shape != weights.shape or nodes.size == 0 or not np.isfinite(nodes).all():
            continue
        sigma = details.get("sigma")
        out.append(
            DensityCurve(
                str(checkpoint),
                str(first["regime"]),
                first["seed"],
                np.atleast_2d(nodes),
                np.atleast_2d(weights),
                float(sigma) if isinstance(sigma, int | float) else None,
            )
        )
    return out
