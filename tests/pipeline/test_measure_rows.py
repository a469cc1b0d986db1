"""Every built-in measure stores the rows it stored before results had one contract.

The expectations below were captured from the per-measure converters that
``flatness/pipeline/measures.py`` had before the result contract (``_eigen_records``,
``_trace_records``, ``_density_records``, ``_scalar_records``, ``_noise_records``): the
store's task keys (measure + settings JSON), components, values, error bars, error kinds,
convergence flags and product counts must not change, or existing stores would hold rows
that a rerun could not reproduce.
"""

from __future__ import annotations

import json
import sqlite3
from contextlib import closing
from pathlib import Path

import pytest

import flatness as fl
from flatness.pipeline.measures import MEASURES
from tests.pipeline.conftest import manifest_text, save_run

ALL_MEASURES = """\
lambda_max = { k = 2 }
trace = { method = "hutchpp", budget = 12 }
density = { steps = 8, runs = 2 }
keskar = { eps = [1e-3], subspace = [0, 5], maxiter = 3, solver = "lbfgsb" }
adaptive_sharpness = { rho = 0.05, steps = 3 }
average_sharpness = { sigma = 0.01, samples = 4 }
pacbayes = { samples = 4, max_iterations = 8 }
noise_scale = { groups = 4 }
gradient_norm = {}
weight_norm = {}
"""

_LAMBDA = (
    '{"basis_size": null, "k": 2, "max_matvecs": null, "multiplicity_check": true, '
    '"seed": 0, "tol": 0.0001, "which": "LA"}'
)
_DENSITY = '{"distribution": "rademacher", "runs": 2, "seed": 0, "steps": 8}'
_KESKAR = (
    '{{"eps": 0.001, "maxiter": 3, "seed": 0, "solver": "lbfgsb", "start": "random", '
    '"subspace": {}}}'
)
_TRACE = '{"budget": 12, "method": "hutchpp", "seed": 0, "target_stderr": null}'
_NOISE = '{"chunk_size": 128, "groups": 4, "method": "examples", "seed": 0, "vectorize": true}'
_PACBAYES = (
    '{"criterion": "loss", "epsilon": 0.001, "magnitude_aware": false, "max_iterations": 8, '
    '"rtol": 0.01, "samples": 4, "seed": 0, "sigma_bounds": [1e-06, 10.0], "threshold": 0.1}'
)

# (measure, settings, component, value, error, error_kind, converged, matvecs)
BEFORE = [
    (
        "adaptive_sharpness",
        '{"adaptive": true, "eta": 0.0, "m": null, "p": 2, "rho": 0.05, "seed": 0, '
        '"step_size": null, "steps": 3}',
        "",
        0.004868805972049417,
        None,
        None,
        None,
        None,
    ),
    (
        "average_sharpness",
        '{"adaptive": true, "eta": 0.0, "samples": 4, "seed": 0, "sigma": 0.01}',
        "",
        0.00040141673663951494,
        0.00075674086511918,
        "stderr",
        None,
        None,
    ),
    (
        "density",
        _DENSITY,
        "frobenius2",
        1.863461742919619,
        0.024088675414712896,
        "stderr",
        None,
        None,
    ),
    ("density", _DENSITY, "ritz_max", 0.6595479530208231, None, None, None, None),
    ("density", _DENSITY, "ritz_min", -0.422556687070277, None, None, None, None),
    ("density", _DENSITY, "trace", 3.31771614560163, 1.2823079362680028, "stderr", None, None),
    # gradient_norm and weight_norm came after the contract; their values are hand-checked
    # in tests/sharpness/test_norms.py
    ("gradient_norm", "{}", "", 0.4275706942616635, None, None, None, None),
    ("gradient_norm", "{}", "inf", 0.21871572892049612, None, None, None, None),
    ("keskar", _KESKAR.format(0), "", 0.1153583391454251, None, None, None, None),
    ("keskar", _KESKAR.format(5), "", 0.11268453979568847, None, None, None, None),
    # issue 19: no complement search without a cluster, residuals from the kept products
    ("lambda_max", _LAMBDA, "1", 0.6597429538416114, 3.52666907404911e-11, "residual", True, 22),
    ("lambda_max", _LAMBDA, "2", 0.4994426108875549, 4.04048486195486e-05, "residual", True, 22),
    ("noise_scale", _NOISE, "", 18.61321680709057, 46.86656946118478, "stderr", None, None),
    (
        "noise_scale",
        _NOISE,
        "grad_norm_sq",
        0.11281913269607116,
        0.14562989148762948,
        "stderr",
        None,
        None,
    ),
    (
        "noise_scale",
        _NOISE,
        "trace_cov",
        2.099926976859893,
        0.4210434627655664,
        "stderr",
        None,
        None,
    ),
    ("pacbayes", _PACBAYES, "", 11.547819846894583, None, None, False, None),
    ("trace", _TRACE, "", 1.6340142301476557, 0.48216254828980654, "stderr", True, 12),
    ("weight_norm", "{}", "", 1.7097754756448622, None, None, None, None),
    ("weight_norm", "{}", "weights", 1.5227869285623785, None, None, None, None),
]

