"""Beyond one machine: ``torch.distributed`` process groups, data-parallel work, sweeps.

Launched by ``torchrun`` (under SLURM or not), flatness uses ``torch.distributed``;
without an initialized process group the same code runs in one process.

* :mod:`flatness.distributed.group`: the process-group basics (rank and world size,
  backend, timeouts, sub-groups, sums and broadcasts).
* :mod:`flatness.distributed.sharding`: which examples each rank of a data-parallel
  :class:`~flatness.curvature.objective.Objective` keeps (``distributed=``,
  ``presharded=``; the shard itself is taken in :mod:`flatness.curvature.shards`).
* :mod:`flatness.distributed.fingerprint`: the model and data hashes ranks compare
  before they compute together (mismatches refused naming the rank).
* :mod:`flatness.distributed.sweep`: a sweep across ranks (``flatness score`` under
  ``torchrun``): rank 0 owns the results store and hands out checkpoints
  (:mod:`flatness.distributed.coordinator`), leaders talk to it in pickled messages
  with heartbeats (:mod:`flatness.distributed.messages`). These three import the
  pipeline, so this package does not import them.
"""

from flatness.distributed.group import (
    DEFAULT_TIMEOUT,
    TIMEOUT_VARIABLE,
    ProcessGroupInfo,
    RankError,
    all_reduce_sum,
    auto_group,
    backend_for,
    broadcast_object,
    group_info,
    is_initialized,
    launched_group,
    objective_group,
    split_groups,
    timeout_seconds,
)
from flatness.distributed.sharding import resolve_group, shard_bounds

__all__ = [
    # process groups
    "DEFAULT_TIMEOUT",
    "TIMEOUT_VARIABLE",
    "ProcessGroupInfo",
    "RankError",
    "all_reduce_sum",
    "auto_group",
    "backend_for",
    "broadcast_object",
    "group_info",
    "is_initialized",
    "launched_group",
    "objective_group",
    "split_groups",
    "timeout_seconds",
    # data-parallel objectives
    "resolve_group",
    "shard_bounds",
]
