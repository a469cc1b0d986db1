"""``flatness demo``: Keskar et al.'s study on built-in data, end to end, in one command.

The command runs the ``demo`` plan of :mod:`flatness.studies.keskar2017` (``--full``:
its ``full`` plan) with the study runner :func:`flatness.study.run_study`, into
``runs/demo/`` and ``reports/demo/`` under the working directory (``--full``:
``runs/keskar/`` and ``reports/keskar-mnist1d/``) unless ``--runs``/``--out`` say
otherwise. :func:`run_study` here is that command from Python.

The study's names moved: :class:`~flatness.study.Case`, ``StudyPlan``,
:class:`~flatness.study.CaseResult`, :class:`~flatness.study.StudyResult`,
:func:`~flatness.study.run_case` and :func:`~flatness.study.describe` to
:mod:`flatness.study`; the plans and Keskar's settings (``KESKAR_PROTOCOL``,
``ALL_MEASURES``, ...) to :mod:`flatness.studies.keskar2017`. Importing them from here
still works, with a :class:`DeprecationWarning`; ``flatness.demo.Case`` is
:class:`~flatness.studies.keskar2017.KeskarCase` (Keskar's defaults), and
``flatness.demo.StudyPlan`` still takes its own ``runs`` and ``out`` folders.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from flatness import study
from flatness.studies import keskar2017

__all__ = ["DEMO", "FOLDERS", "FULL", "run_study"]

DEMO = keskar2017.DEMO
"""The plan ``flatness demo`` runs (keskar2017's ``demo`` plan)."""

FULL = keskar2017.FULL
"""The plan ``flatness demo --full`` runs (keskar2017's ``full`` plan)."""

FOLDERS: dict[str, tuple[str, str]] = {
    DEMO.name: ("runs/demo", "reports/demo"),
    FULL.name: ("runs/keskar", "reports/keskar-mnist1d"),
}
"""Plan name → the command's default (runs, reports) folders, relative to the working
directory; another plan gets ``runs/<plan>`` and ``reports/<plan>``."""


@dataclass(frozen=True)
class StudyPlan(study.StudyPlan):
    """Deprecated: a plan that names its own folders.

    Use :class:`flatness.study.StudyPlan` and give the folders to
    :func:`flatness.study.run_study`.
    """

    runs: str | None = None
    out: str | None = None

    def __post_init__(self) -> None:
        warnings.warn(
            "flatness.demo.StudyPlan is deprecated: use flatness.study.StudyPlan and pass "
            "runs= and out= to flatness.study.run_study",
            DeprecationWarning,
            stacklevel=3,
        )
        super().__post_init__()


def _folders(plan: study.StudyPlan) -> tuple[str, str]:
    runs, out = FOLDERS.get(plan.name, (f"runs/{plan.name}", f"reports/{plan.name}"))
    return getattr(plan, "runs", None) or runs, getattr(plan, "out", None) or out


def run_study(
    plan: study.StudyPlan | None = None,
    *,
    runs: str | os.PathLike[str] | None = None,
    out: str | os.PathLike[str] | None = None,
    progress: bool = True,
    echo: Callable[[str], None] = print,
    command: str | None = None,
) -> study.StudyResult:
    """Run a plan with the command's default folders (what ``flatness demo`` runs).

    Args:
        plan: The plan (default :data:`DEMO`).
        runs: Where checkpoints and stores go (default: :data:`FOLDERS`).
        out: Where the reports go (default: :data:`FOLDERS`).
        progress: Show progress bars on stderr.
        echo: Called with one line per step.
        command: The command that regenerates the reports (shown in them).

    Returns:
        Every case's result and the overview's paths and answers.

    Raises:
        ValueError: As :func:`flatness.study.run_study` does.
    """
    chosen = DEMO if plan is None else plan
    default_runs, default_out = _folders(chosen)
    return study.run_study(
        chosen,
        runs=default_runs if runs is None else runs,
        out=default_out if out is None else out,
        progress=progress,
        echo=echo,
        command=command,
    )


_MOVED: dict[str, tuple[Any, str]] = {
    "Case": (keskar2017.KeskarCase, "flatness.studies.keskar2017.KeskarCase"),
    "CaseResult": (study.CaseResult, "flatness.study.CaseResult"),
    "StudyResult": (study.StudyResult, "flatness.study.StudyResult"),
    "run_case": (study.run_case, "flatness.study.run_case"),
    "describe": (study.describe, "flatness.study.describe"),
    **{
        name: (getattr(keskar2017, name), f"flatness.studies.keskar2017.{name}")
        for name in (
            "KESKAR_PROTOCOL",
            "SB_LB",
            "F1_SMALL",
            "C1_SMALL",
            "ALL_MEASURES",
            "DEMO_MEASURES",
        )
    },
}


def __getattr__(name: str) -> Any:
    """The names that moved, with a :class:`DeprecationWarning` naming their new home."""
    if name in _MOVED:
        value, new = _MOVED[name]
        warnings.warn(
            f"flatness.demo.{name} is deprecated: use {new}", DeprecationWarning, stacklevel=2
        )
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
