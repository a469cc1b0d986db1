"""A measure registered in a few lines is scored from a manifest and shows in a report.

The measure lives in a module beside the manifest, which names it in
``[scoring] plugins``: scored with :func:`flatness.score` in this process and with
``python -m flatness score`` in a new one, it lands in the store like a built-in
measure, and :func:`flatness.report.build_from_store` puts it in the report's tables
and CSV files.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
import torch

import flatness as fl
from flatness.pipeline.measures import MEASURES
from tests.pipeline.conftest import REPO, manifest_text, save_run
from tests.pipeline.factories import tiny_net

PLUGIN = '''\
import flatness as fl


def p_norm(objective, *, p: float = 2.0) -> float:
    """The p-norm of the weights."""
    return float(objective.theta0.norm(p))


def loss_spread(objective, *, seed: int = 0) -> fl.MeasureValue:
    """The mean per-batch loss with its standard error (a result with an error bar)."""
    import math

    losses = [float(objective.batch_mean_loss(objective.theta0, b)) for b in objective.batches]
    mean = sum(losses) / len(losses)
    var = sum((x - mean) ** 2 for x in losses) / max(len(losses) - 1, 1)
    return fl.MeasureValue(mean, stderr=math.sqrt(var / len(losses)))


fl.register_measure("p_norm", p_norm, sweep=["p"], summary="the weights' p-norm")
fl.register_measure("loss_spread", loss_spread, summary="mean batch loss and its error")
'''

MEASURES_TOML = "p_norm = { p = [1.0, 2.0] }\nloss_spread = {}\nlambda_max = {}"
RUNS = ["sb0.pt", "lb1.pt", "sb2.pt", "lb3.pt"]


@pytest.fixture
def study(tmp_path: Path) -> Iterator[Path]:
    """Four checkpoints, the plugin module beside them and a manifest naming it."""
    (tmp_path / "user_measures_e2e.py").write_text(PLUGIN)
    for i, name in enumerate(RUNS):
        save_run(tmp_path / name, i)
    text = manifest_text(RUNS, measures=MEASURES_TOML).replace(
        'dtype = "float64"', 'dtype = "float64"\nplugins = ["user_measures_e2e"]'
    )
    (tmp_path / "manifest.toml").write_text(text)
    yield tmp_path / "manifest.toml"
    for name in ("p_norm", "loss_spread"):
        MEASURES.pop(name, None)
    sys.modules.pop("user_measures_e2e", None)


def _expected_norms(folder: Path) -> dict[str, dict[float, float]]:
    out = {}
    for i, name in enumerate(RUNS):
        theta = torch.cat([p.detach().double().reshape(-1) for p in tiny_net(seed=i).parameters()])
        out[str((folder / name).resolve())] = {p: float(theta.norm(p)) for p in (1.0, 2.0)}
    return out


def _check_store(store: Path, expected: dict[str, dict[float, float]]) -> pd.DataFrame:
    df = fl.load_results(store)
    norms = df[df["measure"] == "p_norm"]
    assert len(norms) == 2 * len(RUNS)
    for _, row in norms.iterrows():
        p = float(json.loads(row["settings"])["p"])
        assert row["value"] == pytest.approx(expected[row["path"]][p], rel=1e-12)
        assert row["component"] == "" and pd.isna(row["error"])
    spread = df[df["measure"] == "loss_spread"]
    assert len(spread) == len(RUNS) and (spread["error_kind"] == "stderr").all()
    assert (spread["settings"] == '{"seed": 0}').all()  # the [scoring] seed, as built-ins get
    return df


def test_a_registered_measure_is_scored_stored_and_reported(study: Path, tmp_path: Path) -> None:
    expected = _expected_norms(study.parent)

    # In this process: the manifest's plugin registers the measures when it is read.
    summary = fl.score(study, store=tmp_path / "py.sqlite")
    assert summary.ok and summary.computed == 4 * len(RUNS)
    in_process = _check_store(tmp_path / "py.sqlite", expected)
    assert "p_norm" in MEASURES and "loss_spread" in MEASURES

    # In a new process, run from elsewhere: the plugin is found beside the manifest.
    cli_store = tmp_path / "cli.sqlite"
    cli = subprocess.run(
        [sys.executable, "-m", "flatness", "score", str(study), "--store", str(cli_store)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert cli.returncode == 0, cli.stderr
    assert "p_norm (p=1)" in cli.stdout and "loss_spread" in cli.stdout  # the table
    from_cli = _check_store(cli_store, expected)
    keys = ["path", "measure", "settings", "component"]
    pd.testing.assert_series_equal(
        in_process.sort_values(keys)["value"].reset_index(drop=True),
        from_cli.sort_values(keys)["value"].reset_index(drop=True),
    )

    # The report: its own label, the measures table and the CSV files.
    report = fl.report.build_from_store(tmp_path / "py.sqlite", tmp_path / "report", n_boot=20)
    scores = pd.read_csv(report.out / "data" / "scores.csv")
    for label in ("p_norm (p=1)", "p_norm (p=2)", "loss_spread"):
        assert label in scores.columns
    by_name = scores.set_index(scores["path"].map(lambda p: Path(p).name))
    for path, norms in expected.items():
        shown = by_name.loc[Path(path).name, "p_norm (p=2)"]
        assert shown == pytest.approx(norms[2.0], rel=1e-9)
    measures = pd.read_csv(report.out / "data" / "measures.csv")
    shown = set(measures.columns) | set(measures.astype(str).to_numpy().ravel())
    assert {"p_norm (p=1)", "p_norm (p=2)", "loss_spread"} <= shown
    markdown = report.markdown.read_text(encoding="utf-8")
    assert "p_norm (p=2)" in markdown and "loss_spread" in markdown


def test_a_registered_measure_is_checked_like_a_built_in_one(study: Path) -> None:
    fl.read_manifest(study)  # imports the plugin
    with pytest.raises(KeyError, match="has no setting 'q'"):
        list(MEASURES["p_norm"].tasks({"q": 1}))
    with pytest.raises(ValueError, match="built-in measure"):
        fl.register_measure("trace", lambda objective: 0.0)
    with pytest.raises(TypeError, match="keyword-only"):
        fl.register_measure("two_args", lambda objective, width: 0.0)
    with pytest.raises(ValueError, match="sweep names"):
        fl.register_measure("bad_sweep", lambda objective, *, a=1: 0.0, sweep=["b"])
    bad = study.read_text().replace('plugins = ["user_measures_e2e"]', 'plugins = ["nowhere_x"]')
    study.write_text(bad)
    with pytest.raises(fl.ManifestError, match=r"manifest.toml:\d+: \[scoring\] plugins"):
        fl.read_manifest(study)


def test_a_measure_returning_something_else_fails_its_task(study: Path, tmp_path: Path) -> None:
    fl.register_measure("not_a_number", lambda objective, *, seed=0: "high")
    try:
        text = study.read_text().replace("loss_spread = {}", "not_a_number = {}")
        study.write_text(text)
        summary = fl.score(study, measures=["not_a_number"], store=tmp_path / "bad.sqlite")
        assert summary.failed == len(RUNS)
        assert "returned a str; a measure returns a flatness.results.Result" in summary.failures[0]
    finally:
        MEASURES.pop("not_a_number", None)
