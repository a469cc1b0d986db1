"""Manifest reading: defaults, globs, relative paths, and errors that name the line."""

from __future__ import annotations

from pathlib import Path

import pytest

from flatness.pipeline.manifest import Manifest, ManifestError, read_manifest
from flatness.zoo.files import dumps_toml
from tests.pipeline.conftest import manifest_text, save_run


def test_reads_runs_measures_and_scoring(sweep: Path) -> None:
    man = read_manifest(sweep)
    assert [r.path for r in man.runs] == [
        sweep.parent.resolve() / p for p in ("sb/seed0.pt", "lb/seed1.pt", "sb/seed2.pt")
    ]
    assert man.runs[1].meta == {"regime": "LB", "batch_size": 32, "seed": 1}
    assert man.measures == {"lambda_max": {"k": 2}, "trace": {"method": "exact"}}
    assert man.scoring["examples"] == 30 and man.scoring["device"] == "cpu"
    assert man.model_factory == "tests.pipeline.factories:tiny_net"


def test_glob_expands_sorted(tmp_path: Path) -> None:
    for seed in (2, 0, 1):
        save_run(tmp_path / "runs" / f"s{seed}" / "final.pt", seed)
    (tmp_path / "m.toml").write_text(manifest_text(["runs/*/final.pt"]))
    man = read_manifest(tmp_path / "m.toml")
    assert [r.path.parent.name for r in man.runs] == ["s0", "s1", "s2"]
    assert all(r.meta["regime"] == "SB" for r in man.runs)


def test_the_zoo_writes_what_the_pipeline_reads(tmp_path: Path) -> None:
    doc = {
        "model": {"factory": "flatness.zoo.networks:build_network", "kwargs": {"name": "tiny_mlp"}},
        "data": {"name": "digits_flat", "kwargs": {"seed": 0}},
        "scoring": {"examples": 100, "seed": 0, "device": "cpu", "dtype": "float32"},
        "measures": {"lambda_max": {"k": 1}},
        "runs": [
            {"path": "a.pt", "regime": "SB", "batch_size": 64, "lr": 0.001, "seed": 0, "epoch": 3}
        ],
    }
    (tmp_path / "m.toml").write_text(dumps_toml(doc))
    man = read_manifest(tmp_path / "m.toml")
    assert man.data == "digits_flat" and man.runs[0].meta["epoch"] == 3


def test_with_measures_keeps_manifest_settings(sweep: Path) -> None:
    man = read_manifest(sweep).with_measures(["trace", "density"])
    assert man.measures == {"trace": {"method": "exact"}, "density": {}}
    with pytest.raises(KeyError, match="unknown measure 'nope'"):
        read_manifest(sweep).with_measures(["nope"])


BAD = [
    (
        "[measures]\nlambda_max = { k = 2 }",
        "[measures]\nlambda_mux = { k = 2 }",
        r":\d+: \[measures\] lambda_mux: unknown measure",
    ),
    (
        "lambda_max = { k = 2 }",
        "lambda_max = { kk = 2 }",
        r":\d+: \[measures\] lambda_max: .*no setting 'kk'",
    ),
    (
        "lambda_max = { k = 2 }",
        "lambda_max = { k = [1, 2] }",
        r"\[measures\] lambda_max: .*k = \[1, 2\] is a list",
    ),
    ('dtype = "float64"', 'dtype = "int8"', r"\[scoring\] dtype: must be one of"),
    ("examples = 30", "examples = -3", r"\[scoring\] examples: must be a positive integer"),
    ("examples = 30", "exemples = 30", r"\[scoring\] exemples: unknown key"),
    (
        'factory = "tests.pipeline.factories:tiny_net"',
        'factory = "tiny_net"',
        r"\[model\] factory: must name",
    ),
    (
        'path = "lb/seed1.pt"',
        'path = "lb/*.nothing"',
        r"\[\[runs\]\] #2 path: the glob 'lb/\*\.nothing' matches no file",
    ),
    ("batch_size = 32", 'batch_size = "big"', r"\[\[runs\]\] #2 batch_size: must be a number"),
    ("[scoring]", "[scorin]", r"\[scorin\]: unknown table"),
]


@pytest.mark.parametrize(("old", "new", "pattern"), BAD)
def test_errors_name_file_line_and_key(sweep: Path, old: str, new: str, pattern: str) -> None:
    text = sweep.read_text()
    assert old in text
    sweep.write_text(text.replace(old, new, 1))
    with pytest.raises(ManifestError, match=pattern) as info:
        read_manifest(sweep)
    message = str(info.value)
    assert message.startswith(str(sweep))
    if ":" in pattern[:4]:
        line_no = int(message[len(str(sweep)) + 1 :].split(":", 1)[0])
        assert (
            new.splitlines()[-1].split("=")[0].strip()
            in sweep.read_text().splitlines()[line_no - 1]
        )


def test_structural_errors(tmp_path: Path) -> None:
    path = tmp_path / "m.toml"
    path.write_text("[model\nfactory = 1")
    with pytest.raises(ManifestError, match=r"m\.toml: not valid TOML"):
        read_manifest(path)
    path.write_text('[model]\nfactory = "a.b:c"\n[data]\nname = "digits"\n')
    with pytest.raises(ManifestError, match=r"no \[\[runs\]\]"):
        read_manifest(path)
    path.write_text(
        '[model]\nfactory = "a.b:c"\n[data]\nname = "digits"\nfactory = "x:y"\n'
        '[[runs]]\npath = "a.pt"\n'
    )
    with pytest.raises(ManifestError, match=r"\[data\]: give exactly one of name"):
        read_manifest(path)
    with pytest.raises(ManifestError, match=r"cannot read the manifest"):
        read_manifest(tmp_path / "missing.toml")


def test_manifest_in_code() -> None:
    man = Manifest(model_factory=lambda: None, data=None, runs=("a.pt",))
    assert man.runs[0].path == Path("a.pt") and man.scoring["dtype"] == "float32"
    assert man.with_scoring(device="cuda", dtype=None).scoring["device"] == "cuda"


def test_pairs_are_validated(sweep: Path) -> None:
    base = sweep.read_text()
    sweep.write_text(
        base + '\n[[pairs]]\nsb = "sb/seed0.pt"\nlb = "lb/seed1.pt"\nbn = "recompute"\n'
    )
    pair = read_manifest(sweep).pairs[0]
    assert pair.sb == sweep.parent.resolve() / "sb/seed0.pt" and pair.settings["bn"] == "recompute"
    assert pair.settings["points"] == 25 and pair.label == "sb/seed0.pt -> lb/seed1.pt"
    sweep.write_text(base + '\n[[pairs]]\nsb = "sb/seed0.pt"\nlb = "lb/seed1.pt"\nbn = "train"\n')
    with pytest.raises(ManifestError, match=r":\d+: \[\[pairs\]\] #1 bn: must be one of"):
        read_manifest(sweep)
    sweep.write_text(base + '\n[[pairs]]\nsb = "sb/seed0.pt"\n')
    with pytest.raises(ManifestError, match=r"\[\[pairs\]\] #1 lb: needs a checkpoint path"):
        read_manifest(sweep)
