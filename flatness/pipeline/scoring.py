"""Score the checkpoints a manifest names, into a resumable results store.

:func:`score` is what ``flatness score`` runs. For each checkpoint it

1. reads the file safely and identifies it by its SHA-256
   (:mod:`flatness.pipeline.checkpoints`);
2. builds the model with the manifest's factory and loads the weights;
3. evaluates the train and test loss and accuracy (eval mode) and stores them with
   the metadata (the checkpoint's own ``meta`` first, then the manifest's entry);
4. builds the :class:`~flatness.curvature.objective.Objective` on a fixed, seeded
   subset of the training set, and runs every measure task not yet in the store,
   committing each one as it finishes.

Then it computes Keskar's parametric plot for each ``[[pairs]]`` entry (on the full
train and test sets) into the store's ``curves`` table.

Bad input never stops the sweep: a checkpoint that cannot be read or loaded, holds
NaN weights or meets an empty data set gets one line naming the file and the cause,
is recorded as failed, and the others are scored.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from flatness.curvature.objective import Objective
from flatness.pipeline.checkpoints import Checkpoint, CheckpointError, load_checkpoint, load_into
from flatness.pipeline.manifest import Manifest, PairSpec, manifest_from_dict, read_manifest
from flatness.pipeline.measures import get_measure, settings_key, settings_label
from flatness.pipeline.store import ResultsStore, load_results
from flatness.results import Result
from flatness.sharpness.interpolation import parametric_plot
from flatness.zoo.data import Dataset, coerce_dataset, load_dataset
from flatness.zoo.factories import import_factory
from flatness.zoo.train import evaluate, package_versions

DEFAULT_STORE = "results.sqlite"
META_DROPPED = ("history",)
"""Checkpoint metadata not copied into the store (long training curves)."""


@dataclasses.dataclass(frozen=True)
class ScoreSummary(Result):
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


@dataclasses.dataclass(frozen=True)
class _Task:
    measure: str
    settings: dict[str, Any]
    key: str


class _Progress:
    """tqdm bars when asked for and installed; otherwise silent."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled

    def bar(self, total: int, desc: str, leave: bool) -> Any:
        if not self.enabled:
            return None
        from tqdm.auto import tqdm

        return tqdm(total=total, desc=desc, leave=leave, file=sys.stderr, dynamic_ncols=True)


def _resolve(target: Any) -> Manifest:
    if isinstance(target, Manifest):
        return target
    if isinstance(target, Mapping):
        return manifest_from_dict(target)
    if isinstance(target, str | os.PathLike):
        return read_manifest(target)
    raise TypeError(
        f"score() takes a manifest path, a Manifest or a manifest dictionary, "
        f"not {type(target).__name__}"
    )


def _load_data(manifest: Manifest) -> Dataset:
    data = manifest.data
    if isinstance(data, str):
        return load_dataset(data, **manifest.data_kwargs)
    return coerce_dataset(data, name="<in-memory data>", settings=manifest.data_kwargs)


def _model_builder(manifest: Manifest) -> Callable[[], nn.Module]:
    factory = manifest.model_factory
    fn = import_factory(factory, kind="model factory") if isinstance(factory, str) else factory

    def build() -> nn.Module:
        model = fn(**manifest.model_kwargs)
        if not isinstance(model, nn.Module):
            raise TypeError(
                f"the model factory returned a {type(model).__name__}, not a torch.nn.Module"
            )
        return model

    return build


def scoring_device(name: str, env: Mapping[str, str] | None = None) -> torch.device:
    """The device to score on; a bare ``"cuda"`` under ``torchrun`` means this rank's GPU.

    Several processes can score one manifest into one store (each task is claimed
    before it is computed), so ``torchrun --nproc-per-node 4 -m flatness score m.toml
    --device cuda`` spreads a sweep over four GPUs: each process takes
    ``cuda:$LOCAL_RANK``.

    Examples:
        >>> r = {"LOCAL_RANK": "3"}
        >>> scoring_device("cuda", r), scoring_device("cuda:1", r), scoring_device("cpu", r)
        (device(type='cuda', index=3), device(type='cuda', index=1), device(type='cpu'))
    """
    env = os.environ if env is None else env
    device = torch.device(name)
    if device.type == "cuda" and device.index is None and "LOCAL_RANK" in env:
        return torch.device("cuda", int(env["LOCAL_RANK"]))
    return device


