"""The store's ``tracks`` table: upsert, reading (also read-only), old stores without it."""

from __future__ import annotations

import math
import os
import sqlite3
from pathlib import Path

import pytest

import flatness as fl
from flatness.pipeline.readers import load_tracks
from flatness.pipeline.schema import SCHEMA
from flatness.pipeline.store import ResultsStore


def _two_runs(path: Path) -> None:
    with ResultsStore(path) as s:
        s.put_track("b", "tracker", 0, {"lambda_max": 2.0, "lr": 0.1})
        s.put_track("a", "tracker", 10, {"lambda_max": 3.0, "threshold_note": "x"})
        s.put_track("a", "tracker", 0, {"lambda_max": 1.0, "stability_threshold": math.nan})
        s.put_track("a", "history", 5, {"train_loss": 0.5, "step": 999, "run": "ignored"})


def test_tracks_are_read_tidy_and_sorted(tmp_path: Path) -> None:
    path = tmp_path / "r.sqlite"
    _two_runs(path)
    df = load_tracks(path)
    assert df.columns[:3].tolist() == ["run", "source", "step"]
    assert set(df.columns[3:]) == {
        "lambda_max", "lr", "threshold_note", "stability_threshold", "train_loss"
    }  # fmt: skip
    keys = list(df[["run", "source", "step"]].itertuples(index=False, name=None))
    assert keys == [("a", "history", 5), ("a", "tracker", 0), ("a", "tracker", 10),
                    ("b", "tracker", 0)]  # fmt: skip
    assert df["lambda_max"].tolist()[1:] == [1.0, 3.0, 2.0]
    assert math.isnan(df["lambda_max"][0]) and math.isnan(df["stability_threshold"][1])
    assert df["train_loss"][0] == 0.5
    with ResultsStore(path) as s:  # the writer's view is the same frame
        assert s.tracks().equals(df)
    assert fl.load_tracks is load_tracks


def test_put_track_replaces_the_record_at_the_same_key(tmp_path: Path) -> None:
    path = tmp_path / "r.sqlite"
    with ResultsStore(path) as s:
        s.put_track("a", "tracker", 3, {"lambda_max": 1.0, "trace": 5.0})
        s.put_track("a", "tracker", 3, {"lambda_max": 2.0})
        s.put_track("a", "history", 3, {"lambda_max": 7.0})
    df = load_tracks(path)
    assert len(df) == 2
    row = df[df["source"] == "tracker"].iloc[0]
    assert row["lambda_max"] == 2.0 and "trace" not in df.columns


def test_a_store_without_the_table_has_no_tracks(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite"
    db = sqlite3.connect(path)
    old = SCHEMA.split("CREATE TABLE IF NOT EXISTS tracks")[0]
    db.executescript(old)
    db.close()
    df = load_tracks(path)
    assert df.empty and df.columns.tolist() == ["run", "source", "step"]
    with ResultsStore(path) as s:  # a writer opening it adds the table
        s.put_track("a", "tracker", 1, {"x": 1})
    assert load_tracks(path)["x"].tolist() == [1]


def test_tracks_are_read_without_writing(tmp_path: Path) -> None:
    path = tmp_path / "r.sqlite"
    _two_runs(path)
    os.symlink(tmp_path / "no-such-folder" / "shm", f"{path}-shm")  # nothing can be written
    assert len(load_tracks(path)) == 4
    with pytest.raises(FileNotFoundError, match="no results store"):
        load_tracks(tmp_path / "none.sqlite")
    assert not (tmp_path / "none.sqlite").exists()
