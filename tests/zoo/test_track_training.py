"""`flatness train` with a tracker: [track] in sweeps, --track for one run, training unchanged."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

import flatness as fl
from flatness.cli import main
from flatness.tracking.training import track_settings, tracked_run, train_tracked
from flatness.zoo import Dataset, TrainConfig, train_network, train_sweep

from .conftest import SMALL_MNIST1D
from .test_sweep import SWEEP

TRACKED_SWEEP = (
    SWEEP.replace("seeds = [0, 1]", "seeds = [0]").replace(
        "epochs = 2", "epochs = 2\noptimizer = 'sgd'"
    )
    + '\n[track]\nmeasures = ["lambda_max"]\nevery = 4\nexamples = 64\n'
)


def test_tracking_leaves_training_bit_for_bit_unchanged(small_mnist1d: Dataset) -> None:
    # C1 has BatchNorm and dropout: the tracker must keep modes and random state
    config = TrainConfig(
        network="c1", network_kwargs={"channels": 4, "hidden": [16, 8]}, dataset="mnist1d",
        dataset_kwargs=SMALL_MNIST1D, batch_size=50, epochs=2, regime="SB",
    )  # fmt: skip
    plain = train_network(config, data=small_mnist1d)
    settings = track_settings({"measures": ["lambda_max"], "every": 3, "examples": 40})
    with tracked_run(settings, data=small_mnist1d, run="SB/seed0", store=None) as hook:
        tracked = train_network(config, data=small_mnist1d, on_step=hook)
    for name, value in plain.model.state_dict().items():
        assert torch.equal(value, tracked.model.state_dict()[name]), name
    assert plain.meta["history"][-1]["test_loss"] == tracked.meta["history"][-1]["test_loss"]


def test_a_sweep_with_track_fills_the_store(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sweep = tmp_path / "sweep.toml"
    sweep.write_text(TRACKED_SWEEP)
    out = tmp_path / "runs"
    assert main(["train", "--sweep", str(sweep), "--out", str(out), "--no-progress"]) == 0
    store = out / "results.sqlite"
    tracks = fl.load_tracks(store)
    assert set(tracks["source"]) == {"tracker"}
    sb = tracks[tracks["run"] == "SB/seed0"]
    lb = tracks[tracks["run"] == "LB/seed0"]
    # SB: 20 updates per epoch, 40 in all; LB: 5 per epoch, 10 in all (the last forced)
    assert sb["step"].tolist() == [0, 4, 8, 12, 16, 20, 24, 28, 32, 36, 40]
    assert lb["step"].tolist() == [0, 4, 8, 10]
    assert set(lb["regime"]) == {"LB"} and set(lb["schedule"]) == {"constant"}
    assert set(lb["optimizer"]) == {"sgd"} and set(lb["seed"]) == {0}
    assert set(lb["batch_size"]) == {60} and set(lb["lr"]) == {0.01}
    assert lb["stability_threshold"].tolist() == pytest.approx([(2 + 2 * 0.9) / 0.01] * 4)
    assert lb["epoch"].tolist() == pytest.approx([0.0, 0.8, 1.6, 2.0])
    assert (lb["lambda_max_converged"] == 1).all() and (lb["lambda_max"] > 0).all()
    assert lb["examples_seen"].tolist() == [0, 240, 480, 600]
    assert all(math.isfinite(v) for v in lb["test_accuracy"])
    # scoring into the same store adds the scores and the per-epoch histories
    fl.score(out / "manifest.toml", measures=["lambda_max"], examples=50)
    tracks = fl.load_tracks(store)
    assert sorted(set(zip(tracks["run"], tracks["source"], strict=True))) == [
        ("LB/seed0", "history"), ("LB/seed0", "tracker"),
        ("SB/seed0", "history"), ("SB/seed0", "tracker"),
    ]  # fmt: skip
    assert fl.load_results(store)["checkpoint"].nunique() == 2


def test_one_run_with_the_track_flag(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    argv = ["train", "--network", "tiny_mlp", "--dataset", "mnist1d", "--data-kw"]
    argv += ["n_train=300", "n_test=100", "seed=0", "--batch-size", "10%", "--epochs", "2"]
    argv += ["--track", "measures=lambda_max", "every=epoch", "examples=50", "test=false"]
    argv += [f"store={tmp_path / 'tracks.sqlite'}", "--out", str(out), "--no-progress"]
    assert main(argv) == 0
    assert not (out / "results.sqlite").exists()
    tracks = fl.load_tracks(tmp_path / "tracks.sqlite")
    assert tracks["run"].tolist() == ["B30/seed0"] * 2 and tracks["step"].tolist() == [10, 20]
    assert "test_loss" not in tracks.columns


def test_track_settings_are_checked_by_name(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"unknown keys \['evry'\] in \[track\]"):
        track_settings({"evry": 5})
    with pytest.raises(ValueError, match=r"\[track\] measures: .*'lambda_mx'"):
        track_settings({"measures": ["lambda_mx"]})
    with pytest.raises(ValueError, match=r"\[track\] examples must be positive"):
        track_settings({"examples": 0})
    with pytest.raises(ValueError, match=r"\[track\] every"):
        track_settings({"every": -3})
    with pytest.raises(ValueError, match=r"\[track\] on_store_error must be"):
        track_settings({"on_store_error": "ignore"})
    assert track_settings({"store": "r.sqlite"}, base_dir="/x").store == Path("/x/r.sqlite")
    sweep = tmp_path / "sweep.toml"
    sweep.write_text(TRACKED_SWEEP)
    with pytest.raises(ValueError, match=r"has a \[track\] table"):
        train_sweep(sweep, tmp_path / "runs", progress=False)
    assert main(["train", "--sweep", str(sweep), "--track", "every=5"]) == 1


def test_train_tracked_keeps_the_records_in_the_store(
    tmp_path: Path, small_mnist1d: Dataset
) -> None:
    config = TrainConfig(
        network="tiny_mlp", dataset="mnist1d", dataset_kwargs=SMALL_MNIST1D,
        optimizer="adam", batch_size=100, epochs=2,
    )  # fmt: skip
    settings = track_settings({"every": 5, "examples": 30, "measures": "lambda_max"})
    result = train_tracked(config, tmp_path, settings, data=small_mnist1d)
    tracks = fl.load_tracks(tmp_path / "results.sqlite")
    assert tracks["run"].tolist() == ["B100/seed0"] * 3 == [result.meta["run"]] * 3
    assert tracks["step"].tolist() == [0, 5, 6]
    assert set(tracks["optimizer"]) == {"adam"}
    assert all(math.isnan(v) for v in tracks["stability_threshold"])


def test_a_store_that_cannot_be_written_does_not_stop_training(
    tmp_path: Path, small_mnist1d: Dataset
) -> None:
    config = TrainConfig(
        network="tiny_mlp", dataset="mnist1d", dataset_kwargs=SMALL_MNIST1D, batch_size=100,
        epochs=1,
    )  # fmt: skip
    settings = track_settings({"every": 2, "examples": 30, "store": str(tmp_path)})  # a folder
    with pytest.warns(RuntimeWarning, match="keeps its records in memory"):
        result = train_tracked(config, tmp_path / "run", settings, data=small_mnist1d)
    assert result.checkpoint is not None and result.checkpoint.is_file()
