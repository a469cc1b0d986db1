from __future__ import annotations

import pytest
import torch

from flatness.curvature.hessian import HessianOperator
from flatness.curvature.objective import Objective
from flatness.curvature.operator import as_operator
from tests.conftest import dense_hessian, make_data, make_net

STRATEGIES = ["auto", "retained", "double_backward", "forward_over_reverse"]


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_every_strategy_matches_the_dense_hessian(net_kind: str, strategy: str) -> None:
    net = make_net(net_kind)
    X, y = make_data()
    H = dense_hessian(net, X, y)
    with HessianOperator(Objective(net, (X, y), batch_size=8), strategy=strategy) as op:  # type: ignore[arg-type]
        v = torch.randn(op.dim, dtype=torch.float64)
        torch.testing.assert_close(op.matvec(v), H @ v, rtol=1e-10, atol=1e-12)
        V = torch.randn(op.dim, 6, dtype=torch.float64)
        torch.testing.assert_close(op.matmat(V), H @ V, rtol=1e-10, atol=1e-12)
        torch.testing.assert_close(op.matmat(V), H @ V, rtol=1e-10, atol=1e-12)
        assert op.matvecs == 13


@pytest.mark.parametrize("batched", [True, False])
def test_forced_block_modes_agree(batched: bool) -> None:
    net = make_net("bn_mlp")
    X, y = make_data()
    H = dense_hessian(net, X, y)
    for strategy in STRATEGIES:
        op = HessianOperator(
            Objective(net, (X, y), batch_size=11),
            strategy=strategy,  # type: ignore[arg-type]
            batched=batched,
        )
        V = torch.randn(op.dim, 4, dtype=torch.float64)
        torch.testing.assert_close(op.matmat(V), H @ V, rtol=1e-10, atol=1e-12)


def test_memory_budget_falls_back_for_batches_that_do_not_fit() -> None:
    net = make_net("mlp")
    X, y = make_data(n=40)
    obj = Objective(net, (X, y), batch_size=10)
    H = dense_hessian(net, X, y)
    none = HessianOperator(obj, memory_budget=0)
    assert none.retained_batches == 0
    full = HessianOperator(obj)
    assert full.retained_batches == 4
    one_size = full.choices["retained_bytes"] // 4
    some = HessianOperator(obj, memory_budget=int(one_size * 2.5))
    assert 1 <= some.retained_batches < 4
    v = torch.randn(obj.dim, dtype=torch.float64)
    for op in (none, full, some):
        torch.testing.assert_close(op.matvec(v), H @ v, rtol=1e-10, atol=1e-12)
    assert some.choices["fallback"] in ("double_backward", "forward_over_reverse")


def test_close_frees_graphs_and_refuses_products() -> None:
    net = make_net("mlp")
    X, y = make_data()
    op = HessianOperator(Objective(net, (X, y)))
    assert op.retained_batches == 1
    op.close()
    assert op.retained_batches == 0
    with pytest.raises(RuntimeError, match="closed"):
        op.matvec(torch.zeros(op.dim, dtype=torch.float64))


def _live_tensors() -> int:
    import gc
    import warnings

    gc.collect()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return sum(1 for o in gc.get_objects() if isinstance(o, torch.Tensor))


def test_repeated_products_do_not_grow_memory() -> None:
    net = make_net("bn_mlp")
    X, y = make_data()
    op = HessianOperator(Objective(net, (X, y)), strategy="retained")
    v = torch.randn(op.dim, dtype=torch.float64)
    for _ in range(20):
        op.matvec(v)
    live = _live_tensors()
    for _ in range(200):
        op.matvec(v)
    assert _live_tensors() <= live


def test_scipy_view_and_as_operator() -> None:
    import numpy as np

    net = make_net("mlp")
    X, y = make_data()
    H = dense_hessian(net, X, y).numpy()
    op, owned = as_operator(Objective(net, (X, y)))
    assert owned
    lin = op.to_scipy()  # type: ignore[attr-defined]
    x = np.random.default_rng(0).standard_normal(op.dim)
    np.testing.assert_allclose(lin @ x, H @ x, rtol=1e-10, atol=1e-12)
    X2 = np.random.default_rng(1).standard_normal((op.dim, 3))
    np.testing.assert_allclose(lin @ X2, H @ X2, rtol=1e-10, atol=1e-12)
    same, owned2 = as_operator(op)
    assert same is op and not owned2
    with pytest.raises(TypeError):
        as_operator(object())


def test_strategy_name_is_validated() -> None:
    net = make_net("mlp")
    X, y = make_data()
    with pytest.raises(ValueError, match="strategy"):
        HessianOperator(Objective(net, (X, y)), strategy="magic")  # type: ignore[arg-type]
