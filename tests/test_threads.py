"""Intra-op threads: the rule, the context manager, and ``--threads`` reaching torch."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import torch
from torch import nn

import flatness.demo
import flatness.zoo.train as train_module
from flatness.cli import main
from flatness.pipeline.scorer import Scorer
from flatness.pipeline.scoring import score
from flatness.threads import (
    SMALL_WORK,
    fix_threads,
    fixed_threads,
    intra_op_threads,
    threads_for,
    work_size,
)
from flatness.zoo import TrainConfig, build_network, train_network

SMALL = ["--dataset", "digits_flat", "--updates", "2", "--batch-size", "32"]


@pytest.fixture(autouse=True)
def _restore_threads() -> Iterator[None]:
    """Every test leaves torch's count and the fixed count as it found them."""
    before = torch.get_num_threads()
    yield
    fix_threads(None)
    torch.set_num_threads(before)


@pytest.fixture
def seen_threads(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The thread counts in effect whenever training evaluates the model."""
    seen: list[int] = []
    evaluate = train_module.evaluate

    def spy(*args: Any, **kwargs: Any) -> Any:
        seen.append(torch.get_num_threads())
        return evaluate(*args, **kwargs)

    monkeypatch.setattr(train_module, "evaluate", spy)
    return seen


def test_context_manager_sets_and_restores() -> None:
    torch.set_num_threads(2)
    with intra_op_threads(1) as n:
        assert n == torch.get_num_threads() == 1
    assert torch.get_num_threads() == 2
    with pytest.raises(KeyError), intra_op_threads(1):
        raise KeyError("inside")
    assert torch.get_num_threads() == 2
    with intra_op_threads(None) as n:
        assert n == torch.get_num_threads() == 2
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match="positive integer"), intra_op_threads(bad):  # type: ignore[arg-type]
            pass
    assert torch.get_num_threads() == 2


@pytest.mark.parametrize(
    ("name", "kwargs"),
    [
        ("tiny_mlp", {}),
        ("mlp_bn", {}),
        ("f1", {"width": 256, "depth": 3}),  # the demo's network
        ("f1", {}),  # Keskar et al.'s F1 (5 x 512)
        ("c1", {"channels": 32, "hidden": [192, 96]}),  # the full study's C1
    ],
)
def test_rule_gives_one_thread_for_the_built_in_networks(name: str, kwargs: dict[str, Any]) -> None:
    net = build_network(name, input_shape=[40], num_classes=10, **kwargs)
    for batch in (20, 400, 1000):  # demo SB and LB, the scoring default's examples
        assert threads_for(net, batch) == 1


def test_rule_leaves_large_work_to_torch_and_explicit_counts_win() -> None:
    big = nn.Linear(1000, 1000)
    batch = int(SMALL_WORK // 1e6) + 1
    assert work_size(big, batch) > SMALL_WORK
    assert threads_for(big, batch) is None
    assert threads_for(big, batch, threads=3) == 3
    fix_threads(2)
    assert fixed_threads() == 2
    assert threads_for(big, batch) == threads_for(nn.Linear(2, 2), 1) == 2
    assert threads_for(big, batch, threads=1) == 1
    fix_threads(None)
    assert threads_for(None, 1) is None
    with pytest.raises(ValueError, match="positive integer"):
        fix_threads(0)


def test_training_runs_on_the_rule_s_count_and_restores(seen_threads: list[int]) -> None:
    torch.set_num_threads(2)
    config = TrainConfig(network="tiny_mlp", dataset="digits_flat", batch_size=32, max_updates=2)
    train_network(config)
    assert seen_threads and set(seen_threads) == {1}
    assert torch.get_num_threads() == 2
    seen_threads.clear()
    torch.set_num_threads(1)
    train_network(config, threads=2)
    assert set(seen_threads) == {2} and torch.get_num_threads() == 1


def test_threads_option_reaches_torch(tmp_path: Path, seen_threads: list[int]) -> None:
    torch.set_num_threads(1)
    argv = ["train", "--network", "tiny_mlp", *SMALL, "--out", str(tmp_path), "--no-progress"]
    assert main([*argv, "--threads", "2"]) == 0
    assert seen_threads and set(seen_threads) == {2}
    seen_threads.clear()
    fix_threads(None)
    assert main(argv) == 0
    assert set(seen_threads) == {1}


def test_scoring_runs_on_the_rule_s_count_and_threads_reach_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    argv = ["train", "--network", "tiny_mlp", *SMALL, "--out", str(tmp_path), "--no-progress"]
    assert main(argv) == 0
    seen: list[int] = []

    def spy(self: Scorer, index: int, only: Any = None) -> None:
        seen.append(torch.get_num_threads())

    monkeypatch.setattr(Scorer, "score_run", spy)
    manifest = tmp_path / "manifest.toml"
    torch.set_num_threads(2)
    score(manifest)
    assert seen == [1] and torch.get_num_threads() == 2
    score(manifest, threads=2)
    assert seen == [1, 2]
    torch.set_num_threads(1)
    assert main(["score", str(manifest), "--threads", "2", "--no-progress"]) == 0
    assert seen == [1, 2, 2]


def test_demo_threads_option_fixes_the_count(monkeypatch: pytest.MonkeyPatch) -> None:
    fixed: list[int | None] = []

    def fake_run_study(plan: Any, **kwargs: Any) -> Any:
        fixed.append(fixed_threads())
        return SimpleNamespace(cases=[], html="report.html", seconds=0.0, ok=True)

    monkeypatch.setattr(flatness.demo, "run_study", fake_run_study)
    assert main(["demo", "--runs", "r", "--out", "o", "--no-progress", "--threads", "2"]) == 0
    assert fixed == [2]
