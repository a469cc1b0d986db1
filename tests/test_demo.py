"""`flatness demo` end to end on a miniature plan: train -> score -> report -> overview."""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from scipy import stats

import flatness as fl
from flatness import demo
from flatness.cli import main
from flatness.report import format_mean_std
from flatness.studies import keskar2017
from flatness.studies.keskar2017 import KESKAR_PROTOCOL, KeskarCase
from flatness.study import fingerprint

MINI_TRAIN = {
    **KESKAR_PROTOCOL,
    "network": "tiny_mlp",
    "network_kwargs": {"width": 8, "depth": 1},
    "dataset": "mnist1d",
    "dataset_kwargs": {"n_train": 200, "n_test": 100},
    "epochs": 3,
}

MINI = demo.StudyPlan(
    name="mini",
    title="Miniature demo",
    cases=(
        KeskarCase(
            name="tiny",
            title="tiny MLP on MNIST-1D",
            train=MINI_TRAIN,
            seeds=(0, 1, 2),
            sweep={"B5": {"batch_size": 5}},
            sweep_seeds=(0,),
            reference="F1",
            examples=100,
            measures={
                "lambda_max": {"k": 2},
                "keskar": {"eps": [1e-3, 5e-4], "subspace": [0, 100], "maxiter": 3},
            },
        ),
    ),
    runs="runs/mini",
    out="reports/mini",
)


