"""A sweep across ranks: rank 0 owns the results store and hands out the checkpoints.

Under ``torchrun`` (an initialized process group), :func:`flatness.score` runs
:func:`score_across_ranks` on every rank. The design, and why it is safe:

* **One writer.** SQLite's WAL mode needs shared memory, so a store on a network file
  system cannot be shared by processes on several machines. Here one thread of rank 0
  (:class:`~flatness.distributed.coordinator.Coordinator`) opens the store and is the
  only code that touches it; every other rank's store calls (reads of what is done,
  the run's row, claims, finished rows) travel to it as messages, and it answers each
  (:class:`StoreClient`). Rank 0's own scorer talks to that thread through a queue,
  the others over point-to-point messages on a ``gloo`` group of their own
  (:mod:`flatness.distributed.messages`: pickled objects between the ranks of one
  job). The claims of :mod:`flatness.pipeline.claims` stay, so a store shared with
  other jobs on one machine is still safe.
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
  does not answer, and every other leader is told to stop at its next heartbeat.
  Each finished task is stored the moment it arrives, claims of the lost rank are
  released, and a rerun of the same command resumes.

Without a process group :func:`flatness.score` keeps its claims-based design: each
process opens the store itself.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from typing import Any

import torch.distributed as dist
from torch.distributed import ProcessGroup

from flatness.distributed.coordinator import Coordinator, SweepOutcome
from flatness.distributed.group import (
    RankError,
    broadcast_object,
    objective_group,
    split_groups,
    timeout_seconds,
)
from flatness.distributed.messages import Channel, MainGuard
from flatness.pipeline.claims import Claim
from flatness.pipeline.scorer import Scorer
from flatness.pipeline.store import ResultsStore

__all__ = ["StoreClient", "score_across_ranks"]

Ask = Callable[[str, Any], Any]
"""Send one request (kind, payload) to the store's owner and return its answer."""


class StoreClient:
    """The store a :class:`~flatness.pipeline.scorer.Scorer` writes, on a rank that does
    not own it: each call is a request to rank 0's
    :class:`~flatness.distributed.coordinator.Coordinator`.

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
    messages = dist.new_group(backend="gloo", timeout=datetime.timedelta(seconds=seconds))
    sub = split_groups(group_size, timeout=seconds)
    leader = rank - rank % group_size
    coordinator: Coordinator | None = None
    channel: Channel | None = None
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
            channel = Channel(messages, seconds)
            channel.start()
            ask = channel.ask
    if sub is not None:
        ask = _following(ask if rank == leader else None, leader, sub)

    def mine(kind: str, payload: Any) -> Any:
        return ask(kind, (rank, payload) if kind == "store" else payload)

    guard = coordinator.guard if coordinator is not None else None
    guard = guard or (channel.guard if channel is not None else MainGuard())
    try:
        scorer = make_scorer(StoreClient(mine, float(setup[1])), rank == leader)
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
        for group in (sub, messages):  # this call's groups; the caller's stay
            if group is not None:
                dist.destroy_process_group(group)


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
