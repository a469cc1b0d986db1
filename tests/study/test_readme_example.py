"""The study file README.md shows is a valid study."""

from __future__ import annotations

import re
from pathlib import Path

from flatness.study import load_study

README = Path(__file__).resolve().parents[2] / "README.md"


def test_the_readme_study_file_declares_a_valid_study(tmp_path: Path) -> None:
    blocks = re.findall(r"```toml\n(# my-study\.toml.*?)```", README.read_text("utf-8"), re.S)
    assert len(blocks) == 1
    path = tmp_path / "my-study.toml"
    path.write_text(blocks[0], encoding="utf-8")
    study = load_study(path)
    case = study.plan().cases[0]
    assert study.name == "sgd-digits" and case.runs_count == 7
    assert case.train["optimizer"] == "sgd" and case.train["network"] == "f1"
