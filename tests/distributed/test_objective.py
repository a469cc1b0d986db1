"""A data-parallel Objective on 2 and 3 gloo ranks equals one process on all the data."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch
import torch.distributed as dist
from torch import nn

from flatness.curvature import (
    HessianOperator,
    Objective,
    exact_hessian_trace,
    hessian_eigenvalues,
    hutchinson_trace,
    hutchpp_trace,
    power_iteration,
    spectral_density,
)
from flatness.losses import causal_lm_loss
from tests.distributed.spawn_ranks import run_ranks

N, BATCH = 11, 4  # 11 examples: uneven shards on 2 and 3 ranks, cutting through batches


def _problem() -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(3, 5), nn.ReLU(), nn.Linear(5, 3)).double()
    return net, torch.randn(N, 3, dtype=torch.float64), torch.randint(0, 3, (N,))


def _estimates(obj: Objective) -> dict[str, Any]:
    """Every curvature estimator of ``obj``, as plain numbers and tensors."""
    gen = torch.Generator().manual_seed(1)
    v = torch.randn(obj.dim, generator=gen, dtype=torch.float64)
    V = torch.randn(obj.dim, 4, generator=gen, dtype=torch.float64)
    out: dict[str, Any] = {
        "value": obj.value(),
        "gradient": obj.value_and_gradient()[1],
        "hvp": obj.hvp(v),
        "num_examples": obj.num_examples,
    }
    for strategy in ("retained", "double_backward", "forward_over_reverse"):
        with HessianOperator(obj, strategy=strategy) as H:
            out[f"matvec_{strategy}"] = H.matvec(v)
            out[f"matmat_{strategy}"] = H.matmat(V)
            if strategy == "retained":  # each rank merges its own batches into one graph
                assert H.numerics["merged"] or len(obj.batches) == 1, H.choices
    out["power_top1"] = power_iteration(obj, tol=1e-10, maxiter=400).eigenvalues[0]
    eig = hessian_eigenvalues(obj, k=3, tol=1e-8)
    out["top3"] = np.asarray(eig.eigenvalues)
    out["hutchinson"] = hutchinson_trace(obj, budget=16, seed=3).estimate
    out["hutchpp"] = hutchpp_trace(obj, budget=24, seed=3).estimate
    out["exact_trace"] = exact_hessian_trace(obj).estimate
    density = spectral_density(obj, steps=10, runs=2, seed=4, grid_size=50)
    out["density"] = np.asarray(density.density)
    out["density_nodes"] = np.asarray(density.nodes)
    return out


class _TinyLM(nn.Module):
    """Token ids to next-token logits (embedding, then a linear read-out)."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(7, 4)
        self.out = nn.Linear(4, 7)

    def forward(self, input_ids: torch.Tensor, attention_mask: Any = None) -> torch.Tensor:
        return self.out(torch.tanh(self.embed(input_ids)))


def _token_problem() -> tuple[nn.Module, list[dict[str, torch.Tensor]]]:
    torch.manual_seed(0)
    ids = torch.randint(0, 7, (7, 5))
    mask = (torch.rand(7, 5) > 0.3).long()
    mask[:, :2] = 1
    batches = [{"input_ids": ids[a:b], "attention_mask": mask[a:b]} for a, b in ((0, 3), (3, 7))]
    return _TinyLM().double(), batches


def _token_objective(**kwargs: Any) -> Objective:
    net, batches = _token_problem()
    return Objective(net, batches, batch_loss=causal_lm_loss, **kwargs)


def _rank_estimates(rank: int, world: int) -> dict[str, Any]:
    net, X, y = _problem()
    obj = Objective(net, (X, y), batch_size=BATCH)
    out = _estimates(obj)
    out["local_examples"] = obj.local_examples
    out["world_size"] = obj.settings["world_size"]
    tokens = _token_objective()
    out["token_value"], out["token_gradient"] = tokens.value_and_gradient()
    mine = slice(rank, None, world)  # a DistributedSampler's strided shard
    pre = Objective(net, (X[mine], y[mine]), batch_size=BATCH, presharded=True)
    out["presharded_value"], out["presharded_gradient"] = pre.value_and_gradient()
    out["presharded_examples"] = pre.num_examples
    out["opted_out_examples"] = Objective(net, (X, y), distributed=None).num_examples
    out["train_value"], out["train_gradient"] = _train_mode_objective().value_and_gradient()
    return out


