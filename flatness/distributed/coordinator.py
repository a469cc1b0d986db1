"""Rank 0's side of a sweep across ranks: the thread that owns the store, and the work.

Under ``torchrun`` a :class:`Coordinator` on rank 0 is the only code that opens the
results store (:mod:`flatness.distributed.sweep` says why). One thread owns the store
and answers requests one at a time: the next unit of work (a checkpoint, or a pair
for Keskar's parametric plot; byte-identical checkpoints are refused here, once),
the store calls in :data:`STORE_CALLS`, and a leader's final counts. Rank 0's own
scorer asks through a queue; each other leader is served by a thread of its own that
receives its requests (:mod:`flatness.distributed.messages`) and sends the answers.

A leader sends something at least every quarter of the timeout (its heartbeats), so
a thread that hears nothing for the timeout, or sees the connection close, has lost
that rank: the coordinator records the fault (naming the rank and what it scored),
interrupts rank 0's own task, answers every other leader's next message with the
fault so that it stops too, and releases the lost rank's running claims before the
store closes. Finished tasks were stored as they arrived; a rerun resumes.
"""

from __future__ import annotations

import dataclasses
import queue
import threading
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from typing import Any

from torch.distributed import ProcessGroup

from flatness.distributed.group import RankError
from flatness.distributed.messages import (
    REPLY,
    REQUEST,
    MainGuard,
    lost_rank,
    recv_object,
    send_object,
)
from flatness.pipeline.checkpoints import file_sha256
from flatness.pipeline.scorer import duplicate_message
from flatness.pipeline.store import ResultsStore

__all__ = ["STORE_CALLS", "Coordinator", "SweepOutcome"]

STORE_CALLS = frozenset(
    {
        "run",
        "task_status",
        "put_run",
        "put_track",
        "claim",
        "holder",
        "release",
        "fail",
        "finish",
        "finish_curve",
    }
)
"""The :class:`~flatness.pipeline.store.ResultsStore` methods other ranks may call."""


@dataclasses.dataclass
class SweepOutcome:
    """What a rank's part of a sweep did (on rank 0: the whole job's totals).

    Attributes:
        counts: ``computed``, ``reused`` and ``by_others`` task counts.
        failures: One line per failure.
        pending: Tasks other jobs still held when the sweep ended.
    """

    counts: dict[str, int]
    failures: list[str]
    pending: int

    def add(self, counts: dict[str, int], failures: Sequence[str], pending: int) -> None:
        """Add another leader's part."""
        for key, value in counts.items():
            self.counts[key] = self.counts.get(key, 0) + int(value)
        self.failures.extend(failures)
        self.pending += int(pending)


