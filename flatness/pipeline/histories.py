"""A checkpoint's per-epoch training history, copied into the store's ``tracks`` table.

:func:`flatness.zoo.train_network` keeps one record per epoch in ``meta["history"]``
(:data:`flatness.zoo.train.HISTORY_FIELDS`). When such a checkpoint is scored, its
history becomes the run's learning curve in the store: one ``tracks`` row per epoch
with ``source="history"``, keyed by the run's name (``meta["run"]``, else
:func:`flatness.zoo.manifests.run_name`) and the updates so far, each record carrying
the run's identity (run, regime, schedule, optimizer, seed) beside the epoch's
fields. Periodic checkpoints of one run hold prefixes of the same history, so scoring
them all writes each epoch's row once (the table's key is run, source, step).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from flatness.pipeline.store import ResultsStore
from flatness.zoo.manifests import run_name

__all__ = ["HISTORY_SOURCE", "IDENTITY_FIELDS", "put_history"]

HISTORY_SOURCE = "history"
"""The ``tracks`` table's ``source`` of per-epoch training histories."""

IDENTITY_FIELDS = ("regime", "schedule", "optimizer", "seed")
"""Metadata copied into every history record (with ``run``)."""


def put_history(store: ResultsStore, meta: Mapping[str, Any]) -> int:
    """Write a checkpoint's ``meta["history"]`` to the store's ``tracks`` table.

    Args:
        store: The results store (written).
        meta: The checkpoint's metadata (with the manifest's entry for the run).

    Returns:
        The number of records written (0 when the metadata holds no history, or no
        regime to name the run by).

    Raises:
        StoreError: If the store cannot be written.

    Examples:
        >>> import tempfile, os
        >>> from flatness.pipeline.readers import load_tracks
        >>> meta = {"regime": "SB", "seed": 1, "optimizer": "sgd",
        ...         "history": [{"epoch": 1, "updates": 10, "test_accuracy": 0.5}]}
        >>> path = os.path.join(tempfile.mkdtemp(), "r.sqlite")
        >>> with ResultsStore(path) as store:
        ...     put_history(store, meta)
        1
        >>> load_tracks(path)[["run", "source", "step", "seed", "test_accuracy"]].values.tolist()
        [['SB/seed1', 'history', 10, 1, 0.5]]
    """
    history = meta.get("history")
    if not isinstance(history, list) or not (meta.get("run") or meta.get("regime")):
        return 0
    run = str(meta.get("run") or run_name(meta))
    identity = {"run": run, **{k: meta[k] for k in IDENTITY_FIELDS if k in meta}}
    written = 0
    for record in history:
        if isinstance(record, Mapping) and "updates" in record:
            store.put_track(run, HISTORY_SOURCE, int(record["updates"]), {**identity, **record})
            written += 1
    return written
