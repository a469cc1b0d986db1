"""``flatness report``: an HTML + Markdown report from a results store.

Runs :func:`flatness.report.build_from_store`; the report records the command that
rebuilds it.
"""

from __future__ import annotations

import argparse
import shlex
from pathlib import Path

from flatness.cli.common import Subcommand, option_words

_DEFAULTS = {"bootstrap": 2000, "confidence": 0.95, "seed": 0}
"""The defaults of the options that have one (the echoed command leaves them out)."""


def _arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("store", type=Path, help="the results store (SQLite) that `score` wrote")
    p.add_argument(
        "--out",
        type=Path,
        help="report folder (default: reports/<name of the store's folder>)",
    )
    p.add_argument("--title", help="the report's title")
    p.add_argument(
        "--reference",
        metavar="NETWORK",
        help="show Keskar et al.'s published values of this network (F1, F2, C1-C4)",
    )
    p.add_argument("--sb", help="the small-batch regime (default: SB, else the smallest batch)")
    p.add_argument("--lb", help="the large-batch regime (default: LB, else the largest batch)")
    p.add_argument(
        "--bootstrap", type=int, default=_DEFAULTS["bootstrap"], help="bootstrap resamples (2000)"
    )
    p.add_argument(
        "--confidence", type=float, default=_DEFAULTS["confidence"], help="interval level (0.95)"
    )
    p.add_argument("--seed", type=int, default=_DEFAULTS["seed"], help="the bootstrap's seed (0)")


def run_report(args: argparse.Namespace) -> int:
    """Run ``flatness report``: write it and name the files and what was left out.

    Args:
        args: The parsed arguments.

    Returns:
        The exit status (0).
    """
    from flatness.report.from_store import build_from_store, default_out

    out = args.out if args.out is not None else default_out(args.store)
    command = ["flatness", "report", str(args.store), "--out", str(out)]
    command += option_words(args, "title", "reference", "sb", "lb")
    for name, default in _DEFAULTS.items():
        command += option_words(args, name, default=default)
    report = build_from_store(
        args.store,
        out,
        title=args.title,
        reference=args.reference,
        sb=args.sb,
        lb=args.lb,
        n_boot=args.bootstrap,
        confidence=args.confidence,
        seed=args.seed,
        command=shlex.join(command),
    )
    for note in report.notes:
        print(f"left out  {note}")
    print(f"wrote {report.html}")
    print(f"wrote {report.markdown} ({len(report.figures)} figures, {len(report.data)} CSV files)")
    return 0


COMMAND = Subcommand(
    name="report",
    help="write an HTML + Markdown report relating sharpness to test accuracy",
    description=(
        "Keskar et al.'s tables (accuracy, epsilon-sharpness per regime), SB vs LB tests, "
        "sharpness vs batch size and vs test accuracy with rank correlations, parametric "
        "plots and spectral densities, from a results store. Writes report.html (self-"
        "contained), report.md with figures/*.png, and data/*.csv."
    ),
    arguments=_arguments,
    run=run_report,
)
"""``flatness report``, as :mod:`flatness.cli.main` adds it to the parser."""
