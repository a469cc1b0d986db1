"""A small TOML writer for manifests (atomic writes live in :mod:`flatness.atomic`).

:func:`dumps_toml` writes the subset of TOML that manifests use: tables of
strings, integers, floats, booleans, lists and inline tables, and arrays of tables.
:mod:`tomllib` reads it back.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

from flatness.atomic import DiskFullError, atomic_path, write_text_atomic

__all__ = ["DiskFullError", "atomic_path", "dumps_toml", "toml_value", "write_text_atomic"]

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
