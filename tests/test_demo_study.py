"""`flatness demo`: the demo study's plans, its two answers checked against the stores
(on the CI miniature), and the command's flags (--plan, --full, threads)."""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from flatness import demo
from flatness.cli import main
from flatness.cli.demo import THREAD_VARIABLES, one_thread_unless_told
from flatness.pipeline.readers import load_runs
from flatness.report.paired import binomial_floor, paired_test
from flatness.report.stats import format_p_value
from flatness.studies import demo as demo_study
from flatness.studies import keskar2017, smith2018
from flatness.threads import fix_threads, fixed_threads


@pytest.fixture
def restore_threads():  # type: ignore[no-untyped-def]
    from threadpoolctl import threadpool_limits

    before = torch.get_num_threads()
    with threadpool_limits(limits=None):  # restores the pools' limits on exit
        yield
    fix_threads(None)
    torch.set_num_threads(before)


def test_the_demo_plan_holds_the_two_studies_demo_cases() -> None:
    plan = demo_study.DEMO
    assert plan.cases == (*keskar2017.DEMO.cases, *smith2018.DEMO.cases)
    keskar, smith = plan.cases
    assert {"SB", "LB", "LB-U"} <= set(keskar.regimes)
    assert keskar.regimes["LB-U"]["match_updates"] == "SB"
    assert {"decay", "increase"} <= set(smith.regimes)
    assert isinstance(plan.answer, demo_study.DemoAnswer)
    assert plan.answer.keskar == {keskar.name} and plan.answer.smith == {smith.name}
    assert demo_study.STUDY.plan() is plan and demo_study.STUDY.plan("ci") is demo_study.CI
    assert demo.DEMO is plan and demo._folders(plan) == ("runs/demo", "reports/demo")


def _cli(args: list[str]) -> tuple[int, str]:
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        code = main(args)
    return code, buffer.getvalue()


@pytest.fixture(scope="module")
def ci_run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    root = tmp_path_factory.mktemp("demo-ci")
    before = torch.get_num_threads()
    try:
        code, out = _cli(["demo", "--plan", "ci", "--no-progress", "--threads", "1",
                          "--runs", str(root / "r"), "--out", str(root / "o")])  # fmt: skip
    finally:
        fix_threads(None)
        torch.set_num_threads(before)
    return {"root": root, "code": code, "out": out}


def _runs(store: Path) -> pd.DataFrame:
    runs = load_runs(store)
    meta = runs["meta"].map(json.loads)
    return runs.assign(
        updates=meta.map(lambda m: m["updates"]), n_test=meta.map(lambda m: m["n_test"])
    )


def _expected(runs: pd.DataFrame, a: str, b: str) -> dict[str, object]:
    first, second = (runs[runs["regime"] == r].set_index("seed") for r in (a, b))
    seeds = sorted(set(first.index) & set(second.index))
    first, second = first.loc[seeds], second.loc[seeds]
    test = paired_test(first["test_accuracy"].to_dict(), second["test_accuracy"].to_dict())
    accuracy = float(np.mean(np.r_[first["test_accuracy"], second["test_accuracy"]]))
    gap = 100 * second["test_accuracy"].mean() - 100 * first["test_accuracy"].mean()
    return {
        "acc_a": f"{100 * first['test_accuracy'].mean():.1f}%",
        "acc_b": f"{100 * second['test_accuracy'].mean():.1f}%",
        "points": f"{demo_study.signed(gap)} points",
        "updates_a": f"{first['updates'].mean():.0f}",
        "updates_b": f"{second['updates'].mean():.0f}",
        "tests": f"Wilcoxon p = {format_p_value(test.wilcoxon_p)}, sign p = "
        f"{format_p_value(test.sign_p)}; {test.n} seeds cannot give p below "
        f"{format_p_value(test.min_p)}",
        "floor": f"{binomial_floor(accuracy, int(first['n_test'].max())):.1f} points",
        "test": test,
    }


