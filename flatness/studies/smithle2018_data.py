"""The Smith & Le (2018) study's numbers: one row per run, and the statistics on them.

:func:`grid_frame` reads every case of the study (one training-set size N each) into
one tidy frame: the run's grid cell (B, η, η/B), its noise scale g = ηN/B, its
accuracies and every measure's headline value. The statistics the answers quote are
computed here from that frame, so a test can recompute them from the stores:

- :func:`noise_fits` -- the share of an outcome's variance that η/B, B and η explain
  (:func:`flatness.report.variance_shares.grouping_fits`, seeds as replicates);
- :func:`within_taus` -- Kendall's τ with B within each η/B level and with η/B within
  each B (:func:`flatness.report.correlation.within_kendall`);
- :func:`best_batches` -- the batch size of the best mean test accuracy at each
  learning rate (Smith & Le's B_opt at fixed ε);
- :func:`fit_table` -- the first two for every outcome of every case, with Holm's
  adjustment over a case's tests.

Reference:
    S. L. Smith and Q. V. Le (2018). A Bayesian perspective on generalization and
    stochastic gradient descent. ICLR 2018 (arXiv:1710.06451).
"""

from __future__ import annotations

import json
from collections.abc import Sequence

import numpy as np
import pandas as pd

from flatness.headlines import scores_frame, wide_scores
from flatness.pipeline.readers import load_runs
from flatness.report.correlation import Correlation, within_kendall
from flatness.report.from_store import load_frame
from flatness.report.overview_case import OverviewCase
from flatness.report.paired import holm
from flatness.report.variance_shares import GroupingFit, grouping_fits

__all__ = [
    "ACCURACY",
    "ALPHA",
    "PERMUTATIONS",
    "GROUPINGS",
    "best_batches",
    "doubling_bootstrap",
    "fit_table",
    "grid_frame",
    "measure_columns",
    "noise_fits",
    "ratio_text",
    "within_taus",
]

ACCURACY = "test accuracy (%)"
"""The outcome column of the test accuracy, in points."""

RUN_FIELDS = ("case", "n_train", "n_test", "batch_size", "lr", "ratio", "noise", "seed")
"""The columns of :func:`grid_frame` that say which run a row is."""

ALPHA = 0.05
"""The significance level of every test named "significant"."""

PERMUTATIONS = 2000
"""Shuffles behind each within-level τ's p-value (so p ≥ 1/2001)."""

GROUPINGS = {"η/B": "ratio", "B": "batch_size", "η": "lr"}
"""The candidate explanations, each a grouping of the grid's cells: label → column."""


def ratio_text(ratio: float) -> str:
    """η/B as a fraction when it is one over an integer (``"1/128"``), else ``%.3g``.

    Examples:
        >>> ratio_text(2.0**-7), ratio_text(0.003)
        ('1/128', '0.003')
    """
    inverse = 1.0 / ratio
    return f"1/{inverse:.0f}" if inverse.is_integer() else f"{ratio:.3g}"


def _case_rows(case: OverviewCase) -> pd.DataFrame:
    runs = load_runs(case.store)
    runs = runs[runs["status"] == "ok"]
    if case.checkpoints is not None:
        runs = runs[runs["checkpoint"].isin(case.checkpoints)]
    meta = runs["meta"].map(json.loads)
    rows = pd.DataFrame(
        {
            "checkpoint": runs["checkpoint"].to_numpy(),
            "case": case.name,
            "n_train": meta.map(lambda m: int(m["n_train"])).to_numpy(),
            "n_test": meta.map(lambda m: int(m["n_test"])).to_numpy(),
            "batch_size": runs["batch_size"].astype(int).to_numpy(),
            "lr": runs["lr"].astype(float).to_numpy(),
            "seed": runs["seed"].astype(int).to_numpy(),
            "epochs": runs["epoch"].astype(int).to_numpy(),
            "updates": meta.map(lambda m: int(m["updates"])).to_numpy(),
            "train accuracy (%)": 100.0 * runs["train_accuracy"].to_numpy(dtype=float),
            "train loss": runs["train_loss"].to_numpy(dtype=float),
            ACCURACY: 100.0 * runs["test_accuracy"].to_numpy(dtype=float),
        }
    )
    rows["ratio"] = rows["lr"] / rows["batch_size"]
    rows["noise"] = rows["lr"] * rows["n_train"] / rows["batch_size"]
    scores, columns = scores_frame(load_frame(case.store, checkpoints=case.checkpoints))
    wide = wide_scores(scores, columns, rows["checkpoint"])
    return pd.concat([rows.reset_index(drop=True), wide.reset_index(drop=True)], axis=1)


def grid_frame(cases: Sequence[OverviewCase]) -> pd.DataFrame:
    """Every run of the study's cases, one row each.

    Args:
        cases: The study's cases (one training-set size each).

    Returns:
        Columns ``checkpoint``, :data:`RUN_FIELDS` (``ratio`` = η/B, ``noise`` = g =
        ηN/B), ``epochs``, ``updates``, ``train accuracy (%)``, ``train loss``, :data:`ACCURACY`
        and one column per measure (its report label: ``λ_max``, ``ε-sharpness ...``),
        ordered by N, η/B, B and seed.
    """
    frames = [_case_rows(case) for case in cases]
    frame = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    if frame.empty:
        return frame
    return frame.sort_values(["n_train", "ratio", "batch_size", "seed"]).reset_index(drop=True)


