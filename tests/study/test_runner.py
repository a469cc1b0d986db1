"""The runner's report fingerprint: what a report is built from, and nothing else."""

from __future__ import annotations

import errno
import sys
from pathlib import Path

import pytest

from flatness.pipeline.store import ResultsStore
from flatness.study import fingerprint

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


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


def test_the_case_manifest_writes_any_regime_label_as_valid_toml(tmp_path: Path) -> None:
    # A TOML study may name its regimes freely; the pair's paths derive from the labels
    # and must reach the manifest as written, not break it (a quote, a backslash).
    from types import SimpleNamespace

    from flatness.study import Case
    from flatness.study.runner import _write_manifest

    small, large = 'S"B', "L\\B"
    case = Case(
        "c",
        "t",
        {"network": "tiny_mlp", "dataset": "digits_flat"},
        {small: {"batch_size": 16}, large: {"batch_size": 256}},
        (0,),
        pair=(small, large),
        pair_seed=0,
    )
    meta = {
        "model": {"factory": "m:f"},
        "data": {"name": "digits_flat"},
        "n_train": 10,
        "lr": 0.1,
        "seed": 0,
        "epoch": 1,
        "regime": small,
    }
    runs = [
        SimpleNamespace(path=tmp_path / label.lower() / "seed0" / "final.pt", meta={**meta, **b})
        for label, b in ((small, {"batch_size": 16}), (large, {"batch_size": 256}))
    ]
    path = _write_manifest(case, tmp_path, runs)  # type: ignore[arg-type]
    doc = tomllib.loads(path.read_text(encoding="utf-8"))
    assert doc["pairs"] == [
        {
            "sb": 's"b/seed0/final.pt',
            "lb": "l\\b/seed0/final.pt",
            "label": "seed 0 (same initialization)",
            "bn": "recompute",
        }
    ]


def test_has_measurements_only_reads_a_store(tmp_path: Path) -> None:
    # The overview asks of every case's store; asking creates no store where there is
    # none and writes nothing into one (a finished store may lie in a read-only folder).
    from flatness.study.outcome import has_measurements
    from tests.pipeline.test_store import FINISH
    from tests.pipeline.test_store_failures import ROWS

    missing = tmp_path / "none" / "results.sqlite"
    assert not has_measurements(missing)
    assert not missing.exists() and not missing.parent.exists()
    path = tmp_path / "results.sqlite"
    with ResultsStore(path) as store:
        store.claim("abc", "trace", "{}")
        assert not has_measurements(path)
        assert store.finish("abc", "trace", "{}", ROWS, **FINISH)
    before = path.stat().st_mtime_ns
    assert has_measurements(path)
    assert path.stat().st_mtime_ns == before


def test_a_full_disk_leaves_no_partial_report_stamp(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The stamp that tells a rerun the report is current is an output like the others:
    # written whole or not at all (issue 17 item 8).
    from types import SimpleNamespace

    import flatness as fl
    from flatness.study.runner import _report
    from tests.pipeline.conftest import manifest_text, save_run

    for i, run in enumerate(("sb/seed0.pt", "lb/seed1.pt")):
        save_run(tmp_path / run, i)
    sweep = tmp_path / "manifest.toml"
    sweep.write_text(manifest_text(["sb/seed0.pt", "lb/seed1.pt"], measures="lambda_max = {}"))
    summary = fl.score(sweep)
    store = Path(summary.store)
    report_dir = tmp_path / "report"
    original = Path.write_text

    def full_disk(self: Path, data: str, *args: object, **kwargs: object) -> int:
        if "source.sha256" in self.name:
            original(self, data[:10], encoding="utf-8")  # part of it reached the disk
            raise OSError(errno.ENOSPC, "No space left on device")
        return original(self, data, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(Path, "write_text", full_disk)
    case = SimpleNamespace(reference=None, title="t", sections=None, notes=())
    checkpoints = tuple(fl.load_runs(store)["checkpoint"])
    with pytest.raises(OSError, match=r"disk full while writing .*source\.sha256"):
        _report(case, store, tmp_path, report_dir, checkpoints, None, print)  # type: ignore[arg-type]
    assert [p.name for p in (report_dir / "data").iterdir() if "sha256" in p.name] == []
