"""``flatness demo``: two questions about batch size answered end to end, in one command.

The command runs the ``demo`` plan of :mod:`flatness.studies.demo` (:data:`DEMO`): a
compact Keskar et al. (2017) case with the equal-updates control (SB, LB, LB-U) and a
compact Smith et al. (2018) case (η decay vs batch increase), whose overview answers
"Is increasing B the same as decaying η?" and "Do large batches generalize worse once
updates are equal?" in sentences written from the numbers; into ``runs/demo/`` and
``reports/demo/`` under the working directory unless ``--runs``/``--out`` say
otherwise. ``--full`` runs every built-in study's full plan in turn
(:func:`full_plans`, folders :func:`full_folders`). :func:`run_study` is the command
from Python.

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
from pathlib import Path
from typing import Any

from flatness import study
from flatness.studies import demo as demo_study
from flatness.studies import keskar2017

__all__ = [
    "CI",
    "DEMO",
    "FOLDERS",
    "FULL",
    "FULL_STUDIES",
    "full_folders",
    "full_plans",
    "run_study",
]

DEMO = demo_study.DEMO
"""The plan ``flatness demo`` runs (:mod:`flatness.studies.demo`'s ``demo`` plan)."""

CI = demo_study.CI
"""The demo's miniature (``flatness demo --plan ci``, seconds)."""

FULL = keskar2017.FULL
"""keskar2017's ``full`` plan, the first that ``flatness demo --full`` runs."""

FULL_STUDIES: tuple[str, ...] = ("keskar2017", "smith2018", "hoffer2017", "smithle2018")
"""The built-in studies whose full plans ``flatness demo --full`` runs, in order (those
registered in :data:`flatness.studies.STUDIES`)."""

FOLDERS: dict[str, tuple[str, str]] = {
    DEMO.name: ("runs/demo", "reports/demo"),
    FULL.name: ("runs/keskar", "reports/keskar-mnist1d"),
}
"""Plan name → the command's default (runs, reports) folders, relative to the working
directory; another plan gets ``runs/<plan>`` and ``reports/<plan>``."""

_STUDY_FOLDERS: dict[str, tuple[str, str]] = {"keskar2017": FOLDERS[FULL.name]}


def full_plans() -> list[tuple[str, study.StudyPlan]]:
    """The full plans ``flatness demo --full`` runs: (study name, plan), in order.

    Returns:
        The ``full`` plan of every study of :data:`FULL_STUDIES` that is registered.

    Examples:
        >>> [name for name, _ in full_plans()][:2]
        ['keskar2017', 'smith2018']
    """
    from flatness.studies import STUDIES

    return [(name, STUDIES[name].plan("full")) for name in FULL_STUDIES if name in STUDIES]


def full_folders(
    name: str,
    runs: str | os.PathLike[str] | None = None,
    out: str | os.PathLike[str] | None = None,
) -> tuple[str, str]:
    """Where ``flatness demo --full`` puts a study's runs and reports.

    Args:
        name: The study.
        runs: The command's ``--runs`` (the study goes to ``<runs>/<name>``), if given.
        out: The command's ``--out`` (``<out>/<name>``), if given.

    Returns:
        ``runs/keskar`` and ``reports/keskar-mnist1d`` for keskar2017 (its committed
        report), else ``runs/<name>`` and ``reports/<name>``; under ``runs``/``out``
        when given.

    Examples:
        >>> full_folders("smith2018"), full_folders("smith2018", "r", "o")
        (('runs/smith2018', 'reports/smith2018'), ('r/smith2018', 'o/smith2018'))
    """
    default_runs, default_out = _STUDY_FOLDERS.get(name, (f"runs/{name}", f"reports/{name}"))
    return (
        default_runs if runs is None else (Path(runs) / name).as_posix(),
        default_out if out is None else (Path(out) / name).as_posix(),
    )


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
