"""Keskar's subspace ε-sharpness over several random subspaces: mean, spread, store keys."""

from __future__ import annotations

import json
import math
import sqlite3
from contextlib import closing
from pathlib import Path

import numpy as np
import pytest
import torch

import flatness as fl
from flatness.curvature.objective import Objective
from flatness.pipeline.measures import get_measure
from flatness.sharpness.keskar import KeskarResult, keskar_sharpness
from flatness.sharpness.keskar_draws import (
    KeskarDrawsResult,
    draw_seed,
    keskar_measure,
    keskar_subspace_draws,
)
from tests.conftest import make_data, make_net
from tests.pipeline.conftest import manifest_text, save_run
from tests.test_result_contract import check_to_dict_holds_the_contract


@pytest.fixture(scope="module")
def obj() -> Objective:
    X, y = make_data(24)
    return Objective(make_net("relu_mlp"), (X, y), batch_size=8, dtype=torch.float64)


def test_draws_are_independent_subspaces_whose_first_is_the_single_draw(obj: Objective) -> None:
    res = keskar_subspace_draws(obj, subspace_dim=4, draws=3, solver="pga", maxiter=3, seed=5)
    assert res.seeds == (5, draw_seed(5, 1), draw_seed(5, 2)) and len(set(res.seeds)) == 3
    for seed, value in zip(res.seeds, res.values, strict=True):
        single = keskar_sharpness(obj, subspace_dim=4, solver="pga", maxiter=3, seed=seed)
        assert value == pytest.approx(single.value, rel=1e-12)
    assert len(set(res.values)) == 3  # different subspaces give different values
    assert res.value == pytest.approx(np.mean(res.values))
    assert res.spread == pytest.approx(np.std(res.values, ddof=1))
    assert res.stderr == pytest.approx(res.spread / math.sqrt(3))
    rows = res.records()
    assert [r.component for r in rows] == ["", "draw1", "draw2", "draw3"]
    assert (rows[0].value, rows[0].error, rows[0].error_kind) == (
        res.value,
        res.stderr,
        "stderr",
    )
    assert all(r.converged is None for r in rows)
    check_to_dict_holds_the_contract(res)
    again = keskar_subspace_draws(obj, **res.settings)
    assert again.values == res.values


def test_the_measure_keeps_one_draw_and_the_full_space_as_before(obj: Objective) -> None:
    one = keskar_measure(obj, subspace_dim=4, solver="pga", maxiter=3)
    full = keskar_measure(obj, draws=3, solver="pga", maxiter=3)
    assert isinstance(one, KeskarResult) and isinstance(full, KeskarResult)
    assert full.subspace_dim is None
    several = keskar_measure(obj, subspace_dim=4, draws=2, solver="pga", maxiter=3)
    assert isinstance(several, KeskarDrawsResult) and several.values[0] == one.value
    with pytest.raises(ValueError, match="draws"):
        keskar_measure(obj, subspace_dim=4, draws=0)
    with pytest.raises(ValueError, match="at least 2"):
        keskar_subspace_draws(obj, subspace_dim=4, draws=1)


def test_task_keys_gain_draws_only_where_it_changes_the_task() -> None:
    tasks = list(get_measure("keskar").tasks({"eps": [1e-3], "subspace": [0, 5], "draws": 3}))
    assert ["draws" in t for t in tasks] == [False, True]
    assert all("draws" not in t for t in get_measure("keskar").tasks({"subspace": [0, 5]}))


def test_a_store_keeps_old_keys_and_stores_each_draw(tmp_path: Path) -> None:
    """The subspace's first draw is the value the single-draw task stored before
    (tests/pipeline/test_measure_rows.py's keskar row), the full-space task is unchanged."""
    save_run(tmp_path / "a.pt", 0)
    measures = (
        'keskar = { eps = [1e-3], subspace = [0, 5], maxiter = 3, solver = "lbfgsb", draws = 3 }'
    )
    (tmp_path / "manifest.toml").write_text(manifest_text(["a.pt"], measures=measures))
    assert fl.score(tmp_path / "manifest.toml", store=tmp_path / "r.sqlite").ok
    with closing(sqlite3.connect(tmp_path / "r.sqlite")) as db:
        rows = db.execute(
            "SELECT settings, component, value, error FROM measurements "
            "ORDER BY settings, component"
        ).fetchall()
    old = (
        '{{"eps": 0.001, "maxiter": 3, "seed": 0, "solver": "lbfgsb", "start": "random", '
        '"subspace": {}}}'
    )
    full = [r for r in rows if r[0] == old.format(0)]
    assert [(r[1], r[2]) for r in full] == [("", pytest.approx(0.1153583391454251, rel=1e-6))]
    sub = {r[1]: r for r in rows if json.loads(r[0]).get("draws") == 3}
    assert sorted(sub) == ["", "draw1", "draw2", "draw3"]
    assert sub["draw1"][2] == pytest.approx(0.11268453979568847, rel=1e-6)
    draws = [sub[f"draw{j}"][2] for j in (1, 2, 3)]
    assert sub[""][2] == pytest.approx(np.mean(draws))
    assert sub[""][3] == pytest.approx(np.std(draws, ddof=1) / math.sqrt(3))
