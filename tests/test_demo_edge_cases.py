"""Edge cases of `flatness demo` and the overview, each one a problem a review found.

Every test states the expected behaviour in its docstring. The pipeline tests train
2-6 networks of 8 hidden units for 2 epochs on 200 MNIST-1D examples (a few seconds
each).
"""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import pandas as pd
import pytest

import flatness as fl
from flatness import demo
from flatness.cli import main
from flatness.report.overview import OverviewCase, write_overview
from flatness.studies.keskar2017 import KeskarCase
from flatness.study import StudyResult, describe
from tests.test_demo import MINI_TRAIN, one_thread  # noqa: F401 (an autouse fixture)

TRAIN = {**MINI_TRAIN, "epochs": 2}


def _case(**kw: object) -> KeskarCase:
    base: dict[str, object] = {
        "name": "t",
        "title": "t",
        "train": TRAIN,
        "seeds": (0, 1),
        "examples": 50,
        "measures": {"lambda_max": {"k": 1}},
    }
    base.update(kw)
    return KeskarCase(**base)  # type: ignore[arg-type]


def _study(case: KeskarCase) -> StudyResult:
    plan = demo.StudyPlan(name="p", title="p", cases=(case,), runs="r", out="o")
    return demo.run_study(plan, progress=False, echo=lambda line: None)


# -- overview wording (synthetic frames, no training) -----------------------------------


def _frame(spec: list[tuple[str, int, int, float, float]]) -> pd.DataFrame:
    """Rows (regime, batch size, seed, ε-sharpness, test accuracy) as a tidy frame."""
    return pd.DataFrame(
        [
            {
                "checkpoint": f"{regime}{seed}",
                "path": f"{regime}{seed}.pt",
                "regime": regime,
                "batch_size": batch,
                "seed": seed,
                "test_accuracy": acc,
                "train_accuracy": 0.99,
                "measure": "keskar",
                "settings": json.dumps({"eps": 1e-3, "subspace": 0}),
                "component": "",
                "value": phi,
            }
            for regime, batch, seed, phi, acc in spec
        ]
    )


def _overview(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, frames: dict[str, pd.DataFrame]
) -> str:
    cases = [
        OverviewCase(name, name, tmp_path / f"{name}.sqlite", tmp_path / name / "report.html")
        for name in frames
    ]
    monkeypatch.setattr("flatness.report.overview._frame", lambda case: frames[case.name])
    md = write_overview(tmp_path, cases, title="t", n_boot=50).markdown
    return md.read_text(encoding="utf-8")


def _answer(md: str, name: str) -> str:
    return next(line for line in md.splitlines() if line.startswith(f"- {name}: "))