def training_subset(data: Dataset, examples: int | str | None, seed: int) -> tuple[Any, Any]:
    """The fixed, seeded subset of ``examples`` training examples (all when ``None``/``"all"``).

    Examples:
        >>> X, y = torch.arange(10.0).reshape(10, 1), torch.zeros(10, dtype=torch.long)
        >>> d = coerce_dataset(((X, y), (X, y)), name="toy", settings={})
        >>> training_subset(d, 3, seed=0)[0].flatten().tolist()
        [1.0, 4.0, 7.0]
    """
    x, y = data.train
    n = int(x.shape[0])
    if examples is None or examples == "all" or int(examples) >= n:
        return x, y
    gen = torch.Generator().manual_seed(int(seed))
    idx = torch.randperm(n, generator=gen)[: int(examples)].sort().values
    return x[idx], y[idx]


def _tasks(manifest: Manifest) -> list[_Task]:
    """Every (measure, settings) task; a measure's seed defaults to ``[scoring] seed``."""
    out = []
    for name, given in manifest.measures.items():
        measure = get_measure(name)
        settings = dict(given)
        if "seed" in measure.defaults() and "seed" not in settings:
            settings["seed"] = int(manifest.scoring["seed"])
        for task in measure.tasks(settings):
            out.append(_Task(name, task, settings_key(task)))
    return out


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


