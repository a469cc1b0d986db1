"""What the sharpness measures need from the ranks of a data-parallel objective.

An :class:`~flatness.curvature.objective.Objective` built under a process group holds
one contiguous block of the examples on each rank and completes every sum over its
batches with :meth:`~flatness.curvature.objective.Objective.reduce`
(:mod:`flatness.curvature.shards`). The measures that split the examples further
(m-sharpness chunks, the noise scale's units) need to know where the rank's block
starts in the global order, and a check that fails on one rank must fail on all of
them (a rank that raised alone would leave the others waiting in the next sum). Both
take one sum over the ranks, through the objective's own ``reduce``; without a group
they cost nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import torch

from flatness.curvature.objective import Objective

__all__ = ["agree_on_error", "block_start", "rank_of"]

T = TypeVar("T")


def rank_of(obj: Objective) -> tuple[int, int]:
    """This rank and the size of the objective's group.

    Returns:
        ``(rank, world_size)``; ``(0, 1)`` without a group.
    """
    group = getattr(obj, "group", None)
    return (0, 1) if group is None else (group.rank, group.world_size)


def block_start(obj: Objective, count: int) -> tuple[int, int]:
    """Where this rank's ``count`` items start in the ranks' order, and their total.

    Args:
        obj: The objective (its group and ``reduce``).
        count: This rank's number of items (examples, batches).

    Returns:
        ``(start, total)``: the items of the lower ranks, and all ranks' items.

    Examples:
        >>> net = torch.nn.Linear(2, 2)
        >>> obj = Objective(net, (torch.zeros(3, 2), torch.zeros(3, dtype=torch.long)))
        >>> block_start(obj, 3)
        (0, 3)
    """
    rank, world = rank_of(obj)
    if world == 1:
        return 0, count
    counts = torch.zeros(world, dtype=torch.float64, device=obj.device)
    counts[rank] = float(count)
    every = [int(c) for c in obj.reduce(counts).tolist()]
    return sum(every[:rank]), sum(every)


def agree_on_error(obj: Objective, check: Callable[[], T]) -> T:
    """Run ``check`` on every rank; if it raises on any rank, raise on all of them.

    The rank whose check failed raises its own error; the others raise the same type
    naming the rank(s) that failed, so that no rank is left waiting for the others.

    Args:
        obj: The objective (its group and ``reduce``).
        check: The check, run once on each rank.

    Returns:
        ``check()``'s value when no rank failed.

    Raises:
        Exception: ``check``'s error on the ranks where it failed; a
            :class:`RuntimeError` (or the same type as a local error) naming the ranks
            elsewhere.
    """
    rank, world = rank_of(obj)
    if world == 1:
        return check()
    error: Exception | None = None
    value: T | None = None
    try:
        value = check()
    except (RuntimeError, ValueError, FloatingPointError) as err:
        error = err
    flags = torch.zeros(world, dtype=torch.float64, device=obj.device)
    flags[rank] = 0.0 if error is None else 1.0
    failed = [r for r, f in enumerate(obj.reduce(flags).tolist()) if f]
    if error is not None:
        raise error
    if failed:
        raise RuntimeError(
            f"rank(s) {failed} of the objective's process group failed the same check "
            "(their own messages say why); this rank stops with them"
        )
    return value  # type: ignore[return-value]
