"""Fixtures for the zoo tests: a private data cache, one CPU thread, small data."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

from flatness.zoo import Dataset, load_dataset

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

SMALL_MNIST1D = {"n_train": 300, "n_test": 100, "seed": 0}


@pytest.fixture(scope="session")
def cache_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("flatness-cache")


@pytest.fixture(autouse=True)
def private_cache(monkeypatch: pytest.MonkeyPatch, cache_root: Path) -> Iterator[Path]:
    """Point the data cache at a temporary directory: tests never write to $HOME."""
    monkeypatch.setenv("FLATNESS_CACHE", str(cache_root))
    yield cache_root


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    """Tiny networks train fastest (and reproducibly) on one thread of a shared machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def small_mnist1d(private_cache: Path) -> Dataset:
    return load_dataset("mnist1d", **SMALL_MNIST1D)


def read_toml(path: Path) -> dict[str, Any]:
    """Parse a TOML file (tomllib on Python >= 3.11, tomli before)."""
    with open(path, "rb") as handle:
        return tomllib.load(handle)


def loads_toml(text: str) -> dict[str, Any]:
    """Parse TOML text."""
    return tomllib.loads(text)
