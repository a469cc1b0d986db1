"""The per-epoch training history in a checkpoint's metadata, and the schedule flags of the CLI."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from flatness.cli import main
from flatness.zoo import Dataset, TrainConfig, train_network
from flatness.zoo.train import HISTORY_FIELDS

from .conftest import SMALL_MNIST1D

TINY = {"network": "tiny_mlp", "dataset": "mnist1d", "dataset_kwargs": SMALL_MNIST1D}


def test_history_holds_every_field_per_epoch(tmp_path: Path, small_mnist1d: Dataset) -> None:
    config = TrainConfig(
        **TINY, optimizer="sgd", lr=0.05, momentum=0.5, batch_size=30, epochs=3,
        schedule="batch_increase", milestones=(2,), factor=2.0,
    )  # fmt: skip
    result = train_network(config, tmp_path, data=small_mnist1d, manifest=False)
    assert result.checkpoint is not None
    meta = torch.load(result.checkpoint, weights_only=True)["meta"]
    history = meta["history"]
    assert [list(h) for h in history] == [list(HISTORY_FIELDS)] * 3
    assert [h["epoch"] for h in history] == [1, 2, 3]
    assert [h["updates"] for h in history] == [10, 20, 25]
    assert [h["examples_seen"] for h in history] == [300, 600, 900]
    assert [h["batch_size"] for h in history] == [30, 30, 60]
    assert [h["lr_over_batch"] for h in history] == [0.05 / 30, 0.05 / 30, 0.05 / 60]
    assert {(h["momentum"], h["optimizer"], h["fit_on"]) for h in history} == {
        (0.5, "sgd", "epoch_average")
    }
    assert all(h["train_loss"] == h["running_loss"] for h in history)
    assert all(h["nonfinite"] == 0 for h in history)
    # the last epoch's test pass is the final checkpoint's
    assert history[-1]["test_loss"] == meta["test_loss"]
    assert history[-1]["test_accuracy"] == meta["test_accuracy"]
    assert history[0]["seconds"] <= history[-1]["seconds"]


@pytest.mark.parametrize("settings", [{"history_fit": "full_train"}, {"target_accuracy": 1.0}])
def test_full_train_fit_is_a_pass_in_eval_mode(
    settings: dict[str, object], small_mnist1d: Dataset
) -> None:
    config = TrainConfig.from_dict({**TINY, "batch_size": 50, "epochs": 2, **settings})
    meta = train_network(config, data=small_mnist1d).meta
    last = meta["history"][-1]
    assert last["fit_on"] == "full_train"
    assert (last["train_loss"], last["train_accuracy"]) == (
        meta["train_loss"],
        meta["train_accuracy"],
    )
    assert last["train_loss"] != last["running_loss"]


def test_a_diverging_run_is_flagged_not_lost(small_mnist1d: Dataset) -> None:
    config = TrainConfig(**TINY, optimizer="sgd", lr=1e6, momentum=0.0, batch_size=50, epochs=2)
    meta = train_network(config, data=small_mnist1d).meta
    assert meta["history"][-1]["nonfinite"] == 1 and meta["diverged"]
    assert not math.isfinite(meta["history"][-1]["train_loss"])


def test_cli_takes_the_schedule_settings(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    argv = ["train", "--network", "tiny_mlp", "--dataset", "mnist1d", "--data-kw"]
    argv += ["n_train=300", "n_test=100", "seed=0", "--optimizer", "sgd", "--nesterov"]
    argv += ["--batch-size", "20", "--lr", "0.01", "--schedule", "linear_scaling"]
    argv += ["--reference-batch-size", "10", "--warmup-epochs", "1", "--epochs", "3"]
    argv += ["--milestone-fractions", "0.6", "--factor", "2", "--history-fit", "full_train"]
    argv += ["--out", str(out)]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "test acc" in printed.splitlines()[0]
    meta = torch.load(out / "final.pt", weights_only=True)["meta"]
    assert meta["config"]["nesterov"] is True
    assert [h["lr"] for h in meta["history"]] == pytest.approx([0.01, 0.02, 0.01])
    assert meta["history"][0]["fit_on"] == "full_train"
    assert main([*argv[:-2], "--max-batch-fraction", "2", "--out", str(out)]) == 1
    assert "max_batch_fraction must lie in (0, 1]" in capsys.readouterr().err


def test_scoring_copies_the_history_into_the_tracks_table(
    tmp_path: Path, small_mnist1d: Dataset
) -> None:
    import flatness as fl
    from flatness.zoo import sweep_from_batch_sizes, train_sweep

    spec = sweep_from_batch_sizes(
        [30, 60], seeds=[2], **TINY, optimizer="sgd", lr=0.05, epochs=2,
        target_accuracy=None, schedule="step", milestones=[1], factor=2.0,
    )  # fmt: skip
    swept = train_sweep(spec, tmp_path, progress=False)
    assert [r.meta["run"] for r in swept.runs] == ["B30/seed2", "B60/seed2"]
    store = tmp_path / "results.sqlite"
    fl.score(swept.manifest, store=store, measures=["lambda_max"], examples=50)
    tracks = fl.load_tracks(store)
    history = tracks[tracks["source"] == "history"]
    assert list(zip(history["run"], history["step"], strict=True)) == [
        ("B30/seed2", 10), ("B30/seed2", 20), ("B60/seed2", 5), ("B60/seed2", 10)
    ]  # fmt: skip
    assert set(history["regime"]) == {"B30", "B60"} and set(history["seed"]) == {2}
    assert set(history["schedule"]) == {"step"} and set(history["optimizer"]) == {"sgd"}
    assert history["lr"].tolist() == [0.05, 0.025, 0.05, 0.025]
    last = swept.runs[0].meta["history"][-1]
    assert history["test_accuracy"].iloc[1] == last["test_accuracy"]
    assert history["examples_seen"].tolist() == [300, 600, 300, 600]
