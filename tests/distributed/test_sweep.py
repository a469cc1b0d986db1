"""``flatness score`` under torchrun: rank 0 owns the store, ranks take checkpoints.

Each rank is a ``flatness score`` process with the environment ``torchrun`` sets
(``RANK``, ``WORLD_SIZE``, ``MASTER_ADDR``, ``MASTER_PORT``) on ``gloo``; the
checkpoints are tiny MLPs. A rank killed mid-sweep fails the job with an error
naming it, loses nothing finished, and a rerun completes.
"""

from __future__ import annotations

import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import flatness as fl
from flatness.distributed.group import split_groups
from tests.pipeline.conftest import manifest_text
from tests.pipeline.factories import tiny_net

REPO = Path(__file__).resolve().parents[2]
WAIT = 240.0  # seconds any test waits for a process (a loaded 2-core machine)


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _ranks(world: int, *args: str, timeout: float = 10.0) -> list[subprocess.Popen[str]]:
    """``world`` ``flatness score`` processes, one per rank, as torchrun starts them."""
    port = str(_port())
    procs = []
    for rank in range(world):
        env = {
            **os.environ,
            "PYTHONPATH": str(REPO),
            "OMP_NUM_THREADS": "1",
            "RANK": str(rank),
            "LOCAL_RANK": str(rank),
            "WORLD_SIZE": str(world),
            "MASTER_ADDR": "127.0.0.1",
            "MASTER_PORT": port,
        }
        command = [sys.executable, "-m", "flatness", "score", *args, "--no-progress"]
        command += ["--threads", "1", "--timeout", str(timeout)]
        procs.append(
            subprocess.Popen(
                command,
                cwd=REPO,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        )
    return procs


def _finish(procs: list[subprocess.Popen[str]]) -> list[tuple[int, str, str]]:
    """Every process's exit status and output (killed when it outlives :data:`WAIT`)."""
    out = []
    deadline = time.monotonic() + WAIT
    for proc in procs:
        try:
            stdout, stderr = proc.communicate(timeout=max(deadline - time.monotonic(), 1.0))
        except subprocess.TimeoutExpired:
            proc.kill()
            stdout, stderr = proc.communicate()
        out.append((proc.returncode, stdout, stderr))
    return out


def _sweep(tmp_path: Path, n: int, *, slow: bool = False) -> Path:
    runs = [f"r{i}.pt" for i in range(n)]
    for i, r in enumerate(runs):
        state = tiny_net(seed=i).state_dict()
        torch.save({"body." + k: v for k, v in state.items()} if slow else state, tmp_path / r)
    model = (
        'factory = "tests.pipeline.factories:slow_net"\nkwargs = { delay = 0.01 }'
        if slow
        else 'factory = "tests.pipeline.factories:tiny_net"'
    )
    measures = (
        "lambda_max = { k = 1 }" if slow else 'lambda_max = { k = 1 }\ntrace = { method = "exact" }'
    )
    (tmp_path / "m.toml").write_text(manifest_text(runs, measures=measures, model=model))
    return tmp_path / "m.toml"


def _tasks(store: Path) -> list[tuple[str, str, str]]:
    if not store.exists():
        return []
    with sqlite3.connect(store) as db:
        try:
            return db.execute("SELECT checkpoint, measure, status FROM tasks").fetchall()
        except sqlite3.OperationalError:
            return []


def _done(store: Path) -> int:
    return sum(status == "done" for *_, status in _tasks(store))


def test_two_ranks_store_every_task_once_as_one_process_does(tmp_path: Path) -> None:
    manifest = _sweep(tmp_path, 4)
    store = tmp_path / "ranks.sqlite"
    results = _finish(_ranks(2, str(manifest), "--store", str(store)))
    assert [code for code, *_ in results] == [0, 0], results
    assert "4 checkpoints: 8 tasks computed, 0 already stored" in results[0][1], results[0]
    assert results[1][1].startswith("rank 1:"), results[1]
    tasks = _tasks(store)
    assert len(tasks) == 8 and {status for *_, status in tasks} == {"done"}
    _same_values_as_one_process(store, manifest, tmp_path / "alone.sqlite")


def test_groups_of_two_ranks_score_each_checkpoint_together(tmp_path: Path) -> None:
    manifest = _sweep(tmp_path, 2)
    store = tmp_path / "groups.sqlite"
    results = _finish(_ranks(2, str(manifest), "--store", str(store), "--group-size", "2"))
    assert [code for code, *_ in results] == [0, 0], results
    assert "2 checkpoints: 4 tasks computed" in results[0][1], results[0]
    # each objective was data-parallel over the group: the same values as one process
    _same_values_as_one_process(store, manifest, tmp_path / "alone.sqlite")


def test_a_group_size_must_divide_the_world() -> None:
    with pytest.raises(ValueError, match="--group-size 3 must be a positive divisor"):
        split_groups(3)


def _same_values_as_one_process(store: Path, manifest: Path, alone: Path) -> None:
    assert fl.score(manifest, store=alone, threads=1).ok
    ranks, one = fl.load_results(store), fl.load_results(alone)
    key = ["path", "measure", "component"]
    ranks, one = ranks.sort_values(key).reset_index(), one.sort_values(key).reset_index()
    assert len(ranks) == len(one) and ranks["path"].tolist() == one["path"].tolist()
    assert ranks["value"].tolist() == pytest.approx(one["value"].tolist(), rel=1e-9)


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")
def test_a_killed_rank_fails_the_job_naming_it_and_a_rerun_completes(tmp_path: Path) -> None:
    manifest = _sweep(tmp_path, 8, slow=True)
    store = tmp_path / "results.sqlite"
    procs = _ranks(3, str(manifest), "--store", str(store))
    deadline = time.monotonic() + WAIT
    while _done(store) < 2 and time.monotonic() < deadline and procs[1].poll() is None:
        time.sleep(0.05)
    assert procs[1].poll() is None, "the sweep finished before rank 1 could be killed"
    procs[1].send_signal(signal.SIGKILL)
    results = _finish(procs)
    code, _, err = results[0]
    assert code == 1, results[0]
    assert "rank 1 closed its connection" in err and "rerun the same command" in err, err
    assert "Traceback" not in err
    assert results[2][0] == 1 and "rank 0 stopped the sweep: rank 1" in results[2][2], results[2]
    tasks = _tasks(store)
    before = _done(store)
    assert 2 <= before < 8
    assert {status for *_, status in tasks} == {"done"}, tasks  # the lost claim is released
    rerun = _finish(_ranks(2, str(manifest), "--store", str(store)))
    assert [c for c, *_ in rerun] == [0, 0], rerun
    assert f"{8 - before} tasks computed, {before} already stored" in rerun[0][1], rerun[0]
    df = fl.load_results(store)
    assert len(df) == 8 and df["checkpoint"].is_unique


@pytest.mark.skipif(not hasattr(signal, "SIGSTOP"), reason="needs SIGSTOP")
def test_a_stopped_rank_fails_the_job_within_the_timeout(tmp_path: Path) -> None:
    manifest = _sweep(tmp_path, 6, slow=True)
    store = tmp_path / "results.sqlite"
    procs = _ranks(2, str(manifest), "--store", str(store), timeout=8.0)
    deadline = time.monotonic() + WAIT
    while _done(store) < 1 and time.monotonic() < deadline and procs[1].poll() is None:
        time.sleep(0.05)
    assert procs[1].poll() is None, "the sweep finished before rank 1 could be stopped"
    procs[1].send_signal(signal.SIGSTOP)
    try:
        code, _, err = _finish(procs[:1])[0]
    finally:
        procs[1].kill()
        procs[1].communicate()
    assert code == 1, err
    assert "rank 1 sent nothing for 8 s (it hangs or was stopped)" in err, err
    assert {status for *_, status in _tasks(store)} == {"done"}
