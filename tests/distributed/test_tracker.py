"""The Tracker on 2 and 3 gloo ranks: the records of one process, one writer.

Every rank trains the same model the same way (as DistributedDataParallel keeps it)
and tracks it on the same 11 examples (uneven shards); the ranks' records equal one
process's, and only rank 0 writes the store.
"""

from __future__ import annotations

import math
import os
import tempfile
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import flatness as fl
from flatness.distributed.sharding import shard_bounds
from flatness.tracking import Tracker
from tests.distributed.spawn_ranks import run_ranks

LIMIT = 180.0  # seconds for all ranks: the shared CI machine may be loaded

N = 11
TIMING = "seconds"  # wall-clock fields (tracker_seconds, lambda_max_seconds, ...)


def _train(store: str | None, distributed: Any, nan_on: int | None = None) -> dict[str, Any]:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(3, 6), nn.Tanh(), nn.Linear(6, 3)).double()
    X, y = torch.randn(N, 3, dtype=torch.float64), torch.randint(0, 3, (N,))
    rank = torch.distributed.get_rank() if distributed == "auto" else 0
    world = torch.distributed.get_world_size() if distributed == "auto" else 1
    share = shard_bounds(N, world)[rank]  # the examples this rank's DDP batch holds
    tracker = Tracker(
        (X, y),
        test=(X[:7], y[:7]),
        measures=("lambda_max", "trace"),
        every=3,
        store=store,
        batch_size=4,
        distributed=distributed,
    )
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    for step in range(7):
        loss = F.cross_entropy(net(X), y)
        reported = math.nan if step == 4 and rank == nan_on else float(loss.detach())
        tracker.update(net, step=step, lr=0.1, batch_size=share[1] - share[0], loss=reported)
        opt.zero_grad()
        loss.backward()
        opt.step()
    tracker.update(net, step=7, force=True)
    wrote = tracker._store is not None
    tracker.close()
    return {"records": tracker.records, "wrote": wrote}


def _rank(rank: int, world: int, folder: str, nan_on: int | None) -> dict[str, Any]:
    return _train(os.path.join(folder, "tracks.sqlite"), "auto", nan_on)


def _same(got: dict[str, Any], want: dict[str, Any], where: str) -> None:
    assert set(got) == set(want), where
    for key, value in want.items():
        if key.endswith(TIMING):
            continue
        other = got[key]
        if isinstance(value, float) and isinstance(other, float):
            assert other == pytest.approx(value, rel=1e-8, abs=1e-12, nan_ok=True), (where, key)
        else:
            assert other == value, (where, key)


@pytest.mark.parametrize("world", [2, 3])
def test_tracker_records_equal_one_process_and_rank0_writes(world: int) -> None:
    want = _train(None, None)["records"]
    with tempfile.TemporaryDirectory() as folder:
        ranks = run_ranks(_rank, world, folder, None, timeout=LIMIT)
        stored = fl.load_tracks(os.path.join(folder, "tracks.sqlite"))
    assert [r["wrote"] for r in ranks] == [True] + [False] * (world - 1)
    assert len(stored) == len(want) == 4  # steps 0, 3, 6 and the forced 7
    for rank, got in enumerate(ranks):
        assert len(got["records"]) == len(want)
        for step, (g, w) in enumerate(zip(got["records"], want, strict=True)):
            _same(g, w, f"rank {rank} of {world}, record {step}")


def test_one_rank_nonfinite_loss_is_everyones() -> None:
    with tempfile.TemporaryDirectory() as folder:
        ranks = run_ranks(_rank, 2, folder, 1, timeout=LIMIT)  # rank 1 alone reports NaN at step 4
    for got in ranks:
        by_step = {r["step"]: r for r in got["records"]}
        assert by_step[4]["nonfinite"] == 1 and math.isnan(by_step[4]["minibatch_loss"])
        assert sorted(by_step) == [0, 3, 4, 6, 7]