def measure_columns(frame: pd.DataFrame) -> list[str]:
    """The measure columns of a :func:`grid_frame`, in the report's order."""
    fixed = {
        "checkpoint",
        *RUN_FIELDS,
        "epochs",
        "updates",
        "train accuracy (%)",
        "train loss",
        ACCURACY,
    }
    return [c for c in frame.columns if c not in fixed]


def _outcome(frame: pd.DataFrame, column: str) -> np.ndarray:
    """Accuracy as is; a measure on a log10 scale where it is positive (NaN elsewhere)."""
    values = pd.to_numeric(frame[column], errors="coerce").to_numpy(dtype=float)
    if column == ACCURACY or column.startswith("train"):
        return values
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(values > 0, np.log10(values), np.nan)


def _cells(frame: pd.DataFrame) -> pd.Series:
    return frame["batch_size"].astype(str) + "|" + frame["lr"].map(repr)


def noise_fits(frame: pd.DataFrame, column: str) -> list[GroupingFit]:
    """How much of an outcome's variance η/B, B and η explain, in one case.

    Accuracy is taken in points; a measure as log10 of its value (measures vary by
    factors; non-positive values are left out).

    Args:
        frame: One case's rows of :func:`grid_frame`.
        column: The outcome.

    Returns:
        One :class:`~flatness.report.variance_shares.GroupingFit` per entry of
        :data:`GROUPINGS`, the grid's cells (B, η) as the finest grouping.
    """
    groupings = {name: frame[col].to_numpy() for name, col in GROUPINGS.items()}
    return grouping_fits(_outcome(frame, column), groupings, _cells(frame))


def within_taus(
    frame: pd.DataFrame, column: str, *, n_perm: int = 2000, n_boot: int = 0
) -> tuple[Correlation, Correlation]:
    """Kendall's τ of an outcome with B within each η/B level, and with η/B within each B.

    Args:
        frame: One case's rows of :func:`grid_frame`.
        column: The outcome.
        n_perm: Permutations of the p-values.
        n_boot: Bootstrap resamples of the intervals (0: none).

    Returns:
        ``(τ with B within η/B, τ with η/B within B)``, pooled within-group τ-b with
        permutation p-values (seed 0).
    """
    y = pd.to_numeric(frame[column], errors="coerce").to_numpy(dtype=float)
    by_ratio = within_kendall(
        frame["batch_size"].to_numpy(dtype=float),
        y,
        frame["ratio"].map(repr).to_numpy(),
        n_perm=n_perm,
        n_boot=n_boot,
        seed=0,
    )
    by_batch = within_kendall(
        frame["ratio"].to_numpy(dtype=float),
        y,
        frame["batch_size"].to_numpy(),
        n_perm=n_perm,
        n_boot=n_boot,
        seed=0,
    )
    return by_ratio, by_batch


def best_batches(frame: pd.DataFrame, *, min_sizes: int = 3) -> pd.DataFrame:
    """The batch size of the best mean test accuracy at each learning rate, per case.

    Args:
        frame: :func:`grid_frame`'s rows (any number of cases).
        min_sizes: Learning rates trained with fewer batch sizes are left out.

    Returns:
        One row per case × η: ``case``, ``n_train``, ``lr``, ``sizes`` (the batch sizes
        trained at that η), ``best`` (B_opt), ``best_accuracy`` (its mean, points),
        ``best_sd`` (its seeds' sd), ``runner_up`` (the second-best B), ``margin``
        (points between the two means), ``edge`` (B_opt is the smallest or largest B
        trained at that η) and ``seeds`` (runs per cell, the fewest).
    """
    rows = []
    for (case, n_train, lr), runs in frame.groupby(["case", "n_train", "lr"], sort=True):
        cells = runs.groupby("batch_size")[ACCURACY].agg(["mean", "std", "count"])
        cells = cells.dropna(subset=["mean"])
        if len(cells) < min_sizes:
            continue
        ranked = cells.sort_values("mean", ascending=False)
        best, second = int(ranked.index[0]), int(ranked.index[1])
        rows.append(
            {
                "case": case,
                "n_train": int(n_train),
                "lr": float(lr),
                "sizes": " ".join(str(int(b)) for b in cells.index),
                "best": best,
                "best_accuracy": float(ranked["mean"].iloc[0]),
                "best_sd": float(ranked["std"].iloc[0]),
                "runner_up": second,
                "margin": float(ranked["mean"].iloc[0] - ranked["mean"].iloc[1]),
                "edge": best in (int(cells.index.min()), int(cells.index.max())),
                "seeds": int(cells["count"].min()),
            }
        )
    return pd.DataFrame(
        rows,
        columns=[
            "case",
            "n_train",
            "lr",
            "sizes",
            "best",
            "best_accuracy",
            "best_sd",
            "runner_up",
            "margin",
            "edge",
            "seeds",
        ],
    )


