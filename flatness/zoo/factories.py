"""Resolve ``"package.module:function"`` strings to Python objects.

The implementation lives in the neutral module :mod:`flatness.factories` (the scoring
pipeline needs it too); these names stay importable from here.
"""

from __future__ import annotations

from flatness.factories import import_factory, is_factory_spec

__all__ = ["import_factory", "is_factory_spec"]
