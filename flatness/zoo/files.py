"""Atomic file writes and a small TOML writer, for checkpoints, caches and manifests.

A file is written to a temporary sibling and moved into place with :func:`os.replace`,
so readers never see half a file and a crash leaves the old file intact. A write that
fails removes its temporary file; a full disk (or quota) becomes one
:class:`DiskFullError` naming the file.

:func:`dumps_toml` writes the subset of TOML that manifests use: tables of
strings, integers, floats, booleans, lists and inline tables, and arrays of tables.
:mod:`tomllib` reads it back.
"""

from __future__ import annotations

import errno
import math
import os
import re
import secrets
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")
_ESCAPES = {
    '"': '\\"',
    "\\": "\\\\",
    "\b": "\\b",
    "\t": "\\t",
    "\n": "\\n",
    "\f": "\\f",
    "\r": "\\r",
}


_FULL = (errno.ENOSPC, errno.EDQUOT)


class DiskFullError(OSError):
    """A file could not be written because its disk (or the user's quota) is full.

    The message names the file and the remedy; ``errno`` is the original one
    (``ENOSPC`` or ``EDQUOT``).

    Args:
        path: The file that was being written.
        code: The ``errno`` of the failed write.
    """

    def __init__(self, path: str | os.PathLike[str], code: int = errno.ENOSPC) -> None:
        super().__init__(
            f"disk full while writing {path}: free space on that disk (or write elsewhere) "
            "and run again; no partial file was left"
        )
        self.errno = code
        self.path = Path(path)


@contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success move it onto ``path``.

    Parent directories are created. If the block raises, the temporary file is removed
    and ``path`` is left as it was.

    Raises:
        DiskFullError: If the disk is full (``ENOSPC``, ``EDQUOT``) while creating,
            writing or moving the file.

    Examples:
        >>> import tempfile
        >>> target = Path(tempfile.mkdtemp()) / "a.txt"
        >>> with atomic_path(target) as tmp:
        ...     _ = tmp.write_text("hello")
        >>> target.read_text()
        'hello'
        >>> import shutil; shutil.rmtree(target.parent)
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    # Not tempfile.mkstemp: its files are private (0600); these honour the umask.
    tmp = target.parent / f".{target.name}.{secrets.token_hex(6)}.tmp"
    try:
        os.close(os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666))
        yield tmp
        os.replace(tmp, target)
    except BaseException as exc:
        tmp.unlink(missing_ok=True)
        code = _disk_full(exc)
        if code is not None and not isinstance(exc, DiskFullError):
            raise DiskFullError(target, code) from None
        raise


def _disk_full(exc: BaseException) -> int | None:
    """The ``errno`` of a full disk among ``exc`` and the exceptions it arose from.

    torch's writer answers a failed write with a ``RuntimeError`` ("unexpected pos")
    raised while the ``OSError`` of the full disk is handled, so the chain is searched.
    """
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, OSError) and current.errno in _FULL:
            return current.errno
        current = current.__cause__ or current.__context__
    return None


def write_text_atomic(path: str | os.PathLike[str], text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def _toml_string(value: str) -> str:
    out = []
    for ch in value:
        if ch in _ESCAPES:
            out.append(_ESCAPES[ch])
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\u{ord(ch):04X}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def _toml_key(key: Any) -> str:
    if not isinstance(key, str):
        raise TypeError(f"TOML keys must be strings, got {key!r}")
    return key if _BARE_KEY.fullmatch(key) else _toml_string(key)


def toml_value(value: Any) -> str:
    """Render one value as TOML (inline tables for mappings).

    Examples:
        >>> toml_value({"name": "f1", "input_shape": [40], "lr": 0.001, "bn": True})
        '{ name = "f1", input_shape = [40], lr = 0.001, bn = true }'
    """
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        return _toml_string(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, Mapping):
        if not value:
            return "{}"
        items = ", ".join(f"{_toml_key(k)} = {toml_value(v)}" for k, v in value.items())
        return "{ " + items + " }"
    raise TypeError(f"cannot write {type(value).__name__} {value!r} as TOML")


def _is_table_array(value: Any) -> bool:
    return (
        isinstance(value, list | tuple)
        and len(value) > 0
        and all(isinstance(v, Mapping) for v in value)
    )


def dumps_toml(doc: Mapping[str, Any], *, header: str | None = None) -> str:
    """Render a document as TOML.

    Top-level mappings become ``[tables]`` (mappings inside them become inline
    tables) and top-level non-empty lists of mappings become ``[[arrays of tables]]``.

    Args:
        doc: The document.
        header: Optional comment lines written at the top.

    Returns:
        The TOML text.

    Examples:
        >>> print(dumps_toml({"data": {"name": "mnist1d"}, "runs": [{"seed": 0}, {"seed": 1}]}))
        [data]
        name = "mnist1d"
        <BLANKLINE>
        [[runs]]
        seed = 0
        <BLANKLINE>
        [[runs]]
        seed = 1
        <BLANKLINE>
    """
    lines: list[str] = [f"# {line}".rstrip() for line in header.splitlines()] if header else []
    for key, value in doc.items():
        if not isinstance(value, Mapping) and not _is_table_array(value):
            lines.append(f"{_toml_key(key)} = {toml_value(value)}")
    for key, value in doc.items():
        if isinstance(value, Mapping):
            tables: list[tuple[str, Mapping[str, Any]]] = [(f"[{_toml_key(key)}]", value)]
        elif _is_table_array(value):
            tables = [(f"[[{_toml_key(key)}]]", item) for item in value]
        else:
            continue
        for title, table in tables:
            if lines:
                lines.append("")
            lines.append(title)
            lines.extend(f"{_toml_key(k)} = {toml_value(v)}" for k, v in table.items())
    return "\n".join(lines) + "\n"