def test_overview_says_when_lb_is_not_sharper(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """LB values 1, 2, 3 against SB's 2 in seeds 0, 1, 2: LB is higher in 1 of 3 seeds
    and lower in 1; the answer must say LB is not sharper in every seed."""
    spec = [("SB", 8, s, 2.0, 0.9) for s in range(3)]
    spec += [("LB", 64, s, 1.0 + s, 0.8) for s in range(3)]
    md = _overview(tmp_path, monkeypatch, {"toy": _frame(spec)})
    assert "LB is NOT sharper than SB in every seed" in _answer(md, "toy")
    assert "| 1/3, ×1.00, Holm p = " in md
    assert "LB test accuracy is 10.00 points below SB's" in _answer(md, "toy")
    assert (tmp_path / "report.html").is_file()


def test_overview_does_not_call_missing_test_accuracies_equal(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A store without test accuracies (a data set with no test split: the scorer stores
    NaN) must not be summarized as "LB test accuracy is nan points equal to SB's", nor
    show "+nan" in the accuracy table: the sentence should be left out (or say there is
    no test accuracy) and the cell should be a dash."""
    nan = float("nan")
    spec = [("SB", 8, s, 1.0 + s, nan) for s in range(3)]
    spec += [("LB", 64, s, 2.0 + s, nan) for s in range(3)]
    md = _overview(tmp_path, monkeypatch, {"na": _frame(spec)})
    assert "nan points" not in _answer(md, "na")
    assert "+nan" not in md


def test_overview_equal_accuracies_are_worded_as_equal(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """When LB's and SB's mean test accuracies are equal, the answer should say they are
    equal (as flatness.report.summary does), not "is 0.00 points equal to SB's"."""
    spec = [("SB", 8, s, 1.0 + s, 0.9) for s in range(3)]
    spec += [("LB", 64, s, 2.0 + s, 0.9) for s in range(3)]
    md = _overview(tmp_path, monkeypatch, {"eq": _frame(spec)})
    assert "points equal to" not in _answer(md, "eq")


def test_within_table_footnote_names_the_permutations_asked_for(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The within-batch-size table's footnote states how many permutations the p-values
    use. With one seed per regime no within-group τ is defined, yet the footnote then
    says "(0 permutations)"; it should state the number asked for (n_boot = 50 here) or
    say no τ is defined, never report 0 permutations."""
    md = _overview(
        tmp_path, monkeypatch, {"one": _frame([("SB", 8, 0, 1.0, 0.9), ("LB", 64, 0, 2.0, 0.8)])}
    )
    assert "(0 permutations)" not in md


def test_answer_does_not_claim_every_seed_when_a_seed_has_no_value(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Three seeds were trained but the LB ε-sharpness of seed 2 is missing (NaN: a failed
    or non-finite estimate). The answer must not say "LB is sharper than SB in every
    seed" on the strength of 2 compared seeds out of 3; it should say how many seeds were
    compared (the table shows 2/2, the sentence hides the missing seed)."""
    spec = [("SB", 8, s, 1.0, 0.9) for s in range(3)]
    spec += [("LB", 64, 0, 2.0, 0.8), ("LB", 64, 1, 2.0, 0.8), ("LB", 64, 2, float("nan"), 0.8)]
    md = _overview(tmp_path, monkeypatch, {"gap": _frame(spec)})
    answer = _answer(md, "gap")
    assert "LB is sharper than SB in every seed" not in answer
    assert "LB is NOT sharper" in answer and "(values for 2 of 3 seeds)" in answer


def test_overview_with_no_case_writes_no_broken_tables(tmp_path: Path) -> None:
    """When every case is left out (no store holds a measurement), run_study still writes
    the overview with no case. Its Markdown must not contain empty, malformed tables
    (a "|  |" header over a "||" rule); tables without rows should be left out or
    replaced by a sentence."""
    md = write_overview(tmp_path, [], title="t", n_boot=10).markdown
    lines = md.read_text(encoding="utf-8").splitlines()
    assert "||" not in lines


# -- Case validation -----------------------------------------------------------------


def test_case_rejects_a_pair_seed_that_is_not_trained() -> None:
    """pair_seed defaults to 0; a case with seeds (1, 2) then writes a [[pairs]] entry
    for sb/seed0 and lb/seed0, which are never trained, and the whole study fails at the
    parametric plot after training (exit code 1). Case should reject it up front with a
    ValueError naming pair_seed."""
    with pytest.raises(ValueError, match="pair_seed"):
        _case(seeds=(1, 2))


def test_case_rejects_an_unknown_pair_bn() -> None:
    """pair_bn must be "recompute" or "interpolate"; a typo is only caught by the
    manifest parser after every network was trained (ManifestError from run_study). Case
    should raise ValueError naming pair_bn at construction."""
    with pytest.raises(ValueError, match="pair_bn"):
        _case(pair_bn="recomputed")


def test_case_rejects_regime_labels_that_share_a_folder() -> None:
    """Runs go to <runs>/<case>/<regime in lower case>/seed<k>, so a sweep regime "sb"
    and the regime "SB" share a folder; train_sweep then fails midway (or reuses the
    other regime's checkpoint). The clash check should be case-insensitive."""
    with pytest.raises(ValueError, match=r"both regimes and sweep|folder"):
        _case(sweep={"sb": {"batch_size": 5}}, sweep_seeds=(0,))


# -- describe --------------------------------------------------------------------------


def test_describe_reads_the_batch_size_from_train_when_a_regime_does_not_set_it() -> None:
    """A regime that does not override batch_size trains with train["batch_size"]; describe
    should show that size ("batch 32"), not "batch None"."""
    case = KeskarCase(
        name="a",
        title="a",
        train={"network": "tiny_mlp", "batch_size": 32},
        regimes={"SB": {}, "LB": {"batch_size": 128}},
        pair_seed=None,
    )
    text = describe(case)
    assert "batch None" not in text and "SB (batch 32)" in text


def test_describe_shows_learning_rates_set_per_regime() -> None:
    """Regimes may override more than the batch size (SB at lr 1e-4, LB at lr 1e-2, a
    linear-scaling study); describe then must not state the shared "lr 0.001" that no run
    used; it should show each regime's learning rate."""
    case = _case(
        regimes={"SB": {"batch_size": 8, "lr": 1e-4}, "LB": {"batch_size": 64, "lr": 1e-2}}
    )
    text = describe(case)
    assert "lr 0.001" not in text
    assert "0.0001" in text and "0.01" in text


# -- reruns with a changed plan (tiny pipeline runs) ------------------------------------


def test_rerun_with_fewer_seeds_reports_only_the_plan_s_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """After a run with seeds (0, 1), a rerun of the plan with seeds (0,) says "× seeds 0"
    in the overview, but the store still holds seed 1, so the report and the overview
    count 2 SB and 2 LB runs, and the case report is not even rebuilt. The report
    should cover the runs of the current manifest (1 / 1)."""
    monkeypatch.chdir(tmp_path)
    _study(_case(seeds=(0, 1)))
    result = _study(_case(seeds=(0,)))
    md = Path("o/report.md").read_text(encoding="utf-8")
    assert "× seeds 0;" in md
    assert "| t | 1 / 1 |" in md
    assert result.cases[0].report_rebuilt


def test_rerun_with_other_examples_does_not_reuse_scores_of_the_old_subset(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Changing Case.examples (50 -> 150) rewrites [scoring] examples, but the stored
    tasks are keyed by checkpoint, measure and settings only, so every score computed on
    the 50-example subset is reused while the overview says "on 150 training examples".
    The rerun must refuse (naming the change); in a new store the stored λ_max is that
    of the manifest's objective (scoring_objective)."""
    monkeypatch.chdir(tmp_path)
    _study(_case(seeds=(0,), pair_seed=0, examples=50))
    with pytest.raises(ValueError, match=r"another objective.*\(\[scoring\] examples = 50 → 150\)"):
        _study(_case(seeds=(0,), pair_seed=0, examples=150))
    # In a new store the rerun scores the new objective.
    Path("r/t/results.sqlite").unlink()
    _study(_case(seeds=(0,), pair_seed=0, examples=150))
    df = fl.load_results("r/t/results.sqlite")
    row = df[(df.measure == "lambda_max") & (df.component == "1")].iloc[0]
    settings = json.loads(row.settings)
    obj = fl.pipeline.scoring_objective("r/t/manifest.toml", Path("r/t") / row.path)
    assert obj.num_examples == 150
    eig = fl.hessian_eigenvalues(obj, k=settings["k"], seed=settings["seed"])
    assert float(eig.eigenvalues[0]) == pytest.approx(row.value, rel=1e-5)


def test_cli_does_not_print_a_report_path_for_a_case_left_out(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A case whose store holds no measurement gets no report (run_case says "left out"),
    yet `flatness demo` ends by printing "broken: o/broken/report.html", a file that does
    not exist. It should print that the case was left out instead of a path."""
    broken = _case(
        name="broken", seeds=(0,), pair_seed=None, measures={"lambda_max": {"k": 100000}}
    )
    plan = demo.StudyPlan(name="p", title="p", cases=(broken,), runs="r", out="o")
    monkeypatch.setattr(demo, "DEMO", plan)
    monkeypatch.chdir(tmp_path)
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        code = main(["demo", "--no-progress"])
    assert code == 1
    assert not Path("o/broken/report.html").exists()
    assert "o/broken/report.html" not in buffer.getvalue()
