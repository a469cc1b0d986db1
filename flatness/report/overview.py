"""One page over several reports: the questions of Keskar et al., answered case by case.

A *case* is one network on one data set with its own results store and report
(:func:`~flatness.report.build.build_from_store`). :func:`write_overview` reads every
case's store, runs :func:`~flatness.report.analysis.analyze` on it and writes
``report.html`` and ``report.md`` that put the cases side by side:

- whether LB is sharper than SB in every seed, by every measure (Keskar et al.'s
  finding is that it is, for ε-sharpness at both ε, in full space and in a subspace);
- whether LB's test accuracy is below SB's, by how much, with the seeds' spread;
- the paper's Tables 2-4 values beside ours;
- how each measure ranks all of a case's checkpoints (batch-size sweep included) by
  test accuracy: Kendall's τ with its bootstrap interval, and the same counted only
  within each batch size (:func:`~flatness.report.correlation.within_kendall`), which
  separates "sharper minima generalize worse" from "both follow the batch size".

Every sentence is written from the numbers; nothing is assumed to agree with the paper.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from flatness.report.analysis import Study, analyze
from flatness.report.correlation import Correlation
from flatness.report.render import (
    Bullets,
    Links,
    Paragraph,
    Section,
    TableBlock,
    to_html,
    to_markdown,
)
from flatness.report.stats import format_mean_std, format_p_value
from flatness.report.summary import level_text, significant
from flatness.report.tables import Table

__all__ = ["Overview", "OverviewCase", "write_overview"]

DASH = "—"


@dataclass(frozen=True)
class OverviewCase:
    """A case of an overview: its name, title, results store, report and paper network.

    Attributes:
        name: Short name (``"f1-mnist1d"``).
        title: Its report's title.
        store: Its results store.
        report: Its HTML report (linked from the overview).
        reference: Keskar et al.'s network to compare with (``"F1"``), or ``None``.
        checkpoints: Only these checkpoints of the store (SHA-256 digests); ``None``
            for all.
    """

    name: str
    title: str
    store: Path
    report: Path
    reference: str | None = None
    checkpoints: frozenset[str] | None = None


@dataclass(frozen=True)
class Overview:
    """What :func:`write_overview` wrote: the two pages and the answers they give."""

    html: Path
    markdown: Path
    answers: tuple[str, ...]


def _frame(case: OverviewCase) -> pd.DataFrame:
    from flatness.pipeline.store import load_results

    df = load_results(case.store)
    if case.checkpoints is not None:
        df = df[df["checkpoint"].isin(case.checkpoints)]
    return df


def _load(case: OverviewCase, n_boot: int, confidence: float, seed: int) -> Study:
    return analyze(_frame(case), n_boot=n_boot, confidence=confidence, seed=seed)


def _labels(studies: Sequence[Study]) -> list[str]:
    """Every measure column of the studies, in first-seen order."""
    labels: list[str] = []
    for study in studies:
        labels += [c.label for c in study.columns if c.label not in labels]
    return labels


def _tau_cell(tau: Correlation | None, confidence: float, extra: str) -> str:
    """``+0.42 [+0.10, +0.70] *`` and ``extra``, or a dash when undefined."""
    if tau is None or not math.isfinite(tau.estimate):
        return DASH
    mark = " *" if significant(tau, confidence) else ""
    return f"{tau.estimate:+.2f} [{tau.low:+.2f}, {tau.high:+.2f}]{mark}{extra}"


def _pct(x: float) -> float:
    return 100.0 * x


def _paper(network: str | None, table: int, quantity: str, regime: str, eps: float | None = None):
    """The paper's mean and std, or ``None``."""
    if network is None:
        return None
    from flatness.report.reference import keskar_reference

    ref = keskar_reference(network)
    rows = ref[(ref.table == table) & (ref.quantity == quantity) & (ref.regime == regime)]
    if eps is not None:
        rows = rows[(rows.eps - eps).abs() < 1e-12]
    if rows.empty:
        return None
    return float(rows["mean"].iloc[0]), float(rows["std"].iloc[0])


def _paper_text(value: tuple[float, float] | None) -> str:
    return DASH if value is None else f"{value[0]:.2f} ± {value[1]:.2f}"


