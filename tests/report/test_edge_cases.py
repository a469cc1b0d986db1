"""flatness.report on unusual but legitimate frames, and claims the summary must not make.

Written as a review of the report package: each test states what a demanding reader
expects (no silent merging of runs, no pseudo-replication, no significance claimed
from three points, no crash on strings or None); the last group documents behaviour
checked and found correct.
"""

from __future__ import annotations

import json
import re
import warnings
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from flatness.report import ReportInputError, analyze, build
from flatness.report.bootstrap import resample_statistics
from flatness.report.correlation import rank_correlation
from flatness.report.frames import normalize, scores_frame

N_BOOT = 100


def frame(
    *,
    seeds: tuple[int, ...] = (0, 1, 2),
    regimes: tuple[tuple[str, int, float], ...] = (("SB", 16, 0.0), ("LB", 256, 1.0)),
    measure: str = "lambda_max",
) -> pd.DataFrame:
    """One row per run: SB (B=16) flatter and more accurate than LB (B=256)."""
    rng = np.random.default_rng(0)
    rows = []
    for regime, batch, level in regimes:
        for seed in seeds:
            rows.append(
                {
                    "regime": regime,
                    "batch_size": batch,
                    "seed": seed,
                    "train_accuracy": 0.99,
                    "test_accuracy": 0.95 - 0.03 * level + 0.01 * rng.random(),
                    "measure": measure,
                    "value": 1.0 + 4.0 * level + 0.3 * rng.random(),
                }
            )
    return pd.DataFrame(rows)


def summary(df: pd.DataFrame, tmp_path: Path, **kwargs) -> str:
    return "\n".join(build(df, tmp_path, n_boot=N_BOOT, **kwargs).summary)


# ------------------------------------------------------------------------ wrong numbers


def test_runs_without_seed_or_path_are_not_merged_into_one() -> None:
    # A user's own frame: three runs per regime, no seed/path/checkpoint column.
    # normalize() keys checkpoints by regime/B/seed = ".../seednan", so the three runs of
    # a regime collapse into one and two thirds of the data vanish without a word.
    df = frame().drop(columns="seed")
    with pytest.raises(ReportInputError, match="column that tells the runs apart"):
        analyze(df, n_boot=N_BOOT)
    df["checkpoint"] = [f"run{i}" for i in range(len(df))]
    assert len(analyze(df, n_boot=N_BOOT).runs) == 6


def test_conflicting_duplicate_measurements_are_not_silently_dropped() -> None:
    # The same checkpoint x measure x settings x component twice with different values
    # (e.g. two stores concatenated): the first row wins, the other is ignored silently.
    df = frame()
    df["checkpoint"] = [f"c{i}" for i in range(len(df))]
    other = df.copy()
    other["value"] *= 100.0
    doubled = pd.concat([df, other], ignore_index=True)
    with pytest.raises(ReportInputError, match="different values for the same measurement"):
        analyze(doubled, n_boot=N_BOOT)
    # Exact repeats are harmless and dropped.
    assert len(analyze(pd.concat([df, df], ignore_index=True), n_boot=N_BOOT).runs) == 6


def test_checkpoints_at_several_epochs_are_not_counted_as_independent_seeds(
    tmp_path: Path,
) -> None:
    # Two checkpoints per (regime, seed) at epochs 5 and 10: the report calls the 6
    # checkpoints per regime "seeds" and runs Mann-Whitney on 6 vs 6 (pseudo-replication:
    # p = 0.0022 from 3 seeds per regime), while the paired count says 3/3 seeds.
    early, late = frame(), frame()
    early["epoch"], late["epoch"] = 5, 10
    late["value"] *= 2.0
    df = pd.concat([early, late], ignore_index=True)
    df["checkpoint"] = [
        f"{r}-{s}-{e}" for r, s, e in zip(df["regime"], df["seed"], df["epoch"], strict=True)
    ]
    study = analyze(df, n_boot=N_BOOT)
    comp = study.comparisons["λ_max"]
    assert (comp.test.n_a, comp.test.n_b) == (3, 3)
    assert sorted(study.snapshots) == sorted(c for c in df["checkpoint"] if c.endswith("-5"))
    assert set(study.runs["epoch"]) == {10}  # the last epoch of each run
    text = "\n".join(build(df, tmp_path, n_boot=N_BOOT).summary)
    assert "6 checkpoint(s) are earlier epochs of runs that have a later one" in text


