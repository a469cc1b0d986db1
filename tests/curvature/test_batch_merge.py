"""Batches merged into one graph where that is exact (issue 19 item 3)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import flatness as fl
from flatness.curvature.batch_merge import merge_refusal, merged_batch

F64 = torch.float64


def _data(n: int = 40) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    return torch.randn(n, 5, generator=gen, dtype=F64), torch.randint(0, 3, (n,), generator=gen)


def _net(batchnorm: bool = True, running: bool = True) -> nn.Module:
    torch.manual_seed(0)
    layers: list[nn.Module] = [nn.Linear(5, 8)]
    if batchnorm:
        layers.append(nn.BatchNorm1d(8, track_running_stats=running))
    layers += [nn.Tanh(), nn.Linear(8, 3)]
    net = nn.Sequential(*layers).double()
    with torch.no_grad():  # running statistics that are not the identity
        for m in net.modules():
            if isinstance(m, nn.BatchNorm1d) and m.running_mean is not None:
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
    return net.eval()


def test_merged_products_equal_the_batched_ones() -> None:
    obj = fl.Objective(_net(), _data(), batch_size=10)
    V = torch.randn(obj.dim, 3, generator=torch.Generator().manual_seed(1), dtype=F64)
    with fl.HessianOperator(obj, deterministic=False) as merged:
        assert merged.numerics["merged"] and merged.numerics["batches"] == 4
        assert merged.retained_batches == 4 and merged.choices["merge"] == "allowed"
        HV = merged.matmat(V)
        Hv = merged.matvec(V[:, 0])
    with fl.HessianOperator(obj, deterministic=True) as batched:
        assert not batched.numerics["merged"] and batched.choices["merge"] == "deterministic"
        ref = batched.matmat(V)
    torch.testing.assert_close(HV, ref, rtol=1e-12, atol=1e-13)
    torch.testing.assert_close(Hv, ref[:, 0], rtol=1e-12, atol=1e-13)
    dense = fl.Objective(_net(), _data(), batch_size=40)  # one batch: nothing to merge
    with fl.HessianOperator(dense, deterministic=True) as one:
        torch.testing.assert_close(one.matmat(V), ref, rtol=1e-12, atol=1e-13)


def test_eigenvalues_with_merged_batches_are_unchanged() -> None:
    obj = fl.Objective(_net(), _data(), batch_size=10)
    merged = fl.hessian_eigenvalues(
        obj, k=2, tol=1e-10, hessian=fl.HessianOptions(deterministic=False)
    )
    batched = fl.hessian_eigenvalues(
        obj, k=2, tol=1e-10, hessian=fl.HessianOptions(deterministic=True)
    )
    assert merged.choices["merged"] and not batched.choices["merged"]
    torch.testing.assert_close(
        torch.tensor(merged.eigenvalues), torch.tensor(batched.eigenvalues), rtol=1e-10, atol=0
    )


def test_a_budget_that_holds_a_batch_but_not_all_keeps_the_batches() -> None:
    obj = fl.Objective(_net(), _data(), batch_size=10)
    with fl.HessianOperator(obj, deterministic=True) as probe:  # the size of all four graphs
        total = probe.choices["retained_bytes"]
    with fl.HessianOperator(obj, deterministic=False, memory_budget=total // 2) as H:
        assert not H.numerics["merged"] and 0 < H.retained_batches < 4


def _batch_loss(model_fn: object, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    x, y = batch
    return F.cross_entropy(model_fn(x), y)  # type: ignore[operator]


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (lambda: fl.Objective(_net(), _data(), batch_size=40), "one batch"),
        (
            lambda: fl.Objective(
                _net(), _data(), loss_fn=None, batch_loss=_batch_loss, batch_size=10
            ),
            "batch_loss",
        ),
        (lambda: fl.Objective(_net(), _data(), train_mode=True, batch_size=10), "training"),
        (lambda: fl.Objective(_net(running=False), _data(), batch_size=10), "BatchNorm"),
    ],
)
def test_merging_is_refused_where_it_would_not_be_exact(make: object, reason: str) -> None:
    obj = make()  # type: ignore[operator]
    refusal = merge_refusal(obj)
    assert refusal is not None and reason in refusal
    if reason != "training":  # a random objective is refused before merging is asked
        with fl.HessianOperator(obj, deterministic=False) as H:
            assert not H.numerics["merged"]


def test_merged_batch_concatenates_in_order() -> None:
    X, y = _data(6)
    mx, my = merged_batch([(X[:2], y[:2]), (X[2:], y[2:])])
    assert torch.equal(mx, X) and torch.equal(my, y)
    with pytest.raises(ValueError, match="inputs, targets"):
        merged_batch([{"x": X}])


def test_large_graphs_on_the_host_are_not_merged(monkeypatch: pytest.MonkeyPatch) -> None:
    import flatness.curvature.graph_memory as graph_memory

    monkeypatch.setattr(graph_memory, "HOST_MERGE_LIMIT", 1024)  # bytes: below any graph here
    obj = fl.Objective(_net(), _data(), batch_size=10)
    with fl.HessianOperator(obj, deterministic=False) as H:
        assert not H.numerics["merged"] and H.retained_batches == 4