def _accuracy_table(cases: Sequence[OverviewCase], studies: Sequence[Study]) -> Table:
    rows, values = [], []
    for case, study in zip(cases, studies, strict=True):
        if study.sb is None or study.lb is None:
            continue
        comp = study.comparisons["test_accuracy"]
        train_sb = study.accuracy[(study.sb, "train_accuracy")]
        train_lb = study.accuracy[(study.lb, "train_accuracy")]
        diff = _pct(comp.lb.mean - comp.sb.mean)
        paper_sb = _paper(case.reference, 2, "test_accuracy", "SB")
        paper_lb = _paper(case.reference, 2, "test_accuracy", "LB")
        rows.append(
            {
                "case": case.name,
                "runs SB / LB": f"{comp.sb.n} / {comp.lb.n}",
                "train SB (%)": format_mean_std(
                    _pct(train_sb.mean), _pct(train_sb.std), train_sb.n
                ),
                "train LB (%)": format_mean_std(
                    _pct(train_lb.mean), _pct(train_lb.std), train_lb.n
                ),
                "test SB (%)": format_mean_std(_pct(comp.sb.mean), _pct(comp.sb.std), comp.sb.n),
                "test LB (%)": format_mean_std(_pct(comp.lb.mean), _pct(comp.lb.std), comp.lb.n),
                "LB − SB (points)": f"{diff:+.2f}" if math.isfinite(diff) else DASH,
                "LB below SB (seeds)": f"{comp.losses[0]}/{comp.losses[1]}",
                "Mann–Whitney p": format_p_value(comp.test.p_value),
                "paper": case.reference or DASH,
                "paper SB (%)": _paper_text(paper_sb),
                "paper LB (%)": _paper_text(paper_lb),
                "paper LB − SB": DASH
                if paper_sb is None or paper_lb is None
                else f"{paper_lb[0] - paper_sb[0]:+.2f}",
            }
        )
        values.append(
            {
                "case": case.name,
                "sb_test_mean": comp.sb.mean,
                "sb_test_std": comp.sb.std,
                "lb_test_mean": comp.lb.mean,
                "lb_test_std": comp.lb.std,
                "lb_minus_sb": comp.lb.mean - comp.sb.mean,
                "lb_below_sb": comp.losses[0],
                "seeds_paired": comp.losses[1],
                "mann_whitney_p": comp.test.p_value,
            }
        )
    return Table(
        "overview-accuracy",
        "Test accuracy: SB vs LB (Keskar et al.'s Table 2)",
        pd.DataFrame(rows),
        (
            "Mean ± std over seeds. LB below SB (seeds): seeds whose LB run has the lower "
            "test accuracy than the SB run of the same seed (same initialization).",
            "The paper's values are for its own, larger networks and data sets (F1: MNIST, "
            "C1: CIFAR-10); compare the sign and size of the gap, not the accuracies.",
        ),
        pd.DataFrame(values),
    )


def _sharper_table(cases: Sequence[OverviewCase], studies: Sequence[Study]) -> Table:
    labels = _labels(studies)
    rows, values = [], []
    for label in labels:
        row = {"measure": label}
        for case, study in zip(cases, studies, strict=True):
            comp = study.comparisons.get(label)
            if comp is None or not comp.wins[1]:
                row[case.name] = DASH
                continue
            k, n = comp.wins
            ratio = comp.ratio
            ratio_text = f", ×{ratio:.2f}" if math.isfinite(ratio) else ""
            row[case.name] = f"{k}/{n}{ratio_text}, p = {format_p_value(comp.test.p_value)}"
            values.append(
                {
                    "measure": label,
                    "case": case.name,
                    "lb_higher": k,
                    "lb_lower": comp.losses[0],
                    "seeds_paired": n,
                    "sb_mean": comp.sb.mean,
                    "lb_mean": comp.lb.mean,
                    "lb_over_sb": ratio,
                    "mann_whitney_p": comp.test.p_value,
                }
            )
        rows.append(row)
    return Table(
        "overview-sharper",
        "Is LB sharper than SB? Seeds where LB's value is higher",
        pd.DataFrame(rows),
        (
            "k/n: the LB run's value exceeds the SB run's of the same seed in k of n seeds; "
            "×r: LB mean / SB mean; p: two-sided Mann–Whitney U test of LB vs SB.",
            "Higher means sharper for every measure except the gradient noise scale.",
        ),
        pd.DataFrame(values),
    )


