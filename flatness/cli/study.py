"""``flatness study``: a built-in study, or one declared in TOML: train, score, report.

Runs :func:`flatness.study.run_study` on a plan of a built-in study
(:mod:`flatness.studies`) or of one :func:`flatness.study.load_study` reads.
:func:`run_plan` prints a study's outcome and serves ``flatness demo`` too.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from flatness.cli.common import Subcommand, add_run_options, option_words, set_threads

if TYPE_CHECKING:
    from flatness.study import StudyPlan, StudyResult, StudySpec


def _arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("study", nargs="?", metavar="NAME_OR_TOML", help="the study")
    p.add_argument("--list", action="store_true", help="list the built-in studies and exit")
    p.add_argument("--plan", help="the study's plan (default: its default plan)")
    p.add_argument("--runs", type=Path, help="folder of checkpoints and results stores")
    p.add_argument("--out", type=Path, help="folder of the reports")
    add_run_options(p)


def resolve_study(name_or_toml: str) -> StudySpec:
    """A built-in study by name, else the study a TOML file declares.

    Args:
        name_or_toml: A built-in study's name or a TOML file's path.

    Returns:
        The study.

    Raises:
        KeyError: For a name that is neither a built-in study nor a file (the message
            names the built-in studies).
        ValueError: For a TOML file that declares no valid study.
    """
    from flatness.studies import STUDIES, get_study
    from flatness.study import load_study

    if name_or_toml in STUDIES:
        return get_study(name_or_toml)
    path = Path(name_or_toml)
    if path.suffix == ".toml" or path.is_file():
        return load_study(path)
    return get_study(name_or_toml)  # raises, naming the built-in studies


def _list_studies() -> int:
    from flatness.studies import STUDIES

    for spec in STUDIES.values():
        print(f"{spec.name}: {spec.title}")
        print(f"  plans: {', '.join(spec.plans)} (default {spec.default_plan})")
        for question in spec.questions:
            print(f"  - {question}")
    return 0


def run_study_command(args: argparse.Namespace) -> int:
    """Run ``flatness study`` (or list the built-in studies with ``--list``).

    Args:
        args: The parsed arguments.

    Returns:
        The exit status: 0 when every case succeeded, 1 otherwise, 130 when interrupted.

    Raises:
        ValueError: Without a study, or without ``--runs``/``--out``.
    """
    from flatness.study import run_study

    if args.list:
        return _list_studies()
    if args.study is None:
        raise ValueError("name a study (NAME_OR_TOML) or give --list")
    if args.runs is None or args.out is None:
        raise ValueError("give --runs DIR and --out DIR (where checkpoints and reports go)")
    set_threads(args)
    spec = resolve_study(args.study)
    key = spec.default_plan if args.plan is None else args.plan
    plan = spec.plan(key)
    command = ["flatness", "study", args.study, *option_words(args, "plan", "runs", "out")]
    print(f"flatness study {spec.name}, plan {key}: {plan.title}", flush=True)
    return run_plan(run_study, plan, args, command)


def run_plan(
    runner: Callable[..., StudyResult],
    plan: StudyPlan,
    args: argparse.Namespace,
    command: list[str],
) -> int:
    """Run a plan with ``runner``, print its cases' reports and failures.

    Args:
        runner: :func:`flatness.study.run_study` or a function with its signature.
        plan: The plan to run.
        args: The parsed arguments (``runs``, ``out``, ``no_progress``).
        command: The command line that runs it again (echoed on an interrupt).

    Returns:
        The exit status: 0 when every case succeeded, 1 otherwise, 130 when interrupted.
    """
    try:
        result = runner(
            plan,
            runs=args.runs,
            out=args.out,
            progress=not args.no_progress,
            echo=lambda line: print(line, flush=True),
            command=shlex.join(command),
        )
    except KeyboardInterrupt:
        print(
            f"\ninterrupted: finished runs and stored scores are kept; `{shlex.join(command)}` "
            "goes on from there",
            file=sys.stderr,
        )
        return 130
    for case in result.cases:
        for failure in case.failures:
            print(f"FAILED  {failure}")
        shown = case.report if case.report.is_file() else "no report (nothing was stored)"
        print(f"{case.name}: {shown}")
    print(f"report: {result.html} ({result.seconds:.0f} s)")
    return 0 if result.ok else 1


COMMAND = Subcommand(
    name="study",
    help="run a built-in study or one declared in TOML: train, score, report",
    description=(
        "Run every case of a study's plan: train its regimes x seeds, score the "
        "checkpoints, write each case's report and an overview. NAME_OR_TOML is a "
        "built-in study (see --list) or a TOML file declaring one (see README). Reruns "
        "reuse checkpoints and stored scores."
    ),
    arguments=_arguments,
    run=run_study_command,
)
"""``flatness study``, as :mod:`flatness.cli.main` adds it to the parser."""
