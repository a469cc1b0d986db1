"""`flatness train` end to end through `flatness.cli.main`."""

from __future__ import annotations

import runpy
import sys
from pathlib import Path

import pytest
import torch

from flatness.cli import main, parse_key_values

from .conftest import read_toml
from .test_sweep import SWEEP

SMALL = ["--dataset", "mnist1d", "--data-kw", "n_train=300", "n_test=100", "seed=0"]


def test_train_single_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    argv = ["train", "--network", "tiny_mlp", "--net-kw", "width=16", *SMALL]
    argv += ["--batch-size", "10%", "--epochs", "2", "--lr", "0.01", "--regime", "LB"]
    argv += ["--target-accuracy", "0.99", "--checkpoint-every", "1", "--out", str(out)]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "epoch    2" in printed and "target NOT reached" in printed
    assert f"wrote {out / 'final.pt'}" in printed and f"wrote {out / 'manifest.toml'}" in printed
    meta = torch.load(out / "final.pt", weights_only=True)["meta"]
    assert (meta["batch_size"], meta["regime"], meta["lr"]) == (30, "LB", 0.01)
    assert meta["model"]["kwargs"]["width"] == 16
    assert (out / "epoch0001.pt").is_file()
    assert read_toml(out / "manifest.toml")["runs"][0]["path"] == "final.pt"


def test_train_sweep(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    sweep = tmp_path / "sweep.toml"
    sweep.write_text(SWEEP.replace("seeds = [0, 1]", "seeds = [0]"))
    out = tmp_path / "elsewhere"
    assert main(["train", "--sweep", str(sweep), "--out", str(out), "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert printed.count("trained ") == 2 and f"wrote {out / 'manifest.toml'}" in printed
    assert main(["train", "--sweep", str(sweep), "--out", str(out), "--no-progress"]) == 0
    assert capsys.readouterr().out.count("skipped ") == 2


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["train", "--sweep", "s.toml", "--lr", "0.1"], "drop --lr"),
        (["train", "--network", "tiny_mlp"], "give --out"),
        (["train", "--network", "resnet", *SMALL, "--out", "{tmp}"], "unknown network 'resnet'"),
        (["train", "--net-kw", "oops", "--out", "{tmp}"], "key=value"),
    ],
)
def test_train_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    assert main(argv) == 1
    assert message in capsys.readouterr().err


def test_no_subcommand_prints_help(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    assert "train" in capsys.readouterr().err


def test_parse_key_values() -> None:
    assert parse_key_values(["a=1.5", "b=x y", "c=[1, 2]"], option="--kw") == {
        "a": 1.5,
        "b": "x y",
        "c": [1, 2],
    }


def test_python_dash_m(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(sys, "argv", ["flatness", "train", "--help"])
    with pytest.raises(SystemExit) as info:
        runpy.run_module("flatness", run_name="__main__")
    assert info.value.code == 0 and "--sweep" in capsys.readouterr().out
