"""The Smith & Le (2018) study's answers, written from its numbers.

:func:`answer` is the study's :data:`~flatness.report.overview_case.AnswerFn`: it reads
every case (one training-set size N each) with
:func:`~flatness.studies.smithle2018_data.grid_frame` and writes

1. per N, whether test accuracy follows η/B rather than B: the share of its variance
   that η/B, B and η explain, Kendall's τ with B within each η/B level against τ with
   η/B within each B, the lack-of-fit test of "only η/B matters" (seeds as pure error),
   the test's power and the test set's noise floor;
2. the same for every measure (on a log scale), with η·λ_max against gradient
   descent's stability bound 2 (Cohen et al. 2021);
3. the batch size of the best mean test accuracy at each learning rate, and whether it
   grows by the factor the training sets differ by (B_opt ∝ εN);
4. the design's limits.

Figures and tables: :mod:`flatness.studies.smithle2018_tables`.

References:
    S. L. Smith and Q. V. Le (2018). A Bayesian perspective on generalization and
    stochastic gradient descent. ICLR 2018 (arXiv:1710.06451).

    J. M. Cohen, S. Kaur, Y. Li, J. Z. Kolter and A. Talwalkar (2021). Gradient descent
    on neural networks typically occurs at the edge of stability. ICLR 2021
    (arXiv:2103.00065).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from flatness.headlines import DISPLAY_NAMES, NOT_SHARPNESS
from flatness.report.overview_case import OverviewCase, StudyAnswer
from flatness.report.paired import binomial_floor, within_tau_power
from flatness.report.stats import format_p_value
from flatness.studies.smithle2018_data import (
    ACCURACY,
    ALPHA,
    PERMUTATIONS,
    best_batches,
    doubling_bootstrap,
    fit_table,
    grid_frame,
    ratio_text,
)
from flatness.studies.smithle2018_tables import answer_sections

__all__ = [
    "MIN_SIZES",
    "POWER_SIMULATIONS",
    "POWER_TAUS",
    "answer",
    "answer_sentences",
    "scaling_sentences",
]

MIN_SIZES = 3
"""A learning rate enters the best-batch-size comparison when trained with this many B."""

POWER_TAUS = (0.1, 0.2, 0.3)
"""The true within-level τ the power of the τ test is reported for."""

POWER_SIMULATIONS = 400
"""Simulated data sets behind each power (Monte Carlo sd ≤ 0.025)."""


def _pct(share: float) -> str:
    return f"{100 * share:.0f}%" if np.isfinite(share) else "n/a"


def _p(p: float) -> str:
    return f"p = {format_p_value(p)}"


def _p_perm(p: float) -> str:
    """A permutation p, marked where it is the smallest the shuffles can give."""
    if np.isfinite(p) and p <= 1.0 / (1 + PERMUTATIONS) + 1e-12:
        return f"p = {format_p_value(p)}, the smallest {PERMUTATIONS} shuffles give"
    return _p(p)


def _tau(estimate: float, p: float) -> str:
    if not np.isfinite(estimate):
        return "undefined"
    return f"{estimate:+.2f} ({_p_perm(p)})"


def _shares(row: pd.Series) -> str:
    return (
        f"η/B explains {_pct(row['share η/B'])} of its variance across runs, B "
        f"{_pct(row['share B'])}, η {_pct(row['share η'])} (the cells' own means "
        f"{_pct(row['share cells'])}; the rest is the seeds' spread)"
    )


def _follows(row: pd.Series) -> str:
    """Which grouping explains most, and whether it leaves something beyond the seeds."""
    names = ["η/B", "B", "η"]
    best = max(names, key=lambda n: row[f"share {n}"] if np.isfinite(row[f"share {n}"]) else -1)
    p = row[f"p holm {best}"]
    if not np.isfinite(p):
        return f"{best} explains most (no replicate seeds for a lack-of-fit test)"
    verdict = "is not rejected" if p > ALPHA else "is rejected"
    return (
        f"{best} explains most, and 'only {best} matters' {verdict} against the seeds' "
        f"spread (lack-of-fit F = {row[f'F {best}']:.2f} on {row[f'df {best}']} df, "
        f"Holm-adjusted {_p(p)})"
    )


def _lead(subject: str, row: pd.Series) -> str:
    """What the two within-group τ tests say, in words (a τ counts at Holm-adjusted α)."""

    def trend(column: str) -> str | None:
        if not row[f"p holm {column}"] <= ALPHA:
            return None
        return "rises" if row[column] > 0 else "falls"

    with_b, with_r = trend("tau B within η/B"), trend("tau η/B within B")
    b_text = f"{with_b} with B within an η/B level" if with_b else None
    r_text = f"{with_r} with η/B within a batch size" if with_r else None
    if b_text and r_text:
        return f"{subject} {r_text} and {b_text}"
    if r_text:
        return f"{subject} {r_text} and has no monotone trend with B within an η/B level"
    if b_text:
        return f"{subject} {b_text} and has no monotone trend with η/B within a batch size"
    return (
        f"{subject} has no monotone trend with B within an η/B level nor with η/B within "
        "a batch size"
    )


def _taus(row: pd.Series) -> str:
    return (
        f"Kendall's τ with B within an η/B level is "
        f"{_tau(row['tau B within η/B'], row['p tau B within η/B'])}, with η/B within a "
        f"batch size {_tau(row['tau η/B within B'], row['p tau η/B within B'])}"
    )


def _accuracy_sentence(row: pd.Series, runs: pd.DataFrame) -> str:
    cells = runs.groupby(["batch_size", "lr"]).size()
    return (
        f"N = {int(row['n_train'])} ({len(runs)} runs: {len(cells)} cells × "
        f"{int(cells.min())} seeds): {_lead('test accuracy', row)} (each τ test at α = "
        f"{ALPHA} after Holm's adjustment over the case's τ tests of accuracy and every "
        f"measure). {_taus(row)} "
        f"(permutation tests, {PERMUTATIONS} shuffles, p unadjusted); {_shares(row)}; "
        f"{_follows(row)}."
    )


def _measure_sentence(row: pd.Series, runs: pd.DataFrame) -> str:
    text = (
        f"N = {int(row['n_train'])}: {_lead(str(row['outcome']), row)}. {_taus(row)}; on a "
        f"log scale {_shares(row)}; {_follows(row)}"
    )
    if row["outcome"] == "λ_max":
        product = (runs["lr"] * pd.to_numeric(runs["λ_max"], errors="coerce")).dropna()
        if len(product):
            text += (
                f". η·λ_max has median {product.median():.2f} (range {product.min():.2f}–"
                f"{product.max():.2f}; {int((product > 2).sum())} of {len(product)} runs "
                "above 2, gradient descent's stability bound on a quadratic; λ_max is "
                "the full-batch Hessian's on the scoring examples)"
            )
    return text + "."


def _limits_sentence(runs: pd.DataFrame) -> str:
    n = int(runs["n_train"].iloc[0])
    sizes = runs.dropna(subset=[ACCURACY]).groupby("ratio").size().tolist()
    powers = [within_tau_power(sizes, t, n_sim=POWER_SIMULATIONS) for t in POWER_TAUS]
    power = ", ".join(
        f"τ = {t} with power {p:.2f}" for t, p in zip(POWER_TAUS, powers, strict=True)
    )
    accuracy = runs[ACCURACY].mean() / 100
    floor = binomial_floor(float(accuracy), int(runs["n_test"].iloc[0]))
    spread = runs.groupby(["batch_size", "lr"])[ACCURACY].std().median()
    fit = runs.groupby("ratio")["train accuracy (%)"].mean()
    return (
        f"N = {n}, limits: training accuracy averages {fit.iloc[0]:.0f}% at the lowest "
        f"η/B ({ratio_text(float(fit.index[0]))}) and {fit.max():.0f}% at its best "
        f"({ratio_text(float(fit.idxmax()))}), so accuracy along η/B mixes the noise scale "
        f"with how far training got; with η/B levels of {', '.join(map(str, sizes))} runs the "
        f"within-level τ test detects a true {power} at α = {ALPHA} before Holm's "
        f"adjustment (simulated, "
        f"{POWER_SIMULATIONS} data sets with untied x: the seeds' shared batch sizes "
        f"lower it); a test accuracy near {100 * accuracy:.0f}% on "
        f"{int(runs['n_test'].iloc[0])} test examples has a binomial sd of {floor:.1f} "
        f"points, and the seeds' sd within a cell is {spread:.1f} points (median over cells)."
    )


def _level_sentence(frame: pd.DataFrame, small: int, large: int) -> str:
    """The best η/B level (mean over its batch sizes and seeds) at two N, as g = ηN/B."""
    parts, noise = [], {}
    for n in (small, large):
        levels = frame[frame["n_train"] == n].groupby("ratio")[ACCURACY].mean().sort_values()
        ratio, runner = float(levels.index[-1]), float(levels.index[-2])
        noise[n] = ratio * n
        parts.append(
            f"{ratio_text(ratio)} at N = {n} (g = {ratio * n:.3g}, {levels.iloc[-1]:.1f}%, "
            f"{levels.iloc[-1] - levels.iloc[-2]:.1f} points above {ratio_text(runner)})"
        )
    kept = np.isclose(noise[small], noise[large])
    return (
        f"Averaged over batch sizes and seeds, the best η/B level is {' and '.join(parts)}: "
        f"the optimal noise scale g = ηN/B {'stayed' if kept else 'did not stay'} fixed as "
        f"N grew ×{large / small:g}, {'as' if kept else 'where'} Smith & Le predict an "
        f"unchanged g (the best η/B ∝ 1/N); the levels are a factor 2 apart."
    )


def scaling_sentences(best: pd.DataFrame, frame: pd.DataFrame) -> list[str]:
    """Per N the best batch size at each learning rate and the best cell; then, across
    the smallest and largest N, how the best η/B level and B_opt moved (B_opt ∝ εN).

    Args:
        best: :func:`~flatness.studies.smithle2018_data.best_batches` of ``frame``.
        frame: :func:`~flatness.studies.smithle2018_data.grid_frame`'s rows.

    Returns:
        The sentences, in that order.
    """
    sizes = sorted(frame["n_train"].unique())
    out = []
    for n in sizes:
        rows = best[best["n_train"] == n].sort_values("lr")
        listed = ", ".join(
            f"η = {r.lr:g}: B = {r.best} ({r.best_accuracy:.1f} ± {r.best_sd:.1f}%, "
            f"{r.margin:.1f} points above B = {r.runner_up}"
            f"{', the edge of the grid' if r.edge else ''})"
            for r in rows.itertuples()
        )
        means = frame[frame["n_train"] == n].groupby(["batch_size", "lr"])[ACCURACY].mean()
        b, lr = means.idxmax()
        fixed = (
            f"best batch size at a fixed learning rate (mean test accuracy over seeds; only "
            f"rates trained with ≥ {MIN_SIZES} batch sizes): {listed}"
            if len(rows)
            else f"no learning rate was trained with ≥ {MIN_SIZES} batch sizes"
        )
        if len(rows) > 1:
            steady = bool(np.all(np.diff(rows["best"].to_numpy()) >= 0))
            fixed += (
                f"; as η grows B_opt {'never falls' if steady else 'does not grow steadily'} "
                f"(Smith & Le: B_opt ∝ ε), and η/B at B_opt is "
                f"{', '.join(ratio_text(r.lr / r.best) for r in rows.itertuples())}"
            )
        cells = means.index.to_frame(index=False)
        edges = [
            name
            for name, column, value in (("B", "batch_size", b), ("η", "lr", lr))
            if value in (cells[column].min(), cells[column].max())
        ]
        edge = f", at the edge of the grid in {' and '.join(edges)}" if edges else ""
        out.append(
            f"N = {n}, {fixed}. The best cell overall is B = {b}, η = {lr:g} (η/B = "
            f"{ratio_text(lr / b)}, g = ηN/B = {lr * n / b:.3g}, {means.max():.1f}%{edge})."
        )
    if len(sizes) < 2:
        out.append(
            "Only one training-set size was trained: whether B_opt grows with N is not tested."
        )
        return out
    small, large = sizes[0], sizes[-1]
    out.append(_level_sentence(frame, small, large))
    both = (
        best[best["n_train"].isin([small, large])]
        .pivot_table(index="lr", columns="n_train", values="best")
        .dropna()
    )
    if both.empty:
        out.append(
            f"No learning rate was trained with ≥ {MIN_SIZES} batch sizes at both N = {small} "
            f"and N = {large}: whether B_opt grows with N is not tested."
        )
        return out
    factor = large / small
    ratios = both[large] / both[small]
    counts = ratios.value_counts().sort_index()
    tally = ", ".join(f"×{r:g} at {c}" for r, c in counts.items())
    matched = int(np.isclose(ratios, factor).sum())
    margin = best["margin"].median()
    verdict = (
        "as Smith & Le's B_opt ∝ εN predicts"
        if matched == len(ratios)
        else f"where Smith & Le's B_opt ∝ εN predicts ×{factor:g} at every rate"
    )
    changes = ", ".join(
        f"η = {lr:g}: {both.loc[lr, small]:.0f} → {both.loc[lr, large]:.0f}" for lr in both.index
    )
    draws = doubling_bootstrap(frame, small, large, min_sizes=MIN_SIZES)
    resampled = (
        f" Resampling the seeds within cells ({len(draws)} bootstrap draws), B_opt grew "
        f"×{factor:g} at a median {np.median(draws):g} of {len(ratios)} rates (5–95%: "
        f"{np.percentile(draws, 5):g}–{np.percentile(draws, 95):g}), at all of them in "
        f"{100 * np.mean(draws == len(ratios)):.0f}% of draws."
        if len(draws)
        else ""
    )
    out.append(
        f"From N = {small} to N = {large} (×{factor:g}) the best batch size changed {tally} "
        f"of {len(ratios)} learning rates ({changes}), {verdict}. The grid resolves B_opt "
        f"only to a factor 2, and the best B beats the runner-up by a median {margin:.1f} "
        "points: comparable to the seeds' spread, so single steps of B_opt are weak evidence."
        + resampled
    )
    return out


def _significant(row: pd.Series, column: str) -> bool:
    return bool(row[f"p holm {column}"] <= ALPHA)


def _headline(fits: pd.DataFrame, best: pd.DataFrame) -> str:
    """The answer in one sentence: accuracy, sharpness and B_opt, per N."""
    parts = []
    not_sharpness = {DISPLAY_NAMES[m] for m in NOT_SHARPNESS}
    for n, rows in fits.groupby("n_train", sort=True):
        acc = rows.iloc[0]
        follows = _significant(acc, "tau η/B within B") and not _significant(
            acc, "tau B within η/B"
        )
        accuracy = ("follows η/B rather than B" if follows else "is not explained by η/B alone") + (
            f" (τ with η/B within a batch size {acc['tau η/B within B']:+.2f}, with B within "
            f"an η/B level {acc['tau B within η/B']:+.2f})"
        )
        if acc["p holm η/B"] <= ALPHA:
            accuracy += (
                f", though its cells differ beyond η/B (lack-of-fit Holm-adjusted "
                f"{_p(acc['p holm η/B'])}; η alone explains {_pct(acc['share η'])})"
            )
        sharp = rows[
            [
                o != ACCURACY and not any(str(o).startswith(m) for m in not_sharpness)
                for o in rows["outcome"]
            ]
        ]
        moved = [
            f"{r['outcome']} {'rises' if r['tau B within η/B'] > 0 else 'falls'} with B "
            f"(τ {r['tau B within η/B']:+.2f})"
            for _, r in sharp.iterrows()
            if _significant(r, "tau B within η/B")
        ]
        still = [
            r["outcome"] for _, r in sharp.iterrows() if not _significant(r, "tau B within η/B")
        ]
        sharpness = (
            f"at a fixed η/B {', '.join(moved)}" if moved else "no sharpness measure moves with B"
        ) + (f", {', '.join(still)} shows no monotone trend with B" if moved and still else "")
        parts.append(f"at N = {n} test accuracy {accuracy}; {sharpness}")
    text = "Answer: " + "; ".join(parts) + " (Holm-adjusted τ tests, α = 0.05)."
    sizes = sorted(best["n_train"].unique())
    if len(sizes) >= 2:
        both = best.pivot_table(index="lr", columns="n_train", values="best").dropna()
        factor = sizes[-1] / sizes[0]
        if len(both):
            matched = int(np.isclose(both[sizes[-1]] / both[sizes[0]], factor).sum())
            text += (
                f" At a fixed learning rate the best batch size grew ×{factor:g} with N at "
                f"{matched} of {len(both)} rates, where Smith & Le's B_opt ∝ εN predicts all"
                f"{': reproduced' if matched == len(both) else ': not reproduced'}."
            )
    return text


def answer_sentences(frame: pd.DataFrame, fits: pd.DataFrame) -> tuple[str, ...]:
    """The answers, one sentence (or a few) per finding, from the numbers.

    Args:
        frame: :func:`~flatness.studies.smithle2018_data.grid_frame`'s rows.
        fits: :func:`fit_table` of ``frame``.

    Returns:
        The answer in one sentence; per case, the accuracy sentence, one per measure and
        its limits; then the best batch sizes and their scaling with N; then the
        design's limits.
    """
    answers: list[str] = [_headline(fits, best_batches(frame, min_sizes=MIN_SIZES))]
    for (case, _), runs in frame.groupby(["case", "n_train"], sort=False):
        rows = fits[fits["case"] == case]
        answers.append(_accuracy_sentence(rows.iloc[0], runs))
        answers += [_measure_sentence(row, runs) for _, row in rows.iloc[1:].iterrows()]
        answers.append(_limits_sentence(runs))
    answers += scaling_sentences(best_batches(frame, min_sizes=MIN_SIZES), frame)
    epochs = sorted(frame["epochs"].unique())
    seeds = frame.groupby(["case", "batch_size", "lr"]).size().min()
    answers.append(
        f"Design limits: plain SGD at a constant rate for a fixed number of epochs "
        f"({', '.join(map(str, epochs))}), so along an η/B diagonal η × updates is equal as "
        "well: the noise scale and the distance trained are not separated; the final "
        f"iterate of a noisy process is scored; {seeds} seeds per cell; the seeds share "
        "initializations across cells, so the F tests' independence is approximate; a tiny "
        "MLP on MNIST-1D, not Smith & Le's networks."
    )
    return tuple(answers)


def answer(cases: Sequence[OverviewCase], out: Path) -> StudyAnswer:
    """The study's answers, figures and tables (``StudyPlan.answer``).

    Args:
        cases: The study's cases, one per training-set size.
        out: The overview's folder (figures go to ``figures/``).

    Returns:
        The sentences of :func:`answer_sentences`, the sections of
        :func:`~flatness.studies.smithle2018_tables.answer_sections` and their tables.
    """
    frame = grid_frame(cases)
    if frame.empty:
        return StudyAnswer(answers=("No run of the study was scored: nothing to answer.",))
    fits = fit_table(frame)
    best = best_batches(frame, min_sizes=MIN_SIZES)
    sections, tables = answer_sections(frame, fits, best, out)
    return StudyAnswer(answers=answer_sentences(frame, fits), sections=sections, tables=tables)
