"""Processes sharing a store: one objective from the first task, stalled claims taken over."""

from __future__ import annotations

import re
import signal
import sqlite3
import time
from pathlib import Path

import pytest

from flatness.pipeline.store import ResultsStore, load_info
from tests.pipeline.test_scoring import _cli, _slow_sweep


def test_two_new_sweeps_with_different_objectives_cannot_both_proceed(tmp_path: Path) -> None:
    manifest = _slow_sweep(tmp_path, 3)
    store = tmp_path / "new.sqlite"
    procs = [
        _cli("score", str(manifest), "--store", str(store), "--examples", n) for n in ("30", "20")
    ]
    outs = [p.communicate(timeout=300) for p in procs]
    codes = sorted(p.returncode for p in procs)
    assert codes == [0, 1], outs
    refused = next(err for p, (_, err) in zip(procs, outs, strict=True) if p.returncode == 1)
    assert "another objective" in refused and re.search(r"examples = \d+ → \d+", refused)
    assert "Traceback" not in refused
    examples = {load_info(store)["manifest"]["scoring"]["examples"]}
    with sqlite3.connect(store) as db:
        assert db.execute("SELECT COUNT(*) FROM measurements").fetchone()[0] == 3
        stored = {row[0] for row in db.execute("SELECT examples FROM runs")}
    assert stored == examples


def test_the_objective_is_claimed_before_any_measurement(tmp_path: Path) -> None:
    store = tmp_path / "r.sqlite"
    dead = 2**22 + 12345  # above Linux's default pid_max: never alive
    with ResultsStore(store) as gone:
        gone.pid = dead
        assert gone.claim_objective({"scoring": {"examples": 30}}, _differ) == []
    # An empty store whose scorer has gone takes another objective ...
    with ResultsStore(store) as running:
        running.pid = 1  # init: alive, and not this process
        assert running.claim_objective({"scoring": {"examples": 20}}, _differ) == []
    # ... but while that scorer lives, another objective is refused, though nothing
    # is measured yet; the same objective is welcome.
    with ResultsStore(store) as late:
        assert late.claim_objective({"scoring": {"examples": 10}}, _differ) == ["examples"]
        assert late.claim_objective({"scoring": {"examples": 20}}, _differ) == []


def _differ(before: dict, after: dict) -> list[str]:
    return ["examples"] if before["scoring"] != after["scoring"] else []


@pytest.mark.skipif(not hasattr(signal, "SIGSTOP"), reason="needs SIGSTOP")
def test_a_stopped_workers_claim_is_taken_over_with_a_message(tmp_path: Path) -> None:
    manifest = _slow_sweep(tmp_path, 2)
    store = tmp_path / "results.sqlite"
    first = _cli("score", str(manifest), "--stale-after", "10")
    deadline = time.time() + 120
    running = 0
    while time.time() < deadline and first.poll() is None and not running:
        time.sleep(0.05)
        running = _count(store, "status='running'")
    assert first.poll() is None and running, "the first worker never claimed a task"
    first.send_signal(signal.SIGSTOP)
    try:
        second = _cli("score", str(manifest), "--stale-after", "10")
        out, err = second.communicate(timeout=300)
    finally:
        first.send_signal(signal.SIGCONT)
        first.communicate(timeout=300)
    assert second.returncode == 0, err
    assert re.search(r"waiting for lambda_max .* on \S*r0\.pt: claimed by .*pid \d+", err), err
    assert re.search(r"no heartbeat for [\d.]+ s; taken over after 10 s", err), err
    assert "2 tasks computed" in out
    assert _count(store, "status='done'") == 2


def _count(store: Path, where: str) -> int:
    if not store.exists():
        return 0
    with sqlite3.connect(store) as db:
        try:
            return int(db.execute(f"SELECT COUNT(*) FROM tasks WHERE {where}").fetchone()[0])
        except sqlite3.OperationalError:
            return 0


def test_a_heartbeat_refreshes_the_claim_and_a_late_owner_does_not_store(tmp_path: Path) -> None:
    from tests.pipeline.test_store import FINISH

    path = tmp_path / "r.sqlite"
    owner, other = ResultsStore(path, stale_after=0.4), ResultsStore(path, stale_after=0.4)
    other.pid = 1  # another live process on this host
    assert owner.claim("abc", "trace", "{}").state == "claimed"
    assert owner.claim_objective({"scoring": {"examples": 30}}, _differ) == []
    first, held = _started(path), load_info(path)["objective_holder"]["time"]
    with owner.heartbeat():
        deadline = time.time() + 60
        while _started(path) == first and time.time() < deadline:
            time.sleep(0.05)
    assert _started(path) > first
    assert load_info(path)["objective_holder"]["time"] > held  # the objective's claim too
    # Not refreshed any more: after stale_after, the other process takes it over, and
    # the owner, coming back, does not store its result over the other's.
    deadline = time.time() + 60
    while other.claim("abc", "trace", "{}").state != "claimed":
        assert time.time() < deadline, "the stale claim was never taken over"
        time.sleep(0.1)
    assert owner.holder("abc", "trace", "{}").state == "busy"
    assert not owner.finish("abc", "trace", "{}", [], **FINISH)
    assert other.finish("abc", "trace", "{}", [], **FINISH)
    owner.close()
    other.close()


def _started(store: Path) -> float:
    with sqlite3.connect(store) as db:
        return float(db.execute("SELECT started FROM tasks").fetchone()[0])
