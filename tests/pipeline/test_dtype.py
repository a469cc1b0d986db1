"""Precision: low-precision checkpoints are analysed in float32 (said, recorded); --dtype
takes what the API takes (float32, float64, bfloat16, float16), with errors naming it."""

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

from flatness.pipeline.scoring import score
from flatness.pipeline.scoring_settings import SettingError
from tests.pipeline.conftest import REPO, manifest_text
from tests.pipeline.factories import tiny_net


def _sweep(tmp_path: Path) -> Path:
    state = {k: v.to(torch.bfloat16) for k, v in tiny_net(seed=0).state_dict().items()}
    torch.save(state, tmp_path / "bf16.pt")
    text = manifest_text(["bf16.pt"], measures="lambda_max = { k = 1 }")
    (tmp_path / "m.toml").write_text(text.replace('dtype = "float64"\n', ""))
    return tmp_path / "m.toml"


def _stored(store: Path) -> tuple[str, float, dict]:
    with sqlite3.connect(store) as db:
        dtype, value = db.execute("SELECT dtype, value FROM measurements").fetchone()
        (meta,) = db.execute("SELECT meta FROM runs").fetchone()
    return dtype, value, json.loads(meta)


def test_a_bfloat16_checkpoint_is_analysed_in_float32_said_and_recorded(tmp_path: Path) -> None:
    said: list[str] = []
    summary = score(_sweep(tmp_path), store=tmp_path / "s.sqlite", echo=said.append)
    assert summary.ok, summary.failures
    dtype, _, meta = _stored(tmp_path / "s.sqlite")
    assert dtype == "float32" and meta["checkpoint_dtype"] == "bfloat16"
    assert any("bf16.pt: stored in bfloat16, analysed in float32" in line for line in said)


def test_lower_precision_on_request_warns_with_the_measured_error(tmp_path: Path) -> None:
    manifest = _sweep(tmp_path)
    assert score(manifest, store=tmp_path / "f32.sqlite").ok
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        summary = score(manifest, store=tmp_path / "bf16.sqlite", dtype="bfloat16")
    assert summary.ok, summary.failures
    assert any("relative error" in str(w.message) for w in caught)
    dtype, low, _ = _stored(tmp_path / "bf16.sqlite")
    _, reference, _ = _stored(tmp_path / "f32.sqlite")
    assert dtype == "bfloat16"
    assert low == pytest.approx(reference, rel=0.25)  # 8 significant bits: roughly (-10% here)


def test_a_wrong_dtype_is_named(tmp_path: Path) -> None:
    with pytest.raises(
        SettingError,
        match=r"\[scoring\] dtype: must be one of \['float32', 'float64', 'bfloat16', 'float16'\]",
    ):
        score(_sweep(tmp_path), store=tmp_path / "s.sqlite", dtype="int8")
    out = subprocess.run(
        [sys.executable, "-m", "flatness", "score", str(tmp_path / "m.toml"), "--dtype", "int8"],
        env={**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 2 and "--dtype" in out.stderr and "bfloat16" in out.stderr
