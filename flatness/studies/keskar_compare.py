"""The numbers behind the de-confounded Keskar overview: regimes side by side, and contrasts.

A case of :mod:`flatness.studies.keskar2017` trains SB and LB as Keskar et al. did
(until 98% training accuracy), LB with SB's number of updates (``LB-U``) and both to a
low training loss (``SB-C``, ``LB-C``). :func:`case_frame` reads one row per checkpoint
from the case's store (the run's regime, seed, updates, losses and accuracies, and every
scalar measure's headline under its report label); :func:`regime_summary` averages it
per regime; :func:`contrast` compares two regimes over the seeds they share, paired by
seed (:func:`flatness.report.paired.paired_test`, Holm over the sharpness measures).
:mod:`flatness.studies.keskar_answers` writes the sentences from these numbers.

Reference:
    N. S. Keskar et al. (2017). On large-batch training for deep learning: Generalization
    gap and sharp minima. ICLR 2017 (arXiv:1609.04836).

    S. Holm (1979). A simple sequentially rejective multiple test procedure.
    Scandinavian Journal of Statistics 6(2), 65-70.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from flatness.headlines import Column, scores_frame
from flatness.pipeline.readers import load_runs
from flatness.report.from_store import load_frame
from flatness.report.overview_case import OverviewCase
from flatness.report.paired import PairedTest, holm, paired_test

__all__ = [
    "CONTRASTS",
    "GRADIENT_NORM",
    "SHARPNESS_MEASURES",
    "WEIGHT_NORM",
    "Contrast",
    "ContrastResult",
    "MeasureContrast",
    "case_frame",
    "contrast",
    "contrast_rows",
    "regime_summary",
    "sharpness_labels",
]

GRADIENT_NORM = "gradient norm"
"""The report label of the ``gradient_norm`` measure's headline (its 2-norm)."""
WEIGHT_NORM = "weight norm"
"""The report label of the ``weight_norm`` measure's headline (all parameters)."""
SHARPNESS_MEASURES = ("keskar", "lambda_max")
"""The measures each contrast tests (Keskar's ε-sharpness columns and λ_max)."""

RUN_FIELDS = ("updates", "epoch", "stop_reason", "n_test")
"""What :func:`case_frame` reads from each run's metadata besides the runs table."""
TARGETS = ("target_accuracy", "target_loss")
"""The training targets :func:`case_frame` reads from each run's configuration."""


@dataclass(frozen=True)
class Contrast:
    """Two regimes of a case compared over the seeds they share.

    Attributes:
        key: ``"a"``, ``"b"`` or ``"c"``.
        name: What the comparison holds equal, in words.
        small: The small-batch regime's label.
        large: The large-batch regime's label.
    """

    key: str
    name: str
    small: str
    large: str


CONTRASTS: tuple[Contrast, ...] = (
    Contrast("a", "as trained (both until 98% training accuracy)", "SB", "LB"),
    Contrast("b", "with equal updates (LB trained as many updates as SB)", "SB", "LB-U"),
    Contrast("c", "both trained to the same low training loss", "SB-C", "LB-C"),
)
"""Keskar et al.'s comparison and its two controls."""


@dataclass(frozen=True)
class MeasureContrast:
    """One quantity of a contrast over the paired seeds.

    Attributes:
        label: The quantity (a report label, or ``"test accuracy (%)"``).
        small: Its mean over the paired seeds in the small-batch regime.
        large: Its mean in the large-batch regime.
        test: The paired test of large against small (``wins``: large > small).
        holm_p: The Wilcoxon p, Holm-adjusted over the contrast's sharpness measures
            (NaN for the other quantities).
    """

    label: str
    small: float
    large: float
    test: PairedTest
    holm_p: float = math.nan

    @property
    def ratio(self) -> float:
        """``large / small`` (NaN when small is not positive)."""
        return self.large / self.small if self.small > 0 else math.nan

    @property
    def difference(self) -> float:
        """``large - small``."""
        return self.large - self.small


@dataclass(frozen=True)
class ContrastResult:
    """A contrast measured on one case.

    Attributes:
        case: The case's name.
        contrast: What was compared.
        seeds: The seeds both regimes have.
        accuracy: Test accuracy in percent (its ``difference`` is the gap in points).
        sharpness: Each sharpness measure, Holm-adjusted over them.
        others: Updates, epochs, final training loss, gradient and weight norms.
    """

    case: str
    contrast: Contrast
    seeds: tuple[int, ...]
    accuracy: MeasureContrast | None
    sharpness: tuple[MeasureContrast, ...]
    others: Mapping[str, MeasureContrast]

    @property
    def n(self) -> int:
        """How many seeds are paired."""
        return len(self.seeds)


