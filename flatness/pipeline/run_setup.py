"""From a loaded checkpoint to what its measure tasks run on.

The :class:`~flatness.pipeline.scorer.Scorer` hands each checkpoint's model here
(:func:`prepare_run`), which

1. puts the model in the scoring device and precision, and notes the precision the
   checkpoint was stored in when it is a low one (a bfloat16 or float16 checkpoint is
   analysed in ``[scoring] dtype``, float32 unless asked);
2. checks its BatchNorm running statistics (:func:`flatness.batchnorm.batchnorm_check`
   on the first scoring batch) and recomputes them on the scoring data when
   ``[scoring] recompute_batchnorm`` asks; statistics that look stale and are kept
   raise a :class:`~flatness.batchnorm.StaleBatchNormWarning` naming the checkpoint,
   the two losses and the remedy;
3. evaluates the train and test loss (and the accuracy, for class labels) with the
   manifest's loss;
4. builds the objective on the fixed, seeded subset of training examples, and one per
   parameter group on demand (:meth:`PreparedRun.objective_for`).

What it found goes into the run's metadata (:attr:`PreparedRun.notes`: ``batchnorm``,
``checkpoint_dtype``), where reports can show it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import warnings
from collections.abc import Iterator, Mapping
from typing import Any

import torch
from torch import Tensor, nn

from flatness.batchnorm import (
    StaleBatchNormWarning,
    batchnorm_check,
    norm_layers,
    recompute_batchnorm,
)
from flatness.curvature.batches import split_batches
from flatness.curvature.objective import Objective
from flatness.curvature.precision import LOW_PRECISION
from flatness.dataset import DataSplit, ScoringData, objective_data, split_examples
from flatness.evaluation import evaluate
from flatness.pipeline.named_losses import ScoringLoss
from flatness.pipeline.objective_setup import training_subset

__all__ = ["PreparedRun", "prepare_run", "split_metrics", "stored_precision"]


def stored_precision(state: Mapping[str, Tensor]) -> str | None:
    """The low precision a checkpoint's floating tensors are stored in, if any
    (:data:`~flatness.curvature.precision.LOW_PRECISION`: they are analysed in
    ``[scoring] dtype``, float32 unless asked).

    Returns:
        ``"bfloat16"`` or ``"float16"`` when a floating tensor has it, else ``None``.

    Examples:
        >>> stored_precision({"w": torch.ones(2, dtype=torch.bfloat16)})
        'bfloat16'
        >>> stored_precision({"w": torch.ones(2)}) is None
        True
    """
    for t in state.values():
        if t.dtype in LOW_PRECISION:
            return str(t.dtype).removeprefix("torch.")
    return None


@dataclasses.dataclass
class PreparedRun:
    """One checkpoint made ready for its tasks.

    Attributes:
        objective: The objective over every trainable parameter.
        metrics: ``train_loss``, ``train_accuracy``, ``test_loss``, ``test_accuracy``
            (NaN where they do not apply).
        notes: What goes into the run's metadata (``batchnorm``, ``checkpoint_dtype``).
        kwargs: The keywords the objectives are built with (data, loss, precision).
    """

    objective: Objective
    metrics: dict[str, float]
    notes: dict[str, Any]
    kwargs: dict[str, Any]
    _groups: dict[str, Objective] = dataclasses.field(default_factory=dict)

    def objective_for(self, group: str | None) -> Objective:
        """The objective of a parameter group (built once), or the whole one for ``None``.

        Returns:
            An objective whose variables are the group's parameters, the others fixed.
        """
        if group is None:
            return self.objective
        if group not in self._groups:
            self._groups[group] = Objective(self.objective.model, params=group, **self.kwargs)
        return self._groups[group]


def split_metrics(
    model: nn.Module,
    split: DataSplit,
    loss: ScoringLoss,
    *,
    batch_size: int,
    device: torch.device,
    dtype: torch.dtype,
) -> tuple[float, float]:
    """The mean loss and accuracy of ``model`` (eval mode) on one split.

    ``(x, y)`` pairs with an output loss are evaluated by :func:`flatness.evaluation.evaluate`
    (the accuracy is reported for class labels); other data by an objective's value.

    Returns:
        ``(loss, accuracy)``; NaN for an accuracy that does not apply and for a split
        without examples.
    """
    if split_examples(split) == 0:
        return math.nan, math.nan
    if isinstance(split, tuple) and loss.loss_fn is not None:
        x, y = (t.to(device) for t in split)
        if x.is_floating_point():
            x = x.to(dtype)
        if y.is_floating_point():
            y = y.to(dtype)
        value, accuracy = evaluate(model, x, y, batch_size=batch_size, loss_fn=loss.loss_fn)
        return value, accuracy if loss.classification else math.nan
    data = objective_data(split, batch_size)
    kwargs = loss.objective_kwargs()
    with _said_once():
        value_t = Objective(
            model, data, batch_size=batch_size, device=device, dtype=dtype, **kwargs
        )
    return float(value_t.value()), math.nan


@contextlib.contextmanager
def _said_once() -> Iterator[None]:
    """Quiet the measured-precision warning of the auxiliary objectives (metrics, the
    BatchNorm check): the checkpoint's own objective says it."""
    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore", message=r"computing in \w+ as asked", category=UserWarning
        )
        yield


