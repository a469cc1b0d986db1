"""The results store: an SQLite database that is crash-safe, resumable and shared.

Six tables:

- ``info`` -- the schema version and the manifest last scored into the store (its
  model, data and ``[scoring]`` settings), which guards against mixing objectives;
- ``runs`` -- one row per checkpoint (keyed by the SHA-256 of its file): path,
  regime, batch size, learning rate, seed, epoch, the metadata, the evaluated train
  and test loss and accuracy, and whether it could be scored (with the error if not);
- ``measurements`` -- one row per (checkpoint, measure, settings, component): value,
  error bar, converged flag, Hessian-vector products spent, seconds, device, package
  versions and time;
- ``curves`` -- Keskar's parametric plots: one row per (SB checkpoint, LB checkpoint,
  settings, alpha, split, metric);
- ``tasks`` -- one row per (checkpoint, measure, settings): ``running`` (claimed by a
  process), ``done`` or ``failed``, with the owner and the error;
- ``tracks`` -- time series taken during training (:mod:`flatness.tracking`): one row
  per (run, source, step) holding the record's fields as JSON.

The database runs in WAL mode and every task is committed in its own transaction the
moment it finishes, so an interrupted sweep (Ctrl-C, ``kill -9``) loses only the
task in flight. A process *claims* a task before computing it; a second process
scoring into the same store skips claimed tasks and waits for them, so nothing is
computed twice and nothing is stored twice. While it scores, the owner refreshes its
claims (a :class:`~flatness.pipeline.heartbeat.Heartbeat`); a claim whose process has
died (same host, pid gone) or that has not been refreshed for ``stale_after`` seconds
(a stopped process) is taken over, and the result of an owner that comes back after
that is not stored a second time (:mod:`flatness.pipeline.claims`).

A write that meets a lock held by another program, or a full disk, is tried again for
``patience`` seconds, so the task in flight is stored once the condition passes; every
SQLite failure becomes one :class:`~flatness.pipeline.database.StoreError` naming the
store and the remedy (:mod:`flatness.pipeline.database`).

:class:`ResultsStore` is the writer (and the claims); the tables' SQL is in
:mod:`flatness.pipeline.schema`, and reading a store into pandas frames is
:mod:`flatness.pipeline.readers`' job (their public names are re-exported here).
"""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import uuid
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, TypeVar

import pandas as pd

from flatness.pipeline.claims import DEFAULT_STALE_AFTER, Claim, TaskClaims
from flatness.pipeline.database import StoreError, retrying, store_error
from flatness.pipeline.readers import (
    export_results,
    load_curves,
    load_failed_tasks,
    load_info,
    load_results,
    load_runs,
    load_tracks,
    tracks_frame,
)
from flatness.pipeline.schema import RUN_COLUMNS, SCHEMA, SCHEMA_VERSION
from flatness.results import Record, to_plain

__all__ = [
    "DEFAULT_STALE_AFTER",
    "RUN_COLUMNS",
    "SCHEMA_VERSION",
    "Claim",
    "ResultsStore",
    "StoreError",
    # reading, from flatness.pipeline.readers
    "export_results",
    "load_curves",
    "load_failed_tasks",
    "load_info",
    "load_results",
    "load_runs",
    "load_tracks",
]


T = TypeVar("T")

DEFAULT_PATIENCE = 300.0
"""Seconds a write keeps trying when the store is locked or the disk is full."""


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