@pytest.fixture(autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Run the miniature demo through the CLI once; the tests read what it wrote."""
    root = tmp_path_factory.mktemp("demo")
    patch = pytest.MonkeyPatch()
    patch.setattr(demo, "DEMO", MINI)
    patch.chdir(root)
    args = ["demo", "--no-progress", "--runs", "r", "--out", "o"]
    try:
        first = _run(args)
        second = _run(args)
    finally:
        patch.undo()
    return {"root": root, "first": first, "second": second, "args": args}


def _run(args: list[str]) -> dict:
    import contextlib
    import io

    buffer = io.StringIO()
    started = time.perf_counter()
    with contextlib.redirect_stdout(buffer):
        code = main(args)
    return {"code": code, "out": buffer.getvalue(), "seconds": time.perf_counter() - started}


def test_demo_trains_scores_and_reports_printing_the_report_path(demo_run: dict) -> None:
    root, first = demo_run["root"], demo_run["first"]
    assert first["code"] == 0, first["out"]
    printed = first["out"]
    assert "[1/1] tiny MLP on MNIST-1D" in printed
    assert "train: 7 networks" in printed
    assert f"report: {Path('o') / 'report.html'}" in printed
    assert "\n- tiny: LB is" in printed  # the overview's answer, printed too
    for path in ("o/report.html", "o/report.md", "o/tiny/report.html", "o/tiny/report.md"):
        assert (root / path).is_file(), path
    assert len(list((root / "r/tiny").glob("*/seed*/final.pt"))) == 7
    manifest = (root / "r/tiny/manifest.toml").read_text(encoding="utf-8")
    assert manifest.count("[[runs]]") == 7 and "[[pairs]]" in manifest
    # The overview links the case's report and names the regenerating command.
    md = (root / "o/report.md").read_text(encoding="utf-8")
    assert "(tiny/report.html)" in md
    assert "flatness demo --runs r --out o" in md


def test_rerun_reuses_checkpoints_scores_and_report(demo_run: dict) -> None:
    root, second = demo_run["root"], demo_run["second"]
    assert second["code"] == 0, second["out"]
    assert "is up to date" in second["out"]
    assert (
        "0 networks trained and 7 reused, 0 tasks (measures and parametric plots) "
        "computed and 36 reused" in second["out"]
    )
    assert "7 networks trained and 0 reused" in demo_run["first"]["out"]
    md = (root / "o/report.md").read_text(encoding="utf-8")
    assert "Compute behind these results" in md and "for 7 networks" in md
    assert second["seconds"] < demo_run["first"]["seconds"]


def _stored(root: Path) -> pd.DataFrame:
    df = fl.load_results(root / "r/tiny/results.sqlite")
    settings = df["settings"].map(json.loads)
    df["eps"] = settings.map(lambda s: s.get("eps"))
    df["subspace"] = settings.map(lambda s: s.get("subspace"))
    return df


def _row(md: str, section: str, *first: str) -> list[str]:
    part = md[md.index(section) :]
    start = "| " + " | ".join(first) + " |"
    line = next(x for x in part.splitlines() if x.startswith(start))
    return [cell.strip() for cell in line.strip("|").split("|")]


def _within_tau(runs: pd.DataFrame) -> float:
    """Kendall's tau-b over pairs of checkpoints of the same regime, by brute force."""
    num = tx = ty = 0.0
    for _, group in runs.groupby("regime"):
        v, a = group.value.to_numpy(), group.test_accuracy.to_numpy()
        for i in range(len(v)):
            for j in range(i + 1, len(v)):
                num += np.sign(v[i] - v[j]) * np.sign(a[i] - a[j])
                tx, ty = tx + abs(np.sign(v[i] - v[j])), ty + abs(np.sign(a[i] - a[j]))
    return float(num / np.sqrt(tx * ty))


def test_overview_tables_hold_the_stored_values(demo_run: dict) -> None:
    root = demo_run["root"]
    df = _stored(root)
    md = (root / "o/report.md").read_text(encoding="utf-8")

    # Table 3 line (full space, eps = 1e-3): mean ± std of the stored SB and LB values.
    keskar = df[(df.measure == "keskar") & (df.eps == 1e-3) & (df.subspace == 0)]
    row = _row(md, "## ε-sharpness", "tiny", "full", "0.001")
    sb = keskar[keskar.regime == "SB"].set_index("seed").value
    lb = keskar[keskar.regime == "LB"].set_index("seed").value
    assert row[3] == format_mean_std(sb.mean(), sb.std(ddof=1), 3)
    assert row[4] == format_mean_std(lb.mean(), lb.std(ddof=1), 3)
    assert row[6] == f"{int((lb > sb).sum())}/3"

    # The SB-vs-LB table counts seeds from the stored values too.
    cell = _row(md, "## Is LB sharper", "ε-sharpness (full, ε=1e-3)")[1]
    assert cell.startswith(f"{int((lb > sb).sum())}/3")

    # Kendall's tau over all 7 checkpoints (sweep included) with the test accuracy.
    runs = keskar.sort_values("checkpoint")
    tau = stats.kendalltau(runs.value, runs.test_accuracy).statistic
    cell = _row(md, "## How each measure ranks", "ε-sharpness (full, ε=1e-3)")[1]
    assert cell.startswith(f"{tau:+.2f} [") and cell.endswith("(n = 7)")

    # The same within each batch size: pairs of checkpoints sharing a regime only.
    cell = _row(md, "## The same, within each batch size", "ε-sharpness (full, ε=1e-3)")[1]
    assert cell.startswith(f"{_within_tau(runs):+.2f} [")

    # Test accuracy row: the stored accuracies and the paper's F1 values beside them.
    acc = df.drop_duplicates("checkpoint")
    row = _row(md, "## Test accuracy", "tiny")
    sb_acc = 100 * acc[acc.regime == "SB"].test_accuracy
    assert row[4] == format_mean_std(sb_acc.mean(), sb_acc.std(ddof=1), 3)
    assert row[-3:] == ["98.03 ± 0.07", "97.81 ± 0.07", "-0.22"]

    # The CSV behind the table holds the same numbers unrounded.
    values = pd.read_csv(root / "o/data/overview-sharper.csv")
    line = values[(values.measure == "ε-sharpness (full, ε=1e-3)")].iloc[0]
    assert line.sb_mean == pytest.approx(sb.mean(), rel=1e-12)
    assert line.lb_mean == pytest.approx(lb.mean(), rel=1e-12)


def test_case_report_holds_the_stored_values(demo_run: dict) -> None:
    root = demo_run["root"]
    df = _stored(root)
    md = (root / "o/tiny/report.md").read_text(encoding="utf-8")
    lam = df[(df.measure == "lambda_max") & (df.component == "1") & (df.regime == "LB")]
    assert format_mean_std(lam.value.mean(), lam.value.std(ddof=1), 3) in md
    assert "paper" in md and "F1" in md
    # The top-2 eigenvalues table: λ_2 of the LB runs, from the stored component "2".
    second = df[(df.measure == "lambda_max") & (df.component == "2") & (df.regime == "LB")]
    row = _row(md, "**Top 2 Hessian eigenvalues", "LB")
    assert row[3] == format_mean_std(second.value.mean(), second.value.std(ddof=1), 3)
    table = pd.read_csv(root / "o/tiny/data/eigenvalues.csv")
    assert set(table.component) == {1, 2}
    # The correlation table's τ within regime, from the stored ε-sharpness.
    keskar = df[(df.measure == "keskar") & (df.eps == 1e-3) & (df.subspace == 0)]
    header = _row(md, "**Rank correlation of each measure with the test accuracy", "measure")
    row = _row(
        md,
        "**Rank correlation of each measure with the test accuracy",
        "ε-sharpness (full, ε=1e-3)",
    )
    cell = row[header.index("τ within regime [CI]")]
    assert cell.startswith(f"{_within_tau(keskar):.2f} [")


def test_report_is_rebuilt_when_the_store_changes(demo_run: dict, tmp_path: Path) -> None:
    root = demo_run["root"]
    store = root / "r/tiny/results.sqlite"
    copy = tmp_path / "results.sqlite"
    with sqlite3.connect(store) as src, sqlite3.connect(copy) as dst:
        src.backup(dst)
    before = fingerprint(copy, {})
    with sqlite3.connect(copy) as con:
        con.execute("UPDATE measurements SET value = value + 1 WHERE rowid = 1")
    assert fingerprint(copy, {}) != before
    assert fingerprint(store, {}) == before
    assert fingerprint(store, {"title": "other"}) != before


def test_cases_are_validated() -> None:
    with pytest.raises(ValueError, match="sweep_seeds"):
        KeskarCase(name="x", title="x", train={}, sweep={"B8": {"batch_size": 8}})
    with pytest.raises(ValueError, match="occur twice in regimes and sweep"):
        KeskarCase(name="x", title="x", train={}, sweep={"SB": {}}, sweep_seeds=(0,))
    with pytest.raises(ValueError, match="plain folder name"):
        KeskarCase(name="../x", title="x", train={})
    with pytest.raises(ValueError, match="SB and LB"):
        KeskarCase(name="x", title="x", train={}, regimes={"A": {}})
    with pytest.raises(ValueError, match="distinct names"):
        case = KeskarCase(name="x", title="x", train={})
        demo.StudyPlan(name="p", title="p", cases=(case, case), runs="r", out="o")


def test_built_in_plans_follow_keskar_protocol() -> None:
    for plan in (keskar2017.DEMO, demo.FULL):
        for case in plan.cases:
            assert case.regimes["SB"]["batch_size"] == "0.5%"
            assert case.regimes["LB"]["batch_size"] == "10%"
            assert case.train["optimizer"] == "adam"
            assert case.train["target_accuracy"] == 0.98
    full = demo.FULL.cases
    assert all(len(case.seeds) >= 3 for case in full)
    keskar = full[0].measures["keskar"]
    assert keskar["eps"] == [1e-3, 5e-4] and keskar["subspace"] == [0, 100]


def test_scoring_objective_reproduces_the_stored_values(demo_run: dict) -> None:
    root = demo_run["root"]
    df = _stored(root)
    row = df[(df.measure == "lambda_max") & (df.component == "1")].iloc[0]
    settings = json.loads(row.settings)
    manifest = root / "r/tiny/manifest.toml"
    obj = fl.pipeline.scoring_objective(manifest, root / "r/tiny" / row.path)
    assert obj.num_examples == 100
    eig = fl.hessian_eigenvalues(obj, k=settings["k"], seed=settings["seed"])
    assert float(eig.eigenvalues[0]) == pytest.approx(row.value, rel=1e-6)


def test_runs_below_the_target_accuracy_are_named(demo_run: dict) -> None:
    # The miniature trains for 3 epochs: no run reaches 98% training accuracy.
    assert (
        "warning: 7 runs stopped below the target accuracy: sb/seed0/final.pt ("
        in (demo_run["first"]["out"])
    )
    md = (demo_run["root"] / "o/report.md").read_text(encoding="utf-8")
    assert "tiny: 7 runs stopped at their cap short of their training target" in md


def test_a_case_with_nothing_stored_is_left_out_and_others_are_reported(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    good = MINI.cases[0]
    bad = KeskarCase(
        name="broken",
        title="every measure fails",
        train=MINI_TRAIN,
        seeds=(0,),
        examples=50,
        pair_seed=None,
        measures={"lambda_max": {"k": 100000}},  # more eigenvalues than parameters
    )
    plan = demo.StudyPlan(name="p", title="p", cases=(bad, good), runs="r", out="o")
    monkeypatch.setattr(demo, "DEMO", plan)
    monkeypatch.chdir(tmp_path)
    assert main(["demo", "--no-progress"]) == 1
    printed = capsys.readouterr().out
    assert "report: left out, r/broken/results.sqlite holds no measurement" in printed
    assert "FAILED" in printed and "lambda_max" in printed
    md = (tmp_path / "o/report.md").read_text(encoding="utf-8")
    assert "broken: left out, its store holds no measurement" in md
    assert "(tiny/report.html)" in md and "broken/report.html" not in md


def test_ctrl_c_keeps_the_work_and_says_how_to_go_on(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def interrupted(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(demo, "run_study", interrupted)
    assert main(["demo", "--full", "--no-progress"]) == 130
    err = capsys.readouterr().err
    assert "interrupted" in err and "`flatness demo --full` goes on from there" in err
