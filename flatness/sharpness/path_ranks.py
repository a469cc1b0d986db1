r"""A path between checkpoints evaluated data-parallel over a process group.

:func:`~flatness.sharpness.interpolation.interpolate_checkpoints` builds no
:class:`~flatness.Objective`, so it takes its rank's part of the data here, the way a
data-parallel objective does (:mod:`flatness.curvature.shards`): every rank passes the
same data and keeps a contiguous block of the examples (or, with ``presharded=True``,
its own part as given). Each point's loss and accuracy are then the ranks' partial
sums completed by one sum over the group
(:func:`~flatness.evaluation.mean_loss_and_accuracy` with ``reduce=``).

BatchNorm statistics recomputed at a point (``bn="recompute"``) are the plain average
over the training *batches* of their batch statistics, so the ranks share out whole
batches for them (a batch cut in two would change its statistics) and combine their
averages weighted by their numbers of batches:
:math:`\bar s = \sum_\rho k_\rho \bar s_\rho / \sum_\rho k_\rho`. A rank may then hold
no batch (fewer batches than ranks); it contributes nothing.

Before any work the ranks compare fingerprints of the two checkpoints and of each data
set (:mod:`flatness.distributed.fingerprint`, through
:func:`~flatness.curvature.shards.objective_data`) and refuse, naming the ranks, a rank
that holds other ones.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from flatness.batchnorm import norm_layers, recompute_running_statistics
from flatness.curvature.batches import Batch, batch_size_of
from flatness.curvature.shards import ObjectiveData, objective_data
from flatness.distributed.group import ProcessGroupInfo, all_reduce_sum
from flatness.distributed.sharding import shard_bounds
from flatness.losses import BatchLossFn

__all__ = ["RankData", "rank_data", "shared_statistics"]


@dataclass(frozen=True)
class RankData:
    """What one rank evaluates, and how its sums are completed."""

    train: list[Batch]
    """This rank's training examples (all of them without a group)."""
    test: list[Batch] | None
    """This rank's test examples, or ``None``."""
    statistics: list[Batch]
    """The whole training batches this rank recomputes BatchNorm statistics on."""
    num_train: int
    """Training examples over all ranks."""
    num_test: int
    """Test examples over all ranks."""
    info: ProcessGroupInfo | None
    """The group, or ``None`` for one process."""

    def reduce(self, partial: Tensor) -> Tensor:
        """Sum ``partial`` over the group in place (nothing to do without one).

        Returns:
            ``partial``, now the total.
        """
        return partial if self.info is None else all_reduce_sum(partial, self.info.group)


def _count(batches: Sequence[Batch] | None) -> int:
    return 0 if batches is None else sum(batch_size_of(b) for b in batches)


def rank_data(
    train: list[Batch],
    test: list[Batch] | None,
    info: ProcessGroupInfo | None,
    *,
    presharded: bool,
    states: Sequence[Mapping[str, Tensor]],
    dtype: torch.dtype,
    batch_loss: BatchLossFn | None,
) -> RankData:
    """This rank's batches of a path's evaluation, after the ranks agree on their inputs.

    The training and the test data are each shared out as a data-parallel objective
    shares its data (:func:`~flatness.curvature.shards.objective_data`: blocks of
    examples, the checkpoints and the data fingerprinted).

    Args:
        train: The training batches as given (the same on every rank unless
            ``presharded``).
        test: The test batches, or ``None``.
        info: The group, or ``None`` for one process.
        presharded: Each rank was given its own part of the data.
        states: The checkpoints' state dicts (fingerprinted).
        dtype: The evaluation's floating dtype.
        batch_loss: The loss hook (it may weigh batches by tokens), or ``None``.

    Returns:
        The :class:`RankData`.

    Raises:
        ValueError: For a rank without examples, or ranks with other checkpoints or
            data than rank 0 (naming the ranks, on every rank).
    """
    if info is None:
        return RankData(train, test, train, _count(train), _count(test), None)
    model = [t for state in states for t in state.values()]

    def share(batches: list[Batch]) -> ObjectiveData:
        return objective_data(
            batches,
            dtype,
            batch_loss,
            info,
            presharded=presharded,
            whole_batches=False,
            model=model,
        )

    mine_train = share(train)
    mine_test = None if test is None else share(test)
    if presharded:
        statistics = train
    else:
        start, stop = shard_bounds(len(train), info.world_size)[info.rank]
        statistics = train[start:stop]
    return RankData(
        list(mine_train.weighed.batches),
        None if mine_test is None else list(mine_test.weighed.batches),
        statistics,
        num_train=mine_train.num_examples,
        num_test=0 if mine_test is None else mine_test.num_examples,
        info=info,
    )


def shared_statistics(model: nn.Module, data: RankData) -> None:
    """Recompute the BatchNorm running statistics on all ranks' training batches.

    Without a group this is :func:`~flatness.batchnorm.recompute_running_statistics`
    over the training batches. Under one, each rank averages over its whole batches
    and the averages are combined weighted by the ranks' numbers of batches (the
    module doc), so every rank holds the statistics one process computes.

    Args:
        model: The network at the point (changed in place, left in eval mode).
        data: The rank's batches and group (:func:`rank_data`).
    """
    if data.info is None:
        recompute_running_statistics(model, data.statistics)
        return
    recompute_running_statistics(model, data.statistics)
    layers = [m for _, m in norm_layers(model)]
    count = float(len(data.statistics))
    for m in layers:
        stats = [t for t in (m.running_mean, m.running_var) if isinstance(t, Tensor)]
        if not stats:
            continue
        flat = torch.cat(
            [t.reshape(-1).double() * count for t in stats]
            + [torch.tensor([count], dtype=torch.float64, device=stats[0].device)]
        )
        data.reduce(flat)
        total = float(flat[-1])
        offset = 0
        with torch.no_grad():
            for t in stats:
                n = t.numel()
                t.copy_((flat[offset : offset + n] / total).reshape(t.shape).to(t.dtype))
                offset += n
        if isinstance(m.num_batches_tracked, Tensor):
            m.num_batches_tracked.fill_(int(total))
