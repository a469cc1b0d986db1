"""End to end: score a folder of checkpoints, fail cleanly, resume, share a store."""

from __future__ import annotations

import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import flatness as fl
from flatness.pipeline.checkpoints import load_checkpoint, load_into
from flatness.pipeline.measures import Measure
from flatness.pipeline.scoring import training_subset
from flatness.zoo.data import coerce_dataset
from tests.pipeline.conftest import REPO, manifest_text, save_run
from tests.pipeline.factories import tiny_data, tiny_net


def _direct_lambda(path: Path, k: int = 2) -> list[float]:
    """What the Python API gives for one checkpoint, without the pipeline."""
    net = load_into(tiny_net(), load_checkpoint(path)).double()
    data = coerce_dataset(tiny_data(), name="t", settings={})
    obj = fl.Objective(net, training_subset(data, 30, seed=0), dtype=torch.float64)
    return list(fl.hessian_eigenvalues(obj, k=k).eigenvalues)


def test_score_stores_what_the_api_computes(sweep: Path) -> None:
    summary = fl.score(sweep)
    assert summary.ok and summary.computed == 6 and summary.checkpoints == 3
    df = fl.load_results(sweep.parent / "results.sqlite")
    assert len(df) == 3 * (2 + 1)
    for path in ("sb/seed0.pt", "lb/seed1.pt"):
        full = str((sweep.parent / path).resolve())
        rows = df[(df["path"] == full) & (df["measure"] == "lambda_max")].sort_values("component")
        assert rows["value"].tolist() == pytest.approx(
            _direct_lambda(sweep.parent / path), rel=1e-8
        )
        assert rows["converged"].all() and (rows["error_kind"] == "residual").all()
    # metadata: the checkpoint's own meta wins, the manifest fills the rest
    runs = fl.load_runs(sweep.parent / "results.sqlite").set_index("seed")
    assert (
        runs.loc[0, "lr"] == 0.01
        and runs.loc[2, "regime"] == "SB"
        and runs.loc[1, "batch_size"] == 32
    )
    assert runs["examples"].eq(30).all() and runs["test_accuracy"].between(0, 1).all()
    trace = df[df["measure"] == "trace"]
    assert (trace["error"] == 0).all() and trace["dtype"].eq("float64").all()


def test_the_store_records_the_manifest_it_was_scored_from(sweep: Path) -> None:
    fl.score(sweep, measures=["lambda_max"], progress=False)
    info = fl.pipeline.load_info(sweep.parent / "results.sqlite")
    assert info["schema_version"] == 1
    manifest = info["manifest"]
    assert manifest["path"] == str(sweep)
    assert manifest["model"]["factory"] == "tests.pipeline.factories:tiny_net"
    assert manifest["data"]["name"] == "tests.pipeline.factories:tiny_data"
    assert manifest["scoring"]["examples"] == 30
    assert set(manifest["measures"]) == {"lambda_max"}


def test_rerun_reuses_and_a_changed_file_is_rescored(sweep: Path) -> None:
    fl.score(sweep)
    again = fl.score(sweep)
    assert again.ok and again.computed == 0 and again.reused == 6
    save_run(sweep.parent / "lb" / "seed1.pt", 7)  # same name, new weights
    third = fl.score(sweep)
    assert third.computed == 2 and third.reused == 4
    # a renamed copy is recognised by its content
    (sweep.parent / "sb" / "seed0.pt").rename(sweep.parent / "sb" / "renamed.pt")
    sweep.write_text(sweep.read_text().replace("sb/seed0.pt", "sb/renamed.pt"))
    assert fl.score(sweep).computed == 0


def test_score_from_python_objects(tmp_path: Path) -> None:
    paths = [save_run(tmp_path / f"{i}.pt", i) for i in range(2)]
    man = fl.Manifest(
        model_factory=tiny_net,
        data=tiny_data(),
        runs=tuple(fl.RunSpec(p, {"regime": "SB", "batch_size": 8}) for p in paths),
        measures={"trace": {"method": "exact"}},
        scoring={"dtype": "float64", "examples": 30},
    )
    summary = fl.score(man, store=tmp_path / "s.sqlite")
    assert summary.ok and summary.computed == 2


