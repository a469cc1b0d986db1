"""Tracking ``flatness train``: a ``[track]`` table becomes a :class:`Tracker` per run.

A sweep file's ``[track]`` table (or ``flatness train --track KEY=VALUE ...`` for one
run) says what to measure while each run trains::

    [track]
    measures = ["lambda_max", "trace"]   # or { lambda_max = { k = 2 }, trace = { budget = 40 } }
    every = 100                          # updates, "epoch", "log" or "budget" (the default)
    examples = 1000                      # the fixed, seeded training subset ("all": every example)
    seed = 0                             # the subset's and the measures' seed
    store = "results.sqlite"             # default: results.sqlite beside the manifest
    test = true                          # test loss/accuracy at each tracked step
    on_store_error = "warn"              # a store that cannot be written: say so, train on

Each run gets a tracker named by its run (``"<regime>/seed<k>"``,
:func:`flatness.zoo.manifests.run_name`, the name its history gets when it is
scored), built on :func:`flatness.pipeline.training_subset` of its training set, and
:func:`flatness.zoo.train_network` calls :meth:`Tracker.update` after every update
with the learning rate, batch size, momentum, optimizer, epoch and counts, and the
run's regime, schedule and seed. The last update is always measured, so the series
ends at the final checkpoint. The default store is the one ``flatness score`` writes
by default, so one file holds the scores, the histories and the tracks.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from flatness.dataset import Dataset
from flatness.pipeline.objective_setup import training_subset
from flatness.tracking.cadence import DEFAULT_EVERY, DEFAULT_PER_DECADE, Cadence, Every
from flatness.tracking.measures import MeasureSpec, tracked_measures
from flatness.tracking.tracker import Tracker
from flatness.zoo.config import TrainConfig
from flatness.zoo.data import load_dataset
from flatness.zoo.manifests import run_name
from flatness.zoo.sweep import SweepResult, SweepSpec, load_sweep, train_sweep
from flatness.zoo.train import StepHook, TrainResult, train_network

__all__ = [
    "DEFAULT_STORE",
    "TRACK_KEYS",
    "TrackSettings",
    "track_settings",
    "tracked_run",
    "train_tracked",
    "train_tracked_sweep",
]

DEFAULT_STORE = "results.sqlite"
"""The tracks' store, beside the manifest: where ``flatness score`` writes by default."""

TRACK_KEYS = (
    "measures",
    "every",
    "examples",
    "seed",
    "store",
    "test",
    "per_decade",
    "on_store_error",
)
"""The keys a ``[track]`` table takes."""


@dataclass(frozen=True)
class TrackSettings:
    """What a ``[track]`` table asks for (see the module docstring).

    Attributes:
        measures: The tracked measures (:func:`~flatness.tracking.tracked_measures`).
        every: The cadence: updates, ``"epoch"``, ``"log"`` or ``"budget"`` (the default).
        examples: Size of the fixed training subset (``None``: every example).
        seed: Seeds the subset and the measures.
        store: The results store (``None``: :data:`DEFAULT_STORE` in the output folder).
        test: Evaluate the test set at each tracked step.
        per_decade: Points per decade of ``every="log"``.
        on_store_error: ``"warn"`` (the default here: training goes on, the records stay
            in memory) or ``"raise"`` (stop training on a store that cannot be written).
    """

    measures: MeasureSpec = ("lambda_max",)
    every: Every = DEFAULT_EVERY
    examples: int | None = 1000
    seed: int = 0
    store: Path | None = None
    test: bool = True
    per_decade: int = DEFAULT_PER_DECADE
    on_store_error: Literal["raise", "warn"] = "warn"

    def store_in(self, out: str | os.PathLike[str]) -> Path:
        """The store the tracks go to when the run's output folder is ``out``."""
        return self.store if self.store is not None else Path(out) / DEFAULT_STORE


def track_settings(
    table: Mapping[str, Any], *, base_dir: str | os.PathLike[str] = "."
) -> TrackSettings:
    """Read and check a ``[track]`` table.

    Args:
        table: The table (``measures`` may be a list, a comma-separated string or a
            table of settings per measure).
        base_dir: The folder a relative ``store`` is taken from.

    Returns:
        The settings.

    Raises:
        ValueError: For an unknown key, measure or measure setting, or a bad cadence,
            subset size or seed, named as ``[track] KEY``.

    Examples:
        >>> track_settings({"measures": "lambda_max, trace", "every": 50}).measures
        ('lambda_max', 'trace')
        >>> track_settings({"every": "often"})  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        ValueError: [track] every: ...
    """
    unknown = sorted(set(table) - set(TRACK_KEYS))
    if unknown:
        raise ValueError(f"unknown keys {unknown} in [track]; known are {list(TRACK_KEYS)}")
    values = dict(table)
    measures = values.get("measures", ("lambda_max",))
    if isinstance(measures, str):
        measures = tuple(m.strip() for m in measures.split(",") if m.strip())
    elif not isinstance(measures, Mapping):
        measures = tuple(measures)
    seed = values.get("seed", 0)
    examples = values.get("examples", 1000)
    if examples == "all":
        examples = None
    for key, value in (("seed", seed), ("examples", examples)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
            raise ValueError(f"[track] {key} must be an integer, got {value!r}")
    if examples is not None and examples < 1:
        raise ValueError(f"[track] examples must be positive (or 'all'), got {examples}")
    on_store_error = values.get("on_store_error", "warn")
    if on_store_error not in ("raise", "warn"):
        raise ValueError(
            f"[track] on_store_error must be 'raise' or 'warn', got {on_store_error!r}"
        )
    if not isinstance(values.get("test", True), bool):
        raise ValueError(f"[track] test must be true or false, got {values['test']!r}")
    every = values.get("every", DEFAULT_EVERY)
    per_decade = values.get("per_decade", DEFAULT_PER_DECADE)
    try:
        Cadence(every, per_decade)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"[track] every: {exc}") from None
    try:
        tracked_measures(measures, seed=seed)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"[track] measures: {exc}") from None
    store = values.get("store")
    return TrackSettings(
        measures=measures,
        every=every,
        examples=examples,
        seed=seed,
        store=None if store is None else Path(base_dir) / store,
        test=values.get("test", True),
        per_decade=per_decade,
        on_store_error=on_store_error,
    )


