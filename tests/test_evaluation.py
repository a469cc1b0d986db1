"""The one loss/accuracy evaluation (:mod:`flatness.evaluation`) and its old import paths."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import flatness.sharpness
import flatness.sharpness.evaluation
import flatness.zoo
import flatness.zoo.train
from flatness.curvature.objective import Objective
from flatness.evaluation import evaluate, mean_loss_and_accuracy, xy_pair
from tests.conftest import make_data, make_net


def reference(model: nn.Module, x: torch.Tensor, y: torch.Tensor, bs: int) -> tuple[float, float]:
    """The sum-over-examples evaluation ``zoo.train.evaluate`` had before the merge."""
    total, correct = 0.0, 0
    with torch.no_grad():
        for start in range(0, x.shape[0], bs):
            out = model(x[start : start + bs])
            total += float(F.cross_entropy(out, y[start : start + bs], reduction="sum"))
            correct += int((out.argmax(dim=1) == y[start : start + bs]).sum())
    return total / x.shape[0], correct / x.shape[0]


def test_old_import_paths_are_the_one_implementation() -> None:
    assert flatness.zoo.train.evaluate is evaluate
    assert flatness.zoo.evaluate is evaluate
    assert flatness.sharpness.mean_loss_and_accuracy is mean_loss_and_accuracy
    assert flatness.sharpness.evaluation.mean_loss_and_accuracy is mean_loss_and_accuracy
    assert flatness.sharpness.evaluation.xy_pair is xy_pair


@pytest.mark.parametrize("bs", [7, 1024])
def test_evaluate_agrees_with_the_sum_over_examples_and_restores_the_mode(bs: int) -> None:
    net = make_net("bn_mlp").train()
    X, y = make_data(30)
    loss, acc = evaluate(net, X, y, batch_size=bs)
    assert net.training  # restored
    net.eval()
    ref_loss, ref_acc = reference(net, X, y, bs)
    assert loss == pytest.approx(ref_loss, rel=1e-12) and acc == ref_acc


def test_evaluate_equals_the_objective_loss() -> None:
    net = make_net("mlp")
    X, y = make_data(30)
    loss, _ = evaluate(net, X, y, batch_size=8)
    assert loss == float(Objective(net, (X, y), batch_size=8).value())


def test_evaluate_edge_cases() -> None:
    net = make_net("mlp")
    X, y = make_data(4)
    assert evaluate(net, X[:0], y[:0]) == (0.0, 0.0)
    with pytest.raises(ValueError, match="batch_size must be positive"):
        evaluate(net, X, y, batch_size=0)
    with pytest.raises(ValueError, match="holds no examples"):
        mean_loss_and_accuracy(net, [], F.cross_entropy)
