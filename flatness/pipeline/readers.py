"""Read a results store into pandas: the tidy results, runs, failures, curves, tracks, info.

The store (:mod:`flatness.pipeline.store`) writes; these functions only read, each
with its own short-lived read-only connection, so they work while a sweep is still
writing (SQLite's WAL mode lets readers see the last committed state) and on a
finished store in a read-only folder. A damaged store raises a
:class:`~flatness.pipeline.database.StoreError` naming it and the remedy.
"""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Mapping, Sequence
from contextlib import closing
from pathlib import Path
from typing import Any

import pandas as pd

from flatness.pipeline.database import connect_read_only, store_error
from flatness.pipeline.schema import TRACK_KEYS

__all__ = [
    "export_results",
    "has_measurements",
    "load_curves",
    "load_failed_tasks",
    "load_info",
    "load_results",
    "load_runs",
    "load_tracks",
    "records_frame",
    "tracks_frame",
]

_TIDY_ORDER = (
    "checkpoint", "path", "regime", "batch_size", "lr", "seed", "epoch",
    "train_loss", "train_accuracy", "test_loss", "test_accuracy", "generalization_gap",
    "measure", "settings", "component", "value", "error", "error_kind", "converged",
    "matvecs", "seconds", "device", "dtype", "created",
)  # fmt: skip


