"""Determinism: no strategy is chosen by timing when asked, and every choice is recorded.

``strategy="auto"`` picks the faster of two strategies by timing them (issue 17 item
11: Hutch++ traces differed by up to 3e-7 relative between identical runs). The tests
replace the operator's clock with one that gives other timings on every call, so a
choice made by timing flips between two runs; with ``deterministic=True`` the two runs
must still agree to the last bit, and the results name the choices made.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

import flatness as fl
import flatness.curvature.hessian as hessian_module
from flatness.curvature.hessian import HessianOperator
from flatness.curvature.objective import Objective
from flatness.curvature.options import HessianOptions, deterministic_hessian


class FlippingClock:
    """A stand-in for :class:`flatness.results.Meter` whose timings alternate.

    Of two things timed in turn, the first is the faster; after :meth:`flip`, the
    second.
    """

    uses = itertools.count()
    shift = 0

    def __init__(self, op: Any = None) -> None:
        self.seconds = 1.0 + 10.0 * ((next(self.uses) + self.shift) % 2)

    @classmethod
    def flip(cls) -> None:
        """Make the other of two timed things the faster from now on."""
        cls.shift += 1

    def __enter__(self) -> FlippingClock:
        return self

    def __exit__(self, *exc: object) -> None:
        return None


@pytest.fixture
def flipping_clock(monkeypatch: pytest.MonkeyPatch) -> Iterator[type[FlippingClock]]:
    """The operator's timings alternate: a choice made by timing differs run to run."""
    FlippingClock.uses = itertools.count()
    FlippingClock.shift = 0
    monkeypatch.setattr(hessian_module, "Meter", FlippingClock)
    yield FlippingClock


def _objective() -> Objective:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(6, 16), nn.BatchNorm1d(16), nn.Tanh(), nn.Linear(16, 3))
    X, y = torch.randn(96, 6), torch.randint(0, 3, (96,))
    return Objective(net, (X, y), batch_size=32)


#: Every curvature estimator that multiplies with a Hessian operator.
ESTIMATORS: dict[str, Callable[..., Any]] = {
    # an explicit basis and no verification: memory_budget=0 also asks for the smallest
    # basis and for residuals measured by a block product instead of from kept products
    "lanczos": lambda obj, h: fl.hessian_eigenvalues(
        obj, k=2, basis_size=14, verify=False, hessian=h
    ),
    "power": lambda obj, h: fl.power_iteration(obj, k=1, maxiter=30, hessian=h),
    "hutchpp": lambda obj, h: fl.hessian_trace(obj, method="hutchpp", budget=30, hessian=h),
    "hutchinson": lambda obj, h: fl.hessian_trace(obj, method="hutchinson", budget=20, hessian=h),
    "density": lambda obj, h: fl.spectral_density(obj, steps=12, runs=3, hessian=h),
}


def _bits(result: Any) -> list[Any]:
    """The numbers of a result as exact bit patterns (floats as hex)."""
    return [
        (r.component, float(r.value).hex(), None if r.error is None else float(r.error).hex())
        for r in result.records()
    ]


@pytest.mark.parametrize("name", sorted(ESTIMATORS))
@pytest.mark.parametrize("memory_budget", [None, 0])
def test_deterministic_runs_are_bit_identical_whatever_the_timings(
    name: str, memory_budget: int | None, flipping_clock: type[FlippingClock]
) -> None:
    obj = _objective()
    options = HessianOptions(deterministic=True, memory_budget=memory_budget)
    first = ESTIMATORS[name](obj, options)
    flipping_clock.flip()
    second = ESTIMATORS[name](obj, options)
    assert _bits(first) == _bits(second)
    choices = first.details()["choices"]
    assert choices == second.details()["choices"]
    assert choices["deterministic"] is True and choices["strategy"] == "auto"
    assert choices["batches"] == 3
    assert choices["retained_batches"] == (3 if memory_budget is None else 0)
    assert choices["fallback"] == (None if memory_budget is None else "double_backward")
    assert choices["batched"] is False
    assert choices["threads"] == torch.get_num_threads()
    assert json.loads(json.dumps(choices)) == choices  # plain data, as the store keeps it


@pytest.mark.parametrize("name", sorted(ESTIMATORS))
def test_retaining_graphs_or_not_gives_the_same_bits(name: str) -> None:
    """How many graphs fit in memory varies between runs; the bits must not."""
    obj = _objective()
    retained, rebuilt = (
        ESTIMATORS[name](obj, HessianOptions(deterministic=True, memory_budget=budget))
        for budget in (None, 0)
    )
    assert retained.choices["retained_batches"] == 3 and rebuilt.choices["retained_batches"] == 0
    assert _bits(retained) == _bits(rebuilt)


def test_without_determinism_the_timed_choices_are_recorded(
    flipping_clock: type[FlippingClock],
) -> None:
    obj = _objective()
    options = HessianOptions(deterministic=False, memory_budget=0)
    made = []
    for _ in range(2):
        run = fl.hessian_trace(obj, method="hutchpp", budget=30, hessian=options)
        made.append(run.details()["choices"])
        flipping_clock.flip()
    assert all(c["deterministic"] is False for c in made)
    # the flipping clock made the two runs choose differently, and the results say so
    assert {made[0]["fallback"], made[1]["fallback"]} == {
        "double_backward",
        "forward_over_reverse",
    }
    assert {made[0]["batched"], made[1]["batched"]} == {True, False}


def test_a_deterministic_block_equals_its_columns() -> None:
    obj = _objective()
    V = torch.randn(obj.dim, 5, generator=torch.Generator().manual_seed(1))
    with HessianOperator(obj, deterministic=True, memory_budget=0) as H:
        block = H.matmat(V)
        columns = torch.stack([H.matvec(V[:, i]) for i in range(5)], dim=1)
    assert torch.equal(block, columns)


def test_the_ambient_default_and_explicit_settings() -> None:
    obj = _objective()
    assert HessianOperator(obj).deterministic is False
    with deterministic_hessian():
        assert HessianOperator(obj).deterministic is True
        assert HessianOperator(obj, deterministic=False).deterministic is False
        assert HessianOperator(obj, batched=True).numerics["batched"] is True
    assert HessianOperator(obj).deterministic is False


def test_a_caller_built_operator_and_a_plain_matrix_record_their_choices() -> None:
    obj = _objective()
    with HessianOperator(obj, deterministic=True) as H:
        mine = fl.hessian_trace(H, method="hutchpp", budget=30)
    assert mine.choices["deterministic"] is True
    dense = fl.hessian_trace(fl.DenseOperator(torch.eye(4)), method="hutchpp", budget=12)
    assert dense.choices == {}


def test_score_is_deterministic_and_stores_the_choices(tmp_path: Path) -> None:
    from tests.pipeline.conftest import manifest_text, save_run

    save_run(tmp_path / "run.pt", 0)
    (tmp_path / "manifest.toml").write_text(
        manifest_text(["run.pt"], measures='trace = { method = "hutchpp", budget = 12 }')
    )
    frames = []
    for store in ("a.sqlite", "b.sqlite"):
        assert fl.score(tmp_path / "manifest.toml", store=tmp_path / store).ok
        frames.append(fl.load_results(tmp_path / store, details=True))
    a, b = frames
    assert [v.hex() for v in a["value"]] == [v.hex() for v in b["value"]]
    details = json.loads(a["details"].iloc[0])
    assert details["choices"]["deterministic"] is True
    assert details["choices"]["batched"] is False
    # the setting is no measure setting: the task keys are the manifest's
    assert "deterministic" not in a["settings"].iloc[0]
