"""The results store's tables, as SQL (see :mod:`flatness.pipeline.store` for their roles).

A task is keyed by (checkpoint, measure, settings): the checkpoint's SHA-256, the
measure's name and its settings' canonical JSON
(:func:`flatness.pipeline.measures.settings_key`); a measurement adds its component.
A track (a measurement taken during training, :mod:`flatness.tracking`) is keyed by
(run, source, step) and keeps its record's fields as one JSON object.
"""

from __future__ import annotations

__all__ = ["RUN_COLUMNS", "SCHEMA", "SCHEMA_VERSION", "TRACK_KEYS"]

SCHEMA_VERSION = 1
"""The version recorded in the ``info`` table; bumped when a table changes incompatibly.

A new table is not such a change: ``tracks`` was added under version 1, and opening an
older store for writing creates it (readers treat its absence as no tracks).
"""

SCHEMA = """
CREATE TABLE IF NOT EXISTS info (key TEXT PRIMARY KEY, value TEXT);
CREATE TABLE IF NOT EXISTS runs (
    checkpoint TEXT PRIMARY KEY,
    path TEXT NOT NULL,
    regime TEXT,
    batch_size REAL,
    lr REAL,
    seed INTEGER,
    epoch INTEGER,
    meta TEXT,
    train_loss REAL,
    train_accuracy REAL,
    test_loss REAL,
    test_accuracy REAL,
    examples INTEGER,
    status TEXT NOT NULL,
    error TEXT,
    updated TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS measurements (
    checkpoint TEXT NOT NULL,
    measure TEXT NOT NULL,
    settings TEXT NOT NULL,
    component TEXT NOT NULL,
    value REAL,
    error REAL,
    error_kind TEXT,
    converged INTEGER,
    matvecs INTEGER,
    seconds REAL,
    device TEXT,
    dtype TEXT,
    versions TEXT,
    details TEXT,
    created TEXT NOT NULL,
    PRIMARY KEY (checkpoint, measure, settings, component)
);
CREATE TABLE IF NOT EXISTS curves (
    sb TEXT NOT NULL,
    lb TEXT NOT NULL,
    settings TEXT NOT NULL,
    label TEXT,
    alpha REAL NOT NULL,
    split TEXT NOT NULL,
    metric TEXT NOT NULL,
    value REAL,
    created TEXT NOT NULL,
    PRIMARY KEY (sb, lb, settings, alpha, split, metric)
);
CREATE TABLE IF NOT EXISTS tasks (
    checkpoint TEXT NOT NULL,
    measure TEXT NOT NULL,
    settings TEXT NOT NULL,
    status TEXT NOT NULL,
    owner TEXT,
    host TEXT,
    pid INTEGER,
    started REAL,
    error TEXT,
    PRIMARY KEY (checkpoint, measure, settings)
);
CREATE TABLE IF NOT EXISTS tracks (
    run TEXT NOT NULL,
    source TEXT NOT NULL,
    step INTEGER NOT NULL,
    record TEXT NOT NULL,
    created TEXT NOT NULL,
    PRIMARY KEY (run, source, step)
);
"""
"""The tables' definitions (``CREATE TABLE IF NOT EXISTS``: opening a store creates them)."""

RUN_COLUMNS = (
    "checkpoint", "path", "regime", "batch_size", "lr", "seed", "epoch", "meta",
    "train_loss", "train_accuracy", "test_loss", "test_accuracy", "examples",
    "status", "error", "updated",
)  # fmt: skip
"""The columns of the ``runs`` table, in order."""

TRACK_KEYS = ("run", "source", "step")
"""The key columns of the ``tracks`` table: a run's name, ``"tracker"`` (measured during
training) or ``"history"`` (a training run's per-epoch history), and the updates so far."""
