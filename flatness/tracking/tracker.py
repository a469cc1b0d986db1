"""The tracker: sharpness measured inside a training loop, as a time series.

A :class:`Tracker` is built once, before training, with the fixed evaluation data (a
seeded training subset, e.g. :func:`flatness.pipeline.training_subset`, and
optionally a test set), the measures, a cadence and a destination; the loop then
calls :meth:`Tracker.update` after every update. At the steps its cadence names, the
tracker evaluates the model on the fixed data (in evaluation mode, like
:class:`~flatness.curvature.objective.Objective`: BatchNorm's running statistics,
dropout off), takes the measures
(:mod:`flatness.tracking.measures`, warm-started from the previous step) and keeps a
record (:mod:`flatness.tracking.records`): in memory (:meth:`Tracker.frame`) and, with
``store=``, in the results store's ``tracks`` table (:func:`flatness.load_tracks`).

The model is read, never changed, and the loop's random number generators, grad
mode, ``.grad`` tensors and train/eval modes are as they were after each call
(:func:`~flatness.tracking.loop_state.loop_state_kept`). Tracking never stops
training: a non-finite loss is recorded (``nonfinite=1``) and said once; a store that
cannot be written raises a clear error or, with ``on_store_error="warn"``, says so
once and keeps the records in memory.
"""

from __future__ import annotations

import math
import os
import time
import warnings
from collections.abc import Mapping
from typing import Any, Literal

import pandas as pd
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from flatness.curvature.batches import Batch, batch_size_of, split_batches
from flatness.curvature.objective import BatchLossFn, LossFn, Objective
from flatness.curvature.options import HessianOptions
from flatness.distributed.group import ProcessGroupInfo
from flatness.distributed.sharding import Distributed, resolve_group
from flatness.evaluation import mean_loss_and_accuracy
from flatness.pipeline.database import StoreError
from flatness.pipeline.readers import records_frame
from flatness.pipeline.store import ResultsStore
from flatness.results import COST_FORWARD, to_plain
from flatness.tracking.cadence import (
    DEFAULT_EVERY,
    DEFAULT_OVERHEAD,
    DEFAULT_PER_DECADE,
    Cadence,
    Every,
)
from flatness.tracking.loop_state import loop_state_kept
from flatness.tracking.measures import MeasureSpec, tracked_measures
from flatness.tracking.ranks import LoopInputs, agree, objective_distributed
from flatness.tracking.records import hyperparameter_fields

__all__ = ["STORE_PATIENCE", "Tracker"]

STORE_PATIENCE = 10.0
"""Seconds a tracker's write waits for a locked store before it counts as failed."""

Signature = tuple[tuple[str, tuple[int, ...]], ...]


def _signature(model: nn.Module) -> Signature:
    return tuple((n, tuple(p.shape)) for n, p in model.named_parameters())


def _describe(signature: Signature) -> str:
    shown = ", ".join(f"{n} {list(s)}" for n, s in signature[:6])
    return f"{len(signature)} parameters ({shown}{', ...' if len(signature) > 6 else ''})"


def _finite(x: float | None) -> bool:
    return x is None or math.isfinite(x)


def _fit(obj: Objective) -> tuple[float, float]:
    """Mean loss and accuracy (NaN where undefined) of the objective's model on its data."""
    if obj.batch_loss is not None or obj.loss_fn is None:
        return float(obj.value()), math.nan
    loss, accuracy = mean_loss_and_accuracy(
        obj.model_fn(), obj.batches, obj.loss_fn, reduce=obj.reduce
    )
    return float(loss), math.nan if accuracy is None else float(accuracy)


