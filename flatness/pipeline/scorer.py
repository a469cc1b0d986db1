"""The work of scoring: one checkpoint's tasks, claimed and stored one by one.

:func:`flatness.score` (:mod:`flatness.pipeline.scoring`) hands each checkpoint and
each ``[[pairs]]`` entry of a manifest to a :class:`Scorer`, which

1. reads the checkpoint safely and identifies it by its SHA-256
   (:mod:`flatness.pipeline.checkpoints`);
2. builds the model (:mod:`flatness.pipeline.objective_setup`) and loads the weights;
3. checks its BatchNorm statistics and evaluates the train and test loss and accuracy
   with the manifest's loss (:mod:`flatness.pipeline.run_setup`), and stores them with
   the metadata (the checkpoint's own ``meta`` first, then the manifest's entry) and
   its per-epoch training history as ``tracks`` (:mod:`flatness.pipeline.histories`);
4. builds the :class:`~flatness.curvature.objective.Objective` on the fixed, seeded
   subset of the training set (one per parameter group a task names) and runs every
   measure task not yet in the store: each task is *claimed* first (so several
   processes share a store without computing anything twice) and committed the moment
   it finishes;
5. computes Keskar's parametric plot for a pair into the ``curves`` table;
6. waits for the tasks other processes hold, saying what it waits for, and takes over
   those whose owner died or stopped refreshing its claim (``stale_after``).

Bad input never stops the sweep: a checkpoint that cannot be read or loaded, holds
NaN weights or meets an empty data set is recorded as failed with one line naming the
file and the cause, and the others are scored.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Generic, TypeVar, cast

import numpy as np
import pandas as pd
import torch
from torch import nn

from flatness.dataset import ScoringData, objective_data
from flatness.distributed.group import RankError
from flatness.pipeline.checkpoints import (
    Checkpoint,
    CheckpointError,
    file_sha256,
    load_checkpoint,
    load_into,
)
from flatness.pipeline.database import StoreError
from flatness.pipeline.groups import GroupError, parameter_groups
from flatness.pipeline.histories import put_history
from flatness.pipeline.manifest import Manifest, PairSpec
from flatness.pipeline.measures import get_measure, settings_key
from flatness.pipeline.named_losses import ScoringLoss
from flatness.pipeline.objective_setup import (
    manifest_data,
    model_builder,
    scoring_dtype,
    scoring_loss,
)
from flatness.pipeline.progress import Progress
from flatness.pipeline.run_setup import PreparedRun, prepare_run, stored_precision
from flatness.pipeline.store import ResultsStore
from flatness.pipeline.task_plan import GROUP, Task, plan_tasks
from flatness.pipeline.task_store import TaskStore
from flatness.pipeline.waiting import Waiting
from flatness.results import Meter
from flatness.sharpness.interpolation import parametric_plot
from flatness.versions import package_versions

__all__ = [
    "CLAMPED",
    "META_DROPPED",
    "Progress",
    "Scorer",
    "Task",
    "TaskStore",
    "duplicate_message",
    "plan_tasks",
]

T = TypeVar("T")

META_DROPPED = ("history",)
"""Checkpoint metadata not copied into the store (long training curves)."""


CLAMPED = "variance_clamped"
"""The ``curves`` metric (split ``"bn"``) marking the α at which an extrapolated
BatchNorm running variance was negative and clamped to zero (``bn = "interpolate"``)."""


def _run_meta(run_meta: Mapping[str, Any], checkpoint: Checkpoint) -> dict[str, Any]:
    meta = {**run_meta, **checkpoint.meta}
    for key in META_DROPPED:
        meta.pop(key, None)
    return meta


def _int_or_none(value: Any) -> int | None:
    try:
        return None if value is None else int(value)
    except (TypeError, ValueError):
        return None


def _float_or_none(value: Any) -> float | None:
    try:
        return None if value is None else float(value)
    except (TypeError, ValueError):
        return None


_FATAL = (StoreError, RankError, torch.distributed.DistError)
"""Failures that stop a sweep instead of failing one checkpoint: the store's, another
rank's (died, hung, unreachable)."""


