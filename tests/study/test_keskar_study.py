"""The de-confounded Keskar study: its plans, and the ci miniature's answers against its stores."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from flatness.pipeline.readers import load_results, load_runs
from flatness.report.paired import paired_test
from flatness.studies import keskar2017
from flatness.studies.keskar_answers import num, verdict_sentence
from flatness.studies.keskar_compare import CONTRASTS, ContrastResult, MeasureContrast
from flatness.study import run_study


def test_every_plan_has_the_controls_the_norms_and_the_answer() -> None:
    for plan in (keskar2017.DEMO, keskar2017.FULL, keskar2017.CI):
        assert plan.answer is not None, plan.name
        for case in plan.cases:
            assert case.regimes["SB"]["batch_size"] == "0.5%"
            assert case.regimes["LB"]["batch_size"] == "10%"
            assert case.regimes["LB-U"] == {"batch_size": "10%", "match_updates": "SB"}
            assert {"gradient_norm", "weight_norm"} <= set(case.measures), case.name
            assert case.train["target_accuracy"] is not None
            assert case.pair_seeds, case.name
    for case in keskar2017.FULL.cases:
        assert case.pair_seeds == case.seeds
        text = " ".join(case.notes)
        assert "BatchNorm" in text and "batch statistics" in text
        assert "Keskar et al.'s" in text and "updates" in text
        assert "= 20 examples" in text or "= 7 examples" in text
        assert case.measures["keskar"]["draws"] == 3
    f1 = keskar2017.FULL.cases[0]
    assert f1.regimes["SB-C"]["target_loss"] == keskar2017.CONVERGED_LOSS
    assert f1.regimes["SB-C"]["target_accuracy"] is None
    assert set(keskar2017.DEMO.cases[0].regimes) == {"SB", "LB", "LB-U"}
    assert len(keskar2017.DEMO.cases[0].seeds) == 3


def _contrast(gaps: list[float], ratios: list[list[float]], key: str = "b") -> ContrastResult:
    """A contrast whose large-batch accuracy differs by ``gaps`` points per seed and whose
    measures differ by the factors in ``ratios`` (one list per measure, one per seed)."""
    seeds = list(range(len(gaps)))
    small = dict.fromkeys(seeds, 70.0)
    large = {s: 70.0 + g for s, g in zip(seeds, gaps, strict=True)}
    acc = MeasureContrast("test accuracy (%)", 70.0, float(np.mean(list(large.values()))),
                          paired_test(small, large))  # fmt: skip
    sharp = []
    for i, factors in enumerate(ratios):
        a = dict.fromkeys(seeds, 10.0)
        b = {s: 10.0 * f for s, f in zip(seeds, factors, strict=True)}
        sharp.append(MeasureContrast(f"m{i}", 10.0, float(np.mean(list(b.values()))),
                                     paired_test(a, b), 0.1))  # fmt: skip
    which = next(c for c in CONTRASTS if c.key == key)
    return ContrastResult("case", which, tuple(seeds), acc, tuple(sharp), {})


def test_the_verdict_follows_the_controls() -> None:
    first = _contrast([-5, -6, -7], [[3, 3, 3], [2, 2, 2]], "a")
    holds = _contrast([-3, -2, -4], [[2, 2, 2], [1.5, 1.2, 1.1]])
    gone = _contrast([1, -1, 2], [[0.5, 0.8, 1.2], [0.9, 0.7, 0.6]])
    mixed = _contrast([-3, -2, -4], [[0.5, 0.5, 0.5], [0.9, 0.9, 0.9]])
    yes = verdict_sentence("case", {"a": first, "b": holds, "c": holds})
    no = verdict_sentence("case", {"a": first, "b": gone, "c": gone})
    partly = verdict_sentence("case", {"a": first, "b": mixed})
    assert yes is not None and "? Yes:" in yes and "3.0 points less accurate" in yes
    assert no is not None and "? No:" in no and "0.7 points more accurate" in no
    assert partly is not None and "? Partly:" in partly and "sharper by 0/2" in partly
    assert "p < 0.25" in yes  # 3 seeds: the smallest two-sided paired p is 2/8
    assert verdict_sentence("case", {"a": first}) is None


@pytest.fixture(scope="module")
def ci_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str]]:
    """The ci plan run once into a temporary folder."""
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("keskar-ci")
    result = run_study(keskar2017.CI, runs=root / "runs", out=root / "out", progress=False,
                       echo=lambda line: None)  # fmt: skip
    return root, list(result.answers)


def _runs(store: Path) -> pd.DataFrame:
    runs = load_runs(store)
    meta = runs["meta"].map(json.loads)
    return runs.assign(updates=meta.map(lambda m: m["updates"]))


def _sharpness(store: Path) -> pd.DataFrame:
    """(regime, seed) x one column per ε-sharpness task and λ_max: their headline values."""
    df = load_results(store)
    rows = df[
        ((df["measure"] == "keskar") & (df["component"] == ""))
        | ((df["measure"] == "lambda_max") & (df["component"] == "1"))
    ]
    rows = rows.assign(column=rows["measure"] + rows["settings"])
    return rows.pivot_table(index=["regime", "seed"], columns="column", values="value")


def _gradient_norms(store: Path) -> pd.Series:
    df = load_results(store)
    rows = df[(df["measure"] == "gradient_norm") & (df["component"] == "")]
    return rows.set_index(["regime", "seed"])["value"]


def test_ci_answers_quote_the_stores_numbers(ci_run: tuple[Path, list[str]]) -> None:
    root, answers = ci_run
    store = root / "runs" / "tiny-mnist1d" / "results.sqlite"
    runs = _runs(store)
    sharp = _sharpness(store)
    grad = _gradient_norms(store)
    assert sharp.shape[1] == 3  # ε-sharpness in full space and a subspace, λ_max
    for c in CONTRASTS:
        sentence = next(a for a in answers if a.startswith(f"tiny-mnist1d ({c.key})"))
        small = runs[runs["regime"] == c.small].set_index("seed")
        large = runs[runs["regime"] == c.large].set_index("seed")
        seeds = sorted(set(small.index) & set(large.index))
        acc_small = 100 * small.loc[seeds, "test_accuracy"].mean()
        acc_large = 100 * large.loc[seeds, "test_accuracy"].mean()
        where = "below" if acc_large < acc_small else "above"
        assert f"accuracy is {abs(acc_large - acc_small):.1f} points {where}" in sentence
        assert f"({num(acc_large)} vs {num(acc_small)} %" in sentence
        upd = (large.loc[seeds, "updates"].mean(), small.loc[seeds, "updates"].mean())
        assert f"({num(upd[0])} vs {num(upd[1])})" in sentence
        loss = (large.loc[seeds, "train_loss"].mean(), small.loc[seeds, "train_loss"].mean())
        assert f"training loss of {num(loss[0])} vs {num(loss[1])}" in sentence
        g = (
            np.mean([grad[(c.large, s)] for s in seeds]),
            np.mean([grad[(c.small, s)] for s in seeds]),
        )
        assert f"gradient norm {num(g[0])} vs {num(g[1])}" in sentence
        ratios = [
            np.mean([sharp.loc[(c.large, s), col] for s in seeds])
            / np.mean([sharp.loc[(c.small, s), col] for s in seeds])
            for col in sharp.columns
        ]
        assert f"= {num(min(ratios))} to {num(max(ratios))};" in sentence, sentence
        assert f"sharper by {sum(r > 1 for r in ratios)}/3 measures" in sentence
        assert f"the smallest p {len(seeds)} paired seeds allow is 0.25" in sentence
    updates = runs.set_index(["regime", "seed"])["updates"]
    for seed in (0, 1, 2):
        assert updates[("LB-U", seed)] == updates[("SB", seed)]  # equal updates by design
    assert any(a.startswith("tiny-mnist1d: does Keskar's result hold") for a in answers)


def test_ci_overview_writes_the_tables_and_the_figure(ci_run: tuple[Path, list[str]]) -> None:
    root, _ = ci_run
    regimes = pd.read_csv(root / "out" / "data" / "keskar-regimes.csv")
    contrasts = pd.read_csv(root / "out" / "data" / "keskar-contrasts.csv")
    assert set(regimes["regime"]) == {"SB", "LB", "LB-U", "SB-C", "LB-C"}
    assert {"a", "b", "c"} == set(contrasts["contrast"])
    assert (contrasts["min_p"] == 0.25).all()
    assert list((root / "out" / "figures").glob("keskar-tiny-mnist1d.png"))
    markdown = (root / "out" / "report.md").read_text(encoding="utf-8")
    assert "does Keskar's result hold" in markdown
