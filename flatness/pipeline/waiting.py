"""Waiting for the tasks other processes hold (a part of :class:`~flatness.pipeline.scorer.Scorer`).

A scorer that finds a task claimed by another live process leaves it
(:attr:`Waiting.busy`, :attr:`Waiting.busy_pairs`) and, at the end of its sweep, waits
for it: it says which task waits on which host and process, counts a task the other
finished, and takes over one whose owner died or stopped refreshing its claim
(``stale_after``, :mod:`flatness.pipeline.claims`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from flatness.pipeline.claims import Claim
from flatness.pipeline.manifest import Manifest, PairSpec
from flatness.pipeline.task_plan import Task
from flatness.pipeline.task_store import TaskStore

__all__ = ["Waiting"]


class Waiting:
    """The tasks other processes hold, and the wait for them (mixed into the Scorer).

    Attributes:
        busy: Run index and checkpoint key -> the tasks other processes hold.
        busy_pairs: The pairs other processes hold.
    """

    busy: dict[tuple[int, str], list[Task]]
    busy_pairs: list[PairSpec]
    _said: dict[str, tuple[str | None, float]]

    if TYPE_CHECKING:  # provided by Scorer
        manifest: Manifest
        store: TaskStore
        counts: dict[str, int]
        failures: list[str]
        echo: Callable[[str], None]

        def score_run(self, index: int, only: Sequence[Task] | None = None) -> None: ...

        def score_pair(self, pair: PairSpec) -> None: ...

    @property
    def pending(self) -> int:
        """Tasks and pairs other processes still held when last checked."""
        return sum(len(t) for t in self.busy.values()) + len(self.busy_pairs)

    def wait_for_others(self, poll: float) -> None:
        """Wait for tasks other processes hold, saying what for; take over stalled ones.

        A task is taken over once its owner died or has not refreshed its claim for the
        store's ``stale_after`` seconds; until then, :attr:`echo` is told which task
        waits on which host and process, and how long until it would be taken over.
        """
        while self.busy_pairs:
            time.sleep(poll)
            held, self.busy_pairs = self.busy_pairs, []
            for pair in held:
                self.score_pair(pair)
        while self.busy:
            time.sleep(poll)
            waiting, self.busy = self.busy, {}
            for (index, key), tasks in waiting.items():
                path = self.manifest.runs[index].path
                free = []
                for task in tasks:
                    claim = self.store.holder(key, task.measure, task.key)
                    if claim.state == "done":
                        self.counts["by_others"] += 1
                    elif claim.state == "failed":
                        self.failures.append(f"{path}: {task.measure} failed in another process")
                    elif claim.state == "busy":
                        self._say_waiting(f"{task.measure} {task.key} on {path}", claim)
                        self.busy.setdefault((index, key), []).append(task)
                    else:
                        free.append(task)
                if free:
                    self.score_run(index, only=free)

    def _say_waiting(self, what: str, claim: Claim) -> None:
        """Tell :attr:`echo` what this process waits for (once per owner, then each minute)."""
        said = self._said.get(what)
        now = time.monotonic()
        if said is not None and said[0] == claim.owner and now - said[1] < 60.0:
            return
        self._said[what] = (claim.owner, now)
        stale_after = self.store.stale_after
        age = claim.age or 0.0
        self.echo(
            f"waiting for {what}: claimed by {claim.host} pid "
            f"{claim.pid}, no heartbeat for {age:.1f} s; taken over after {stale_after:g} s "
            f"without one (about {max(stale_after - age, 0.0):.0f} s from now; --stale-after)"
        )
