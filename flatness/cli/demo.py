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
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from flatness.cli.common import Subcommand, add_run_options, option_words, set_threads
from flatness.cli.study import run_plan

__all__ = [
    "COMMAND",
    "ONE_THREAD_VARIABLES",
    "THREAD_VARIABLES",
    "one_thread_unless_told",
    "run_demo",
]

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

ONE_THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
"""What :func:`one_thread_unless_told` sets to 1, for the libraries loaded after it."""


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


@contextmanager
def one_thread_unless_told(args: argparse.Namespace) -> Iterator[bool]:
    """One thread for torch, OpenMP and the BLAS while the demo runs, unless the user
    chose thread counts; everything is restored afterwards.

    Sets :data:`ONE_THREAD_VARIABLES` to 1 (read by a library when it loads, e.g.
    scipy's OpenBLAS on the first eigensolver call, and by child processes), fixes
    torch's intra-op count (:func:`flatness.threads.fix_threads`) and limits the
    thread pools already loaded (threadpoolctl).

    Args:
        args: The parsed arguments; with ``--threads`` given, its count applies
            (:func:`flatness.cli.common.set_threads`) and nothing else changes.

    Yields:
        True when the limits apply, False when ``--threads`` or one of
        :data:`THREAD_VARIABLES` is set.
    """
    if args.threads is not None or any(os.environ.get(v) for v in THREAD_VARIABLES):
        set_threads(args)
        yield False
        return
    import torch
    from threadpoolctl import threadpool_limits

    from flatness.threads import fix_threads, fixed_threads

    saved = {v: os.environ.get(v) for v in ONE_THREAD_VARIABLES}
    before = (torch.get_num_threads(), fixed_threads())
    os.environ.update(dict.fromkeys(ONE_THREAD_VARIABLES, "1"))
    try:
        with threadpool_limits(limits=1):  # the pools loaded already (numpy, torch)
            set_threads(argparse.Namespace(threads=1))
            yield True
    finally:
        for variable, value in saved.items():
            if value is None:
                os.environ.pop(variable, None)
            else:
                os.environ[variable] = value
        torch.set_num_threads(before[0])
        fix_threads(before[1])


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
    with one_thread_unless_told(args):
        if args.full:
            return _run_full(args)
        return _run_plan(args)


def _run_plan(args: argparse.Namespace) -> int:
    from flatness import demo

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
