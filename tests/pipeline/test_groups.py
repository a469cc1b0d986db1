"""Per-layer and per-block scoring: [scoring] groups, --groups, one task per group."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch.func import functional_call, hessian

from flatness.dataset import coerce_data
from flatness.pipeline.groups import GroupError, parameter_groups
from flatness.pipeline.manifest import ManifestError, read_manifest
from flatness.pipeline.scoring import score, training_subset
from tests.pipeline.conftest import REPO, manifest_text
from tests.pipeline.factories import three_layer_net, tiny_data

MEASURES = (
    'lambda_max = { k = 1, tol = 1e-8 }\ntrace = { method = "exact" }\n'
    "keskar = { eps = 1e-3, maxiter = 2 }"
)


def _sweep(tmp_path: Path, extra: str = "") -> Path:
    for i in range(2):
        torch.save(three_layer_net(seed=i).state_dict(), tmp_path / f"r{i}.pt")
    text = manifest_text(
        ["r0.pt", "r1.pt"],
        measures=MEASURES,
        model='factory = "tests.pipeline.factories:three_layer_net"',
    )
    text = text.replace("examples = 30\n", f"examples = 30\n{extra}")
    (tmp_path / "m.toml").write_text(text)
    return tmp_path / "m.toml"


def _rows(store: Path) -> list[tuple[str, str, str, float]]:
    with sqlite3.connect(store) as db:
        rows = db.execute(
            "SELECT r.path, m.measure, m.settings, m.value FROM measurements m "
            "JOIN runs r ON r.checkpoint = m.checkpoint ORDER BY 1, 2, 3"
        ).fetchall()
    return [(Path(p).name, *rest) for p, *rest in rows]


def _block_hessian(net: torch.nn.Module, group: str, x: torch.Tensor, y: torch.Tensor):
    params = {n: p.detach() for n, p in net.named_parameters()}
    chosen = [n for n in params if n.startswith(group + ".")]

    def loss(flat: torch.Tensor) -> torch.Tensor:
        parts, offset = {}, 0
        for n in chosen:
            parts[n] = flat[offset : offset + params[n].numel()].reshape(params[n].shape)
            offset += params[n].numel()
        return F.cross_entropy(functional_call(net, {**params, **parts}, (x,)), y)

    flat = torch.cat([params[n].reshape(-1) for n in chosen])
    return hessian(loss)(flat)


def test_each_block_is_scored_and_the_whole_networks_keys_stay(tmp_path: Path) -> None:
    plain = tmp_path / "plain"
    grouped = tmp_path / "grouped"
    plain.mkdir(), grouped.mkdir()
    assert score(_sweep(plain), store=plain / "s.sqlite").ok
    summary = score(_sweep(grouped, 'groups = "blocks"\n'), store=grouped / "s.sqlite")
    assert summary.ok, summary.failures
    # 2 runs x (whole network: 3 measures + 3 blocks x 2 measures that take groups)
    assert summary.computed == 2 * (3 + 3 * 2)
    rows = _rows(grouped / "s.sqlite")
    whole = [r for r in rows if "group" not in json.loads(r[2])]
    assert whole == _rows(plain / "s.sqlite")  # same keys, same values
    groups = {json.loads(r[2])["group"] for r in rows if "group" in json.loads(r[2])}
    assert groups == {"0", "2", "4"}
    assert not [r for r in rows if r[1] == "keskar" and "group" in r[2]]
    # each group's numbers are its Hessian block's (float64, dense reference)
    x, y = training_subset(coerce_data(tiny_data(), name="t", settings={}), 30, seed=0)
    net = three_layer_net(seed=0).double()
    for group in ("0", "2", "4"):
        block = _block_hessian(net, group, x.double(), y)
        got = {
            m: v
            for p, m, s, v in rows
            if p.endswith("r0.pt") and json.loads(s).get("group") == group
        }
        assert got["lambda_max"] == pytest.approx(float(torch.linalg.eigvalsh(block)[-1]), rel=1e-6)
        assert got["trace"] == pytest.approx(float(block.trace()), rel=1e-8)


def test_named_groups_and_a_group_that_matches_nothing(tmp_path: Path) -> None:
    summary = score(_sweep(tmp_path, 'groups = ["4", "0.weight"]\n'), store=tmp_path / "s.sqlite")
    assert summary.ok, summary.failures
    groups = {json.loads(r[2]).get("group") for r in _rows(tmp_path / "s.sqlite")}
    assert groups == {None, "4", "0.weight"}
    with pytest.raises(
        GroupError,
        match=r"m\.toml: \[scoring\] groups: 'features' matches no.*names: 0, 2, 4, 0\.weight",
    ):
        score(tmp_path / "m.toml", store=tmp_path / "t.sqlite", groups=("features",))
    with pytest.raises(ManifestError, match=r"\[scoring\] groups: must be \"blocks\" or a list"):
        read_manifest(_sweep(tmp_path, "groups = 3\n"))


def test_blocks_of_a_model_without_children() -> None:
    with pytest.raises(GroupError, match="no top-level child"):
        parameter_groups(torch.nn.Linear(2, 2), "blocks")
    assert parameter_groups(torch.nn.Linear(2, 2), ["weight"]) == ("weight",)


def test_the_command_takes_groups(tmp_path: Path) -> None:
    manifest = _sweep(tmp_path)
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "flatness",
            "score",
            str(manifest),
            "--groups",
            "0,4",
            "--measures",
            "lambda_max",
            "--no-progress",
        ],
        env={**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr
    assert "6 tasks computed" in out.stdout
