"""Training a case: its regimes and sweep, equal-update controls, tracking.

A regime's settings may hold ``match_updates = "<regime label>"`` (:data:`MATCH_KEY`, not
a :class:`flatness.zoo.TrainConfig` key): that regime is trained, per seed, for exactly
as many updates as the named regime's run of the same seed took (``epochs=None``,
``max_updates`` = that run's ``meta["updates"]``, no target). This is the control of
Keskar et al. (ICLR 2017) that Hoffer et al. (NeurIPS 2017, "Train longer, generalize
better") asked for: a large batch given as many updates as the small batch, so the
generalization gap cannot be blamed on fewer updates. The named regime is trained
first; chains (``C`` matches ``B``, which matches ``A``) are trained in order.

A case's ``track`` table (:mod:`flatness.tracking.training`) trains every run under a
tracker whose records go to the case's store, ``<runs>/<case>/results.sqlite``, the
one the scores go to.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from flatness.study.matching import MATCH_KEY, check_matches, match_order

if TYPE_CHECKING:
    from flatness.study.plan import Case, Settings
    from flatness.zoo.sweep import SweepRun

__all__ = ["MATCH_KEY", "STORE_NAME", "check_matches", "match_order", "train_case"]
# MATCH_KEY, check_matches and match_order live in flatness.study.matching (re-exported).

STORE_NAME = "results.sqlite"
"""The case's store in ``<runs>/<case>/``: scores, histories and tracks."""

UNMATCHED = {"epochs": None, "target_accuracy": None, "target_loss": None}
"""What an equal-updates run sets besides ``max_updates``: no other way to stop."""


def _tables(case: Case) -> list[tuple[Mapping[str, Settings], tuple[int, ...]]]:
    return [(case.regimes, case.seeds), *([(case.sweep, case.sweep_seeds)] if case.sweep else [])]


def _tracked_sweep(case: Case, regimes: Mapping[str, Settings], seeds: tuple[int, ...]) -> Any:
    from flatness.zoo.sweep import SweepSpec

    return SweepSpec(
        train=dict(case.train),
        regimes={label: dict(settings) for label, settings in regimes.items()},
        seeds=seeds,
        track=None if case.track is None else dict(case.track),
    )


def train_case(case: Case, folder: Path, *, progress: bool = True) -> list[SweepRun]:
    """Train every run of a case; finished runs with the same settings are reused.

    Args:
        case: The case.
        folder: Its runs folder (``<runs>/<case>``; the store is :data:`STORE_NAME` in it).
        progress: Show progress bars on stderr.

    Returns:
        Every run, in the order of the case's regimes (then its sweep) and seeds.

    Raises:
        ValueError: As :func:`check_matches` and :func:`flatness.zoo.train_sweep` do.
    """
    from flatness.tracking.training import train_tracked_sweep

    tables = _tables(case)
    matches = check_matches(case.name, tables)
    done: dict[tuple[str, int], SweepRun] = {}

    def train(regimes: Mapping[str, Settings], seeds: tuple[int, ...]) -> None:
        spec = _tracked_sweep(case, regimes, seeds)
        for run in train_tracked_sweep(spec, folder, progress=progress).runs:
            done[(str(run.config.regime), run.config.seed)] = run

    for regimes, seeds in tables:
        plain = {k: v for k, v in regimes.items() if k not in matches}
        if plain:
            train(plain, seeds)
    seeds_of = {label: s for regimes, s in tables for label in regimes}
    settings_of = {label: v for regimes, _ in tables for label, v in regimes.items()}
    for label in match_order(case.name, matches):
        own = {k: v for k, v in settings_of[label].items() if k != MATCH_KEY}
        for seed in seeds_of[label]:
            updates = int(done[(matches[label], seed)].meta["updates"])
            train({label: {**own, **UNMATCHED, "max_updates": updates}}, (seed,))
    return [done[(label, seed)] for regimes, seeds in tables for label in regimes for seed in seeds]