def test_answer_a_is_written_from_the_smith_store(ci_run: dict) -> None:
    root = ci_run["root"]
    assert ci_run["code"] == 0, ci_run["out"]
    (line,) = [x for x in ci_run["out"].splitlines() if x.startswith("- (a) ")]
    case = smith2018.CI.cases[0].name
    e = _expected(_runs(root / "r" / case / "results.sqlite"), "decay", "increase")
    assert (
        f"{case}: increasing B reached {e['acc_b']} test accuracy and decaying η {e['acc_a']}"
        in line
    )
    test = e["test"]
    assert (
        f"increase − decay {e['points']}, higher in {test.wins} and lower in {test.losses}" in line
    )
    assert e["tests"] in line and f"binomial sd is {e['floor']}" in line
    assert f"with {e['updates_b']} updates against {e['updates_a']}" in line


def test_answer_b_is_written_from_the_keskar_store(ci_run: dict) -> None:
    root = ci_run["root"]
    (line,) = [x for x in ci_run["out"].splitlines() if x.startswith("- (b) ")]
    case = keskar2017.CI.cases[0].name
    runs = _runs(root / "r" / case / "results.sqlite")
    e = _expected(runs, "SB", "LB-U")
    assert (
        f"with as many updates as SB ({e['updates_a']})" in line
        and e["updates_a"] == e["updates_b"]
    )
    assert f"reached {e['acc_b']} test accuracy against SB's {e['acc_a']}" in line
    assert f"LB-U − SB {e['points']}, lower in {e['test'].losses} of {e['test'].n} seeds" in line
    assert e["tests"] in line and f"binomial sd is {e['floor']}" in line
    lb = _expected(runs, "SB", "LB")
    assert f"LB took {lb['updates_b']} updates" in line
    md = (root / "o" / "report.md").read_text(encoding="utf-8")
    assert line[2:] in md and "## Smith et al. (2018) in detail" in md
    assert "## Keskar et al. (2017) in detail" in md


def test_full_runs_every_registered_study_s_full_plan(
    monkeypatch: pytest.MonkeyPatch, restore_threads: None
) -> None:
    calls: list[tuple[str, str, str]] = []

    def fake(plan, **kwargs):  # type: ignore[no-untyped-def]
        calls.append((plan.name, str(kwargs["runs"]), str(kwargs["out"])))
        from flatness.study.outcome import StudyResult

        return StudyResult(
            cases=(), html=Path("x.html"), markdown=Path("x.md"), answers=(), seconds=0.0
        )

    monkeypatch.setattr(demo, "run_study", fake)
    code, _ = _cli(["demo", "--full", "--no-progress", "--runs", "R", "--out", "O"])
    names = [name for name, _ in demo.full_plans()]
    assert code == 0 and names[:2] == ["keskar2017", "smith2018"]
    assert calls == [(plan.name, f"R/{name}", f"O/{name}") for name, plan in demo.full_plans()]
    calls.clear()
    _cli(["demo", "--full", "--no-progress"])
    assert calls[0] == (keskar2017.FULL.name, "runs/keskar", "reports/keskar-mnist1d")
    assert calls[1] == (smith2018.FULL.name, "runs/smith2018", "reports/smith2018")


def test_one_thread_unless_the_user_chose(
    monkeypatch: pytest.MonkeyPatch, restore_threads: None
) -> None:
    from threadpoolctl import threadpool_info

    for variable in THREAD_VARIABLES:  # empty counts as unset; teardown restores them
        monkeypatch.setenv(variable, "")
    with one_thread_unless_told(argparse.Namespace(threads=2)) as applied:
        assert not applied and torch.get_num_threads() == 2 and fixed_threads() == 2
    fix_threads(None)
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    with one_thread_unless_told(argparse.Namespace(threads=None)) as applied:
        assert not applied and fixed_threads() is None
    monkeypatch.setenv("OMP_NUM_THREADS", "")
    torch.set_num_threads(2)
    blas = {pool["prefix"]: pool["num_threads"] for pool in threadpool_info()}
    with one_thread_unless_told(argparse.Namespace(threads=None)) as applied:
        assert applied and torch.get_num_threads() == 1 and fixed_threads() == 1
        assert {pool["num_threads"] for pool in threadpool_info()} == {1}
        assert os.environ["OPENBLAS_NUM_THREADS"] == os.environ["OMP_NUM_THREADS"] == "1"
    assert torch.get_num_threads() == 2 and fixed_threads() is None
    assert os.environ["OMP_NUM_THREADS"] == "" and "OPENBLAS_NUM_THREADS" in os.environ
    assert {pool["prefix"]: pool["num_threads"] for pool in threadpool_info()} == blas