def test_accuracies_given_in_percent_are_refused_or_rescaled(tmp_path: Path) -> None:
    # A frame with accuracies in percent (95.2, not 0.952) prints "9540 ± 46%".
    df = frame()
    df["test_accuracy"] *= 100
    df["train_accuracy"] *= 100
    with pytest.raises(ReportInputError, match="give accuracies as fractions in"):
        summary(df, tmp_path)


def test_non_converged_values_are_flagged(tmp_path: Path) -> None:
    # DESIGN.md: "A non-converged result is reported as such, never silently returned as
    # a number." The report never reads `converged` (nor `error`): LB seed 0's λ_max
    # did not converge and is averaged, tested and correlated like the others.
    df = frame()
    df["converged"] = True
    df.loc[(df["regime"] == "LB") & (df["seed"] == 0), "converged"] = False
    report = build(df, tmp_path, n_boot=N_BOOT)
    assert "λ_max: 1 estimate(s) did not converge (kept in the statistics): LB/B256/" in (
        "\n".join(report.summary)
    )


def test_headline_of_numbered_components_is_the_first_by_number() -> None:
    # Components "2" and "10" (no "1"): sorted as text, "10" is taken as the headline.
    df = frame()
    df["component"] = "2"
    tenth = frame()
    tenth["component"] = "10"
    tenth["value"] = -1.0
    scores, _ = scores_frame(normalize(pd.concat([df, tenth], ignore_index=True)))
    assert (scores["value"] > 0).all(), "the 10th component was reported as the headline"


# ------------------------------------------------------------ statistics that mislead


def test_interval_excluding_zero_is_not_claimed_when_the_test_is_far_from_significant(
    tmp_path: Path,
) -> None:
    # Three checkpoints in perfect rank order: Kendall tau = 1 with p = 0.33, but every
    # non-degenerate bootstrap resample also gives tau = 1, so the percentile interval is
    # [1.00, 1.00] and the summary says "The 95% interval excludes zero for: λ_max".
    df = frame(regimes=(("SB", 16, 0.0),))
    df["test_accuracy"] = df["value"] / 10
    study = analyze(df, n_boot=N_BOOT)
    tau = study.correlations[("λ_max", "test_accuracy", "kendall")]
    assert tau.p_value > 0.3
    text = summary(df, tmp_path)
    assert "Significant" not in text, text
    assert "None is significant (a 95% interval excluding zero with p < 0.05)" in text


def test_trend_is_not_called_a_rise_on_four_points(tmp_path: Path) -> None:
    # One SB run and three LB runs: "τ 0.71 [0.71, 1.00]" -> "λ_max rises", p = 0.17.
    df = frame()
    df = df[~((df["regime"] == "SB") & (df["seed"] > 0))]
    study = analyze(df, n_boot=N_BOOT)
    tau = study.batch_trend["λ_max"]
    assert tau.p_value > 0.1
    text = summary(df, tmp_path)
    assert "λ_max rises" not in text, text
    assert "With batch size, neither the accuracy nor any measure shows a significant" in text


def test_no_bootstrap_means_no_claim_about_intervals(tmp_path: Path) -> None:
    # n_boot=0 gives no interval at all, yet the summary says "No 95% interval excludes zero".
    text = "\n".join(build(frame(), tmp_path, n_boot=0).summary)
    assert "No bootstrap intervals were computed (n_boot = 0)." in text
    # the paired test's verdict does not depend on the bootstrap; nothing else may claim
    text = text.lower().replace("not significant (one measure, no correction)", "")
    assert "significant" not in text.replace("none is significant", "")


