"""Train a grid of regimes × seeds in one command and write one manifest for them all.

A sweep file is TOML; every table is optional::

    [sweep]
    seeds = [0, 1, 2, 3, 4]
    out = "runs/keskar"            # relative to this file (the CLI's --out wins)
    # batch_sizes = [32, 64, 128]  # a batch-size sweep instead of [regimes]

    [network]
    name = "f1"                    # or factory = "package.module:function"
    kwargs = { width = 512, depth = 5 }

    [data]
    name = "mnist1d"               # or factory = "package.module:function"
    kwargs = { n_train = 4000, n_test = 1000 }

    [train]                        # TrainConfig settings shared by every run;
                                   # given, it replaces the Keskar defaults below
    optimizer = "adam"
    lr = 0.001
    epochs = 100
    target_accuracy = 0.98

    [regimes]                      # label = settings that override [train]
    SB = { batch_size = "0.5%" }
    LB = { batch_size = "10%" }

    [scoring]                      # copied into the manifest's [scoring]
    [measures]                     # copied into the manifest's [measures]

    [track]                        # sharpness measured during training (a Tracker
    measures = ["lambda_max"]      # per run); see flatness.tracking.training
    every = 100

Without ``[regimes]`` or ``batch_sizes`` the sweep is Keskar et al.'s pair: LB is 10%
of the training set and SB twenty times smaller (0.5%), trained with Adam until 98%
training accuracy or :data:`KESKAR_TRAIN`'s epoch cap. Runs are written to
``<out>/<regime>/seed<k>/final.pt`` (the regime in lower case) and the manifest to
``<out>/manifest.toml``. A run whose final checkpoint exists with the same settings
is skipped.

The ``[track]`` table is kept as data (:attr:`SweepSpec.track`, its ``store`` made
relative to the file); the training loop meets a tracker through ``train_sweep``'s
``tracking`` argument, which :func:`flatness.tracking.training.train_tracked_sweep`
(``flatness train --sweep``) fills in (the zoo knows nothing of curvature).
"""

from __future__ import annotations

import dataclasses
import os
import re
import sys
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager, ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from flatness.dataset import Dataset
from flatness.zoo.config import TrainConfig
from flatness.zoo.data import load_dataset
from flatness.zoo.manifests import MANIFEST_NAME, write_manifest
from flatness.zoo.train import StepHook, train_network

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

KESKAR_TRAIN: dict[str, Any] = {
    "optimizer": "adam",
    "lr": 1e-3,
    "epochs": 100,
    "target_accuracy": 0.98,
}
"""Keskar et al.'s protocol: Adam, train to 98% training accuracy (with an epoch cap)."""

KESKAR_REGIMES: dict[str, dict[str, Any]] = {
    "SB": {"batch_size": "0.5%"},
    "LB": {"batch_size": "10%"},
}
"""LB = 10% of the training set, SB twenty times smaller."""

_LABEL = re.compile(r"[A-Za-z0-9_.-]+")
_TABLES = ("sweep", "network", "data", "train", "regimes", "scoring", "measures", "track")

RunTracking = Callable[[TrainConfig, Path, Dataset], AbstractContextManager[StepHook]]
"""Given a run's config, final checkpoint path and data: a context that yields the
``on_step`` hook of its training (and closes what it opened)."""
_SWEEP_KEYS = ("seeds", "out", "batch_sizes")


@dataclass(frozen=True)
class SweepSpec:
    """A parsed sweep: shared settings, regimes, seeds, where to write.

    Attributes:
        train: :class:`~flatness.zoo.train.TrainConfig` settings shared by every run
            (including the network and data set).
        regimes: Regime label → settings that override :attr:`train`.
        seeds: Seeds; every regime is trained once per seed.
        out: Output directory (``None``: the caller must give one).
        scoring: Overrides of the manifest's ``[scoring]`` table.
        measures: The manifest's ``[measures]`` table (``None``: the default).
        track: The ``[track]`` table (``None``: no tracking during training).
    """

    train: dict[str, Any] = field(default_factory=lambda: dict(KESKAR_TRAIN))
    regimes: dict[str, dict[str, Any]] = field(default_factory=lambda: dict(KESKAR_REGIMES))
    seeds: tuple[int, ...] = (0, 1, 2, 3, 4)
    out: Path | None = None
    scoring: dict[str, Any] | None = None
    measures: dict[str, Any] | None = None
    track: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        if not self.regimes:
            raise ValueError("a sweep needs at least one regime")
        if not self.seeds:
            raise ValueError("a sweep needs at least one seed")
        for label in self.regimes:
            if not _LABEL.fullmatch(label):
                raise ValueError(
                    f"regime label {label!r} must use only letters, digits, '_', '.', '-'"
                )
        if len({label.lower() for label in self.regimes}) != len(self.regimes):
            raise ValueError(f"regime labels must differ in more than case: {list(self.regimes)}")

    def configs(self) -> list[TrainConfig]:
        """One :class:`~flatness.zoo.train.TrainConfig` per regime and seed, regime-major."""
        return [
            TrainConfig.from_dict({**self.train, **overrides, "regime": label, "seed": seed})
            for label, overrides in self.regimes.items()
            for seed in self.seeds
        ]


