"""Keskar et al.'s parametric plots in a report: the pairs, and what each curve shows.

A stored curve (:func:`flatness.load_curves`) holds the loss and accuracy on the train
and test sets at points :math:`\\theta(\\alpha) = (1-\\alpha)\\,\\theta_{SB} + \\alpha\\,
\\theta_{LB}`. Besides the figure, a report states three numbers per pair, read off the
training loss :math:`f`:

- the *barrier* :math:`\\max_{\\alpha \\in [0, 1]} f(\\theta(\\alpha)) - \\max(f(\\theta_{SB}),
  f(\\theta_{LB}))`: above zero, the two minimisers are separated by a ridge;
- the *rise beyond SB* :math:`f(\\theta(-h)) - f(\\theta_{SB})` and the *rise beyond LB*
  :math:`f(\\theta(1 + h)) - f(\\theta_{LB})` for the step :math:`h = 0.5` (or the
  largest the curve reaches): both steps have the same length in parameter space, so
  a larger rise beyond LB is Keskar et al.'s "LB sits in a sharper minimum" seen along
  this one line.

Reference:
    N. S. Keskar et al. (2017). On large-batch training for deep learning:
    Generalization gap and sharp minima. ICLR 2017, Section 2.1 and Figure 3
    (after Goodfellow, Vinyals and Saxe, 2015).
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from flatness.report.tables import DASH, Table

__all__ = ["CurveSummary", "Pair", "curve_sentence", "curve_table", "pairs"]

STEP = 0.5
"""How far beyond each end the rise of the training loss is read (in units of α)."""


@dataclass(frozen=True)
class Pair:
    """One stored parametric plot: its label, checkpoints, settings and rows."""

    label: str
    sb_path: str
    lb_path: str
    settings: dict[str, Any]
    frame: pd.DataFrame = field(repr=False)


def display_path(path: Any, root: Path | None) -> str:
    """``path`` relative to ``root`` when both allow it, else as is.

    Returns:
        The path as shown in a report.
    """
    if root is None or not isinstance(path, str) or not os.path.isabs(path):
        return str(path)
    try:
        return os.path.relpath(path, root)
    except ValueError:
        return str(path)


def pairs(curves: pd.DataFrame | None, root: Path | None = None) -> list[Pair]:
    """The pairs in a :func:`flatness.load_curves` frame, one per (label, settings, SB, LB).

    Returns:
        The pairs, in the frame's order (empty without curves).
    """
    if curves is None or curves.empty:
        return []
    keys = [k for k in ("label", "settings", "sb", "lb") if k in curves.columns]
    out = []
    for index, (key, group) in enumerate(curves.groupby(keys, sort=True, dropna=False)):
        values = dict(zip(keys, key if isinstance(key, tuple) else (key,), strict=True))
        try:
            settings = json.loads(values.get("settings") or "{}")
        except (TypeError, json.JSONDecodeError):
            settings = {}
        out.append(
            Pair(
                label=str(values.get("label") or f"pair {index + 1}"),
                sb_path=display_path(group["sb_path"].iloc[0], root)
                if "sb_path" in group
                else "SB",
                lb_path=display_path(group["lb_path"].iloc[0], root)
                if "lb_path" in group
                else "LB",
                settings=settings if isinstance(settings, dict) else {},
                frame=group,
            )
        )
    return out


@dataclass(frozen=True)
class CurveSummary:
    """What one parametric plot shows (training loss unless named otherwise).

    Attributes:
        label: The pair's label.
        loss_sb: Training loss at α = 0.
        loss_lb: Training loss at α = 1.
        barrier: Highest training loss on [0, 1] minus the higher endpoint.
        step: The step h beyond each end actually read (≤ :data:`STEP`).
        rise_sb: Training loss at α = −h minus the loss at α = 0.
        rise_lb: Training loss at α = 1 + h minus the loss at α = 1.
        test_accuracy_sb: Test accuracy at α = 0.
        test_accuracy_lb: Test accuracy at α = 1.
        clamped: The α at which extrapolated BatchNorm running variances were negative
            and clamped to zero: the loss there reflects the clamping.
    """

    label: str
    loss_sb: float
    loss_lb: float
    barrier: float
    step: float
    rise_sb: float
    rise_lb: float
    test_accuracy_sb: float
    test_accuracy_lb: float
    clamped: tuple[float, ...] = ()


def _series(frame: pd.DataFrame, split: str, metric: str) -> pd.Series:
    rows = frame[(frame["split"] == split) & (frame["metric"] == metric)]
    return rows.groupby("alpha")["value"].mean().sort_index()


def _at(series: pd.Series, alpha: float) -> float:
    if series.empty:
        return math.nan
    alphas = series.index.to_numpy(dtype=float)
    i = int(np.argmin(np.abs(alphas - alpha)))
    return float(series.iloc[i]) if abs(alphas[i] - alpha) <= 1e-9 else math.nan


def summarize(pair: Pair) -> CurveSummary:
    """Read the barrier and the rises beyond each end off a pair's training-loss curve.

    Returns:
        The endpoint losses, the barrier and the rises beyond each end.
    """
    loss = _series(pair.frame, "train", "loss")
    accuracy = _series(pair.frame, "test", "accuracy")
    loss_sb, loss_lb = _at(loss, 0.0), _at(loss, 1.0)
    inside = loss[(loss.index >= 0.0) & (loss.index <= 1.0)]
    barrier = float(inside.max() - max(loss_sb, loss_lb)) if not inside.empty else math.nan
    alphas = loss.index.to_numpy(dtype=float)
    grid = {round(float(a), 9) for a in alphas}
    steps = [-a for a in alphas if 0 < -a <= STEP + 1e-9 and round(1.0 - a, 9) in grid]
    step = float(max(steps)) if steps else 0.0
    rise_sb = _at(loss, -step) - loss_sb if step > 0 else math.nan
    rise_lb = _at(loss, 1.0 + step) - loss_lb if step > 0 else math.nan
    return CurveSummary(
        label=pair.label,
        loss_sb=loss_sb,
        loss_lb=loss_lb,
        barrier=barrier,
        step=step,
        rise_sb=rise_sb,
        rise_lb=rise_lb,
        test_accuracy_sb=_at(accuracy, 0.0),
        test_accuracy_lb=_at(accuracy, 1.0),
        clamped=tuple(float(a) for a in _series(pair.frame, "bn", "variance_clamped").index),
    )


def _num(value: float) -> str:
    return DASH if not math.isfinite(value) else f"{value:.3g}"


def curve_table(summaries: list[CurveSummary]) -> Table:
    """One row per pair: endpoint losses, the barrier, the rises beyond SB and beyond LB.

    Returns:
        The table.
    """
    rows = []
    for s in summaries:
        rows.append(
            {
                "pair": s.label,
                "train loss SB (α=0)": _num(s.loss_sb),
                "train loss LB (α=1)": _num(s.loss_lb),
                "barrier on [0, 1]": _num(s.barrier),
                "rise beyond SB": _num(s.rise_sb) + (f" (α=−{s.step:g})" if s.step else ""),
                "rise beyond LB": _num(s.rise_lb) + (f" (α={1 + s.step:g})" if s.step else ""),
                "test acc. SB / LB (%)": (
                    f"{_num(100 * s.test_accuracy_sb)} / {_num(100 * s.test_accuracy_lb)}"
                ),
            }
        )
    return Table(
        "parametric",
        "Along each line from SB to LB (training loss)",
        pd.DataFrame(rows),
        (
            "Barrier: the highest training loss between the two minimisers minus the higher "
            "of the two. Rises: the training loss a step h beyond each end minus the loss at "
            "that end; both steps are equally long in parameter space, so a larger rise "
            "beyond LB means a steeper walk out of the LB minimiser along this line.",
        ),
    )


def _clamped_text(summary: CurveSummary) -> str:
    if not summary.clamped:
        return ""
    where = ", ".join(f"{a:g}" for a in summary.clamped)
    return (
        f" At α = {where}, BatchNorm running variances extrapolated from the two ends were "
        "negative and clamped to zero, so the loss there reflects the clamping, not the "
        'landscape; score the pair with bn = "recompute" for statistics of each point.'
    )


def curve_sentence(summary: CurveSummary) -> str | None:
    """One sentence on a pair: which end rises faster, and whether a ridge separates them.

    Returns:
        The sentence; without a rise beyond both ends (too few points beyond them),
        only the note on clamped BatchNorm variances, or ``None``.
    """
    if not (math.isfinite(summary.rise_sb) and math.isfinite(summary.rise_lb)):
        return _clamped_text(summary).strip() or None
    steeper = "LB" if summary.rise_lb > summary.rise_sb else "SB"
    ratio = (
        summary.rise_lb / summary.rise_sb
        if summary.rise_sb > 0 and summary.rise_lb > 0
        else math.nan
    )
    text = (
        f"Parametric plot ({summary.label}): stepping α = {summary.step:g} beyond each end, "
        f"the training loss rises by {summary.rise_lb:.3g} beyond LB and "
        f"{summary.rise_sb:.3g} beyond SB (steeper at {steeper}"
        + (f", ratio {ratio:.3g}" if math.isfinite(ratio) else "")
        + ")"
    )
    if math.isfinite(summary.barrier):
        text += (
            f"; a barrier of {summary.barrier:.3g} separates them"
            if summary.barrier > 1e-12
            else "; the loss between them never exceeds the higher end (no barrier)"
        )
    return text + "." + _clamped_text(summary)
