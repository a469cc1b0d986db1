"""The measure registry: settings, tasks, registered measures and what they return."""

from __future__ import annotations

import math
from collections.abc import Iterator

import pytest
import torch

import flatness as fl
from flatness.pipeline.measures import (
    BUILT_IN_MEASURES,
    MEASURES,
    Measure,
    MeasureValue,
    get_measure,
    register_measure,
    settings_label,
)
from flatness.results import gradient_equivalents

OPAQUE = object()


@pytest.fixture
def objective() -> fl.Objective:
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(3, 2))
    return fl.Objective(net, (torch.randn(8, 3), torch.randint(0, 2, (8,))))


@pytest.fixture
def registry() -> Iterator[None]:
    before = dict(MEASURES)
    yield
    MEASURES.clear()
    MEASURES.update(before)


def test_a_registered_measure_takes_its_settings_from_the_signature(
    objective: fl.Objective, registry: None
) -> None:
    def scaled(objective: fl.Objective, *, scale_factor: float = 2.0, seed: int = 0) -> float:
        return scale_factor * float(objective.theta0.sum())

    measure = register_measure("scaled", scaled, sweep=["scale"], rename={"scale": "scale_factor"})
    assert get_measure("scaled") is measure and "scaled" not in BUILT_IN_MEASURES
    assert measure.defaults() == {"scale": 2.0, "seed": 0}
    tasks = list(measure.tasks({"scale": [1.0, 3.0]}))
    assert tasks == [{"scale": 1.0, "seed": 0}, {"scale": 3.0, "seed": 0}]
    result = measure.compute(objective, tasks[1])
    assert isinstance(result, MeasureValue) and result.settings == {"scale_factor": 3.0, "seed": 0}
    assert result.value == pytest.approx(3.0 * float(objective.theta0.sum()))
    assert result.seconds >= 0 and result.converged is True
    records, details = measure.run(objective, tasks[0])
    assert [(r.component, r.error, r.error_kind) for r in records] == [("", None, None)]
    assert details["value"] == records[0].value
    # Registering the name again replaces it (a re-run cell, a plugin imported twice).
    assert register_measure("scaled", lambda objective: 1.0).defaults() == {}


def test_a_measure_value_keeps_its_error_bar(objective: fl.Objective, registry: None) -> None:
    measure = register_measure("with_error", lambda objective: MeasureValue(1.5, stderr=0.25))
    records, _ = measure.run(objective, {})
    assert [(r.value, r.error, r.error_kind) for r in records] == [(1.5, 0.25, "stderr")]


@pytest.mark.parametrize(
    ("name", "function", "error", "match"),
    [
        ("2fast", lambda objective: 0.0, ValueError, "letters, digits"),
        ("parametric_plot", lambda objective: 0.0, ValueError, "built-in"),
        ("no_objective", lambda *, a=1: 0.0, TypeError, "first positional"),
        ("object_default", lambda objective, *, a=OPAQUE: 0.0, TypeError, "plain data"),
    ],
)
def test_register_measure_refuses_what_a_manifest_could_not_use(
    name: str, function: object, error: type[Exception], match: str, registry: None
) -> None:
    with pytest.raises(error, match=match):
        register_measure(name, function)  # type: ignore[arg-type]
    assert name not in MEASURES


def test_built_in_measures_key_their_tasks_by_the_settings_they_list() -> None:
    # A keyword an estimator gains later (an options object, a warm start) does not
    # enter the settings, so stored task keys stay the same.
    for name in BUILT_IN_MEASURES:
        measure = get_measure(name)
        assert measure.accepts is not None
        inverse = {v: k for k, v in measure.rename.items()}
        assert set(measure.defaults()) == {inverse.get(k, k) for k in measure.accepts}
    broken = Measure("broken", "flatness.curvature.trace:hessian_trace", accepts=("nope",))
    with pytest.raises(TypeError, match="no keyword-only"):
        broken.defaults()


def test_settings_label_is_deprecated_for_the_report_label() -> None:
    with pytest.warns(DeprecationWarning, match="measure_label"):
        label = settings_label("keskar", {"eps": 1e-3, "subspace": 0}, ("eps", "subspace"))
    assert label == "ε-sharpness (full, ε=1e-3)"


def test_a_measure_values_gradient_equivalents_follow_its_counted_cost() -> None:
    # The contract's gradient_equivalents is the counted cost in full gradients, the
    # same for a user's measure as for the built-in estimators; NaN only when nothing
    # was counted.
    counted = MeasureValue(1.0, matvecs=10, evaluations=3, gradients=1)
    assert counted.gradient_equivalents == gradient_equivalents(
        matvecs=10, evaluations=3, gradients=1
    )
    assert math.isnan(MeasureValue(1.0).gradient_equivalents)
    assert MeasureValue(1.0, gradients=4, gradient_equivalents=2.5).gradient_equivalents == 2.5
