"""A report states what the data says and no more (issue 17, item 14).

A setting is said of "every run" only when every run has it; a rank correlation's
p-value over a handful of checkpoints is exact (never 0); metadata is read alike from
every checkpoint format.
"""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from scipy import stats

from flatness.pipeline.checkpoints import load_checkpoint
from flatness.report import build
from flatness.report.correlation import EXACT_UP_TO, rank_correlation

N_BOOT = 50


def _runs(lr: list[float]) -> pd.DataFrame:
    sizes = (16, 32, 256, 512)
    return pd.DataFrame(
        {
            "regime": ["SB", "SB", "LB", "LB"],
            "batch_size": sizes,
            "seed": [0, 1, 0, 1],
            "lr": lr,
            "train_accuracy": 0.99,
            "test_accuracy": [0.94, 0.93, 0.51, 0.49],
            "measure": "lambda_max",
            "value": [16.5, 17.0, 18.8, 19.0],
        }
    )


def test_a_learning_rate_recorded_by_one_run_is_not_said_of_every_run(tmp_path: Path) -> None:
    report = build(_runs([0.003, np.nan, np.nan, np.nan]), tmp_path, n_boot=N_BOOT)
    md = report.markdown.read_text(encoding="utf-8")
    assert "Every run has learning rate" not in md
    assert "1 of 4 runs record a learning rate (η = 0.003)" in md


def test_a_learning_rate_recorded_by_every_run_is_said_of_every_run(tmp_path: Path) -> None:
    report = build(_runs([0.003] * 4), tmp_path, n_boot=N_BOOT)
    md = report.markdown.read_text(encoding="utf-8")
    assert "Every run has learning rate η = 0.003, so η/B is proportional to 1/B" in md


def test_spearman_p_value_of_four_points_is_exact_not_zero() -> None:
    x, y = [16.5, 17, 18.8, 19], [0.94, 0.93, 0.51, 0.49]
    rho = rank_correlation(x, y, method="spearman", n_boot=0)
    tau = rank_correlation(x, y, method="kendall", n_boot=0)
    # rho = -1: 2 of the 4! orderings are as extreme (the two monotone ones)
    assert rho.estimate == pytest.approx(-1.0)
    assert rho.p_value == pytest.approx(2 / 24)
    assert tau.p_value == pytest.approx(2 / 24)


def _enumerated(x: np.ndarray, y: np.ndarray, method: str) -> float:
    statistic = {"spearman": stats.spearmanr, "kendall": stats.kendalltau}[method]
    observed = abs(statistic(x, y).statistic)
    extreme = [
        abs(statistic(x, y[list(order)]).statistic) >= observed - 1e-12
        for order in itertools.permutations(range(len(y)))
    ]
    return sum(extreme) / len(extreme)


@pytest.mark.parametrize("method", ["spearman", "kendall"])
@pytest.mark.parametrize("n", [3, 5, 6])
def test_small_sample_p_values_equal_full_enumeration_ties_included(method: str, n: int) -> None:
    rng = np.random.default_rng(n)
    x = rng.normal(size=n)
    y = np.round(x + rng.normal(size=n), 0)  # rounding makes ties
    y[0] = y[1]
    result = rank_correlation(x, y, method=method, n_boot=0)
    assert result.p_value == pytest.approx(_enumerated(x, y, method), abs=1e-12)
    assert result.p_value > 0


def test_larger_samples_keep_scipys_p_value() -> None:
    n = EXACT_UP_TO + 4
    x = np.arange(n, dtype=float)
    y = x + np.sin(x) * 3
    result = rank_correlation(x, y, method="spearman", n_boot=0)
    assert result.p_value == stats.spearmanr(x, y).pvalue
    assert not math.isnan(result.p_value)


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        ({"epoch": 7, "global_step": 70, "lr": 0.1, "batch_size": 32, "seed": 3}, None),
        ({"epoch": 7, "learning_rate": 0.1, "hyper_parameters": {"batch_size": 32}}, None),
        ({"epoch": 7, "meta": {"epoch": 9}}, {"epoch": 9}),  # "meta" wins over top level
    ],
)
def test_a_dict_checkpoint_top_level_metadata_is_read_like_lightnings(
    tmp_path: Path, payload: dict, expected: dict | None
) -> None:
    state = {"w": torch.ones(2)}
    plain = tmp_path / "plain.pt"
    torch.save({"state_dict": state, **payload}, plain)
    meta = load_checkpoint(plain).meta
    if expected is not None:
        assert {k: meta[k] for k in expected} == expected
        return
    lightning = tmp_path / "lightning.ckpt"
    torch.save({"state_dict": state, "pytorch-lightning_version": "2.0", **payload}, lightning)
    light = load_checkpoint(lightning).meta
    assert meta["epoch"] == light["epoch"] == 7
    assert meta["lr"] == light["lr"] == 0.1
    if "batch_size" in payload or "hyper_parameters" in payload:
        assert meta["batch_size"] == light["batch_size"] == 32
    shared = {k: v for k, v in light.items() if k != "pytorch-lightning_version"}
    assert meta == shared
