"""A case's tracking, parametric plots over seeds, design notes and chosen sections."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

import flatness as fl
from flatness.study import Case, fingerprint, run_case

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

NOTES = ("Two seeds: the smallest attainable two-sided paired p is 0.5.",)


def _case(**options: object) -> Case:
    return Case(
        "tiny",
        "Tiny case",
        {"network": "tiny_mlp", "dataset": "digits_flat", "lr": 0.01, "epochs": None,
         "max_updates": 20},
        {"SB": {"batch_size": 16}, "LB": {"batch_size": 128}},
        (0, 1),
        examples=100,
        measures={"lambda_max": {}},
        **options,  # type: ignore[arg-type]
    )  # fmt: skip


def test_a_tracked_case_with_pairs_notes_and_chosen_sections(tmp_path: Path) -> None:
    case = _case(
        track={"measures": ["lambda_max"], "every": 10, "examples": 64, "test": False},
        pair_seeds=(0, 1),
        notes=NOTES,
        sections=("summary", "accuracy", "parametric", "training"),
    )
    result = run_case(
        case, tmp_path / "runs", tmp_path / "out", progress=False, echo=lambda s: None
    )
    assert result.store == tmp_path / "runs" / "tiny" / "results.sqlite"
    tracks = fl.load_tracks(result.store)
    tracked = tracks[tracks["source"] == "tracker"]
    assert sorted(set(tracked["run"])) == ["LB/seed0", "LB/seed1", "SB/seed0", "SB/seed1"]
    assert set(tracked.groupby("run")["step"].max()) == {20}  # the last update is measured
    doc = tomllib.loads(result.manifest.read_text(encoding="utf-8"))
    assert [p["sb"] for p in doc["pairs"]] == ["sb/seed0/final.pt", "sb/seed1/final.pt"]
    text = (tmp_path / "out" / "tiny" / "report.md").read_text(encoding="utf-8")
    headings = [line for line in text.splitlines() if line.startswith("## ")]
    assert headings[:2] == ["## Summary", "## Design and its limits"]
    assert NOTES[0] in text
    assert not any("Provenance" in h or "SB vs LB" in h or "density" in h for h in headings)
    assert any(h.startswith("## Training") for h in headings)
    assert "left out" not in text.lower()


def test_the_fingerprint_follows_the_tracks(tmp_path: Path) -> None:
    case = _case()
    result = run_case(
        case, tmp_path / "runs", tmp_path / "out", progress=False, echo=lambda s: None
    )
    before = fingerprint(result.store, {"title": "t"})
    from flatness.pipeline.store import ResultsStore

    with ResultsStore(result.store) as db:
        db.put_track("SB/seed0", "tracker", 5, {"lambda_max": 1.0})
    assert fingerprint(result.store, {"title": "t"}) != before


def test_pair_seeds_and_sections_are_checked() -> None:
    with pytest.raises(ValueError, match=r"pair_seeds \[2\] are not among the seeds"):
        _case(pair_seeds=(0, 2))
    with pytest.raises(ValueError, match="unknown report sections"):
        _case(sections=("summary", "tables"))
    with pytest.raises(ValueError, match="store is the case's own"):
        _case(track={"store": "x.sqlite"})
    assert _case(pair_seed=1, pair_seeds=(0, 1)).plot_seeds == (1, 0)


def test_toml_takes_the_new_keys() -> None:
    from flatness.study import study_from_dict

    doc = tomllib.loads(
        """
name = "s"
title = "t"
[defaults]
seeds = [0, 1]
train = { network = "tiny_mlp", dataset = "digits_flat", epochs = 2 }
notes = ["n1", "n2"]
[[cases]]
name = "c"
title = "c"
regimes = { SB = { batch_size = 16 }, LB-U = { batch_size = 128, match_updates = "SB" } }
pair = ["SB", "LB-U"]
pair_seeds = [0, 1]
sections = ["summary", "sb-vs-lb"]
track = { measures = ["lambda_max"], every = "epoch" }
"""
    )
    case = study_from_dict(doc).plan().cases[0]
    assert case.pair_seeds == (0, 1) and case.notes == ("n1", "n2")
    assert case.sections == ("summary", "sb-vs-lb") and case.pair == ("SB", "LB-U")
    assert case.track == {"measures": ["lambda_max"], "every": "epoch"}
    assert case.regimes["LB-U"]["match_updates"] == "SB"
    doc["cases"][0]["regimes"]["LB-U"]["match_updates"] = "MB"
    with pytest.raises(ValueError, match="not one of the case's regimes"):
        study_from_dict(doc)