def _keskar_table(cases: Sequence[OverviewCase], studies: Sequence[Study]) -> Table:
    rows = []
    for case, study in zip(cases, studies, strict=True):
        for column in study.columns:
            if column.measure != "keskar" or column.eps is None:
                continue
            comp = study.comparisons.get(column.label)
            if comp is None:
                continue
            # The paper's Table 4 is for a 100-dimensional subspace only.
            network = case.reference if column.subspace in (0, 100) else None
            table = 4 if column.subspace else 3
            paper_sb = _paper(network, table, "sharpness", "SB", column.eps)
            paper_lb = _paper(network, table, "sharpness", "LB", column.eps)
            rows.append(
                {
                    "case": case.name,
                    "space": f"subspace {column.subspace}" if column.subspace else "full",
                    "ε": f"{column.eps:g}",
                    "SB": format_mean_std(comp.sb.mean, comp.sb.std, comp.sb.n),
                    "LB": format_mean_std(comp.lb.mean, comp.lb.std, comp.lb.n),
                    "LB / SB": f"{comp.ratio:.2f}" if math.isfinite(comp.ratio) else DASH,
                    "LB higher (seeds)": f"{comp.wins[0]}/{comp.wins[1]}",
                    "paper SB": _paper_text(paper_sb),
                    "paper LB": _paper_text(paper_lb),
                    "paper LB / SB": DASH
                    if not paper_sb or not paper_lb
                    else f"{paper_lb[0] / paper_sb[0]:.2f}",
                }
            )
    return Table(
        "overview-keskar",
        "ε-sharpness (Metric 2.1, ×100): Keskar et al.'s Tables 3 and 4",
        pd.DataFrame(rows),
        (
            "Full space: the box |y_i| ≤ ε(|x_i| + 1) around the minimum; subspace: the box "
            "in a random subspace of the dimension shown (the paper's Table 4: 100). "
            "Paper values are shown for ε and dimensions the paper reports.",
        ),
    )


def _tau_table(cases: Sequence[OverviewCase], studies: Sequence[Study], confidence: float) -> Table:
    labels = _labels(studies)
    rows = []
    for label in labels:
        row = {"measure": label}
        for case, study in zip(cases, studies, strict=True):
            tau = study.correlations.get((label, "test_accuracy", "kendall"))
            row[case.name] = _tau_cell(tau, confidence, f" (n = {tau.n})" if tau else "")
        rows.append(row)
    level = level_text(confidence)
    return Table(
        "overview-kendall",
        "How each measure ranks the checkpoints by test accuracy: Kendall's τ",
        pd.DataFrame(rows),
        (
            f"Kendall's τ-b between the measure and the test accuracy over all of a case's "
            f"checkpoints (every regime and seed), with a {level} percentile-bootstrap "
            "interval. A sharpness measure that predicts generalization has τ < 0.",
            f"* significant: the interval excludes zero and p < {1 - confidence:.2g}.",
        ),
    )


def _within(study: Study) -> dict[str, Correlation]:
    """Within-regime Kendall τ of every measure with test accuracy (from the analysis)."""
    return {
        c.label: study.correlations[(c.label, "test_accuracy", "within")]
        for c in study.columns
        if (c.label, "test_accuracy", "within") in study.correlations
    }


