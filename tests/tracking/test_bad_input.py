"""Bad input to the tracker: another model, non-finite losses, a store that fails, memory."""

from __future__ import annotations

import gc
import math
import warnings
from pathlib import Path

import psutil
import pytest
import torch
from torch import nn

import flatness.tracking.tracker as tracker_module
from flatness.pipeline.database import StoreError
from flatness.tracking import Tracker
from tests.tracking.conftest import tiny_data, tiny_net


def test_another_model_is_refused_naming_both() -> None:
    tracker = Tracker(tiny_data(), every=100)
    tracker.update(tiny_net(), step=0)
    other = nn.Sequential(nn.Linear(4, 12), nn.Tanh(), nn.Linear(12, 3)).double()
    assert tracker.update(other, step=1) is None  # not measured: not looked at
    with pytest.raises(ValueError, match=r"differ from the first call's") as info:
        tracker.update(other, step=100)
    text = str(info.value)
    assert "0.weight [10, 4]" in text and "0.weight [12, 4]" in text
    assert "reshaped" in text and "one Tracker per model" in text


def test_a_non_finite_loss_is_recorded_said_once_and_training_goes_on() -> None:
    net = tiny_net()
    tracker = Tracker(tiny_data(), every=2)
    assert tracker.update(net, step=0, lr=0.1, loss=1.0)["nonfinite"] == 0
    with torch.no_grad():
        net[0].weight[0, 0] = math.nan
    with pytest.warns(RuntimeWarning, match="not finite at step 1") as said:
        off_cadence = tracker.update(net, step=1, lr=0.1, loss=math.inf)
        tracker.update(net, step=2, lr=0.1, loss=math.nan)
        tracker.update(net, step=3, lr=0.1, loss=math.nan)  # off cadence, already said
        tracker.update(net, step=4, lr=0.1)
    assert len(said) == 1
    assert off_cadence is not None and off_cadence["minibatch_loss"] == math.inf
    df = tracker.frame()
    assert df["step"].tolist() == [0, 1, 2, 4] and df["nonfinite"].tolist() == [0, 1, 1, 1]
    assert df["lambda_max"].isna().tolist() == [False, True, True, True]


def test_an_unopenable_store_raises_or_warns(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("not a folder")
    bad = tmp_path / "file" / "r.sqlite"
    with pytest.raises(StoreError, match=r"Tracker run 'x': the store .*r\.sqlite failed"):
        Tracker(tiny_data(), store=bad, run="x")
    with pytest.warns(RuntimeWarning, match="keeps its records in memory"):
        tracker = Tracker(tiny_data(), store=bad, on_store_error="warn")
    assert tracker.update(tiny_net(), step=0) is not None and len(tracker.frame()) == 1


def test_a_store_that_fails_later_raises_or_warns_and_keeps_the_records(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def fail(*args: object) -> None:
        raise StoreError("r.sqlite cannot grow: the disk is full", "full")

    for policy in ("raise", "warn"):
        tracker = Tracker(tiny_data(), store=tmp_path / f"{policy}.sqlite", every=1,
                          on_store_error=policy)  # type: ignore[arg-type]  # fmt: skip
        tracker.update(tiny_net(), step=0)
        monkeypatch.setattr(tracker._store, "put_track", fail)
        if policy == "raise":
            with pytest.raises(StoreError, match=r"step 1: r\.sqlite cannot grow.*tracker\.frame"):
                tracker.update(tiny_net(), step=1)
        else:
            with pytest.warns(RuntimeWarning, match="disk is full"):
                tracker.update(tiny_net(), step=1)
            with warnings.catch_warnings():
                warnings.simplefilter("error")
                tracker.update(tiny_net(), step=2)  # said once: in memory from now on
        assert tracker.frame()["step"].tolist()[:2] == [0, 1]
        tracker.close()
    assert tracker_module.STORE_PATIENCE > 0


def test_a_thousand_calls_do_not_grow_memory() -> None:
    net = tiny_net()
    tracker = Tracker(tiny_data(), every=250, measures=("lambda_max", "trace"))
    process = psutil.Process()
    for step in range(100):  # warm up: the first measurement, allocator pools
        tracker.update(net, step=step, lr=0.1, batch_size=8)
    gc.collect()
    before = process.memory_info().rss
    for step in range(100, 1100):
        tracker.update(net, step=step, lr=0.1, batch_size=8)
    gc.collect()
    grown = process.memory_info().rss - before
    assert len(tracker.frame()) == 5
    assert grown < 20 * 2**20, f"RSS grew by {grown / 2**20:.1f} MiB over 1000 calls"
