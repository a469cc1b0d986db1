"""The installed versions of Python and of named packages, for provenance.

Checkpoints (``flatness train``) and results stores record the versions they were made
with (:data:`SCORING_PACKAGES`); a report names those it was built with
(:data:`REPORT_PACKAGES`). Both come from :func:`installed_versions`.
"""

from __future__ import annotations

import importlib
import platform
from collections.abc import Sequence
from importlib import metadata

__all__ = ["REPORT_PACKAGES", "SCORING_PACKAGES", "installed_versions", "package_versions"]

SCORING_PACKAGES = ("torch", "numpy", "flatness")
"""Packages whose versions checkpoints and stored measurements record."""

REPORT_PACKAGES = ("flatness", "torch", "numpy", "scipy", "pandas", "seaborn", "matplotlib")
"""Packages whose versions a report names (those installed)."""


def _version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        pass
    try:  # a source tree on sys.path but not installed
        module = importlib.import_module(name)
    except ImportError:
        return None
    version = getattr(module, "__version__", None)
    return None if version is None else str(version)


def installed_versions(packages: Sequence[str]) -> dict[str, str]:
    """Python's version and those of ``packages`` that are installed.

    A package is looked up by its distribution's metadata, else by its module's
    ``__version__`` (a source tree that is importable but not installed); packages
    found neither way are left out.

    Args:
        packages: Distribution (and module) names.

    Returns:
        ``{"python": "3.x.y", name: version, ...}``.

    Examples:
        >>> sorted(installed_versions(["numpy", "no-such-package"]))
        ['numpy', 'python']
    """
    out = {"python": platform.python_version()}
    for name in packages:
        version = _version(name)
        if version is not None:
            out[name] = version
    return out


def package_versions() -> dict[str, str]:
    """Versions of Python, torch, numpy and flatness, for checkpoints and stored scores.

    Returns:
        :func:`installed_versions` of :data:`SCORING_PACKAGES`.
    """
    return installed_versions(SCORING_PACKAGES)
