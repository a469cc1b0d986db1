"""Sweeps: one command trains regimes x seeds, skips finished runs, writes one manifest."""

from __future__ import annotations

from pathlib import Path

import pytest

from flatness.zoo import Dataset, load_sweep, parse_sweep, sweep_from_batch_sizes, train_sweep
from flatness.zoo import sweep as sweep_module

from .conftest import read_toml

SWEEP = """
[sweep]
seeds = [0, 1]
out = "runs"

[network]
name = "tiny_mlp"
kwargs = { width = 8 }

[data]
name = "mnist1d"
kwargs = { n_train = 300, n_test = 100, seed = 0 }

[train]
lr = 0.01
epochs = 2
target_accuracy = 0.99

[regimes]
SB = { batch_size = 15 }
LB = { batch_size = "20%" }

[measures]
lambda_max = { k = 2 }
trace = { method = "hutchpp", budget = 20 }
"""


def test_sweep_trains_skips_and_writes_one_manifest(
    tmp_path: Path, small_mnist1d: Dataset, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "sweep.toml"
    path.write_text(SWEEP)
    result = train_sweep(path, progress=False)
    assert [r.status for r in result.runs] == ["trained"] * 4
    assert result.manifest == tmp_path / "runs" / "manifest.toml"
    manifest = read_toml(result.manifest)
    assert [(r["path"], r["regime"], r["batch_size"], r["seed"]) for r in manifest["runs"]] == [
        ("sb/seed0/final.pt", "SB", 15, 0),
        ("sb/seed1/final.pt", "SB", 15, 1),
        ("lb/seed0/final.pt", "LB", 60, 0),
        ("lb/seed1/final.pt", "LB", 60, 1),
    ]
    assert manifest["model"]["kwargs"]["width"] == 8
    assert manifest["measures"]["trace"] == {"method": "hutchpp", "budget": 20}
    assert all((result.manifest.parent / r["path"]).is_file() for r in manifest["runs"])

    def no_training(*args: object, **kwargs: object) -> None:
        raise AssertionError("a finished run was trained again")

    monkeypatch.setattr(sweep_module, "train_network", no_training)
    again = train_sweep(path, progress=False)
    assert [r.status for r in again.runs] == ["skipped"] * 4
    assert [r.meta["updates"] for r in again.runs] == [r.meta["updates"] for r in result.runs]

    path.write_text(SWEEP.replace("lr = 0.01", "lr = 0.02"))
    with pytest.raises(ValueError, match="different settings \\(lr\\)"):
        train_sweep(path, progress=False)
    monkeypatch.undo()
    retrained = train_sweep(load_sweep(path), tmp_path / "runs", overwrite=True, progress=False)
    assert [r.status for r in retrained.runs] == ["trained"] * 4
    assert retrained.runs[0].meta["lr"] == 0.02


def test_defaults_are_keskars_protocol() -> None:
    spec = parse_sweep({})
    assert spec.regimes == {"SB": {"batch_size": "0.5%"}, "LB": {"batch_size": "10%"}}
    assert spec.train["optimizer"] == "adam" and spec.train["target_accuracy"] == 0.98
    assert spec.seeds == (0, 1, 2, 3, 4)
    configs = spec.configs()
    assert [(c.regime, c.seed) for c in configs[:2]] == [("SB", 0), ("SB", 1)]
    assert configs[0].network == "f1" and configs[0].dataset == "mnist1d"


def test_batch_size_sweeps_and_errors() -> None:
    spec = parse_sweep({"sweep": {"batch_sizes": [16, "10%"], "seeds": [3]}})
    assert [(c.regime, c.batch_size, c.seed) for c in spec.configs()] == [
        ("B16", 16, 3),
        ("B10pct", "10%", 3),
    ]
    assert list(sweep_from_batch_sizes([8, 64]).regimes) == ["B8", "B64"]
    with pytest.raises(ValueError, match="unknown tables"):
        parse_sweep({"model": {}})
    with pytest.raises(ValueError, match="not both"):
        parse_sweep({"sweep": {"batch_sizes": [1]}, "regimes": {"SB": {}}})
    with pytest.raises(ValueError, match="either name or factory"):
        parse_sweep({"network": {"name": "f1", "factory": "a:b"}})
    with pytest.raises(ValueError, match="cannot set 'seed'"):
        parse_sweep({"train": {"seed": 1}})
    with pytest.raises(ValueError, match="no output directory"):
        train_sweep(parse_sweep({}), progress=False)