@dataclass(frozen=True)
class SweepRun:
    """One run of a sweep: its config, checkpoint, metadata and whether it was trained."""

    config: TrainConfig
    path: Path
    meta: dict[str, Any]
    status: str  # "trained" or "skipped"


@dataclass(frozen=True)
class SweepResult:
    """What :func:`train_sweep` returns: the runs and the manifest written."""

    runs: tuple[SweepRun, ...]
    manifest: Path

    def __repr__(self) -> str:
        trained = sum(r.status == "trained" for r in self.runs)
        return (
            f"SweepResult(runs={len(self.runs)}, trained={trained}, "
            f"skipped={len(self.runs) - trained}, manifest={self.manifest})"
        )


def batch_label(batch_size: int | str) -> str:
    """The regime label of a batch size in a batch-size sweep.

    Examples:
        >>> batch_label(64), batch_label("10%"), batch_label("0.5%")
        ('B64', 'B10pct', 'B0.5pct')
    """
    if isinstance(batch_size, str) and batch_size.strip().endswith("%"):
        return f"B{batch_size.strip()[:-1].strip()}pct"
    return f"B{int(batch_size)}"


def _factory_table(table: Mapping[str, Any], what: str) -> tuple[str, dict[str, Any]]:
    unknown = sorted(set(table) - {"name", "factory", "kwargs"})
    if unknown or ("name" in table) == ("factory" in table):
        raise ValueError(
            f"[{what}] takes either name or factory, and optionally kwargs; got {sorted(table)}"
        )
    return str(table.get("name") or table["factory"]), dict(table.get("kwargs", {}))


def parse_sweep(doc: Mapping[str, Any], *, base_dir: str | os.PathLike[str] = ".") -> SweepSpec:
    """Build a :class:`SweepSpec` from a parsed sweep document (see the module docstring).

    Args:
        doc: The document, as :func:`tomllib.load` returns it.
        base_dir: The directory ``[sweep].out`` is relative to.

    Raises:
        ValueError: If a table or key is unknown or settings are inconsistent.
    """
    unknown = sorted(set(doc) - set(_TABLES))
    if unknown:
        raise ValueError(f"unknown tables {unknown} in sweep; known are {list(_TABLES)}")
    sweep = dict(doc.get("sweep", {}))
    unknown = sorted(set(sweep) - set(_SWEEP_KEYS))
    if unknown:
        raise ValueError(f"unknown keys {unknown} in [sweep]; known are {list(_SWEEP_KEYS)}")
    train = dict(doc.get("train", KESKAR_TRAIN))
    for key in ("network", "network_kwargs", "dataset", "dataset_kwargs", "regime", "seed"):
        if key in train:
            raise ValueError(f"[train] cannot set {key!r}; use [network], [data], [regimes], seeds")
    if "network" in doc:
        train["network"], train["network_kwargs"] = _factory_table(doc["network"], "network")
    if "data" in doc:
        train["dataset"], train["dataset_kwargs"] = _factory_table(doc["data"], "data")
    if "regimes" in doc and "batch_sizes" in sweep:
        raise ValueError("give either [regimes] or [sweep].batch_sizes, not both")
    if "batch_sizes" in sweep:
        regimes = {batch_label(b): {"batch_size": b} for b in sweep["batch_sizes"]}
    else:
        regimes = {str(k): dict(v) for k, v in doc.get("regimes", KESKAR_REGIMES).items()}
    out = sweep.get("out")
    track = dict(doc["track"]) if "track" in doc else None
    if track is not None and isinstance(track.get("store"), str):
        track["store"] = str(Path(base_dir) / track["store"])
    return SweepSpec(
        train=train,
        regimes=regimes,
        seeds=tuple(int(s) for s in sweep.get("seeds", (0, 1, 2, 3, 4))),
        out=None if out is None else Path(base_dir) / out,
        scoring=dict(doc["scoring"]) if "scoring" in doc else None,
        measures=dict(doc["measures"]) if "measures" in doc else None,
        track=track,
    )


def load_sweep(path: str | os.PathLike[str]) -> SweepSpec:
    """Read a sweep file (see the module docstring)."""
    with open(path, "rb") as handle:
        doc = tomllib.load(handle)
    return parse_sweep(doc, base_dir=Path(path).parent)


def run_path(out: Path, config: TrainConfig) -> Path:
    """Where a sweep writes a run's final checkpoint: ``<out>/<regime>/seed<k>/final.pt``."""
    return out / str(config.regime).lower() / f"seed{config.seed}" / "final.pt"


def _unset_as_none(saved: Mapping[str, Any]) -> dict[str, Any]:
    """Saved settings with the ``None`` that :meth:`TrainConfig.to_dict` left out put back
    where the default is not ``None`` (``epochs``: a run capped by updates alone)."""
    values = dict(saved)
    for f in dataclasses.fields(TrainConfig):
        if f.name not in values and f.default is not None and "None" in str(f.type):
            values[f.name] = None
    return values


