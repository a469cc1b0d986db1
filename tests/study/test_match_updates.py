"""``match_updates``: a regime trained, seed by seed, for as many updates as another."""

from __future__ import annotations

from pathlib import Path

import pytest

from flatness.study import Case, describe
from flatness.study.training import train_case

TRAIN = {"network": "tiny_mlp", "dataset": "digits_flat", "lr": 0.01, "epochs": 3,
         "target_accuracy": 0.8}  # fmt: skip
REGIMES = {
    "SB": {"batch_size": 32},
    "LB": {"batch_size": 256},
    "LB-U": {"batch_size": 256, "match_updates": "SB"},
}


def test_the_matched_regime_takes_the_updates_of_the_same_seed(tmp_path: Path) -> None:
    case = Case("m", "t", TRAIN, REGIMES, (0, 1))
    runs = train_case(case, tmp_path, progress=False)
    by = {(r.config.regime, r.config.seed): r for r in runs}
    assert [(r.config.regime, r.config.seed) for r in runs] == [
        ("SB", 0), ("SB", 1), ("LB", 0), ("LB", 1), ("LB-U", 0), ("LB-U", 1)]  # fmt: skip
    for seed in (0, 1):
        sb, lb, lbu = (by[(label, seed)].meta for label in ("SB", "LB", "LB-U"))
        assert lbu["updates"] == sb["updates"] > lb["updates"]
        assert lbu["stop_reason"] == "max_updates" and lbu["batch_size"] == 256
        config = lbu["config"]
        assert config["max_updates"] == sb["updates"]
        assert not {"epochs", "target_accuracy", "target_loss"} & set(config)
    again = train_case(case, tmp_path, progress=False)
    assert {r.status for r in again} == {"skipped"}
    assert "LB-U (batch 256, as many updates as SB)" in describe(case)


def test_a_chain_trains_in_order_and_the_sweep_may_match(tmp_path: Path) -> None:
    train = {**TRAIN, "epochs": 1, "target_accuracy": None}
    regimes = {"C": {"batch_size": 128, "match_updates": "B"}, "A": {"batch_size": 32}}
    sweep = {"B": {"batch_size": 64, "match_updates": "A"}}
    case = Case("m", "t", train, regimes, (0,), sweep=sweep, sweep_seeds=(0,))
    runs = {r.config.regime: r.meta["updates"] for r in train_case(case, tmp_path, progress=False)}
    assert runs["A"] == runs["B"] == runs["C"]


@pytest.mark.parametrize(
    ("regimes", "seeds", "message"),
    [
        ({"SB": {}, "LB": {"match_updates": "XB"}}, (0,), "not one of the case's regimes"),
        ({"SB": {"match_updates": "LB"}, "LB": {"match_updates": "SB"}}, (0,), "SB -> LB -> SB"),
        ({"SB": {"match_updates": "SB"}}, (0,), "cycle"),
        ({"SB": {}, "LB": {"match_updates": 3}}, (0,), "not one of"),
    ],
)  # fmt: skip
def test_bad_references_fail_before_training(
    regimes: dict[str, dict[str, object]], seeds: tuple[int, ...], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        Case("m", "t", TRAIN, regimes, seeds)


def test_a_seed_the_referenced_regime_lacks_fails() -> None:
    with pytest.raises(ValueError, match=r"not trained with seeds \[1\]"):
        Case("m", "t", TRAIN, {"SB": {}}, (0,), sweep={"B": {"match_updates": "SB"}},
             sweep_seeds=(0, 1))  # fmt: skip
