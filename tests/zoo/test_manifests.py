"""The TOML writer, atomic writes and the manifest written next to checkpoints."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from flatness.zoo import Dataset, TrainConfig, train_network
from flatness.zoo.files import atomic_path, dumps_toml

from .conftest import SMALL_MNIST1D, loads_toml, read_toml


def test_toml_round_trip() -> None:
    doc = {
        "title": 'quote " backslash \\ newline \n tab \t del \x7f unicode é ✓ 🙂',
        "model": {
            "factory": "pkg.mod:fn",
            "kwargs": {"name": "f1", "input_shape": [1, 8, 8], "hidden": [], "nested": {}},
            "odd key": 1,
        },
        "numbers": {"tiny": 1e-05, "big": 1e20, "neg": -3, "third": 1 / 3, "flag": False},
        "specials": {"inf": math.inf, "ninf": -math.inf},
        "runs": [{"path": "a/final.pt", "lr": 0.001}, {"path": "b/final.pt", "lr": 0.1}],
    }
    text = dumps_toml(doc, header="a header\nover two lines")
    assert text.startswith("# a header\n# over two lines\n")
    assert loads_toml(text) == doc
    assert math.isnan(loads_toml(dumps_toml({"t": {"x": math.nan}}))["t"]["x"])
    with pytest.raises(TypeError, match="None"):
        dumps_toml({"t": {"x": None}})


def test_atomic_path_keeps_the_old_file_on_error(tmp_path: Path) -> None:
    target = tmp_path / "sub" / "file.txt"
    with atomic_path(target) as tmp:
        tmp.write_text("old")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError
    assert target.read_text() == "old"
    assert [p.name for p in target.parent.iterdir()] == ["file.txt"]


def test_single_run_manifest(tmp_path: Path, small_mnist1d: Dataset) -> None:
    config = TrainConfig(
        network="tiny_mlp",
        dataset="mnist1d",
        dataset_kwargs=SMALL_MNIST1D,
        batch_size=100,
        epochs=1,
        regime="LB",
    )
    result = train_network(config, tmp_path / "run", data=small_mnist1d)
    assert result.manifest == tmp_path / "run" / "manifest.toml"
    manifest = read_toml(result.manifest)
    assert list(manifest) == ["model", "data", "scoring", "measures", "runs"]
    assert manifest["model"] == {
        "factory": "flatness.zoo.networks:build_network",
        "kwargs": {"name": "tiny_mlp", "input_shape": [40], "num_classes": 10},
    }
    assert manifest["data"] == {"name": "mnist1d", "kwargs": SMALL_MNIST1D}
    assert manifest["scoring"] == {"examples": 300, "seed": 0, "device": "cpu", "dtype": "float32"}
    assert manifest["measures"] == {"lambda_max": {"k": 1}}
    assert manifest["runs"] == [
        {"path": "final.pt", "regime": "LB", "batch_size": 100, "lr": 0.001, "seed": 0, "epoch": 1}
    ]
