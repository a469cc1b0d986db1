"""``flatness score``: score a manifest's checkpoints into a results store.

Runs :func:`flatness.score`, then prints the store's summary table and the counts.
Under ``torchrun`` every rank runs it; rank 0 prints the job's table, the others a
line of their own part, and a lost rank is one error line naming it.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from flatness.cli.common import Subcommand, add_run_options, echo, set_threads
from flatness.distributed.group import RankError
from flatness.pipeline.scoring_settings import DTYPES

if TYPE_CHECKING:
    from flatness.pipeline.scoring import ScoreSummary


def _description() -> str:
    """The help paragraph, listing the measures registered when the parser is built."""
    from flatness.pipeline.measures import MEASURES

    return (
        "Score every checkpoint named by MANIFEST (TOML) with its measures into an "
        "SQLite results store. Reruns skip what is stored; a checkpoint that cannot be "
        "scored is reported and recorded, and the others are scored. Exit status 0 only "
        "when everything was scored. A manifest is code, like a Python script: the "
        "factories and plugins it names are imported and run (factories from the Python "
        "standard library are refused), so score only manifests you trust; the code "
        "it runs is shown before the sweep starts. Measures: "
        + "; ".join(f"{n}: {m.summary}" for n, m in MEASURES.items())
    )


def _arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("manifest", type=Path, help="the manifest (TOML)")
    p.add_argument("--store", type=Path, help="results store (default: results.sqlite beside it)")
    p.add_argument("--measures", nargs="+", metavar="NAME", help="score only these measures")
    p.add_argument("--device", help="override [scoring] device (cpu, cuda, cuda:1, ...)")
    p.add_argument(
        "--dtype",
        choices=DTYPES,
        help="override [scoring] dtype (default float32, also for bfloat16/float16 "
        "checkpoints; a lower precision is measured against float32 and warned about)",
    )
    p.add_argument("--examples", type=int, help="override [scoring] examples")
    p.add_argument(
        "--groups",
        nargs="+",
        metavar="GROUP",
        help="override [scoring] groups: also score each parameter group's Hessian block "
        "(names or module prefixes such as features.0 classifier, or 'blocks' for each "
        "top-level child module)",
    )
    p.add_argument(
        "--recompute-batchnorm",
        action="store_true",
        default=None,
        help="recompute BatchNorm running statistics on the scoring data before measuring "
        "([scoring] recompute_batchnorm = true)",
    )
    p.add_argument(
        "--trust-pickle",
        action="store_true",
        help="allow checkpoints that need full unpickling (can run code: trusted files only)",
    )
    p.add_argument(
        "--stale-after",
        type=float,
        default=600.0,
        metavar="SECONDS",
        help="take over another process's task after this long without its heartbeat (600)",
    )
    p.add_argument(
        "--group-size",
        type=int,
        default=1,
        metavar="G",
        help="under torchrun: ranks per group; a group scores one checkpoint at a time, "
        "data-parallel, and groups take different checkpoints (1: each rank scores "
        "whole checkpoints; G must divide the number of ranks)",
    )
    p.add_argument(
        "--timeout",
        type=float,
        metavar="SECONDS",
        help="under torchrun: fail the job, naming the rank, when a rank dies or sends "
        "nothing for this long (default $FLATNESS_DIST_TIMEOUT, else 300)",
    )
    add_run_options(p)


def run_score(args: argparse.Namespace) -> int:
    """Run ``flatness score``: progress on standard error, the table on standard output.

    Args:
        args: The parsed arguments.

    Returns:
        The exit status: 0 when every task was scored, else 1.
    """
    import pandas as pd

    from flatness.pipeline.scoring import summary_table

    set_threads(args)
    measures = [m for item in args.measures or () for m in item.split(",") if m]
    groups = [g for item in args.groups or () for g in item.split(",") if g]
    try:
        summary = _score(args, measures, groups)
    except RankError as exc:  # under torchrun: a rank was lost (named in the message)
        print(f"flatness score: error: {exc}", file=sys.stderr)
        return 1
    if os.environ.get("RANK", "0") != "0":  # under torchrun: rank 0 prints the job's table
        print(
            f"rank {os.environ['RANK']}: {summary.computed} tasks computed, "
            f"{summary.failed} failed ({summary.seconds:.1f} s)"
        )
        return 0 if summary.ok else 1
    with pd.option_context("display.width", 160, "display.max_columns", 30):
        table = summary_table(summary.store, root=args.manifest.parent)
        print(table.to_string(index=False, float_format="{:.4g}".format))
    print(
        f"{summary.checkpoints} checkpoints: {summary.computed} tasks computed, "
        f"{summary.reused} already stored, {summary.by_others} by another process, "
        f"{summary.failed} failed, {summary.pending} pending ({summary.seconds:.1f} s); "
        f"store {summary.store}"
    )
    return 0 if summary.ok else 1


def _score(args: argparse.Namespace, measures: list[str], groups: list[str]) -> ScoreSummary:
    """Run :func:`flatness.score` with the command line's settings.

    Returns:
        Its summary.
    """
    from flatness.pipeline.scoring import score

    return score(
        args.manifest,
        store=args.store,
        measures=measures or None,
        device=args.device,
        dtype=args.dtype,
        examples=args.examples,
        groups=(groups[0] if groups == ["blocks"] else groups) or None,
        recompute_batchnorm=args.recompute_batchnorm,
        trust_pickle=args.trust_pickle,
        progress=not args.no_progress,
        log=echo,
        echo=echo,
        stale_after=args.stale_after,
        group_size=args.group_size,
        timeout=args.timeout,
    )


COMMAND = Subcommand(
    name="score",
    help="score the checkpoints a manifest names into a results store",
    description=_description,
    arguments=_arguments,
    run=run_score,
)
"""``flatness score``, as :mod:`flatness.cli.main` adds it to the parser."""
