"""The store's SQLite file: opening it, waiting out transient failures, clear errors.

Every way SQLite can fail on a results store becomes one :class:`StoreError` that
names the store, says what is wrong and what to do (:func:`store_error`):

- *locked* -- another connection holds the write lock longer than the busy timeout;
- *full* -- the disk (or a size limit) is full;
- *damaged* -- a corrupted page, or a file that is not an SQLite database;
- *read-only* -- the file or its folder cannot be written.

A write that meets a lock or a full disk is retried (:func:`retrying`) for a bounded
time, saying so once, so the task just computed is stored when the condition passes
instead of being lost. Readers open a store read-only (:func:`connect_read_only`); a
finished store in a read-only folder, where SQLite cannot create the ``-shm`` file WAL
mode needs, is opened as immutable. :func:`check_store` runs ``PRAGMA
integrity_check`` (``flatness store check``).
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Callable
from contextlib import closing
from pathlib import Path
from typing import TypeVar
from urllib.parse import quote

__all__ = [
    "StoreError",
    "check_store",
    "connect_read_only",
    "failure_kind",
    "retrying",
    "store_error",
]

T = TypeVar("T")

_CODES = {
    "SQLITE_BUSY": "locked",
    "SQLITE_LOCKED": "locked",
    "SQLITE_FULL": "full",
    "SQLITE_CORRUPT": "damaged",
    "SQLITE_NOTADB": "damaged",
    "SQLITE_READONLY": "read-only",
    "SQLITE_CANTOPEN": "read-only",
    "SQLITE_PERM": "read-only",
}
_TEXTS = (
    ("locked", "locked"),
    ("busy", "locked"),
    ("full", "full"),
    ("malformed", "damaged"),
    ("not a database", "damaged"),
    ("readonly", "read-only"),
    ("unable to open", "read-only"),
)
TRANSIENT = ("locked", "full")
"""Failures that pass by themselves (another process lets go, space is freed)."""

_REMEDIES = {
    "locked": (
        "is locked by another connection (an open sqlite3 shell, a backup, another "
        "program); close it and run the command again: finished tasks are kept"
    ),
    "full": (
        "cannot grow: the disk (or a size limit) is full; free space and run the command "
        "again: finished tasks are kept"
    ),
    "damaged": (
        "is damaged (a corrupted page, or not a flatness results store); run `flatness "
        "store check {path}` to see what is wrong, then restore it from a backup or score "
        "into a new store (--store NEW.sqlite)"
    ),
    "read-only": (
        "cannot be written: the file or its folder is read-only (`flatness report` and "
        "`flatness export` can read it where it is); to score into it, copy it with its "
        "folder's permissions fixed, or score into a new store (--store NEW.sqlite)"
    ),
    "other": "failed; run `flatness store check {path}` to see whether it is damaged",
}


class StoreError(ValueError):
    """A results store cannot be used; the message names the store, the cause and the fix.

    Attributes:
        kind: ``"locked"``, ``"full"``, ``"damaged"``, ``"read-only"`` or ``"other"``.
    """

    def __init__(self, message: str, kind: str = "other") -> None:
        super().__init__(message)
        self.kind = kind


def failure_kind(exc: BaseException) -> str:
    """What an SQLite failure means for a store.

    Returns:
        ``"locked"``, ``"full"``, ``"damaged"``, ``"read-only"`` or ``"other"``.

    Examples:
        >>> failure_kind(sqlite3.OperationalError("database is locked"))
        'locked'
        >>> failure_kind(sqlite3.DatabaseError("database disk image is malformed"))
        'damaged'
    """
    if isinstance(exc, StoreError):
        return exc.kind
    name = getattr(exc, "sqlite_errorname", None) or ""
    primary = name.split("_")[:2]
    kind = _CODES.get("_".join(primary))
    if kind is not None:
        return kind
    text = str(exc).lower()
    return next((k for word, k in _TEXTS if word in text), "other")


def store_error(path: str | os.PathLike[str], exc: BaseException, doing: str = "") -> StoreError:
    """The :class:`StoreError` for an SQLite failure on the store at ``path``.

    Args:
        path: The store.
        exc: SQLite's exception (or pandas' wrapping of it).
        doing: What was being done (``"storing a task"``), for the message.

    Returns:
        The error; raise it ``from exc``.

    Examples:
        >>> str(store_error("r.sqlite", sqlite3.OperationalError("database is locked")))[:40]
        'r.sqlite is locked by another connection'
    """
    if isinstance(exc, StoreError):
        return exc
    cause = exc.__cause__ if isinstance(exc.__cause__, sqlite3.Error) else exc
    kind = failure_kind(cause)
    while_ = f" while {doing}" if doing else ""
    remedy = _REMEDIES[kind].format(path=path)
    return StoreError(f"{path} {remedy} (SQLite: {cause}{while_})", kind)


def retrying(
    path: str | os.PathLike[str],
    attempt: Callable[[], T],
    *,
    patience: float,
    doing: str = "",
    echo: Callable[[str], None] | None = None,
) -> T:
    """Call ``attempt`` until it succeeds, waiting out a locked store or a full disk.

    Args:
        path: The store (for the messages).
        attempt: One try (a whole transaction: it must roll back what it did when it
            fails).
        patience: Seconds to keep trying after a transient failure (0: never retry).
        doing: What is being done, for the messages.
        echo: Told once when the waiting starts (default: nothing).

    Returns:
        What ``attempt`` returned.

    Raises:
        StoreError: For a failure that does not pass (damaged, read-only, other), or a
            transient one that lasts longer than ``patience``.
    """
    deadline: float | None = None
    pause = 0.05
    while True:
        try:
            return attempt()
        except sqlite3.Error as exc:
            kind = failure_kind(exc)
            now = time.monotonic()
            if deadline is None and kind in TRANSIENT and patience > 0:
                deadline = now + patience
                if echo is not None:
                    echo(
                        f"{path}: {'locked by another connection' if kind == 'locked' else 'full'}"
                        f"{' while ' + doing if doing else ''}; trying again for up to "
                        f"{patience:g} s"
                    )
            if kind not in TRANSIENT or deadline is None or now >= deadline:
                raise store_error(path, exc, doing) from exc
            time.sleep(min(pause, max(deadline - now, 0.0)))
            pause = min(pause * 2, 2.0)


def connect_read_only(path: str | os.PathLike[str]) -> sqlite3.Connection:
    """Open a store for reading only, also where SQLite cannot write beside it.

    A store in WAL mode needs its ``-shm`` file; in a read-only folder (or with a
    read-only ``-shm``) SQLite cannot create it, and even a read-only connection fails.
    A *finished* store (no pending ``-wal`` content: the last writer merged it when it
    closed) is then opened ``immutable``: nobody can write it there anyway.

    Args:
        path: The store (an existing file).

    Returns:
        The connection (``mode=ro``, else ``immutable=1``).

    Raises:
        StoreError: If the store cannot be opened: damaged, or read-only with
            unmerged changes in its ``-wal`` file.
    """
    target = Path(path).resolve()
    uri = f"file:{quote(str(target))}"
    db = sqlite3.connect(f"{uri}?mode=ro", uri=True)
    try:
        db.execute("SELECT count(*) FROM sqlite_master").fetchone()
        return db
    except sqlite3.Error as exc:
        db.close()
        if failure_kind(exc) != "read-only":
            raise store_error(path, exc, "opening it") from exc
    wal = Path(f"{target}-wal")
    if wal.exists() and wal.stat().st_size > 0:
        raise StoreError(
            f"{path} cannot be read where it is: its folder or files are read-only and "
            f"{wal.name} holds changes not yet merged into the store; copy the store with "
            f"its -wal file to a writable folder and read it there",
            "read-only",
        )
    db = sqlite3.connect(f"{uri}?immutable=1", uri=True)
    try:
        db.execute("SELECT count(*) FROM sqlite_master").fetchone()
    except sqlite3.Error as exc:
        db.close()
        raise store_error(path, exc, "opening it") from exc
    return db


def check_store(path: str | os.PathLike[str]) -> list[str]:
    """Run SQLite's ``PRAGMA integrity_check`` on a store (``flatness store check``).

    Args:
        path: The store.

    Returns:
        The problems SQLite finds, one line each; ``[]`` for a sound store.

    Raises:
        FileNotFoundError: If there is no file at ``path``.
        StoreError: If the file cannot be opened as an SQLite database at all.
    """
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"{p}: no results store here")
    try:
        with closing(connect_read_only(p)) as db:
            rows = [str(r[0]) for r in db.execute("PRAGMA integrity_check").fetchall()]
    except StoreError as exc:
        if exc.kind != "damaged":
            raise
        return [f"SQLite cannot read it: {exc.__cause__ or exc}"]
    except sqlite3.Error as exc:
        return [f"SQLite cannot check it: {exc}"]
    return [] if rows == ["ok"] else rows
