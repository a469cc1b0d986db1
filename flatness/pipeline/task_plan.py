"""The tasks of a manifest: each measure with complete settings, and its store key.

:func:`plan_tasks` expands a manifest's ``[measures]`` through the measure registry
(:mod:`flatness.pipeline.measures`) into :class:`Task` objects, one per combination of
swept settings; the scorer runs them and the store keys its rows by them. The registry
knows no manifest, and the manifest reader only checks names against the registry, so
the arrows point one way: this module reads both.

When ``[scoring] groups`` names parameter groups (:mod:`flatness.pipeline.groups`),
each measure that takes one (:attr:`~flatness.pipeline.measure_tasks.Measure.groups`)
has, besides its whole-network task, one task per group whose settings hold the
group under :data:`GROUP`: its own store key, while the whole-network tasks keep
theirs.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

from flatness.pipeline.manifest import Manifest
from flatness.pipeline.measure_tasks import settings_key
from flatness.pipeline.measures import get_measure

__all__ = ["GROUP", "Task", "plan_tasks"]

GROUP = "group"
"""The setting that names a task's parameter group (absent: the whole network)."""


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


def plan_tasks(manifest: Manifest, *, groups: Sequence[str] = ()) -> list[Task]:
    """Every (measure, settings) task of a manifest.

    A measure's ``seed`` defaults to ``[scoring] seed``.

    Args:
        manifest: The manifest.
        groups: Parameter groups (checked names, :func:`~flatness.pipeline.groups.
            parameter_groups`): each measure that takes one also gets a task per group.

    Returns:
        The tasks, measure by measure (the whole network's first, then each group's),
        each with its complete settings and store key.

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
            for group in groups if measure.groups else ():
                grouped = {**task, GROUP: group}
                out.append(Task(name, grouped, settings_key(grouped)))
    return out