# What the store kept as ``details`` beside the rows (new keys may be added, none lost).
DETAILS_KEYS = {
    k: set(v.split())
    for k, v in {
        "adaptive_sharpness": (
            "adaptive chunks eta evaluations gradients loss m max_loss p rho seconds seed "
            "stderr step_size steps value"
        ),
        "average_sharpness": (
            "adaptive eta evaluations loss perturbed_loss samples seconds seed sigma stderr value"
        ),
        "density": "dim lanczos_steps nodes runs sigma steps weights",
        "gradient_norm": "dim inf_norm loss seconds value",
        "weight_norm": "dim seconds value weights weights_dim",
        "keskar": (
            "at_bound dim eps evaluations gradients iterations loss max_loss maxiter message "
            "projected_gradient seconds seed solver start status subspace subspace_dim "
            "success value"
        ),
        "lambda_max": (
            "converged dim eigenvalues iterations k matvecs method multiplicity_checked "
            "residuals restarts seconds seed tol which"
        ),
        "noise_scale": (
            "b_simple b_simple_stderr grad_norm_sq grad_norm_sq_biased grad_norm_sq_stderr "
            "groups mean_batch_size method num_examples num_gradients seconds seed trace_cov "
            "trace_cov_stderr"
        ),
        "pacbayes": (
            "base bracket converged criterion deviation deviation_stderr epsilon evaluations "
            "iterations magnitude_aware measure samples seconds seed sigma status threshold "
            "value"
        ),
        "trace": (
            "budget converged distribution estimate matvecs method probes relative_target "
            "seconds seed sketch_rank stderr target_stderr"
        ),
    }.items()
}


@pytest.fixture(scope="module")
def stored(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One checkpoint scored with every built-in measure."""
    folder = tmp_path_factory.mktemp("all-measures")
    save_run(folder / "a.pt", 0)
    (folder / "manifest.toml").write_text(manifest_text(["a.pt"], measures=ALL_MEASURES))
    summary = fl.score(folder / "manifest.toml", store=folder / "r.sqlite")
    assert summary.ok, summary.failures
    return folder / "r.sqlite"


def _rows(store: Path) -> list[tuple]:
    with closing(sqlite3.connect(store)) as db:
        return db.execute(
            "SELECT measure, settings, component, value, error, error_kind, converged, matvecs, "
            "details FROM measurements ORDER BY measure, settings, component"
        ).fetchall()


def test_every_built_in_measure_is_covered() -> None:
    assert {row[0] for row in BEFORE} == set(MEASURES)


def test_stored_rows_are_the_rows_stored_before(stored: Path) -> None:
    rows = _rows(stored)
    assert [r[:3] for r in rows] == [b[:3] for b in BEFORE]  # task keys and components
    for row, before in zip(rows, BEFORE, strict=True):
        measure, _, component, value, error, kind, converged, matvecs, _ = row
        where = f"{measure} {component!r}"
        assert value == pytest.approx(before[3], rel=1e-6, abs=1e-12), where
        if before[4] is None:
            assert error is None, where
        else:
            assert error == pytest.approx(before[4], rel=1e-5, abs=1e-9), where
        assert kind == before[5], where
        assert (None if converged is None else bool(converged)) == before[6], where
        assert matvecs == before[7], where


def test_stored_details_keep_their_fields(stored: Path) -> None:
    for measure, *_, details in _rows(stored):
        kept = json.loads(details)
        assert DETAILS_KEYS[measure] <= set(kept), measure
    density = next(json.loads(r[-1]) for r in _rows(stored) if r[0] == "density")
    assert len(density["nodes"]) == len(density["weights"]) == 2
