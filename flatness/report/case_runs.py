"""The scored runs of an overview's case, with their training metadata read.

Every study's answer function starts from the same rows: the ``runs`` table of the
case's store, only the runs that were scored (``status`` ``"ok"``) and only the case's
checkpoints, with each run's metadata (JSON text in the store) as a dict.
:func:`scored_runs` gives them, and :func:`stop_reason` says why a run stopped, also
for runs trained before the metadata recorded it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import pandas as pd

from flatness.pipeline.readers import load_runs
from flatness.report.overview_case import OverviewCase

__all__ = ["scored_runs", "stop_reason"]


def stop_reason(meta: Mapping[str, Any]) -> str:
    """Why a training run stopped.

    Args:
        meta: The run's metadata (a final checkpoint's).

    Returns:
        Its ``stop_reason`` (``"target_accuracy"``, ``"target_loss"``, ``"epochs"``,
        ``"max_updates"``); for runs trained before it was recorded, the reached target
        named by the config, else ``"max_updates"`` when the update cap was met, else
        ``"epochs"``.

    Examples:
        >>> stop_reason({"stop_reason": "target_loss"})
        'target_loss'
        >>> stop_reason({"reached_target": False, "updates": 40,
        ...              "config": {"max_updates": 40}})
        'max_updates'
        >>> stop_reason({"reached_target": True, "updates": 7, "config": {}})
        'target_accuracy'
    """
    reason = meta.get("stop_reason")
    if reason:
        return str(reason)
    config = meta.get("config", {})
    if meta.get("reached_target"):
        return "target_loss" if config.get("target_loss") is not None else "target_accuracy"
    cap = config.get("max_updates")
    updates = meta.get("updates")
    if cap is not None and updates is not None and int(updates) >= int(cap):
        return "max_updates"
    return "epochs"


def scored_runs(case: OverviewCase) -> pd.DataFrame:
    """The case's scored runs, one row per checkpoint.

    Args:
        case: The case (its store, and its checkpoints when it names them).

    Returns:
        The store's ``runs`` rows (:func:`flatness.pipeline.readers.load_runs`) with
        ``status`` ``"ok"`` among the case's checkpoints, ``meta`` parsed into a dict
        (empty where the store has none) and a ``stop_reason`` column
        (:func:`stop_reason`), in the store's order.

    Raises:
        FileNotFoundError: If the case's store does not exist.
    """
    runs = load_runs(case.store)
    runs = runs[runs["status"] == "ok"]
    if case.checkpoints is not None:
        runs = runs[runs["checkpoint"].isin(set(case.checkpoints))]
    meta = [json.loads(text) if isinstance(text, str) else {} for text in runs["meta"]]
    return runs.assign(meta=meta, stop_reason=[stop_reason(m) for m in meta]).reset_index(drop=True)
