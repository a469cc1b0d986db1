"""The runner's report fingerprint: what a report is built from, and nothing else."""

from __future__ import annotations

from pathlib import Path

from flatness.pipeline.store import ResultsStore
from flatness.study import fingerprint


def test_fingerprint_follows_the_scored_manifest_not_the_store_s_bookkeeping(
    tmp_path: Path,
) -> None:
    path = tmp_path / "results.sqlite"
    with ResultsStore(path) as store:
        store.set_info("manifest", {"scoring": {"examples": 100}})
    before = fingerprint(path, {"title": "t"})
    with ResultsStore(path) as store:
        store.set_info("objective_holder", {"pid": 123, "time": 1.0})
    assert fingerprint(path, {"title": "t"}) == before
    assert fingerprint(path, {"title": "other"}) != before
    with ResultsStore(path) as store:
        store.set_info("manifest", {"scoring": {"examples": 150}})
    assert fingerprint(path, {"title": "t"}) != before
