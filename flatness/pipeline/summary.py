"""The table ``flatness score`` prints: one row per checkpoint, one column per measure.

Its measure columns are the report's (:mod:`flatness.headlines`): each measure's
headline value under the label a report gives it.
"""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

from flatness.headlines import scores_frame, wide_scores
from flatness.pipeline.readers import load_results, load_runs

__all__ = ["summary_table"]

RUN_COLUMNS = ("path", "regime", "status", "train_accuracy", "test_accuracy")
"""The run columns the table starts with."""


def summary_table(
    store: str | os.PathLike[str], *, root: str | os.PathLike[str] | None = None
) -> pd.DataFrame:
    """One row per checkpoint: regime, status, accuracies and each measure's headline.

    The headline of a measure is its single value, or its first component (the largest
    eigenvalue for ``lambda_max``); a measure scored with several settings gets one
    column per setting (``ε-sharpness (full, ε=1e-3)``), labelled as in reports. The
    spectral density is a figure in reports and has no column here.

    Args:
        store: The results store.
        root: Show checkpoint paths relative to this folder (the manifest's).

    Returns:
        The table, with the run columns :data:`RUN_COLUMNS` first; checkpoints that
        could not be scored keep their row, with NaN measures.

    Raises:
        FileNotFoundError: If there is no store at ``store``.
    """
    runs = load_runs(store)
    scores, columns = scores_frame(load_results(store))
    wide = wide_scores(scores, columns, runs["checkpoint"])
    table = runs.set_index("checkpoint")[list(RUN_COLUMNS)].join(wide, how="left")
    if root is not None:
        base = Path(root).resolve()
        table["path"] = [
            os.path.relpath(p, base) if Path(p).is_absolute() else p for p in table["path"]
        ]
    return pd.DataFrame(table).reset_index(drop=True)
