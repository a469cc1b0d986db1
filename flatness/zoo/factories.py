"""Resolve ``"package.module:function"`` strings to Python objects.

Manifests, sweeps and the command line name a user's model or data factory by a
string such as ``"mypkg.models:build"``. This module turns such a string into the
callable, with errors that name the string and say what went wrong.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any


def is_factory_spec(spec: str) -> bool:
    """Tell whether ``spec`` looks like ``"package.module:function"``.

    Examples:
        >>> is_factory_spec("mypkg.models:build"), is_factory_spec("f1")
        (True, False)
    """
    return ":" in spec


def import_factory(spec: str, *, kind: str = "factory") -> Callable[..., Any]:
    """Import the callable named by ``"package.module:function"``.

    The part after the colon may be a dotted attribute path
    (``"pkg.mod:Class.create"``).

    Args:
        spec: The string naming the callable.
        kind: What the callable is for (``"model factory"``, ``"data factory"``), used in
            error messages.

    Returns:
        The callable.

    Raises:
        ValueError: If ``spec`` is not of the form ``"package.module:function"``.
        ImportError: If the module cannot be imported.
        AttributeError: If the module has no such attribute.
        TypeError: If the attribute is not callable.

    Examples:
        >>> import_factory("math:sqrt")(16.0)
        4.0
    """
    module_name, sep, attr_path = spec.partition(":")
    if not sep or not module_name or not attr_path:
        raise ValueError(f"{kind} {spec!r} must be of the form 'package.module:function'")
    try:
        obj: Any = importlib.import_module(module_name)
    except ImportError as exc:
        raise ImportError(f"{kind} {spec!r}: cannot import module {module_name!r} ({exc})") from exc
    for part in attr_path.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError as exc:
            raise AttributeError(
                f"{kind} {spec!r}: module {module_name!r} has no attribute {attr_path!r}"
            ) from exc
    if not callable(obj):
        raise TypeError(f"{kind} {spec!r} names a {type(obj).__name__}, not a callable")
    return obj  # type: ignore[no-any-return]
