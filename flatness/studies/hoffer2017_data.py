"""The numbers of the fixed-epochs-vs-fixed-updates study: one row per run, and the gaps.

:func:`runs_frame` reads every case of :mod:`flatness.studies.hoffer2017` (one optimizer
each) into one tidy frame: the run's regime, seed, batch size, updates, epochs, why it
stopped, its final training loss, its test accuracy and every measure's headline value.
:func:`cells_frame` spreads it over the protocols (SB's E run is also its U and L run),
and :func:`protocol_gaps` compares LB with SB under each protocol over paired seeds:

- the test-accuracy gap LB − SB in points (:func:`flatness.report.paired.paired_test` on
  the accuracies);
- the sharpness ratio LB / SB of λ_max, ε-sharpness and the trace (the geometric mean of
  the seeds' ratios; the paired test on the logarithms, so a ratio of 2 and one of 1/2
  weigh the same);

with Holm's correction (:func:`flatness.report.paired.holm`) over every test of one
optimizer. A test can recompute every number the answers print from these functions.

Reference:
    S. Holm (1979). A simple sequentially rejective multiple test procedure.
    Scandinavian Journal of Statistics 6(2).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from flatness.headlines import scores_frame, wide_scores
from flatness.report.case_runs import scored_runs
from flatness.report.from_store import load_frame
from flatness.report.overview_case import OverviewCase
from flatness.report.paired import PairedTest, holm, paired_test
from flatness.studies.hoffer2017_protocols import PROTOCOLS, ROLES, cells_of

__all__ = [
    "ACCURACY",
    "MEASURES",
    "QUANTITIES",
    "SHARPNESS",
    "Gap",
    "cells_frame",
    "optimizer_name",
    "protocol_gaps",
    "runs_frame",
    "unconverged",
]

ACCURACY = "test accuracy (%)"
"""The test accuracy column, in points."""

MEASURES: dict[str, str] = {
    "lambda_max": "λ_max",
    "keskar": "ε-sharpness",
    "trace": "trace",
    "gradient_norm": "gradient norm",
    "weight_norm": "weight norm",
}
"""Measure (store name) → the column of :func:`runs_frame` holding its headline value."""

SHARPNESS: tuple[str, ...] = ("λ_max", "ε-sharpness", "trace")
"""The sharpness measures compared as ratios LB / SB."""

QUANTITIES: tuple[str, ...] = (ACCURACY, *SHARPNESS)
"""What :func:`protocol_gaps` compares: the accuracy as a difference, the sharpness
measures as ratios."""

_TARGETS = ("target_loss", "target_accuracy")


def optimizer_name(optimizer: str) -> str:
    """How an optimizer is named in a sentence.

    Examples:
        >>> optimizer_name("sgd"), optimizer_name("adam")
        ('SGD with momentum', 'Adam')
    """
    return {"sgd": "SGD with momentum", "adam": "Adam"}.get(optimizer, optimizer)


def _case_rows(case: OverviewCase) -> pd.DataFrame:
    runs = scored_runs(case)
    meta = runs["meta"]
    config = meta.map(lambda m: m.get("config", {}))
    target = config.map(lambda c: next((c[k] for k in _TARGETS if c.get(k) is not None), None))
    rows = pd.DataFrame(
        {
            "checkpoint": runs["checkpoint"].to_numpy(),
            "case": case.name,
            "optimizer": meta.map(lambda m: str(m.get("optimizer", ""))).to_numpy(),
            "regime": runs["regime"].astype(str).to_numpy(),
            "seed": runs["seed"].astype(int).to_numpy(),
            "batch_size": runs["batch_size"].astype(int).to_numpy(),
            "lr": runs["lr"].astype(float).to_numpy(),
            "updates": meta.map(lambda m: int(m["updates"])).to_numpy(),
            "epochs": runs["epoch"].astype(int).to_numpy(),
            "stop": runs["stop_reason"].to_numpy(),
            "target": target.to_numpy(dtype=object),
            "n_test": meta.map(lambda m: int(m["n_test"])).to_numpy(),
            "train loss": runs["train_loss"].to_numpy(dtype=float),
            "train accuracy (%)": 100.0 * runs["train_accuracy"].to_numpy(dtype=float),
            ACCURACY: 100.0 * runs["test_accuracy"].to_numpy(dtype=float),
        }
    )
    scores, columns = scores_frame(load_frame(case.store, checkpoints=case.checkpoints))
    wide = wide_scores(scores, columns, rows["checkpoint"]).reset_index(drop=True)
    for measure, name in MEASURES.items():
        found = [c.label for c in columns if c.measure == measure]
        rows[name] = wide[found[0]].to_numpy(dtype=float) if found else np.nan
    return rows


def runs_frame(cases: Sequence[OverviewCase]) -> pd.DataFrame:
    """Every run of the study's cases, one row each.

    Args:
        cases: The study's cases (one optimizer each).

    Returns:
        Columns ``checkpoint``, ``case``, ``optimizer``, ``regime``, ``seed``,
        ``batch_size``, ``lr`` (the initial rate), ``updates``, ``epochs``, ``stop`` (why
        the run stopped: ``"epochs"``, ``"max_updates"``, ``"target_loss"``, ...),
        ``target`` (its training-loss or accuracy target, or ``None``), ``n_test``,
        ``train loss``, ``train accuracy (%)``, :data:`ACCURACY` and one column per
        :data:`MEASURES` value (NaN where not scored); ordered by case, batch size,
        regime and seed.
    """
    frames = [_case_rows(case) for case in cases]
    frame = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    if frame.empty:
        return frame
    order = {case.name: i for i, case in enumerate(cases)}
    frame["_case"] = frame["case"].map(order)
    frame = frame.sort_values(["_case", "batch_size", "regime", "seed"])
    return frame.drop(columns="_case").reset_index(drop=True)


def cells_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """:func:`runs_frame`'s rows spread over the protocols' cells.

    A run that stands for several cells (SB's E run is also its U and L run) appears
    once per cell; runs of labels outside the study are dropped.

    Returns:
        The rows with two more columns, ``protocol`` (a key of
        :data:`~flatness.studies.hoffer2017_protocols.PROTOCOLS`) and ``role``
        (``SB``, ``MB``, ``LB``), ordered by case, protocol, role and seed.
    """
    parts = []
    for label, rows in frame.groupby("regime", sort=False):
        for protocol, role in cells_of(str(label)):
            parts.append(rows.assign(protocol=protocol, role=role))
    if not parts:
        return frame.assign(protocol=pd.Series(dtype=str), role=pd.Series(dtype=str))
    cells = pd.concat(parts, ignore_index=True)
    keys = {
        "_p": cells["protocol"].map(list(PROTOCOLS).index),
        "_r": cells["role"].map(list(ROLES).index),
        "_c": cells["case"].map({c: i for i, c in enumerate(frame["case"].unique())}),
    }
    cells = cells.assign(**keys).sort_values(["_c", "_p", "_r", "seed"])
    return cells.drop(columns=list(keys)).reset_index(drop=True)


@dataclass(frozen=True)
class Gap:
    """LB against SB under one protocol, for one quantity, over paired seeds.

    Attributes:
        case: The case (optimizer).
        protocol: The protocol letter.
        quantity: :data:`ACCURACY` or a sharpness column (``"λ_max"``, ...).
        size: The accuracy gap LB − SB in points (mean over seeds), or the geometric
            mean of the seeds' ratios LB / SB.
        low: The smallest seed's gap or ratio.
        high: The largest.
        per_seed: Seed → the seed's gap (points) or ratio.
        test: The paired test of LB against SB (on the accuracies; on the logarithms of
            a measure); ``wins`` counts seeds where LB is higher.
        holm_p: Its Wilcoxon p after Holm's correction over the case's tests.
    """

    case: str
    protocol: str
    quantity: str
    size: float
    low: float
    high: float
    per_seed: Mapping[int, float]
    test: PairedTest
    holm_p: float

    @property
    def ratio(self) -> bool:
        """Whether :attr:`size` is a ratio (a measure) rather than a difference."""
        return self.quantity != ACCURACY

    @property
    def direction(self) -> int:
        """+1 when LB is higher than SB in every seed, -1 when lower in every one, else 0."""
        if self.test.n == 0:
            return 0
        if self.test.wins == self.test.n:
            return 1
        if self.test.losses == self.test.n:
            return -1
        return 0


def _paired_values(cells: pd.DataFrame, role: str, quantity: str) -> dict[int, float]:
    rows = cells[cells["role"] == role]
    values = pd.to_numeric(rows[quantity], errors="coerce").to_numpy(dtype=float)
    if quantity != ACCURACY:
        with np.errstate(divide="ignore", invalid="ignore"):
            values = np.where(values > 0, np.log(values), np.nan)
    return {int(s): float(v) for s, v in zip(rows["seed"], values, strict=True) if np.isfinite(v)}


def protocol_gaps(
    cells: pd.DataFrame, *, large: str = "LB", quantities: Sequence[str] = QUANTITIES
) -> list[Gap]:
    """LB (or another role) against SB under every protocol and quantity, per case.

    Args:
        cells: :func:`cells_frame`'s rows.
        large: The role compared with SB (``"LB"`` or ``"MB"``).
        quantities: :data:`ACCURACY` (compared as a difference) and measure columns
            (as ratios); Holm's family is one case's gaps of these.

    Returns:
        One :class:`Gap` per case × protocol × quantity with at least one seed in both
        roles, in that order.
    """
    gaps: list[Gap] = []
    for case, rows in cells.groupby("case", sort=False):
        found: list[dict[str, Any]] = []
        for protocol in PROTOCOLS:
            sub = rows[rows["protocol"] == protocol]
            for quantity in quantities:
                if quantity not in sub:
                    continue
                a = _paired_values(sub, "SB", quantity)
                b = _paired_values(sub, large, quantity)
                seeds = sorted(set(a) & set(b))
                if not seeds:
                    continue
                diff = {s: b[s] - a[s] for s in seeds}
                if quantity == ACCURACY:
                    per_seed = diff
                    size = float(np.mean(list(diff.values())))
                else:
                    per_seed = {s: math.exp(d) for s, d in diff.items()}
                    size = math.exp(float(np.mean(list(diff.values()))))
                values = list(per_seed.values())
                found.append(
                    {"case": str(case), "protocol": protocol, "quantity": quantity,
                     "size": size, "low": min(values), "high": max(values),
                     "per_seed": per_seed, "test": paired_test(a, b)}
                )  # fmt: skip
        adjusted = holm([item["test"].wilcoxon_p for item in found]) if found else np.empty(0)
        gaps += [Gap(**item, holm_p=float(p)) for item, p in zip(found, adjusted, strict=True)]
    return gaps


def unconverged(frame: pd.DataFrame) -> pd.DataFrame:
    """Runs with a target that stopped without reaching it (at a cap).

    Returns:
        :func:`runs_frame`'s rows whose ``target`` is set and whose ``stop`` is not a
        target.
    """
    has_target = frame["target"].notna()
    return frame[has_target & ~frame["stop"].isin(_TARGETS)]