def _hint(data: ScoringData, loss: ScoringLoss) -> str:
    """What to check when the model, the data and the loss do not fit together."""
    train = data.train
    if isinstance(train, tuple) and loss.classification and train[1].is_floating_point():
        return (
            "cross_entropy needs integer class labels and the data factory returns floating "
            'targets: set [scoring] loss = "mse" (or another loss) or return integer labels'
        )
    if not isinstance(train, tuple) and loss.batch_loss is None:
        return (
            "the data are dicts of tensors or batches: name a loss that reads them, "
            '[scoring] loss = "causal_lm" or "sequence_classification", or batch_loss = '
            '"module:function"'
        )
    shape = f"inputs of shape {tuple(train[0].shape[1:])}" if isinstance(train, tuple) else ""
    classes = f", {data.num_classes} classes" if data.num_classes else ""
    return (
        f"check that the [model] factory and kwargs fit the [data] set ({shape or 'batches'}"
        f"{classes}) and the [scoring] loss ({loss.name})"
    )


def prepare_run(
    model: nn.Module,
    data: ScoringData,
    *,
    loss: ScoringLoss,
    scoring: Mapping[str, Any],
    device: torch.device,
    dtype: torch.dtype,
    where: str,
    checkpoint_dtype: str | None = None,
) -> PreparedRun:
    """Make one checkpoint's model ready for its tasks (see the module doc).

    Args:
        model: The model holding the checkpoint's weights (it is moved and cast, and
            its BatchNorm statistics recomputed when ``recompute_batchnorm`` asks).
        data: The manifest's data.
        loss: The manifest's loss.
        scoring: The ``[scoring]`` table.
        device: Where to score.
        dtype: The scoring precision.
        where: The checkpoint, as messages name it.
        checkpoint_dtype: The low precision the checkpoint was stored in, if any.

    Returns:
        The objective, the metrics and the notes for the run's metadata.

    Raises:
        RuntimeError: If the model cannot run on the data with the loss; the message
            says what to check.
    """
    model = model.to(device=device, dtype=dtype)
    bs = int(scoring["batch_size"])
    subset = training_subset(data, scoring["examples"], scoring["seed"])
    kwargs = {
        "data": objective_data(subset, bs),
        "batch_size": bs,
        "device": device,
        "dtype": dtype,
        **loss.objective_kwargs(),
    }
    notes: dict[str, Any] = {}
    if checkpoint_dtype is not None:
        notes["checkpoint_dtype"] = checkpoint_dtype
    try:
        if norm_layers(model):
            notes["batchnorm"] = _batchnorm(model, kwargs, bool(scoring["recompute_batchnorm"]))
            _warn_if_stale(notes["batchnorm"], where)
        metrics = {}
        for split, value in (("train", data.train), ("test", data.test)):
            pair = split_metrics(model, value, loss, batch_size=bs, device=device, dtype=dtype)
            metrics[f"{split}_loss"], metrics[f"{split}_accuracy"] = pair
    except (RuntimeError, ValueError, IndexError, TypeError, KeyError) as exc:
        text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise RuntimeError(
            f"the model cannot run on the data ({text}); {_hint(data, loss)}"
        ) from exc
    return PreparedRun(Objective(model, **kwargs), metrics, notes, kwargs)


def _batchnorm(model: nn.Module, kwargs: Mapping[str, Any], recompute: bool) -> dict[str, Any]:
    """Check the running statistics on the first batch; recompute them when asked."""
    first = split_batches(kwargs["data"], int(kwargs["batch_size"]))[0]
    options = {k: kwargs[k] for k in ("loss_fn", "batch_loss", "device", "dtype")}
    check = batchnorm_check(model, first, **options)
    if not recompute:
        return {"recomputed": False, **check.to_dict()}
    recompute_batchnorm(model, kwargs["data"], batch_size=int(kwargs["batch_size"]), inplace=True)
    after = batchnorm_check(model, first, **options)
    return {"recomputed": True, "before": check.to_dict(), **after.to_dict()}


def _warn_if_stale(note: Mapping[str, Any], where: str) -> None:
    if note["recomputed"] or not note["stale"]:
        return
    warnings.warn(
        f"{where}: the BatchNorm running statistics look stale: the eval-mode loss of the "
        f"first scoring batch is {note['eval_loss']:.4g} against {note['train_mode_loss']:.4g} "
        "with the batch's own statistics (training mode), and every measure is taken of the "
        "eval-mode model. Recompute them on the scoring data: recompute_batchnorm = true in "
        "[scoring] (flatness score --recompute-batchnorm) or flatness.recompute_batchnorm()",
        StaleBatchNormWarning,
        stacklevel=2,
    )
