"""The overview's tables, figure and limits for the fixed-epochs-vs-fixed-updates study.

:func:`answer_sections` builds what the overview shows after the answers: the protocols
side by side (one row per optimizer × protocol × batch size: updates, epochs, how the
runs stopped, final training loss, test accuracy and every measure), the figure of the
gaps per protocol (one point per seed, H3's
:func:`~flatness.report.study_figures.points_figure`), the table of LB-vs-SB tests and the
design's limits (seeds, smallest attainable p, the test set's binomial noise, runs that
stopped at a cap). :func:`answer_tables` gives the same numbers as CSV tables.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from flatness.report.paired import binomial_floor, paired_min_p
from flatness.report.render import Bullets, FigureBlock, Section, TableBlock
from flatness.report.stats import format_mean_std, format_p_value
from flatness.report.study_figures import points_figure
from flatness.report.tables import Table
from flatness.studies.hoffer2017_data import (
    ACCURACY,
    MEASURES,
    QUANTITIES,
    SHARPNESS,
    Gap,
    optimizer_name,
    unconverged,
)
from flatness.studies.hoffer2017_protocols import PROTOCOLS, ROLES

__all__ = ["FIGURE", "answer_sections", "answer_tables", "gaps_frame", "protocol_table"]

FIGURE = "figures/hoffer2017-gaps.png"
"""The gap figure, relative to the overview's folder."""

_SHOWN = ("train loss", ACCURACY, *MEASURES.values())
_GROUP = "protocol"


def _cell(values: pd.Series) -> str:
    finite = pd.to_numeric(values, errors="coerce").dropna()
    if finite.empty:
        return "—"
    return format_mean_std(float(finite.mean()), float(finite.std()), len(finite))


def _count(values: pd.Series, digits: int = 0) -> str:
    low, high = float(values.min()), float(values.max())
    return f"{low:.{digits}f}" if low == high else f"{low:.{digits}f}-{high:.{digits}f}"


def _stops(values: pd.Series) -> str:
    counts = values.value_counts()
    return ", ".join(f"{reason} ×{n}" for reason, n in counts.items())


def protocol_table(cells: pd.DataFrame) -> Table:
    """One row per optimizer × protocol × batch size (mean ± sd over seeds).

    Args:
        cells: :func:`~flatness.studies.hoffer2017_data.cells_frame`'s rows.

    Returns:
        The table (key ``protocols``).
    """
    rows = []
    for (_, protocol, role), group in cells.groupby(["case", "protocol", "role"], sort=False):
        row = {
            "optimizer": str(group["optimizer"].iloc[0]),
            "protocol": f"{protocol} ({PROTOCOLS[str(protocol)]})",
            "role": str(role),
            "regime": str(group["regime"].iloc[0]),
            "B": str(int(group["batch_size"].iloc[0])),
            "seeds": str(group["seed"].nunique()),
            "updates": _count(group["updates"]),
            "epochs": _count(group["epochs"]),
            "stopped at": _stops(group["stop"]),
        }
        row.update({column: _cell(group[column]) for column in _SHOWN})
        rows.append(row)
    return Table(
        key="protocols",
        title="Every protocol and batch size: the budget used and the endpoint reached",
        frame=pd.DataFrame(rows),
        notes=(
            "Mean ± sd over seeds; updates and epochs as a range where the seeds differ. "
            "'stopped at' counts the runs by what ended them: the epoch cap, the update "
            "budget (max_updates) or the training-loss target (target_loss).",
            "SB's equal-epochs run is also its equal-updates run and its scaled-rate run "
            "(one network, shown under each protocol).",
        ),
    )


