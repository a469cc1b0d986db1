"""The numbers behind a report: per-regime summaries, SB vs LB, rank correlations.

:func:`analyze` turns a tidy results frame into a :class:`Study`, which the tables,
figures and the generated summary all read, so every number a report prints comes
from one place.

Which regimes are "SB" and "LB": the ones given, else the regimes labelled ``SB`` and
``LB``, else the regimes with the smallest and the largest batch size (the report
says so), else none (one regime: no comparison).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import numpy as np
import pandas as pd

from flatness.report.correlation import Correlation, rank_correlation, within_kendall
from flatness.report.frames import (
    Column,
    ReportInputError,
    last_snapshots,
    normalize,
    runs_frame,
    scores_frame,
    wide_scores,
)
from flatness.report.paired import PairedTest, holm, paired_test, within_tau_power
from flatness.report.stats import (
    MeanStd,
    RankTest,
    mean_std,
    paired_wins,
    rank_test,
)

TARGETS = {"test_accuracy": "test accuracy", "generalization_gap": "generalization gap"}
"""What sharpness is correlated with, and how the report names it."""

WITHIN_MIN_GROUP = 3
"""τ within regime is reported only when some regime has at least this many checkpoints:
with two per regime every regime adds one pair, a ±1 coin."""

PINNED_SD_POINTS = 0.5
"""Training accuracy counts as pinned (every run stopped at the same target) when its
standard deviation over all runs is below this many points."""

POWER_TAUS = (0.3, 0.5)
"""The true within-regime τ at which a report states the power of its τ test."""


@lru_cache(maxsize=64)
def _power(sizes: tuple[int, ...], tau: float, alpha: float) -> float:
    return within_tau_power(sizes, tau, n_sim=1000, alpha=alpha, seed=0)


@dataclass(frozen=True)
class Comparison:
    """SB vs LB for one quantity.

    Attributes:
        sb: Mean ± std over the SB checkpoints.
        lb: Mean ± std over the LB checkpoints.
        wins: ``(k, n)``: LB above SB in ``k`` of ``n`` seeds present in both.
        losses: ``(k, n)``: LB below SB in ``k`` of those ``n`` seeds.
        test: Mann–Whitney U test of LB vs SB (two-sided).
        paired: Wilcoxon signed-rank and sign test of LB vs SB over the paired seeds.
        holm_p: The Wilcoxon p Holm-adjusted over the measures of the report (NaN for
            the accuracies, which are not in that family).
    """

    sb: MeanStd
    lb: MeanStd
    wins: tuple[int, int]
    losses: tuple[int, int]
    test: RankTest
    paired: PairedTest
    holm_p: float = math.nan

    @property
    def ratio(self) -> float:
        """LB mean / SB mean (NaN unless both means are positive)."""
        if not self.sb.n or not self.lb.n or not (self.sb.mean > 0 and self.lb.mean > 0):
            return math.nan
        return float(self.lb.mean / self.sb.mean)


@dataclass(frozen=True)
class Study:
    """Everything a report states, computed once.

    Attributes:
        runs: One row per checkpoint (:func:`~flatness.report.frames.runs_frame`).
        scores: One row per checkpoint × scalar measure column.
        columns: The measure columns in display order.
        regimes: Regimes by increasing batch size.
        sb: The SB regime (``None`` when the runs cannot be split in two).
        lb: The LB regime.
        sb_lb_note: How ``sb`` and ``lb`` were chosen (empty when labelled so).
        accuracy: ``(regime, quantity)`` -> mean ± std, quantities ``train_accuracy``,
            ``test_accuracy`` and ``generalization_gap``.
        by_regime: ``(label, regime)`` -> mean ± std of the measure.
        comparisons: label (or an accuracy quantity) -> SB vs LB.
        correlations: ``(label, target, method)`` -> rank correlation with ``target``
            (in :data:`TARGETS`) over all checkpoints (``method`` ``"kendall"`` or
            ``"spearman"``), or Kendall's τ counted within each regime (``"within"``:
            :func:`~flatness.report.correlation.within_kendall`, with as many
            permutations as bootstrap resamples).
        batch_trend: label (or ``"test accuracy"``, ``"generalization gap"``) -> Kendall τ
            between batch size and it.
        noise_trend: The same with η/B (only when the learning rate varies; otherwise
            η/B carries no more than the batch size).
        non_finite: label -> checkpoints whose value was NaN or infinite (left out).
        not_converged: label -> checkpoints whose estimate is flagged not converged
            (kept in the statistics, named in the summary).
        uncertain: label -> median standard error / |value| when it exceeds 0.25.
        snapshots: Earlier-epoch checkpoints of runs that have a later one, left out of
            every statistic (see :func:`~flatness.report.frames.last_snapshots`).
        wide: One row per checkpoint (in the order of ``runs``), one column per label.
        settings: Bootstrap resamples, confidence and seed.
    """

    runs: pd.DataFrame
    scores: pd.DataFrame
    columns: list[Column]
    regimes: list[str]
    sb: str | None
    lb: str | None
    sb_lb_note: str
    accuracy: dict[tuple[str, str], MeanStd]
    by_regime: dict[tuple[str, str], MeanStd]
    comparisons: dict[str, Comparison]
    correlations: dict[tuple[str, str, str], Correlation]
    batch_trend: dict[str, Correlation]
    noise_trend: dict[str, Correlation]
    non_finite: dict[str, list[str]]
    not_converged: dict[str, list[str]]
    uncertain: dict[str, float]
    snapshots: list[str]
    wide: pd.DataFrame
    settings: Mapping[str, Any] = field(default_factory=dict)

    @property
    def seeds_per_regime(self) -> dict[str, int]:
        """How many checkpoints each regime has."""
        counts = self.runs.groupby("regime", observed=True).size()
        return {str(r): int(counts.get(r, 0)) for r in self.regimes}

    @property
    def single_seed(self) -> bool:
        """Whether no regime has more than one checkpoint (no spread to show)."""
        return max(self.seeds_per_regime.values(), default=0) <= 1

    @property
    def batch_sizes(self) -> list[float]:
        """The distinct known batch sizes, ascending."""
        sizes = pd.to_numeric(self.runs["batch_size"], errors="coerce").dropna().unique()
        return sorted(float(b) for b in sizes)

    @property
    def learning_rates(self) -> list[float]:
        """The distinct known learning rates, ascending."""
        rates = pd.to_numeric(self.runs["lr"], errors="coerce").dropna().unique()
        return sorted(float(r) for r in rates)

    @property
    def runs_with_lr(self) -> int:
        """How many checkpoints record a learning rate (the others have none)."""
        return int(pd.to_numeric(self.runs["lr"], errors="coerce").notna().sum())

    def axis(self, by: str) -> pd.Series:
        """Per checkpoint (in the order of ``runs``): ``batch_size``, or ``lr_over_batch``
        (η/B, the SGD noise scale of Smith et al. 2018 up to a constant).

        Returns:
            One value per checkpoint, indexed by checkpoint.

        Raises:
            ValueError: For another ``by``.
        """
        runs = self.runs.set_index("checkpoint")
        size = pd.to_numeric(runs["batch_size"], errors="coerce").astype(float)
        if by == "batch_size":
            return size
        if by == "lr_over_batch":
            return pd.to_numeric(runs["lr"], errors="coerce").astype(float) / size
        raise ValueError(f"by={by!r}: choose 'batch_size' or 'lr_over_batch'")

    @property
    def train_pinned(self) -> bool:
        """Whether every run stopped at the same training accuracy (sd below
        :data:`PINNED_SD_POINTS` points over two or more runs): then the generalization
        gap only repeats the test accuracy."""
        train = self.runs["train_accuracy"].to_numpy(dtype=float)
        train = train[np.isfinite(train)]
        return bool(train.size >= 2 and 100 * float(np.std(train, ddof=1)) < PINNED_SD_POINTS)

    @property
    def n_test(self) -> int | None:
        """The test-set size the accuracies were measured on (the runs' median), if known."""
        if "n_test" not in self.runs:
            return None
        sizes = pd.to_numeric(self.runs["n_test"], errors="coerce").dropna()
        return int(sizes.median()) if len(sizes) else None

    @property
    def within_enough(self) -> bool:
        """Whether some regime has :data:`WITHIN_MIN_GROUP` checkpoints (τ within regime
        is computed only then)."""
        return max(self.seeds_per_regime.values(), default=0) >= WITHIN_MIN_GROUP

    def within_power(self, tau: float, alpha: float = 0.05) -> float:
        """Simulated power of the within-regime τ test for this design's regime sizes
        (:func:`~flatness.report.paired.within_tau_power`, 1000 data sets).

        Returns:
            The share of simulated designs with a true within-regime τ of ``tau`` where
            the test gives p ≤ ``alpha``.
        """
        sizes = tuple(sorted(n for n in self.seeds_per_regime.values() if n >= 2))
        return _power(sizes, float(tau), float(alpha))

    @property
    def has_accuracy(self) -> bool:
        """Whether the runs carry test accuracies."""
        return bool(self.runs["test_accuracy"].notna().any())


def choose_sb_lb(
    runs: pd.DataFrame, regimes: list[str], sb: str | None, lb: str | None
) -> tuple[str | None, str | None, str]:
    """The SB and LB regimes and a note on how they were chosen.

    Raises:
        ReportInputError: If a named regime is not in the runs, or only one is named.

    Returns:
        ``(sb, lb, note)``; ``(None, None, note)`` when the runs cannot be split in two.
    """
    if (sb is None) != (lb is None):
        raise ReportInputError("name both the SB and the LB regime (sb=..., lb=...) or neither")
    if sb is not None and lb is not None:
        for name in (sb, lb):
            if name not in regimes:
                raise ReportInputError(
                    f"regime {name!r} is not in the results; they have {regimes}"
                )
        if sb == lb:
            raise ReportInputError(f"sb and lb are both {sb!r}; name two different regimes")
        return sb, lb, f"SB = {sb}, LB = {lb} (as asked)"
    if "SB" in regimes and "LB" in regimes:
        return "SB", "LB", ""
    sized = [r for r in regimes if runs.loc[runs["regime"] == r, "batch_size"].notna().any()]
    if len(sized) >= 2:
        small, large = sized[0], sized[-1]
        return (
            small,
            large,
            f"no regimes labelled SB and LB: SB = {small} (smallest batch size), "
            f"LB = {large} (largest)",
        )
    return None, None, "one regime only: no SB-vs-LB comparison"


def _relative_errors(rows: pd.DataFrame) -> np.ndarray:
    """Standard error / |value| of the rows that carry a standard error."""
    if "error" not in rows or "error_kind" not in rows:
        return np.empty(0)
    se = rows[rows["error_kind"] == "stderr"]
    err = pd.to_numeric(se["error"], errors="coerce").to_numpy(dtype=float)
    val = np.abs(pd.to_numeric(se["value"], errors="coerce").to_numpy(dtype=float))
    keep = np.isfinite(err) & np.isfinite(val) & (val > 0)
    return np.asarray(err[keep] / val[keep])


def _by_seed(frame: pd.DataFrame, column: str) -> dict[Any, float]:
    out: dict[Any, float] = {}
    for seed, value in zip(frame["seed"], frame[column], strict=True):
        if pd.notna(seed) and seed not in out:
            out[seed] = float(value)
    return out


def _compare(sb_rows: pd.DataFrame, lb_rows: pd.DataFrame, column: str) -> Comparison:
    a = sb_rows[column].to_numpy(dtype=float)
    b = lb_rows[column].to_numpy(dtype=float)
    small, large = _by_seed(sb_rows, column), _by_seed(lb_rows, column)
    return Comparison(
        sb=mean_std(a),
        lb=mean_std(b),
        wins=paired_wins(small, large),
        losses=paired_wins(large, small),
        test=rank_test(b, a),
        paired=paired_test(small, large),
    )


def analyze(
    df: pd.DataFrame,
    *,
    sb: str | None = None,
    lb: str | None = None,
    n_boot: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
) -> Study:
    """Compute everything a report states from a tidy results frame.

    Args:
        df: :func:`flatness.load_results`'s frame, or any frame with ``measure``,
            ``value`` and ``regime`` or ``batch_size``
            (see :func:`~flatness.report.frames.normalize`).
        sb: The small-batch regime (default: see the module's docstring).
        lb: The large-batch regime.
        n_boot: Bootstrap resamples for the correlations' confidence intervals.
        confidence: Their level.
        seed: The bootstrap's seed.

    Raises:
        ReportInputError: For a frame a report cannot be made of.

    Returns:
        The :class:`Study` every table, figure and sentence of a report reads.
    """
    tidy = normalize(df)
    runs, snapshots = last_snapshots(runs_frame(tidy))
    tidy = tidy[~tidy["checkpoint"].isin(snapshots)]
    runs["regime"] = runs["regime"].cat.remove_unused_categories()
    regimes = [str(r) for r in runs["regime"].cat.categories]
    sb, lb, note = choose_sb_lb(runs, regimes, sb, lb)
    scores, columns = scores_frame(tidy)

    accuracy = {}
    for regime in regimes:
        rows = runs[runs["regime"] == regime]
        for quantity in ("train_accuracy", "test_accuracy", "generalization_gap"):
            accuracy[(regime, quantity)] = mean_std(rows[quantity].to_numpy(dtype=float))

    wide = wide_scores(scores, columns, runs["checkpoint"])
    table = runs.set_index("checkpoint").join(wide, how="left")
    by_regime = {}
    non_finite = {}
    not_converged = {}
    uncertain = {}
    for column in columns:
        values = table[column.label] if column.label in table else pd.Series(dtype=float)
        present = scores[scores["label"] == column.label]
        bad = present.loc[present["value"].isna(), "checkpoint"].astype(str).tolist()
        if bad:
            non_finite[column.label] = bad
        if "converged" in present:
            flags = present["converged"].map(lambda v: v is False or v == 0)
            stuck = present.loc[flags.astype(bool), "checkpoint"].astype(str).tolist()
            if stuck:
                not_converged[column.label] = stuck
        relative = _relative_errors(present)
        if relative.size and float(np.median(relative)) > 0.25:
            uncertain[column.label] = float(np.median(relative))
        for regime in regimes:
            mask = (table["regime"] == regime).to_numpy()
            by_regime[(column.label, regime)] = mean_std(values.to_numpy(dtype=float)[mask])

    comparisons: dict[str, Comparison] = {}
    if sb is not None and lb is not None:
        sb_rows = table[table["regime"] == sb]
        lb_rows = table[table["regime"] == lb]
        for quantity in ("train_accuracy", "test_accuracy", "generalization_gap"):
            comparisons[quantity] = _compare(sb_rows, lb_rows, quantity)
        for column in columns:
            if column.label in table:
                comparisons[column.label] = _compare(sb_rows, lb_rows, column.label)
        measured = [c.label for c in columns if c.label in comparisons]
        adjusted = holm([comparisons[label].paired.wilcoxon_p for label in measured])
        for label, p in zip(measured, adjusted, strict=True):
            comparisons[label] = dataclasses.replace(comparisons[label], holm_p=float(p))

    correlations = {}
    batch_trend: dict[str, Correlation] = {}
    noise_trend: dict[str, Correlation] = {}
    sizes = table["batch_size"].to_numpy(dtype=float)
    rates = pd.to_numeric(table["lr"], errors="coerce").to_numpy(dtype=float)
    noise = rates / sizes
    lr_varies = len(set(rates[np.isfinite(rates)])) >= 2
    groups = table["regime"].astype(str).to_numpy()
    enough = max(table.groupby("regime", observed=True).size(), default=0) >= WITHIN_MIN_GROUP
    for column in columns:
        if column.label not in table:
            continue
        x = table[column.label].to_numpy(dtype=float)
        for target in TARGETS:
            y = table[target].to_numpy(dtype=float)
            for method in ("kendall", "spearman"):
                correlations[(column.label, target, method)] = rank_correlation(
                    x, y, method=method, n_boot=n_boot, confidence=confidence, seed=seed
                )
            within = within_kendall(
                x,
                y,
                groups,
                n_boot=n_boot if enough else 0,
                n_perm=n_boot if enough else 0,
                confidence=confidence,
                seed=seed,
            )
            if not enough:
                nan = math.nan
                within = dataclasses.replace(
                    within, estimate=nan, low=nan, high=nan, p_value=nan,
                    note="too few seeds per regime",
                )  # fmt: skip
            correlations[(column.label, target, "within")] = within
    trended = [(TARGETS[t], table[t]) for t in TARGETS if table[t].notna().any()]
    trended += [(c.label, table[c.label]) for c in columns if c.label in table]
    for label, values in trended:
        x = values.to_numpy(dtype=float)
        if np.isfinite(sizes).sum() >= 3 and len(set(sizes[np.isfinite(sizes)])) >= 2:
            batch_trend[label] = rank_correlation(
                sizes, x, method="kendall", n_boot=n_boot, confidence=confidence, seed=seed
            )
        if lr_varies and np.isfinite(noise).sum() >= 3:
            noise_trend[label] = rank_correlation(
                noise, x, method="kendall", n_boot=n_boot, confidence=confidence, seed=seed
            )

    return Study(
        runs=runs,
        scores=scores,
        columns=columns,
        regimes=regimes,
        sb=sb,
        lb=lb,
        sb_lb_note=note,
        accuracy=accuracy,
        by_regime=by_regime,
        comparisons=comparisons,
        correlations=correlations,
        batch_trend=batch_trend,
        noise_trend=noise_trend,
        non_finite=non_finite,
        not_converged=not_converged,
        uncertain=uncertain,
        snapshots=snapshots,
        wide=wide,
        settings={"n_boot": n_boot, "confidence": confidence, "seed": seed},
    )