def fit_table(frame: pd.DataFrame) -> pd.DataFrame:
    """Every outcome's variance shares, within-level τ and lack-of-fit tests, per case.

    Args:
        frame: :func:`~flatness.studies.smithle2018_data.grid_frame`'s rows.

    Returns:
        One row per case × outcome (test accuracy, then each measure): ``case``,
        ``n_train``, ``outcome``, the shares ``share η/B``, ``share B``, ``share η``,
        ``share cells``, ``tau B within η/B`` with ``p``, ``tau η/B within B`` with
        ``p`` (and ``p holm``, adjusted over the case's τ tests), and per grouping the
        lack-of-fit ``F``, its ``df`` and ``p`` with the Holm-adjusted ``p holm`` (over
        every lack-of-fit test of the case).
    """
    rows: list[dict[str, object]] = []
    for (case, n_train), runs in frame.groupby(["case", "n_train"], sort=False):
        first = len(rows)
        for outcome in [ACCURACY, *measure_columns(runs)]:
            fits = {f.name: f for f in noise_fits(runs, outcome)}
            by_ratio, by_batch = within_taus(runs, outcome, n_perm=PERMUTATIONS)
            row: dict[str, object] = {"case": case, "n_train": int(n_train), "outcome": outcome}
            row.update({f"share {name}": f.share for name, f in fits.items()})
            row["share cells"] = next(iter(fits.values())).cell_share
            row.update(
                {
                    "tau B within η/B": by_ratio.estimate,
                    "p tau B within η/B": by_ratio.p_value,
                    "tau η/B within B": by_batch.estimate,
                    "p tau η/B within B": by_batch.p_value,
                }
            )
            for name, f in fits.items():
                row.update(
                    {
                        f"F {name}": f.f,
                        f"df {name}": f"{f.df_lack}, {f.df_error}",
                        f"p {name}": f.p_value,
                    }
                )
            rows.append(row)
        names = [
            c.removeprefix("p ")
            for c in rows[first]
            if str(c).startswith("p ") and not str(c).startswith("p tau")
        ]
        block = np.array([[rows[i][f"p {n}"] for n in names] for i in range(first, len(rows))])
        adjusted = holm(block.astype(float))
        for i, values in zip(range(first, len(rows)), adjusted, strict=True):
            rows[i].update({f"p holm {n}": float(v) for n, v in zip(names, values, strict=True)})
        taus = ["tau B within η/B", "tau η/B within B"]
        block = np.array([[rows[i][f"p {t}"] for t in taus] for i in range(first, len(rows))])
        for i, values in zip(range(first, len(rows)), holm(block.astype(float)), strict=True):
            rows[i].update({f"p holm {t}": float(v) for t, v in zip(taus, values, strict=True)})
    return pd.DataFrame(rows)


def doubling_bootstrap(
    frame: pd.DataFrame,
    small: int,
    large: int,
    *,
    min_sizes: int = 3,
    n_boot: int = 1000,
    seed: int = 0,
) -> np.ndarray:
    """How many learning rates' B_opt grow by ``large / small`` when the seeds are resampled.

    Each draw resamples the seeds of every cell with replacement (a percentile bootstrap
    of the cells' mean test accuracy), takes B_opt at every learning rate trained with
    ``min_sizes`` batch sizes at both N, and counts the rates whose B_opt at ``large`` is
    ``large / small`` times that at ``small``.

    Args:
        frame: :func:`grid_frame`'s rows.
        small: The smaller training-set size.
        large: The larger training-set size.
        min_sizes: Learning rates trained with fewer batch sizes are left out.
        n_boot: Resamples.
        seed: Seed of the resampling.

    Returns:
        The count per draw (``n_boot`` integers); empty when no learning rate qualifies.
    """
    rng = np.random.default_rng(seed)
    means: dict[tuple[int, float, int], np.ndarray] = {}
    for (n, lr, b), runs in frame.groupby(["n_train", "lr", "batch_size"], sort=True):
        values = runs[ACCURACY].dropna().to_numpy(dtype=float)
        if len(values):
            draws = rng.integers(0, len(values), size=(n_boot, len(values)))
            means[(int(n), float(lr), int(b))] = values[draws].mean(axis=1)
    rates = sorted({lr for (_, lr, _) in means})
    counts = np.zeros(n_boot, dtype=int)
    used = 0
    for lr in rates:
        sizes = {n: sorted(b for (m, r, b) in means if m == n and r == lr) for n in (small, large)}
        if min(len(sizes[small]), len(sizes[large])) < min_sizes:
            continue
        used += 1
        best = {
            n: np.asarray(sizes[n])[
                np.argmax(np.stack([means[(n, lr, b)] for b in sizes[n]]), axis=0)
            ]
            for n in (small, large)
        }
        counts += np.isclose(best[large], best[small] * large / small)
    return counts if used else np.zeros(0, dtype=int)