def _existing_store(path: str | os.PathLike[str]) -> Path:
    """``path`` as a Path; :class:`FileNotFoundError` with the fix if there is no store."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"{p}: no results store here; run `flatness score` first")
    return p


def _read_sql(path: str | os.PathLike[str], *queries: str) -> list[pd.DataFrame]:
    """Run ``queries`` on the store at ``path``, one frame each, in one read-only connection.

    The store is opened read-only (:func:`~flatness.pipeline.database.connect_read_only`:
    a finished store in a read-only folder is read too), and an SQLite failure becomes
    a :class:`~flatness.pipeline.database.StoreError` naming the store.
    """
    p = _existing_store(path)
    with closing(connect_read_only(p)) as db:
        try:
            return [pd.read_sql_query(query, db) for query in queries]
        except (sqlite3.Error, pd.errors.DatabaseError) as exc:
            raise store_error(p, exc, "reading it") from exc


def load_results(path: str | os.PathLike[str], *, details: bool = False) -> pd.DataFrame:
    """Read a results store into a tidy DataFrame: one row per checkpoint × measure component.

    Each row carries the checkpoint's metadata (regime, batch size, learning rate, seed,
    epoch), its evaluated train/test loss and accuracy, the generalization gap (train
    minus test accuracy), and the measure's name, settings (JSON text), component,
    value and error bar.

    Args:
        path: The store.
        details: Also return the ``details`` (JSON text: the estimator's full result),
            ``versions`` and ``meta`` columns.

    Returns:
        The frame, sorted by path, measure, settings and component.

    Raises:
        FileNotFoundError: If there is no store at ``path``.
        StoreError: If the store cannot be read (damaged, or read-only with unmerged
            changes); the message names it and the remedy.
    """
    m, r = _read_sql(path, "SELECT * FROM measurements", "SELECT * FROM runs")
    df = m.merge(r.drop(columns=["status", "error", "updated"]), on="checkpoint", how="left")
    df["generalization_gap"] = df["train_accuracy"] - df["test_accuracy"]
    df["converged"] = df["converged"].map(lambda v: None if pd.isna(v) else bool(v))
    cols = list(_TIDY_ORDER) + (["details", "versions", "meta"] if details else [])
    return df[cols].sort_values(["path", "measure", "settings", "component"]).reset_index(drop=True)


def has_measurements(path: str | os.PathLike[str]) -> bool:
    """Whether a results store holds any measurement, reading it only.

    Returns:
        True when the ``measurements`` table has a row; False also where there is no
        store (none is created).

    Raises:
        StoreError: If the store cannot be read (damaged, or read-only with unmerged
            changes); the message names it and the remedy.
    """
    if not Path(path).is_file():
        return False
    return not _read_sql(path, "SELECT 1 FROM measurements LIMIT 1")[0].empty


def load_info(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The store's ``info`` table.

    Returns:
        ``{key: value}``: ``schema_version`` and, once scored, ``manifest`` (the
        manifest's path, model, data and scoring settings of the last ``score``).

    Raises:
        FileNotFoundError: If there is no store at ``path``.
        StoreError: If the store cannot be read (damaged, or read-only with unmerged
            changes); the message names it and the remedy.
    """
    rows = _read_sql(path, "SELECT key, value FROM info")[0]
    out: dict[str, Any] = {}
    for key, value in rows.itertuples(index=False):
        try:
            out[key] = json.loads(value)
        except (TypeError, json.JSONDecodeError):
            out[key] = value
    return out


def load_runs(path: str | os.PathLike[str]) -> pd.DataFrame:
    """The store's ``runs`` table.

    Returns:
        One row per checkpoint, failed ones included, sorted by path.

    Raises:
        FileNotFoundError: If there is no store at ``path``.
        StoreError: If the store cannot be read (damaged, or read-only with unmerged
            changes); the message names it and the remedy.
    """
    return _read_sql(path, "SELECT * FROM runs ORDER BY path")[0]


def load_failed_tasks(path: str | os.PathLike[str]) -> pd.DataFrame:
    """Measures that failed on checkpoints that were otherwise scored.

    Columns: ``path`` (the checkpoint's), ``checkpoint``, ``measure``, ``settings`` and
    ``error``. A rerun of ``flatness score`` retries them.

    Returns:
        One row per failed task.

    Raises:
        FileNotFoundError: If there is no store at ``path``.
        StoreError: If the store cannot be read (damaged, or read-only with unmerged
            changes); the message names it and the remedy.
    """
    query = (
        "SELECT r.path, t.checkpoint, t.measure, t.settings, t.error FROM tasks t "
        "LEFT JOIN runs r ON r.checkpoint = t.checkpoint "
        "WHERE t.status = 'failed' ORDER BY r.path, t.measure, t.settings"
    )
    return _read_sql(path, query)[0]


def load_curves(path: str | os.PathLike[str]) -> pd.DataFrame:
    """The parametric plots in a store, tidy: one row per pair × alpha × split × metric.

    Columns: ``sb_path``, ``lb_path`` (the checkpoints' paths), ``sb``, ``lb`` (their
    SHA-256), ``label``, ``settings``, ``alpha``, ``split`` (train/test), ``metric``
    (loss/accuracy) and ``value``. Rows with split ``"bn"`` and metric
    ``"variance_clamped"`` mark the α at which an extrapolated BatchNorm running variance
    was negative and clamped to zero (``bn = "interpolate"``).

    Returns:
        The frame (empty when the store holds no parametric plot).

    Raises:
        FileNotFoundError: If there is no store at ``path``.
        StoreError: If the store cannot be read (damaged, or read-only with unmerged
            changes); the message names it and the remedy.
    """
    query = (
        "SELECT a.path AS sb_path, b.path AS lb_path, c.sb, c.lb, c.label, c.settings, "
        "c.alpha, c.split, c.metric, c.value FROM curves c "
        "LEFT JOIN runs a ON a.checkpoint = c.sb LEFT JOIN runs b ON b.checkpoint = c.lb "
        "ORDER BY c.label, c.settings, c.split, c.metric, c.alpha"
    )
    return _read_sql(path, query)[0]


def records_frame(records: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    """The tidy tracks frame of records that hold their keys (``run``, ``source``, ``step``).

    Returns:
        One row per record, in the given order: the columns ``run``, ``source``,
        ``step``, then every other field in the order the fields first appear (a field
        a record lacks is NaN).

    Examples:
        >>> records_frame([{"run": "a", "source": "tracker", "step": 0, "x": 1}]).columns.tolist()
        ['run', 'source', 'step', 'x']
    """
    columns = list(dict.fromkeys([*TRACK_KEYS, *(k for r in records for k in r)]))
    return pd.DataFrame.from_records(list(records), columns=columns)


def tracks_frame(rows: pd.DataFrame) -> pd.DataFrame:
    """The tidy tracks frame from rows of the ``tracks`` table.

    Args:
        rows: Columns ``run``, ``source``, ``step`` and ``record`` (a JSON object).

    Returns:
        :func:`records_frame` of the records, sorted by run, source and step; the
        record's own ``run``, ``source`` or ``step`` fields give way to the table's.

    Examples:
        >>> rows = pd.DataFrame({"run": ["a", "a"], "source": ["tracker"] * 2,
        ...                      "step": [10, 0], "record": ['{"lr": 0.1}', '{"x": 1}']})
        >>> tracks_frame(rows).columns.tolist(), tracks_frame(rows)["step"].tolist()
        (['run', 'source', 'step', 'x', 'lr'], [0, 10])
    """
    rows = rows.sort_values(list(TRACK_KEYS), kind="stable")
    records = [
        {**json.loads(text), "run": run, "source": source, "step": int(step)}
        for run, source, step, text in rows[[*TRACK_KEYS, "record"]].itertuples(index=False)
    ]
    return records_frame(records)


def load_tracks(path: str | os.PathLike[str]) -> pd.DataFrame:
    """The time series in a store: what trackers measured during training, and histories.

    Returns:
        :func:`tracks_frame` of the ``tracks`` table: ``run``, ``source``
        (``"tracker"`` or ``"history"``), ``step``, then the records' fields; an empty
        frame with those three columns for a store without tracks (also one written
        before the table existed).

    Raises:
        FileNotFoundError: If there is no store at ``path``.
        StoreError: If the store cannot be read (damaged, or read-only with unmerged
            changes); the message names it and the remedy.
    """
    (tables,) = _read_sql(path, "SELECT name FROM sqlite_master WHERE name = 'tracks'")
    if tables.empty:
        return pd.DataFrame(columns=list(TRACK_KEYS))
    (rows,) = _read_sql(path, "SELECT run, source, step, record FROM tracks")
    return tracks_frame(rows)


def export_results(store: str | os.PathLike[str], out: str | os.PathLike[str]) -> Path:
    """Write :func:`load_results` to ``.csv`` or ``.parquet`` (chosen by the suffix).

    The file is written to a temporary sibling and moved into place: a failed export
    (a full disk) leaves ``out`` as it was and no temporary file.

    Args:
        store: The results store.
        out: The file to write.

    Returns:
        ``out`` as a path.

    Raises:
        FileNotFoundError: If there is no store at ``store``.
        StoreError: If the store cannot be read; the message names it and the remedy.
        ValueError: For another suffix.
        ImportError: For Parquet without ``pyarrow`` installed.
        DiskFullError: If the disk is full while writing ``out`` (an ``OSError``
            naming the file).
    """
    from flatness.atomic import atomic_path

    target = Path(out)
    if target.suffix in (".parquet", ".pq"):
        try:
            import pyarrow  # noqa: F401
        except ImportError as exc:
            raise ImportError(
                "writing Parquet needs pyarrow: pip install 'flatness[parquet]' (or write .csv)"
            ) from exc
    elif target.suffix != ".csv":
        raise ValueError(
            f"{target}: export to .csv or .parquet, not {target.suffix or 'no suffix'!r}"
        )
    df = load_results(store)
    with atomic_path(target) as tmp:
        if target.suffix == ".csv":
            df.to_csv(tmp, index=False)
        else:
            df.to_parquet(tmp, index=False)
    return target