def case_frame(case: OverviewCase) -> tuple[pd.DataFrame, list[Column]]:
    """One row per scored checkpoint of a case: its run and its measures' headlines.

    Returns:
        ``(frame, columns)``: the frame has ``checkpoint``, ``regime``, ``seed``,
        ``batch_size``, ``updates``, ``epoch``, ``stop_reason``, ``n_test``,
        ``target_accuracy``, ``target_loss`` (the run's training targets),
        ``train_loss``, ``train_accuracy``, ``test_accuracy`` and one column per
        scalar measure label; ``columns`` are those labels'
        :class:`~flatness.headlines.Column` s in the report's order.
    """
    runs = load_runs(case.store)
    runs = runs[runs["status"] == "ok"]
    if case.checkpoints is not None:
        runs = runs[runs["checkpoint"].isin(set(case.checkpoints))]
    meta = [json.loads(text) if isinstance(text, str) else {} for text in runs["meta"]]
    runs = runs.assign(**{key: [m.get(key) for m in meta] for key in RUN_FIELDS})
    # runs trained before stop_reason existed: a reached target was then always accuracy
    runs = runs.assign(stop_reason=[m.get("stop_reason") or _old_stop(m) for m in meta])
    configs = [m.get("config") or {} for m in meta]
    runs = runs.assign(**{key: [c.get(key) for c in configs] for key in TARGETS})
    runs = runs.assign(epoch=[m.get("epoch", e) for m, e in zip(meta, runs["epoch"], strict=True)])
    keep = ["checkpoint", "regime", "seed", "batch_size", *RUN_FIELDS, *TARGETS]
    keep += ["train_loss", "train_accuracy", "test_accuracy"]
    frame = runs[list(dict.fromkeys(keep))].reset_index(drop=True)
    scores, columns = scores_frame(load_frame(case.store, checkpoints=case.checkpoints))
    if columns:
        wide = scores.pivot_table(
            index="checkpoint", columns="label", values="value", aggfunc="first"
        )
        frame = frame.merge(wide, left_on="checkpoint", right_index=True, how="left")
    frame["seed"] = frame["seed"].astype(int)
    return frame, columns


def _old_stop(meta: Mapping[str, Any]) -> str | None:
    """The stop reason of a run whose metadata predates ``stop_reason``."""
    if "reached_target" not in meta:
        return None
    return "target_accuracy" if meta["reached_target"] else "epochs"


def sharpness_labels(columns: Sequence[Column]) -> list[str]:
    """The labels of the columns each contrast tests (:data:`SHARPNESS_MEASURES`)."""
    return [c.label for c in columns if c.measure in SHARPNESS_MEASURES]


def _by_seed(frame: pd.DataFrame, regime: str, column: str, scale: float = 1.0) -> dict[int, float]:
    rows = frame[frame["regime"] == regime]
    if column not in rows:
        return {}
    values = pd.to_numeric(rows[column], errors="coerce") * scale
    return {int(s): float(v) for s, v in zip(rows["seed"], values, strict=True) if math.isfinite(v)}


def _quantity(
    frame: pd.DataFrame, contrast: Contrast, column: str, label: str, scale: float = 1.0
) -> MeasureContrast | None:
    a = _by_seed(frame, contrast.small, column, scale)
    b = _by_seed(frame, contrast.large, column, scale)
    seeds = sorted(set(a) & set(b))
    if not seeds:
        return None
    small = float(np.mean([a[s] for s in seeds]))
    large = float(np.mean([b[s] for s in seeds]))
    return MeasureContrast(label, small, large, paired_test(a, b))


OTHER_QUANTITIES: tuple[tuple[str, str], ...] = (
    ("updates", "updates"),
    ("epoch", "epochs"),
    ("train_loss", "final training loss"),
    (GRADIENT_NORM, GRADIENT_NORM),
    (WEIGHT_NORM, WEIGHT_NORM),
)
"""(frame column, name) of the quantities each contrast reports besides accuracy."""


