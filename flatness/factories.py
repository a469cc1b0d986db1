"""Import what a manifest or the command line names by a string: factories and plugins.

Manifests, sweeps and the command line name a user's model or data factory by a
string such as ``"mypkg.models:build"``, and a manifest's ``[scoring] plugins`` names
modules to import before its measures are read (modules that call
:func:`flatness.register_measure`). This module turns such strings into the callable
or the module, with errors that name the string and say what went wrong.

Naming a factory or a plugin runs its module's code, as ``import`` does, and a
factory is then called with the manifest's keyword arguments: a manifest is code, like
a Python script, so use only manifests you trust. Names from the Python standard
library or its builtins are refused before anything is imported or called
(:func:`refuse_standard_library`): no model, data set or measure comes from there, while
``os:system`` or ``subprocess:call`` would run a shell command. A *folder* (the
manifest's) is searched before the rest of ``sys.path``, so a module file lying next to
the manifest is found wherever the command is run from.
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType
from typing import Any

__all__ = [
    "import_factory",
    "import_plugin",
    "is_factory_spec",
    "refuse_standard_library",
    "search_folder",
]


def refuse_standard_library(name: str, *, kind: str = "factory") -> None:
    """Refuse a factory or plugin that lives in the Python standard library or builtins.

    Args:
        name: The module name or ``"package.module:function"``; only its top-level
            package is looked at (``"os.path:join"`` is ``os``).
        kind: What the name is for, used in the message.

    Raises:
        ImportError: If the top-level package is in :data:`sys.stdlib_module_names`
            (``builtins`` included); the message names ``name`` and says why.

    Examples:
        >>> refuse_standard_library("mypkg.models:build")
        >>> refuse_standard_library("os:system", kind="model factory")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        ImportError: model factory 'os:system' is in the Python standard library, ...
    """
    top = name.partition(":")[0].partition(".")[0]
    if top in sys.stdlib_module_names or top in sys.builtin_module_names:
        raise ImportError(
            f"{kind} {name!r} is in the Python standard library, which holds no model, data "
            "set or measure; refused before importing or calling it (a manifest's factories "
            "and plugins run as code: name your own, such as 'mypkg.models:build')"
        )


def is_factory_spec(spec: str) -> bool:
    """Tell whether ``spec`` looks like ``"package.module:function"``.

    Returns:
        True when ``spec`` contains a colon.

    Examples:
        >>> is_factory_spec("mypkg.models:build"), is_factory_spec("f1")
        (True, False)
    """
    return ":" in spec


@contextmanager
def search_folder(folder: str | os.PathLike[str] | None) -> Iterator[None]:
    """Search ``folder`` first for modules imported inside the ``with`` block.

    Args:
        folder: The folder (a manifest's); ``None`` changes nothing.

    Returns:
        A context manager; ``sys.path`` is restored when it exits.
    """
    if folder is None:
        yield
        return
    entry = str(Path(folder).resolve())
    sys.path.insert(0, entry)
    importlib.invalidate_caches()
    try:
        yield
    finally:
        try:
            sys.path.remove(entry)
        except ValueError:  # pragma: no cover - someone else removed it
            pass


def import_plugin(
    name: str, *, folder: str | os.PathLike[str] | None = None, kind: str = "plugin"
) -> ModuleType:
    """Import the module ``name`` (``"mypkg.measures"``), searching ``folder`` first.

    Args:
        name: The dotted module name.
        folder: A folder searched before ``sys.path`` (the manifest's).
        kind: What the module is for, used in error messages.

    Returns:
        The imported module (its code has run, registering what it registers).

    Raises:
        ImportError: If the module is in the standard library
            (:func:`refuse_standard_library`) or cannot be imported (the message names it
            and the folder searched).

    Examples:
        >>> import_plugin("flatness.zoo").__name__
        'flatness.zoo'
    """
    if not name or ":" in name or "/" in name or name.endswith(".py"):
        raise ImportError(
            f"{kind} {name!r}: give a module name such as 'my_measures' or 'mypkg.measures' "
            "(a file my_measures.py next to the manifest is 'my_measures')"
        )
    refuse_standard_library(name, kind=kind)
    with search_folder(folder):
        try:
            return importlib.import_module(name)
        except ImportError as exc:
            where = f" (searched {Path(folder).resolve()} first)" if folder is not None else ""
            raise ImportError(f"{kind} {name!r}: cannot import it{where}: {exc}") from exc


def import_factory(
    spec: str, *, kind: str = "factory", folder: str | os.PathLike[str] | None = None
) -> Callable[..., Any]:
    """Import the callable named by ``"package.module:function"``.

    The part after the colon may be a dotted attribute path
    (``"pkg.mod:Class.create"``).

    Args:
        spec: The string naming the callable.
        kind: What the callable is for (``"model factory"``, ``"data factory"``), used in
            error messages.
        folder: A folder searched before ``sys.path`` (the manifest's).

    Returns:
        The callable.

    Raises:
        ValueError: If ``spec`` is not of the form ``"package.module:function"``.
        ImportError: If the module is in the standard library
            (:func:`refuse_standard_library`) or cannot be imported.
        AttributeError: If the module has no such attribute.
        TypeError: If the attribute is not callable.

    Examples:
        >>> import_factory("flatness.factories:is_factory_spec")("mypkg.models:build")
        True
    """
    module_name, sep, attr_path = spec.partition(":")
    if not sep or not module_name or not attr_path:
        raise ValueError(f"{kind} {spec!r} must be of the form 'package.module:function'")
    refuse_standard_library(spec, kind=kind)
    try:
        with search_folder(folder):
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