def test_bad_inputs_are_recorded_and_the_rest_is_scored(tmp_path: Path) -> None:
    good = save_run(tmp_path / "good.pt", 0)
    (tmp_path / "truncated.pt").write_bytes(good.read_bytes()[:100])
    torch.save(tiny_net(hidden=7).state_dict(), tmp_path / "mismatch.pt")
    net = tiny_net()
    with torch.no_grad():
        net[0].weight[0, 0] = float("inf")
    torch.save(net.state_dict(), tmp_path / "inf.pt")
    runs = ["good.pt", "truncated.pt", "mismatch.pt", "inf.pt", "missing.pt"]
    (tmp_path / "m.toml").write_text(manifest_text(runs, measures='trace = { method = "exact" }'))
    lines: list[str] = []
    summary = fl.score(tmp_path / "m.toml", log=lines.append)
    assert not summary.ok and summary.computed == 1 and summary.failed == 4
    causes = {
        "truncated.pt": "corrupt or truncated",
        "mismatch.pt": "does not match the model",
        "inf.pt": "NaN or Inf values in 0.weight",
        "missing.pt": "no such checkpoint file",
    }
    for name, cause in causes.items():
        assert sum(name in line and cause in line for line in lines) == 1, (name, lines)
    runs_table = fl.load_runs(tmp_path / "results.sqlite")
    assert sorted(runs_table["status"]) == ["failed"] * 4 + ["ok"]
    assert len(fl.load_results(tmp_path / "results.sqlite")) == 1


@pytest.mark.parametrize(
    ("model", "data", "cause"),
    [
        ('factory = "tests.pipeline.factories:no_such"', None, "has no attribute 'no_such'"),
        ('factory = "no_such_pkg.mod:f"', None, "cannot import module 'no_such_pkg.mod'"),
        (None, 'factory = "tests.pipeline.factories:empty_data"', "the data set is empty"),
        (
            'factory = "tests.pipeline.factories:tiny_net"\nkwargs = { hidden = 4 }',
            'name = "digits_flat"',
            "the model cannot run on the data",
        ),
    ],
)
def test_factory_and_data_failures_fail_each_checkpoint(
    tmp_path: Path, model: str | None, data: str | None, cause: str
) -> None:
    for i in range(2):
        save_run(tmp_path / f"{i}.pt", i)
    kwargs = {k: v for k, v in (("model", model), ("data", data)) if v is not None}
    (tmp_path / "m.toml").write_text(manifest_text(["0.pt", "1.pt"], **kwargs))
    lines: list[str] = []
    summary = fl.score(tmp_path / "m.toml", log=lines.append)
    assert summary.failed == 2 and summary.computed == 0
    assert all(cause in line for line in lines) and {"0.pt", "1.pt"} == {
        Path(line.split(": ")[0].removeprefix("FAILED ")).name for line in lines
    }


def test_a_failing_measure_is_recorded_and_retried(
    sweep: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    original = Measure.run
    calls = {"trace": 0}

    def flaky(self: Measure, objective: fl.Objective, settings: dict) -> tuple:
        if self.name == "trace":
            calls["trace"] += 1
            if calls["trace"] == 2:
                raise RuntimeError("simulated out-of-memory")
        return original(self, objective, settings)

    monkeypatch.setattr(Measure, "run", flaky)
    summary = fl.score(sweep)
    assert summary.failed == 1 and "simulated out-of-memory" in summary.failures[0]
    assert summary.computed == 5
    monkeypatch.undo()
    again = fl.score(sweep)
    assert again.ok and again.computed == 1 and again.reused == 5


def _default_sigint() -> None:
    # A job started in the background by a non-interactive shell inherits SIGINT as
    # ignored, and Python then installs no KeyboardInterrupt handler: restore the default
    # so the Ctrl-C test means the same wherever the test suite was launched from.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _cli(*args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "flatness", *args, "--no-progress", "--threads", "1"],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=_default_sigint,
    )


