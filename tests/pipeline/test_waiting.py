"""A worker waiting for tasks another process holds: no repeated work while it waits."""

from __future__ import annotations

from pathlib import Path

import pytest

import flatness.pipeline.scorer as scorer_module
import flatness.pipeline.waiting as waiting_module
from flatness.pipeline.checkpoints import file_sha256
from flatness.pipeline.objective_setup import as_manifest
from flatness.pipeline.scorer import Progress, Scorer
from flatness.pipeline.store import ResultsStore
from tests.pipeline.test_store import FINISH


def test_waiting_for_another_process_does_not_rehash_the_checkpoint_each_poll(
    sweep: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    manifest = as_manifest(sweep)
    path = tmp_path / "r.sqlite"
    key = file_sha256(manifest.runs[0].path)
    with ResultsStore(path) as db, ResultsStore(path) as other:
        other.pid = 1  # another live process on this host holds the first run's tasks
        scorer = Scorer(manifest, db, trust_pickle=False, progress=Progress(False), log=print)
        for task in scorer.tasks:
            assert other.claim(key, task.measure, task.key).state == "claimed"
        scorer.score_run(0)
        assert sum(len(tasks) for tasks in scorer.busy.values()) == len(scorer.tasks)

        hashed: list[Path] = []
        polls: list[float] = []

        def counting_sha(p: Path) -> str:
            hashed.append(p)
            return file_sha256(p)

        def poll(seconds: float) -> None:
            polls.append(seconds)
            if len(polls) == 5:  # the other process finishes after five polls
                for task in scorer.tasks:
                    other.finish(key, task.measure, task.key, [], **FINISH)

        monkeypatch.setattr(scorer_module, "file_sha256", counting_sha)
        monkeypatch.setattr(waiting_module.time, "sleep", poll)
        scorer.wait_for_others(0.5)
    assert len(polls) == 5 and not scorer.busy
    assert scorer.counts["by_others"] == len(scorer.tasks)
    assert hashed == []  # the key is known from the first read, not hashed per poll
