"""The ``flatness`` command line: a thin layer over the Python API, a module per subcommand.

``flatness train`` (:mod:`flatness.cli.train`) trains one network or a sweep;
``flatness score`` (:mod:`flatness.cli.score`) scores a manifest's checkpoints into a
results store; ``flatness export`` (:mod:`flatness.cli.export`) writes the store as CSV or
Parquet; ``flatness store check`` (:mod:`flatness.cli.store`) runs SQLite's integrity
check; ``flatness report`` (:mod:`flatness.cli.report`) writes a comparison report;
``flatness study`` (:mod:`flatness.cli.study`) runs a built-in or TOML-declared study;
``flatness demo`` (:mod:`flatness.cli.demo`) runs the demo plan of Keskar et al.'s study.
Each module declares one :class:`~flatness.cli.common.Subcommand` (``COMMAND``: its
texts, its arguments and the function that runs it); the parser's assembly and the
error rule live in :mod:`flatness.cli.main`, the shared options in
:mod:`flatness.cli.common`. Everything a subcommand does is reachable from
``import flatness``.
"""

from flatness.cli.common import Subcommand, parse_key_values
from flatness.cli.main import SUBCOMMANDS, build_parser, main

__all__ = ["SUBCOMMANDS", "Subcommand", "build_parser", "main", "parse_key_values"]
