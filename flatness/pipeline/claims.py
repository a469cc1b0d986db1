"""Task claims in the results store: who computes what, heartbeats, the objective.

Several processes may score into one store (:mod:`flatness.pipeline.store`). Before
computing a task a process *claims* it (:meth:`TaskClaims.claim`): a task that is
done is reused, one that another live process holds is left to it. While it computes,
the owner refreshes its claims (:meth:`TaskClaims.heartbeat`); a claim whose process
has died (same host, pid gone) or that has not been refreshed for ``stale_after``
seconds (a hung or stopped process) is taken over, and the result of an owner that
comes back after that is not stored over the other's. The objective a store answers
(model, data, examples, dtype) is claimed the same way, atomically, when the store is
first written (:meth:`TaskClaims.claim_objective`).

:class:`TaskClaims` is the part of :class:`~flatness.pipeline.store.ResultsStore`
that does this; it needs the store's connection and transactions.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sqlite3
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from flatness.pipeline.heartbeat import Heartbeat, heartbeat_interval
from flatness.results import to_plain

__all__ = ["DEFAULT_STALE_AFTER", "Claim", "TaskClaims"]

T = TypeVar("T")

DEFAULT_STALE_AFTER = 600.0
"""Seconds without a heartbeat after which a claim is taken over (``--stale-after``)."""


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@dataclasses.dataclass(frozen=True)
class Claim:
    """A task's claim: ``"claimed"`` (ours), ``"done"``, ``"busy"``, ``"failed"`` or ``"free"``.

    Attributes:
        state: The state.
        owner: The owner's id.
        host: The owner's host name.
        pid: The owner's process id.
        age: Seconds since the owner last refreshed the claim.
    """

    state: str
    owner: str | None = None
    host: str | None = None
    pid: int | None = None
    age: float | None = None


class TaskClaims:
    """Claims on tasks and on the objective (a part of :class:`ResultsStore`).

    Attributes:
        path: The store.
        owner: This store object's id in the claims (one per open store).
        host: This machine's name.
        pid: This process's id.
        stale_after: Seconds without a heartbeat after which another process's claim
            is taken over.
    """

    path: Path
    owner: str
    host: str
    pid: int
    stale_after: float
    _db: sqlite3.Connection

    if TYPE_CHECKING:  # provided by ResultsStore

        def _write(self, work: Callable[[sqlite3.Connection], T], doing: str) -> T: ...

        def _rows(self, sql: str, params: Sequence[Any] = ()) -> list[Any]: ...

        def get_info(self, key: str) -> Any: ...

        def has_measurements(self) -> bool: ...

    def claim_objective(
        self,
        info: Mapping[str, Any],
        changed: Callable[[Mapping[str, Any], Mapping[str, Any]], list[str]],
    ) -> list[str]:
        """Record ``info`` as the objective scored into the store, unless another holds it.

        Checked and written in one transaction, so two processes starting together on a
        new store cannot both claim different objectives. The recorded objective holds
        while the store has measurements or the process that recorded it may still be
        scoring (alive on this host, or another host's claim younger than
        ``stale_after``); an empty store whose scorer has gone takes a new one.

        Args:
            info: The manifest's description (``model``, ``data``, ``scoring``, ...).
            changed: ``changed(recorded, info)`` lists what differs between two
                descriptions in a way that changes the numbers (empty when nothing does).

        Returns:
            What differs from the objective that holds the store (nothing was written),
            or ``[]`` when ``info`` is now recorded.
        """
        me = {"host": self.host, "pid": self.pid, "time": time.time()}

        def work(db: sqlite3.Connection) -> list[str]:
            before = self.get_info("manifest")
            holder = self.get_info("objective_holder") or {}
            differences = changed(before, info) if before else []
            if differences and (self.has_measurements() or self._holds(holder)):
                return differences
            if differences or not self._holds(holder):
                db.execute(
                    "INSERT OR REPLACE INTO info VALUES ('objective_holder', ?)", (json.dumps(me),)
                )
            db.execute(
                "INSERT OR REPLACE INTO info VALUES ('manifest', ?)",
                (json.dumps(to_plain(dict(info))),),
            )
            return []

        return self._write(work, "recording its objective")

    def _holds(self, holder: Mapping[str, Any]) -> bool:
        """Whether the process that recorded the objective may still be scoring."""
        host, pid = holder.get("host"), holder.get("pid")
        if host is None or (host == self.host and pid == self.pid):
            return False
        return not self._stale(host, pid, holder.get("time"))

    def task_status(self, checkpoint: str, measure: str, settings: str) -> str | None:
        """A task's state.

        Returns:
            ``"running"``, ``"done"`` or ``"failed"``; ``None`` for a task never claimed.
        """
        row = self._db.execute(
            "SELECT status FROM tasks WHERE checkpoint=? AND measure=? AND settings=?",
            (checkpoint, measure, settings),
        ).fetchone()
        return None if row is None else str(row[0])

    def _stale(self, host: str | None, pid: int | None, started: float | None) -> bool:
        if host == self.host and pid is not None and not _pid_alive(pid):
            return True
        return started is None or time.time() - started > self.stale_after

    def heartbeat(self) -> Heartbeat:
        """A context manager that refreshes this process's claims while it scores.

        Returns:
            The :class:`~flatness.pipeline.heartbeat.Heartbeat` (beats every
            :func:`~flatness.pipeline.heartbeat.heartbeat_interval` of ``stale_after``).
        """
        return Heartbeat(
            self.path,
            self.owner,
            heartbeat_interval(self.stale_after),
            host=self.host,
            pid=self.pid,
        )

    def holder(self, checkpoint: str, measure: str, settings: str) -> Claim:
        """Who holds a task, without claiming it.

        Returns:
            The :class:`Claim`: ``"done"``, ``"failed"``, ``"busy"`` (another live
            process holds it; ``host``, ``pid`` and ``age`` say which and since when),
            ``"claimed"`` (this process holds it) or ``"free"`` (never claimed,
            released, or stale: the next :meth:`claim` takes it).
        """
        return self._state(self._db, checkpoint, measure, settings)

    def _state(self, db: sqlite3.Connection, checkpoint: str, measure: str, settings: str) -> Claim:
        """A task's claim as :meth:`holder` describes it, read on ``db``."""
        row = db.execute(
            "SELECT status, owner, host, pid, started FROM tasks "
            "WHERE checkpoint=? AND measure=? AND settings=?",
            (checkpoint, measure, settings),
        ).fetchone()
        if row is None:
            return Claim("free")
        status, owner, host, pid, started = row
        age = None if started is None else time.time() - float(started)
        if status in ("done", "failed"):
            return Claim(status, owner, host, pid, age)
        if owner == self.owner:
            return Claim("claimed", owner, host, pid, age)
        if self._stale(host, pid, started):
            return Claim("free", owner, host, pid, age)
        return Claim("busy", owner, host, pid, age)

    def claim(self, checkpoint: str, measure: str, settings: str) -> Claim:
        """Claim a task for this process unless it is done or another live process has it.

        A failed, released or stale task is claimed again, as is this process's own.

        Returns:
            The :class:`Claim`: ``"claimed"`` (compute it), ``"done"`` or ``"busy"``.
        """

        def work(db: sqlite3.Connection) -> Claim:
            current = self._state(db, checkpoint, measure, settings)
            if current.state in ("done", "busy"):
                return current
            db.execute(
                "INSERT INTO tasks VALUES (?, ?, ?, 'running', ?, ?, ?, ?, NULL) "
                "ON CONFLICT(checkpoint, measure, settings) DO UPDATE SET status='running', "
                "owner=excluded.owner, host=excluded.host, pid=excluded.pid, "
                "started=excluded.started, error=NULL",
                (checkpoint, measure, settings, self.owner, self.host, self.pid, time.time()),
            )
            return Claim("claimed", self.owner)

        return self._write(work, f"claiming {measure} {settings}")

    def _taken_over(self, checkpoint: str, measure: str, settings: str) -> bool:
        """Whether another process now owns a task this process claimed."""
        rows = self._rows(
            "SELECT owner FROM tasks WHERE checkpoint=? AND measure=? AND settings=?",
            (checkpoint, measure, settings),
        )
        return bool(rows) and rows[0][0] != self.owner

    def fail(self, checkpoint: str, measure: str, settings: str, error: str) -> None:
        """Mark a task failed (a later run retries it)."""
        self._write(
            lambda db: db.execute(
                "UPDATE tasks SET status='failed', error=? "
                "WHERE checkpoint=? AND measure=? AND settings=?",
                (error, checkpoint, measure, settings),
            ),
            "recording a failure",
        )

    def release(self, checkpoint: str, measure: str, settings: str) -> None:
        """Give up this process's claim on an unfinished task (on interruption)."""
        self._write(
            lambda db: db.execute(
                "DELETE FROM tasks WHERE checkpoint=? AND measure=? AND settings=? "
                "AND owner=? AND status='running'",
                (checkpoint, measure, settings, self.owner),
            ),
            "releasing a claim",
        )
