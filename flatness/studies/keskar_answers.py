"""The de-confounded Keskar overview: does LB's gap survive equal updates and convergence?

:func:`answer` is the overview (:data:`~flatness.study.plan.StudyPlan.answer`) of the
built-in study ``keskar2017``. Per case it writes, from the numbers of
:mod:`flatness.studies.keskar_compare`:

- one sentence for each contrast — (a) SB vs LB as Keskar et al. trained them, (b) SB vs
  LB-U (equal updates), (c) SB-C vs LB-C (both to the same low training loss): the test
  accuracy gap in points with the paired Wilcoxon signed-rank and sign tests and the
  smallest p the seeds allow, the LB/SB ratio of every ε-sharpness column and λ_max with
  how many seeds agree and the Holm-adjusted p, and the updates, final training loss,
  gradient and weight norms behind them;
- one sentence answering "Does Keskar's result hold once LB has trained as long?";

then a table per case (regime × updates, epochs, how the runs stopped, final training
loss, gradient norm, weight norm, test accuracy, λ_max and ε-sharpness), a figure of
test accuracy, λ_max, ε-sharpness and the norms against updates, and the CSVs
``data/keskar-regimes.csv`` and ``data/keskar-contrasts.csv``.

Reference:
    N. S. Keskar et al. (2017). On large-batch training for deep learning: Generalization
    gap and sharp minima. ICLR 2017 (arXiv:1609.04836).

    E. Hoffer, I. Hubara and D. Soudry (2017). Train longer, generalize better: closing
    the generalization gap in large batch training of neural networks. NeurIPS 2017.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from flatness.report.overview_case import OverviewCase, StudyAnswer
from flatness.report.reference import keskar_reference
from flatness.report.render import Block, FigureBlock, Section, TableBlock
from flatness.report.stats import format_mean_std, format_p_value
from flatness.report.tables import Table
from flatness.studies.keskar_compare import (
    CONTRASTS,
    GRADIENT_NORM,
    WEIGHT_NORM,
    ContrastResult,
    MeasureContrast,
    case_frame,
    contrast,
    contrast_rows,
    regime_summary,
)

__all__ = [
    "REGIME_ORDER",
    "answer",
    "contrast_name",
    "contrast_sentence",
    "num",
    "paper_sentence",
    "verdict_sentence",
]

REGIME_ORDER = ("SB", "LB", "LB-U", "SB-C", "LB-C")
"""The regimes in the order the tables and figures show them."""

ALPHA = 0.05
"""The level a Holm-adjusted p must stay below to be called significant."""


def num(x: float) -> str:
    """A number as the sentences print it: three significant digits, whole above 1000.

    Examples:
        >>> num(6.8734), num(0.08812), num(4200.0), num(12345.6), num(float("nan"))
        ('6.87', '0.0881', '4,200', '12,346', 'n/a')
    """
    if not math.isfinite(x):
        return "n/a"
    if abs(x) >= 1000:
        return f"{x:,.0f}"
    return f"{x:.3g}"


def _points(x: float) -> str:
    """An accuracy gap in points: one decimal (a test set of 1000 resolves 0.1 points)."""
    return f"{abs(x):.1f}"


def _accuracy_clause(c: ContrastResult) -> str:
    acc = c.accuracy
    assert acc is not None
    small, large = c.contrast.small, c.contrast.large
    gap = acc.difference
    where = "below" if gap < 0 else "above"
    head = f"{large}'s test accuracy is {_points(gap)} points {where} {small}'s"
    t = acc.test
    return (
        f"{head} ({num(acc.large)} vs {num(acc.small)} %; {large} lower in {t.losses}/{t.n} "
        f"seeds; Wilcoxon p = {format_p_value(t.wilcoxon_p)}, sign p = "
        f"{format_p_value(t.sign_p)}; the smallest p {t.n} paired seeds allow is "
        f"{format_p_value(t.min_p)})"
    )


def _sharpness_clause(c: ContrastResult) -> str:
    sharp = c.sharpness
    if not sharp:
        return "no sharpness measure was scored"
    large = c.contrast.large
    higher = [m for m in sharp if m.ratio > 1]
    every = [m for m in sharp if m.test.n and m.test.wins == m.test.n]
    ratios = [m.ratio for m in sharp if math.isfinite(m.ratio)]
    span = (
        f"{large}/{c.contrast.small} = {num(min(ratios))} to {num(max(ratios))}"
        if len(ratios) > 1
        else f"{large}/{c.contrast.small} = {num(ratios[0])}"
        if ratios
        else "ratio n/a"
    )
    holm_ps = [m.holm_p for m in sharp if math.isfinite(m.holm_p)]
    significant = [m for m in sharp if math.isfinite(m.holm_p) and m.holm_p < ALPHA]
    if holm_ps:
        lowest = min(holm_ps)
        tests = (
            f"Holm-adjusted Wilcoxon p ≥ {format_p_value(lowest)} over the {len(sharp)} "
            f"measures, {len(significant)} below {ALPHA}"
        )
    else:
        tests = "no paired test possible"
    lower = [m.label for m in sharp if m.ratio < 1]
    flatter = f"; lower: {', '.join(lower)}" if lower and higher else ""
    return (
        f"{large} is sharper by {len(higher)}/{len(sharp)} measures (ε-sharpness and λ_max: "
        f"{span}; higher in every seed for {len(every)}/{len(sharp)}{flatter}; {tests})"
    )


def _others_clause(c: ContrastResult) -> str:
    small, large = c.contrast.small, c.contrast.large
    parts = []
    updates = c.others.get("updates")
    if updates is not None and updates.small > 0 and updates.large > 0:
        ratio = updates.small / updates.large
        how = (
            f"{num(ratio)}× fewer updates"
            if ratio > 1.05
            else f"{num(1 / ratio)}× more updates"
            if ratio < 1 / 1.05
            else "as many updates"
        )
        parts.append(f"{large} took {how} ({num(updates.large)} vs {num(updates.small)})")
    loss = c.others.get("final training loss")
    if loss is not None:
        parts.append(f"ended at a training loss of {num(loss.large)} vs {num(loss.small)}")
    for key in (GRADIENT_NORM, WEIGHT_NORM):
        q = c.others.get(key)
        if q is not None:
            parts.append(f"{key} {num(q.large)} vs {num(q.small)}")
    if not parts:
        return ""
    return f"; {', '.join(parts)} ({large} vs {small})"


def _target(frame: pd.DataFrame, regime: str, column: str) -> float | None:
    values = pd.to_numeric(frame.loc[frame["regime"] == regime, column], errors="coerce").dropna()
    return float(values.iloc[0]) if len(values) else None


def contrast_name(c: ContrastResult, frame: pd.DataFrame) -> str:
    """What a contrast holds equal, with the case's own training targets.

    Returns:
        E.g. ``"as trained (both until 98% training accuracy)"`` or ``"both trained to
        a training loss of 0.02 (SB-C reached it in 4/4 seeds, LB-C in 4/4)"``.
    """
    small, large = c.contrast.small, c.contrast.large
    if c.contrast.key == "a":
        target = _target(frame, small, "target_accuracy")
        if target is None:
            return "as trained"
        return f"as trained (both until {100 * target:g}% training accuracy)"
    if c.contrast.key == "b":
        return f"with equal updates ({large} trained as many updates as {small})"
    target = _target(frame, small, "target_loss")
    if target is None:
        return c.contrast.name

    def reached(regime: str) -> str:
        rows = frame[(frame["regime"] == regime) & frame["seed"].isin(c.seeds)]
        return f"{int((rows['stop_reason'] == 'target_loss').sum())}/{len(rows)}"

    counts = reached(small), reached(large)
    capped = any(a != b for a, b in (c.split("/") for c in counts))
    return (
        f"both trained to a training loss of {target:g} ({small} reached it in "
        f"{counts[0]} seeds, {large} in {counts[1]}"
        + ("; the others stopped at the epoch cap)" if capped else ")")
    )


def contrast_sentence(c: ContrastResult, frame: pd.DataFrame) -> str:
    """One contrast of one case in a sentence, written from its numbers.

    Args:
        c: The contrast.
        frame: The case's :func:`~flatness.studies.keskar_compare.case_frame`.

    Returns:
        ``"<case> (<key>) <what is equal>: <accuracy>, and <sharpness>; <updates,
        loss, norms>."``
    """
    return (
        f"{c.case} ({c.contrast.key}) {contrast_name(c, frame)}: {_accuracy_clause(c)}, and "
        f"{_sharpness_clause(c)}{_others_clause(c)}."
    )


def _persists(c: ContrastResult) -> bool:
    acc = c.accuracy
    assert acc is not None
    lower_everywhere = acc.test.n > 0 and acc.test.losses == acc.test.n
    sharper_everywhere = bool(c.sharpness) and all(m.ratio > 1 for m in c.sharpness)
    return acc.difference < 0 and lower_everywhere and sharper_everywhere


def _vanishes(c: ContrastResult) -> bool:
    acc = c.accuracy
    assert acc is not None
    weak_gap = acc.difference >= 0 or acc.test.losses <= acc.test.n / 2
    sharper = sum(m.ratio > 1 for m in c.sharpness)
    return weak_gap and sharper <= len(c.sharpness) / 2


def _gap_and_sharpness(c: ContrastResult) -> str:
    acc = c.accuracy
    assert acc is not None
    sharper = sum(m.ratio > 1 for m in c.sharpness)
    word = "less" if acc.difference < 0 else "more"
    return (
        f"{c.contrast.large} is {_points(acc.difference)} points {word} accurate than "
        f"{c.contrast.small} (lower in {acc.test.losses}/{acc.test.n} seeds) and sharper by "
        f"{sharper}/{len(c.sharpness)} measures"
    )


def verdict_sentence(case: str, results: dict[str, ContrastResult]) -> str | None:
    """'Does Keskar's result hold once LB has trained as long?' for one case.

    "Yes" when LB-U and LB-C are still less accurate in every seed and sharper by every
    measure, "no" when neither keeps a gap in more than half the seeds nor is sharper by
    more than half the measures, "partly" otherwise.

    Returns:
        The sentence, or ``None`` when the case lacks the controls.
    """
    controls = [results[k] for k in ("b", "c") if k in results]
    if not controls or "a" not in results:
        return None
    first = results["a"]
    if all(_persists(c) for c in controls):
        word = "Yes"
    elif all(_vanishes(c) for c in controls):
        word = "No"
    else:
        word = "Partly"
    acc = first.accuracy
    assert acc is not None
    parts = [f"as trained, {_gap_and_sharpness(first)}"]
    labels = {"b": "with SB's number of updates", "c": "trained to the same training loss"}
    parts += [f"{labels[c.contrast.key]}, {_gap_and_sharpness(c)}" for c in controls]
    n = min(c.n for c in [first, *controls])
    floor = min(c.accuracy.test.min_p for c in [first, *controls] if c.accuracy is not None)
    return (
        f"{case}: does Keskar's result hold once LB has trained as long? {word}: "
        f"{'; '.join(parts)}. With {n} paired seeds no paired test can reach p < "
        f"{format_p_value(floor)}, so none of these differences is significant by itself; "
        "the signs and sizes are what the seeds show."
    )


def paper_sentence(case: OverviewCase, first: ContrastResult) -> str | None:
    """How contrast (a) compares with Keskar et al.'s Tables 2 and 3 for the case's network.

    Returns:
        The sentence, or ``None`` without a reference network.
    """
    if not case.reference:
        return None
    ref = keskar_reference(case.reference)
    acc = ref[(ref.table == 2) & (ref.quantity == "test_accuracy")].set_index("regime")["mean"]
    full = ref[(ref.table == 3) & (ref.eps == 1e-3)].set_index("regime")["mean"]
    gap = float(acc["LB"] - acc["SB"])
    ratio = float(full["LB"] / full["SB"])
    ours = first.accuracy
    assert ours is not None
    full_ours = next((m for m in first.sharpness if m.label == "ε-sharpness (full, ε=1e-3)"), None)
    same_sign = (gap < 0) == (ours.difference < 0)
    ratio_text = (
        f"full-space ε-sharpness LB/SB {num(full_ours.ratio)} here vs {num(ratio)} in the paper"
        if full_ours is not None
        else f"the paper's full-space ε-sharpness ratio is {num(ratio)}"
    )
    return (
        f"{case.name} against Keskar et al.'s {case.reference} (Tables 2 and 3): the accuracy "
        f"gap has {'the same' if same_sign else 'the opposite'} sign "
        f"({_points(ours.difference)} points here, {_points(gap)} in the paper, LB "
        f"{'below' if gap < 0 else 'above'} SB there); {ratio_text}. The networks and "
        f"data are scaled down, so the sizes differ, and with {first.n} paired seeds no "
        f"paired p can fall below {format_p_value(ours.test.min_p)}: sign and size can be "
        "compared, significance cannot, so this is not a reproduction in the paper's sense."
    )


def _regime_table(name: str, summary: pd.DataFrame) -> Table:
    rows = {}
    for regime, part in summary.groupby("regime", sort=False):
        cells: dict[str, str] = {}
        for _, r in part.iterrows():
            if r["quantity"] == "stops":
                cells["stopped by"] = str(r["text"])
            else:
                cells[str(r["quantity"])] = format_mean_std(r["mean"], r["sd"], int(r["n"]))
        rows[str(regime)] = cells
    frame = pd.DataFrame.from_dict(rows, orient="index").fillna("—")
    frame.index.name = "regime"
    return Table(
        key=f"keskar-regimes-{name}",
        title=f"{name}: each regime's training, norms and sharpness (mean ± sd over seeds)",
        frame=frame.reset_index(),
        notes=(
            "λ_max and ε-sharpness change with the weights' scale; the weight norm is "
            "beside them for that reason. The gradient norm is over the scoring examples "
            "in eval mode.",
        ),
    )


def _figure(frame: pd.DataFrame, labels: Sequence[str], out: Path, name: str) -> FigureBlock | None:
    from flatness.report.study_figures import points_figure

    shown = ["test accuracy (%)", *labels, GRADIENT_NORM, WEIGHT_NORM]
    data = frame.assign(**{"test accuracy (%)": frame["test_accuracy"] * 100})
    present = [c for c in shown if c in data]
    tidy = data.melt(
        id_vars=["regime", "seed", "updates"], value_vars=present, var_name="quantity"
    ).dropna(subset=["value", "updates"])
    if tidy.empty:
        return None
    # every seed at its regime's mean number of updates: one column of points per regime
    tidy["updates"] = tidy.groupby("regime")["updates"].transform("mean").round()
    path = out / "figures" / f"keskar-{name}.png"
    points_figure(
        tidy,
        x="updates",
        y="value",
        group="regime",
        panel="quantity",
        path=path,
        order=list(REGIME_ORDER),
        logx=True,
        xlabel="updates",
        title=f"{name}: each regime's seeds against the updates they trained",
    )
    return FigureBlock(
        path.relative_to(out).as_posix(),
        "Test accuracy, λ_max, ε-sharpness and the norms of every run, placed at its "
        "regime's mean number of updates (small points: seeds; large: the regime's mean).",
    )


def answer(cases: Sequence[OverviewCase], out: Path) -> StudyAnswer:
    """The overview of the de-confounded Keskar study (see the module doc).

    Args:
        cases: The plan's cases (their stores and reports).
        out: The overview's folder; the figures go to ``out/figures/``.

    Returns:
        The answers, a section per case and the CSV tables ``keskar-regimes`` and
        ``keskar-contrasts``.
    """
    answers: list[str] = []
    sections: list[Section] = []
    regimes: list[pd.DataFrame] = []
    contrasts: list[dict[str, object]] = []
    for case in cases:
        frame, columns = case_frame(case)
        results = {
            c.key: r for c in CONTRASTS if (r := contrast(case.name, frame, columns, c)) is not None
        }
        answers += [contrast_sentence(r, frame) for r in results.values()]
        verdict = verdict_sentence(case.name, results)
        if verdict:
            answers.append(verdict)
        paper = paper_sentence(case, results["a"]) if "a" in results else None
        if paper:
            answers.append(paper)
        summary = regime_summary(frame, columns, REGIME_ORDER)
        regimes.append(summary.assign(case=case.name))
        for r in results.values():
            contrasts += contrast_rows(r)
        labels = [c.label for c in columns if c.measure in ("keskar", "lambda_max")]
        blocks: list[Block] = [TableBlock(_regime_table(case.name, summary))]
        figure = _figure(frame, labels, out, case.name)
        if figure is not None:
            blocks.append(figure)
        sections.append(
            Section(f"{case.name}: the regimes side by side", f"keskar-{case.name}", blocks)
        )
    tables = {
        "keskar-regimes": pd.concat(regimes, ignore_index=True) if regimes else pd.DataFrame(),
        "keskar-contrasts": pd.DataFrame(contrasts),
    }
    return StudyAnswer(answers=tuple(answers), sections=tuple(sections), tables=tables)


def measure_contrasts(result: ContrastResult) -> list[MeasureContrast]:
    """Every quantity of a contrast, accuracy first (for tests and tables)."""
    head = [result.accuracy] if result.accuracy else []
    return [*head, *result.sharpness, *result.others.values()]
