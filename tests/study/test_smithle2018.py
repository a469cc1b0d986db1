"""The Smith & Le (2018) noise-scale study: its grid, and the CI plan's answers vs its store."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from flatness.pipeline.readers import load_runs
from flatness.report.correlation import within_kendall
from flatness.studies import smithle2018 as study
from flatness.studies.smithle2018 import CI, FULL, MAX_LR, RATIOS, STUDY, noise_grid


def _levels(regimes: dict[str, dict[str, float]]) -> dict[float, list[int]]:
    levels: dict[float, list[int]] = {}
    for cell in regimes.values():
        levels.setdefault(cell["lr"] / cell["batch_size"], []).append(int(cell["batch_size"]))
    return levels


@pytest.mark.parametrize("plan", [CI, FULL], ids=["ci", "full"])
def test_the_grid_s_diagonals_share_eta_over_b(plan) -> None:
    for case in plan.cases:
        levels = _levels(dict(case.regimes))
        for ratio, sizes in levels.items():
            # η/B is exact (powers of two), and every level holds several batch sizes
            assert any(ratio == r for r in (*RATIOS, 2.0**-8, 2.0**-6))
            assert len(sizes) >= 2 and len(set(sizes)) == len(sizes)
        for cell in case.regimes.values():
            assert cell["lr"] <= MAX_LR
            assert cell["lr"] == (cell["lr"] / cell["batch_size"]) * cell["batch_size"]
        assert case.train["optimizer"] == "sgd" and case.train["momentum"] == 0.0


def test_the_full_grid_is_5_by_5_without_the_unstable_corner() -> None:
    levels = _levels(dict(FULL.cases[0].regimes))
    assert sorted(levels) == sorted(RATIOS)
    assert [len(levels[r]) for r in RATIOS] == [5, 5, 5, 5, 4]
    # an anti-diagonal (one η) crosses all five batch sizes
    at = sorted(c["batch_size"] for c in FULL.cases[0].regimes.values() if c["lr"] == 0.25)
    assert at == [16, 32, 64, 128, 256]
    assert [c.train["dataset_kwargs"]["n_train"] for c in FULL.cases] == [2000, 4000]
    assert all(len(c.seeds) >= 3 for c in FULL.cases)
    assert STUDY.plan("ci") is CI and STUDY.plan() is FULL


def test_noise_grid_refuses_a_grid_with_nothing_to_compare() -> None:
    with pytest.raises(ValueError, match="nothing to compare"):
        noise_grid([16, 32], [1.0], max_lr=16.0)
    assert list(noise_grid([16, 32], [2.0**-5], max_lr=1.0)) == ["B16-lr0.5", "B32-lr1"]


def _number(pattern: str, text: str) -> float:
    match = re.search(pattern, text)
    assert match, f"{pattern!r} not in {text!r}"
    return float(match.group(1))


def test_the_ci_plan_s_answers_are_the_store_s_numbers(tmp_path: Path) -> None:
    from flatness.study import run_study

    result = run_study(
        CI, runs=tmp_path / "runs", out=tmp_path / "out", progress=False, echo=lambda line: None
    )
    (case,) = result.cases
    runs = load_runs(case.store)
    runs = runs[runs["status"] == "ok"]
    meta = runs["meta"].map(json.loads)
    acc = 100 * runs["test_accuracy"].to_numpy(dtype=float)
    batch = runs["batch_size"].to_numpy(dtype=float)
    lr = runs["lr"].to_numpy(dtype=float)
    ratio = lr / batch
    n_train = int(meta.iloc[0]["n_train"])
    assert len(runs) == 8 and n_train == 500

    headline, first = result.answers[:2]
    assert headline.startswith(f"Answer: at N = {n_train} test accuracy")
    assert first.startswith(f"N = {n_train} (8 runs: 4 cells × 2 seeds)")
    # τ of accuracy with B within each η/B level, and with η/B within each B
    tau_b = within_kendall(batch, acc, ratio, n_boot=0, n_perm=0).estimate
    tau_r = within_kendall(ratio, acc, batch, n_boot=0, n_perm=0).estimate
    assert _number(r"within an η/B level is ([-+][\d.]+)", first) == pytest.approx(tau_b, abs=0.006)
    assert _number(r"with η/B within a batch size ([-+][\d.]+)", first) == pytest.approx(
        tau_r, abs=0.006
    )
    assert _number(r"within a batch size ([-+][\d.]+), with B", headline) == pytest.approx(
        tau_r, abs=0.006
    )
    assert _number(r"within an η/B level ([-+][\d.]+)\)", headline) == pytest.approx(
        tau_b, abs=0.006
    )
    # the share of the variance the η/B levels' means explain
    frame = pd.DataFrame({"acc": acc, "ratio": ratio, "batch": batch})
    total = ((frame["acc"] - frame["acc"].mean()) ** 2).sum()
    within = ((frame["acc"] - frame.groupby("ratio")["acc"].transform("mean")) ** 2).sum()
    share = 100 * (1 - within / total)
    assert _number(r"η/B explains (\d+)%", first) == pytest.approx(share, abs=0.51)
    # the best cell, from the runs' mean test accuracy
    means = frame.groupby(["batch", "ratio"])["acc"].mean()
    b, r = means.idxmax()
    best = next(a for a in result.answers if "best cell overall" in a)
    assert f"B = {b:.0f}, η = {b * r:g}" in best
    assert _number(r"g = ηN/B = ([\d.]+)", best) == pytest.approx(b * r * n_train / b, rel=1e-3)
    assert "whether B_opt grows with N is not tested" in " ".join(result.answers)

    limits = next(a for a in result.answers if a.startswith(f"N = {n_train}, limits"))
    train = 100 * runs["train_accuracy"].to_numpy(dtype=float)
    lowest = train[ratio == ratio.min()].mean()
    assert _number(r"training accuracy averages (\d+)% at the lowest", limits) == pytest.approx(
        lowest, abs=0.51
    )
    # the measures get one sentence each, and λ_max's η·λ_max matches the store
    lam = next(a for a in result.answers if "η·λ_max has median" in a)
    from flatness.headlines import scores_frame, wide_scores
    from flatness.report.from_store import load_frame

    scores, columns = scores_frame(load_frame(case.store, checkpoints=case.checkpoints))
    wide = wide_scores(scores, columns, runs["checkpoint"])
    product = lr * wide["λ_max"].to_numpy(dtype=float)
    assert _number(r"η·λ_max has median ([\d.]+)", lam) == pytest.approx(
        np.median(product), abs=0.006
    )

    out = tmp_path / "out"
    grid = pd.read_csv(out / "data" / "grid.csv")
    assert len(grid) == 4 and set(grid["seeds"]) == {2}
    check = frame.groupby(["batch", "ratio"])["acc"].mean()
    for _, row in grid.iterrows():
        expected = check[(row["batch_size"], row["ratio"])]
        assert row["test accuracy (%) mean"] == pytest.approx(expected)
    assert {"fits.csv", "best-batch.csv"} <= {p.name for p in (out / "data").iterdir()}
    assert (out / "figures" / "smithle2018-mlp-n500-ratio.png").is_file()
    assert "Answers" in (out / "report.md").read_text(encoding="utf-8")


def test_the_study_declares_its_report_sections() -> None:
    assert set(study.SECTIONS) <= {
        "summary",
        "accuracy",
        "sharpness",
        "sb-vs-lb",
        "batch-size",
        "correlation",
        "parametric",
        "density",
        "training",
        "data",
        "provenance",
    }
    assert all(case.sections == study.SECTIONS for case in (*CI.cases, *FULL.cases))
    assert all(case.notes for case in (*CI.cases, *FULL.cases))


def test_scaling_sentences_read_b_opt_and_the_best_level_from_the_means() -> None:
    from flatness.studies.smithle2018_answers import scaling_sentences
    from flatness.studies.smithle2018_data import ACCURACY, best_batches

    rows = []
    for n in (64, 128):
        for ratio in (2.0**-7, 2.0**-6, 2.0**-5):
            for b in (16, 32, 64):
                for seed, jitter in ((0, -0.1), (1, 0.1)):
                    # accuracy peaks where the noise scale g = ηN/B = ratio·N is 1
                    acc = 50.0 - np.log2(ratio * n) ** 2 + jitter
                    cell = {"case": f"n{n}", "n_train": n, "batch_size": b, "lr": ratio * b}
                    rows.append({**cell, "ratio": ratio, "seed": seed, ACCURACY: acc})
    frame = pd.DataFrame(rows)
    best = best_batches(frame)
    text = " ".join(scaling_sentences(best, frame))
    assert "best η/B level is 1/64 at N = 64 (g = 1, 50.0%" in text
    assert "1/128 at N = 128 (g = 1, 50.0%" in text
    assert "stayed fixed" in text
    # η = 0.5 is trained with B = 16, 32, 64: B_opt 32 at N = 64, 64 at N = 128
    assert "×2 at 1 of 1 learning rates (η = 0.5: 32 → 64), as Smith & Le's" in text
    assert "η = 0.5: B = 32 (50.0 ± 0.1%, 1.0 points above B = 16)" in text
    # the seeds' jitter (±0.1) is far below the 1-point steps: every resample agrees
    assert "×2 at a median 1 of 1 rates (5–95%: 1–1), at all of them in 100% of draws" in text
