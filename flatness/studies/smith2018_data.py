"""The Smith et al. (2018) study's numbers, read from its cases' stores.

Three frames per case, all keyed by ``case``, ``regime`` and ``seed``:

- :func:`final_runs`: one row per run: test accuracy, training loss and accuracy,
  updates, examples seen, the final η and B, and the final network's measures
  (:func:`flatness.headlines.scores_frame` headlines, under their report labels);
- :func:`curves`: the per-epoch history (``source = "history"`` in the store's tracks):
  test accuracy and training loss after each epoch, against epochs and updates;
- :func:`tracked`: the tracker's records (``source = "tracker"``): λ_max, the trace,
  ε-sharpness and the noise scale at step 0 and after each epoch.

:func:`phase_ends` finds the epochs where a schedule changed η or B (from the history,
i.e. what training did, not what the plan asked for), and :func:`at_phase_ends` takes
each tracked measure there.

Reference:
    S. L. Smith, P.-J. Kindermans, C. Ying and Q. V. Le (2018). Don't decay the learning
    rate, increase the batch size. ICLR 2018 (arXiv:1711.00489).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from flatness.headlines import scores_frame, wide_scores
from flatness.pipeline.readers import load_runs, load_tracks
from flatness.report.from_store import load_frame
from flatness.report.overview_case import OverviewCase

__all__ = [
    "ACCURACY",
    "CaseData",
    "ORDER",
    "TRACKED",
    "at_phase_ends",
    "curves",
    "final_runs",
    "finite_mean",
    "load_case",
    "order_regimes",
    "phase_ends",
    "tracked",
]

ACCURACY = "test accuracy (%)"
"""The final test accuracy column, in percent."""

ORDER: tuple[str, ...] = ("decay", "increase", "hybrid", "constant", "const-noise")
"""The study's schedules in display order (others follow, alphabetically)."""

TRACKED: dict[str, str] = {
    "lambda_max": "λ_max",
    "trace": "trace",
    "keskar_sharpness": "ε-sharpness",
    "noise_scale": "noise scale B_simple",
}
"""Tracked measure → its label in the figures and tables."""


def finite_mean(values: pd.Series) -> float:
    """The mean of the finite values (a B_simple whose |G|² estimate was ≤ 0 is infinite).

    Examples:
        >>> finite_mean(pd.Series([1.0, 3.0, float("inf")]))
        2.0
    """
    numbers = values.astype(float)
    finite = numbers[np.isfinite(numbers)]
    return float(finite.mean()) if len(finite) else float("nan")


def order_regimes(regimes: Sequence[str]) -> list[str]:
    """The regimes in :data:`ORDER`, unknown ones after it, alphabetically.

    Examples:
        >>> order_regimes(["constant", "zeta", "decay"])
        ['decay', 'constant', 'zeta']
    """
    known = [r for r in ORDER if r in regimes]
    return known + sorted(set(regimes) - set(known))


def _runs(case: OverviewCase) -> pd.DataFrame:
    runs = load_runs(case.store)
    if case.checkpoints is not None:
        runs = runs[runs["checkpoint"].isin(set(case.checkpoints))]
    return runs


def _tracks(case: OverviewCase, source: str) -> pd.DataFrame:
    tracks = load_tracks(case.store)
    tracks = tracks[tracks["source"] == source].copy()
    runs = _runs(case)
    names = {json.loads(meta).get("run") for meta in runs["meta"]}
    tracks = tracks[tracks["run"].isin(names)]
    tracks["case"] = case.name
    return tracks


def final_runs(case: OverviewCase) -> pd.DataFrame:
    """One row per trained run of a case, with its final numbers.

    Args:
        case: The case (its store and checkpoints).

    Returns:
        Columns ``case``, ``regime``, ``seed``, ``run``, :data:`ACCURACY`,
        ``train accuracy (%)``, ``train loss``, ``test loss``, ``updates``,
        ``examples``, ``final lr``, ``final batch``, ``n_test``, ``stop``, then one
        column per final measure (its report label); ordered by regime, then seed.
    """
    runs = _runs(case)
    rows = []
    for row in runs.itertuples():
        meta = json.loads(str(row.meta))
        rows.append(
            {
                "case": case.name,
                "regime": str(row.regime),
                "seed": int(row.seed),  # type: ignore[call-overload]
                "run": meta.get("run"),
                "checkpoint": row.checkpoint,
                ACCURACY: 100 * float(row.test_accuracy),  # type: ignore[arg-type]
                "train accuracy (%)": 100 * float(row.train_accuracy),  # type: ignore[arg-type]
                "train loss": float(row.train_loss),  # type: ignore[arg-type]
                "test loss": float(row.test_loss),  # type: ignore[arg-type]
                "updates": int(meta["updates"]),
                "final lr": float(meta.get("final_lr", meta.get("lr", np.nan))),
                "final batch": int(meta.get("final_batch_size", meta.get("batch_size", 0))),
                "n_test": int(meta.get("n_test", 0)),
                "stop": meta.get("stop_reason", "epochs"),
            }
        )
    frame = pd.DataFrame(rows)
    if frame.empty:
        return frame
    history = curves(case)
    seen = history.sort_values("epoch").groupby("run")["examples_seen"].last()
    frame.insert(frame.columns.get_loc("updates") + 1, "examples", frame["run"].map(seen))
    scores, columns = scores_frame(load_frame(case.store, checkpoints=case.checkpoints))
    wide = wide_scores(scores, columns, frame["checkpoint"])
    for column in columns:
        frame[column.label] = wide[column.label].to_numpy(dtype=float)
    frame = frame.drop(columns="checkpoint")
    rank = {regime: i for i, regime in enumerate(order_regimes(list(frame["regime"].unique())))}
    frame = frame.sort_values(
        ["regime", "seed"], key=lambda c: c.map(rank) if c.name == "regime" else c
    )
    return frame.reset_index(drop=True)


