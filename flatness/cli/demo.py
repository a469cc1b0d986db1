"""``flatness demo``: Keskar et al.'s SB-vs-LB study on built-in data, with default folders.

Runs :func:`flatness.demo.run_study` on the demo plan (or the full one with ``--full``).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from flatness.cli.common import Subcommand, add_run_options, option_words, set_threads
from flatness.cli.study import run_plan


def _arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--full", action="store_true", help="the whole study (about 25 minutes on 2 CPU cores)"
    )
    p.add_argument("--runs", type=Path, help="checkpoints and stores (runs/demo or runs/keskar)")
    p.add_argument("--out", type=Path, help="reports (reports/demo or reports/keskar-mnist1d)")
    add_run_options(p)


def run_demo(args: argparse.Namespace) -> int:
    """Run ``flatness demo``: train, score and report the demo (or full) plan.

    Args:
        args: The parsed arguments.

    Returns:
        The exit status: 0 when every case succeeded, 1 otherwise, 130 when interrupted.
    """
    from flatness import demo

    set_threads(args)
    plan = demo.FULL if args.full else demo.DEMO
    command = ["flatness", "demo"] + (["--full"] if args.full else [])
    command += option_words(args, "runs", "out")
    print(f"flatness demo: {plan.title}", flush=True)
    return run_plan(demo.run_study, plan, args, command)


COMMAND = Subcommand(
    name="demo",
    help="Keskar et al.'s SB-vs-LB study on built-in data: train, score, report",
    description=(
        "Train small- and large-batch networks on MNIST-1D (generated offline), score "
        "their minima and write a report relating sharpness to test accuracy, with "
        "Keskar et al.'s published values beside ours. The default is a reduced study "
        "(one network, 3 seeds, 4 measures); --full runs the whole study of "
        "analyses/keskar/. Reruns reuse checkpoints and stored scores."
    ),
    arguments=_arguments,
    run=run_demo,
)
"""``flatness demo``, as :mod:`flatness.cli.main` adds it to the parser."""