class Coordinator:
    """Rank 0's side of a sweep: the thread that owns the store, one per remote leader.

    Args:
        open_store: Opens the store (and claims its objective) as a context manager;
            called in the store's thread.
        units: The work: ``("run", i)`` and ``("pair", j)``, handed out in order.
        paths: The runs' checkpoint files (byte-identical ones are refused once).
        leaders: The remote leaders' ranks.
        group: The ``gloo`` group the messages travel on.
        timeout: Seconds any wait may last.
    """

    def __init__(
        self,
        open_store: Callable[[], AbstractContextManager[ResultsStore]],
        units: Sequence[tuple[str, int]],
        paths: Sequence[Any],
        leaders: Sequence[int],
        group: ProcessGroup | None,
        timeout: float,
    ) -> None:
        self._open = open_store
        self._units = list(units)
        self._paths = list(paths)
        self._leaders = list(leaders)
        self._group = group
        self.timeout = timeout
        self._requests: queue.Queue[tuple[str, Any, queue.Queue[Any]] | None] = queue.Queue()
        self._ready = threading.Event()
        self._store_thread = threading.Thread(target=self._own_store, name="flatness-store")
        self._served: list[threading.Thread] = []
        self._seen: dict[str, int] = {}
        self._held: dict[int, str] = {}  # leader -> what it scores
        self._claims: dict[tuple[str, str, str], int] = {}  # running task -> leader
        self._done: set[int] = set()
        self.outcome = SweepOutcome({"computed": 0, "reused": 0, "by_others": 0}, [], 0)
        self.stale_after = 0.0
        self.store_path = ""
        self.error: BaseException | None = None
        self.fault: str | None = None
        self.guard = MainGuard()
        self._lock = threading.Lock()

    # ------------------------------------------------------------ the store's thread
    def start(self) -> BaseException | None:
        """Open the store in its thread; then serve the remote leaders.

        Returns:
            The exception opening the store raised (its objective is another, it
            cannot be written, ...), or ``None``.
        """
        self._store_thread.start()
        self._ready.wait()
        if self.error is None:
            for rank in self._leaders:
                thread = threading.Thread(
                    target=self._serve, args=(rank,), name=f"flatness-rank-{rank}", daemon=True
                )
                thread.start()
                self._served.append(thread)
        return self.error

    def _own_store(self) -> None:
        try:
            with self._open() as db:
                self.stale_after, self.store_path = db.stale_after, str(db.path)
                self._ready.set()
                self._answer_all(db)
                for (checkpoint, measure, settings), _ in list(self._claims.items()):
                    db.release(checkpoint, measure, settings)  # a lost rank's running task
        except BaseException as exc:
            self.error = exc
            self._ready.set()

    def _answer_all(self, db: ResultsStore) -> None:
        while (item := self._requests.get()) is not None:
            kind, payload, reply = item
            try:
                reply.put(("ok", self._answer(db, kind, payload)))
            except BaseException as exc:
                reply.put(("error", exc))

    def _answer(self, db: ResultsStore, kind: str, payload: Any) -> Any:
        if kind == "next":
            return self._next(int(payload))
        if kind == "done":
            leader, counts, failures, pending = payload
            self.outcome.add(counts, failures, pending)
            self._done.add(int(leader))
            self._held.pop(int(leader), None)
            return None
        leader, (method, args, kwargs) = payload
        if method not in STORE_CALLS:
            raise ValueError(f"rank {leader} asked for store call {method!r}, which is not served")
        try:
            value = getattr(db, method)(*args, **kwargs)
        except Exception as exc:
            return ("error", exc)
        task = tuple(str(a) for a in args[:3]) if method != "finish_curve" else None
        if method == "claim" and value.state == "claimed" and task is not None:
            self._claims[task] = int(leader)  # type: ignore[index]
        elif method in ("finish", "fail", "release") and task is not None:
            self._claims.pop(task, None)  # type: ignore[arg-type]
        elif method == "finish_curve":
            self._claims.pop((f"{args[0]}+{args[1]}", "parametric_plot", str(args[2])), None)
        return ("ok", value)

    def _next(self, leader: int) -> tuple[str, int] | None:
        """The next unit for ``leader``; byte-identical runs are refused here, once."""
        while self._units and self.fault is None:
            kind, index = self._units.pop(0)
            if kind == "run":
                path = self._paths[index]
                try:
                    sha = file_sha256(path)
                except OSError:
                    sha = f"missing:{index}"  # the leader fails it with the reason
                first = self._seen.setdefault(sha, index)
                if first != index:
                    message = duplicate_message(path, self._paths[first])
                    self.outcome.failures.append(message)
                    continue
            self._held[leader] = f"{kind} {index}: " + (
                str(self._paths[index]) if kind == "run" else "a parametric plot"
            )
            return (kind, index)
        return None

    def ask(self, kind: str, payload: Any) -> Any:
        """A request from rank 0's own scorer (through the queue).

        Returns:
            The answer (as the remote leaders get it).

        Raises:
            RankError: If a rank was lost, or the store's thread has stopped.
        """
        if self.fault is not None:
            raise RankError(self.fault)
        reply: queue.Queue[Any] = queue.Queue()
        self._requests.put((kind, payload, reply))
        while True:
            try:
                status, value = reply.get(timeout=1.0)
            except queue.Empty:
                if not self._store_thread.is_alive():
                    raise RankError(f"rank 0's store thread stopped: {self.error}") from None
                continue
            if status == "error":
                raise value
            return value

    # ------------------------------------------------------------ remote leaders
    def _serve(self, rank: int) -> None:
        assert self._group is not None
        while True:
            try:
                kind, payload = recv_object(rank, self._group, REQUEST, self.timeout)
            except RuntimeError as exc:
                self._lose(rank, exc)
                return
            stopped = self.fault is not None and kind != "done"
            if stopped:  # another rank was lost: this leader stops too
                answer: Any = ("error", RankError(f"rank 0 stopped the sweep: {self.fault}"))
            elif kind == "beat":
                answer = ("ok", None)
            else:
                reply: queue.Queue[Any] = queue.Queue()
                self._requests.put((kind, payload, reply))
                answer = reply.get()
            try:
                send_object(answer, rank, self._group, REPLY, self.timeout)
            except RuntimeError as exc:
                self._lose(rank, exc)
                return
            if kind == "done" or stopped:
                return

    def _lose(self, rank: int, exc: BaseException) -> None:
        with self._lock:
            if self.fault is not None or rank in self._done:
                return
            held = self._held.get(rank)
            self.fault = (
                lost_rank(rank, exc, self.timeout)
                + (f" while scoring {held}" if held else "")
                + f"; the sweep stops. Finished tasks are stored in {self.store_path}: rerun "
                "the same command to resume (the timeout is "
                f"{self.timeout:g} s: --timeout or $FLATNESS_DIST_TIMEOUT)"
            )
        self.guard.interrupt()  # rank 0's main thread may be inside its own task

    def wait_for_leaders(self) -> None:
        """Wait until every remote leader said it is done.

        Raises:
            RankError: If a leader was lost (the message names it).
        """
        while True:
            if self.fault is not None:
                raise RankError(self.fault)
            if all(not t.is_alive() for t in self._served):
                if self.fault is not None:
                    raise RankError(self.fault)
                return
            for thread in self._served:
                thread.join(timeout=0.05)

    def close(self) -> None:
        """Wait for the leaders' threads, release what lost ranks held, close the store.

        After a fault every leader's thread ends within the timeout: at the leader's
        next heartbeat (it is told to stop), its death, or the timeout.
        """
        for thread in self._served:
            thread.join()
        self._requests.put(None)
        self._store_thread.join()
