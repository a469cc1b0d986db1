"""The Smith et al. (2018) study: its schedules, and the CI miniature's answers against
the numbers in its store."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from flatness.pipeline.readers import load_runs, load_tracks
from flatness.report.overview_case import OverviewCase
from flatness.studies.smith2018 import (
    BASE_BATCH,
    CAP,
    FULL,
    LR,
    N_TRAIN,
    SCHEDULES,
    STUDY,
    phases,
)
from flatness.studies.smith2018_answers import MARGIN_POINTS, answer
from flatness.studies.smith2018_data import ORDER, phase_ends


def test_the_schedules_give_the_intended_eta_and_batch_in_each_phase() -> None:
    case = FULL.cases[0]
    cap = int(CAP * N_TRAIN)
    lr, b = LR, BASE_BATCH
    expected = {
        "decay": [(0, lr, b), (6, lr / 5, b), (12, lr / 25, b), (16, lr / 125, b)],
        "increase": [(0, lr, b), (6, lr, 5 * b), (12, lr, 25 * b), (16, lr, 125 * b)],
        "hybrid": [(0, lr, b), (6, lr, cap), (12, lr / 5, cap), (16, lr / 25, cap)],
        "constant": [(e, lr, b) for e in (0, 6, 12, 16)],
        "const-noise": [(0, lr, b), (6, 5 * lr, cap), (12, 5 * lr, cap), (16, 5 * lr, cap)],
    }
    for regime, phases_wanted in expected.items():
        got = phases(case, regime)
        assert [(e, B) for e, _, B in got] == [(e, B) for e, _, B in phases_wanted], regime
        assert np.allclose([x for _, x, _ in got], [x for _, x, _ in phases_wanted]), regime
        # η/B anneals alike in decay, increase and hybrid; const-noise keeps it.
    ratio = {r: [eta / B for _, eta, B in phases(case, r)] for r in expected}
    assert np.allclose(ratio["decay"], ratio["increase"])
    assert np.allclose(ratio["decay"], ratio["hybrid"])
    assert np.allclose(ratio["const-noise"], ratio["constant"])
    assert phases(case, "increase")[-1][2] <= N_TRAIN
    assert list(SCHEDULES) == list(ORDER)
    assert [c.name for c in FULL.cases] == ["mlp-mnist1d", "f1-mnist1d"]
    assert FULL.cases[0].train["network_kwargs"]["batchnorm"] is False
    assert FULL.cases[1].train["network"] == "f1"
    assert sorted(STUDY.plans) == ["ci", "demo", "full"]


def test_phase_ends_come_from_what_training_did() -> None:
    history = pd.DataFrame(
        {
            "run": ["a"] * 5 + ["b"] * 5,
            "epoch": [1, 2, 3, 4, 5] * 2,
            "lr": [0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.02, 0.02, 0.02, 0.02],
            "batch_size": [8, 8, 8, 40, 40, 8, 8, 8, 8, 8],
        }
    )
    assert phase_ends(history) == [1, 3, 5]


@pytest.fixture(scope="module")
def ci_study(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    from flatness.study import run_study

    base = tmp_path_factory.mktemp("smith2018")
    result = run_study(STUDY.plan("ci"), runs=base / "runs", out=base / "out",
                       progress=False, echo=lambda line: None)  # fmt: skip
    return base, result


def _expected(store: Path) -> pd.DataFrame:
    """Final numbers recomputed from the store's runs table, one row per run."""
    runs = load_runs(store)
    meta = [json.loads(m) for m in runs["meta"]]
    return pd.DataFrame(
        {
            "regime": runs["regime"],
            "seed": runs["seed"].astype(int),
            "acc": 100 * runs["test_accuracy"].astype(float),
            "updates": [m["updates"] for m in meta],
            "n_test": [m["n_test"] for m in meta],
        }
    )


