"""Tests of Keskar's parametric plot and the checkpoint interpolation behind it."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from flatness.sharpness.interpolation import (
    InterpolationResult,
    interpolate_checkpoints,
    mean_loss_and_accuracy,
    parametric_plot,
    path_coefficients,
)
from tests.conftest import make_data, make_net


def eval_loss(net: nn.Module, X: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    ref = copy.deepcopy(net).eval()
    with torch.no_grad():
        return F.cross_entropy(ref(X), y)


def snapshot(net: nn.Module) -> tuple[dict[str, torch.Tensor], bool, list[bool]]:
    return (
        {k: v.clone() for k, v in net.state_dict().items()},
        net.training,
        [m.training for m in net.modules()],
    )


def assert_unchanged(net: nn.Module, before: tuple) -> None:
    state, training, modes = before
    for k, v in net.state_dict().items():
        assert torch.equal(v, state[k]), k
    assert net.training == training
    assert [m.training for m in net.modules()] == modes


@pytest.mark.parametrize("kind", ["mlp", "relu_mlp", "bn_mlp", "conv"])
def test_endpoints_equal_the_models_losses_exactly(kind: str) -> None:
    sb, lb = make_net(kind, seed=0), make_net(kind, seed=1)
    X, y = make_data(n=30, seed=1)
    Xt, yt = make_data(n=20, seed=2)
    res = parametric_plot(sb, lb, train=(X, y), test=(Xt, yt), alphas=[-1.0, 0.0, 0.5, 1.0, 2.0])
    assert res.path == "linear" and res.bn == "interpolate"
    assert res.train_loss[1] == eval_loss(sb, X, y).item()
    assert res.train_loss[3] == eval_loss(lb, X, y).item()
    assert res.test_loss is not None
    assert res.test_loss[1] == eval_loss(sb, Xt, yt).item()
    assert res.test_loss[3] == eval_loss(lb, Xt, yt).item()
    assert res.train_accuracy is not None and res.test_accuracy is not None
    with torch.no_grad():
        acc_sb = (sb(X).argmax(1) == y).double().mean().item()
    assert math.isclose(res.train_accuracy[1], acc_sb)
    assert res.evaluations == 10 and res.num_train == 30 and res.num_test == 20


def test_bn_net_in_train_mode_is_evaluated_in_eval_mode_and_left_alone() -> None:
    sb, lb = make_net("bn_mlp", seed=0), make_net("bn_mlp", seed=1)
    sb.train()  # a caller's model left in training mode
    X, y = make_data(n=30)
    before_sb, before_lb = snapshot(sb), snapshot(lb)
    res = parametric_plot(sb, lb, train=(X, y), alphas=[0.0, 0.5])
    assert res.train_loss[0] == eval_loss(sb, X, y).item()
    with torch.no_grad():
        train_mode_loss = F.cross_entropy(copy.deepcopy(sb).train()(X), y).item()
    assert res.train_loss[0] != train_mode_loss
    assert_unchanged(sb, before_sb)
    assert_unchanged(lb, before_lb)


@pytest.mark.parametrize("bn", ["interpolate", "recompute"])
@pytest.mark.parametrize("path", ["linear", "curvilinear"])
def test_models_are_not_mutated(bn: str, path: str) -> None:
    sb, lb = make_net("conv", seed=0), make_net("conv", seed=1)
    before_sb, before_lb = snapshot(sb), snapshot(lb)
    X, y = make_data(n=12)
    interpolate_checkpoints(sb, lb, train=(X, y), test=(X, y), alphas=[-0.5, 0.3], bn=bn, path=path)
    assert_unchanged(sb, before_sb)
    assert_unchanged(lb, before_lb)


def test_loss_of_a_convex_model_is_convex_along_the_line() -> None:
    torch.manual_seed(3)
    a = nn.Linear(8, 3).double()
    b = nn.Linear(8, 3).double()
    with torch.no_grad():
        b.weight.mul_(5.0)
    X, y = make_data(n=40)
    alphas = np.linspace(-1.0, 2.0, 31)
    for loss_fn in (F.cross_entropy, lambda out, t: F.mse_loss(out, F.one_hot(t, 3).double())):
        res = parametric_plot(a, b, train=(X, y), alphas=alphas, loss_fn=loss_fn)
        second = np.diff(res.train_loss, 2)
        assert (second >= -1e-12).all()
        assert second.max() > 0


def test_recompute_differs_from_interpolate_and_is_recorded() -> None:
    sb, lb = make_net("bn_mlp", seed=0), make_net("bn_mlp", seed=1)
    X, y = make_data(n=30)
    alphas = [0.0, 0.5, 1.0]
    inter = parametric_plot(sb, lb, train=(X, y), alphas=alphas, bn="interpolate")
    recomp = parametric_plot(sb, lb, train=(X, y), alphas=alphas, bn="recompute", batch_size=7)
    assert inter.bn == "interpolate" and recomp.bn == "recompute"
    assert not np.allclose(inter.train_loss, recomp.train_loss)
    assert recomp.evaluations == 2 * len(alphas)
    assert inter.to_dict()["bn"] == "interpolate"

    # the recomputed statistics are the plain average over the training batches
    ref = copy.deepcopy(sb)
    bn = ref[1]
    bn.reset_running_stats()
    bn.momentum = None
    bn.train()
    with torch.no_grad():
        for i in range(0, 30, 7):
            ref(X[i : i + 7])
    ref.eval()
    assert math.isclose(recomp.train_loss[0], eval_loss(ref, X, y).item(), rel_tol=1e-12)


def test_recompute_on_a_net_without_normalization_matches_interpolate() -> None:
    sb, lb = make_net("mlp", seed=0), make_net("mlp", seed=1)
    X, y = make_data(n=20)
    a = parametric_plot(sb, lb, train=(X, y), alphas=[0.2, 1.4], bn="interpolate")
    b = parametric_plot(sb, lb, train=(X, y), alphas=[0.2, 1.4], bn="recompute")
    np.testing.assert_array_equal(a.train_loss, b.train_loss)
    assert b.evaluations == 2


def test_curvilinear_path_endpoints_and_midpoint() -> None:
    sb, lb = make_net("mlp", seed=0), make_net("mlp", seed=1)
    X, y = make_data(n=25)
    res = parametric_plot(sb, lb, train=(X, y), alphas=[0.0, 0.5, 1.0], path="curvilinear")
    assert res.path == "curvilinear"
    assert res.train_loss[0] == eval_loss(sb, X, y).item()
    assert res.train_loss[2] == eval_loss(lb, X, y).item()
    c = math.cos(math.pi / 4)
    mid = {k: c * sb.state_dict()[k] + c * lb.state_dict()[k] for k in sb.state_dict()}
    with torch.no_grad():
        expected = F.cross_entropy(functional_call(sb, mid, (X,)), y).item()
    assert math.isclose(res.train_loss[1], expected, rel_tol=1e-12)


def test_path_coefficients() -> None:
    assert path_coefficients(0.0, "linear") == (1.0, 0.0)
    assert path_coefficients(1.0, "linear") == (0.0, 1.0)
    assert path_coefficients(2.0, "linear") == (-1.0, 2.0)
    for alpha, expected in [(0.0, (1.0, 0.0)), (1.0, (0.0, 1.0)), (2.0, (-1.0, 0.0))]:
        assert path_coefficients(alpha, "curvilinear") == expected
    assert path_coefficients(-1.0, "curvilinear") == (0.0, -1.0)
    c0, c1 = path_coefficients(1 / 3, "curvilinear")
    assert math.isclose(c0, math.cos(math.pi / 6)) and math.isclose(c1, math.sin(math.pi / 6))
    with pytest.raises(ValueError, match="unknown path"):
        path_coefficients(0.5, "spline")


def test_default_alphas() -> None:
    sb, lb = make_net("mlp", seed=0), make_net("mlp", seed=1)
    X, y = make_data(n=10)
    lin = parametric_plot(sb, lb, train=(X, y))
    np.testing.assert_array_equal(lin.alphas, np.linspace(-1, 2, 25))
    cur = parametric_plot(sb, lb, train=(X, y), path="curvilinear")
    np.testing.assert_array_equal(cur.alphas, np.linspace(0, 1, 25))


def test_mismatched_architectures_raise_naming_the_keys() -> None:
    sb = make_net("mlp", seed=0)
    X, y = make_data(n=10)
    wider = nn.Sequential(nn.Linear(8, 7), nn.Tanh(), nn.Linear(7, 3)).double()
    with pytest.raises(ValueError, match=r"0\.weight: \(6, 8\) vs \(7, 8\)"):
        parametric_plot(sb, wider, train=(X, y))
    other = make_net("bn_mlp", seed=0)
    with pytest.raises(ValueError, match=r"different architectures.*running_mean"):
        parametric_plot(sb, other, train=(X, y))


def test_bad_options_raise() -> None:
    sb, lb = make_net("mlp", seed=0), make_net("mlp", seed=1)
    X, y = make_data(n=10)
    with pytest.raises(ValueError, match="unknown path"):
        parametric_plot(sb, lb, train=(X, y), path="cubic")
    with pytest.raises(ValueError, match="unknown bn"):
        parametric_plot(sb, lb, train=(X, y), bn="train")
    with pytest.raises(ValueError, match="alphas"):
        parametric_plot(sb, lb, train=(X, y), alphas=[])
    with pytest.raises(ValueError, match="model="):
        interpolate_checkpoints(sb.state_dict(), lb.state_dict(), train=(X, y))
    with pytest.raises(ValueError, match="inputs, targets"):
        parametric_plot(sb, lb, train=[{"x": X, "y": y}])


def test_state_dicts_with_a_model_match_modules() -> None:
    sb, lb = make_net("bn_mlp", seed=0), make_net("bn_mlp", seed=1)
    X, y = make_data(n=20)
    template = make_net("bn_mlp", seed=5)
    a = interpolate_checkpoints(sb, lb, train=(X, y), alphas=[-0.5, 0.0, 0.7])
    b = interpolate_checkpoints(
        sb.state_dict(), lb.state_dict(), model=template, train=(X, y), alphas=[-0.5, 0.0, 0.7]
    )
    np.testing.assert_array_equal(a.train_loss, b.train_loss)


def test_batches_and_tensor_pairs_agree() -> None:
    sb, lb = make_net("relu_mlp", seed=0), make_net("relu_mlp", seed=1)
    X, y = make_data(n=23)
    batches = [(X[i : i + 5], y[i : i + 5]) for i in range(0, 23, 5)]
    a = parametric_plot(sb, lb, train=(X, y), alphas=[0.0, 0.4, 1.6])
    b = parametric_plot(sb, lb, train=batches, alphas=[0.0, 0.4, 1.6])
    np.testing.assert_allclose(a.train_loss, b.train_loss, rtol=1e-12)
    assert a.train_accuracy is not None and b.train_accuracy is not None
    np.testing.assert_array_equal(a.train_accuracy, b.train_accuracy)


def test_negative_interpolated_variances_are_clamped_and_recorded() -> None:
    sb, lb = make_net("bn_mlp", seed=0), make_net("bn_mlp", seed=1)
    with torch.no_grad():
        sb[1].running_var.fill_(1.0)
        lb[1].running_var.fill_(4.0)
    X, y = make_data(n=10)
    res = parametric_plot(sb, lb, train=(X, y), alphas=[-1.0, 0.0, 2.0])
    assert res.clamped_alphas == (-1.0,)  # 2*1 - 4 < 0; at alpha=2: -1 + 8 > 0
    assert np.isfinite(res.train_loss).all()


def test_accuracy_is_none_for_regression_targets_and_float64_evaluation() -> None:
    torch.manual_seed(0)
    a, b = nn.Linear(4, 1), nn.Linear(4, 1)
    X, t = torch.randn(12, 4), torch.randn(12, 1)
    res = interpolate_checkpoints(
        a, b, train=(X, t), alphas=[0.0, 1.0], loss_fn=F.mse_loss, dtype=torch.float64
    )
    assert res.train_accuracy is None and res.dtype == "float64"
    expected = F.mse_loss(a.double()(X.double()), t.double()).item()
    assert res.train_loss[0] == pytest.approx(expected, rel=1e-12)


def test_result_frame_and_repr() -> None:
    sb, lb = make_net("mlp", seed=0), make_net("mlp", seed=1)
    X, y = make_data(n=10)
    res = parametric_plot(sb, lb, train=(X, y), test=(X, y), alphas=[0.0, 0.5, 1.0])
    assert isinstance(res, InterpolationResult)
    df = res.to_frame()
    assert list(df.columns) == ["alpha", "split", "metric", "value"]
    assert len(df) == 3 * 4
    assert set(df["split"]) == {"train", "test"} and set(df["metric"]) == {"loss", "accuracy"}
    row = df[(df.alpha == 0.0) & (df.split == "train") & (df.metric == "loss")]
    assert row["value"].item() == res.train_loss[0]
    assert len(parametric_plot(sb, lb, train=(X, y), alphas=[0.0, 1.0]).to_frame()) == 4
    text = repr(res)
    assert text.startswith("InterpolationResult(path='linear'") and "points=3" in text
    assert res.to_dict(include_arrays=False)["path"] == "linear"


def test_mean_loss_and_accuracy_rejects_bad_batches() -> None:
    net = nn.Linear(2, 3)
    with pytest.raises(ValueError, match="inputs, targets"):
        mean_loss_and_accuracy(net, [(torch.randn(2, 2),)], F.cross_entropy)
