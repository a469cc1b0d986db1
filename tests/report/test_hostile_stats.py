"""The report's statistics as a hostile reviewer reads them (issue 15): paired tests with
their attainable p, Holm, too few seeds, power and noise floor, pinned training accuracy,
and Table 2's updates, training loss, gradient norm and stop reasons."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from flatness.report import build
from flatness.report.analysis import POWER_TAUS, analyze
from flatness.report.answers import answers
from flatness.report.comparisons import comparison_table
from flatness.report.frames import normalize, runs_frame
from flatness.report.overview_case import OverviewCase
from flatness.report.overview_tables import within_taus
from flatness.report.paired import binomial_floor, holm, paired_test
from flatness.report.summary import summary_sentences
from flatness.report.tables import accuracy_table, measures_table


def frame(seeds: int = 5, *, pinned: bool = True, meta: bool = True) -> pd.DataFrame:
    """SB and LB runs: LB sharper in every seed, trained far fewer updates."""
    rng = np.random.default_rng(0)
    rows = []
    for regime, batch, updates in (("SB", 20, 3000), ("LB", 400, 100)):
        for seed in range(seeds):
            test = (0.9 if regime == "SB" else 0.88) + rng.normal(0, 0.005)
            train = 0.98 + rng.normal(0, 0.001 if pinned else 0.03)
            base = {
                "checkpoint": f"{regime}{seed}",
                "path": f"{regime}/{seed}.pt",
                "regime": regime,
                "batch_size": batch,
                "lr": 1e-3,
                "seed": seed,
                "epoch": 3,
                "train_loss": (0.1 if regime == "SB" else 0.2) + 0.01 * seed,
                "train_accuracy": min(train, 1.0),
                "test_loss": 0.3,
                "test_accuracy": test,
            }
            if meta:
                base["meta"] = json.dumps(
                    {
                        "updates": updates + seed,
                        "n_test": 1000,
                        "stop_reason": "target_accuracy" if seed else "epochs",
                        "config": {"target_accuracy": 0.98},
                    }
                )
            sharp = (1.0 if regime == "SB" else 3.0) + rng.normal(0, 0.2)
            for measure, value, settings in (
                ("keskar", sharp, {"eps": 1e-3}),
                ("lambda_max", rng.normal(10, 1), {}),
                ("gradient_norm", (0.1 if regime == "SB" else 0.3) + 0.01 * seed, {}),
                ("weight_norm", 10 + rng.normal(), {}),
            ):
                rows.append(
                    {**base, "measure": measure, "value": value, "settings": json.dumps(settings)}
                )
    return pd.DataFrame(rows)


def _by_seed(study, label: str, regime: str) -> dict[int, float]:  # type: ignore[no-untyped-def]
    table = study.runs.set_index("checkpoint").join(study.wide)
    mine = table[table["regime"] == regime]
    return dict(zip(mine["seed"].astype(int), mine[label].astype(float), strict=True))


def test_sb_vs_lb_table_has_paired_tests_holm_and_attainable_p() -> None:
    study = analyze(frame(), n_boot=100)
    table = comparison_table(study)
    assert table is not None
    for head in ("Mann–Whitney p", "Wilcoxon p", "sign-test p", "Holm p"):
        assert head in table.frame.columns
    labels = [c.label for c in study.columns]
    raw = [
        paired_test(_by_seed(study, label, "SB"), _by_seed(study, label, "LB")).wilcoxon_p
        for label in labels
    ]
    values = table.values.set_index("quantity")
    np.testing.assert_allclose(values.loc[labels, "wilcoxon_p"], raw)
    np.testing.assert_allclose(values.loc[labels, "holm_wilcoxon_p"], holm(raw))
    notes = " ".join(table.notes)
    assert "Mann–Whitney p ≥ 0.0079 with 5 vs 5 runs" in notes
    assert "Wilcoxon and sign-test p ≥ 0.062 with 5 paired seeds" in notes
    assert f"Holm-adjusted over the {len(labels)} measures" in notes
    assert table.title != "SB vs LB"  # the caption does not repeat the heading


def test_summary_cites_attainable_p_and_calls_nothing_significant_before_holm() -> None:
    study = analyze(frame(), n_boot=100)
    sentences = summary_sentences(study)
    keskar = next(s for s in sentences if s.startswith("LB sharper than SB in 5/5 seeds by ε"))
    assert "Wilcoxon signed-rank p = 0.06" in keskar
    assert "(p ≥ 0.06 attainable with 5 paired seeds)" in keskar
    assert "Mann–Whitney p = 0.008 (≥ 0.008 with 5 vs 5 runs)" in keskar
    k = len(study.columns)
    holm_p = study.comparisons[study.columns[0].label].holm_p
    match = re.search(
        rf"over the {k} measures p = ([0-9.]+): (not significant|significant)", keskar
    )
    assert match is not None
    assert float(match.group(1)) == pytest.approx(holm_p, abs=0.006)
    assert match.group(2) == "not significant"  # 5 seeds cannot reach p < 0.05


def test_two_checkpoints_per_regime_give_no_within_regime_tau() -> None:
    study = analyze(frame(seeds=2, pinned=False), n_boot=100)
    within = study.correlations[(study.columns[0].label, "test_accuracy", "within")]
    assert np.isnan(within.estimate) and within.note == "too few seeds per regime"
    assert not study.within_enough
    enough = analyze(frame(seeds=3, pinned=False), n_boot=100)
    assert np.isfinite(
        enough.correlations[(enough.columns[0].label, "test_accuracy", "within")].estimate
    )


def test_power_and_binomial_floor_stand_beside_none_does() -> None:
    study = analyze(frame(pinned=False), n_boot=200)
    text = " ".join(summary_sentences(study))
    if "none of them is significant" not in text:
        pytest.skip("the pooled correlations of this frame differ")
    for tau in POWER_TAUS:
        assert f"{100 * study.within_power(tau):.0f}% at τ = {tau:g}" in text
    accuracy = study.runs["test_accuracy"].mean()
    assert f"varies by {binomial_floor(accuracy, 1000):.2f} points (binomial sd)" in text
    assert study.n_test == 1000


def test_power_sentence_numbers_are_the_simulated_power() -> None:
    study = analyze(frame(pinned=False), n_boot=200)
    case = OverviewCase(name="F1", title="F1", store=Path("x"), report=Path("y"))
    paragraph = answers([case], [study], [within_taus(study)], 0.95)[0]
    if "none does." in paragraph:
        assert f"{100 * study.within_power(0.3):.0f}% at τ = 0.3" in paragraph
    assert "Wilcoxon signed-rank p = " in paragraph
    assert "attainable with 5 paired seeds" in paragraph


def test_gap_correlations_dropped_only_where_training_accuracy_is_pinned(tmp_path: Path) -> None:
    pinned = build(frame(), tmp_path / "pinned", n_boot=50)
    md = pinned.markdown.read_text(encoding="utf-8")
    assert "No correlation with the generalization gap is shown" in md
    assert "Rank correlation of each measure with the generalization gap" not in md
    free = build(frame(pinned=False), tmp_path / "free", n_boot=50)
    md = free.markdown.read_text(encoding="utf-8")
    assert "Rank correlation of each measure with the generalization gap" in md
    assert "No correlation with the generalization gap is shown" not in md


def test_table2_states_updates_training_loss_gradient_norm_and_stops() -> None:
    df = frame()
    study = analyze(df, n_boot=0)
    table = accuracy_table(study)
    row = table.frame.set_index("regime")
    runs = runs_frame(normalize(df))
    sb_updates = runs.loc[runs["regime"] == "SB", "updates"]
    assert list(sb_updates) == [3000, 3001, 3002, 3003, 3004]
    assert row.loc["SB", "updates"] == f"{sb_updates.mean():.0f} ± {sb_updates.std():.0f}"
    assert row.loc["LB", "final training loss"].startswith("0.22")
    assert row.loc["LB", "gradient norm"].startswith("0.32")
    assert row.loc["SB", "stopped"] == "4/5 reached 98 %, 1/5 ran all epochs"
    bare = accuracy_table(analyze(frame(meta=False).query("measure != 'gradient_norm'"), n_boot=0))
    for head in ("updates", "gradient norm", "stopped"):
        assert head not in bare.frame.columns


def test_weight_norm_leads_the_measures_table() -> None:
    table = measures_table(analyze(frame(), n_boot=0))
    assert table is not None
    assert list(table.frame.columns[:3]) == ["regime", "batch size", "weight norm"]
    assert "Dinh et al." in table.notes[0]


def test_runs_frame_reads_the_stop_reason_of_older_checkpoints() -> None:
    old = {"updates": 7, "reached_target": True, "config": {"target_accuracy": 0.9}}
    df = pd.DataFrame(
        {"checkpoint": ["a"], "regime": ["SB"], "batch_size": [8.0], "lr": [0.1], "seed": [0],
         "epoch": [1], "path": ["a.pt"], "train_loss": [0.1], "train_accuracy": [0.9],
         "test_loss": [0.2], "test_accuracy": [0.8], "generalization_gap": [0.1],
         "meta": [json.dumps(old)]}
    )  # fmt: skip
    runs = runs_frame(df)
    assert runs.loc[0, "stop_reason"] == "target_accuracy" and runs.loc[0, "updates"] == 7


def test_answers_say_too_few_seeds_instead_of_a_two_point_tau() -> None:
    study = analyze(frame(seeds=2, pinned=False), n_boot=100)
    case = OverviewCase(name="F1", title="F1", store=Path("x"), report=Path("y"))
    paragraph = answers([case], [study], [within_taus(study)], 0.95)[0]
    assert "too few seeds per regime" in paragraph
    assert "none does" not in paragraph
    assert "p ≥ 0.50 attainable with 2 paired seeds" in paragraph  # 2/2² = 0.5


def test_accuracy_sentence_gives_the_binomial_floor_beside_the_seed_spread() -> None:
    study = analyze(frame(), n_boot=0)
    sentence = next(s for s in summary_sentences(study) if s.startswith("LB test accuracy"))
    floor = binomial_floor(float(study.runs["test_accuracy"].mean()), 1000)
    spread = np.mean([study.accuracy[(r, "test_accuracy")].std for r in ("SB", "LB")])
    assert f"varies by {floor:.2f} points (binomial sd)" in sentence
    assert f"spread between seeds of {100 * spread:.2f} points" in sentence
