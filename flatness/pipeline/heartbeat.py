"""Heartbeats: a worker refreshes its claims while it computes, so a stalled one is seen.

A process that claims a task in the results store (:mod:`flatness.pipeline.store`)
writes the time into the claim; while it scores, a :class:`Heartbeat` thread writes
the time again every few seconds into its running claims and into its claim on the
store's objective. Another process takes a claim over once it has not been refreshed
for ``stale_after`` seconds: the owner died, was stopped (``SIGSTOP``, a suspended
laptop) or lost the store's file system. A live owner is never taken over, however
long its task runs (a main thread stuck inside a computation is not detected: its
heartbeat goes on).
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from types import TracebackType

__all__ = ["Heartbeat", "heartbeat_interval"]


def heartbeat_interval(stale_after: float) -> float:
    """Seconds between heartbeats for claims taken over after ``stale_after`` seconds.

    Four beats fit in the timeout (at most one every 30 s), so a late beat or two on a
    busy machine does not lose the claim.

    Returns:
        The interval, at least 0.05 s.

    Examples:
        >>> heartbeat_interval(600.0), heartbeat_interval(2.0)
        (30.0, 0.5)
    """
    return max(min(stale_after / 4.0, 30.0), 0.05)


class Heartbeat:
    """Refresh an owner's running claims every ``interval`` seconds, in a thread.

    Used as a context manager around a sweep (:func:`flatness.score`). The thread has
    its own connection; a beat that cannot be written (the store is locked for a
    moment) is skipped and the next one tries again.

    Args:
        path: The results store.
        owner: The claims' owner (:attr:`ResultsStore.owner`).
        interval: Seconds between beats.
        host: This machine's name, as the objective's claim records it.
        pid: This process's id, as the objective's claim records it.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        owner: str,
        interval: float,
        *,
        host: str | None = None,
        pid: int | None = None,
    ) -> None:
        self.path = str(path)
        self.owner = owner
        self.interval = float(interval)
        self.host = host
        self.pid = pid
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> Heartbeat:
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="flatness-heartbeat", daemon=True)
        self._thread.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def beat(self, db: sqlite3.Connection) -> None:
        """Write the time into the owner's running claims and its objective claim."""
        now = time.time()
        db.execute("BEGIN IMMEDIATE")
        try:
            db.execute(
                "UPDATE tasks SET started=? WHERE owner=? AND status='running'", (now, self.owner)
            )
            db.execute(
                "UPDATE info SET value=json_set(value, '$.time', ?) WHERE key='objective_holder' "
                "AND json_extract(value, '$.host')=? AND json_extract(value, '$.pid')=?",
                (now, self.host, self.pid),
            )
            db.execute("COMMIT")
        except sqlite3.Error:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise

    def _run(self) -> None:
        try:
            db = sqlite3.connect(self.path, timeout=min(self.interval, 5.0), isolation_level=None)
        except sqlite3.Error:  # pragma: no cover - the store opened a moment ago
            return
        try:
            while not self._stop.wait(self.interval):
                try:
                    self.beat(db)
                except sqlite3.Error:
                    continue  # locked or failing for a moment: the next beat tries again
        finally:
            db.close()