def test_confidence_level_is_printed_as_given(tmp_path: Path) -> None:
    # confidence=0.995 is printed as "100% percentile bootstrap intervals".
    report = build(frame(), tmp_path, n_boot=N_BOOT, confidence=0.995)
    md = report.markdown.read_text(encoding="utf-8")
    assert "100% percentile" not in md
    assert "99.5%" in md


def test_ratio_of_means_is_not_given_for_values_of_both_signs(tmp_path: Path) -> None:
    # average sharpness can be negative: "2.01 vs -0.990 (LB/SB = -2.03)" is meaningless
    # (the sample report shows "LB/SB = -13.5" for average sharpness).
    df = frame()
    df["value"] = np.where(df["regime"] == "SB", -1.0, 2.0) + 0.01 * df["seed"]
    text = summary(df, tmp_path)
    assert "LB/SB" not in text, text
    assert np.isnan(analyze(df, n_boot=N_BOOT).comparisons["λ_max"].ratio)


def test_equal_values_are_not_called_sharper(tmp_path: Path) -> None:
    # Every value equal: "LB sharper than SB in 0/3 seeds by λ_max" (ties count for neither).
    df = frame()
    df["value"] = 1.0
    text = summary(df, tmp_path)
    assert "sharper" not in text and "flatter" not in text, text
    assert "LB and SB equal in all 3 seeds by λ_max" in text


def test_equal_accuracies_read_naturally(tmp_path: Path) -> None:
    # "LB test accuracy is 0.00 points equal to SB".
    df = frame()
    df["test_accuracy"] = 0.9
    text = summary(df, tmp_path)
    assert "LB and SB test accuracies are equal on average: 90.0 ± 0.0% vs 90.0 ± 0.0%" in text


# ------------------------------------------------------------- crashes on legit input


def test_batch_sizes_given_as_strings(tmp_path: Path) -> None:
    # e.g. read from a CSV/JSON with quoted numbers: TypeError "dtype 'str' does not
    # support operation 'median'" from regime_order.
    df = frame()
    df["batch_size"] = df["batch_size"].astype(str)
    report = build(df, tmp_path, n_boot=N_BOOT)
    assert "batch sizes 16, 256" in report.summary[0]


def test_accuracy_column_of_object_dtype_with_none(tmp_path: Path) -> None:
    # An object column holding None for a missing accuracy: TypeError in analysis._by_seed.
    df = frame()
    df["test_accuracy"] = df["test_accuracy"].astype(object)
    df.loc[0, "test_accuracy"] = None
    study = build(df, tmp_path, n_boot=N_BOOT)
    assert study.html.is_file()
    assert analyze(df, n_boot=N_BOOT).accuracy[("SB", "test_accuracy")].n == 2


def test_a_measure_named_like_a_run_column(tmp_path: Path) -> None:
    # A frame that stores the training loss as one of its measures: analyze() joins the
    # runs with the wide scores and fails with pandas' "columns overlap but no suffix
    # specified: Index(['train_loss'])" (same for a measure called "regime", "seed", ...).
    df = pd.concat(
        [frame(), frame(measure="train_loss").assign(value=lambda d: d["value"] / 100)],
        ignore_index=True,
    )
    study = analyze(df, n_boot=N_BOOT)
    assert [c.label for c in study.columns] == ["λ_max", "train_loss (measure)"]


def test_a_measure_labelled_test_accuracy_does_not_replace_the_accuracy_trend(
    tmp_path: Path,
) -> None:
    # batch_trend is keyed by bare label, the accuracy's key being "test accuracy": a
    # measure with that label overwrites it and the summary says "With batch size, test
    # accuracy rises" although the accuracy falls with batch size here.
    df = pd.concat(
        [frame(), frame(measure="test accuracy")],
        ignore_index=True,
    )
    text = summary(df, tmp_path)
    assert "test accuracy rises" not in text, text
    study = analyze(df, n_boot=N_BOOT)
    assert "test accuracy (measure)" in [c.label for c in study.columns]
    assert study.batch_trend["test accuracy"].estimate < 0  # the accuracy itself falls


