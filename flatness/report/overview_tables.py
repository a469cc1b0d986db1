"""The overview's tables: several cases side by side, one column or row group per case.

Each table lays out the same cells as a case's own report (:mod:`flatness.report.tables`:
mean ± std over seeds, the paper's values from
:func:`~flatness.report.reference.keskar_value`), one case beside the other:

- :func:`accuracy_overview` -- Table 2's SB and LB accuracies of every case, with the
  paper's;
- :func:`sharper_overview` -- in how many seeds LB's value is higher, per measure;
- :func:`keskar_overview` -- Tables 3 and 4: ε-sharpness of SB and LB, with the paper's;
- :func:`kendall_overview` and :func:`within_overview` -- how each measure ranks the
  checkpoints by test accuracy, over all checkpoints and within each batch size.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import pandas as pd

from flatness.report.analysis import Study
from flatness.report.comparisons import mann_whitney_floor_text, paired_floor_text
from flatness.report.correlation import Correlation
from flatness.report.overview_case import OverviewCase
from flatness.report.reference import DASH, keskar_value, paper_text
from flatness.report.stats import format_p_value
from flatness.report.summary import level_text, significant
from flatness.report.tables import Table, paper_table, percent, stat_cell

__all__ = [
    "accuracy_overview",
    "kendall_overview",
    "keskar_overview",
    "measure_labels",
    "sharper_overview",
    "within_overview",
    "within_taus",
]


def measure_labels(studies: Sequence[Study]) -> list[str]:
    """Every measure column of the studies, in first-seen order.

    Returns:
        The columns' labels, each once.
    """
    labels: list[str] = []
    for study in studies:
        labels += [c.label for c in study.columns if c.label not in labels]
    return labels


def _tau_cell(tau: Correlation | None, confidence: float, extra: str) -> str:
    """``+0.42 [+0.10, +0.70] *`` and ``extra``, or a dash when undefined."""
    if tau is None:
        return "not scored"
    if not math.isfinite(tau.estimate):
        return f"{DASH} ({tau.note})" if tau.note else DASH
    mark = " *" if significant(tau, confidence) else ""
    return f"{tau.estimate:+.2f} [{tau.low:+.2f}, {tau.high:+.2f}]{mark}{extra}"


def _sizes(study: Study) -> tuple[int, int]:
    """Runs of the SB and the LB regime."""
    counts = study.seeds_per_regime
    return counts.get(str(study.sb), 0), counts.get(str(study.lb), 0)


def _missing(study: Study, label: str) -> str:
    """Why a case has no SB-vs-LB value for a measure, in words."""
    if study.sb is None or study.lb is None:
        return "no SB/LB pair"
    if all(c.label != label for c in study.columns):
        return "not scored"
    return "no seed was trained in both regimes"


def accuracy_overview(cases: Sequence[OverviewCase], studies: Sequence[Study]) -> Table:
    """Test accuracy, SB vs LB, one row per case (the paper's Table 2 beside it).

    Args:
        cases: The cases (their names and paper networks).
        studies: Their analyses, in the same order.

    Returns:
        The table; cases without an SB/LB pair have no row.
    """
    rows, values = [], []
    for case, study in zip(cases, studies, strict=True):
        if study.sb is None or study.lb is None:
            continue
        comp = study.comparisons["test_accuracy"]
        train_sb = study.accuracy[(study.sb, "train_accuracy")]
        train_lb = study.accuracy[(study.lb, "train_accuracy")]
        diff = percent(comp.lb.mean - comp.sb.mean)
        paper_sb = keskar_value(case.reference, 2, "SB", quantity="test_accuracy")
        paper_lb = keskar_value(case.reference, 2, "LB", quantity="test_accuracy")
        rows.append(
            {
                "case": case.name,
                "runs SB / LB": f"{comp.sb.n} / {comp.lb.n}",
                "train SB (%)": stat_cell(train_sb, 100.0),
                "train LB (%)": stat_cell(train_lb, 100.0),
                "test SB (%)": stat_cell(comp.sb, 100.0),
                "test LB (%)": stat_cell(comp.lb, 100.0),
                "LB − SB (points)": f"{diff:+.2f}" if math.isfinite(diff) else DASH,
                "LB below SB (seeds)": f"{comp.losses[0]}/{comp.losses[1]}",
                "Mann–Whitney p": format_p_value(comp.test.p_value),
                "Wilcoxon p": format_p_value(comp.paired.wilcoxon_p),
                "paper": case.reference or DASH,
                "paper SB (%)": paper_text(paper_sb),
                "paper LB (%)": paper_text(paper_lb),
                "paper LB − SB (points)": DASH
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
                "mann_whitney_min_p": comp.test.min_p,
                "wilcoxon_p": comp.paired.wilcoxon_p,
                "sign_test_p": comp.paired.sign_p,
                "paired_min_p": comp.paired.min_p,
            }
        )
    return Table(
        "overview-accuracy",
        "Test accuracy: SB vs LB (Keskar et al.'s Table 2)",
        pd.DataFrame(rows),
        (
            "Mean ± std over seeds. LB below SB (seeds): seeds whose LB run has the lower "
            "test accuracy than the SB run of the same seed (same initialization). "
            "Two-sided tests: Mann–Whitney over the runs, Wilcoxon signed-rank over the "
            "paired seeds.",
            "Smallest attainable p per case: "
            + "; ".join(
                f"{case.name}: {mann_whitney_floor_text(*_sizes(study))}, "
                f"{paired_floor_text(study.comparisons['test_accuracy'].paired.n)}"
                for case, study in zip(cases, studies, strict=True)
                if study.sb is not None and study.lb is not None
            )
            + ".",
            "The paper's values are for its own, larger networks and data sets (F1: MNIST, "
            "C1: CIFAR-10); compare the sign and size of the gap, not the accuracies.",
        ),
        pd.DataFrame(values),
    )


def sharper_overview(cases: Sequence[OverviewCase], studies: Sequence[Study]) -> Table:
    """Is LB sharper than SB? One row per measure, one column per case.

    Args:
        cases: The cases (their names).
        studies: Their analyses, in the same order.

    Returns:
        The table: seeds where LB's value is higher, LB/SB and the Mann–Whitney p.
    """
    labels = measure_labels(studies)
    rows, values = [], []
    for label in labels:
        row = {"measure": label}
        for case, study in zip(cases, studies, strict=True):
            comp = study.comparisons.get(label)
            if comp is None or not comp.wins[1]:
                row[case.name] = _missing(study, label)
                continue
            k, n = comp.wins
            ratio = comp.ratio
            ratio_text = f", ×{ratio:.2f}" if math.isfinite(ratio) else ""
            row[case.name] = f"{k}/{n}{ratio_text}, Holm p = {format_p_value(comp.holm_p)}"
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
                    "wilcoxon_p": comp.paired.wilcoxon_p,
                    "holm_wilcoxon_p": comp.holm_p,
                    "paired_min_p": comp.paired.min_p,
                }
            )
        rows.append(row)
    return Table(
        "overview-sharper",
        "Is LB sharper than SB? Seeds where LB's value is higher",
        pd.DataFrame(rows),
        (
            "k/n: the LB run's value exceeds the SB run's of the same seed in k of n seeds; "
            "×r: LB mean / SB mean; Holm p: the two-sided Wilcoxon signed-rank p over the "
            "paired seeds, Holm-adjusted over the case's measures (significant below 0.05). "
            "With n paired seeds no p falls below 2/2ⁿ (0.062 for 5, 0.25 for 3).",
            "Higher means sharper for every measure except the gradient noise scale.",
        ),
        pd.DataFrame(values),
    )


def keskar_overview(cases: Sequence[OverviewCase], studies: Sequence[Study]) -> Table:
    """ε-sharpness of SB and LB per case, space and ε, with the paper's Tables 3 and 4.

    Args:
        cases: The cases (their names and paper networks).
        studies: Their analyses, in the same order.

    Returns:
        The table (the paper's values only for the full space and 100 dimensions).
    """
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
            table = paper_table(column.subspace)
            paper_sb = keskar_value(network, table, "SB", quantity="sharpness", eps=column.eps)
            paper_lb = keskar_value(network, table, "LB", quantity="sharpness", eps=column.eps)
            rows.append(
                {
                    "case": case.name,
                    "space": f"subspace {column.subspace}" if column.subspace else "full",
                    "ε": f"{column.eps:g}",
                    "SB": stat_cell(comp.sb),
                    "LB": stat_cell(comp.lb),
                    "LB / SB": f"{comp.ratio:.2f}" if math.isfinite(comp.ratio) else DASH,
                    "LB higher (seeds)": f"{comp.wins[0]}/{comp.wins[1]}",
                    "paper SB": paper_text(paper_sb),
                    "paper LB": paper_text(paper_lb),
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


def kendall_overview(
    cases: Sequence[OverviewCase], studies: Sequence[Study], confidence: float
) -> Table:
    """Kendall's τ of each measure with test accuracy over all of a case's checkpoints.

    Args:
        cases: The cases (their names).
        studies: Their analyses, in the same order.
        confidence: The intervals' level (marks significant cells).

    Returns:
        The table: one row per measure, one column per case.
    """
    labels = measure_labels(studies)
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


def within_taus(study: Study) -> dict[str, Correlation]:
    """Within-regime Kendall τ of every measure with test accuracy (from the analysis).

    Returns:
        Measure label → its τ counted within each batch size.
    """
    return {
        c.label: study.correlations[(c.label, "test_accuracy", "within")]
        for c in study.columns
        if (c.label, "test_accuracy", "within") in study.correlations
    }


def within_overview(
    cases: Sequence[OverviewCase],
    studies: Sequence[Study],
    within: Sequence[dict[str, Correlation]],
    confidence: float,
    n_perm: int,
) -> Table:
    """Kendall's τ with test accuracy counted within each batch size, per case.

    Args:
        cases: The cases (their names).
        studies: Their analyses, in the same order.
        within: :func:`within_taus` of each study.
        confidence: The intervals' level.
        n_perm: Permutations behind the p-values (named in the note).

    Returns:
        The table: one row per measure, one column per case.
    """
    labels = measure_labels(studies)
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
