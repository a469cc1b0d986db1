"""Score the checkpoints a manifest names, into a resumable results store.

:func:`score` is what ``flatness score`` runs: it reads the manifest (importing its
``[scoring] plugins``), opens the store, refuses to mix scores of another objective
into it, and hands every checkpoint and every ``[[pairs]]`` entry to a
:class:`~flatness.pipeline.scorer.Scorer` (:mod:`flatness.pipeline.scorer`: claims,
tasks and failures); what it did comes back as a :class:`ScoreSummary`.

The objective a manifest describes is built in :mod:`flatness.pipeline.objective_setup`
and the table ``flatness score`` prints in :mod:`flatness.pipeline.summary`; their
public names stay importable from here.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import sqlite3
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from flatness.distributed.group import launched_group
from flatness.distributed.sweep import score_across_ranks
from flatness.factories import search_folder
from flatness.pipeline.database import store_error
from flatness.pipeline.groups import BLOCKS
from flatness.pipeline.manifest import Manifest
from flatness.pipeline.objective_setup import (
    ManifestLike,
    as_manifest,
    import_plugins,
    manifest_code,
    manifest_folder,
    model_builder,
    scoring_device,
    scoring_loss,
    scoring_objective,
    training_subset,
)
from flatness.pipeline.scorer import CLAMPED, META_DROPPED, Progress, Scorer
from flatness.pipeline.scoring_settings import SCORING_DEFAULTS
from flatness.pipeline.store import DEFAULT_STALE_AFTER, ResultsStore
from flatness.pipeline.summary import summary_table
from flatness.pipeline.task_store import TaskStore
from flatness.results import Meter, PlainData
from flatness.threads import intra_op_threads, threads_for_model

__all__ = [
    "CLAMPED",
    "DEFAULT_STORE",
    "META_DROPPED",
    "OBJECTIVE_SETTINGS",
    "ScoreSummary",
    "score",
    # objective setup and the summary table (objective_setup, summary)
    "scoring_device",
    "scoring_objective",
    "summary_table",
    "training_subset",
]

DEFAULT_STORE = "results.sqlite"


@dataclasses.dataclass(frozen=True)
class ScoreSummary(PlainData):
    """What a call of :func:`score` did.

    Attributes:
        store: The results store written.
        checkpoints: Checkpoints named by the manifest.
        computed: Measure tasks computed by this call.
        reused: Tasks found already done in the store (earlier runs).
        by_others: Tasks another process computed while this one waited.
        failed: Failures (checkpoints that could not be scored, plus failed tasks).
        pending: Tasks still held by another process when this call returned.
        failures: One line per failure, naming the checkpoint and the cause.
        seconds: Wall-clock seconds.
    """

    store: str
    checkpoints: int
    computed: int
    reused: int
    by_others: int
    failed: int
    pending: int
    failures: tuple[str, ...]
    seconds: float

    @property
    def ok(self) -> bool:
        """True when every checkpoint and every task was scored."""
        return self.failed == 0 and self.pending == 0


def score(
    manifest: ManifestLike,
    *,
    store: str | os.PathLike[str] | None = None,
    measures: Sequence[str] | None = None,
    device: str | None = None,
    dtype: str | None = None,
    examples: int | None = None,
    trust_pickle: bool = False,
    progress: bool = False,
    log: Callable[[str], None] | None = None,
    echo: Callable[[str], None] | None = None,
    wait: bool = True,
    poll: float = 0.5,
    threads: int | None = None,
    stale_after: float = DEFAULT_STALE_AFTER,
    groups: str | Sequence[str] | None = None,
    recompute_batchnorm: bool | None = None,
    group_size: int = 1,
    timeout: float | None = None,
) -> ScoreSummary:
    """Score every checkpoint of a manifest into a results store (``flatness score``).

    Args:
        manifest: A manifest file, a :class:`~flatness.pipeline.manifest.Manifest` or
            a parsed manifest dictionary.
        store: The SQLite results store (default ``results.sqlite`` beside the manifest).
        measures: Score only these measures (their manifest settings, else defaults).
        device: Override ``[scoring] device`` (for example ``"cuda"``).
        dtype: Override ``[scoring] dtype`` (float32, float64, bfloat16, float16).
        examples: Override ``[scoring] examples``.
        trust_pickle: Allow checkpoints that need full unpickling (trusted files only).
        progress: Show progress bars (per checkpoint and per measure) on stderr.
        log: Called with one line per failure (default: nothing).
        echo: Called with lines about the sweep (default: nothing): first the code the
            manifest runs (:func:`~flatness.pipeline.objective_setup.manifest_code`),
            then what this process waits for while others hold tasks.
        wait: Wait for tasks another process is computing, so the summary is complete.
        poll: Seconds between checks while waiting.
        threads: Intra-op threads while scoring (default: the rule of
            :func:`flatness.threads.threads_for`, one thread for small networks and
            batches); torch's setting is restored afterwards.
        stale_after: Seconds without a heartbeat after which another process's claim on a
            task is taken over (its owner hangs or was stopped); a working owner
            refreshes its claims every few seconds, however long its task runs.
        groups: Override ``[scoring] groups``: ``"blocks"`` or parameter names and module
            prefixes whose Hessian blocks are also measured
            (:mod:`flatness.pipeline.groups`).
        recompute_batchnorm: Override ``[scoring] recompute_batchnorm``: recompute
            BatchNorm running statistics on the scoring data before measuring.
        group_size: Under ``torchrun``: ranks per group; a group scores one checkpoint
            at a time, its objectives data-parallel over the group, and groups take
            different checkpoints (``--group-size``; 1: each rank scores whole
            checkpoints).
        timeout: Under ``torchrun``: seconds any wait on another rank may last before
            the job fails naming the rank (``--timeout``; default
            ``$FLATNESS_DIST_TIMEOUT``, else 300).

    Under ``torchrun`` (an initialized process group, or the environment ``torchrun``
    sets, from which the group is initialized for the call) rank 0 is the only process
    that opens the store: it hands out checkpoints and writes what the other ranks
    send back (:mod:`flatness.distributed.sweep`); its summary is the job's, the
    other ranks' their own part.

    The manifest's folder is first on ``sys.path`` while the sweep runs, so its model,
    data and loss factories may import modules beside it when they are called.

    Returns:
        What was computed, reused and failed; ``summary.ok`` is true when all was scored.

    Raises:
        ManifestError: If the manifest itself is invalid.
        SettingError: If an override is wrong (a ``ValueError`` naming the setting).
        GroupError: If a parameter group matches nothing (a ``ValueError`` naming
            ``[scoring] groups`` and the names there are).
        StoreError: If the store cannot be read or written (locked past the store's
            patience, disk full, damaged, read-only); the message names the store and
            the remedy. It is a ``ValueError``; finished tasks stay stored.
        ValueError: If the store is not a results store, the device is unavailable, or
            the store holds scores computed on another objective (other model, data,
            examples, example seed, dtype, loss or BatchNorm statistics than this
            manifest's), or the loss it names cannot be imported.
        RankError: Under ``torchrun``, if a rank died, hung or could not be reached
            within ``timeout`` (the message names it; finished tasks stay stored and a
            rerun resumes).
    """
    meter = Meter()
    log = log or (lambda line: None)
    echo = echo or (lambda line: None)
    man = as_manifest(manifest)
    code = manifest_code(man)
    if code is not None:
        echo(code)
    import_plugins(man)
    if measures:
        man = man.with_measures(list(measures))
    man = man.with_scoring(
        device=device,
        dtype=dtype,
        examples=examples,
        groups=_groups_setting(groups),
        recompute_batchnorm=recompute_batchnorm,
    )
    try:
        scoring_loss(man)
    except (ImportError, AttributeError, TypeError) as exc:
        raise ValueError(f"{man.path or 'the manifest'}: {exc}") from exc
    dev = scoring_device(man.scoring["device"])
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' was asked for, but torch.cuda.is_available() is False")
    man = man.with_scoring(device=str(dev))
    if store is None:
        store = (man.path.parent if man.path is not None else Path.cwd()) / DEFAULT_STORE
    info = _manifest_info(man)

    @contextlib.contextmanager
    def open_store() -> Iterator[ResultsStore]:
        with ResultsStore(store, stale_after=stale_after, echo=echo) as db, db.heartbeat():
            _claim_objective(db, info, Path(store))
            yield db

    def make_scorer(db: TaskStore, talks: bool = True) -> Scorer:
        quiet = (lambda line: None) if not talks else None
        return Scorer(
            man,
            db,
            trust_pickle=trust_pickle,
            progress=Progress(progress and talks),
            log=quiet or log,
            echo=quiet or echo,
        )

    count = threads_for_model(
        lambda: model_builder(man)(), int(man.scoring["batch_size"]), threads=threads
    )
    try:
        with (
            search_folder(manifest_folder(man)),
            launched_group(dev, timeout=timeout) as world,
            intra_op_threads(count),
        ):
            if world is not None and world.world_size > 1:
                outcome = score_across_ranks(
                    make_scorer,
                    open_store,
                    paths=[run.path for run in man.runs],
                    pairs=len(man.pairs),
                    group_size=group_size,
                    timeout=timeout,
                    wait=wait,
                    poll=poll,
                )
                counts, failures, pending = outcome.counts, outcome.failures, outcome.pending
            else:
                with open_store() as db:
                    scorer = make_scorer(db)
                    _score_here(scorer, Progress(progress), wait=wait, poll=poll)
                counts, failures, pending = scorer.counts, scorer.failures, scorer.pending
    except sqlite3.Error as exc:  # a failure the store's own handling did not name
        raise store_error(store, exc, "scoring") from exc
    return ScoreSummary(
        store=str(store),
        checkpoints=len(man.runs),
        computed=counts["computed"],
        reused=counts["reused"],
        by_others=counts["by_others"],
        failed=len(failures),
        pending=pending,
        failures=tuple(failures),
        seconds=meter.seconds,
    )


def _score_here(scorer: Scorer, bars: Progress, *, wait: bool, poll: float) -> None:
    """Score every run and pair of the scorer's manifest in this process."""
    man = scorer.manifest
    outer = bars.bar(len(man.runs), desc="checkpoints", leave=True)
    try:
        for index in range(len(man.runs)):
            scorer.score_run(index)
            if outer is not None:
                outer.update(1)
        for pair in man.pairs:
            scorer.score_pair(pair)
        if wait:
            scorer.wait_for_others(poll)
    finally:
        if outer is not None:
            outer.close()


def _groups_setting(groups: str | Sequence[str] | None) -> str | list[str] | None:
    """``score(groups=...)`` as ``[scoring] groups`` writes it: ``"blocks"`` or a list."""
    if groups is None or groups == BLOCKS:
        return groups
    return [groups] if isinstance(groups, str) else list(groups)


OBJECTIVE_SETTINGS = ("examples", "seed", "dtype", "loss", "recompute_batchnorm")
"""``[scoring]`` settings that change the numbers: the examples, the seed that picks them
(when a subset is asked for), the precision, the loss (``loss`` or ``batch_loss``) and
recomputed BatchNorm statistics. A store written before a setting existed holds its
default."""


def _objective_setting(scoring: Mapping[str, Any], key: str) -> Any:
    """A ``[scoring]`` setting as it defines the objective (defaults filled in)."""
    if key == "loss":
        return scoring.get("batch_loss") or scoring.get("loss") or "cross_entropy"
    return scoring.get(key, SCORING_DEFAULTS.get(key))


def _objective_changes(before: Mapping[str, Any], info: Mapping[str, Any]) -> list[str]:
    """What differs between two manifests' objectives (model, data, examples, seed, dtype).

    Returns:
        One ``"[table] key = old → new"`` line per difference.
    """
    changed = []
    for key in ("model", "data"):
        if before.get(key) != info.get(key):
            changed.append(f"[{key}] {before.get(key)} → {info.get(key)}")
    old, new = before.get("scoring", {}), info.get("scoring", {})
    subset = all(isinstance(d.get("examples"), int) for d in (old, new))
    for key in OBJECTIVE_SETTINGS:
        if key == "seed" and not subset:
            continue  # the seed picks the subset; with every example it changes nothing
        before_value, value = _objective_setting(old, key), _objective_setting(new, key)
        if before_value != value:
            changed.append(f"[scoring] {key} = {before_value!r} → {value!r}")
    return changed


def _claim_objective(db: ResultsStore, info: Mapping[str, Any], store: Path) -> None:
    """Claim the store for this manifest's objective, or refuse to mix another into it.

    Stored tasks are reused by checkpoint, measure and settings; scores computed on
    other examples, another model or another precision would be reused as if they
    answered the new manifest. The objective is claimed atomically when the store is
    first written (:meth:`ResultsStore.claim_objective`), so two sweeps starting
    together on a new store cannot both proceed.

    Raises:
        ValueError: If the store holds, or another live process is scoring, another
            objective.
    """
    changed = db.claim_objective(info, _objective_changes)
    if changed:
        raise ValueError(
            f"{store} holds scores computed on another objective, or another process is "
            f"scoring one into it ({'; '.join(changed)}); they would be reused as if they "
            "answered this manifest. Score into a new store (--store NEW.sqlite) or delete "
            "this one to recompute everything"
        )


def _manifest_info(man: Manifest) -> dict[str, Any]:
    def name(thing: Any) -> str:
        if isinstance(thing, str):
            return thing
        qualname = getattr(thing, "__qualname__", None) or f"<{type(thing).__name__} object>"
        return f"{getattr(thing, '__module__', '?')}:{qualname}"

    return {
        "path": str(man.path) if man.path is not None else None,
        "model": {"factory": name(man.model_factory), "kwargs": dict(man.model_kwargs)},
        "data": {"name": name(man.data), "kwargs": dict(man.data_kwargs)},
        "scoring": dict(man.scoring),
        "measures": {k: dict(v) for k, v in man.measures.items()},
    }