def _within_table(
    cases: Sequence[OverviewCase],
    studies: Sequence[Study],
    within: Sequence[dict[str, Correlation]],
    confidence: float,
    n_perm: int,
) -> Table:
    labels = _labels(studies)
    rows, values = [], []
    for label in labels:
        row = {"measure": label}
        for case, taus in zip(cases, within, strict=True):
            tau = taus.get(label)
            row[case.name] = _tau_cell(
                tau, confidence, f", p = {format_p_value(tau.p_value)}" if tau else ""
            )
            if tau is None or not math.isfinite(tau.estimate):
                continue
            values.append({"measure": label, "case": case.name, **tau.to_dict()})
        rows.append(row)
    level = level_text(confidence)
    return Table(
        "overview-kendall-within",
        "The same, within each batch size: does the measure rank seeds by test accuracy?",
        pd.DataFrame(rows),
        (
            "Kendall's τ-b over pairs of checkpoints trained with the same batch size "
            "(different seeds) only, pooled over batch sizes (Jiang et al. 2020 hold the "
            "other hyperparameters fixed the same way). When sharpness and accuracy both "
            "follow the batch size, the table above can show a strong τ that this one "
            f"does not. Interval: {level} bootstrap resampling checkpoints within each "
            "batch size; p: permutation test shuffling test accuracies within each batch "
            f"size ({n_perm} permutations).",
            f"* significant: the interval excludes zero and p < {1 - confidence:.2g}.",
        ),
        pd.DataFrame(values),
    )


def _ranking_sentence(study: Study, within: dict[str, Correlation], confidence: float) -> str:
    pooled = [
        (c.label, study.correlations.get((c.label, "test_accuracy", "kendall")))
        for c in study.columns
    ]
    found = [label for label, tau in pooled if tau is not None and significant(tau, confidence)]
    inside = [label for label, tau in within.items() if significant(tau, confidence)]
    n = len(study.runs)
    text = (
        f" Over all {n} checkpoints, {len(found)} of {len(pooled)} measures rank them by "
        f"test accuracy significantly (Kendall's τ"
    )
    taus = [tau.estimate for _, tau in pooled if tau is not None and math.isfinite(tau.estimate)]
    if taus:
        text += f" from {min(taus):+.2f} to {max(taus):+.2f}"
    text += "); counting only checkpoints of the same batch size, "
    text += f"{len(inside)} do ({', '.join(inside)})." if inside else "none does."
    return text


def _answers(
    cases: Sequence[OverviewCase],
    studies: Sequence[Study],
    within: Sequence[dict[str, Correlation]],
    confidence: float,
) -> list[str]:
    out = []
    for case, study, taus in zip(cases, studies, within, strict=True):
        if study.sb is None or study.lb is None:
            out.append(f"{case.name}: no SB/LB pair to compare.")
            continue
        paired = _paired_seeds(study)
        keskar = [c for c in study.columns if c.measure == "keskar"]
        every = [c for c in keskar if _every(study, c.label, paired)]
        never = [c for c in keskar if _never(study, c.label, paired)]
        if not paired:
            text = f"{case.name}: no seed has both an SB and an LB run; nothing to pair."
        elif keskar and len(every) == len(keskar):
            text = (
                f"{case.name}: LB is sharper than SB in every seed ({paired}) at every ε and "
                f"in every space ({len(keskar)} ε-sharpness columns), as Keskar et al. found."
            )
        elif keskar:
            missed = [_seeds_note(study, c.label, paired) for c in keskar if c not in every]
            text = (
                f"{case.name}: LB is NOT sharper than SB in every seed by every ε-sharpness "
                f"column; it is in {len(every)} of {len(keskar)}"
                + (f", and flatter in every seed in {len(never)}" if never else "")
                + f" (not in every seed: {', '.join(missed)})."
            )
        else:
            text = f"{case.name}: no ε-sharpness was scored."
        others = [c for c in study.columns if c.measure != "keskar" and c.sharpness]
        agree = [c.label for c in others if _every(study, c.label, paired)]
        disagree = [
            _seeds_note(study, c.label, paired)
            for c in others
            if not _every(study, c.label, paired)
        ]
        if others and paired:
            text += f" Other measures higher for LB in every seed: {', '.join(agree) or 'none'}" + (
                f"; not in every seed: {', '.join(disagree)}." if disagree else "."
            )
        text += _accuracy_sentence(study)
        out.append(text + _ranking_sentence(study, taus, confidence))
    return out


def _paired_seeds(study: Study) -> int:
    """Seeds with both an SB and an LB checkpoint."""
    runs = study.runs
    seeds = [set(runs.loc[runs["regime"] == r, "seed"].dropna()) for r in (study.sb, study.lb)]
    return len(seeds[0] & seeds[1])


