"""Which examples each rank of a data-parallel objective takes.

Under a process group every rank passes the same data and keeps a disjoint shard of
it: contiguous blocks of the fixed example order, the first ``N mod W`` ranks one
example more than the others (uneven shards are allowed; an empty one is refused,
naming the rank). The shards' weighted partial sums, all-reduced, are then the mean
over all ``N`` examples, exactly as one process on all the data computes it.

* :func:`resolve_group`: the group an objective's ``distributed=`` argument names.
* :func:`shard_bounds`: the ``[start, stop)`` of each rank's block.
* :func:`require_nonempty`: refuse a world larger than the examples (or batches).
* :func:`example_slices`: the parts of a list of batches that fall in a block.
"""

from __future__ import annotations

from typing import Any

from flatness.distributed.group import ProcessGroupInfo, auto_group, group_info, is_initialized

__all__ = [
    "Distributed",
    "example_slices",
    "require_nonempty",
    "resolve_group",
    "shard_bounds",
]

Distributed = Any
"""``"auto"``, ``None``/``False`` (one process), ``True`` (the world) or a process group."""


def resolve_group(distributed: Distributed) -> ProcessGroupInfo | None:
    """The process group an objective built with ``distributed=`` reduces over.

    Args:
        distributed: ``"auto"`` (the group :func:`~flatness.distributed.group.auto_group`
            names: the world under ``torchrun``, else none), ``None`` or ``False``
            (this process alone), ``True`` (the world, which must be initialized) or a
            ``torch.distributed`` process group.

    Returns:
        The group's :class:`~flatness.distributed.group.ProcessGroupInfo`, or ``None``
        when the objective works alone (no group, or a group of one process).

    Raises:
        ValueError: For another string, or a group (``True``) without an initialized
            ``torch.distributed``.

    Examples:
        >>> resolve_group("auto") is None, resolve_group(None) is None
        (True, True)
    """
    if distributed is None or distributed is False:
        return None
    if isinstance(distributed, str):
        if distributed != "auto":
            raise ValueError(
                f"distributed must be 'auto', None, False, True or a process group, "
                f"not {distributed!r}"
            )
        on, group = auto_group()
        if not on:
            return None
    else:
        if not is_initialized():
            raise ValueError(
                "distributed= names a process group but torch.distributed is not "
                "initialized: launch with torchrun (or call init_process_group) first, "
                "or pass distributed=None"
            )
        group = None if distributed is True else distributed
    info = group_info(group)
    return None if info is None or info.world_size == 1 else info


def shard_bounds(total: int, world_size: int) -> list[tuple[int, int]]:
    """Contiguous blocks of ``total`` items over ``world_size`` ranks.

    Returns:
        ``[(start, stop)]`` per rank; the first ``total % world_size`` blocks hold one
        item more.

    Examples:
        >>> shard_bounds(10, 3)
        [(0, 4), (4, 7), (7, 10)]
        >>> shard_bounds(1, 2)
        [(0, 1), (1, 1)]
    """
    base, extra = divmod(total, world_size)
    bounds, start = [], 0
    for rank in range(world_size):
        stop = start + base + (1 if rank < extra else 0)
        bounds.append((start, stop))
        start = stop
    return bounds


def require_nonempty(bounds: list[tuple[int, int]], what: str) -> None:
    """Refuse shards without items, naming the ranks that would hold none.

    Every rank computes the same bounds, so every rank raises the same error (no rank
    is left waiting for the others).

    Args:
        bounds: Each rank's block (:func:`shard_bounds`).
        what: What the items are (``"examples"``, ``"batches"``), for the message.

    Raises:
        ValueError: If a block is empty.
    """
    empty = [r for r, (start, stop) in enumerate(bounds) if stop <= start]
    if empty:
        total = bounds[-1][1]
        raise ValueError(
            f"rank(s) {empty} would hold no data: {total} {what} over {len(bounds)} ranks "
            "of the objective's process group. Pass more data, launch fewer processes, or "
            "build the objective with distributed=None on each rank"
        )


def example_slices(sizes: list[int], start: int, stop: int) -> list[tuple[int, int, int]]:
    """The parts of consecutive batches that hold examples ``start..stop-1``.

    Args:
        sizes: Examples per batch, in order.
        start: The first example of the block.
        stop: One past its last example.

    Returns:
        ``[(batch index, first, stop)]`` within each batch that overlaps the block.

    Examples:
        >>> example_slices([4, 4, 2], 3, 9)
        [(0, 3, 4), (1, 0, 4), (2, 0, 1)]
    """
    parts, offset = [], 0
    for index, size in enumerate(sizes):
        lo, hi = max(start, offset), min(stop, offset + size)
        if lo < hi:
            parts.append((index, lo - offset, hi - offset))
        offset += size
    return parts