def _slow_sweep(tmp_path: Path, n: int) -> Path:
    runs = [f"r{i}.pt" for i in range(n)]
    for i, r in enumerate(runs):
        torch.save({"body." + k: v for k, v in tiny_net(seed=i).state_dict().items()}, tmp_path / r)
    text = manifest_text(
        runs,
        measures="lambda_max = { k = 1 }",
        model='factory = "tests.pipeline.factories:slow_net"\nkwargs = { delay = 0.01 }',
    )
    (tmp_path / "m.toml").write_text(text)
    return tmp_path / "m.toml"


def _done(store: Path) -> int:
    if not store.exists():
        return 0
    with sqlite3.connect(store) as db:
        try:
            return int(db.execute("SELECT COUNT(*) FROM tasks WHERE status='done'").fetchone()[0])
        except sqlite3.OperationalError:
            return 0


def test_cli_killed_partway_loses_nothing_and_resumes(tmp_path: Path) -> None:
    manifest = _slow_sweep(tmp_path, 6)
    store = tmp_path / "results.sqlite"
    proc = _cli("score", str(manifest))
    deadline = time.time() + 120
    while _done(store) < 2 and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    assert proc.poll() is None, "the sweep finished before it could be killed; slow it down"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    before = _done(store)
    assert 2 <= before < 6
    resumed = _cli("score", str(manifest))
    out, err = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, err
    assert f"{6 - before} tasks computed, {before} already stored" in out
    df = fl.load_results(store)
    assert len(df) == 6 and df["checkpoint"].is_unique
    # the stored values are the API's
    net = load_into(tiny_net(), load_checkpoint(tmp_path / "r3.pt")).double()
    data = coerce_dataset(tiny_data(), name="t", settings={})
    expected = fl.hessian_eigenvalues(fl.Objective(net, training_subset(data, 30, 0))).eigenvalues[
        0
    ]
    got = df[df["path"] == str((tmp_path / "r3.pt").resolve())]["value"].item()
    assert got == pytest.approx(expected, rel=1e-6)


def test_ctrl_c_keeps_what_finished_and_releases_the_task_in_flight(tmp_path: Path) -> None:
    manifest = _slow_sweep(tmp_path, 6)
    store = tmp_path / "results.sqlite"
    proc = _cli("score", str(manifest))
    deadline = time.time() + 120
    while _done(store) < 1 and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    assert proc.poll() is None, "the sweep finished before it could be interrupted; slow it down"
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and "interrupted" in err and "resumes" in err
    with sqlite3.connect(store) as db:
        states = dict(db.execute("SELECT status, COUNT(*) FROM tasks GROUP BY status").fetchall())
    assert states.get("running", 0) == 0 and 1 <= states["done"] < 6
    assert fl.score(manifest).computed == 6 - states["done"]


def test_two_processes_share_a_store_without_duplicates(tmp_path: Path) -> None:
    manifest = _slow_sweep(tmp_path, 6)
    procs = [_cli("score", str(manifest)) for _ in range(2)]
    outs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [e for _, e in outs]
    computed = [int(out.split(" tasks computed")[0].split()[-1]) for out, _ in outs]
    assert sum(computed) == 6
    with sqlite3.connect(tmp_path / "results.sqlite") as db:
        assert db.execute("SELECT COUNT(*) FROM measurements").fetchone()[0] == 6
        assert db.execute("SELECT COUNT(*) FROM tasks WHERE status='done'").fetchone()[0] == 6


def test_cli_exit_status_and_export(sweep: Path, tmp_path: Path) -> None:
    from flatness.cli import main

    assert main(["score", str(sweep), "--no-progress", "--measures", "trace"]) == 0
    assert main(["export", str(sweep.parent / "results.sqlite"), str(tmp_path / "x.csv")]) == 0
    assert (tmp_path / "x.csv").read_text().count("\n") == 4
    (sweep.parent / "sb" / "seed2.pt").write_bytes(b"garbage")
    assert main(["score", str(sweep), "--no-progress", "--measures", "trace"]) == 1
    assert main(["score", str(tmp_path / "missing.toml")]) == 1


