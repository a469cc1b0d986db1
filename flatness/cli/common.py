"""What the ``flatness`` subcommands share: their shape, run options, settings, echoes.

Each subcommand module declares one :class:`Subcommand` (its name, help texts, arguments
and the function that runs it), which :mod:`flatness.cli.main` adds to the parser.
``--no-progress`` and ``--threads`` (:func:`add_run_options`, :func:`set_threads`) serve
every command that computes; :func:`parse_key_values` reads ``key=value`` settings and
:func:`option_words` rebuilds the flags a user gave, so a command can print how to run
it again.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

Subparsers = Any
"""The object ``ArgumentParser.add_subparsers`` returns."""


@dataclass(frozen=True)
class Subcommand:
    """One ``flatness`` subcommand: its name and texts, its arguments, what runs it.

    Attributes:
        name: The word after ``flatness``.
        help: The line ``flatness --help`` shows for it.
        description: The paragraph ``flatness NAME --help`` shows, or a function that
            writes it when the parser is built (for a text that lists registered names).
        arguments: Declares the subcommand's arguments on its parser.
        run: Runs it on the parsed arguments and returns the exit status; errors in the
            inputs are raised and reported by :func:`flatness.cli.main`.
    """

    name: str
    help: str
    description: str | Callable[[], str]
    arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]

    def add_to(self, subparsers: Subparsers) -> argparse.ArgumentParser:
        """Add this subcommand's parser, whose ``handler`` default is :attr:`run`.

        Args:
            subparsers: The ``flatness`` parser's subcommands.

        Returns:
            The subcommand's parser.
        """
        text = self.description() if callable(self.description) else self.description
        parser: argparse.ArgumentParser = subparsers.add_parser(
            self.name, help=self.help, description=text
        )
        self.arguments(parser)
        parser.set_defaults(handler=self.run)
        return parser


def parse_key_values(items: Sequence[str] | None, *, option: str) -> dict[str, Any]:
    """Parse ``key=value`` arguments; values are read as TOML, else kept as strings.

    Returns:
        Key → value.

    Raises:
        ValueError: For an item without ``=`` or without a key.

    Examples:
        >>> parse_key_values(["width=64", "bn=true", "shape=[1, 8, 8]", "name=f1"], option="--x")
        {'width': 64, 'bn': True, 'shape': [1, 8, 8], 'name': 'f1'}
    """
    out: dict[str, Any] = {}
    for item in items or ():
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"{option} takes key=value pairs, got {item!r}")
        try:
            value: Any = tomllib.loads(f"v = {raw}")["v"]
        except tomllib.TOMLDecodeError:
            value = raw
        out[key.strip()] = value
    return out


def add_run_options(p: argparse.ArgumentParser, progress: str = "no progress bars") -> None:
    """Declare ``--no-progress`` and ``--threads``, shared by the commands that compute.

    Args:
        p: The subcommand's parser.
        progress: The help text of ``--no-progress``.
    """
    p.add_argument("--no-progress", action="store_true", help=progress)
    p.add_argument(
        "--threads",
        type=int,
        help="torch intra-op CPU threads for training and scoring (default: one for small "
        "networks and batches, else torch's default; see flatness.threads)",
    )


def set_threads(args: argparse.Namespace) -> None:
    """Apply ``--threads``: torch's count, fixed for every training and scoring run.

    Args:
        args: The parsed arguments (``threads``: a count, or None for the default rule).
    """
    if args.threads is not None:
        import torch

        from flatness.threads import fix_threads

        fix_threads(args.threads)
        torch.set_num_threads(args.threads)


def option_words(args: argparse.Namespace, *names: str, default: Any = None) -> list[str]:
    """The flags a user gave, as words of a command line (to echo how to run it again).

    Args:
        args: The parsed arguments.
        *names: Attribute names; the flag is ``--`` + the name, ``_`` written ``-``.
        default: A value equal to this is left out (None: the flag was not given).

    Returns:
        ``["--name", "value", ...]`` for each name whose value is not ``default``.

    Examples:
        >>> option_words(argparse.Namespace(runs="r", out=None), "runs", "out")
        ['--runs', 'r']
    """
    words: list[str] = []
    for name in names:
        value = getattr(args, name)
        if value != default:
            words += [f"--{name.replace('_', '-')}", str(value)]
    return words


def echo(line: str) -> None:
    """Print a progress line to standard error at once (the table goes to standard output).

    Args:
        line: The line.
    """
    print(line, file=sys.stderr, flush=True)