def gaps_frame(gaps: Sequence[Gap]) -> pd.DataFrame:
    """The gaps as numbers: one row per case × protocol × quantity.

    Returns:
        Columns ``case``, ``protocol``, ``quantity``, ``kind`` (``"difference"`` in points
        or ``"ratio"``), ``size``, ``low``, ``high``, ``n``, ``lb_higher``, ``lb_lower``,
        ``wilcoxon_p``, ``sign_p``, ``min_p``, ``holm_p``.
    """
    return pd.DataFrame(
        [
            {
                "case": g.case,
                "protocol": g.protocol,
                "quantity": g.quantity,
                "kind": "ratio" if g.ratio else "difference",
                "size": g.size,
                "low": g.low,
                "high": g.high,
                "n": g.test.n,
                "lb_higher": g.test.wins,
                "lb_lower": g.test.losses,
                "wilcoxon_p": g.test.wilcoxon_p,
                "sign_p": g.test.sign_p,
                "min_p": g.test.min_p,
                "holm_p": g.holm_p,
            }
            for g in gaps
        ],
        columns=["case", "protocol", "quantity", "kind", "size", "low", "high", "n",
                 "lb_higher", "lb_lower", "wilcoxon_p", "sign_p", "min_p", "holm_p"],
    )  # fmt: skip


def _gaps_table(gaps: Sequence[Gap]) -> Table:
    tested = [g for g in gaps if g.quantity in QUANTITIES]
    rows = [
        {
            "optimizer": g.case,
            "protocol": f"{g.protocol} ({PROTOCOLS[g.protocol]})",
            "quantity": "test accuracy" if g.quantity == ACCURACY else g.quantity,
            "LB vs SB": f"×{g.size:.2f}" if g.ratio else f"{g.size:+.1f} points",
            "seeds' range": (
                f"×{g.low:.2f} to ×{g.high:.2f}" if g.ratio else f"{g.low:+.1f} to {g.high:+.1f}"
            ),
            "LB higher": f"{g.test.wins}/{g.test.n}",
            "Wilcoxon p": format_p_value(g.test.wilcoxon_p),
            "sign p": format_p_value(g.test.sign_p),
            "attainable p": format_p_value(g.test.min_p),
            "Holm p": format_p_value(g.holm_p),
        }
        for g in tested
    ]
    return Table(
        key="gaps",
        title="LB against SB under each protocol, over paired seeds",
        frame=pd.DataFrame(rows),
        notes=(
            "Test accuracy: LB − SB in points (mean over seeds). Sharpness: LB / SB, the "
            "geometric mean of the seeds' ratios; its tests run on the logarithms.",
            "Wilcoxon signed-rank and sign tests are exact and two-sided; 'attainable p' is "
            "the smallest p the number of pairs allows; Holm's correction runs over the "
            "optimizer's tests in this table.",
        ),
    )


def _figure(cells: pd.DataFrame, out: Path) -> Path | None:
    """Each seed's gap to SB (accuracy) and ratio to SB (sharpness), per protocol; SB
    itself is drawn at 0 and 1, so each protocol's line starts from it."""
    parts = []
    for (case, protocol), rows in cells.groupby(["case", "protocol"], sort=False):
        small = rows[rows["role"] == "SB"].set_index("seed")
        name = optimizer_name(str(rows["optimizer"].iloc[0]))
        group = f"{protocol} ({PROTOCOLS[str(protocol)]})"
        for role in ROLES:
            other = rows[rows["role"] == role].set_index("seed")
            seeds = small.index.intersection(other.index)
            if seeds.empty:
                continue
            for quantity in (ACCURACY, *SHARPNESS):
                a = pd.to_numeric(small.loc[seeds, quantity], errors="coerce")
                b = pd.to_numeric(other.loc[seeds, quantity], errors="coerce")
                value = b - a if quantity == ACCURACY else b / a
                label = (
                    f"{name}: test accuracy − SB's (points)"
                    if quantity == ACCURACY
                    else f"{name}: {quantity} / SB's"
                )
                parts.append(
                    pd.DataFrame({
                        "batch size": int(other["batch_size"].iloc[0]),
                        "value": value.to_numpy(dtype=float),
                        _GROUP: group,
                        "panel": label,
                        "case": case,
                    })
                )  # fmt: skip
    if not parts:
        return None
    frame = pd.concat(parts, ignore_index=True)
    if not np.isfinite(frame["value"]).any():
        return None
    return points_figure(
        frame,
        x="batch size",
        y="value",
        group=_GROUP,
        panel="panel",
        path=out / FIGURE,
        order=[f"{p} ({d})" for p, d in PROTOCOLS.items()],
        logx=True,
        title="MB and LB against SB of the same seed, per protocol",
        xlabel="batch size B",
    )


