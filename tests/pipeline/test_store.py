"""The results store: claims, resumability, stale owners, tidy reading and export."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from flatness.pipeline.measures import Record
from flatness.pipeline.store import ResultsStore, export_results, load_results

FINISH = {
    "matvecs": 12,
    "seconds": 0.5,
    "device": "cpu",
    "dtype": "float64",
    "versions": {"torch": "x"},
    "details": {"k": 2},
}


def _store_with_one_result(path: Path) -> None:
    with ResultsStore(path) as s:
        s.put_run(
            "abc",
            "/runs/a.pt",
            regime="SB",
            batch_size=8,
            seed=0,
            meta={"lr": 0.1},
            train_accuracy=0.9,
            test_accuracy=0.7,
        )
        assert s.claim("abc", "lambda_max", '{"k": 2}').state == "claimed"
        s.finish(
            "abc",
            "lambda_max",
            '{"k": 2}',
            [Record("1", 3.0, 1e-6, "residual", True), Record("2", 1.0, 1e-5, "residual", True)],
            **FINISH,
        )


def test_finish_then_done_and_tidy_frame(tmp_path: Path) -> None:
    path = tmp_path / "r.sqlite"
    _store_with_one_result(path)
    with ResultsStore(path) as s:
        assert s.claim("abc", "lambda_max", '{"k": 2}').state == "done"
        assert s.run("abc")["regime"] == "SB"
    df = load_results(path)
    assert list(df["component"]) == ["1", "2"] and list(df["value"]) == [3.0, 1.0]
    row = df.iloc[0]
    assert row["regime"] == "SB" and row["converged"] and row["matvecs"] == 12
    assert row["generalization_gap"] == pytest.approx(0.2)
    assert "details" not in df and "details" in load_results(path, details=True)


def test_a_live_claim_is_busy_a_dead_one_is_taken_over(tmp_path: Path) -> None:
    path = tmp_path / "r.sqlite"
    first, second = ResultsStore(path), ResultsStore(path)
    assert first.claim("c", "trace", "{}").state == "claimed"
    assert second.claim("c", "trace", "{}").state == "busy"
    # a claim by a process that has exited (same host) is stale
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    with sqlite3.connect(path) as db:
        db.execute("UPDATE tasks SET pid=? WHERE checkpoint='c'", (int(dead.stdout),))
    assert second.claim("c", "trace", "{}").state == "claimed"
    first.close()
    second.close()


def test_old_claims_from_other_hosts_expire(tmp_path: Path) -> None:
    path = tmp_path / "r.sqlite"
    with ResultsStore(path) as a:
        a.claim("c", "trace", "{}")
    with sqlite3.connect(path) as db:
        db.execute("UPDATE tasks SET host='other', started=started-100")
    with ResultsStore(path, stale_after=1000) as b:
        assert b.claim("c", "trace", "{}").state == "busy"
    with ResultsStore(path, stale_after=10) as b:
        assert b.claim("c", "trace", "{}").state == "claimed"


def test_failed_tasks_are_retried_and_released_ones_vanish(tmp_path: Path) -> None:
    with ResultsStore(tmp_path / "r.sqlite") as s:
        s.claim("c", "trace", "{}")
        s.fail("c", "trace", "{}", "boom")
        assert s.task_status("c", "trace", "{}") == "failed"
        assert s.claim("c", "trace", "{}").state == "claimed"
        s.release("c", "trace", "{}")
        assert s.task_status("c", "trace", "{}") is None


def test_export_csv_and_parquet(tmp_path: Path) -> None:
    path = tmp_path / "r.sqlite"
    _store_with_one_result(path)
    csv = pd.read_csv(export_results(path, tmp_path / "out.csv"))
    assert list(csv["value"]) == [3.0, 1.0]
    pytest.importorskip("pyarrow", reason="pyarrow is in the dev extra; Parquet needs it")
    pq = pd.read_parquet(export_results(path, tmp_path / "out.parquet"))
    assert list(pq["value"]) == [3.0, 1.0]
    with pytest.raises(ValueError, match=r"export to \.csv or \.parquet"):
        export_results(path, tmp_path / "out.xlsx")


def test_not_a_store(tmp_path: Path) -> None:
    junk = tmp_path / "junk.sqlite"
    junk.write_text("this is not sqlite " * 100)
    with pytest.raises(ValueError, match=r"junk\.sqlite: not a usable flatness results store"):
        ResultsStore(junk)
    with pytest.raises(FileNotFoundError, match="run `flatness score` first"):
        load_results(tmp_path / "none.sqlite")
