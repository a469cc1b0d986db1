"""An objective's data under a process group: this rank's shard and the global totals.

Without a group the objective keeps all its batches. Under one
(:func:`~flatness.distributed.sharding.resolve_group`), every rank passes the same data
and keeps a contiguous block of the examples (:mod:`flatness.distributed.sharding`);
in training mode whole batches are shared out instead, since BatchNorm's batch
statistics depend on which examples share a batch. With ``presharded=True`` the user
already gave each rank its own part (e.g. through a ``DistributedSampler``) and it is
kept as it is. The ranks then all-gather fingerprints
(:mod:`flatness.distributed.fingerprint`): the model, the data, the shard's examples
and weight, so that the weights :math:`n_b / N` use the global :math:`N` (the total
tokens of a token-mean loss) and mismatched ranks are refused by name.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from flatness.curvature.batches import (
    Batch,
    WeighedBatches,
    batch_size_of,
    map_tensors,
    weigh_batches,
)
from flatness.distributed.fingerprint import (
    Fingerprint,
    gather_fingerprints,
    require_agreement,
    tensor_digest,
)
from flatness.distributed.group import ProcessGroupInfo
from flatness.distributed.sharding import example_slices, require_nonempty, shard_bounds

__all__ = ["ObjectiveData", "objective_data", "shard_batches"]


@dataclass(frozen=True)
class ObjectiveData:
    """The batches an objective keeps on this rank and the totals over all ranks."""

    weighed: WeighedBatches
    """This rank's batches, sizes and weights."""
    num_examples: int
    """Examples over all ranks."""
    local_examples: int
    """Examples of this rank's shard."""
    total_weight: int
    """The batches' weights summed over all ranks (the mean's normalizer)."""


def _slice(batch: Batch, size: int, lo: int, hi: int) -> Batch:
    return map_tensors(lambda t: t[lo:hi] if t.ndim and t.shape[0] == size else t, batch)


def shard_batches(
    batches: Sequence[Batch], info: ProcessGroupInfo, *, whole_batches: bool = False
) -> list[Batch]:
    """This rank's contiguous block of the examples (or of whole batches).

    Args:
        batches: Every rank's same batches.
        info: The group.
        whole_batches: Share out whole batches (training mode) instead of examples.

    Returns:
        The batches (or parts of batches) this rank keeps, in order.

    Raises:
        ValueError: If a rank would hold nothing (naming it, on every rank).
    """
    if whole_batches:
        bounds = shard_bounds(len(batches), info.world_size)
        require_nonempty(bounds, "batches (training mode shares out whole batches)")
        start, stop = bounds[info.rank]
        return list(batches[start:stop])
    sizes = [batch_size_of(b) for b in batches]
    bounds = shard_bounds(sum(sizes), info.world_size)
    require_nonempty(bounds, "examples")
    start, stop = bounds[info.rank]
    return [
        _slice(batches[i], sizes[i], lo, hi) if (lo, hi) != (0, sizes[i]) else batches[i]
        for i, lo, hi in example_slices(sizes, start, stop)
    ]


def _batch_tensors(batches: Iterable[Batch]) -> list[Tensor]:
    found: list[Tensor] = []
    for b in batches:
        map_tensors(lambda t: found.append(t) or t, b)  # type: ignore[func-returns-value]
    return found


def objective_data(
    given: Sequence[Batch],
    dtype: torch.dtype,
    batch_loss: Any,
    info: ProcessGroupInfo | None,
    *,
    presharded: bool,
    whole_batches: bool,
    model: Iterable[Tensor],
    setup: str = "",
) -> ObjectiveData:
    """Weigh this rank's batches and agree on the totals with the other ranks.

    Args:
        given: The batches as the data gave them (the same on every rank unless
            ``presharded``).
        dtype: The objective's floating dtype.
        batch_loss: The loss hook (may declare batch weights), or ``None``.
        info: The group, or ``None`` for one process.
        presharded: Each rank was given its own part already.
        whole_batches: Share out whole batches (training mode).
        model: The tensors that define the model (hashed in the fingerprint).
        setup: What else must agree across ranks (the variables' names, the mode, the
            loss), hashed with the model.

    Returns:
        The :class:`ObjectiveData`.

    Raises:
        ValueError: For an empty shard, a rank that failed to weigh its shard, or ranks
            whose model or data differ from rank 0's (all naming the ranks).
    """
    if info is None:
        weighed = weigh_batches(given, dtype, batch_loss)
        n = sum(weighed.sizes)
        return ObjectiveData(weighed, n, n, sum(weighed.weights))
    data_digest = tensor_digest(_batch_tensors(given), structure_only=presharded)
    mine = given if presharded else shard_batches(given, info, whole_batches=whole_batches)
    error: str | None = None
    try:
        weighed = weigh_batches(mine, dtype, batch_loss)
    except ValueError as err:  # refused on every rank below, not here alone
        error = str(err)
        weighed = WeighedBatches((), (), (), "examples")
    prints = gather_fingerprints(
        Fingerprint(
            rank=info.rank,
            model=tensor_digest(
                [*model, torch.frombuffer(bytearray(setup.encode()) or b"-", dtype=torch.uint8)]
            ),
            data=data_digest,
            examples=sum(weighed.sizes),
            weight=sum(weighed.weights),
            error=error,
        ),
        info,
    )
    require_agreement(prints)
    return ObjectiveData(
        weighed,
        num_examples=sum(f.examples for f in prints),
        local_examples=sum(weighed.sizes),
        total_weight=sum(f.weight for f in prints),
    )
