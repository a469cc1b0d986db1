"""A tracker under a process group: one decision for all ranks, one writer.

Under ``torchrun`` (data-parallel training, e.g. ``DistributedDataParallel``) every
rank builds the same :class:`~flatness.tracking.tracker.Tracker` and calls
:meth:`~flatness.tracking.tracker.Tracker.update` at every step. Measuring is
collective (the objective's sums run over the ranks), so all ranks must decide alike
whether to measure: each call sums a few numbers over the ranks (:func:`agree`) and
every rank then sees the same inputs:

* ``examples_seen`` and ``batch_size``: the sums of the ranks' (each rank passes its
  own; the records hold the job's, the global batch of data-parallel training);
* ``minibatch_loss``: the mean of the ranks' mini-batch losses (the global
  mini-batch's loss when the ranks' batches are equal), non-finite when any rank's is;
* ``epoch_end``/``force``: true when any rank says so;
* whether the model's parameters are finite on every rank.

Only the group's rank 0 opens and writes the results store; every rank keeps the
same records in memory (:meth:`~flatness.tracking.tracker.Tracker.frame`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from flatness.distributed.group import ProcessGroupInfo, all_reduce_sum
from flatness.distributed.sharding import Distributed

__all__ = ["LoopInputs", "agree", "objective_distributed"]


@dataclass(frozen=True)
class LoopInputs:
    """What the loop said at one call, the same on every rank after :func:`agree`."""

    examples_seen: int | None
    batch_size: int | None
    loss: float | None
    epoch_end: bool
    force: bool
    finite_model: bool


def objective_distributed(info: ProcessGroupInfo | None) -> Distributed:
    """The ``distributed=`` that makes an objective reduce over ``info``'s group.

    Returns:
        ``False`` without a group, ``True`` for the world, else the sub-group.
    """
    if info is None:
        return False
    return True if info.group is None else info.group


def _finite_model(model: nn.Module) -> bool:
    return all(bool(torch.isfinite(p).all()) for p in model.parameters())


def agree(info: ProcessGroupInfo | None, model: nn.Module, mine: LoopInputs) -> LoopInputs:
    """The loop's inputs as all ranks together give them (one sum over the group).

    Args:
        info: The tracker's group, or ``None`` (``mine`` is returned: nothing is
            summed or checked).
        model: The model (its parameters' device carries the sum; under a group their
            finiteness is checked at every call, one pass over the parameters).
        mine: This rank's inputs (under a group ``finite_model`` is recomputed here).

    Returns:
        The agreed :class:`LoopInputs`.
    """
    if info is None:
        return mine
    finite = _finite_model(model)
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    loss = mine.loss
    values = [
        0.0 if mine.examples_seen is None else float(mine.examples_seen),
        0.0 if mine.examples_seen is None else 1.0,
        0.0 if mine.batch_size is None else float(mine.batch_size),
        0.0 if mine.batch_size is None else 1.0,
        0.0 if loss is None or not math.isfinite(loss) else loss,
        0.0 if loss is None else 1.0,
        1.0 if loss is not None and not math.isfinite(loss) else 0.0,
        float(mine.epoch_end),
        float(mine.force),
        0.0 if finite else 1.0,
    ]
    total = all_reduce_sum(torch.tensor(values, dtype=torch.float64, device=device), info.group)
    seen, with_seen, batch, with_batch, losses, with_loss, bad, ends, forced, broken = (
        total.tolist()
    )
    agreed_loss = None if not with_loss else (math.nan if bad else losses / with_loss)
    return LoopInputs(
        examples_seen=int(seen) if with_seen else None,
        batch_size=int(batch) if with_batch else None,
        loss=agreed_loss,
        epoch_end=ends > 0,
        force=forced > 0,
        finite_model=broken == 0,
    )
