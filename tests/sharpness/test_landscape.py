"""Tests of the 2-D filter-normalized loss landscape (Li et al. 2018)."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from flatness.curvature.objective import Objective
from flatness.sharpness.landscape import (
    LandscapeResult,
    filter_normalized_directions,
    loss_landscape_2d,
)
from tests.conftest import make_data, make_net


def objective(kind: str = "conv", n: int = 20, **kwargs: object) -> Objective:
    X, y = make_data(n=n)
    return Objective(make_net(kind), (X, y), **kwargs)  # type: ignore[arg-type]


def test_grid_centre_equals_the_objective_value(net_kind: str) -> None:
    obj = objective(net_kind, batch_size=7)
    res = loss_landscape_2d(obj, steps=5, seed=0)
    assert res.loss.shape == (5, 5)
    assert res.loss[2, 2] == obj.value().item()
    assert res.evaluations == 25
    assert not np.allclose(res.loss, res.loss[2, 2])


def test_directions_are_filter_normalized_and_zero_on_1d_parameters(net_kind: str) -> None:
    obj = objective(net_kind)
    dirs = filter_normalized_directions(obj, count=2, seed=3)
    assert dirs.shape == (2, obj.dim) and dirs.dtype == obj.dtype
    theta = obj.unflatten(obj.theta0)
    for d in dirs:
        parts = obj.unflatten(d)
        for name, w in theta.items():
            if w.ndim < 2:
                assert (parts[name] == 0).all(), name
            else:
                torch.testing.assert_close(
                    parts[name].reshape(w.shape[0], -1).norm(dim=1),
                    w.reshape(w.shape[0], -1).norm(dim=1),
                    rtol=1e-12,
                    atol=0.0,
                )
    assert not torch.allclose(dirs[0], dirs[1])


def test_direction_norms_match_the_weights() -> None:
    obj = objective("conv")
    res = loss_landscape_2d(obj, steps=3, seed=0, accuracy=False)
    weights = torch.cat([w.reshape(-1) for w in obj.unflatten(obj.theta0).values() if w.ndim >= 2])
    for norm in res.direction_norms:
        assert math.isclose(norm, weights.norm().item(), rel_tol=1e-12)
    assert math.isclose(res.theta_norm, obj.theta0.norm().item())


def test_reproducible_by_seed() -> None:
    obj = objective("relu_mlp")
    a = loss_landscape_2d(obj, steps=3, seed=7)
    b = loss_landscape_2d(obj, steps=3, seed=7)
    c = loss_landscape_2d(obj, steps=3, seed=8)
    np.testing.assert_array_equal(a.loss, b.loss)
    assert not np.allclose(a.loss, c.loss)
    assert a.seed == 7 and a.normalization == "filter"
    torch.testing.assert_close(
        filter_normalized_directions(obj, seed=7), filter_normalized_directions(obj, seed=7)
    )


def test_grid_orientation_and_points() -> None:
    obj = objective("mlp")
    res = loss_landscape_2d(obj, span=(-0.5, 1.0), steps=(3, 4), seed=1)
    assert res.loss.shape == (4, 3) and len(res.xs) == 3 and len(res.ys) == 4
    d1, d2 = filter_normalized_directions(obj, seed=1)
    for i, j in [(0, 2), (3, 0), (1, 1)]:
        theta = obj.theta0 + float(res.xs[j]) * d1 + float(res.ys[i]) * d2
        assert math.isclose(res.loss[i, j], obj.value(theta).item(), rel_tol=1e-12)


def test_given_directions() -> None:
    obj = objective("mlp")
    gen = torch.Generator().manual_seed(0)
    d1 = torch.randn(obj.dim, generator=gen, dtype=torch.float64)
    d2 = torch.randn(obj.dim, generator=gen, dtype=torch.float64)
    res = loss_landscape_2d(obj, span=(0.0, 1.0), steps=2, directions=(d1, d2))
    assert res.normalization == "given" and res.seed is None
    assert math.isclose(res.loss[0, 1], obj.value(obj.theta0 + d1).item(), rel_tol=1e-12)
    assert math.isclose(res.loss[1, 0], obj.value(obj.theta0 + d2).item(), rel_tol=1e-12)
    with pytest.raises(ValueError, match=r"obj\.dim"):
        loss_landscape_2d(obj, directions=(d1[:-1], d2))
    with pytest.raises(ValueError, match="two vectors"):
        loss_landscape_2d(obj, directions=(d1,))


def test_accuracy_grid() -> None:
    obj = objective("bn_mlp", n=30, batch_size=8)
    res = loss_landscape_2d(obj, steps=3, seed=0)
    assert res.accuracy is not None and res.accuracy.shape == (3, 3)
    assert ((res.accuracy >= 0) & (res.accuracy <= 1)).all()
    X, y = make_data(n=30)
    with torch.no_grad():
        expected = (obj.model(X).argmax(1) == y).double().mean().item()
    assert math.isclose(res.accuracy[1, 1], expected)
    assert loss_landscape_2d(obj, steps=3, accuracy=False).accuracy is None


def test_custom_batch_loss_gives_loss_without_accuracy() -> None:
    X, y = make_data(n=12)
    net = make_net("mlp")

    def batch_loss(fn, batch):  # type: ignore[no-untyped-def]
        return F.cross_entropy(fn(batch["x"]), batch["y"])

    obj = Objective(net, [{"x": X, "y": y}], batch_loss=batch_loss)
    res = loss_landscape_2d(obj, steps=3)
    assert res.accuracy is None
    assert res.loss[1, 1] == obj.value().item()


def test_model_not_mutated_and_frame() -> None:
    obj = objective("conv")
    before = copy.deepcopy(obj.model.state_dict())
    res = loss_landscape_2d(obj, steps=3)
    for k, v in obj.model.state_dict().items():
        assert torch.equal(v, before[k])
    assert isinstance(res, LandscapeResult)
    df = res.to_frame()
    assert list(df.columns) == ["x", "y", "metric", "value"] and len(df) == 2 * 9
    centre = df[(df.x == 0.0) & (df.y == 0.0) & (df.metric == "loss")]["value"].item()
    assert centre == res.loss[1, 1]
    assert repr(res).startswith("LandscapeResult(grid=3x3")
    assert res.to_dict(include_arrays=False)["seed"] == 0


def test_bad_arguments_raise() -> None:
    obj = objective("mlp")
    with pytest.raises(ValueError, match="span"):
        loss_landscape_2d(obj, span=(1.0, -1.0))
    with pytest.raises(ValueError, match="steps"):
        loss_landscape_2d(obj, steps=0)
    with pytest.raises(ValueError, match="count"):
        filter_normalized_directions(obj, count=0)
