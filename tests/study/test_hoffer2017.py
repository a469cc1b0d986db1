"""The fixed-epochs-vs-fixed-updates study: the plans, and the CI plan's answers vs its store."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from flatness.headlines import scores_frame, wide_scores
from flatness.pipeline.readers import load_runs
from flatness.report.from_store import load_frame
from flatness.studies import hoffer2017 as study
from flatness.studies.hoffer2017 import CI, EPOCHS, FULL, STUDY, TARGET_LOSS


def test_the_full_plan_is_adam_and_sgd_at_three_batch_sizes() -> None:
    assert [c.name for c in FULL.cases] == ["adam", "sgd"]
    assert [c.train["optimizer"] for c in FULL.cases] == ["adam", "sgd"]
    for case in FULL.cases:
        assert len(case.seeds) >= 3
        sizes = {label: s["batch_size"] for label, s in case.regimes.items()}
        assert (sizes["SB"], sizes["MB"], sizes["LB"]) == (20, 100, 400)
        assert sizes["U-LB"] == 400 and sizes["C-SB"] == 20 and sizes["L-MB"] == 100
        assert case.regimes["U-LB"]["max_updates"] == EPOCHS * 4000 // 20
        assert case.regimes["C-LB"]["target_loss"] == TARGET_LOSS
        assert case.sections == study.SECTIONS and case.notes
    assert STUDY.plan() is FULL and STUDY.plan("ci") is CI


def _number(pattern: str, text: str) -> float:
    match = re.search(pattern, text)
    assert match, f"{pattern!r} not in {text!r}"
    return float(match.group(1))


def _runs(store: Path) -> pd.DataFrame:
    runs = load_runs(store)
    runs = runs[runs["status"] == "ok"].copy()
    runs["meta"] = runs["meta"].map(json.loads)
    runs["updates"] = runs["meta"].map(lambda m: m["updates"])
    runs["stop"] = runs["meta"].map(lambda m: m.get("stop_reason"))
    return runs.set_index(["regime", "seed"])


@pytest.fixture(scope="module")
def ci_study(tmp_path_factory: pytest.TempPathFactory):
    from flatness.study import run_study

    tmp = tmp_path_factory.mktemp("hoffer2017")
    return tmp, run_study(
        CI, runs=tmp / "runs", out=tmp / "out", progress=False, echo=lambda line: None
    )


def test_the_ci_runs_hold_epochs_updates_and_the_target(ci_study) -> None:
    _, result = ci_study
    assert [c.name for c in result.cases] == ["adam", "sgd"]
    for case in result.cases:
        runs = _runs(case.store)
        seeds = sorted(runs.loc["SB"].index)
        assert seeds == [0, 1]
        for seed in seeds:
            # E: the same epochs for SB and LB (and L)
            epochs = {r: int(runs.loc[(r, seed), "epoch"]) for r in ("SB", "LB", "L-LB")}
            assert set(epochs.values()) == {2}
            # U: LB makes exactly the updates SB made in E (2 epochs x 500 // 10)
            assert runs.loc[("SB", seed), "updates"] == runs.loc[("U-LB", seed), "updates"] == 100
            assert runs.loc[("U-LB", seed), "stop"] == "max_updates"
            assert runs.loc[("LB", seed), "updates"] == 10
            # C: stopped at the target (training loss at most it) or at the cap
            for regime in ("C-SB", "C-LB"):
                row = runs.loc[(regime, seed)]
                assert row["stop"] in ("target_loss", "epochs")
                if row["stop"] == "target_loss":
                    assert row["meta"]["train_loss"] <= 1.9
                else:
                    assert row["epoch"] == 6


def test_the_ci_answers_are_the_store_s_numbers(ci_study) -> None:
    tmp, result = ci_study
    cells = {"E": ("SB", "LB"), "U": ("SB", "U-LB"), "C": ("C-SB", "C-LB"), "L": ("SB", "L-LB")}
    names = {"adam": "Adam", "sgd": "SGD with momentum"}
    for case in result.cases:
        runs = _runs(case.store)
        scores, columns = scores_frame(load_frame(case.store, checkpoints=case.checkpoints))
        wide = wide_scores(scores, columns, runs["checkpoint"])
        wide.index = runs.index
        for protocol, (small, large) in cells.items():
            sentence = next(
                a for a in result.answers if a.startswith(f"{names[case.name]}, {protocol} (")
            )
            acc = 100 * runs["test_accuracy"]
            gap = np.mean([acc[(large, s)] - acc[(small, s)] for s in (0, 1)])
            quoted = _number(r"LB − SB test accuracy ([-+][\d.]+) points", sentence)
            assert quoted == pytest.approx(gap, abs=0.051)
            ratios = [wide.loc[(large, s), "λ_max"] / wide.loc[(small, s), "λ_max"] for s in (0, 1)]
            geometric = math.exp(np.mean(np.log(ratios)))
            assert _number(r"λ_max ×([\d.]+)", sentence) == pytest.approx(geometric, abs=0.0051)
            wins = sum(r > 1 for r in ratios)
            assert re.search(rf"λ_max ×[\d.]+ \([^)]*LB higher in {wins}/2 seeds", sentence)
            counts = sorted({int(runs.loc[(large, s), "updates"]) for s in (0, 1)})
            spread = f"{counts[0]}" if len(counts) == 1 else f"{counts[0]}-{counts[-1]}"
            assert f"LB {spread} updates" in sentence
            loss = np.mean([runs.loc[(large, s), "train_loss"] for s in (0, 1)])
            assert _number(r"LB [\d-]+ updates in [\d-]+ epochs ending at training loss (\d+\.\d+)",
                           sentence) == pytest.approx(loss, abs=0.0006)  # fmt: skip
        survival = next(
            a for a in result.answers
            if a.startswith("Does the LB gap") and f"? {names[case.name]}:" in a
        )  # fmt: skip
        assert "cannot go below p = 0.5)" in survival  # two pairs: 2/2^2
    out = tmp / "out"
    gaps = pd.read_csv(out / "data" / "hoffer2017-gaps.csv")
    assert set(gaps["protocol"]) == {"E", "U", "C", "L"} and (gaps["min_p"] == 0.5).all()
    assert (gaps["holm_p"] >= gaps["wilcoxon_p"] - 1e-12).all()
    assert (out / "figures" / "hoffer2017-gaps.png").is_file()
    text = (out / "report.md").read_text(encoding="utf-8")
    assert "Design and its limits" in text and "Protocols side by side" in text
