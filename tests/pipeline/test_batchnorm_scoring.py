"""Scoring a checkpoint with stale BatchNorm statistics: said, recorded, recomputed if asked."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch

from flatness.batchnorm import StaleBatchNormWarning
from flatness.pipeline.scoring import score
from tests.pipeline.conftest import REPO, manifest_text
from tests.pipeline.factories import bn_net, stale_bn_net


def _sweep(tmp_path: Path, extra: str = "") -> Path:
    torch.save(stale_bn_net().state_dict(), tmp_path / "stale.pt")
    torch.save(bn_net().state_dict(), tmp_path / "fresh.pt")
    text = manifest_text(
        ["stale.pt", "fresh.pt"],
        measures="lambda_max = { k = 1 }",
        model='factory = "tests.pipeline.factories:bn_net"',
    )
    text = text.replace("examples = 30\n", f"examples = 40\nbatch_size = 40\n{extra}")
    (tmp_path / "m.toml").write_text(text)
    return tmp_path / "m.toml"


def _meta(store: Path) -> dict[str, dict]:
    with sqlite3.connect(store) as db:
        rows = db.execute("SELECT path, meta, train_loss FROM runs").fetchall()
    return {Path(p).name: {**json.loads(m), "train_loss": loss} for p, m, loss in rows}


def test_stale_statistics_are_warned_about_once_and_recorded(tmp_path: Path) -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        summary = score(_sweep(tmp_path), store=tmp_path / "s.sqlite")
    assert summary.ok, summary.failures
    stale = [w for w in caught if issubclass(w.category, StaleBatchNormWarning)]
    assert len(stale) == 1  # once, for the stale checkpoint only
    text = str(stale[0].message)
    assert "stale.pt" in text and "recompute_batchnorm = true" in text
    assert "--recompute-batchnorm" in text
    meta = _meta(tmp_path / "s.sqlite")
    note = meta["stale.pt"]["batchnorm"]
    assert note["stale"] and not note["recomputed"]
    assert f"{note['eval_loss']:.4g}" in text and f"{note['train_mode_loss']:.4g}" in text
    assert not meta["fresh.pt"]["batchnorm"]["stale"]


def test_recomputed_statistics_bring_the_eval_loss_to_the_train_mode_loss(
    tmp_path: Path,
) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error", StaleBatchNormWarning)
        summary = score(
            _sweep(tmp_path, "recompute_batchnorm = true\n"), store=tmp_path / "s.sqlite"
        )
    assert summary.ok, summary.failures
    note = _meta(tmp_path / "s.sqlite")["stale.pt"]["batchnorm"]
    assert note["recomputed"] and note["before"]["stale"] and not note["stale"]
    assert note["eval_loss"] == pytest.approx(note["train_mode_loss"], rel=0.05)
    # the stored train loss is the recomputed model's, far below the stale one
    assert _meta(tmp_path / "s.sqlite")["stale.pt"]["train_loss"] < note["before"]["eval_loss"] / 2
    # recomputing changes every number: the same store refuses the other objective
    with pytest.raises(ValueError, match="recompute_batchnorm = True → False"):
        score(tmp_path / "m.toml", store=tmp_path / "s.sqlite", recompute_batchnorm=False)


def test_the_command_takes_recompute_batchnorm(tmp_path: Path) -> None:
    manifest = _sweep(tmp_path)
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "flatness",
            "score",
            str(manifest),
            "--recompute-batchnorm",
            "--no-progress",
            "--store",
            str(tmp_path / "c.sqlite"),
        ],
        env={**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr
    assert "StaleBatchNormWarning" not in out.stderr
    assert _meta(tmp_path / "c.sqlite")["stale.pt"]["batchnorm"]["recomputed"]


def test_the_objective_of_a_manifest_recomputes_too(tmp_path: Path) -> None:
    from flatness.pipeline.objective_setup import scoring_objective

    manifest = _sweep(tmp_path, "recompute_batchnorm = true\n")
    assert score(manifest, store=tmp_path / "s.sqlite").ok
    objective = scoring_objective(manifest, tmp_path / "stale.pt")
    stored = _meta(tmp_path / "s.sqlite")["stale.pt"]["train_loss"]
    assert float(objective.value()) == pytest.approx(stored, rel=1e-10)
