"""A case of an overview: one network on one data set, with its store and report."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

__all__ = ["OverviewCase"]


@dataclass(frozen=True)
class OverviewCase:
    """A case of an overview: its name, title, results store, report and paper network.

    Attributes:
        name: Short name (``"f1-mnist1d"``).
        title: Its report's title.
        store: Its results store.
        report: Its HTML report (linked from the overview).
        reference: Keskar et al.'s network to compare with (``"F1"``), or ``None``.
        checkpoints: Only these checkpoints of the store (SHA-256 digests); ``None``
            for all.
    """

    name: str
    title: str
    store: Path
    report: Path
    reference: str | None = None
    checkpoints: frozenset[str] | None = None
