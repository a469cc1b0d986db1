"""Fixtures: a folder of tiny checkpoints and a manifest that names them."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tests.pipeline.factories import tiny_net

REPO = Path(__file__).resolve().parents[2]


def save_run(path: Path, seed: int, *, meta: dict | None = None, scale: float = 1.0) -> Path:
    """A checkpoint of ``tiny_net`` with weights drawn from ``seed``."""
    net = tiny_net(seed=seed)
    with torch.no_grad():
        for p in net.parameters():
            p.mul_(scale)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = (
        {"state_dict": net.state_dict(), "meta": meta} if meta is not None else net.state_dict()
    )
    torch.save(payload, path)
    return path


def manifest_text(
    runs: list[str],
    *,
    measures: str = 'lambda_max = { k = 2 }\ntrace = { method = "exact" }',
    model: str = 'factory = "tests.pipeline.factories:tiny_net"',
    data: str = 'factory = "tests.pipeline.factories:tiny_data"',
) -> str:
    entries = "\n".join(
        f'[[runs]]\npath = "{r}"\nregime = "{"SB" if i % 2 == 0 else "LB"}"\n'
        f"batch_size = {8 if i % 2 == 0 else 32}\nseed = {i}\n"
        for i, r in enumerate(runs)
    )
    return (
        f"[model]\n{model}\n\n[data]\n{data}\n\n"
        f'[scoring]\nexamples = 30\nseed = 0\ndtype = "float64"\n\n'
        f"[measures]\n{measures}\n\n{entries}"
    )


@pytest.fixture
def sweep(tmp_path: Path) -> Path:
    """Three checkpoints (two dicts with meta, one plain state_dict) and manifest.toml."""
    save_run(tmp_path / "sb" / "seed0.pt", 0, meta={"regime": "SB", "batch_size": 8, "lr": 0.01})
    save_run(tmp_path / "lb" / "seed1.pt", 1, meta={"regime": "LB", "batch_size": 32})
    save_run(tmp_path / "sb" / "seed2.pt", 2)
    text = manifest_text(["sb/seed0.pt", "lb/seed1.pt", "sb/seed2.pt"])
    (tmp_path / "manifest.toml").write_text(text)
    return tmp_path / "manifest.toml"
