"""``flatness export``: a results store as a tidy CSV or Parquet table.

Runs :func:`flatness.export_results`.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from flatness.cli.common import Subcommand


def _arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("store", type=Path, help="the results store (SQLite)")
    p.add_argument("out", type=Path, help="output file: .csv or .parquet")


def run_export(args: argparse.Namespace) -> int:
    """Run ``flatness export``: write the table and say how many rows it has.

    Args:
        args: The parsed arguments.

    Returns:
        The exit status (0).
    """
    from flatness.pipeline.store import export_results, load_results

    path = export_results(args.store, args.out)
    print(f"wrote {path} ({len(load_results(args.store))} rows)")
    return 0


COMMAND = Subcommand(
    name="export",
    help="write a results store as a tidy CSV or Parquet table",
    description="One row per checkpoint x measure component, with the run metadata.",
    arguments=_arguments,
    run=run_export,
)
"""``flatness export``, as :mod:`flatness.cli.main` adds it to the parser."""
