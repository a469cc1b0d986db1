"""The report's Training section: learning curves, trajectories and the table per schedule."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import matplotlib.colors as mcolors
import numpy as np
import pandas as pd
import pytest

import flatness as fl
from flatness.cli import main
from flatness.pipeline.store import ResultsStore
from flatness.report import ReportInputError, build
from flatness.report.figure_style import regime_colors
from flatness.report.learning import group_labels, measure_names, training_table, trajectory
from flatness.report.learning_figures import (
    fit_figure,
    group_colours,
    measures_figure,
    training_figures,
)
from flatness.report.render import FigureBlock
from flatness.report.training import build_training
from tests.pipeline.conftest import manifest_text, save_run
from tests.report.chromium import check_page

SCHEDULES = {"step": ("sgd", 0.1), "constant": ("adam", 1e-3)}
"""Two schedules: SGD with step decay (2/η applies) and Adam (it does not)."""


def _tracker(run: str, schedule: str, seed: int, steps: list[int]) -> list[dict]:
    optimizer, lr = SCHEDULES[schedule]
    rng = np.random.default_rng(seed + (10 if optimizer == "adam" else 0))
    k = 0.5 if optimizer == "adam" else 1.0
    out = []
    for step in steps:
        threshold = 2.0 / lr if optimizer == "sgd" else math.nan
        out.append(
            {
                "run": run, "source": "tracker", "step": step, "schedule": schedule,
                "optimizer": optimizer, "seed": seed, "epoch": step / 100, "updates": step,
                "examples_seen": step * 32, "lr": lr, "batch_size": 32,
                "stability_threshold": threshold, "fit_on": "subset",
                "train_loss": 2.0 / (1 + step / 100) + 0.01 * rng.random(),
                "train_accuracy": 0.5 + 0.4 * k * step / steps[-1],
                "test_loss": 2.2 / (1 + step / 100), "test_accuracy": 0.45 + 0.4 * step / steps[-1],
                "lambda_max": 5.0 + k * step / 50 + rng.random(), "lambda_max_stderr": 0.1,
                "lambda_max_warm": 1, "lambda_max_matvecs": 4, "lambda_max_seconds": 0.1,
                "trace": 40.0 + step / 10, "trace_stderr": 1.0, "minibatch_loss": 1.0,
                "noise_scale": 100.0 + k * step + 10 * rng.random(), "noise_scale_stderr": 5.0,
                "tracker_seconds": 0.2,
                **({"threshold_note": "2/η does not apply to adaptive optimizers"}
                   if optimizer == "adam" else {}),
            }
        )  # fmt: skip
    return out


def _history(run: str, schedule: str, seed: int, epochs: int) -> list[dict]:
    optimizer, lr = SCHEDULES[schedule]
    return [
        {
            "run": run, "source": "history", "step": 100 * e, "schedule": schedule,
            "optimizer": optimizer, "seed": seed, "epoch": e, "updates": 100 * e,
            "examples_seen": 3200 * e, "lr": lr, "batch_size": 32, "fit_on": "epoch_average",
            "train_loss": 1.0 / e + 0.01 * seed, "train_accuracy": 0.6 + 0.05 * e + 0.01 * seed,
            "test_loss": 1.1 / e, "test_accuracy": 0.55 + 0.05 * e - 0.02 * seed,
            "running_loss": 1.0 / e, "running_accuracy": 0.6, "seconds": 3.0 * e,
        }
        for e in range(1, epochs + 1)
    ]  # fmt: skip


def tracks_frame(steps: list[int] | None = None, seeds: tuple[int, ...] = (0, 1)) -> pd.DataFrame:
    """Two schedules × ``seeds``, tracker records at ``steps`` and a 5-epoch history."""
    steps = steps if steps is not None else list(range(0, 501, 50))
    records = []
    for schedule in SCHEDULES:
        for seed in seeds:
            run = f"{schedule}-seed{seed}"
            records += _tracker(run, schedule, seed, steps) + _history(run, schedule, seed, 5)
    return pd.DataFrame.from_records(records)


def study_frame() -> pd.DataFrame:
    """The smallest results frame a report is made of: SB and LB, two seeds, λ_max."""
    return pd.DataFrame(
        {
            "regime": ["SB", "SB", "LB", "LB"], "seed": [0, 1, 0, 1],
            "batch_size": [32, 32, 512, 512], "test_accuracy": [0.9, 0.91, 0.87, 0.88],
            "train_accuracy": [0.99] * 4, "measure": "lambda_max",
            "value": [10.0, 12.0, 40.0, 45.0],
        }
    )  # fmt: skip


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory):
    out = tmp_path_factory.mktemp("learning")
    tracks = tracks_frame()
    return build(study_frame(), out, n_boot=100, tracks=tracks), tracks


def test_tracks_give_a_training_section_with_its_figures(report) -> None:
    result, tracks = report
    md = result.markdown.read_text(encoding="utf-8")
    assert '<a id="training"></a>' in md and "## Training" in md
    names = {p.name for p in result.figures}
    assert {
        "training-history.png", "training-tracker.png", "training-measures.png",
        "training-noise-scale.png",
    } <= names  # fmt: skip
    for name in names:
        assert (result.out / "figures" / name).stat().st_size > 1000
    assert "min–max" in md  # the band is named
    assert "does not apply to adaptive optimizers" in md
    assert not any(note.startswith("Training") for note in result.notes)
    assert (result.out / "data" / "training.csv").is_file()
    assert measure_names(tracks) == ["lambda_max", "trace", "noise_scale"]


def test_the_table_holds_the_frames_numbers(report) -> None:
    result, tracks = report
    md = result.markdown.read_text(encoding="utf-8")
    history = tracks[tracks.source == "history"]
    last = history[history.epoch == history.epoch.max()]
    for schedule in SCHEDULES:
        rows = last[last.schedule == schedule]
        row = next(line for line in md.splitlines() if line.startswith(f"| {schedule} |"))
        test = rows.test_accuracy * 100
        assert f"| {fl.report.format_mean_std(test.mean(), test.std(ddof=1), 2)} |" in row
        runs = tracks[tracks.schedule == schedule].groupby("run")
        examples = runs.examples_seen.max()
        assert fl.report.format_mean_std(examples.mean(), examples.std(ddof=1), 2) in row
    values = pd.read_csv(result.out / "data" / "training.csv")
    sgd = values[(values.group == "step") & (values.quantity == "train_accuracy")]
    expected = last[last.schedule == "step"].train_accuracy
    assert sgd["mean"].item() == pytest.approx(expected.mean())
    assert sgd["std"].item() == pytest.approx(expected.std(ddof=1))
    updates = values[(values.quantity == "updates")]
    assert updates["mean"].tolist() == [500.0, 500.0]


def test_a_report_without_tracks_has_no_training_section(tmp_path: Path) -> None:
    for tracks in (None, pd.DataFrame(columns=["run", "source", "step"])):
        result = build(study_frame(), tmp_path, n_boot=100, tracks=tracks)
        md = result.markdown.read_text(encoding="utf-8")
        assert "Training" not in md
        assert not any(p.name.startswith("training") for p in result.figures)
        assert not any("training" in note.lower() for note in result.notes)


def _dotted(ax) -> list:
    return [line for line in ax.get_lines() if line.get_linestyle() == ":"]


def test_the_stability_line_is_drawn_for_sgd_only() -> None:
    tracks = tracks_frame()
    tracker = tracks[tracks.source == "tracker"]
    labels = group_labels(tracker)
    colours = group_colours(tracker, labels)
    fig = measures_figure(tracker, labels, colours, ["lambda_max", "trace"])
    lam, trace = fig.axes[0], fig.axes[1]
    lines = _dotted(lam)
    assert len(lines) == 1 and not _dotted(trace)
    assert mcolors.same_color(lines[0].get_color(), colours["step"])
    assert np.allclose(lines[0].get_ydata(), 2 / 0.1)
    # Adam alone: no line at all.
    adam = tracker[tracker.optimizer == "adam"]
    labels = group_labels(adam)
    fig = measures_figure(adam, labels, group_colours(adam, labels), ["lambda_max"])
    assert not _dotted(fig.axes[0])


def test_the_band_is_the_min_max_over_seeds_or_the_stderr_of_one_run() -> None:
    tracker = tracks_frame()
    rows = tracker[(tracker.source == "tracker") & (tracker.schedule == "step")]
    curve = trajectory(rows, "step", "lambda_max").set_index("x")
    at = rows[rows.step == 100].lambda_max
    assert curve.loc[100, "mean"] == pytest.approx(at.mean())
    assert (curve.loc[100, "low"], curve.loc[100, "high"]) == (at.min(), at.max())
    assert curve["n"].eq(2).all()
    one = rows[rows.seed == 0]
    curve = trajectory(one, "step", "lambda_max").set_index("x")
    value = one.set_index("step").lambda_max[100]
    assert (curve.loc[100, "low"], curve.loc[100, "high"]) == pytest.approx(
        (value - 0.1, value + 0.1)
    )
    assert trajectory(one, "step", "train_loss")["low"].isna().all()  # no stderr: no band


def test_nonfinite_records_are_gaps_and_unmeasured_steps_are_skipped(tmp_path: Path) -> None:
    tracks = tracks_frame()
    flagged = (tracks.run == "step-seed0") & (tracks.step == 200) & (tracks.source == "tracker")
    tracks.loc[flagged, ["train_loss", "lambda_max"]] = [math.nan, math.inf]
    tracks.loc[flagged, "nonfinite"] = 1
    unmeasured = (tracks.step == 300) & (tracks.source == "tracker")
    tracks.loc[unmeasured, "trace"] = math.nan  # trace taken at another cadence
    tracks.loc[tracks.run == "constant-seed1", "lambda_max"] = -math.inf  # never finite
    late = (tracks.run == "step-seed1") & (tracks.step >= 400) & (tracks.source == "tracker")
    tracks.loc[late, "noise_scale"] = math.inf
    rows = tracks[(tracks.source == "tracker") & (tracks.schedule == "step")]
    curve = trajectory(rows, "step", "lambda_max").set_index("x")
    assert math.isnan(curve.loc[200, "mean"]) and math.isfinite(curve.loc[250, "mean"])
    assert 300 not in trajectory(rows, "step", "trace")["x"].tolist()
    result = build(study_frame(), tmp_path, n_boot=100, tracks=tracks)
    md = result.markdown.read_text(encoding="utf-8")
    assert "non-finite loss (step-seed0)" in md
    assert "3 of 44 records have an infinite B_simple" in md
    assert "training-measures.png" in {p.name for p in result.figures}


def test_one_seed_says_there_is_no_band(tmp_path: Path) -> None:
    result = build(study_frame(), tmp_path, n_boot=100, tracks=tracks_frame(seeds=(0,)))
    md = result.markdown.read_text(encoding="utf-8")
    assert "One run only (no band over seeds): constant, step" in md
    row = next(line for line in md.splitlines() if line.startswith("| step |"))
    assert "±" not in row


def test_long_tracks_are_thinned_for_plotting_and_exact_in_the_table() -> None:
    steps = list(range(0, 20001, 2))
    tracks = tracks_frame(steps=steps)
    tracks.loc[(tracks.step == 777 * 2) & (tracks.source == "tracker"), "nonfinite"] = 1
    rows = tracks[(tracks.source == "tracker") & (tracks.schedule == "step")]
    curve = trajectory(rows, "step", "lambda_max", max_points=300)
    assert 300 <= len(curve) <= 302 and math.isnan(curve.set_index("x").loc[1554, "mean"])
    assert curve["x"].iloc[0] == 0 and curve["x"].iloc[-1] == 20000
    table = training_table(tracks.drop(columns="updates"))
    updates = table.values.set_index(["group", "quantity"])["mean"]
    assert updates[("step", "updates")] == 20000  # from the step, every record
    labels = group_labels(rows)
    fig = fit_figure(rows, labels, group_colours(rows, labels))
    assert fig.axes[1].get_xscale() == "log"  # updates span more than two decades
    assert fig.axes[0].get_xscale() == "linear"  # epochs stay linear


def test_a_measure_missing_from_some_runs_is_drawn_where_recorded() -> None:
    tracks = tracks_frame()
    tracks.loc[tracks.schedule == "constant", "trace"] = math.nan
    tracker = tracks[tracks.source == "tracker"]
    labels = group_labels(tracker)
    fig = measures_figure(tracker, labels, group_colours(tracker, labels), ["trace"])
    drawn = [line for line in fig.axes[0].get_lines() if len(line.get_xdata())]
    assert len(drawn) == 1


def test_groups_without_identity_fields_are_their_runs() -> None:
    frame = pd.DataFrame({"run": ["a", "b"], "source": "tracker", "step": [0, 0]})
    assert group_labels(frame).to_dict() == {"a": "a", "b": "b"}
    frame = frame.assign(schedule=["adam", "step"], optimizer=["adam", "sgd"])
    assert group_labels(frame).to_dict() == {"a": "adam", "b": "step"}


def test_flatness_report_reads_the_tracks_of_a_store(tmp_path: Path) -> None:
    names = []
    for seed in (0, 1):
        name = f"sb/seed{seed}.pt"
        save_run(tmp_path / name, seed, meta={"regime": "SB", "batch_size": 8, "seed": seed})
        names.append(name)
    (tmp_path / "manifest.toml").write_text(
        manifest_text(names, measures='trace = { method = "exact" }')
    )
    assert fl.score(tmp_path / "manifest.toml", progress=False).ok
    store = tmp_path / "results.sqlite"
    tracks = tracks_frame(steps=[0, 100, 200])
    with ResultsStore(store) as s:
        for record in tracks.to_dict("records"):
            s.put_track(record["run"], record["source"], record["step"], record)
    out = tmp_path / "report"
    assert main(["report", str(store), "--out", str(out), "--bootstrap", "100"]) == 0
    md = (out / "report.md").read_text(encoding="utf-8")
    assert "## Training" in md and "training-measures.png" in md


def test_a_store_of_training_only_gets_a_training_report(tmp_path: Path, capsys) -> None:
    store = tmp_path / "results.sqlite"
    tracks = tracks_frame(steps=[0, 100, 200], seeds=(0,))
    tracks = tracks[tracks.source == "tracker"]
    with ResultsStore(store) as s:
        for record in tracks.to_dict("records"):
            s.put_track(record["run"], record["source"], record["step"], record)
    out = tmp_path / "report"
    (out / "figures").mkdir(parents=True)
    (out / "figures" / "mine.png").write_bytes(b"not the report's")
    assert main(["report", str(store), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "left out  sharpness and accuracy comparisons: no checkpoint is scored yet" in printed
    md = (out / "report.md").read_text(encoding="utf-8")
    assert "## Training" in md and f"Made by: flatness report {store} --out {out}" in md
    assert "training-measures.png" in md and "Table 2" not in md
    values = pd.read_csv(out / "data" / "training.csv")
    assert values.set_index(["group", "quantity"])["mean"][("step", "updates")] == 200
    listed = json.loads((out / ".flatness-report.json").read_text())["files"]
    assert "data/training.csv" in listed and "figures/mine.png" not in listed
    assert (out / "figures" / "mine.png").is_file()
    with pytest.raises(ReportInputError, match="no records taken during training"):
        build_training(tracks.iloc[:0], tmp_path / "empty")


def test_the_training_report_opens_in_headless_chromium(chromium: str, tmp_path: Path) -> None:
    tracks = tracks_frame(steps=[0, 100, 200])
    report = build_training(tracks, tmp_path / "report", title="Training report")
    alone = tmp_path / "alone"
    alone.mkdir()
    page = Path(shutil.copy(report.html, alone / "report.html"))
    check = check_page(page, timeout=90)
    assert check.ok, check.problems()
    assert len(check.images) == len(report.figures) == 4
    assert all(img["naturalWidth"] > 100 for img in check.images)
    assert check.title == "Training report"


def test_the_caption_says_why_a_schedule_has_no_threshold(tmp_path: Path) -> None:
    tracks = tracks_frame(steps=[0, 100])
    tracks = tracks[tracks.source == "tracker"].copy()
    no_lr = tracks.schedule == "step"
    tracks.loc[no_lr, ["lr", "stability_threshold"]] = math.nan
    captions: dict[str, str] = {}

    def keep(fig, name: str, caption: str) -> FigureBlock:
        captions[name] = caption
        return FigureBlock(f"figures/{name}.png", caption)

    training_figures(tracks, group_labels(tracks), keep)
    text = captions["training-measures"]
    assert "Dotted on the λ_max panel" not in text
    assert "No threshold drawn for constant: 2/η does not apply to adaptive optimizers " in text
    assert "No threshold drawn for step: no learning rate recorded (optimizer sgd)." in text


def test_a_regime_keeps_its_report_colour_in_the_training_figures() -> None:
    tracks = tracks_frame()
    tracker = tracks[tracks.source == "tracker"]
    labels = group_labels(tracker)
    order = ["warmup", "step", "constant"]  # the report's order, a regime not tracked
    colours = group_colours(tracker, labels, order)
    assert list(colours) == ["step", "constant"]  # drawing order follows the report
    report = regime_colors(order)
    assert colours == {g: report[g] for g in ("step", "constant")}
