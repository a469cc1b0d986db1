"""Stale BatchNorm statistics are told apart, and recomputed on a copy of the model."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from flatness.batchnorm import (
    STALE_GAP,
    STALE_RATIO,
    BatchNormCheck,
    batchnorm_check,
    recompute_batchnorm,
)
from tests.pipeline.factories import stale_bn_net, tiny_data


def _data() -> tuple[torch.Tensor, torch.Tensor]:
    return tiny_data(n=64)[0]


def test_stale_statistics_are_flagged_and_recomputing_them_fixes_the_loss() -> None:
    net = stale_bn_net()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    x, y = _data()
    check = batchnorm_check(net, (x, y))
    assert check.stale
    assert check.eval_loss > STALE_RATIO * check.train_mode_loss
    fresh = recompute_batchnorm(net, (x, y), batch_size=64)
    # the user's model is untouched: weights, statistics, momentum, mode
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())
    assert net[1].momentum == 0.1 and fresh[1].momentum == 0.1 and not fresh.training
    after = batchnorm_check(fresh, (x, y))
    assert not after.stale
    # population statistics of the one batch: the eval loss is the train-mode loss up to
    # the unbiased variance (n / (n - 1) = 64 / 63)
    assert after.eval_loss == pytest.approx(after.train_mode_loss, rel=0.02)
    assert after.train_mode_loss == pytest.approx(check.train_mode_loss, rel=1e-6)


def test_recomputing_averages_every_batch_alike_and_can_work_in_place() -> None:
    net = stale_bn_net()
    x, y = _data()
    whole = recompute_batchnorm(net, (x, y), batch_size=64)
    halves = recompute_batchnorm(net, [(x[:32], y[:32]), (x[32:], y[32:])])
    expected = net[0](x).detach()
    assert torch.allclose(whole[1].running_mean, expected.mean(0), atol=1e-6)
    # momentum None: the plain mean of the two batches' means (equal sizes: the mean)
    assert torch.allclose(halves[1].running_mean, expected.mean(0), atol=1e-6)
    same = recompute_batchnorm(net, (x, y), batch_size=64, inplace=True)
    assert same is net and torch.allclose(net[1].running_mean, expected.mean(0), atol=1e-6)


def test_dict_batches_feed_the_model_by_keyword() -> None:
    class Keyword(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.bn = nn.BatchNorm1d(2)

        def forward(self, *, features: torch.Tensor) -> torch.Tensor:
            return self.bn(features)

    feats = 4 + torch.randn(10, 2)
    net = recompute_batchnorm(Keyword(), [{"features": feats}])
    assert torch.allclose(net.bn.running_mean, feats.mean(0), atol=1e-6)


def test_the_rule_needs_a_ratio_and_a_gap() -> None:
    assert BatchNormCheck(1.2, 0.5, 8).stale  # 2.4x and 0.7 nats
    assert not BatchNormCheck(0.05, 0.01, 8).stale  # 5x but 0.04 nats: both are tiny
    assert not BatchNormCheck(3.0, 2.0, 8).stale  # 1 nat but 1.5x
    assert BatchNormCheck(float("nan"), 1.0, 8).stale
    assert (STALE_RATIO, STALE_GAP) == (2.0, 0.5)
    assert BatchNormCheck(1.2, 0.5, 8).to_dict()["stale"] is True
    with pytest.raises(ValueError, match="no example"):
        recompute_batchnorm(stale_bn_net(), [])
