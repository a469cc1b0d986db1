"""A sweep across ranks: rank 0 owns the results store and hands out the checkpoints.

Under ``torchrun`` (an initialized process group), :func:`flatness.score` runs
:func:`score_across_ranks` on every rank. The design, and why it is safe:

* **One writer.** SQLite's WAL mode needs shared memory, so a store on a network file
  system cannot be shared by processes on several machines. Here one thread of rank 0
  (:class:`Coordinator`) opens the store and is the only code that touches it; every
  other rank's store calls (reads of what is done, the run's row, claims, finished
  rows) travel to it as messages, and it answers each (:class:`StoreClient`). Rank 0's
  own scorer talks to that thread through a queue, the others over point-to-point
  messages on a ``gloo`` group of their own (pickled objects between the ranks of
  one job). The claims of :mod:`flatness.pipeline.claims` stay, so a store shared
  with other jobs on one machine is still safe.
* **Work.** Ranks form groups of ``group_size`` consecutive ranks
  (:func:`~flatness.distributed.group.split_groups`); each group's first rank, its
  *leader*, asks rank 0 for the next unit (a checkpoint, or a pair for Keskar's
  parametric plot), and the group scores it together: objectives built inside are
  data-parallel over the group (:func:`~flatness.distributed.group.objective_group`),
  and every answer the leader gets is broadcast to its group, so all members take the
  same path through the :class:`~flatness.pipeline.scorer.Scorer`. Groups of one rank
  score whole checkpoints each.
* **Faults.** Every wait has a timeout (:func:`~flatness.distributed.group.timeout_seconds`,
  ``--timeout``, default 300 s). A leader sends a heartbeat every quarter of it
  (at most every 30 s) while it computes; rank 0 fails the job, naming the rank and
  its checkpoint, when a leader's connection closes (it died) or nothing came from it
  for the timeout (it hangs or was stopped); a leader fails the same way when rank 0
  does not answer. Each finished task is stored the moment it arrives, claims of the
  lost rank are released, and a rerun of the same command resumes.

Without a process group :func:`flatness.score` keeps its claims-based design: each
process opens the store itself.
"""

from __future__ import annotations

import _thread
import dataclasses
import datetime
import pickle
import queue
import threading
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from typing import Any

import torch
import torch.distributed as dist
from torch.distributed import ProcessGroup

from flatness.distributed.group import (
    RankError,
    broadcast_object,
    objective_group,
    split_groups,
    timeout_seconds,
)
from flatness.pipeline.checkpoints import file_sha256
from flatness.pipeline.claims import Claim
from flatness.pipeline.heartbeat import heartbeat_interval
from flatness.pipeline.scorer import Scorer, duplicate_message
from flatness.pipeline.store import ResultsStore

__all__ = ["STORE_CALLS", "Coordinator", "StoreClient", "SweepOutcome", "score_across_ranks"]

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

_REQUEST, _REPLY = 1, 2  # message tags: leader -> rank 0, rank 0 -> leader

Ask = Callable[[str, Any], Any]
"""Send one request (kind, payload) to the store's owner and return its answer."""


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


def _delta(seconds: float) -> datetime.timedelta:
    return datetime.timedelta(seconds=seconds)


def _send(obj: Any, dst: int, group: ProcessGroup, tag: int, timeout: float) -> None:
    """Send a picklable object to rank ``dst`` (its size, then its bytes)."""
    data = pickle.dumps(obj)
    size = torch.tensor([len(data)], dtype=torch.long)
    payload = torch.frombuffer(bytearray(data), dtype=torch.uint8)
    for tensor in (size, payload):
        work = dist.isend(tensor, dst, group=group, tag=tag)
        if work is not None:
            work.wait(_delta(timeout))


def _recv(src: int, group: ProcessGroup, tag: int, timeout: float) -> Any:
    """Receive an object :func:`_send` sent from rank ``src``, waiting at most ``timeout``."""
    size = torch.zeros(1, dtype=torch.long)
    work = dist.irecv(size, src, group=group, tag=tag)
    if work is not None:
        work.wait(_delta(timeout))
    payload = torch.empty(int(size.item()), dtype=torch.uint8)
    work = dist.irecv(payload, src, group=group, tag=tag)
    if work is not None:
        work.wait(_delta(timeout))
    return pickle.loads(payload.numpy().tobytes())


def _lost(rank: int, exc: BaseException, timeout: float) -> str:
    """How rank ``rank`` was lost, from the exception a wait on it raised."""
    if "timed out" in str(exc).lower() or "timeout" in str(exc).lower():
        return f"rank {rank} sent nothing for {timeout:g} s (no heartbeat: it hangs or was stopped)"
    return f"rank {rank} closed its connection (it died or was killed: see its log)"


