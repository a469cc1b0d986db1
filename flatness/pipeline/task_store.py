"""The store calls a :class:`~flatness.pipeline.scorer.Scorer` makes, as a protocol.

A :class:`~flatness.pipeline.store.ResultsStore` answers them in the process that
opened it; under ``torchrun`` a :class:`~flatness.distributed.sweep.StoreClient`
sends each to rank 0, the only process that opens the store
(:mod:`flatness.distributed.sweep`).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

import pandas as pd

from flatness.pipeline.claims import Claim
from flatness.results import Record

__all__ = ["TaskStore"]


class TaskStore(Protocol):
    """What a scorer reads from and writes to a results store.

    Attributes:
        stale_after: Seconds without a heartbeat after which a claim is taken over.
    """

    stale_after: float

    def run(self, checkpoint: str) -> dict[str, Any] | None:
        """A checkpoint's stored row, or ``None``."""

    def task_status(self, checkpoint: str, measure: str, settings: str) -> str | None:
        """A task's state, or ``None`` for a task never claimed."""

    def put_run(self, checkpoint: str, path: str | os.PathLike[str], **fields: Any) -> None:
        """Insert or update a checkpoint's row."""

    def put_track(self, run: str, source: str, step: int, record: Mapping[str, Any]) -> None:
        """Store one record of a run's time series."""

    def claim(self, checkpoint: str, measure: str, settings: str) -> Claim:
        """Claim a task unless it is done or held by another live process."""

    def holder(self, checkpoint: str, measure: str, settings: str) -> Claim:
        """Who holds a task, without claiming it."""

    def release(self, checkpoint: str, measure: str, settings: str) -> None:
        """Give up a claim on an unfinished task."""

    def fail(self, checkpoint: str, measure: str, settings: str, error: str) -> None:
        """Mark a task failed."""

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
        """Store a finished task's rows; False when another process took it over."""

    def finish_curve(
        self, sb: str, lb: str, settings: str, label: str, frame: pd.DataFrame
    ) -> bool:
        """Store a parametric plot; False when another process took it over."""
