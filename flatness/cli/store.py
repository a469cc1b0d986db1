"""``flatness store check``: SQLite's integrity check on a results store.

Runs :func:`flatness.pipeline.database.check_store` (read-only).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from flatness.cli.common import Subcommand


def _arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("action", choices=("check",), help="what to do")
    p.add_argument("store", type=Path, help="the results store (SQLite)")


def run_store(args: argparse.Namespace) -> int:
    """Run ``flatness store check``: list what is damaged, and the remedy.

    Args:
        args: The parsed arguments.

    Returns:
        The exit status: 0 when the store is sound, else 1.
    """
    from flatness.pipeline.database import check_store

    problems = check_store(args.store)
    for line in problems:
        print(f"{args.store}: {line}")
    if problems:
        print(
            f"{args.store} is damaged: restore it from a backup, or score into a new store "
            "(flatness score MANIFEST --store NEW.sqlite); reruns recompute what is lost",
            file=sys.stderr,
        )
        return 1
    print(f"{args.store}: ok (PRAGMA integrity_check)")
    return 0


COMMAND = Subcommand(
    name="store",
    help="look after a results store (check: SQLite's integrity check)",
    description=(
        "flatness store check STORE runs PRAGMA integrity_check on a results store "
        "(read-only; also where the store's folder cannot be written) and lists what "
        "is damaged. Exit status 0 when the store is sound."
    ),
    arguments=_arguments,
    run=run_store,
)
"""``flatness store``, as :mod:`flatness.cli.main` adds it to the parser."""