def _existing_meta(path: Path, config: TrainConfig, overwrite: bool) -> dict[str, Any] | None:
    if not path.exists():
        return None
    try:
        meta = torch.load(path, map_location="cpu", weights_only=True)["meta"]
        saved = dict(meta["config"])
    except Exception as exc:
        if overwrite:
            return None
        raise ValueError(
            f"{path} exists but is not a flatness checkpoint ({exc}); remove it or overwrite"
        ) from exc
    wanted = config.to_dict()
    try:  # settings added since the checkpoint was written take their defaults
        saved = TrainConfig.from_dict(_unset_as_none(saved)).to_dict()
    except (TypeError, ValueError):
        pass
    if saved == wanted:
        return dict(meta)
    if overwrite:
        return None
    differing = sorted(k for k in set(saved) | set(wanted) if saved.get(k) != wanted.get(k))
    raise ValueError(
        f"{path} exists with different settings ({', '.join(differing)}); "
        "remove it, choose another output directory or pass overwrite=True (--overwrite)"
    )


def train_sweep(
    sweep: SweepSpec | str | os.PathLike[str],
    out_dir: str | os.PathLike[str] | None = None,
    *,
    overwrite: bool = False,
    progress: bool = True,
    threads: int | None = None,
    tracking: RunTracking | None = None,
) -> SweepResult:
    """Train every regime × seed of a sweep, skipping runs already done, and write a manifest.

    Args:
        sweep: A :class:`SweepSpec` or the path of a sweep file.
        out_dir: Output directory; overrides the sweep's own ``out``.
        overwrite: Retrain runs whose checkpoint exists with different settings
            (otherwise that is an error).
        progress: Show a progress bar on stderr.
        threads: Intra-op threads while training (default: the rule of
            :func:`flatness.threads.threads_for`).
        tracking: Hooks every trained run's updates (a tracker per run); required when
            the sweep has a ``[track]`` table.

    Returns:
        The runs (trained or skipped) and the manifest path.

    Raises:
        ValueError: If no output directory is given, a checkpoint exists with other
            settings and ``overwrite`` is false, or ``[track]`` comes without ``tracking``.
    """
    spec = sweep if isinstance(sweep, SweepSpec) else load_sweep(sweep)
    out = Path(out_dir) if out_dir is not None else spec.out
    if out is None:
        raise ValueError("no output directory: give out_dir (--out) or [sweep].out")
    if spec.track is not None and tracking is None:
        raise ValueError(
            "the sweep has a [track] table: train it with `flatness train --sweep` or "
            "flatness.tracking.training.train_tracked_sweep, which build its trackers"
        )
    configs = spec.configs()
    plan = [(c, run_path(out, c)) for c in configs]
    existing = [_existing_meta(path, c, overwrite) for c, path in plan]
    data = None
    if any(meta is None for meta in existing):
        first = configs[0]
        data = load_dataset(first.dataset, **first.dataset_kwargs)
    runs: list[SweepRun] = []
    with tqdm(total=len(plan), desc="flatness train", unit="run", disable=not progress) as bar:
        for (config, path), meta in zip(plan, existing, strict=True):
            bar.set_postfix_str(f"{config.regime} seed {config.seed}")
            if meta is not None:
                runs.append(SweepRun(config, path, meta, "skipped"))
            else:

                def show(record: dict[str, Any], config: TrainConfig = config) -> None:
                    acc = record.get("train_accuracy", record["running_accuracy"])
                    bar.set_postfix_str(
                        f"{config.regime} seed {config.seed} epoch {record['epoch']} acc {acc:.3f}"
                    )

                assert data is not None
                with ExitStack() as stack:
                    hook = None
                    if tracking is not None:
                        hook = stack.enter_context(tracking(config, path, data))
                    result = train_network(
                        config, path.parent, data=data, manifest=False, on_epoch=show,
                        on_step=hook, threads=threads,
                    )  # fmt: skip
                runs.append(SweepRun(config, path, result.meta, "trained"))
            bar.update(1)
    manifest = write_manifest(
        out / MANIFEST_NAME,
        [(r.path, r.meta) for r in runs],
        scoring=spec.scoring,
        measures=spec.measures,
    )
    return SweepResult(runs=tuple(runs), manifest=manifest)


def sweep_from_batch_sizes(
    batch_sizes: Sequence[int | str], seeds: Sequence[int] = (0,), **train: Any
) -> SweepSpec:
    """A batch-size sweep: one regime ``"B<size>"`` per batch size.

    Examples:
        >>> spec = sweep_from_batch_sizes([32, "10%"], seeds=[0, 1], network="tiny_mlp")
        >>> list(spec.regimes), len(spec.configs())
        (['B32', 'B10pct'], 4)
    """
    settings = {**KESKAR_TRAIN, **train}
    regimes = {batch_label(b): {"batch_size": b} for b in batch_sizes}
    return SweepSpec(train=settings, regimes=regimes, seeds=tuple(seeds))