class ResultsStore(TaskClaims):
    """An open results database (see the module docstring).

    Args:
        path: The SQLite file (created if missing).
        stale_after: Seconds without a heartbeat after which another process's claim is
            taken over.
        timeout: Seconds SQLite waits for a lock held by another connection.
        patience: Seconds a write keeps trying after a lock outlasts ``timeout`` or the
            disk is full, so the task just computed is stored once the condition passes
            (:func:`~flatness.pipeline.database.retrying`).
        echo: Told when a write starts waiting (default: nothing).

    Raises:
        StoreError: If the store cannot be opened or written (the message names the
            store, the cause and the remedy; a ``ValueError``).

    Examples:
        >>> import tempfile, os
        >>> store = ResultsStore(os.path.join(tempfile.mkdtemp(), "r.sqlite"))
        >>> store.claim("abc", "trace", "{}").state
        'claimed'
        >>> store.claim("abc", "trace", "{}").state   # our own claim: still ours
        'claimed'
        >>> store.close()
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        stale_after: float = DEFAULT_STALE_AFTER,
        timeout: float = 60.0,
        patience: float = DEFAULT_PATIENCE,
        echo: Callable[[str], None] | None = None,
    ) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.stale_after = float(stale_after)
        self.patience = float(patience)
        self.echo = echo
        self.owner = uuid.uuid4().hex
        self.host = socket.gethostname()
        self.pid = os.getpid()
        try:
            self._db = sqlite3.connect(str(self.path), timeout=timeout, isolation_level=None)
        except sqlite3.Error as exc:
            raise store_error(self.path, exc, "opening it") from exc
        try:
            retrying(
                self.path,
                lambda: self._db.execute("PRAGMA journal_mode=WAL").fetchall(),
                patience=self.patience,
                doing="opening it",
                echo=echo,
            )
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._write(self._create, "opening it")
        except StoreError as exc:
            self._db.close()
            if "file is not a database" in str(exc):
                raise StoreError(
                    f"{self.path}: not a usable flatness results store (file is not a "
                    "database); point --store at a new file or at a store written by flatness",
                    exc.kind,
                ) from exc
            raise

    def _create(self, db: sqlite3.Connection) -> None:
        for statement in SCHEMA.split(";"):
            if statement.strip():
                db.execute(statement)
        db.execute(
            "INSERT OR IGNORE INTO info VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),)
        )

    # ------------------------------------------------------------------ plumbing
    def _write(self, work: Callable[[sqlite3.Connection], T], doing: str) -> T:
        """Run ``work`` in one write transaction; wait out a lock or a full disk.

        Returns:
            What ``work`` returned.

        Raises:
            StoreError: If the store cannot be written (after ``patience`` seconds for a
                lock or a full disk).
        """
        return retrying(
            self.path,
            lambda: self._attempt(work),
            patience=self.patience,
            doing=doing,
            echo=self.echo,
        )

    def _attempt(self, work: Callable[[sqlite3.Connection], T]) -> T:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            out = work(self._db)
            self._db.execute("COMMIT")
        except BaseException:
            if self._db.in_transaction:
                try:
                    self._db.execute("ROLLBACK")
                except sqlite3.Error:  # pragma: no cover - the failure is the one to report
                    pass
            raise
        return out

    def _rows(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        """The rows of a read query (a locked or failing store: :class:`StoreError`)."""
        return retrying(
            self.path,
            lambda: self._db.execute(sql, params).fetchall(),
            patience=self.patience,
            doing="reading it",
            echo=self.echo,
        )

    def _frame(self, sql: str) -> pd.DataFrame:
        try:
            return pd.read_sql_query(sql, self._db)
        except (sqlite3.Error, pd.errors.DatabaseError) as exc:
            raise store_error(self.path, exc, "reading it") from exc

    def close(self) -> None:
        """Close the connection (the context manager does this on exit)."""
        self._db.close()

    def set_info(self, key: str, value: Any) -> None:
        """Record ``value`` (JSON-able) under ``key`` in the ``info`` table (replacing it)."""
        text = json.dumps(to_plain(value))
        self._write(
            lambda db: db.execute("INSERT OR REPLACE INTO info VALUES (?, ?)", (key, text)),
            "recording its info",
        )

    def get_info(self, key: str) -> Any:
        """The value recorded under ``key``.

        Returns:
            The JSON value, or ``None`` when there is none.
        """
        rows = self._rows("SELECT value FROM info WHERE key = ?", (key,))
        return None if not rows else json.loads(rows[0][0])

    def has_measurements(self) -> bool:
        """Whether any measurement is stored.

        Returns:
            True when the ``measurements`` table has a row.
        """
        return bool(self._rows("SELECT 1 FROM measurements LIMIT 1"))

    def __enter__(self) -> ResultsStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ runs
    def put_run(self, checkpoint: str, path: str | os.PathLike[str], **fields: Any) -> None:
        """Insert or update a checkpoint's row (``fields`` are :data:`RUN_COLUMNS`).

        Raises:
            KeyError: For a field that is not a run column.
        """
        unknown = set(fields) - set(RUN_COLUMNS)
        if unknown:
            raise KeyError(f"unknown run columns {sorted(unknown)}")
        row = {"checkpoint": checkpoint, "path": str(path), "status": "ok", "updated": _now()}
        row.update(fields)
        if isinstance(row.get("meta"), Mapping):
            row["meta"] = json.dumps(to_plain(row["meta"]), sort_keys=True, default=str)
        cols = ", ".join(row)
        marks = ", ".join("?" for _ in row)
        updates = ", ".join(f"{c}=excluded.{c}" for c in row if c != "checkpoint")
        sql = (
            f"INSERT INTO runs ({cols}) VALUES ({marks}) "
            f"ON CONFLICT(checkpoint) DO UPDATE SET {updates}"
        )
        self._write(lambda db: db.execute(sql, tuple(row.values())), "storing a checkpoint")

    def run(self, checkpoint: str) -> dict[str, Any] | None:
        """A checkpoint's row.

        Returns:
            The row as ``{column: value}``, or ``None`` when the checkpoint has none.
        """
        rows = self._rows(
            f"SELECT {', '.join(RUN_COLUMNS)} FROM runs WHERE checkpoint=?", (checkpoint,)
        )
        return None if not rows else dict(zip(RUN_COLUMNS, rows[0], strict=True))

    def put_track(self, run: str, source: str, step: int, record: Mapping[str, Any]) -> None:
        """Insert or replace the record of ``run`` at ``step`` (one transaction).

        Args:
            run: The run's name.
            source: ``"tracker"`` (measured during training) or ``"history"``.
            step: Updates so far.
            record: The record's fields (JSON-able after :func:`to_plain`; NaN kept).

        Raises:
            StoreError: If the store cannot be written.
        """
        text = json.dumps(to_plain(dict(record)), default=str)
        row = (str(run), str(source), int(step), text, _now())
        sql = "INSERT OR REPLACE INTO tracks VALUES (?, ?, ?, ?, ?)"
        self._write(lambda db: db.execute(sql, row), f"storing a track of {run!r}")

    # ------------------------------------------------------------------ tasks
    def finish(
        self,
        checkpoint: str,
        measure: str,
        settings: str,
        records: Sequence[Record],
        *,
        matvecs: int | None,
        seconds: float,
        device: str,
        dtype: str,
        versions: Mapping[str, str],
        details: Mapping[str, Any],
    ) -> bool:
        """Store a finished task's rows and mark it done, in one transaction.

        Returns:
            True when stored; False when another process took the claim over (this
            process stalled past ``stale_after``) and the task is its to store.
        """
        created = _now()
        versions_json = json.dumps(dict(versions), sort_keys=True)
        details_json = json.dumps(to_plain(dict(details)), sort_keys=True, default=str)

        def work(db: sqlite3.Connection) -> bool:
            if self._taken_over(checkpoint, measure, settings):
                return False
            db.execute(
                "DELETE FROM measurements WHERE checkpoint=? AND measure=? AND settings=?",
                (checkpoint, measure, settings),
            )
            db.executemany(
                "INSERT INTO measurements VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    (
                        checkpoint,
                        measure,
                        settings,
                        r.component,
                        r.value,
                        r.error,
                        r.error_kind,
                        None if r.converged is None else int(r.converged),
                        matvecs,
                        seconds,
                        device,
                        dtype,
                        versions_json,
                        details_json,
                        created,
                    )
                    for r in records
                ],
            )
            db.execute(
                "UPDATE tasks SET status='done', error=NULL, owner=? "
                "WHERE checkpoint=? AND measure=? AND settings=?",
                (self.owner, checkpoint, measure, settings),
            )
            return True

        return self._write(work, f"storing {measure} {settings}")

    def finish_curve(
        self, sb: str, lb: str, settings: str, label: str, frame: pd.DataFrame
    ) -> bool:
        """Store a parametric plot (``alpha, split, metric, value`` rows) and mark it done.

        Returns:
            True when stored; False when another process took the claim over.
        """
        created = _now()

        def work(db: sqlite3.Connection) -> bool:
            if self._taken_over(f"{sb}+{lb}", "parametric_plot", settings):
                return False
            db.execute("DELETE FROM curves WHERE sb=? AND lb=? AND settings=?", (sb, lb, settings))
            db.executemany(
                "INSERT INTO curves VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    (sb, lb, settings, label, float(a), str(sp), str(m), float(v), created)
                    for a, sp, m, v in frame[["alpha", "split", "metric", "value"]].itertuples(
                        index=False
                    )
                ],
            )
            db.execute(
                "UPDATE tasks SET status='done', error=NULL, owner=? "
                "WHERE checkpoint=? AND measure='parametric_plot' AND settings=?",
                (self.owner, f"{sb}+{lb}", settings),
            )
            return True

        return self._write(work, "storing a parametric plot")

    # ------------------------------------------------------------------ reading
    def measurements(self) -> pd.DataFrame:
        """The ``measurements`` table.

        Returns:
            One row per (checkpoint, measure, settings, component).
        """
        return self._frame("SELECT * FROM measurements")

    def runs(self) -> pd.DataFrame:
        """The ``runs`` table.

        Returns:
            One row per checkpoint.
        """
        return self._frame("SELECT * FROM runs")

    def tracks(self) -> pd.DataFrame:
        """The ``tracks`` table, tidy (:func:`~flatness.pipeline.readers.tracks_frame`).

        Returns:
            One row per (run, source, step): those columns, then the records' fields.
        """
        return tracks_frame(self._frame("SELECT run, source, step, record FROM tracks"))

    def tasks(self) -> pd.DataFrame:
        """The ``tasks`` table.

        Returns:
            One row per (checkpoint, measure, settings) claimed so far.
        """
        return self._frame("SELECT * FROM tasks")

    def compute_seconds(self) -> float:
        """Seconds of measure computation stored, each task counted once.

        Returns:
            The sum over (checkpoint, measure, settings) of the task's seconds (a
            task's components share one time, so it is taken once, not per row).
        """
        ((total,),) = self._rows(
            "SELECT sum(s) FROM (SELECT max(seconds) AS s FROM measurements "
            "GROUP BY checkpoint, measure, settings)"
        )
        return float(total or 0.0)