class _Scorer:
    def __init__(
        self,
        manifest: Manifest,
        store: ResultsStore,
        *,
        trust_pickle: bool,
        progress: _Progress,
        log: Callable[[str], None],
    ) -> None:
        self.manifest = manifest
        self.store = store
        self.trust_pickle = trust_pickle
        self.progress = progress
        self.log = log
        scoring = manifest.scoring
        self.device = torch.device(scoring["device"])
        self.dtype = torch.float64 if scoring["dtype"] == "float64" else torch.float32
        self.tasks = _tasks(manifest)
        self.versions = package_versions()
        self.counts = {"computed": 0, "reused": 0, "by_others": 0}
        self.failures: list[str] = []
        self.busy: dict[int, list[_Task]] = {}
        self.busy_pairs: list[PairSpec] = []
        self._data: Dataset | Exception | None = None
        self._build: Callable[[], nn.Module] | Exception | None = None

    # resources shared by all checkpoints, built once; their failure fails each run
    def data(self) -> Dataset:
        if self._data is None:
            try:
                self._data = _load_data(self.manifest)
            except Exception as exc:
                self._data = exc
        if isinstance(self._data, Exception):
            raise self._data
        return self._data

    def builder(self) -> Callable[[], nn.Module]:
        if self._build is None:
            try:
                self._build = _model_builder(self.manifest)
            except Exception as exc:
                self._build = exc
        if isinstance(self._build, Exception):
            raise self._build
        return self._build

    def _fail_run(self, key: str, path: Path, message: str) -> None:
        self.store.put_run(key, path, status="failed", error=message)
        self.failures.append(message)
        self.log(f"FAILED {message}")

    def score_run(self, index: int, only: Sequence[_Task] | None = None) -> None:
        run = self.manifest.runs[index]
        path = run.path
        try:
            checkpoint = load_checkpoint(path, trust_pickle=self.trust_pickle)
        except CheckpointError as exc:
            key = f"missing:{path.resolve()}" if not path.is_file() else _sha_or_path(path)
            self._fail_run(key, path, str(exc))
            return
        key = checkpoint.sha256
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
            objective = self._prepare(run.meta, checkpoint)
        except Exception as exc:
            self._fail_run(key, path, f"{path}: {_reason(exc)}")
            return
        bar = self.progress.bar(len(tasks), desc=path.name, leave=False)
        try:
            for task in tasks:
                self._run_task(index, key, objective, task)
                if bar is not None:
                    bar.update(1)
        finally:
            if bar is not None:
                bar.close()

    def _prepare(self, run_meta: Mapping[str, Any], checkpoint: Checkpoint) -> Objective:
        data = self.data()
        model = load_into(self.builder()(), checkpoint)
        model = model.to(device=self.device, dtype=self.dtype)
        bs = int(self.manifest.scoring["batch_size"])
        x_train, y_train = (t.to(self.device) for t in data.train)
        x_test, y_test = (t.to(self.device) for t in data.test)
        if x_train.is_floating_point():
            x_train, x_test = x_train.to(self.dtype), x_test.to(self.dtype)
        try:
            train_loss, train_acc = evaluate(model, x_train, y_train, batch_size=bs)
            test_loss, test_acc = (
                evaluate(model, x_test, y_test, batch_size=bs)
                if x_test.shape[0]
                else (float("nan"), float("nan"))
            )
        except (RuntimeError, ValueError, IndexError) as exc:
            raise RuntimeError(
                f"the model cannot run on the data ({_reason(exc)}); check that the [model] "
                f"factory and kwargs fit the [data] set (inputs of shape "
                f"{tuple(x_train.shape[1:])}, {data.num_classes} classes)"
            ) from exc
        subset = training_subset(
            data, self.manifest.scoring["examples"], self.manifest.scoring["seed"]
        )
        objective = Objective(model, subset, batch_size=bs, device=self.device, dtype=self.dtype)
        meta = _run_meta(run_meta, checkpoint)
        self.store.put_run(
            checkpoint.sha256,
            checkpoint.path,
            regime=None if meta.get("regime") is None else str(meta["regime"]),
            batch_size=_float_or_none(meta.get("batch_size")),
            lr=_float_or_none(meta.get("lr")),
            seed=_int_or_none(meta.get("seed")),
            epoch=_int_or_none(meta.get("epoch")),
            meta=meta,
            train_loss=train_loss,
            train_accuracy=train_acc,
            test_loss=test_loss,
            test_accuracy=test_acc,
            examples=objective.num_examples,
            status="ok",
            error=None,
        )
        return objective

    def _run_task(self, index: int, key: str, objective: Objective, task: _Task) -> None:
        claim = self.store.claim(key, task.measure, task.key)
        if claim.state == "done":
            self.counts["reused"] += 1
            return
        if claim.state == "busy":
            self.busy.setdefault(index, []).append(task)
            return
        measure = get_measure(task.measure)
        started = time.perf_counter()
        try:
            records, details = measure.run(objective, task.settings)
        except (KeyboardInterrupt, SystemExit):
            self.store.release(key, task.measure, task.key)
            raise
        except Exception as exc:
            message = f"{self.manifest.runs[index].path}: {task.measure} {task.key}: {_reason(exc)}"
            self.store.fail(key, task.measure, task.key, message)
            self.failures.append(message)
            self.log(f"FAILED {message}")
            return
        seconds = time.perf_counter() - started
        matvecs = details.get("matvecs")
        self.store.finish(
            key,
            task.measure,
            task.key,
            records,
            matvecs=None if matvecs is None else int(matvecs),
            seconds=seconds,
            device=str(objective.device),
            dtype=str(objective.dtype).removeprefix("torch."),
            versions=self.versions,
            details=details,
        )
        self.counts["computed"] += 1

    def score_pair(self, pair: PairSpec) -> None:
        """Keskar's parametric plot between two checkpoints, into the ``curves`` table."""
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
            self.busy_pairs.append(pair)
            return
        try:
            data = self.data()
            models = [load_into(self.builder()(), ckpt) for ckpt in (sb, lb)]
            lo, hi = pair.settings["alphas"]
            result = parametric_plot(
                models[0],
                models[1],
                train=data.train,
                test=data.test if data.n_test else None,
                alphas=np.linspace(float(lo), float(hi), int(pair.settings["points"])),
                path=pair.settings["curve"],
                bn=pair.settings["bn"],
                batch_size=int(self.manifest.scoring["batch_size"]),
                device=self.device,
                dtype=self.dtype,
            )
        except (KeyboardInterrupt, SystemExit):
            self.store.release(task, "parametric_plot", key)
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
        self.store.finish_curve(sb.sha256, lb.sha256, key, pair.label, frame)
        self.counts["computed"] += 1

    def wait_for_others(self, poll: float) -> None:
        """Wait for tasks other processes hold; take over those whose owner died."""
        while self.busy_pairs:
            time.sleep(poll)
            held, self.busy_pairs = self.busy_pairs, []
            for pair in held:
                self.score_pair(pair)
        while self.busy:
            time.sleep(poll)
            waiting, self.busy = self.busy, {}
            for index, tasks in waiting.items():
                key = _sha_or_path(self.manifest.runs[index].path)
                still = []
                for task in tasks:
                    status = self.store.task_status(key, task.measure, task.key)
                    if status == "done":
                        self.counts["by_others"] += 1
                    elif status == "failed":
                        path = self.manifest.runs[index].path
                        self.failures.append(f"{path}: {task.measure} failed in another process")
                    else:
                        still.append(task)
                if still:
                    self.score_run(index, only=still)