class Tracker:
    """Measures a model's sharpness during training, at a cadence, into a time series.

    Args:
        train: The fixed evaluation data: an ``(inputs, targets)`` pair (split into
            batches of ``batch_size``), a list of batches or a DataLoader (read once).
            A seeded subset of the training set is the usual choice
            (:func:`flatness.pipeline.training_subset`).
        test: Test data of the same kinds, for ``test_loss``/``test_accuracy``.
        measures: What to measure (:func:`~flatness.tracking.measures.tracked_measures`):
            ``("lambda_max", "trace")``, or ``{"lambda_max": {"k": 3}, ...}``.
        every: The cadence (:class:`~flatness.tracking.cadence.Cadence`): a number of
            updates, ``"epoch"``, ``"log"`` or ``"budget"`` (the default: log-spaced
            steps while the measurements cost at most ``overhead`` of the training).
        store: A results store to write the records to (``None``: in memory only).
        run: The run's name in the store.
        loss_fn: ``loss_fn(output, target)``, the mean loss of a batch.
        batch_loss: Instead, ``batch_loss(model_fn, batch)`` for batches that are not
            ``(x, y)`` (no accuracy then).
        hessian: How Hessian-vector products are taken.
        seed: The measures' seed, the same at every step (common random numbers).
        on_store_error: ``"raise"`` (a :class:`StoreError` naming the store) or
            ``"warn"`` (a warning, then in-memory records only).
        batch_size: Batch size that splits a tensor pair.
        dtype: The dtype of the evaluation (default: the model's).
        device: Where to evaluate (default: the model's device).
        per_decade: Points per decade of ``every="log"`` and ``"budget"``.
        overhead: The share of the training's work ``every="budget"`` may spend.
        source: The store's ``source`` column.
        distributed: The process group the measurements are data-parallel over, as
            for :class:`~flatness.Objective` (``"auto"``: the world under
            ``torchrun``, none in a single process). Every rank builds the tracker with
            the same data and calls :meth:`update` at every step; the ranks agree at
            each call on whether to measure, get the same records, and only the
            group's rank 0 writes ``store`` (:mod:`flatness.tracking.ranks`).
        presharded: Under a group, each rank was given its own part of the data.

    Raises:
        ValueError: For an unknown measure or setting, a bad cadence or
            ``on_store_error``.
        StoreError: If ``store`` cannot be opened and ``on_store_error="raise"``.

    Examples:
        >>> torch.manual_seed(0) and None
        >>> net = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 3))
        >>> X, y = torch.randn(64, 4), torch.randint(0, 3, (64,))
        >>> tracker = Tracker((X, y), measures=("lambda_max",), every=5)
        >>> opt = torch.optim.SGD(net.parameters(), lr=0.1)
        >>> for step in range(11):
        ...     rec = tracker.update(net, step=step, lr=0.1, batch_size=64)
        ...     opt.zero_grad(); F.cross_entropy(net(X), y).backward(); opt.step()
        >>> tracker.frame()[["step", "stability_threshold", "lambda_max_warm"]].values.tolist()
        [[0.0, 20.0, 0.0], [5.0, 20.0, 1.0], [10.0, 20.0, 1.0]]
    """

    def __init__(
        self,
        train: Any,
        *,
        test: Any = None,
        measures: MeasureSpec = ("lambda_max",),
        every: Every = DEFAULT_EVERY,
        store: str | os.PathLike[str] | None = None,
        run: str = "run",
        loss_fn: LossFn | None = F.cross_entropy,
        batch_loss: BatchLossFn | None = None,
        hessian: HessianOptions | None = None,
        seed: int = 0,
        on_store_error: Literal["raise", "warn"] = "raise",
        batch_size: int = 1024,
        dtype: torch.dtype | None = None,
        device: torch.device | str | None = None,
        per_decade: int = DEFAULT_PER_DECADE,
        overhead: float = DEFAULT_OVERHEAD,
        source: str = "tracker",
        distributed: Distributed = "auto",
        presharded: bool = False,
    ) -> None:
        if on_store_error not in ("raise", "warn"):
            raise ValueError(f"on_store_error must be 'raise' or 'warn', got {on_store_error!r}")
        self.run, self.source = str(run), str(source)
        self.on_store_error = on_store_error
        self.cadence = Cadence(every, per_decade, overhead)
        self.measures = tracked_measures(measures, seed=seed, hessian=hessian)
        #: the process group the measurements reduce over, or ``None``
        self.group: ProcessGroupInfo | None = resolve_group(distributed)
        self._objective_kwargs: dict[str, Any] = {
            "loss_fn": loss_fn,
            "batch_loss": batch_loss,
            "device": device,
            "dtype": dtype,
            "distributed": objective_distributed(self.group),
            "presharded": presharded,
        }
        self._train: list[Batch] = split_batches(train, batch_size)
        self._test: list[Batch] | None = None if test is None else split_batches(test, batch_size)
        self._examples = sum(batch_size_of(b) for b in self._train)
        self._test_examples = sum(batch_size_of(b) for b in self._test or [])
        self._records: list[dict[str, Any]] = []
        self._signature: Signature | None = None
        self._last_step: int | None = None
        self._seen: int | None = None
        self._said_nonfinite = False
        self._last_nonfinite = False
        self.store_path = None if store is None else str(store)
        self._store: ResultsStore | None = None
        if store is not None and (self.group is None or self.group.rank == 0):
            try:
                self._store = ResultsStore(store, timeout=1.0, patience=STORE_PATIENCE)
            except (StoreError, OSError) as exc:
                self._store_failed(exc, "opening it")

    # ------------------------------------------------------------------ the loop's call
    def update(
        self,
        model: nn.Module,
        *,
        step: int,
        epoch: float | None = None,
        lr: float | None = None,
        batch_size: int | None = None,
        momentum: float = 0.0,
        optimizer: str = "sgd",
        epoch_end: bool = False,
        loss: float | Tensor | None = None,
        examples_seen: int | None = None,
        force: bool = False,
        **extra: Any,
    ) -> dict[str, Any] | None:
        """Measure the model if the cadence says so (call it after every update).

        Args:
            model: The model being trained (read, never changed).
            step: Updates so far.
            epoch: The epoch (a fraction of an epoch is fine).
            lr: The learning rate of the last update.
            batch_size: Its batch size (under a process group, this rank's: the
                record holds the ranks' sum, as ``examples_seen``).
            momentum: Its heavy-ball momentum.
            optimizer: Its optimizer's name (``"sgd"``, ``"adam"``, ...).
            epoch_end: Whether this call ends an epoch (``every="epoch"`` measures then).
            loss: The loop's mini-batch loss; a non-finite one is recorded at once.
            examples_seen: Training examples seen so far (default: counted from
                ``batch_size`` and ``step`` over the calls).
            force: Measure whatever the cadence says (e.g. at the end of training).
            **extra: Fields copied into the record (``regime``, ``schedule``, ``seed``...).

        Returns:
            The record, or ``None`` when nothing was measured.

        Raises:
            ValueError: If the model's parameter names or shapes differ from the first
                call's (checked when the model is measured).
            StoreError: If the store cannot be written and ``on_store_error="raise"``
                (the record is kept in memory all the same).
        """
        step = int(step)
        if isinstance(loss, Tensor):
            loss = float(loss.detach())
        if examples_seen is not None:
            self._seen = int(examples_seen)
        elif batch_size is not None:
            self._seen = (self._seen or 0) + int(batch_size) * (step - (self._last_step or 0))
        self._last_step = step
        said = agree(
            self.group,
            model,
            LoopInputs(
                0 if self._seen is None and step == 0 else self._seen,
                batch_size,
                loss,
                bool(epoch_end),
                bool(force),
                True,
            ),
        )
        seen, loss, batch_size = said.examples_seen, said.loss, said.batch_size
        bad_loss = not _finite(loss)
        due = self.cadence.due(step, epoch_end=said.epoch_end, examples_seen=seen) or said.force
        if self._signature is None or due or bad_loss:
            self._check_model(model)  # on the calls that read the model (cheap otherwise)
        if not due and not (bad_loss and not self._last_nonfinite):
            return None
        start = time.perf_counter()
        record: dict[str, Any] = {"run": self.run, "source": self.source, "step": step}
        record.update(to_plain(extra))
        record.update(epoch=math.nan if epoch is None else float(epoch), updates=step)
        record["examples_seen"] = math.nan if seen is None else seen
        record.update(
            hyperparameter_fields(
                lr=lr, batch_size=batch_size, momentum=momentum, optimizer=optimizer
            )
        )
        if loss is not None:
            record["minibatch_loss"] = float(loss)
        with loop_state_kept(model):
            record.update(self._measure(model, skip=bad_loss or not said.finite_model))
        record["nonfinite"] = int(bad_loss or not _finite(record.get("train_loss")))
        record["tracker_seconds"] = time.perf_counter() - start
        record["tracker_example_gradients"] = self._cost(record)
        self.cadence.charge(record["tracker_example_gradients"])
        self._nonfinite(record)
        self._keep(record)
        return record

    def _measure(self, model: nn.Module, *, skip: bool) -> dict[str, Any]:
        """Fit and measures at the model's parameters (only the fit where it is not finite)."""
        if skip or not all(bool(torch.isfinite(p).all()) for p in model.parameters()):
            return {"train_loss": math.nan, "fit_on": "subset"}
        obj = Objective(model, self._train, **self._objective_kwargs)
        self._examples = obj.num_examples  # all ranks' (the budget's unit)
        train_loss, train_accuracy = _fit(obj)
        out: dict[str, Any] = {
            "train_loss": train_loss,
            "train_accuracy": train_accuracy,
            "fit_on": "subset",
        }
        if self._test is not None:
            test = Objective(model, self._test, **self._objective_kwargs)
            self._test_examples = test.num_examples
            out["test_loss"], out["test_accuracy"] = _fit(test)
        if math.isfinite(train_loss):
            for measure in self.measures:
                out.update(measure.measure(obj))
        return out

    def _cost(self, record: Mapping[str, Any]) -> float:
        """A record's nominal cost in single-example gradients (what the budget counts).

        Each measure's ``gradient_equivalents`` over the fixed subset, and a forward pass
        (a third of a gradient) over each of the subset and the test data for the fit.
        """
        costs = (record.get(f"{m.name}_gradient_equivalents", 0.0) for m in self.measures)
        measures = sum(float(c) for c in costs if math.isfinite(float(c)))
        fit = COST_FORWARD * (self._examples + self._test_examples)
        return measures * self._examples + (fit if "train_accuracy" in record else 0.0)

    def _check_model(self, model: nn.Module) -> None:
        signature = _signature(model)
        if self._signature is None:
            self._signature = signature
            return
        if signature == self._signature:
            return
        first, now = dict(self._signature), dict(signature)
        missing = [n for n in first if n not in now]
        new = [n for n in now if n not in first]
        reshaped = [
            f"{n} {list(first[n])} -> {list(now[n])}"
            for n in first
            if n in now and first[n] != now[n]
        ]
        raise ValueError(
            f"Tracker run {self.run!r}: the model's parameters differ from the first call's: "
            f"first call {_describe(self._signature)}; this call {_describe(signature)}"
            f" (missing {missing[:5]}, new {new[:5]}, reshaped {reshaped[:5]}); "
            "a tracker follows one model: build one Tracker per model"
        )

    def _nonfinite(self, record: Mapping[str, Any]) -> None:
        self._last_nonfinite = bool(record["nonfinite"])
        if self._last_nonfinite and not self._said_nonfinite:
            self._said_nonfinite = True
            warnings.warn(
                f"Tracker run {self.run!r}: the loss is not finite at step {record['step']} "
                "(NaN or Inf); recorded with nonfinite=1 and no measures, training goes on "
                "(said once)",
                RuntimeWarning,
                stacklevel=3,
            )

    # ------------------------------------------------------------------ the records
    def _keep(self, record: dict[str, Any]) -> None:
        self._records.append(record)
        if self._store is None:
            return
        fields = {k: v for k, v in record.items() if k not in ("run", "source", "step")}
        try:
            self._store.put_track(self.run, self.source, int(record["step"]), fields)
        except (StoreError, OSError) as exc:
            self._store_failed(exc, f"writing the record of step {record['step']}")

    def _store_failed(self, exc: BaseException, doing: str) -> None:
        """Raise (the next record tries the store again), or warn once and drop the store."""
        message = (
            f"Tracker run {self.run!r}: the store {self.store_path} failed while {doing}: {exc}"
        )
        if self.on_store_error == "raise":
            raise StoreError(
                f"{message}; the records so far are in tracker.frame(); pass "
                "on_store_error='warn' to keep training with in-memory records",
                getattr(exc, "kind", "other"),
            ) from exc
        self.close()
        warnings.warn(
            f"{message}; the tracker keeps its records in memory from now on (tracker.frame())",
            RuntimeWarning,
            stacklevel=4,
        )

    @property
    def records(self) -> list[dict[str, Any]]:
        """The records so far (copies), oldest first."""
        return [dict(r) for r in self._records]

    def frame(self) -> pd.DataFrame:
        """The records so far as a frame with the columns of :func:`flatness.load_tracks`.

        Returns:
            One row per record: ``run``, ``source``, ``step``, then the fields.
        """
        return records_frame(self._records)

    def close(self) -> None:
        """Close the store (the records stay readable with :meth:`frame`)."""
        if self._store is not None:
            self._store.close()
            self._store = None

    def __enter__(self) -> Tracker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