# ------------------------------------------------------------------ labels and order


def test_markdown_does_not_pass_raw_html_through(tmp_path: Path) -> None:
    # Regime and measure names are escaped in the HTML page but not in report.md, where
    # "<b>" bolds the rest of the page on GitHub and "<script>" text disappears.
    df = frame()
    df["regime"] = df["regime"].map({"SB": "S<b>", "LB": "L&B"})
    md = build(df, tmp_path, n_boot=N_BOOT).markdown.read_text(encoding="utf-8")
    assert "S<b>" not in md and "S&lt;b&gt;" in md and "L&amp;B" in md


def test_regimes_without_batch_sizes_list_sb_before_lb(tmp_path: Path) -> None:
    # With no batch_size column, regimes sort by name: LB before SB in every table and
    # LB gets the "small batch" blue in the figures.
    df = frame().drop(columns="batch_size")
    study = analyze(df, n_boot=N_BOOT)
    assert study.regimes == ["SB", "LB"]


def test_missing_regime_labels_do_not_lump_different_batch_sizes() -> None:
    # Rows whose regime is NaN become one regime "unlabelled" mixing B=16 and B=256.
    df = frame()
    df.loc[df["seed"] == 2, "regime"] = np.nan
    study = analyze(df, n_boot=N_BOOT)
    for regime in study.regimes:
        sizes = study.runs.loc[study.runs["regime"] == regime, "batch_size"].unique()
        assert len(sizes) == 1, f"regime {regime!r} mixes batch sizes {sorted(sizes)}"


def test_statistics_tables_are_exported_as_csv(tmp_path: Path) -> None:
    # build.py: "data/*.csv -- every checkpoint's scores and the numbers behind each
    # table", but the SB-vs-LB, correlation and trend tables get no CSV.
    report = build(frame(), tmp_path, n_boot=N_BOOT)
    names = {p.name for p in report.data}
    assert {"sb-vs-lb.csv", "correlation-test-accuracy.csv"} <= names, sorted(names)


# ------------------------------------------------------ checked and found correct


class _Balance(HTMLParser):
    VOID = frozenset({"meta", "img", "br", "link", "hr", "input"})

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[str] = []
        self.errors: list[str] = []

    def handle_starttag(self, tag: str, attrs) -> None:
        if tag not in self.VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if self.stack and self.stack[-1] == tag:
            self.stack.pop()
        else:
            self.errors.append(tag)


def test_html_is_balanced_self_contained_and_escapes_labels(tmp_path: Path) -> None:
    df = frame()
    df["regime"] = df["regime"].map({"SB": "S|B <b>", "LB": "L&B</td>"})
    df["measure"] = "my|meas<script>"
    report = build(df, tmp_path, n_boot=N_BOOT, title="A <i>title</i> & more")
    page = report.html.read_text(encoding="utf-8")
    parser = _Balance()
    parser.feed(page)
    assert parser.errors == [] and parser.stack == []
    assert "<script" not in page.lower() and "<b>" not in page
    sources = re.findall(r'src="([^"]*)"', page)
    assert sources and all(s.startswith("data:image/png;base64,") for s in sources)
    # Markdown tables: a '|' in a label is escaped, so every row has the header's cells.
    md = report.markdown.read_text(encoding="utf-8")
    for block in re.findall(r"(?:^\|.*\|$\n?)+", md, flags=re.M):
        widths = {len(re.split(r"(?<!\\)\|", line)) for line in block.strip().splitlines()}
        assert len(widths) == 1, block


