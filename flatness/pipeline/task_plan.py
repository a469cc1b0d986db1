"""The tasks of a manifest: each measure with complete settings, and its store key.

:func:`plan_tasks` expands a manifest's ``[measures]`` through the measure registry
(:mod:`flatness.pipeline.measures`) into :class:`Task` objects, one per combination of
swept settings; the scorer runs them and the store keys its rows by them. The registry
knows no manifest, and the manifest reader only checks names against the registry, so
the arrows point one way: this module reads both.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from flatness.pipeline.manifest import Manifest
from flatness.pipeline.measure_tasks import settings_key
from flatness.pipeline.measures import get_measure

__all__ = ["Task", "plan_tasks"]


@dataclasses.dataclass(frozen=True)
class Task:
    """One task of a manifest: a measure with complete settings, and its store key.

    Attributes:
        measure: The measure's name.
        settings: Its complete settings.
        key: The settings' canonical JSON (:func:`settings_key`), the store's key.
    """

    measure: str
    settings: dict[str, Any]
    key: str


def plan_tasks(manifest: Manifest) -> list[Task]:
    """Every (measure, settings) task of a manifest.

    A measure's ``seed`` defaults to ``[scoring] seed``.

    Returns:
        The tasks, measure by measure, each with its complete settings and store key.

    Raises:
        KeyError: For an unknown measure or setting.
        TypeError: For a list given to a setting that cannot sweep.
    """
    out = []
    for name, given in manifest.measures.items():
        measure = get_measure(name)
        settings = dict(given)
        if "seed" in measure.defaults() and "seed" not in settings:
            settings["seed"] = int(manifest.scoring["seed"])
        for task in measure.tasks(settings):
            out.append(Task(name, task, settings_key(task)))
    return out