def test_pairs_give_keskar_parametric_plots(sweep: Path) -> None:
    text = sweep.read_text() + (
        '\n[[pairs]]\nsb = "sb/seed0.pt"\nlb = "lb/seed1.pt"\nlabel = "seed 0 vs 1"\n'
        'points = 7\n\n[[pairs]]\nsb = "sb/seed0.pt"\nlb = "missing.pt"\n'
    )
    sweep.write_text(text)
    summary = fl.score(sweep, measures=["trace"])
    assert summary.failed == 1 and "missing.pt" in summary.failures[0]
    curves = fl.load_curves(sweep.parent / "results.sqlite")
    assert set(curves["label"]) == {"seed 0 vs 1"} and len(curves) == 7 * 4
    train_loss = curves[(curves["split"] == "train") & (curves["metric"] == "loss")]
    assert train_loss["alpha"].tolist() == pytest.approx([-1.0, -0.5, 0.0, 0.5, 1.0, 1.5, 2.0])
    # the endpoints are the two checkpoints' own training losses (full training set)
    runs = fl.load_runs(sweep.parent / "results.sqlite").set_index("path")
    ends = train_loss.set_index("alpha")["value"]
    assert ends[0.0] == pytest.approx(runs.loc[curves["sb_path"][0], "train_loss"], rel=1e-6)
    assert ends[1.0] == pytest.approx(runs.loc[curves["lb_path"][0], "train_loss"], rel=1e-6)
    assert fl.score(sweep, measures=["trace"]).computed == 0


def test_scoring_seed_is_each_measures_default_seed(sweep: Path) -> None:
    fl.score(sweep, measures=["trace"])
    seeds = {
        json.loads(k)["seed"] for k in fl.load_results(sweep.parent / "results.sqlite")["settings"]
    }
    assert seeds == {0}
    sweep.write_text(sweep.read_text().replace("seed = 0\n", "seed = 5\n", 1))
    assert fl.read_manifest(sweep).scoring["seed"] == 5
    # The seed also picks the 30-example subset: the store's scores answer another
    # objective, so adding to it is refused; a new store gets seed-5 scores.
    with pytest.raises(ValueError, match=r"\[scoring\] seed = 0 → 5"):
        fl.score(sweep, measures=["trace"])
    fl.score(sweep, measures=["trace"], store=sweep.parent / "seed5.sqlite")
    seeds = {
        json.loads(k)["seed"] for k in fl.load_results(sweep.parent / "seed5.sqlite")["settings"]
    }
    assert seeds == {5}


def test_a_store_refuses_scores_on_another_objective(sweep: Path) -> None:
    fl.score(sweep, measures=["trace"])
    for old, new, what in (
        ("examples = 30", "examples = 20", "examples = 30 → 20"),
        ('dtype = "float64"', 'dtype = "float32"', "dtype = 'float64' → 'float32'"),
    ):
        text = sweep.read_text()
        sweep.write_text(text.replace(old, new, 1))
        with pytest.raises(ValueError, match=re.escape(what)):
            fl.score(sweep, measures=["trace"])
        sweep.write_text(text)
    # The same objective (another measure, another device spelling) is fine.
    assert fl.score(sweep, measures=["lambda_max"]).ok


def test_summary_table_holds_the_stored_headlines(sweep: Path) -> None:
    from flatness.pipeline.scoring import summary_table

    text = sweep.read_text().replace(
        'trace = { method = "exact" }', 'trace = { method = ["exact", "hutchinson"] }'
    )
    sweep.write_text(text)
    with pytest.raises(fl.ManifestError, match="method = \\['exact', 'hutchinson'\\] is a list"):
        fl.score(sweep)
    sweep.write_text(text.replace('["exact", "hutchinson"]', '"exact"'))
    fl.score(sweep)
    store = sweep.parent / "results.sqlite"
    table = summary_table(store, root=sweep.parent).set_index("path")
    df = fl.load_results(store)
    assert list(table.index) == ["lb/seed1.pt", "sb/seed0.pt", "sb/seed2.pt"]
    for path, row in table.iterrows():
        mine = df[df["path"] == str((sweep.parent / path).resolve())]
        lam = mine[(mine["measure"] == "lambda_max") & (mine["component"] == "1")]["value"].item()
        assert row["λ_max"] == lam  # the report's labels (flatness.headlines)
        assert row["trace"] == mine[mine["measure"] == "trace"]["value"].item()


