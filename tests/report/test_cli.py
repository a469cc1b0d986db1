"""`flatness report` end to end: checkpoints -> `score` -> `report`, opened in a real browser."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest

import flatness as fl
from flatness.cli import main
from flatness.report import format_mean_std
from tests.pipeline.conftest import manifest_text, save_run
from tests.report.chromium import check_page

MEASURES = """lambda_max = { k = 2 }
trace = { method = "exact" }
density = { steps = 8, runs = 2 }
keskar = { eps = [1e-3, 5e-4], subspace = [0, 4], maxiter = 2 }
adaptive_sharpness = { rho = 0.05, steps = 2 }
"""


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Four tiny checkpoints (SB/LB x seeds 0, 1), scored, with one interpolated pair."""
    root = tmp_path_factory.mktemp("study")
    names = []
    for seed in (0, 1):
        for regime, batch, scale in (("SB", 8, 1.0), ("LB", 32, 1.6)):
            name = f"{regime.lower()}/seed{seed}.pt"
            meta = {"regime": regime, "batch_size": batch, "seed": seed}
            save_run(root / name, seed, meta=meta, scale=scale)
            names.append(name)
    text = manifest_text(names, measures=MEASURES)
    text += '\n[[pairs]]\nsb = "sb/seed0.pt"\nlb = "lb/seed0.pt"\npoints = 7\nlabel = "seed 0"\n'
    (root / "manifest.toml").write_text(text)
    summary = fl.score(root / "manifest.toml", progress=False)
    assert summary.ok, summary
    return root / "results.sqlite"


def test_cli_writes_a_report_whose_tables_hold_the_stored_values(store: Path, capsys) -> None:
    out = store.parent / "report"
    assert main(["report", str(store), "--out", str(out), "--bootstrap", "200"]) == 0
    printed = capsys.readouterr().out
    assert f"wrote {out / 'report.html'}" in printed
    md = (out / "report.md").read_text(encoding="utf-8")
    df = fl.load_results(store)
    runs = df.drop_duplicates("checkpoint")
    # Table 3, regime LB, eps = 1e-3: mean ± std of the stored values.
    rows = df[(df.measure == "keskar") & (df.regime == "LB")]
    rows = rows[[json.loads(s)["eps"] == 1e-3 and json.loads(s)["subspace"] == 0
                 for s in rows.settings]]  # fmt: skip
    table3 = md[md.index("**Table 3:") : md.index("**Table 4:")]
    lb_row = next(line for line in table3.splitlines() if line.startswith("| LB |"))
    cell = format_mean_std(rows.value.mean(), rows.value.std(ddof=1), len(rows))
    assert f"| {cell} |" in lb_row
    # Table 2: the stored test accuracies.
    sb = runs[runs.regime == "SB"].test_accuracy * 100
    table2 = md[md.index("**Table 2:") : md.index("**Table 3:")]
    sb_row = next(line for line in table2.splitlines() if line.startswith("| SB |"))
    assert format_mean_std(sb.mean(), sb.std(ddof=1), 2) in sb_row
    # Provenance: the manifest's model and data, the command that regenerates the report.
    assert "tests.pipeline.factories:tiny_net" in md
    assert f"flatness report {store} --out {out} --bootstrap 200" in md
    # The parametric plot and the density were drawn from the store.
    figures = sorted(p.name for p in (out / "figures").glob("*.png"))
    assert "parametric-1-seed-0.png" in figures and "density.png" in figures
    assert "**Along each line from SB to LB (training loss)**" in md
    curve = fl.load_curves(store)
    train = curve[(curve.split == "train") & (curve.metric == "loss")].set_index("alpha")["value"]
    row = next(line for line in md.splitlines() if line.startswith("| seed 0 |"))
    assert f"| {train.loc[0.0]:.3g} | {train.loc[1.0]:.3g} |" in row
    assert not [line for line in printed.splitlines() if line.startswith("left out")]
    scores = pd.read_csv(out / "data" / "scores.csv")
    assert len(scores) == 4


def test_report_opens_in_headless_chromium(store: Path, chromium: str, tmp_path: Path) -> None:
    out = tmp_path / "report"
    report = fl.report.build_from_store(store, out, n_boot=100, reference="F1")
    # Open the page from a folder of its own: it must need nothing beside it.
    alone = tmp_path / "alone"
    alone.mkdir()
    page = Path(shutil.copy(report.html, alone / "report.html"))
    check = check_page(page, screenshot=tmp_path / "report.png", timeout=90)
    assert check.ok, check.problems()
    assert len(check.images) == len(report.figures) >= 5
    assert all(img["naturalWidth"] > 100 for img in check.images)
    assert check.title.startswith("Sharpness report")
    assert check.screenshot is not None and check.screenshot.stat().st_size > 50_000


def test_report_of_a_missing_store_is_a_clear_error(tmp_path: Path, capsys) -> None:
    assert main(["report", str(tmp_path / "nothing.sqlite")]) == 1
    assert "no results store here; run `flatness score` first" in capsys.readouterr().err


def test_report_of_an_empty_store_is_a_clear_error(tmp_path: Path, capsys) -> None:
    fl.ResultsStore(tmp_path / "empty.sqlite").close()
    assert main(["report", str(tmp_path / "empty.sqlite")]) == 1
    err = capsys.readouterr().err
    assert "holds no measurement yet; run `flatness score` first" in err


def test_report_with_a_failed_checkpoint_lists_it(store: Path, tmp_path: Path) -> None:
    study = tmp_path / "study"
    shutil.copytree(store.parent, study, ignore=shutil.ignore_patterns("report", "results*"))
    (study / "lb" / "seed1.pt").write_bytes(b"not a checkpoint")
    summary = fl.score(study / "manifest.toml", measures=["lambda_max"], progress=False)
    assert summary.failed == 1
    report = fl.report.build_from_store(study / "results.sqlite", tmp_path / "r", n_boot=50)
    md = report.markdown.read_text(encoding="utf-8")
    assert "3 scored, 1 could not be scored" in md
    assert "lb/seed1.pt:" in md


def test_the_default_folder_is_under_reports(store: Path, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["report", str(store), "--bootstrap", "50"]) == 0
    assert (tmp_path / "reports" / store.parent.name / "report.html").is_file()


def test_a_measure_that_failed_on_a_scored_checkpoint_is_listed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from flatness.pipeline.measures import Measure

    for seed, regime in ((0, "SB"), (1, "LB")):
        meta = {"regime": regime, "batch_size": 8 if regime == "SB" else 32, "seed": seed}
        save_run(tmp_path / f"{regime.lower()}.pt", seed, meta=meta)
    (tmp_path / "manifest.toml").write_text(manifest_text(["sb.pt", "lb.pt"]))
    original = Measure.run

    def failing(self: Measure, objective: fl.Objective, settings: dict) -> tuple:
        if self.name == "trace":  # the second checkpoint's trace fails
            failing.calls += 1  # type: ignore[attr-defined]
            if failing.calls == 2:  # type: ignore[attr-defined]
                raise RuntimeError("simulated out-of-memory")
        return original(self, objective, settings)

    failing.calls = 0  # type: ignore[attr-defined]
    monkeypatch.setattr(Measure, "run", failing)
    summary = fl.score(tmp_path / "manifest.toml", progress=False)
    assert summary.failed == 1
    report = fl.report.build_from_store(tmp_path / "results.sqlite", tmp_path / "r", n_boot=50)
    md = report.markdown.read_text(encoding="utf-8")
    assert "2 scored, 1 measure(s) failed on scored checkpoints (see below)" in md
    assert "simulated out-of-memory" in md
