"""The tracker reads the model and leaves the loop's state exactly as it was."""

from __future__ import annotations

import math
import random

import numpy as np
import torch
from torch import nn

from flatness.results import Result
from flatness.tracking import Tracker
from flatness.tracking.loop_state import loop_state_kept
from tests.tracking.conftest import tiny_data


class _Drawn(Result):
    """A result whose value was drawn from every global generator."""

    value: float = 0.0
    stderr: float = float("nan")
    converged: bool = True
    matvecs: int = 0
    evaluations: int = 0
    gradients: int = 0
    gradient_equivalents: float = 0.0
    seconds: float = 0.0
    settings: dict = {}  # noqa: RUF012 - a class attribute of a test double


def _draws_everywhere(obj: object) -> _Drawn:
    _ = torch.randn(5), random.random(), np.random.rand()  # noqa: NPY002
    return _Drawn()


def _net() -> nn.Module:
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Linear(4, 8), nn.BatchNorm1d(8), nn.Tanh(), nn.Dropout(0.5), nn.Linear(8, 3)
    ).double()
    net.train()
    net[1].eval()  # a mixed mode must come back mixed
    return net


def _state(net: nn.Module) -> dict[str, object]:
    return {
        "tensors": {k: v.clone() for k, v in net.state_dict().items()},
        "grads": [(p.grad, None if p.grad is None else p.grad.clone()) for p in net.parameters()],
        "modes": [m.training for m in net.modules()],
        "torch": torch.get_rng_state().clone(),
        "python": random.getstate(),
        "numpy": np.random.get_state(),  # noqa: NPY002
        "grad_mode": torch.is_grad_enabled(),
    }


def _same(a: dict, b: dict) -> None:
    assert a["tensors"].keys() == b["tensors"].keys()
    for k in a["tensors"]:
        assert torch.equal(a["tensors"][k], b["tensors"][k]), k  # bit for bit
    for (ga, va), (gb, vb) in zip(a["grads"], b["grads"], strict=True):
        assert ga is gb and (va is None or torch.equal(va, vb))
    assert a["modes"] == b["modes"]
    assert torch.equal(a["torch"], b["torch"])
    assert a["python"] == b["python"]
    na, nb = a["numpy"], b["numpy"]
    assert na[0] == nb[0] and np.array_equal(na[1], nb[1]) and na[2:] == nb[2:]
    assert a["grad_mode"] == b["grad_mode"]


def test_update_leaves_parameters_generators_grads_and_modes_as_they_were() -> None:
    net = _net()
    X, y = tiny_data(48)
    torch.nn.functional.cross_entropy(net(X), y).backward()  # the loop's gradients
    net[0].bias.grad = None  # and one parameter without any
    measures = {"lambda_max": {"k": 2}, "trace": {"budget": 9}, "noise_scale": {},
                "keskar_sharpness": {"maxiter": 2}, "drawn": _draws_everywhere}  # fmt: skip
    tracker = Tracker((X, y), test=tiny_data(16, seed=2), measures=measures, every=1)
    for grad_mode in (True, False):
        with torch.set_grad_enabled(grad_mode):
            before = _state(net)
            record = tracker.update(net, step=int(not grad_mode), lr=0.1, batch_size=48)
            after = _state(net)
        assert record is not None and record["lambda_max_converged"] == 1
        for name in ("lambda_2", "trace", "noise_scale", "keskar_sharpness", "drawn"):
            assert math.isfinite(record[name]) and f"{name}_stderr" in record, name
        _same(before, after)


def test_the_context_restores_what_was_drawn_inside() -> None:
    net = _net()
    before = _state(net)
    with loop_state_kept(net):
        _draws_everywhere(None)
        net.eval()
        for p in net.parameters():
            p.grad = torch.ones_like(p)
    _same(before, _state(net))