def _sha_or_path(path: Path) -> str:
    from flatness.pipeline.checkpoints import file_sha256

    try:
        return file_sha256(path)
    except OSError:
        return f"missing:{path.resolve()}"


def _reason(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    if isinstance(exc, KeyError) and text.startswith(("'", '"')):
        text = text[1:-1]
    return text.splitlines()[0] if "\n" in text and len(text) > 400 else text


def scoring_objective(
    manifest: Any,
    checkpoint: str | os.PathLike[str],
    *,
    trust_pickle: bool = False,
) -> Objective:
    """The objective a manifest's measures are computed on, for one checkpoint.

    The same model, the same seeded subset of ``[scoring] examples`` training examples,
    batch size, device and dtype as :func:`score` uses, so a number computed on it can
    be set beside the stored ones (an analysis of a store's checkpoints, for example).

    Args:
        manifest: A manifest file, a :class:`~flatness.pipeline.manifest.Manifest` or
            a parsed manifest dictionary.
        checkpoint: The checkpoint file.
        trust_pickle: Allow a checkpoint that needs full unpickling (trusted files only).

    Raises:
        flatness.pipeline.CheckpointError: If the checkpoint cannot be read or does not
            fit the model.
    """
    man = _resolve(manifest)
    scoring = man.scoring
    device = scoring_device(scoring["device"])
    dtype = torch.float64 if scoring["dtype"] == "float64" else torch.float32
    data = _load_data(man)
    model = load_into(_model_builder(man)(), load_checkpoint(checkpoint, trust_pickle=trust_pickle))
    subset = training_subset(data, scoring["examples"], scoring["seed"])
    return Objective(
        model.to(device=device, dtype=dtype),
        subset,
        batch_size=int(scoring["batch_size"]),
        device=device,
        dtype=dtype,
    )


def score(
    manifest: Any,
    *,
    store: str | os.PathLike[str] | None = None,
    measures: Sequence[str] | None = None,
    device: str | None = None,
    dtype: str | None = None,
    examples: int | None = None,
    trust_pickle: bool = False,
    progress: bool = False,
    log: Callable[[str], None] | None = None,
    wait: bool = True,
    poll: float = 0.5,
) -> ScoreSummary:
    """Score every checkpoint of a manifest into a results store (``flatness score``).

    Args:
        manifest: A manifest file, a :class:`~flatness.pipeline.manifest.Manifest` or
            a parsed manifest dictionary.
        store: The SQLite results store (default ``results.sqlite`` beside the manifest).
        measures: Score only these measures (their manifest settings, else defaults).
        device: Override ``[scoring] device`` (for example ``"cuda"``).
        dtype: Override ``[scoring] dtype``.
        examples: Override ``[scoring] examples``.
        trust_pickle: Allow checkpoints that need full unpickling (trusted files only).
        progress: Show progress bars (per checkpoint and per measure) on stderr.
        log: Called with one line per failure (default: nothing).
        wait: Wait for tasks another process is computing, so the summary is complete.
        poll: Seconds between checks while waiting.

    Returns:
        What was computed, reused and failed; ``summary.ok`` is true when all was scored.

    Raises:
        ManifestError: If the manifest itself is invalid.
        ValueError: If the store is not a results store, the device is unavailable, or
            the store holds scores computed on another objective (other model, data,
            examples, example seed or dtype than this manifest's).
    """
    started = time.perf_counter()
    man = _resolve(manifest)
    if measures:
        man = man.with_measures(list(measures))
    man = man.with_scoring(device=device, dtype=dtype, examples=examples)
    dev = scoring_device(man.scoring["device"])
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' was asked for, but torch.cuda.is_available() is False")
    man = man.with_scoring(device=str(dev))
    if store is None:
        store = (man.path.parent if man.path is not None else Path.cwd()) / DEFAULT_STORE
    bars = _Progress(progress)
    with ResultsStore(store) as db:
        info = _manifest_info(man)
        _check_same_objective(db, info, Path(store))
        db.set_info("manifest", info)
        scorer = _Scorer(
            man, db, trust_pickle=trust_pickle, progress=bars, log=log or (lambda s: None)
        )
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
    pending = sum(len(t) for t in scorer.busy.values()) + len(scorer.busy_pairs)
    return ScoreSummary(
        store=str(store),
        checkpoints=len(man.runs),
        computed=scorer.counts["computed"],
        reused=scorer.counts["reused"],
        by_others=scorer.counts["by_others"],
        failed=len(scorer.failures),
        pending=pending,
        failures=tuple(scorer.failures),
        seconds=time.perf_counter() - started,
    )


CLAMPED = "variance_clamped"
"""The ``curves`` metric (split ``"bn"``) marking the α at which an extrapolated
BatchNorm running variance was negative and clamped to zero (``bn = "interpolate"``)."""

OBJECTIVE_SETTINGS = ("examples", "seed", "dtype")
"""``[scoring]`` settings that change the numbers: the examples, the seed that picks them
(when a subset is asked for) and the precision."""


def _check_same_objective(db: ResultsStore, info: Mapping[str, Any], store: Path) -> None:
    """Refuse to add scores on another objective to a store that already holds some.

    Stored tasks are reused by checkpoint, measure and settings; scores computed on
    other examples, another model or another precision would be reused as if they
    answered the new manifest.
    """
    before = db.get_info("manifest")
    if not before or not db.has_measurements():
        return
    changed = []
    for key in ("model", "data"):
        if before.get(key) != info.get(key):
            changed.append(f"[{key}] {before.get(key)} → {info.get(key)}")
    old, new = before.get("scoring", {}), info.get("scoring", {})
    subset = all(isinstance(d.get("examples"), int) for d in (old, new))
    for key in OBJECTIVE_SETTINGS:
        if key == "seed" and not subset:
            continue  # the seed picks the subset; with every example it changes nothing
        if old.get(key) != new.get(key):
            changed.append(f"[scoring] {key} = {old.get(key)!r} → {new.get(key)!r}")
    if changed:
        raise ValueError(
            f"{store} holds scores computed on another objective ({'; '.join(changed)}); "
            "they would be reused as if they answered this manifest. Score into a new store "
            "(--store NEW.sqlite) or delete this one to recompute everything"
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


def summary_table(
    store: str | os.PathLike[str], *, root: str | os.PathLike[str] | None = None
) -> Any:
    """One row per checkpoint: regime, status, accuracies and each measure's headline.

    The headline of a measure is its single value, or its first component (the largest
    eigenvalue for ``lambda_max``, the SLQ trace for ``density``); a measure scored
    with several settings gets one column per setting (``keskar(eps=0.001, subspace=0)``).

    Args:
        store: The results store.
        root: Show checkpoint paths relative to this folder (the manifest's).
    """
    import pandas as pd

    from flatness.pipeline.store import load_runs

    runs = load_runs(store)
    df = load_results(store)
    head = df[df["component"].isin(["", "1", "trace"])].copy()
    labels = {}
    for measure, keys in head.groupby("measure")["settings"]:
        parsed = {key: json.loads(key) for key in keys.unique()}
        names = sorted({k for d in parsed.values() for k in d})
        varied = tuple(k for k in names if len({json.dumps(d.get(k)) for d in parsed.values()}) > 1)
        for key, settings in parsed.items():
            labels[(measure, key)] = settings_label(str(measure), settings, varied)
    head["column"] = [
        labels[(m, k)] for m, k in zip(head["measure"], head["settings"], strict=True)
    ]
    wide = head.pivot_table(index="checkpoint", columns="column", values="value", aggfunc="first")
    table = runs.set_index("checkpoint")[
        ["path", "regime", "status", "train_accuracy", "test_accuracy"]
    ]
    table = table.join(wide, how="left")
    if root is not None:
        base = Path(root).resolve()
        table["path"] = [
            os.path.relpath(p, base) if Path(p).is_absolute() else p for p in table["path"]
        ]
    return pd.DataFrame(table).reset_index(drop=True)
