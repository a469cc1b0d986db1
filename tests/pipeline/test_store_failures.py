"""SQLite failures on a store: waited out or one clear message; read-only stores are read.

Locked, full, damaged and read-only stores. The tests run as root too, where ``chmod``
does not stop anyone: a folder in which SQLite cannot create the ``-shm`` file that
WAL mode needs is made with a dangling ``-shm`` symlink (SQLite fails to open the
store exactly as in a read-only folder: "unable to open database file").
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import pytest

import flatness as fl
from flatness.pipeline.database import StoreError, check_store, connect_read_only
from flatness.pipeline.measures import Record
from flatness.pipeline.store import ResultsStore, export_results, load_results, load_runs
from tests.pipeline.conftest import REPO
from tests.pipeline.test_store import FINISH, _store_with_one_result

ROWS = [Record("1", 3.0, 1e-6, "residual", True)]


def _locker(path: Path) -> sqlite3.Connection:
    """Another connection holding the store's write lock."""
    db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    db.execute("BEGIN IMMEDIATE")
    return db


def test_a_lock_held_past_the_busy_timeout_is_waited_out_and_the_task_stored(
    tmp_path: Path,
) -> None:
    path = tmp_path / "r.sqlite"
    said: list[str] = []
    store = ResultsStore(path, timeout=0.1, patience=120, echo=said.append)
    assert store.claim("abc", "trace", "{}").state == "claimed"
    locker = _locker(path)
    released = threading.Event()

    def release() -> None:
        # Released once the store has met the lock and said it waits.
        while not said:
            released.wait(0.02)
        locker.execute("COMMIT")
        locker.close()
        released.set()

    thread = threading.Thread(target=release)
    thread.start()
    assert store.finish("abc", "trace", "{}", ROWS, **FINISH)
    thread.join()
    assert released.is_set()
    assert said == [f"{path}: locked by another connection while storing trace {{}}; "
                    "trying again for up to 120 s"]  # fmt: skip
    assert store.task_status("abc", "trace", "{}") == "done"
    store.close()
    assert load_results(path)["value"].tolist() == [3.0]


def test_a_lock_that_outlasts_the_patience_is_one_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "r.sqlite"
    ResultsStore(path).close()
    locker = _locker(path)
    try:
        # At open: a lock, not "not a usable store".
        with pytest.raises(StoreError, match="is locked by another connection") as info:
            ResultsStore(path, timeout=0.05, patience=0.2)
        assert str(path) in str(info.value) and "not a usable" not in str(info.value)
        assert "run the command again" in str(info.value)
    finally:
        locker.execute("ROLLBACK")
    store = ResultsStore(path, timeout=0.05, patience=0.2)
    store.claim("abc", "trace", "{}")
    locker.execute("BEGIN IMMEDIATE")
    try:
        with pytest.raises(StoreError, match=r"locked .* while storing trace"):
            store.finish("abc", "trace", "{}", ROWS, **FINISH)
    finally:
        locker.execute("ROLLBACK")
        locker.close()
    # Nothing half-written; the claim stands and a retry stores the task.
    assert store.finish("abc", "trace", "{}", ROWS, **FINISH)
    store.close()


def test_a_full_disk_is_waited_out_or_one_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "r.sqlite"
    big = {**FINISH, "details": {"blob": "x" * 200_000}}

    def fill(store: ResultsStore) -> int:
        (pages,) = store._db.execute("PRAGMA page_count").fetchone()
        store._db.execute(f"PRAGMA max_page_count = {pages + 2}")  # "the disk is full"
        return int(pages)

    store = ResultsStore(path, patience=0)
    store.claim("abc", "trace", "{}")
    fill(store)
    with pytest.raises(StoreError, match=r"r\.sqlite cannot grow: the disk .* is full; free"):
        store.finish("abc", "trace", "{}", ROWS, **big)
    assert store.task_status("abc", "trace", "{}") == "running"  # rolled back whole
    store.close()
    # With patience, the write waits; space freed meanwhile (here: the limit lifted when
    # the store says it waits) stores the task that was in flight.
    said: list[str] = []
    store = ResultsStore(path, patience=120, echo=said.append)
    assert store.claim("def", "trace", "{}").state == "claimed"
    fill(store)

    def free_space(line: str) -> None:
        said.append(line)
        store._db.execute("PRAGMA max_page_count = 1073741823")

    store.echo = free_space
    assert store.finish("def", "trace", "{}", ROWS, **big)
    assert "full while storing trace" in said[0]
    store.close()
    assert load_results(path)["value"].tolist() == [3.0]


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, "-m", "flatness", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def _corrupt(path: Path) -> None:
    """Overwrite every page but the first (the header and the schema survive)."""
    data = bytearray(path.read_bytes())
    size = int.from_bytes(data[16:18], "big")
    assert len(data) > size
    data[size:] = b"\xa5" * (len(data) - size)
    path.write_bytes(bytes(data))