def test_a_stored_parametric_plot_keeps_where_batchnorm_variances_were_clamped(
    tmp_path: Path,
) -> None:
    from flatness.zoo.networks import build_network

    kwargs = {"name": "tiny_mlp", "input_shape": [5], "num_classes": 3, "width": 4, "depth": 1}
    for name, seed, variance in (("sb.pt", 0, 1.0), ("lb.pt", 1, 4.0)):
        net = build_network(**kwargs, batchnorm=True, seed=seed)
        norm = next(m for m in net.modules() if isinstance(m, torch.nn.BatchNorm1d))
        norm.running_var.fill_(variance)
        torch.save(net.state_dict(), tmp_path / name)
    model = (
        'factory = "flatness.zoo.networks:build_network"\n'
        'kwargs = { name = "tiny_mlp", input_shape = [5], num_classes = 3, width = 4, '
        "depth = 1, batchnorm = true }"
    )
    text = manifest_text(["sb.pt", "lb.pt"], measures="lambda_max = {}", model=model)
    text += '\n[[pairs]]\nsb = "sb.pt"\nlb = "lb.pt"\nalphas = [-1.0, 2.0]\npoints = 4\n'
    (tmp_path / "m.toml").write_text(text)
    assert fl.score(tmp_path / "m.toml").ok
    curves = fl.load_curves(tmp_path / "results.sqlite")
    marks = curves[curves["split"] == "bn"]
    # Extrapolated variance at alpha = -1: 2 * 1 - 4 < 0 (clamped); at 2: -1 + 8 > 0.
    assert marks["alpha"].tolist() == [-1.0] and set(marks["metric"]) == {"variance_clamped"}
    report = fl.report.build_from_store(tmp_path / "results.sqlite", tmp_path / "r", n_boot=10)
    assert any("At α = -1, BatchNorm running variances" in s for s in report.summary)


def test_byte_identical_checkpoints_under_two_runs_are_refused_naming_both(
    tmp_path: Path,
) -> None:
    save_run(tmp_path / "a" / "final.pt", 0)
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "final.pt").write_bytes((tmp_path / "a" / "final.pt").read_bytes())
    save_run(tmp_path / "c.pt", 1)
    manifest = tmp_path / "m.toml"
    manifest.write_text(manifest_text(["a/final.pt", "b/final.pt", "c.pt"], measures="trace = {}"))
    lines: list[str] = []
    summary = fl.score(manifest, log=lines.append)
    assert not summary.ok and summary.failed == 1 and summary.computed == 2
    (failure,) = summary.failures
    first, second = (str((tmp_path / d / "final.pt").resolve()) for d in "ab")
    assert second in failure and first in failure and "byte-identical" in failure
    assert lines == [f"FAILED {failure}"]
    # The first run keeps its row and metadata (seed 0, SB): nothing was overwritten.
    runs = fl.load_runs(tmp_path / "results.sqlite")
    assert sorted(runs["path"]) == [first, str((tmp_path / "c.pt").resolve())]
    assert set(runs["status"]) == {"ok"}
    assert runs.set_index("path").loc[first, "regime"] == "SB"


def test_a_checkpoint_listed_twice_is_scored_once_and_reported(tmp_path: Path) -> None:
    save_run(tmp_path / "a.pt", 0)
    (tmp_path / "m.toml").write_text(manifest_text(["a.pt", "a.pt"], measures="trace = {}"))
    summary = fl.score(tmp_path / "m.toml")
    assert summary.computed == 1 and summary.failed == 1
    assert f"{(tmp_path / 'a.pt').resolve()}: is listed twice" in summary.failures[0]