def _limits(frame: pd.DataFrame, gaps: Sequence[Gap], n_seeds: int) -> list[str]:
    accuracy = float(frame[ACCURACY].mean()) / 100.0
    n_test = int(frame["n_test"].min())
    family = max((sum(g.case == c for g in gaps) for c in {g.case for g in gaps}), default=0)
    items = [
        f"{n_seeds} paired seeds per regime (seed k of every regime starts from the same "
        f"weights): an exact paired test cannot go below p = "
        f"{paired_min_p(n_seeds):.4g}, and Holm's correction runs over "
        f"{family} tests per optimizer (4 protocols × test accuracy, λ_max, ε-sharpness "
        "and trace), so the evidence for a gap is that its sign holds in every seed.",
        f"A test accuracy near {100 * accuracy:.0f} % on {n_test} test examples has a "
        f"binomial standard deviation of {binomial_floor(accuracy, n_test):.1f} points: "
        "differences of that size are within the noise of the test set itself.",
    ]
    capped = unconverged(frame)
    if capped.empty:
        targets = frame["target"].dropna()
        if not targets.empty:
            items.append(
                f"Every convergence run reached its training-loss target "
                f"({float(targets.iloc[0]):g}) before its epoch cap."
            )
    else:
        named = ", ".join(
            f"{row['case']} {row['regime']} seed {row['seed']} ({row['epochs']} epochs, "
            f"training loss {row['train loss']:.3f})"
            for _, row in capped.iterrows()
        )
        items.append(
            f"{len(capped)} convergence runs stopped at the epoch cap above the target "
            f"training loss and did not converge: {named}."
        )
    items += [
        "Under E, U and C every batch size trains with the learning rate chosen for SB; "
        "L is the control in which the rate grows with B.",
        "Sharpness values depend on the scale of the weights: the weight norm is in the "
        "table beside them, and the gradient norm says how far from a minimum a network "
        "stopped.",
    ]
    return items


def answer_sections(
    frame: pd.DataFrame, cells: pd.DataFrame, gaps: Sequence[Gap], out: Path, *, n_seeds: int
) -> tuple[Section, ...]:
    """The overview's sections after the answers.

    Args:
        frame: :func:`~flatness.studies.hoffer2017_data.runs_frame`'s rows.
        cells: Their cells (:func:`~flatness.studies.hoffer2017_data.cells_frame`).
        gaps: The LB-vs-SB gaps that the answers quote.
        out: The overview's folder (the figure goes to :data:`FIGURE` in it).
        n_seeds: Seeds per regime.

    Returns:
        "Protocols side by side" (table and figure), "LB against SB" (the tests) and
        "Design and its limits".
    """
    protocols = Section("Protocols side by side", "protocols", [TableBlock(protocol_table(cells))])
    figure = _figure(cells, out)
    if figure is not None:
        protocols.blocks.append(
            FigureBlock(
                FIGURE,
                "MB and LB against SB of the same seed: the test-accuracy difference in "
                "points and the ratio of each sharpness measure (SB itself at 0 and 1). "
                "Small points are seeds, large ones their mean; colours are protocols.",
            )
        )
    tests = Section("LB against SB", "lb-vs-sb", [TableBlock(_gaps_table(gaps))])
    limits = _limits(frame, gaps, n_seeds)
    limits_section = Section("Design and its limits", "limits", [Bullets(tuple(limits))])
    return (protocols, tests, limits_section)


def answer_tables(
    frame: pd.DataFrame, cells: pd.DataFrame, gaps: Sequence[Gap]
) -> dict[str, pd.DataFrame]:
    """The numbers behind the sections, for ``data/<key>.csv``.

    Returns:
        ``hoffer2017-runs`` (one row per run), ``hoffer2017-cells`` (per protocol cell)
        and ``hoffer2017-gaps`` (:func:`gaps_frame`).
    """
    return {
        "hoffer2017-runs": frame.drop(columns=["checkpoint"]),
        "hoffer2017-cells": cells.drop(columns=["checkpoint"]),
        "hoffer2017-gaps": gaps_frame(gaps),
    }