def _every(study: Study, label: str, paired: int) -> bool:
    """LB above SB in every paired seed (a seed without both values does not count)."""
    comp = study.comparisons.get(label)
    return comp is not None and paired > 0 and comp.wins[0] == comp.wins[1] == paired


def _never(study: Study, label: str, paired: int) -> bool:
    comp = study.comparisons.get(label)
    return comp is not None and paired > 0 and comp.losses[0] == comp.losses[1] == paired


def _seeds_note(study: Study, label: str, paired: int) -> str:
    """The label, with how many seeds could be compared when some lack a value."""
    comp = study.comparisons.get(label)
    compared = comp.wins[1] if comp is not None else 0
    if compared < paired:
        return f"{label} (values for {compared} of {paired} seeds)"
    return label


def _accuracy_sentence(study: Study) -> str:
    comp = study.comparisons.get("test_accuracy")
    if comp is None or not comp.sb.n or not comp.lb.n:
        return " No test accuracy to compare."
    lb = format_mean_std(_pct(comp.lb.mean), _pct(comp.lb.std), comp.lb.n)
    sb = format_mean_std(_pct(comp.sb.mean), _pct(comp.sb.std), comp.sb.n)
    diff = _pct(comp.lb.mean - comp.sb.mean)
    tail = (
        f"lower in {comp.losses[0]}/{comp.losses[1]} seeds, Mann–Whitney "
        f"p = {format_p_value(comp.test.p_value)})."
    )
    if diff == 0:
        return f" LB and SB test accuracies are equal on average ({lb} % vs {sb} %; {tail}"
    word = "below" if diff < 0 else "above"
    return f" LB test accuracy is {abs(diff):.2f} points {word} SB's ({lb} % vs {sb} %; {tail}"


def write_overview(
    out: str | os.PathLike[str],
    cases: Sequence[OverviewCase],
    *,
    title: str,
    intro: Sequence[str] = (),
    n_boot: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
) -> Overview:
    """Write ``report.html`` and ``report.md`` comparing the cases (module docstring).

    Args:
        out: The folder (the cases' reports are usually its subfolders).
        cases: The cases, in display order.
        title: The page's title.
        intro: Paragraphs shown under the title (what was run, how long it took).
        n_boot: Bootstrap resamples for Kendall's τ intervals.
        confidence: The intervals' level.
        seed: The bootstrap's seed.

    Returns:
        The HTML and Markdown paths and the answers (one sentence per case).
    """
    base = Path(out)
    base.mkdir(parents=True, exist_ok=True)
    studies = [_load(case, n_boot, confidence, seed) for case in cases]
    within = [_within(study) for study in studies]
    tables = [
        _accuracy_table(cases, studies),
        _sharper_table(cases, studies),
        _keskar_table(cases, studies),
        _tau_table(cases, studies, confidence),
        _within_table(cases, studies, within, confidence, n_boot),
    ]
    links = tuple(
        (f"{case.name}: {case.title}", Path(os.path.relpath(case.report, base)).as_posix())
        for case in cases
    )
    sections = [Section("What was run", "setup", [Paragraph(text) for text in intro])]
    answers: list[str] = []
    if cases:
        answers = _answers(cases, studies, within, confidence)
        sections += [
            Section("Answers", "answers", [Bullets(tuple(answers))]),
            *(Section(t.title, t.key, [TableBlock(t)]) for t in tables if not t.frame.empty),
            Section("Full reports", "reports", [Links(links)]),
        ]
    else:
        sections.append(Section("Answers", "answers", [Paragraph("No case has results to show.")]))
    data = base / "data"
    data.mkdir(exist_ok=True)
    for table in tables:
        (table.values if table.values is not None else table.frame).to_csv(
            data / f"{table.key}.csv", index=False
        )
    html, markdown = base / "report.html", base / "report.md"
    markdown.write_text(to_markdown(title, sections), encoding="utf-8")
    html.write_text(to_html(title, sections, base), encoding="utf-8")
    return Overview(html, markdown, tuple(answers))
