"""Write manifests "ready for ``flatness score``" from the checkpoints that training wrote.

A manifest names the model factory and its keyword arguments, the data set, the
scoring settings, the measures and the runs (checkpoint path relative to the
manifest, plus the regime, batch size, learning rate, seed and epoch)::

    [model]
    factory = "flatness.zoo.networks:build_network"
    kwargs = { name = "f1", width = 512, depth = 5, input_shape = [40], num_classes = 10 }

    [data]
    name = "mnist1d"
    kwargs = { n_train = 4000, n_test = 1000, seed = 42 }

    [scoring]
    examples = 4000
    seed = 0
    device = "cpu"
    dtype = "float32"

    [measures]
    lambda_max = { k = 1 }

    [[runs]]
    path = "sb/seed0/final.pt"
    regime = "SB"
    batch_size = 64
    lr = 0.001
    seed = 0
    epoch = 20
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from flatness.zoo.files import dumps_toml, write_text_atomic

DEFAULT_MEASURES: dict[str, dict[str, Any]] = {"lambda_max": {"k": 1}}
"""Measures a fresh manifest asks for: the largest Hessian eigenvalue."""

MANIFEST_NAME = "manifest.toml"


def run_label(meta: Mapping[str, Any]) -> str:
    """The regime of a run: its ``regime`` label, else ``"B<batch size>"``.

    Examples:
        >>> run_label({"batch_size": 64}), run_label({"regime": "SB", "batch_size": 64})
        ('B64', 'SB')
    """
    regime = meta.get("regime")
    return str(regime) if regime else f"B{meta['batch_size']}"


def run_name(meta: Mapping[str, Any]) -> str:
    """A training run's name in the store's ``tracks`` table: ``"<regime>/seed<k>"``.

    :func:`flatness.zoo.train_network` writes it as ``meta["run"]``; the tracker of a
    run (``[track]``) and the per-epoch history copied when its checkpoint is scored use
    it, so the two time series of one run share a name.

    Examples:
        >>> run_name({"regime": "SB", "batch_size": 64, "seed": 3})
        'SB/seed3'
    """
    return f"{run_label(meta)}/seed{int(meta.get('seed', 0))}"


def manifest_document(
    runs: Sequence[tuple[str | os.PathLike[str], Mapping[str, Any]]],
    *,
    root: str | os.PathLike[str],
    scoring: Mapping[str, Any] | None = None,
    measures: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Build the manifest for checkpoints written by :func:`flatness.zoo.train_network`.

    Args:
        runs: ``(checkpoint path, meta)`` pairs; all runs must share one model and one
            data set (their ``meta["model"]`` and ``meta["data"]``).
        root: The directory the manifest will live in; run paths are made relative to it.
        scoring: Overrides of the ``[scoring]`` table (default: all training examples,
            seed 0, CPU, float32).
        measures: The ``[measures]`` table (default :data:`DEFAULT_MEASURES`).

    Returns:
        The manifest as a plain dictionary, ready for :func:`flatness.zoo.files.dumps_toml`.

    Raises:
        ValueError: If there are no runs or they disagree on the model or data set.
    """
    if not runs:
        raise ValueError("a manifest needs at least one run")
    first = runs[0][1]
    for path, meta in runs[1:]:
        for key in ("model", "data"):
            if meta[key] != first[key]:
                raise ValueError(
                    f"run {os.fspath(path)!r} has {key} {meta[key]!r}, but the manifest's "
                    f"first run has {first[key]!r}; one manifest holds one {key}"
                )
    table_scoring: dict[str, Any] = {
        "examples": int(first["n_train"]),
        "seed": 0,
        "device": "cpu",
        "dtype": "float32",
    }
    table_scoring.update(scoring or {})
    base = Path(root).resolve()
    return {
        "model": dict(first["model"]),
        "data": dict(first["data"]),
        "scoring": table_scoring,
        "measures": dict(measures if measures is not None else DEFAULT_MEASURES),
        "runs": [
            {
                "path": Path(os.path.relpath(Path(path).resolve(), base)).as_posix(),
                "regime": run_label(meta),
                "batch_size": int(meta["batch_size"]),
                "lr": float(meta["lr"]),
                "seed": int(meta["seed"]),
                "epoch": int(meta["epoch"]),
            }
            for path, meta in runs
        ],
    }


def write_manifest(
    path: str | os.PathLike[str],
    runs: Sequence[tuple[str | os.PathLike[str], Mapping[str, Any]]],
    *,
    scoring: Mapping[str, Any] | None = None,
    measures: Mapping[str, Any] | None = None,
) -> Path:
    """Write a manifest for ``runs`` to ``path`` (atomically); see :func:`manifest_document`.

    Returns:
        The path written.
    """
    target = Path(path)
    doc = manifest_document(runs, root=target.parent, scoring=scoring, measures=measures)
    header = "Written by `flatness train`; score with `flatness score " + target.name + "`."
    write_text_atomic(target, dumps_toml(doc, header=header))
    return target
