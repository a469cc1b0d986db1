from __future__ import annotations

import pytest
import torch
from torch import nn

from flatness.curvature.objective import Objective
from tests.conftest import dense_hessian, make_data, make_net


def test_value_gradient_hvp_match_dense_reference(net_kind: str) -> None:
    net = make_net(net_kind)
    X, y = make_data()
    obj = Objective(net, (X, y), batch_size=7)
    H = dense_hessian(net, X, y)
    assert obj.dim == H.shape[0]
    assert torch.isclose(obj.value(), nn.functional.cross_entropy(net(X), y), rtol=1e-12)
    v = torch.randn(obj.dim, dtype=torch.float64)
    torch.testing.assert_close(obj.hvp(v), H @ v, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("batch_size", [1, 4, 7, 30, 100])
def test_partial_batches_are_weighted_to_the_exact_mean(batch_size: int) -> None:
    net = make_net("bn_mlp")
    X, y = make_data(n=30)
    ref = Objective(net, (X, y), batch_size=30)
    obj = Objective(net, (X, y), batch_size=batch_size)
    v = torch.randn(obj.dim, dtype=torch.float64)
    torch.testing.assert_close(obj.value(), ref.value(), rtol=1e-12, atol=0)
    torch.testing.assert_close(obj.gradient(), ref.gradient(), rtol=1e-10, atol=1e-13)
    torch.testing.assert_close(obj.hvp(v), ref.hvp(v), rtol=1e-10, atol=1e-13)


def test_dataloader_and_list_of_batches_agree_with_tensor_pair() -> None:
    net = make_net("mlp")
    X, y = make_data(n=25)
    ds = torch.utils.data.TensorDataset(X, y)
    loader = torch.utils.data.DataLoader(ds, batch_size=6, shuffle=False)
    a = Objective(net, (X, y)).value()
    b = Objective(net, loader).value()
    c = Objective(net, [(X[:10], y[:10]), (X[10:], y[10:])]).value()
    torch.testing.assert_close(a, b, rtol=1e-12, atol=0)
    torch.testing.assert_close(a, c, rtol=1e-12, atol=0)


def test_batch_loss_hook_for_dict_batches() -> None:
    net = make_net("mlp")
    X, y = make_data(n=12)
    batches = [{"inputs": X[:5], "labels": y[:5]}, {"inputs": X[5:], "labels": y[5:]}]

    def batch_loss(model_fn, batch):  # type: ignore[no-untyped-def]
        return nn.functional.cross_entropy(model_fn(batch["inputs"]), batch["labels"])

    obj = Objective(net, batches, loss_fn=None, batch_loss=batch_loss)
    ref = Objective(net, (X, y))
    v = torch.randn(ref.dim, dtype=torch.float64)
    torch.testing.assert_close(obj.value(), ref.value(), rtol=1e-12, atol=0)
    torch.testing.assert_close(obj.hvp(v), ref.hvp(v), rtol=1e-10, atol=1e-13)


def test_parameter_subset_gives_the_diagonal_block() -> None:
    net = make_net("mlp")
    X, y = make_data()
    H = dense_hessian(net, X, y)
    obj = Objective(net, (X, y), params="2")  # the last Linear module
    first = sum(p.numel() for p in net[0].parameters())
    block = H[first:, first:]
    assert obj.dim == block.shape[0]
    assert obj.param_names == ("2.weight", "2.bias")
    v = torch.randn(obj.dim, dtype=torch.float64)
    torch.testing.assert_close(obj.hvp(v), block @ v, rtol=1e-10, atol=1e-12)
    pred = Objective(net, (X, y), params=lambda name, p: name.endswith("bias"))
    assert pred.param_names == ("0.bias", "2.bias")
    with pytest.raises(ValueError, match="matches no trainable parameter"):
        Objective(net, (X, y), params="nope")


def test_model_is_never_mutated_and_mode_restored() -> None:
    net = make_net("bn_mlp")
    net.train()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    X, y = make_data()
    obj = Objective(net, (X, y), train_mode=True)
    obj.value()
    obj.hvp(torch.randn(obj.dim, dtype=torch.float64))
    assert net.training
    for k, v in net.state_dict().items():
        assert torch.equal(v, before[k]), k
    assert obj.settings["train_mode"] is True


def test_eval_mode_is_the_default_and_differs_from_train_mode() -> None:
    net = make_net("bn_mlp")
    X, y = make_data()
    assert not Objective(net, (X, y)).train_mode
    a = Objective(net, (X, y)).value()
    b = Objective(net, (X, y), train_mode=True).value()
    assert not torch.isclose(a, b)


def test_dropout_in_train_mode_is_refused_by_the_determinism_check() -> None:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(8, 16), nn.Dropout(0.5), nn.Linear(16, 3)).double()
    X, y = make_data()
    Objective(net, (X, y)).check_determinism()
    with pytest.raises(RuntimeError, match="not deterministic"):
        Objective(net, (X, y), train_mode=True).check_determinism()


def test_bad_inputs_give_clear_errors() -> None:
    net = make_net("mlp")
    X, y = make_data()
    with pytest.raises(ValueError, match="empty"):
        Objective(net, (X[:0], y[:0]))
    with pytest.raises(ValueError, match="disagree"):
        Objective(net, (X, y[:-1]))
    with pytest.raises(TypeError, match="tensor pair"):
        Objective(net, 3)
    with torch.no_grad():
        net[0].weight[0, 0] = float("nan")
    with pytest.raises(ValueError, match=r"NaN or Inf values \(in 0.weight\)"):
        Objective(net, (X, y))


def test_dtype_and_device_are_copies() -> None:
    net = make_net("mlp").float()
    X, y = make_data()
    obj = Objective(net, (X.float(), y), dtype=torch.float64)
    assert obj.theta0.dtype == torch.float64
    assert next(net.parameters()).dtype == torch.float32
    assert obj.value().dtype == torch.float64


def test_shuffling_loader_is_refused_in_train_mode_only() -> None:
    net = make_net("bn_mlp")
    X, y = make_data(n=24)
    loader = torch.utils.data.DataLoader(
        torch.utils.data.TensorDataset(X, y), batch_size=8, shuffle=True
    )
    with pytest.raises(ValueError, match="shuffling DataLoader"):
        Objective(net, loader, train_mode=True)
    # in eval mode the order of examples cannot change the mean
    torch.testing.assert_close(
        Objective(net, loader).value(), Objective(net, (X, y)).value(), rtol=1e-12, atol=0
    )
