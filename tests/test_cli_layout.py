"""The command line is a package with one module per subcommand (issue 13's house)."""

from __future__ import annotations

import argparse
import importlib
from pathlib import Path

import pytest

import flatness
from flatness.cli import build_parser, main

SUBCOMMANDS = ("train", "score", "export", "store", "report", "demo", "study")


def test_every_subcommand_has_its_module() -> None:
    parser = build_parser()
    (action,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    assert tuple(action.choices) == SUBCOMMANDS
    for name in SUBCOMMANDS:
        module = importlib.import_module(f"flatness.cli.{name}")
        assert module.COMMAND.name == name
        handler = action.choices[name].get_default("handler")
        assert handler is module.COMMAND.run and handler.__module__ == module.__name__


def test_no_module_of_the_cli_is_large_and_cli_py_is_gone() -> None:
    package = Path(flatness.__file__).parent
    assert not (package / "cli.py").exists()
    sizes = {p.name: len(p.read_text().splitlines()) for p in (package / "cli").glob("*.py")}
    assert sizes and max(sizes.values()) <= 450, sizes


def test_main_keeps_the_error_rule(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["study"]) == 1
    err = capsys.readouterr().err
    assert err == "flatness study: error: name a study (NAME_OR_TOML) or give --list\n"
    assert main([]) == 2