def curves(case: OverviewCase) -> pd.DataFrame:
    """The per-epoch history of every run of a case.

    Returns:
        Columns ``case``, ``run``, ``regime``, ``seed``, ``epoch``, ``updates``,
        ``examples_seen``, ``lr``, ``batch_size``, ``test accuracy (%)``,
        ``train loss`` and ``fit_on`` (what the training loss was computed on).
    """
    history = _tracks(case, "history")
    keep = [
        "case",
        "run",
        "regime",
        "seed",
        "epoch",
        "updates",
        "examples_seen",
        "lr",
        "batch_size",
        "test_accuracy",
        "train_loss",
        "fit_on",
    ]
    history = history.reindex(columns=keep)
    history["seed"] = history["seed"].astype(int)
    history[ACCURACY] = 100 * history.pop("test_accuracy").astype(float)
    history = history.rename(columns={"train_loss": "train loss"})
    return history.sort_values(["run", "epoch"]).reset_index(drop=True)


def tracked(case: OverviewCase) -> pd.DataFrame:
    """The tracker's records of every run of a case, one row per measured step.

    Returns:
        Columns ``case``, ``run``, ``regime``, ``seed``, ``step``, ``epoch``, ``lr``,
        ``batch_size``, ``stability_threshold`` (2(1 + m)/η for momentum SGD) and each
        tracked measure of :data:`TRACKED` the store holds.
    """
    records = _tracks(case, "tracker")
    names = [name for name in TRACKED if name in records.columns]
    keep = [
        "case",
        "run",
        "regime",
        "seed",
        "step",
        "epoch",
        "lr",
        "batch_size",
        "stability_threshold",
        *names,
    ]
    records = records.reindex(columns=keep)
    if not records.empty:
        records["seed"] = records["seed"].astype(int)
    return records.sort_values(["run", "step"]).reset_index(drop=True)


def phase_ends(history: pd.DataFrame) -> list[int]:
    """The epochs (done) after which some run changed η or B, and the last epoch.

    Args:
        history: :func:`curves` rows (of one case).

    Returns:
        Sorted epochs: the union over runs of the epoch before each change of the
        learning rate or batch size, then the last epoch trained.

    Examples:
        >>> h = pd.DataFrame({"run": ["a"] * 4, "epoch": [1, 2, 3, 4],
        ...                   "lr": [0.1, 0.1, 0.02, 0.02], "batch_size": [8] * 4})
        >>> phase_ends(h)
        [2, 4]
    """
    ends: set[int] = set()
    for _, run in history.sort_values("epoch").groupby("run"):
        lr = run["lr"].to_numpy(dtype=float)
        batch = run["batch_size"].to_numpy(dtype=float)
        epochs = run["epoch"].to_numpy(dtype=float)
        changed = ~np.isclose(lr[1:], lr[:-1], rtol=1e-9) | (batch[1:] != batch[:-1])
        ends.update(round(e) for e in epochs[:-1][changed])
        if len(epochs):
            ends.add(round(epochs[-1]))
    return sorted(ends)


def at_phase_ends(records: pd.DataFrame, ends: Sequence[int]) -> pd.DataFrame:
    """Each tracked measure at the end of each phase, per run.

    Args:
        records: :func:`tracked` rows (of one case).
        ends: Epochs (done) to take them at (:func:`phase_ends`).

    Returns:
        The records measured right after those epochs (``epoch`` within 1e-6 of an
        end), with an integer ``phase end`` column.
    """
    if records.empty:
        return records.assign(**{"phase end": pd.Series(dtype=int)})
    epoch = records["epoch"].astype(float)
    nearest = epoch.round().astype(int)
    hit = nearest.isin(list(ends)) & np.isclose(epoch, nearest, atol=1e-6) & (nearest > 0)
    out = records[hit].copy()
    out["phase end"] = nearest[hit]
    return out.drop_duplicates(["run", "phase end"], keep="last").reset_index(drop=True)


@dataclass(frozen=True)
class CaseData:
    """What the answers read from one case's store.

    Attributes:
        case: The case.
        runs: :func:`final_runs`.
        history: :func:`curves`.
        tracks: :func:`tracked`.
    """

    case: OverviewCase
    runs: pd.DataFrame
    history: pd.DataFrame
    tracks: pd.DataFrame

    @property
    def regimes(self) -> list[str]:
        """The case's schedules in display order."""
        return order_regimes(list(self.runs["regime"].unique()))

    @property
    def epochs(self) -> int:
        """Epochs trained (the largest in the history)."""
        return int(self.history["epoch"].max()) if len(self.history) else 0


def load_case(case: OverviewCase) -> CaseData:
    """Read one case's runs, histories and tracks.

    Returns:
        The case's :class:`CaseData`.
    """
    return CaseData(case, final_runs(case), curves(case), tracked(case))