def _train_mode_objective() -> Objective:
    """BatchNorm in training mode: ranks share out whole batches (batch statistics)."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.ReLU(), nn.Linear(4, 3)).double()
    _, X, y = _problem()
    return Objective(net, (X, y), batch_size=3, train_mode=True)


def _float64(x: Any) -> torch.Tensor:
    return x.double() if isinstance(x, torch.Tensor) else torch.as_tensor(np.array(x, dtype=float))


def _close(a: Any, b: Any) -> tuple[float, float]:
    a, b = _float64(a), _float64(b)
    diff = float((a - b).abs().max())
    return diff, diff / max(float(b.abs().max()), 1e-300)


@pytest.mark.parametrize("world", [2, 3])
def test_every_estimator_equals_one_process(world: int) -> None:
    net, X, y = _problem()
    single = _estimates(Objective(net, (X, y), batch_size=BATCH))
    ranks = run_ranks(_rank_estimates, world)
    assert sum(r["local_examples"] for r in ranks) == N
    assert [r["local_examples"] for r in ranks] == [
        N // world + (1 if i < N % world else 0) for i in range(world)
    ]
    token_value, token_gradient = _token_objective().value_and_gradient()
    train_value, train_gradient = _train_mode_objective().value_and_gradient()
    for r in ranks:
        assert r["world_size"] == world and r["num_examples"] == N
        for key, ref in single.items():
            _, rel = _close(r[key], ref)
            assert rel < 1e-10, (key, rel)
        # a token mean: the normalizer is the all-reduced number of tokens
        assert _close(r["token_value"], token_value)[1] < 1e-12
        assert _close(r["token_gradient"], token_gradient)[1] < 1e-12
        # a user's own shards are kept and weighted by the global count
        assert r["presharded_examples"] == N
        assert _close(r["presharded_value"], single["value"])[1] < 1e-12
        assert _close(r["presharded_gradient"], single["gradient"])[1] < 1e-12
        assert r["opted_out_examples"] == N  # distributed=None: all the data, alone
        assert _close(r["train_value"], train_value)[1] < 1e-12
        assert _close(r["train_gradient"], train_gradient)[1] < 1e-12
    for key in single:  # every rank ends with the same bits
        assert _close(ranks[0][key], ranks[-1][key])[0] == 0.0, key


def _mismatched_model() -> None:
    net, X, y = _problem()
    if dist.get_rank() == 1:
        with torch.no_grad():
            net[0].bias.add_(1.0)
    Objective(net, (X, y), batch_size=BATCH)


def _mismatched_mode() -> None:
    net, X, y = _problem()
    Objective(net, (X, y), batch_size=BATCH, train_mode=dist.get_rank() == 2)


def _mismatched_data() -> None:
    net, X, y = _problem()
    Objective(net, (X + dist.get_rank(), y), batch_size=BATCH)


def _too_many_ranks() -> None:
    net, X, y = _problem()
    Objective(net, (X[:2], y[:2]))


def _presharded_empty() -> None:
    net, X, y = _problem()
    rank = dist.get_rank()
    mine = slice(0, 0) if rank == 2 else slice(rank, None, 2)
    Objective(net, (X[mine], y[mine]), presharded=True)


def _no_tokens_on_a_rank() -> None:
    net, batches = _token_problem()
    if dist.get_rank() == 1:
        batches = [{**b, "attention_mask": torch.zeros_like(b["attention_mask"])} for b in batches]
    Objective(net, batches, batch_loss=causal_lm_loss, presharded=True)


def _fewer_batches_than_ranks_in_train_mode() -> None:
    net, X, y = _problem()
    Objective(net, (X, y), batch_size=8, train_mode=True)


BAD_INPUT = {
    "train mode": (
        _fewer_batches_than_ranks_in_train_mode,
        "rank(s) [2] would hold no data: 2 batches (training mode shares out whole batches)",
    ),
    "mismatched model": (_mismatched_model, "rank(s) [1] hold another model"),
    "mismatched mode": (_mismatched_mode, "rank(s) [2] hold another model"),
    "mismatched data": (_mismatched_data, "rank(s) [1, 2] hold another data"),
    "empty shard": (_too_many_ranks, "rank(s) [2] would hold no data: 2 examples over 3 ranks"),
    "empty presharded": (_presharded_empty, "rank 2: the data set is empty"),
    "no tokens": (_no_tokens_on_a_rank, "rank 1: the data set is empty"),
}


def _refusals(rank: int, world: int) -> dict[str, str]:
    """Each bad input's error on this rank (the group stays usable after each)."""
    out = {}
    for name, (fn, _) in BAD_INPUT.items():
        try:
            fn()
            out[name] = "accepted"
        except ValueError as err:
            out[name] = str(err)
    return out


def test_bad_input_is_refused_on_every_rank_naming_the_rank() -> None:
    ranks = run_ranks(_refusals, 3)  # returning at all: no rank was left waiting
    for name, (_, message) in BAD_INPUT.items():
        for rank, errors in enumerate(ranks):
            assert message in errors[name], (name, rank, errors[name])


def test_without_a_group_nothing_changes() -> None:
    net, X, y = _problem()
    obj = Objective(net, (X, y), batch_size=BATCH)
    assert obj.group is None and obj.local_examples == obj.num_examples == N
    assert "world_size" not in obj.settings
    t = torch.ones(3)
    assert obj.reduce(t) is t and torch.equal(t, torch.ones(3))
