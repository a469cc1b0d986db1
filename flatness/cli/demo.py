"""``flatness demo``: two questions about batch size, answered on built-in data.

Runs :func:`flatness.demo.run_study` on the demo plan (:mod:`flatness.studies.demo`:
Keskar et al. with the equal-updates control, and Smith et al.'s η decay vs batch
increase), ``--plan ci`` on its miniature, or with ``--full`` every built-in study's full
plan in turn (:func:`flatness.demo.full_plans`).

The demo's networks are small: on a busy machine a second thread per kernel waits for
a core more than it helps (:mod:`flatness.threads`). Unless ``--threads`` or one of
:data:`THREAD_VARIABLES` says otherwise, the command runs torch, OpenMP and the BLAS
(numpy's and scipy's) on one thread each (:func:`one_thread_unless_told`).
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from flatness.cli.common import Subcommand, add_run_options, option_words, set_threads
from flatness.cli.study import run_plan

__all__ = ["COMMAND", "THREAD_VARIABLES", "one_thread_unless_told", "run_demo"]

THREAD_VARIABLES = (
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "BLIS_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
    "NUMEXPR_NUM_THREADS",
)
"""Environment variables by which a user sets thread counts; any of them set, the demo
leaves the thread pools as they are."""

_LIMITS: list[Any] = []
"""The thread-pool limits in force (kept so they stay in force)."""


def _arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--full",
        action="store_true",
        help="every built-in study's full plan in turn (keskar2017, smith2018, ...; each "
        "up to 30 minutes on 2 CPU cores)",
    )
    p.add_argument(
        "--plan",
        choices=("demo", "ci"),
        default="demo",
        help="the demo (default) or its miniature (runs/demo-ci, reports/demo-ci)",
    )
    p.add_argument("--runs", type=Path, help="checkpoints and stores (default runs/demo)")
    p.add_argument("--out", type=Path, help="reports (default reports/demo)")
    add_run_options(p)


def one_thread_unless_told(args: argparse.Namespace) -> bool:
    """One thread for torch, OpenMP and the BLAS, unless the user chose thread counts.

    Args:
        args: The parsed arguments; ``--threads`` given, this does nothing.

    Returns:
        True when the limits were applied, False when ``--threads`` or one of
        :data:`THREAD_VARIABLES` is set.
    """
    if args.threads is not None or any(os.environ.get(v) for v in THREAD_VARIABLES):
        return False
    from threadpoolctl import threadpool_limits

    set_threads(argparse.Namespace(threads=1))
    _LIMITS.append(threadpool_limits(limits=1))
    return True


def _run_full(args: argparse.Namespace) -> int:
    from flatness import demo

    status = 0
    for name, plan in demo.full_plans():
        runs, out = demo.full_folders(name, args.runs, args.out)
        print(f"flatness demo --full: {name}, {plan.title}", flush=True)
        command = ["flatness", "demo", "--full", *option_words(args, "runs", "out")]
        one = argparse.Namespace(**{**vars(args), "runs": runs, "out": out})
        code = run_plan(demo.run_study, plan, one, command)
        if code == 130:
            return code
        status = max(status, code)
    return status


def run_demo(args: argparse.Namespace) -> int:
    """Run ``flatness demo``: train, score and report the demo (or every full plan).

    Args:
        args: The parsed arguments.

    Returns:
        The exit status: 0 when every case succeeded, 1 otherwise, 130 when interrupted.
    """
    from flatness import demo

    if not one_thread_unless_told(args):
        set_threads(args)
    if args.full:
        return _run_full(args)
    plan = demo.DEMO if args.plan == "demo" else demo.CI
    command = ["flatness", "demo", *option_words(args, "runs", "out")]
    if args.plan != "demo":
        command[2:2] = ["--plan", args.plan]
    print(f"flatness demo: {plan.title}", flush=True)
    return run_plan(demo.run_study, plan, args, command)


COMMAND = Subcommand(
    name="demo",
    help="is increasing B the same as decaying η, and do large batches generalize "
    "worse once updates are equal? Train, score, report",
    description=(
        "Train compact versions of two studies on MNIST-1D (generated offline): Keskar "
        "et al.'s small vs large batches with LB also given as many updates as SB, and "
        "Smith et al.'s step decay of the learning rate vs increasing the batch size; "
        "score the minima and write an overview answering both questions in sentences "
        "written from the numbers, with each case's report. --full runs every built-in "
        "study's full plan. Reruns reuse checkpoints and stored scores. Unless "
        "--threads or OMP_NUM_THREADS/MKL_NUM_THREADS/OPENBLAS_NUM_THREADS is set, "
        "everything runs on one thread (the networks are small; see flatness.threads)."
    ),
    arguments=_arguments,
    run=run_demo,
)
"""``flatness demo``, as :mod:`flatness.cli.main` adds it to the parser."""
