"""Rank 0's coordinator in one process: units in order, duplicates refused, store calls."""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from flatness.distributed.coordinator import Coordinator
from flatness.distributed.sweep import StoreClient
from flatness.pipeline.store import ResultsStore
from tests.pipeline.factories import tiny_net


def _coordinator(tmp_path: Path, paths: list[Path]) -> Coordinator:
    @contextlib.contextmanager
    def open_store() -> Iterator[ResultsStore]:
        with ResultsStore(tmp_path / "r.sqlite") as db:
            yield db

    units = [("run", i) for i in range(len(paths))] + [("pair", 0)]
    return Coordinator(open_store, units, paths, [], None, timeout=5.0)


def test_units_go_out_in_order_and_a_byte_identical_run_is_refused_once(tmp_path: Path) -> None:
    first, second = tmp_path / "a.pt", tmp_path / "b.pt"
    torch.save(tiny_net(seed=0).state_dict(), first)
    torch.save(tiny_net(seed=1).state_dict(), second)
    shutil.copy(first, tmp_path / "copy.pt")
    coordinator = _coordinator(tmp_path, [first, tmp_path / "copy.pt", second])
    assert coordinator.start() is None
    try:
        handed = [coordinator.ask("next", 0) for _ in range(4)]
        coordinator.ask("done", (0, {"computed": 2, "reused": 1}, ["x: failed"], 0))
    finally:
        coordinator.close()
    assert handed == [("run", 0), ("run", 2), ("pair", 0), None]
    assert coordinator.outcome.counts == {"computed": 2, "reused": 1, "by_others": 0}
    failures = coordinator.outcome.failures
    assert len(failures) == 2 and "is byte-identical to" in failures[0]
    assert failures[1] == "x: failed"


def test_store_calls_travel_and_unknown_ones_are_refused(tmp_path: Path) -> None:
    coordinator = _coordinator(tmp_path, [])
    assert coordinator.start() is None
    try:
        client = StoreClient(lambda kind, p: coordinator.ask(kind, (1, p)), 600.0)
        assert client.claim("abc", "trace", "{}").state == "claimed"
        assert client.task_status("abc", "trace", "{}") == "running"
        with pytest.raises(ValueError, match="rank 1 asked for store call 'close'"):
            client._call("close")
    finally:
        coordinator.close()  # releases the claim the rank still held
    with ResultsStore(tmp_path / "r.sqlite") as db:
        assert db.task_status("abc", "trace", "{}") is None