class StoreClient:
    """The store a :class:`~flatness.pipeline.scorer.Scorer` writes, on a rank that does
    not own it: each call is a request to rank 0's :class:`Coordinator`.

    Args:
        ask: Sends ``("store", (method, args, kwargs))`` and returns the answer.
        stale_after: The store's ``stale_after`` (the Scorer's waiting messages say it).
    """

    def __init__(self, ask: Ask, stale_after: float) -> None:
        self._ask = ask
        self.stale_after = stale_after

    def _call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        status, value = self._ask("store", (method, args, kwargs))
        if status == "error":
            raise value
        return value

    def run(self, checkpoint: str) -> dict[str, Any] | None:
        """:meth:`ResultsStore.run <flatness.pipeline.store.ResultsStore.run>`, remotely."""
        out: dict[str, Any] | None = self._call("run", checkpoint)
        return out

    def task_status(self, checkpoint: str, measure: str, settings: str) -> str | None:
        """:meth:`ResultsStore.task_status`, remotely."""
        out: str | None = self._call("task_status", checkpoint, measure, settings)
        return out

    def put_run(self, checkpoint: str, path: Any, **fields: Any) -> None:
        """:meth:`ResultsStore.put_run`, remotely."""
        self._call("put_run", checkpoint, str(path), **fields)

    def put_track(self, run: str, source: str, step: int, record: Any) -> None:
        """:meth:`ResultsStore.put_track`, remotely."""
        self._call("put_track", run, source, step, dict(record))

    def claim(self, checkpoint: str, measure: str, settings: str) -> Claim:
        """:meth:`ResultsStore.claim`, remotely."""
        out: Claim = self._call("claim", checkpoint, measure, settings)
        return out

    def holder(self, checkpoint: str, measure: str, settings: str) -> Claim:
        """:meth:`ResultsStore.holder`, remotely."""
        out: Claim = self._call("holder", checkpoint, measure, settings)
        return out

    def release(self, checkpoint: str, measure: str, settings: str) -> None:
        """:meth:`ResultsStore.release`, remotely."""
        self._call("release", checkpoint, measure, settings)

    def fail(self, checkpoint: str, measure: str, settings: str, error: str) -> None:
        """:meth:`ResultsStore.fail`, remotely."""
        self._call("fail", checkpoint, measure, settings, error)

    def finish(self, checkpoint: str, measure: str, settings: str, records: Any, **kw: Any) -> bool:
        """:meth:`ResultsStore.finish`, remotely (the rows travel to rank 0)."""
        return bool(self._call("finish", checkpoint, measure, settings, list(records), **kw))

    def finish_curve(self, sb: str, lb: str, settings: str, label: str, frame: Any) -> bool:
        """:meth:`ResultsStore.finish_curve`, remotely."""
        return bool(self._call("finish_curve", sb, lb, settings, label, frame))


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
        self.guard = _MainGuard()
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
                kind, payload = _recv(rank, self._group, _REQUEST, self.timeout)
            except RuntimeError as exc:
                self._lose(rank, exc)
                return
            if kind == "beat":
                answer: Any = ("ok", None)
            else:
                reply: queue.Queue[Any] = queue.Queue()
                self._requests.put((kind, payload, reply))
                answer = reply.get()
            try:
                _send(answer, rank, self._group, _REPLY, self.timeout)
            except RuntimeError as exc:
                self._lose(rank, exc)
                return
            if kind == "done":
                return

    def _lose(self, rank: int, exc: BaseException) -> None:
        with self._lock:
            if self.fault is not None or rank in self._done:
                return
            held = self._held.get(rank)
            self.fault = (
                f"{_lost(rank, exc, self.timeout)}"
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
        """Release what lost ranks held, close the store and stop its thread."""
        self._requests.put(None)
        self._store_thread.join()


class _MainGuard:
    """Interrupts the main thread (``KeyboardInterrupt``) only while it is armed.

    A thread that sees a rank lost stops the main thread inside its task instead of
    after it; outside the guarded block the main thread is left alone.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._armed = False

    def __enter__(self) -> None:
        with self._lock:
            self._armed = True

    def __exit__(self, *exc: object) -> None:
        with self._lock:
            self._armed = False

    def interrupt(self) -> None:
        with self._lock:
            if self._armed:
                _thread.interrupt_main()


class _Channel:
    """A remote leader's line to rank 0: requests under a lock, and a heartbeat thread."""

    def __init__(self, group: ProcessGroup, timeout: float) -> None:
        self._group = group
        self._timeout = timeout
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self.fault: str | None = None
        self.guard = _MainGuard()
        self._beats = threading.Thread(target=self._beat, name="flatness-beat", daemon=True)

    def ask(self, kind: str, payload: Any) -> Any:
        with self._lock:
            if self.fault is not None:
                raise RankError(self.fault)
            try:
                _send((kind, payload), 0, self._group, _REQUEST, self._timeout)
                status, value = _recv(0, self._group, _REPLY, self._timeout)
            except RuntimeError as exc:
                self.fault = (
                    _lost(0, exc, self._timeout).replace("(no heartbeat: ", "(")
                    + " (rank 0 owns the results store and hands out the work): see "
                    "rank 0's error; rerun the same command to resume"
                )
                raise RankError(self.fault) from None
        if status == "error":
            raise value
        return value

    def _beat(self) -> None:
        while not self._stop.wait(heartbeat_interval(self._timeout)):
            try:
                self.ask("beat", None)
            except RankError:
                self.guard.interrupt()
                return

    def start(self) -> None:
        self._beats.start()

    def stop(self) -> None:
        self._stop.set()
        if self._beats.is_alive():
            self._beats.join()


def _error_text(exc: BaseException | None) -> tuple[str, str, str] | None:
    if exc is None:
        return None
    return (type(exc).__name__, str(exc), str(getattr(exc, "kind", "other")))


def _reraise(sent: tuple[str, str, str]) -> BaseException:
    from flatness.pipeline.database import StoreError

    name, message, kind = sent
    if name == "StoreError":
        return StoreError(message, kind)
    return ValueError(message) if name in ("ValueError", "GroupError") else RankError(message)


def score_across_ranks(
    make_scorer: Callable[[StoreClient, bool], Scorer],
    open_store: Callable[[], AbstractContextManager[ResultsStore]],
    *,
    paths: Sequence[Any],
    pairs: int,
    group_size: int = 1,
    timeout: float | None = None,
    wait: bool = True,
    poll: float = 0.5,
) -> SweepOutcome:
    """Score a manifest on every rank of the initialized process group; every rank calls it.

    Args:
        make_scorer: ``make_scorer(store, talks)`` builds this rank's
            :class:`~flatness.pipeline.scorer.Scorer` on ``store`` (a
            :class:`StoreClient`); ``talks`` is false on the ranks that only follow
            their group's leader (they should say nothing).
        open_store: Opens the results store and claims its objective (rank 0 only).
        paths: The manifest's checkpoint files, in order (the units ``("run", i)``).
        pairs: The manifest's number of ``[[pairs]]`` (the units ``("pair", j)``).
        group_size: Ranks per group; a group scores one checkpoint at a time,
            data-parallel (``--group-size``).
        timeout: Seconds any wait on another rank may last (:func:`timeout_seconds`).
        wait: Wait for tasks other jobs hold on the same store.
        poll: Seconds between checks while waiting.

    Returns:
        On rank 0, the totals of the job; elsewhere this rank's part.

    Raises:
        RankError: If a rank died, hung or could not be reached (naming it); finished
            tasks stay stored.
        ValueError: If ``group_size`` does not divide the world size, or rank 0 could
            not open the store (the same message on every rank).
    """
    seconds = timeout_seconds(timeout)
    rank, world = dist.get_rank(), dist.get_world_size()
    messages = dist.new_group(backend="gloo", timeout=_delta(seconds))
    sub = split_groups(group_size, timeout=seconds)
    leader = rank - rank % group_size
    coordinator: Coordinator | None = None
    channel: _Channel | None = None
    ask: Ask
    if rank == 0:
        units = [("run", i) for i in range(len(paths))] + [("pair", j) for j in range(pairs)]
        leaders = list(range(group_size, world, group_size))
        coordinator = Coordinator(open_store, units, paths, leaders, messages, seconds)
        failed = _error_text(coordinator.start())
        setup = broadcast_object((failed, coordinator.stale_after), 0, messages)
        if failed is not None:
            coordinator.close()
            raise coordinator.error  # type: ignore[misc]
        ask = coordinator.ask
    else:
        setup = broadcast_object(None, 0, messages)
        if setup[0] is not None:
            raise _reraise(setup[0])
        if rank == leader:
            channel = _Channel(messages, seconds)
            channel.start()
            ask = channel.ask
    if sub is not None:
        ask = _following(ask if rank == leader else None, leader, sub)

    def mine(kind: str, payload: Any) -> Any:
        return ask(kind, (rank, payload) if kind == "store" else payload)

    scorer = make_scorer(StoreClient(mine, float(setup[1])), rank == leader)
    guard = coordinator.guard if coordinator is not None else None
    guard = guard or (channel.guard if channel is not None else _MainGuard())
    try:
        with guard, objective_group(sub):
            while (unit := mine("next", rank)) is not None:
                kind, index = unit
                if kind == "run":
                    scorer.score_run(index)
                else:
                    scorer.score_pair(scorer.manifest.pairs[index])
            if wait:
                scorer.wait_for_others(poll)
            if channel is not None:
                channel.stop()
            part = (dict(scorer.counts), list(scorer.failures), scorer.pending)
            mine("done", (rank, *part))
            if coordinator is not None:
                coordinator.wait_for_leaders()
        if coordinator is not None:
            return coordinator.outcome
        return SweepOutcome(*part)
    except KeyboardInterrupt:
        fault = coordinator.fault if coordinator is not None else None
        fault = fault or (channel.fault if channel is not None else None)
        if fault is None:
            raise
        raise RankError(fault) from None
    finally:
        if channel is not None:
            channel.stop()
        if coordinator is not None:
            coordinator.close()


def _following(ask: Ask | None, leader: int, group: ProcessGroup) -> Ask:
    """An ``ask`` whose answers the leader broadcasts to its group (members only listen)."""

    def follow(kind: str, payload: Any) -> Any:
        if ask is None:
            status, value = broadcast_object(None, leader, group)
        else:
            try:
                status, value = "ok", ask(kind, payload)
            except Exception as exc:
                status, value = "error", exc
            broadcast_object((status, value), leader, group)
        if status == "error":
            raise value
        return value

    return follow
