"""The Smith et al. (2018) study's overview tables, figures and limits.

:func:`answer_tables` gathers the numbers (``data/<key>.csv`` of the overview):

- ``smith-schedules``: per case × schedule, mean and sd over seeds of the final test
  accuracy, training loss, updates, examples, final η and B, the final measures and the
  tracked measures at the end;
- ``smith-phases``: per case × schedule × phase end, η and B of the phase that ended,
  the test accuracy then and each tracked measure (mean over seeds);
- ``smith-comparisons``: every accuracy comparison with its paired tests;
- ``smith-runs``: one row per run.

:func:`answer_sections` turns them into the overview's sections, with the learning
curves against epochs and against updates and the tracked measures against epochs
(:func:`flatness.report.study_figures.curves_figure`: mean and min–max band over
seeds per schedule).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from flatness.report.render import FigureBlock, Paragraph, Section, TableBlock
from flatness.report.stats import format_p_value
from flatness.report.study_figures import curves_figure
from flatness.report.tables import Table
from flatness.studies.smith2018_data import (
    ACCURACY,
    ORDER,
    TRACKED,
    CaseData,
    at_phase_ends,
    finite_mean,
    phase_ends,
)

__all__ = [
    "LOSS",
    "answer_sections",
    "answer_tables",
    "figures",
    "limits",
    "phase_frame",
    "schedule_frame",
]

LOSS = "training loss (full set)"
"""The learning curves' training-loss panel (eval mode, the whole training set)."""

_RUN_NUMBERS = (ACCURACY, "train loss", "updates", "examples", "final lr", "final batch")


def schedule_frame(data: Sequence[CaseData]) -> pd.DataFrame:
    """Per case × schedule: mean and sd over seeds of each final number.

    Returns:
        ``case``, ``regime``, ``seeds``, then ``<column>`` (mean) and ``<column> sd``
        for the run numbers, the final measures and ``tracked <measure>`` (the last
        tracked value).
    """
    rows = []
    for d in data:
        runs = d.runs.copy()
        if not d.tracks.empty:
            last = d.tracks.sort_values("step").groupby("run").tail(1).set_index("run")
            for name in TRACKED:
                if name in last.columns:
                    runs[f"{TRACKED[name]} (tracked)"] = runs["run"].map(last[name])
        skip = {"case", "regime", "seed", "run", "n_test", "stop", "test loss"}
        numbers = [c for c in runs.columns if c not in skip and c != "train accuracy (%)"]
        for regime in d.regimes:
            group = runs[runs["regime"] == regime]
            row: dict[str, object] = {
                "case": d.case.name,
                "regime": regime,
                "seeds": int(group["seed"].nunique()),
            }
            for column in numbers:
                values = pd.to_numeric(group[column], errors="coerce").astype(float)
                values = values[np.isfinite(values)]
                row[column] = float(values.mean()) if len(values) else np.nan
                row[f"{column} sd"] = float(values.std(ddof=1)) if len(values) > 1 else np.nan
            rows.append(row)
    return pd.DataFrame(rows)


def phase_frame(data: Sequence[CaseData]) -> pd.DataFrame:
    """Per case × schedule × phase end: η, B, test accuracy and the tracked measures.

    Returns:
        ``case``, ``regime``, ``phase end`` (epochs done), ``lr`` and ``batch`` (of the
        phase that ended), :data:`~flatness.studies.smith2018_data.ACCURACY` (from the
        history) and each tracked measure, means over seeds.
    """
    parts = []
    for d in data:
        ends = phase_ends(d.history)
        hist = d.history[d.history["epoch"].round().astype(int).isin(ends)].copy()
        hist["phase end"] = hist["epoch"].round().astype(int)
        keys = ["regime", "phase end"]
        frame = hist.groupby(keys)[["lr", "batch_size", ACCURACY]].mean()
        at = at_phase_ends(d.tracks, ends)
        names = [n for n in TRACKED if n in at.columns]
        if names and not at.empty:
            frame = frame.join(at.groupby(keys)[names].agg(finite_mean), how="left")
        frame = frame.reset_index().rename(columns={"batch_size": "batch"})
        rank = {r: i for i, r in enumerate(d.regimes)}
        frame = frame.sort_values(keys, key=lambda c: c.map(rank) if c.name == "regime" else c)
        frame.insert(0, "case", d.case.name)
        parts.append(frame)
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()