def contrast(
    name: str, frame: pd.DataFrame, columns: Sequence[Column], which: Contrast
) -> ContrastResult | None:
    """Compare two regimes of one case, paired by seed.

    Args:
        name: The case's name.
        frame: The case's :func:`case_frame`.
        columns: Its measure columns.
        which: The two regimes.

    Returns:
        The result, or ``None`` when the case lacks either regime or they share no seed.
    """
    regimes = set(frame["regime"])
    if which.small not in regimes or which.large not in regimes:
        return None
    accuracy = _quantity(frame, which, "test_accuracy", "test accuracy (%)", 100.0)
    if accuracy is None:
        return None
    sharp = [
        m for m in (_quantity(frame, which, lab, lab) for lab in sharpness_labels(columns)) if m
    ]
    adjusted = holm([m.test.wilcoxon_p for m in sharp]) if sharp else np.array([])
    sharp = [
        MeasureContrast(m.label, m.small, m.large, m.test, float(p))
        for m, p in zip(sharp, adjusted, strict=True)
    ]
    others = {
        label: q
        for column, label in OTHER_QUANTITIES
        if (q := _quantity(frame, which, column, label)) is not None
    }
    a = _by_seed(frame, which.small, "test_accuracy")
    b = _by_seed(frame, which.large, "test_accuracy")
    return ContrastResult(
        name, which, tuple(sorted(set(a) & set(b))), accuracy, tuple(sharp), others
    )


def regime_summary(
    frame: pd.DataFrame, columns: Sequence[Column], order: Sequence[str]
) -> pd.DataFrame:
    """Each regime's quantities, mean and standard deviation over its seeds.

    Args:
        frame: A case's :func:`case_frame`.
        columns: Its measure columns.
        order: The regimes in the order to show them (others follow).

    Returns:
        A tidy frame: ``regime``, ``quantity``, ``mean``, ``sd``, ``n`` (test and
        training accuracy in percent), and a ``stops`` quantity whose ``mean`` is NaN and
        whose ``text`` says how the runs stopped (``"3/3 target_accuracy"``).
    """
    quantities: list[tuple[str, str, float]] = [
        ("updates", "updates", 1.0),
        ("epoch", "epochs", 1.0),
        ("train_loss", "final training loss", 1.0),
        ("train_accuracy", "training accuracy (%)", 100.0),
        ("test_accuracy", "test accuracy (%)", 100.0),
        (GRADIENT_NORM, GRADIENT_NORM, 1.0),
        (WEIGHT_NORM, WEIGHT_NORM, 1.0),
    ]
    quantities += [(label, label, 1.0) for label in sharpness_labels(columns)]
    regimes = [r for r in order if r in set(frame["regime"])]
    regimes += sorted(set(frame["regime"]) - set(regimes))
    rows: list[dict[str, Any]] = []
    for regime in regimes:
        part = frame[frame["regime"] == regime]
        stops = part["stop_reason"].fillna("unknown").value_counts()
        text = ", ".join(f"{count}/{len(part)} {reason}" for reason, count in stops.items())
        rows.append({"regime": regime, "quantity": "stops", "mean": math.nan, "sd": math.nan,
                     "n": len(part), "text": text})  # fmt: skip
        for column, name, scale in quantities:
            if column not in part:
                continue
            values = pd.to_numeric(part[column], errors="coerce").dropna() * scale
            if values.empty:
                continue
            sd = float(values.std(ddof=1)) if len(values) > 1 else math.nan
            rows.append({"regime": regime, "quantity": name, "mean": float(values.mean()),
                         "sd": sd, "n": len(values), "text": ""})  # fmt: skip
    return pd.DataFrame(rows, columns=["regime", "quantity", "mean", "sd", "n", "text"])


def contrast_rows(result: ContrastResult) -> list[dict[str, Any]]:
    """A contrast as tidy rows for the overview's CSV (one per quantity).

    Returns:
        Dicts with ``case``, ``contrast``, ``small``, ``large``, ``quantity``, ``n``,
        ``small_mean``, ``large_mean``, ``difference``, ``ratio``, ``large_higher``,
        ``large_lower``, ``wilcoxon_p``, ``sign_p``, ``min_p`` and ``holm_p``.
    """
    quantities = [result.accuracy] if result.accuracy else []
    quantities += [*result.sharpness, *result.others.values()]
    return [
        {
            "case": result.case,
            "contrast": result.contrast.key,
            "small": result.contrast.small,
            "large": result.contrast.large,
            "quantity": q.label,
            "n": q.test.n,
            "small_mean": q.small,
            "large_mean": q.large,
            "difference": q.difference,
            "ratio": q.ratio,
            "large_higher": q.test.wins,
            "large_lower": q.test.losses,
            "wilcoxon_p": q.test.wilcoxon_p,
            "sign_p": q.test.sign_p,
            "min_p": q.test.min_p,
            "holm_p": q.holm_p,
        }
        for q in quantities
    ]