class _Once(Generic[T]):
    """A resource built on first use; a failure to build it is kept and raised again."""

    def __init__(self, make: Callable[[], T]) -> None:
        self._make = make
        self._value: T | Exception | None = None

    def __call__(self) -> T:
        if self._value is None:
            try:
                self._value = self._make()
            except Exception as exc:
                self._value = exc
        if isinstance(self._value, Exception):
            raise self._value
        return self._value


class Scorer(Waiting):
    """Scores a manifest's checkpoints and pairs into an open store (see the module doc);
    :func:`flatness.score` sums up its ``counts``, ``failures`` and ``pending`` (the
    tasks other processes hold: :class:`~flatness.pipeline.waiting.Waiting`)."""

    def __init__(
        self,
        manifest: Manifest,
        store: TaskStore,
        *,
        trust_pickle: bool,
        progress: Progress,
        log: Callable[[str], None],
        echo: Callable[[str], None] | None = None,
    ) -> None:
        self.manifest = manifest
        self.store = store
        self.trust_pickle = trust_pickle
        self.progress = progress
        self.log = log
        self.echo = echo or (lambda line: None)
        self._said: dict[str, tuple[str | None, float]] = {}
        scoring = manifest.scoring
        self.device = torch.device(scoring["device"])
        self.dtype = scoring_dtype(manifest)
        self.versions = package_versions()
        self.counts = {"computed": 0, "reused": 0, "by_others": 0}
        self.failures: list[str] = []
        self.busy: dict[tuple[int, str], list[Task]] = {}
        self.busy_pairs: list[PairSpec] = []
        self.seen: dict[str, int] = {}  # a checkpoint's SHA-256 -> its first run's index
        # resources shared by all checkpoints, built once; their failure fails each run
        self.data: _Once[ScoringData] = _Once(lambda: manifest_data(manifest))
        self.builder: _Once[Callable[[], nn.Module]] = _Once(lambda: model_builder(manifest))
        self.loss: _Once[ScoringLoss] = _Once(lambda: scoring_loss(manifest))
        self.tasks = plan_tasks(manifest, groups=self._groups())

    def _groups(self) -> tuple[str, ...]:
        """The parameter groups ``[scoring] groups`` names, checked on a freshly built model.

        Raises:
            GroupError: If a group matches nothing (it names the setting and the names).
        """
        spec = self.manifest.scoring.get("groups")
        if spec is None:
            return ()
        try:
            model = self.builder()()
        except Exception:  # the factory's failure is each run's, recorded there
            return ()
        try:
            return parameter_groups(model, spec)
        except GroupError as exc:
            where = self.manifest.path or "the manifest"
            raise GroupError(f"{where}: {exc}") from None

    def _fail_run(self, key: str, path: Path, message: str) -> None:
        self.store.put_run(key, path, status="failed", error=message)
        self.failures.append(message)
        self.log(f"FAILED {message}")

    def _refuse_duplicate(self, path: Path, first: Path) -> None:
        """Refuse a run whose file is byte-identical to an earlier run's (a failure).

        The store keys a checkpoint by its content, so the second run could only be
        dropped or overwrite the first one's metadata, and keeping both would count one
        network twice in every statistic. The first run is scored; the manifest should
        list the file once.
        """
        message = duplicate_message(path, first)
        self.failures.append(message)
        self.log(f"FAILED {message}")

    def score_run(self, index: int, only: Sequence[Task] | None = None) -> None:
        """Score the manifest's ``index``-th checkpoint (only the tasks ``only``, if given).

        Failures are recorded in the store and in :attr:`failures`, never raised.
        """
        run = self.manifest.runs[index]
        path = run.path
        try:
            checkpoint = load_checkpoint(path, trust_pickle=self.trust_pickle)
        except CheckpointError as exc:
            key = f"missing:{path.resolve()}" if not path.is_file() else _sha_or_path(path)
            self._fail_run(key, path, str(exc))
            return
        key = checkpoint.sha256
        first = self.seen.setdefault(key, index)
        if first != index:
            self._refuse_duplicate(path, self.manifest.runs[first].path)
            return
        tasks = list(only) if only is not None else self.tasks
        row = self.store.run(key)
        if (
            only is None
            and row is not None
            and row["status"] == "ok"
            and all(self.store.task_status(key, t.measure, t.key) == "done" for t in tasks)
        ):
            self.counts["reused"] += len(tasks)
            return
        try:
            prepared = self._prepare(run.meta, checkpoint)
        except _FATAL:
            raise  # the store's or another rank's failure, not the checkpoint's
        except Exception as exc:
            self._fail_run(key, path, f"{path}: {_reason(exc)}")
            return
        bar = self.progress.bar(len(tasks), desc=path.name, leave=False)
        try:
            for task in tasks:
                self._run_task(index, key, prepared, task)
                if bar is not None:
                    bar.update(1)
        finally:
            if bar is not None:
                bar.close()

    def _prepare(self, run_meta: Mapping[str, Any], checkpoint: Checkpoint) -> PreparedRun:
        precision = stored_precision(checkpoint.state_dict)
        if precision is not None and getattr(torch, precision) != self.dtype:
            self.echo(
                f"{checkpoint.path}: stored in {precision}, analysed in "
                f"{str(self.dtype).removeprefix('torch.')} ([scoring] dtype, --dtype)"
            )
        prepared = prepare_run(
            load_into(self.builder()(), checkpoint),
            self.data(),
            loss=self.loss(),
            scoring=self.manifest.scoring,
            device=self.device,
            dtype=self.dtype,
            where=str(checkpoint.path),
            checkpoint_dtype=precision,
        )
        meta = {**_run_meta(run_meta, checkpoint), **prepared.notes}
        self.store.put_run(
            checkpoint.sha256,
            checkpoint.path,
            regime=None if meta.get("regime") is None else str(meta["regime"]),
            batch_size=_float_or_none(meta.get("batch_size")),
            lr=_float_or_none(meta.get("lr")),
            seed=_int_or_none(meta.get("seed")),
            epoch=_int_or_none(meta.get("epoch")),
            meta=meta,
            examples=prepared.objective.num_examples,
            status="ok",
            error=None,
            **prepared.metrics,
        )
        # the learning curve (put_history writes through put_track alone)
        put_history(cast(ResultsStore, self.store), {**run_meta, **checkpoint.meta})
        return prepared

    def _run_task(self, index: int, key: str, prepared: PreparedRun, task: Task) -> None:
        claim = self.store.claim(key, task.measure, task.key)
        if claim.state == "done":
            self.counts["reused"] += 1
            return
        if claim.state == "busy":
            self.busy.setdefault((index, key), []).append(task)
            return
        measure = get_measure(task.measure)
        meter = Meter()
        settings = dict(task.settings)
        try:
            with meter:
                objective = prepared.objective_for(settings.pop(GROUP, None))
                records, details = measure.run(objective, settings)
        except (KeyboardInterrupt, SystemExit):
            self.store.release(key, task.measure, task.key)
            raise
        except _FATAL:
            raise
        except Exception as exc:
            message = f"{self.manifest.runs[index].path}: {task.measure} {task.key}: {_reason(exc)}"
            self.store.fail(key, task.measure, task.key, message)
            self.failures.append(message)
            self.log(f"FAILED {message}")
            return
        matvecs = details.get("matvecs")
        stored = self.store.finish(
            key,
            task.measure,
            task.key,
            records,
            matvecs=None if matvecs is None else int(matvecs),
            seconds=meter.seconds,
            device=str(objective.device),
            dtype=str(objective.dtype).removeprefix("torch."),
            versions=self.versions,
            details=details,
        )
        self.counts["computed" if stored else "by_others"] += 1

    def score_pair(self, pair: PairSpec) -> None:
        """Keskar's parametric plot between two checkpoints, into the ``curves`` table.

        Failures are recorded in the store and in :attr:`failures`; only an
        interruption (``KeyboardInterrupt``, ``SystemExit``) is raised, after the
        task's claim is released.
        """
        try:
            sb = load_checkpoint(pair.sb, trust_pickle=self.trust_pickle)
            lb = load_checkpoint(pair.lb, trust_pickle=self.trust_pickle)
        except CheckpointError as exc:
            self.failures.append(f"pair {pair.label}: {exc}")
            self.log(f"FAILED pair {pair.label}: {exc}")
            return
        task, key = f"{sb.sha256}+{lb.sha256}", settings_key(pair.settings)
        claim = self.store.claim(task, "parametric_plot", key)
        if claim.state == "done":
            self.counts["reused"] += 1
            return
        if claim.state == "busy":
            self._say_waiting(f"the parametric plot {pair.label!r} {key}", claim)
            self.busy_pairs.append(pair)
            return
        try:
            result = self._parametric_plot(sb, lb, pair)
        except (KeyboardInterrupt, SystemExit):
            self.store.release(task, "parametric_plot", key)
            raise
        except _FATAL:
            raise
        except Exception as exc:
            message = f"pair {pair.label}: {_reason(exc)}"
            self.store.fail(task, "parametric_plot", key, message)
            self.failures.append(message)
            self.log(f"FAILED {message}")
            return
        frame = result.to_frame()
        if result.clamped_alphas:
            # Kept beside the curve so a report can say where the loss is an artifact.
            clamped = pd.DataFrame(
                {
                    "alpha": list(result.clamped_alphas),
                    "split": "bn",
                    "metric": CLAMPED,
                    "value": 1.0,
                }
            )
            frame = pd.concat([frame, clamped], ignore_index=True)
        stored = self.store.finish_curve(sb.sha256, lb.sha256, key, pair.label, frame)
        self.counts["computed" if stored else "by_others"] += 1

    def _parametric_plot(self, sb: Checkpoint, lb: Checkpoint, pair: PairSpec) -> Any:
        data, loss = self.data(), self.loss()
        models = [load_into(self.builder()(), ckpt) for ckpt in (sb, lb)]
        lo, hi = pair.settings["alphas"]
        bs = int(self.manifest.scoring["batch_size"])
        return parametric_plot(
            models[0],
            models[1],
            train=objective_data(data.train, bs),
            test=objective_data(data.test, bs) if data.n_test else None,
            **loss.objective_kwargs(),
            alphas=np.linspace(float(lo), float(hi), int(pair.settings["points"])),
            path=pair.settings["curve"],
            bn=pair.settings["bn"],
            batch_size=bs,
            device=self.device,
            dtype=self.dtype,
        )


def duplicate_message(path: Path, first: Path) -> str:
    """The failure line for a run whose file is byte-identical to an earlier run's.

    Returns:
        One line naming both files and the remedy.
    """
    same = (
        "is listed twice"
        if path.resolve() == first.resolve()
        else (f"is byte-identical to {first.resolve()}")
    )
    return (
        f"{path.resolve()}: {same} (the same network as an earlier run; a store keys "
        "checkpoints by content, and counting it twice would bias every comparison): "
        "scored once; list it once in the manifest"
    )


def _sha_or_path(path: Path) -> str:
    try:
        return file_sha256(path)
    except OSError:
        return f"missing:{path.resolve()}"


def _reason(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    if isinstance(exc, KeyError) and text.startswith(("'", '"')):
        text = text[1:-1]
    return text.splitlines()[0] if "\n" in text and len(text) > 400 else text