def answer_tables(data: Sequence[CaseData], comparisons: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """The overview's CSV tables (module docstring).

    Returns:
        Key → frame, for ``data/<key>.csv``.
    """
    runs = pd.concat([d.runs for d in data], ignore_index=True)
    return {
        "smith-schedules": schedule_frame(data),
        "smith-phases": phase_frame(data),
        "smith-comparisons": comparisons,
        "smith-runs": runs,
    }


def _cell(mean: object, sd: object, digits: str) -> str:
    m, s = float(mean), float(sd)  # type: ignore[arg-type]
    if not np.isfinite(m):
        return "n/a"
    if np.isfinite(s) and s <= 1e-9 * abs(m):
        s = 0.0  # equal in every seed, up to rounding
    return f"{m:{digits}}" + (f" ± {s:{digits}}" if np.isfinite(s) else "")


def _schedule_table(frame: pd.DataFrame) -> Table:
    cells = pd.DataFrame(
        {"case": frame["case"], "schedule": frame["regime"], "seeds": frame["seeds"]}
    )
    formats = {
        ACCURACY: ".1f",
        "train loss": ".3f",
        "updates": ".0f",
        "examples": ".0f",
        "final lr": ".3g",
        "final batch": ".0f",
    }
    measures = [
        c
        for c in frame.columns
        if not c.endswith(" sd") and c not in {"case", "regime", "seeds", *formats}
    ]
    for column in [*formats, *measures]:
        if column in frame.columns:
            digits = formats.get(column, ".3g")
            cells[column] = [
                _cell(m, s, digits)
                for m, s in zip(frame[column], frame[f"{column} sd"], strict=True)
            ]
    return Table(
        "smith-schedules",
        "Final numbers per schedule (mean ± sd over seeds)",
        cells,
        notes=(
            "'(tracked)' columns are the tracker's last values on its fixed training "
            "subset; the other measures are the final network's, on the scoring examples. "
            "Non-finite values (B_simple when its |G|² estimate is ≤ 0) are left out of "
            "means.",
        ),
    )


def _phase_table(frame: pd.DataFrame) -> Table:
    cells = frame.copy()
    for column in cells.columns:
        if column in ("case", "regime", "phase end"):
            continue
        digits = ".1f" if column == ACCURACY else ".0f" if column == "batch" else ".3g"
        cells[column] = [f"{v:{digits}}" if np.isfinite(v) else "n/a" for v in cells[column]]
    cells = cells.rename(
        columns={
            "regime": "schedule",
            "lr": "η",
            "batch": "B",
            **{k: f"{v} (tracked)" for k, v in TRACKED.items()},
        }
    )
    return Table(
        "smith-phases",
        "At the end of each phase: η and B of the phase that ended, test accuracy and the "
        "tracked measures (means over seeds)",
        cells,
        notes=(
            "'phase end' counts the epochs done. Non-finite B_simple values are left out "
            "of the means; n/a: none was finite.",
        ),
    )


def _comparison_table(frame: pd.DataFrame) -> Table:
    cells = pd.DataFrame(
        {
            "case": frame["case"],
            "claim": frame["claim"],
            "b − a": [f"{b} − {a}" for a, b in zip(frame["a"], frame["b"], strict=True)],
            "gap (points)": [f"{g:+.1f}" for g in frame["gap (points)"]],
            "within ± margin": [
                f"{'yes' if w else 'no'} (±{m:.1f})"
                for w, m in zip(frame["within margin"], frame["margin (points)"], strict=True)
            ],
            "b higher / seeds": [
                f"{w}/{n}" for w, n in zip(frame["b higher"], frame["seeds"], strict=True)
            ],
            "Wilcoxon p": [format_p_value(p) for p in frame["wilcoxon p"]],
            "Holm p": [format_p_value(p) for p in frame["holm p"]],
            "smallest p": [format_p_value(p) for p in frame["smallest attainable p"]],
        }
    )
    return Table(
        "smith-comparisons",
        "Final test accuracy, schedule b against schedule a, paired over seeds",
        cells,
        notes=(
            "Holm's adjustment is over the comparisons of one case. 'Smallest p' is the "
            "least two-sided p an exact paired test can give with that many seeds.",
        ),
    )


def figures(d: CaseData, out: Path) -> list[FigureBlock]:
    """The case's learning curves and tracked measures as figures under ``out/figures``.

    Returns:
        The figure blocks (paths relative to ``out``).
    """
    blocks = []
    order = [*ORDER, *d.regimes]
    order = list(dict.fromkeys(order))
    curves = d.history.melt(
        id_vars=["regime", "seed", "epoch", "updates"],
        value_vars=[ACCURACY, "train loss"],
        var_name="metric",
        value_name="value",
    )
    curves["metric"] = curves["metric"].replace({"train loss": LOSS})
    for x, label in (("epoch", "epochs"), ("updates", "parameter updates")):
        name = f"figures/smith-{d.case.name}-curves-{x}.png"
        curves_figure(
            curves,
            x=x,
            y="value",
            group="regime",
            panel="metric",
            path=out / name,
            order=order,
            xlabel=label,
            title=f"{d.case.name}: learning curves against {label}",
        )
        blocks.append(
            FigureBlock(
                name,
                f"{d.case.name}: test accuracy and training loss "
                f"against {label} (mean and min–max band over seeds).",
            )
        )
    names = [n for n in TRACKED if n in d.tracks.columns and d.tracks[n].notna().any()]
    if names:
        tracks = d.tracks.melt(
            id_vars=["regime", "seed", "epoch"],
            value_vars=names,
            var_name="measure",
            value_name="value",
        )
        tracks["measure"] = tracks["measure"].map(TRACKED)
        name = f"figures/smith-{d.case.name}-tracked.png"
        curves_figure(
            tracks,
            x="epoch",
            y="value",
            group="regime",
            panel="measure",
            path=out / name,
            order=order,
            xlabel="epochs",
            title=f"{d.case.name}: tracked measures against epochs",
        )
        blocks.append(
            FigureBlock(
                name,
                f"{d.case.name}: λ_max, trace, ε-sharpness and the "
                "noise scale B_simple on the tracker's fixed subset, "
                "against epochs (mean and min–max band over seeds).",
            )
        )
    return blocks


def limits(data: Sequence[CaseData]) -> str:
    """The design's limits, with its numbers.

    Returns:
        One paragraph.
    """
    seeds = min(int(d.runs.groupby("regime")["seed"].nunique().min()) for d in data)
    min_p = 1.0 if seeds <= 1 else min(1.0, 2.0 / 2.0**seeds)
    epochs = max(d.epochs for d in data)
    text = (
        f"Limits: {seeds} seeds per schedule, so no paired test over seeds can give p "
        f"below {format_p_value(min_p)}; 'same accuracy' is therefore judged by an "
        "equivalence margin (1 point, or the test set's binomial noise floor if larger), "
        "never by a test. The networks are small MLPs (with and without BatchNorm) on "
        f"MNIST-1D, trained {epochs} epochs with SGD, momentum 0.9 and no weight decay or "
        "augmentation; Smith et al. trained Wide ResNets on CIFAR-10 and "
        "Inception-ResNet-V2 on ImageNet for far longer, with weight decay."
    )
    if any("const-noise" in d.regimes for d in data):
        cap = max(
            int(d.runs.loc[d.runs["regime"] == "const-noise", "final batch"].max())
            for d in data
            if "const-noise" in d.regimes
        )
        text += (
            f" The constant-noise schedule stops growing at B = {cap}: with a larger cap its "
            "learning rate diverged in the pilot, so it holds the noise scale only while B "
            "grows."
        )
    return text + (
        " The tracked measures are taken on a fixed training subset with cheap settings, "
        "so they follow trends rather than give exact values; B_simple is McCandlish et "
        "al.'s gradient noise scale, not Smith et al.'s g = εN/(B(1 − m))."
    )


def answer_sections(
    data: Sequence[CaseData], tables: Mapping[str, pd.DataFrame], out: Path
) -> list[Section]:
    """The overview's sections after the answers.

    Args:
        data: The cases' numbers.
        tables: :func:`answer_tables`'s frames.
        out: The overview's folder (figures are written under ``figures/``).

    Returns:
        Per-schedule numbers, comparisons, phase ends, figures per case, limits.
    """
    sections = [
        Section(
            "Final numbers per schedule",
            "smith-schedules",
            [TableBlock(_schedule_table(tables["smith-schedules"]))],
        ),
        Section(
            "Accuracy comparisons",
            "smith-comparisons",
            [TableBlock(_comparison_table(tables["smith-comparisons"]))],
        ),
        Section("Phases", "smith-phases", [TableBlock(_phase_table(tables["smith-phases"]))]),
    ]
    for d in data:
        sections.append(
            Section(f"Curves: {d.case.name}", f"smith-curves-{d.case.name}", list(figures(d, out)))
        )
    sections.append(Section("Limits of this design", "smith-limits", [Paragraph(limits(data))]))
    return sections