def _run(config: TrainConfig, data: Dataset) -> str:
    """The run's name, as :func:`flatness.zoo.train_network` writes it into its metadata."""
    return run_name({"regime": config.regime_label(data.n_train), "seed": config.seed})


@contextmanager
def tracked_run(
    settings: TrackSettings,
    *,
    data: Dataset,
    run: str,
    store: str | os.PathLike[str] | None,
    device: str = "cpu",
) -> Iterator[StepHook]:
    """A tracker for one training run, as :func:`flatness.zoo.train_network`'s ``on_step``.

    Args:
        settings: What to track.
        data: The run's data set (the subset and the test set come from it).
        run: The run's name in the store.
        store: The results store (``None``: in memory only).
        device: Where the run trains.

    Yields:
        The hook: it hands every update to :meth:`Tracker.update`, and the context
        measures the last update on a clean exit if the cadence skipped it.

    Raises:
        StoreError: If the store cannot be opened or written.
    """
    subset = training_subset(data, settings.examples, settings.seed)
    tracker = Tracker(
        subset,
        test=data.test if settings.test else None,
        measures=settings.measures,
        every=settings.every,
        store=store,
        run=run,
        seed=settings.seed,
        per_decade=settings.per_decade,
        on_store_error=settings.on_store_error,
        device=device,
    )
    last: dict[str, Any] = {}

    def hook(model: Any, fields: dict[str, Any]) -> None:
        step_fields = {k: v for k, v in fields.items() if k != "updates"}
        measured = tracker.update(model, **step_fields) is not None
        last.update(model=model, fields=step_fields, measured=measured)

    with tracker:
        yield hook
        if last and not last["measured"]:
            tracker.update(last["model"], **last["fields"], force=True)


def train_tracked(
    config: TrainConfig,
    out_dir: str | os.PathLike[str],
    settings: TrackSettings,
    **train: Any,
) -> TrainResult:
    """:func:`flatness.zoo.train_network` with a tracker (``flatness train --track``).

    Args:
        config: The run's settings.
        out_dir: Where the checkpoints, the manifest and (by default) the store go.
        settings: What to track.
        **train: Further keywords of :func:`~flatness.zoo.train_network` (``data``,
            ``on_epoch``, ``threads``, ``manifest``).

    Returns:
        The training result.
    """
    data = train.pop("data", None)
    if data is None:
        data = load_dataset(config.dataset, **config.dataset_kwargs)
    with tracked_run(
        settings,
        data=data,
        run=_run(config, data),
        store=settings.store_in(out_dir),
        device=config.device,
    ) as hook:
        return train_network(config, out_dir, data=data, on_step=hook, **train)


def train_tracked_sweep(
    sweep: SweepSpec | str | os.PathLike[str],
    out_dir: str | os.PathLike[str] | None = None,
    **options: Any,
) -> SweepResult:
    """:func:`flatness.zoo.train_sweep`, with a tracker per run when it has ``[track]``.

    Args:
        sweep: A sweep or the path of a sweep file.
        out_dir: Output folder (overrides the sweep's ``out``).
        **options: Further keywords of :func:`~flatness.zoo.train_sweep`.

    Returns:
        The sweep's runs and manifest.

    Raises:
        ValueError: For a bad ``[track]`` table (before anything is trained).
    """
    spec = sweep if isinstance(sweep, SweepSpec) else load_sweep(sweep)
    if spec.track is None:
        return train_sweep(spec, out_dir, **options)
    settings = track_settings(spec.track)
    out = Path(out_dir) if out_dir is not None else spec.out
    store = settings.store_in(out) if out is not None else None

    @contextmanager
    def tracking(config: TrainConfig, path: Path, data: Dataset) -> Iterator[StepHook]:
        with tracked_run(
            settings, data=data, run=_run(config, data), store=store, device=config.device
        ) as hook:
            yield hook

    return train_sweep(spec, out_dir, tracking=tracking, **options)