def test_a_damaged_store_is_one_message_naming_it_and_no_traceback(
    sweep: Path, tmp_path: Path
) -> None:
    store = sweep.parent / "results.sqlite"
    assert fl.score(sweep, measures=["trace"]).ok
    sound = _cli("store", "check", str(store), cwd=tmp_path)
    assert sound.returncode == 0 and sound.stdout.strip() == f"{store}: ok (PRAGMA integrity_check)"
    _corrupt(store)
    for command in (
        ["score", str(sweep), "--no-progress"],
        ["export", str(store), str(tmp_path / "out.csv")],
        ["report", str(store), "--out", str(tmp_path / "report")],
    ):
        proc = _cli(*command, cwd=tmp_path)
        assert proc.returncode == 1, (command, proc.stderr)
        assert "Traceback" not in proc.stderr, proc.stderr
        assert f"{store} is damaged" in proc.stderr and "flatness store check" in proc.stderr
        assert "SELECT" not in proc.stderr  # the store, not the SQL
    checked = _cli("store", "check", str(store), cwd=tmp_path)
    assert checked.returncode == 1 and "Traceback" not in checked.stderr
    assert checked.stdout.startswith(f"{store}: ") and "damaged" in checked.stderr
    assert check_store(store)


def _unwritable_beside(path: Path) -> None:
    """Make SQLite unable to create the store's ``-shm`` file, even as root."""
    os.symlink(path.parent / "no-such-folder" / "shm", f"{path}-shm")


def test_a_finished_store_where_nothing_can_be_written_is_read(tmp_path: Path) -> None:
    path = tmp_path / "r.sqlite"
    _store_with_one_result(path)
    _unwritable_beside(path)
    with pytest.raises(sqlite3.OperationalError, match="unable to open database file"):
        sqlite3.connect(path).execute("SELECT * FROM runs").fetchall()  # what failed before
    assert load_results(path)["value"].tolist() == [3.0, 1.0]
    assert len(load_runs(path)) == 1
    assert export_results(path, tmp_path / "out.csv").read_text().count("\n") == 3
    assert check_store(path) == []
    # A writer is told plainly that the store is read-only.
    with pytest.raises(StoreError, match=r"r\.sqlite cannot be written: .* read-only"):
        ResultsStore(path)


def test_unmerged_changes_in_a_read_only_place_are_refused_not_ignored(tmp_path: Path) -> None:
    live = tmp_path / "live" / "r.sqlite"
    live.parent.mkdir()
    _store_with_one_result(live)
    writer = sqlite3.connect(live, isolation_level=None)
    writer.execute("PRAGMA wal_autocheckpoint = 0")
    writer.execute("UPDATE measurements SET value = 7.0 WHERE component = '1'")
    copy = tmp_path / "copy" / "r.sqlite"
    copy.parent.mkdir()
    for suffix in ("", "-wal"):
        shutil.copyfile(f"{live}{suffix}", f"{copy}{suffix}")
    writer.close()
    _unwritable_beside(copy)
    with pytest.raises(StoreError, match=r"r\.sqlite-wal holds changes not yet merged"):
        load_results(copy)


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads and writes whatever the mode says")
def test_a_store_in_a_read_only_folder_is_read(tmp_path: Path) -> None:
    folder = tmp_path / "ro"
    folder.mkdir()
    _store_with_one_result(folder / "r.sqlite")
    (folder / "r.sqlite").chmod(0o444)
    folder.chmod(0o555)
    try:
        assert load_results(folder / "r.sqlite")["value"].tolist() == [3.0, 1.0]
        connect_read_only(folder / "r.sqlite").close()
    finally:
        folder.chmod(0o755)