def test_unusual_but_legitimate_frames_build(tmp_path: Path) -> None:
    cases = {}
    d = frame()
    d["seed"] = d["seed"].astype(float)
    cases["float seeds"] = d
    d = frame()
    d.loc[d["seed"] == 2, "regime"] = np.nan
    cases["NaN regimes"] = d
    d = frame()
    d["value"] = np.where(d["regime"] == "SB", -1e-4, 10.0)
    cases["negative values on a log-worthy spread"] = d
    d = frame()
    d["batch_size"] = d["batch_size"].astype("Int64")
    d.loc[0, "batch_size"] = pd.NA
    cases["nullable batch sizes"] = d
    d = frame()
    d = d[~((d["regime"] == "SB") & (d["seed"] > 0))]
    cases["one SB run, three LB runs"] = d
    d = frame()
    d["settings"] = [{"k": 1}] * len(d)
    cases["settings as dicts"] = d
    for i, (name, df) in enumerate(cases.items()):
        report = build(df, tmp_path / str(i), n_boot=N_BOOT)
        assert report.html.is_file(), name


def test_float_seeds_pair_with_integer_seeds() -> None:
    df = frame()
    df["seed"] = df["seed"].astype(object)
    df.loc[df["regime"] == "LB", "seed"] = df.loc[df["regime"] == "LB", "seed"].astype(float)
    study = analyze(df, n_boot=N_BOOT)
    assert study.comparisons["λ_max"].wins == (3, 3)


def test_sb_vs_lb_numbers_equal_scipy_and_numpy() -> None:
    df = frame(seeds=(0, 1, 2, 3))
    study = analyze(df, n_boot=N_BOOT)
    sb = df.loc[df["regime"] == "SB", "value"].to_numpy()
    lb = df.loc[df["regime"] == "LB", "value"].to_numpy()
    comp = study.comparisons["λ_max"]
    assert comp.sb.mean == pytest.approx(sb.mean()) and comp.sb.std == pytest.approx(sb.std(ddof=1))
    assert comp.test.p_value == pytest.approx(stats.mannwhitneyu(lb, sb).pvalue)
    tau = study.correlations[("λ_max", "test_accuracy", "kendall")]
    assert tau.estimate == pytest.approx(stats.kendalltau(df["value"], df["test_accuracy"])[0])


def test_vectorized_bootstrap_statistics_equal_scipy_on_each_resample() -> None:
    rng = np.random.default_rng(1)
    x = rng.integers(0, 4, 9).astype(float)
    y = rng.integers(0, 3, 9).astype(float) + x
    idx = rng.integers(0, 9, (40, 9))
    for method, ref in (("kendall", stats.kendalltau), ("spearman", stats.spearmanr)):
        ours = resample_statistics(x, y, idx, method)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # scipy warns on constant resamples
            theirs = np.array([ref(x[i], y[i])[0] for i in idx])
        np.testing.assert_allclose(ours, theirs, atol=1e-12, equal_nan=True)


def test_failed_checkpoints_are_listed_in_the_provenance(tmp_path: Path) -> None:
    failed = pd.DataFrame({"path": ["lb/seed9.pt"], "error": ["not a checkpoint | <bad>"]})
    report = build(frame(), tmp_path, n_boot=N_BOOT, failed=failed)
    md = report.markdown.read_text(encoding="utf-8")
    assert "6 scored, 1 could not be scored" in md
    assert "lb/seed9.pt: not a checkpoint" in md
    assert "&lt;bad&gt;" in report.html.read_text(encoding="utf-8")


def test_correlation_with_constant_input_is_nan_with_a_note() -> None:
    r = rank_correlation([1, 2, 3, 4], [5, 5, 5, 5], n_boot=N_BOOT)
    assert np.isnan(r.estimate) and r.note == "y is constant"


def test_settings_json_is_normalised_before_grouping() -> None:
    df = frame()
    df["settings"] = [
        json.dumps({"k": 1, "tol": 1e-4}) if i % 2 else '{"tol": 0.0001, "k": 1}'
        for i in range(len(df))
    ]
    _, columns = scores_frame(normalize(df))
    assert [c.label for c in columns] == ["λ_max"]
