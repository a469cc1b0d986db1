"""A plan's own answer function: its sentences, sections, tables and figures on the
overview; without one, Keskar et al.'s answers (keskar_answer) as before."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import pandas as pd
import pytest

from flatness.pipeline.readers import load_runs
from flatness.report.overview import keskar_answer, write_overview
from flatness.report.overview_case import OverviewCase, StudyAnswer
from flatness.report.render import Paragraph, Section
from flatness.study import Case, StudyPlan, run_study

CASE = Case(
    "tiny",
    "Tiny case",
    {"network": "tiny_mlp", "dataset": "digits_flat", "lr": 0.01, "epochs": None,
     "max_updates": 20},
    {"SB": {"batch_size": 16}, "LB": {"batch_size": 128}},
    (0, 1),
    examples=100,
    measures={"lambda_max": {}},
)  # fmt: skip


def updates_answer(cases: Sequence[OverviewCase], out: Path) -> StudyAnswer:
    """Updates and test accuracy per regime, from the stores' run metadata."""
    rows = []
    for case in cases:
        runs = load_runs(case.store)
        runs = runs[runs["checkpoint"].isin(case.checkpoints or set(runs["checkpoint"]))]
        for _, run in runs.iterrows():
            meta = json.loads(run["meta"])
            row = {"case": case.name, "regime": run["regime"], "seed": run["seed"]}
            rows.append({**row, "updates": meta["updates"], "test_accuracy": run["test_accuracy"]})
    frame = pd.DataFrame(rows)
    mean = frame.groupby("regime")["test_accuracy"].mean()
    (out / "figures").mkdir(exist_ok=True)
    (out / "figures" / "marker.txt").write_text("figure", encoding="utf-8")
    sentence = (
        f"Every run took {int(frame['updates'].max())} updates; mean test accuracy "
        f"SB {100 * mean['SB']:.1f}% vs LB {100 * mean['LB']:.1f}% over 2 seeds."
    )
    section = Section("Updates", "updates", [Paragraph("The update counts per run.")])
    return StudyAnswer((sentence,), (section,), {"updates": frame})


@pytest.fixture(scope="module")
def studied(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    root = tmp_path_factory.mktemp("answer")
    lines: list[str] = []
    plan = StudyPlan("p", "Answered", (CASE,), answer=updates_answer)
    result = run_study(plan, runs=root / "r", out=root / "o", progress=False, echo=lines.append)
    return {"root": root, "result": result, "lines": lines}


def test_the_plan_s_answer_is_shown_printed_and_its_tables_written(studied: dict) -> None:
    root, result = studied["root"], studied["result"]
    (answer,) = result.answers
    runs = load_runs(root / "r" / "tiny" / "results.sqlite")
    mean = runs.groupby("regime")["test_accuracy"].mean()
    assert answer == (
        f"Every run took 20 updates; mean test accuracy SB {100 * mean['SB']:.1f}% vs "
        f"LB {100 * mean['LB']:.1f}% over 2 seeds."
    )
    assert f"- {answer}" in studied["lines"]
    md = (root / "o" / "report.md").read_text(encoding="utf-8")
    headings = [line for line in md.splitlines() if line.startswith("## ")]
    assert headings == ["## What was run", "## Answers", "## Updates", "## Full reports"]
    table = pd.read_csv(root / "o" / "data" / "updates.csv")
    assert sorted(table["updates"]) == [20] * 4
    assert (root / "o" / "figures" / "marker.txt").is_file()
    assert not (
        root / "o" / "data" / "overview-accuracy.csv"
    ).exists()  # Keskar's tables are not written


def test_keskar_answer_is_the_default_overview(studied: dict, tmp_path: Path) -> None:
    root = studied["root"]
    case = OverviewCase("tiny", "Tiny case", root / "r" / "tiny" / "results.sqlite",
                        root / "o" / "tiny" / "report.html")  # fmt: skip
    answer = keskar_answer([case], tmp_path, n_boot=50)
    assert answer.answers and all(a.startswith("tiny") for a in answer.answers)
    assert "overview-accuracy" in answer.tables
    overview = write_overview(tmp_path, [case], title="t", n_boot=50)
    assert overview.answers == answer.answers
    md = overview.markdown.read_text(encoding="utf-8")
    for section in answer.sections:
        assert f"## {section.title}" in md
    assert (tmp_path / "data" / "overview-accuracy.csv").is_file()


def test_a_rebuilt_overview_removes_its_earlier_tables_and_figures(
    studied: dict, tmp_path: Path
) -> None:
    from flatness.report.render import FigureBlock

    root = studied["root"]
    case = OverviewCase("tiny", "Tiny case", root / "r" / "tiny" / "results.sqlite",
                        root / "o" / "tiny" / "report.html")  # fmt: skip

    def first(cases: Sequence[OverviewCase], out: Path) -> StudyAnswer:
        (out / "figures").mkdir(exist_ok=True)
        (out / "figures" / "old.png").write_bytes(b"png")
        figure = Section("F", "f", [FigureBlock("figures/old.png", "old")])
        return StudyAnswer(("one",), (figure,), {"old": pd.DataFrame({"x": [1]})})

    def second(cases: Sequence[OverviewCase], out: Path) -> StudyAnswer:
        return StudyAnswer(("two",), (), {"new": pd.DataFrame({"x": [2]})})

    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "mine.csv").write_text("a\n", encoding="utf-8")  # not the overview's
    write_overview(tmp_path, [case], title="t", answer=first)
    assert (tmp_path / "data" / "old.csv").is_file() and (
        tmp_path / "figures" / "old.png"
    ).is_file()
    write_overview(tmp_path, [case], title="t", answer=second)
    assert not (tmp_path / "data" / "old.csv").exists()
    assert not (tmp_path / "figures" / "old.png").exists()
    assert (tmp_path / "data" / "new.csv").is_file() and (tmp_path / "data" / "mine.csv").is_file()
