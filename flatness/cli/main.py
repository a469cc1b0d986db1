"""The ``flatness`` parser and its front door: one subcommand per module, one error rule.

:data:`SUBCOMMANDS` lists each subcommand module's
:class:`~flatness.cli.common.Subcommand`; each sets ``handler`` to the function that
runs it. :func:`main` turns an error in the inputs into one line on
standard error (no traceback) and an exit status.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from flatness.cli import demo, export, report, score, store, study, train
from flatness.cli.common import Subcommand

SUBCOMMANDS: tuple[Subcommand, ...] = (
    train.COMMAND,
    score.COMMAND,
    export.COMMAND,
    store.COMMAND,
    report.COMMAND,
    demo.COMMAND,
    study.COMMAND,
)
"""The subcommands, in the order ``flatness --help`` lists them."""

USER_ERRORS = (ValueError, KeyError, TypeError, ImportError, AttributeError, OSError)
"""Errors in the inputs: reported as one line ``flatness COMMAND: error: ...``, exit 1."""


def build_parser() -> argparse.ArgumentParser:
    """The ``flatness`` argument parser with every registered subcommand.

    Returns:
        The parser.
    """
    parser = argparse.ArgumentParser(
        prog="flatness", description="Sharpness and minima analysis for PyTorch."
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for command in SUBCOMMANDS:
        command.add_to(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``flatness`` command line.

    Args:
        argv: Arguments without the program name (default: ``sys.argv[1:]``).

    Returns:
        The exit status: 0 on success, 1 on an error in the inputs, 2 on a usage error,
        130 when interrupted (Ctrl-C).
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    handler = getattr(args, "handler", None)
    if handler is None:
        parser.print_help(sys.stderr)
        return 2
    try:
        return int(handler(args))
    except KeyboardInterrupt:
        print(
            f"flatness {args.command}: interrupted; everything that finished is saved, "
            "and running the same command again resumes",
            file=sys.stderr,
        )
        return 130
    except USER_ERRORS as exc:
        message = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        print(f"flatness {args.command}: error: {message}", file=sys.stderr)
        return 1