def test_the_ci_answers_state_the_store_s_numbers(ci_study) -> None:  # type: ignore[no-untyped-def]
    base, result = ci_study
    store = base / "runs" / "mlp-ci" / "results.sqlite"
    runs = _expected(store)
    text = " ".join(result.answers)
    assert result.answers[0].startswith("Is increasing B the same as decaying η?")
    stats = runs.groupby("regime")["acc"].agg(["mean", "std"])
    for regime, row in stats.iterrows():
        assert f"{regime} {row['mean']:.1f} ± {row['std']:.1f} %" in text
    updates = runs.groupby("regime")["updates"].mean()
    assert updates["increase"] < updates["decay"]
    assert f"{updates['decay'] / updates['increase']:.1f}× fewer updates" in result.answers[0]
    assert f"({updates['increase']:.0f} vs {updates['decay']:.0f})" in result.answers[0]
    wide = runs.pivot(index="seed", columns="regime", values="acc")
    gap = float((wide["increase"] - wide["decay"]).mean())
    assert f"increase − decay = {gap:+.1f} points" in result.answers[0]
    acc = runs["acc"].mean() / 100
    floor = 100 * np.sqrt(acc * (1 - acc) / runs["n_test"].max())
    margin = max(MARGIN_POINTS, floor)
    verdict = "yes, within" if abs(gap) <= margin else "no, the gap is beyond"
    assert f"{verdict} the ±{margin:.1f}-point margin" in result.answers[0]
    assert "2 seeds cannot give p below 0.50" in text
    # The tracked λ_max at the end of training, increase vs decay.
    tracks = load_tracks(store)
    tracks = tracks[tracks["source"] == "tracker"]
    last = tracks.sort_values("step").groupby("run").tail(1).groupby("regime")["lambda_max"].mean()
    assert f"λ_max {last['increase']:.3g} vs {last['decay']:.3g}" in text
    ratio = last["increase"] / last["decay"]
    assert f"ending {ratio:.2f}× as sharp by the tracked λ_max" in result.answers[0]
    peak = (tracks["lambda_max"] / tracks["stability_threshold"]).groupby(tracks["run"]).max()
    peak = peak.groupby(tracks.groupby("run")["regime"].first()).mean()
    shares = ", ".join(f"{r} {peak[r]:.2f}" for r in ("decay", "increase", "constant"))
    assert f"edge of stability of Cohen et al. 2021): {shares}." in text
    anneal = float((wide["decay"] - wide["constant"]).mean())
    weak = f"Annealing itself moved accuracy by only {anneal:+.1f} points" in text
    assert weak == (abs(anneal) <= margin)


def test_the_ci_overview_writes_its_tables_and_figures(ci_study) -> None:  # type: ignore[no-untyped-def]
    base, _ = ci_study
    out = base / "out"
    schedules = pd.read_csv(out / "data" / "smith-schedules.csv")
    assert list(schedules["regime"]) == ["decay", "increase", "constant"]
    runs = _expected(base / "runs" / "mlp-ci" / "results.sqlite")
    means = runs.groupby("regime")["acc"].mean()
    got = schedules.set_index("regime")["test accuracy (%)"]
    assert np.allclose(got[means.index].to_numpy(), means.to_numpy())
    phases_csv = pd.read_csv(out / "data" / "smith-phases.csv")
    assert sorted(set(phases_csv["phase end"])) == [2, 3, 4, 5]
    for name in ("curves-epoch", "curves-updates", "tracked"):
        assert (out / "figures" / f"smith-mlp-ci-{name}.png").stat().st_size > 0
    page = (out / "report.md").read_text(encoding="utf-8")
    assert "Limits of this design" in page


def test_the_answer_works_on_a_subset_of_the_schedules(ci_study, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    base, _ = ci_study
    store = base / "runs" / "mlp-ci" / "results.sqlite"
    runs = load_runs(store)
    keep = frozenset(runs.loc[runs["regime"].isin(["decay", "increase"]), "checkpoint"])
    case = OverviewCase("mlp-ci", "t", store, base / "out" / "mlp-ci" / "report.html",
                        checkpoints=keep)  # fmt: skip
    result = answer([case], tmp_path)
    text = " ".join(result.answers)
    assert "claim (iii)" not in text and "constant" not in text
    assert "claim (i)" in text and "claim (ii)" in text
    assert set(result.tables["smith-runs"]["regime"]) == {"decay", "increase"}
