"""The tracker's API: cadences, records, the store, frames."""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import pandas as pd
import pytest
import torch
import torch.nn.functional as F

import flatness as fl
from flatness.tracking import Cadence, Tracker
from tests.tracking.conftest import tiny_data, tiny_net


def _train(tracker: Tracker, steps: int, *, lr: float = 0.1, **kwargs: object) -> None:
    net = tiny_net()
    X, y = tiny_data()
    opt = torch.optim.SGD(net.parameters(), lr=lr)
    for step in range(steps + 1):
        tracker.update(net, step=step, lr=lr, batch_size=64, epoch=step / 4,
                       epoch_end=step % 4 == 3, **kwargs)  # fmt: skip
        opt.zero_grad()
        F.cross_entropy(net(X), y).backward()
        opt.step()


@pytest.mark.parametrize(
    ("every", "steps"),
    [(5, [0, 5, 10, 15, 20]), ("log", [0, 1, 2, 3, 4, 5, 6, 8, 10, 13, 16, 20]),
     ("epoch", [3, 7, 11, 15, 19])],
)  # fmt: skip
def test_cadences_measure_at_their_steps(every: object, steps: list[int]) -> None:
    tracker = Tracker(tiny_data(), every=every)  # type: ignore[arg-type]
    _train(tracker, 20)
    assert tracker.frame()["step"].tolist() == steps


def test_a_counting_cadence_catches_up_with_skipped_steps() -> None:
    c = Cadence(10)
    assert [s for s in (1, 4, 12, 13, 19, 31, 40) if c.due(s)] == [1, 12, 31, 40]
    with pytest.raises(ValueError, match="every must be"):
        Cadence(0)


def test_a_record_holds_the_contract_fields(tmp_path: Path) -> None:
    store = tmp_path / "r.sqlite"
    measures = {"lambda_max": {"k": 2}, "trace": {"budget": 12}}
    test = tiny_data(32, seed=1)
    with Tracker(
        tiny_data(), test=test, every=10, store=store, run="sb", measures=measures
    ) as tracker:
        _train(tracker, 10, momentum=0.9, regime="SB", seed=3)
    df = fl.load_tracks(store)
    pd.testing.assert_frame_equal(df, tracker.frame())  # the store holds what memory holds
    row = df.iloc[1]
    assert (row["run"], row["source"], row["step"], row["updates"]) == ("sb", "tracker", 10, 10)
    assert row["regime"] == "SB" and row["seed"] == 3 and row["epoch"] == 2.5
    assert row["examples_seen"] == 640 and row["lr_over_batch"] == pytest.approx(0.1 / 64)
    assert row["stability_threshold"] == pytest.approx((2 + 2 * 0.9) / 0.1)
    for name in ("lambda_max", "lambda_2", "trace"):
        assert math.isfinite(row[name]) and row[f"{name}_converged"] == 1, name
        assert f"{name}_stderr" in df
    for name in ("lambda_max", "trace"):
        assert row[f"{name}_matvecs"] > 0 and row[f"{name}_gradient_equivalents"] > 0
        assert row[f"{name}_seconds"] >= 0
    assert row["lambda_max"] >= row["lambda_2"]
    assert 0 <= row["train_accuracy"] <= 1 and math.isfinite(row["test_loss"])
    assert row["fit_on"] == "subset" and row["nonfinite"] == 0


def test_adam_has_no_threshold_but_says_why() -> None:
    tracker = Tracker(tiny_data(), every=1)
    rec = tracker.update(tiny_net(), step=0, lr=1e-3, batch_size=8, optimizer="adam")
    assert rec is not None and math.isnan(rec["stability_threshold"])
    assert rec["threshold_note"] == "2/η does not apply to adaptive optimizers"


def test_unknown_measures_and_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown tracked measure 'sharpness'"):
        Tracker(tiny_data(), measures=("sharpness",))
    with pytest.raises(ValueError, match=r"'lambda_max': unknown settings \['kk'\]"):
        Tracker(tiny_data(), measures={"lambda_max": {"kk": 2}})


def test_the_default_budget_keeps_the_measurements_under_a_tenth_of_the_training() -> None:
    X, y = tiny_data(64)
    tracker = Tracker((X[:32], y[:32]), measures={"lambda_max": {}, "trace": {"budget": 10}})
    assert tracker.cadence.every == "budget" and tracker.cadence.overhead == 0.1
    net = tiny_net()
    for step in range(3000):
        tracker.update(net, step=step, lr=0.1, batch_size=16)
    df = tracker.frame()
    spent = df["tracker_example_gradients"].cumsum().shift(fill_value=0.0)
    assert (spent <= 0.1 * df["examples_seen"]).all()  # each measurement was within budget
    last = df["tracker_example_gradients"].iloc[-1]
    assert df["tracker_example_gradients"].sum() - last <= 0.1 * 16 * 2999
    assert 4 <= len(df) < 40  # thinned: the log grid has 41 steps below 3000
    grid = {0}
    s = 0
    while s < 3000:
        s = fl.tracking.log_spaced_after(s)
        grid.add(s)
    assert set(df["step"]) <= grid  # on the log grid, so seeds share steps
    # after the first call the model is known to be deterministic: no check again
    assert tracker.measures[0].arguments["hessian"].check_determinism is False


def test_the_loops_loss_tensor_is_recorded_quietly() -> None:
    net = tiny_net()
    X, y = tiny_data()
    loss = F.cross_entropy(net(X), y)  # still attached to the graph
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        rec = Tracker((X, y), every=1).update(net, step=0, loss=loss)
    assert rec is not None and rec["minibatch_loss"] == float(loss.detach())


def test_dict_batches_with_a_batch_loss_are_tracked_without_accuracy() -> None:
    X, y = tiny_data()
    batches = [{"x": X[i : i + 16], "y": y[i : i + 16]} for i in range(0, 64, 16)]

    def batch_loss(model_fn: object, batch: dict) -> torch.Tensor:
        return F.cross_entropy(model_fn(batch["x"]), batch["y"])  # type: ignore[operator]

    net = tiny_net()
    rec = Tracker(batches, loss_fn=None, batch_loss=batch_loss, every=1).update(net, step=0)
    assert rec is not None and math.isnan(rec["train_accuracy"])
    assert rec["train_loss"] == pytest.approx(float(F.cross_entropy(net(X), y).detach()))
    assert rec["lambda_max_converged"] == 1
