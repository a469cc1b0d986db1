"""Messages between ranks: picklable objects point to point, and a leader's line to rank 0.

A sweep across ranks (:mod:`flatness.distributed.sweep`) sends requests and answers
as pickled objects (:func:`send_object`, :func:`recv_object`: the size, then the
bytes) on a ``gloo`` group of its own, between the ranks of one job. Every wait has
a timeout; a wait that fails says how the rank was lost (:func:`lost_rank`): its
connection closed (it died) or nothing came for the timeout (it hangs or was
stopped). A :class:`Channel` is a leader's line to rank 0, with a heartbeat thread
so that rank 0 tells a long task from a lost rank.
"""

from __future__ import annotations

import _thread
import datetime
import pickle
import threading
from typing import Any

import torch
import torch.distributed as dist
from torch.distributed import ProcessGroup

from flatness.distributed.group import RankError
from flatness.pipeline.heartbeat import heartbeat_interval

__all__ = ["REPLY", "REQUEST", "Channel", "MainGuard", "lost_rank", "recv_object", "send_object"]

REQUEST, REPLY = 1, 2
"""Message tags: a leader's request to rank 0, rank 0's answer."""


def _delta(seconds: float) -> datetime.timedelta:
    return datetime.timedelta(seconds=seconds)


def send_object(obj: Any, dst: int, group: ProcessGroup, tag: int, timeout: float) -> None:
    """Send a picklable object to rank ``dst`` (its size, then its bytes).

    Raises:
        RuntimeError: If the peer is gone or the send outlasts ``timeout`` seconds.
    """
    data = pickle.dumps(obj)
    size = torch.tensor([len(data)], dtype=torch.long)
    payload = torch.frombuffer(bytearray(data), dtype=torch.uint8)
    for tensor in (size, payload):
        work = dist.isend(tensor, dst, group=group, tag=tag)
        if work is not None:
            work.wait(_delta(timeout))


def recv_object(src: int, group: ProcessGroup, tag: int, timeout: float) -> Any:
    """Receive an object :func:`send_object` sent from rank ``src``.

    Returns:
        The object.

    Raises:
        RuntimeError: If the peer is gone or nothing came within ``timeout`` seconds.
    """
    size = torch.zeros(1, dtype=torch.long)
    work = dist.irecv(size, src, group=group, tag=tag)
    if work is not None:
        work.wait(_delta(timeout))
    payload = torch.empty(int(size.item()), dtype=torch.uint8)
    work = dist.irecv(payload, src, group=group, tag=tag)
    if work is not None:
        work.wait(_delta(timeout))
    return pickle.loads(payload.numpy().tobytes())


def lost_rank(rank: int, exc: BaseException, timeout: float) -> str:
    """How rank ``rank`` was lost, from the exception a wait on it raised.

    Returns:
        A phrase naming the rank: it hung (nothing for ``timeout`` s) or died.
    """
    if "timed out" in str(exc).lower() or "timeout" in str(exc).lower():
        return f"rank {rank} sent nothing for {timeout:g} s (it hangs or was stopped)"
    return f"rank {rank} closed its connection (it died or was killed: see its log)"


class MainGuard:
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
        """Raise ``KeyboardInterrupt`` in the main thread if it is inside the block."""
        with self._lock:
            if self._armed:
                _thread.interrupt_main()


class Channel:
    """A leader's line to rank 0: one request at a time, and a heartbeat thread.

    Args:
        group: The group the messages travel on.
        timeout: Seconds a request waits for its answer; heartbeats go every
            :func:`~flatness.pipeline.heartbeat.heartbeat_interval` of it.

    Attributes:
        fault: Why the sweep stopped (rank 0 lost or stopped it), once it has.
        guard: Arms the main thread for an interruption by the heartbeat thread.
    """

    def __init__(self, group: ProcessGroup, timeout: float) -> None:
        self._group = group
        self._timeout = timeout
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self.fault: str | None = None
        self.guard = MainGuard()
        self._beats = threading.Thread(target=self._beat, name="flatness-beat", daemon=True)

    def ask(self, kind: str, payload: Any) -> Any:
        """Send a request to rank 0 and wait for its answer.

        Returns:
            The answer.

        Raises:
            RankError: If rank 0 is lost or has stopped the sweep (a rank was lost).
        """
        with self._lock:
            if self.fault is not None:
                raise RankError(self.fault)
            try:
                send_object((kind, payload), 0, self._group, REQUEST, self._timeout)
                status, value = recv_object(0, self._group, REPLY, self._timeout)
            except RuntimeError as exc:
                self.fault = (
                    f"{lost_rank(0, exc, self._timeout)}; rank 0 owns the results store "
                    "and hands out the work: see its error, and rerun the same command "
                    "to resume"
                )
                raise RankError(self.fault) from None
        if status == "error":
            if isinstance(value, RankError):
                self.fault = self.fault or str(value)
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
        """Start the heartbeats."""
        self._beats.start()

    def stop(self) -> None:
        """Stop the heartbeats (waits for one in flight)."""
        self._stop.set()
        if self._beats.is_alive():
            self._beats.join()
