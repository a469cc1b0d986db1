"""Process-group basics: the group a computation spans, timeouts, sums and broadcasts.

``torch.distributed`` (launched by ``torchrun``) is the engine when one machine is not
enough. Everything here works, unchanged, in a single process with no
``init_process_group``: :func:`group_info` is then ``None``, :func:`all_reduce_sum`
leaves its tensor as it is and :func:`broadcast_object` returns its object.

* :func:`timeout_seconds`: how long any wait on another rank may last (an argument,
  else ``$FLATNESS_DIST_TIMEOUT``, else :data:`DEFAULT_TIMEOUT`).
* :func:`backend_for`: ``nccl`` for CUDA devices, ``gloo`` otherwise.
* :func:`launched_group`: the process group ``torchrun`` describes in the environment
  (``RANK``, ``WORLD_SIZE``, ``MASTER_ADDR``, ``MASTER_PORT``), initialized for a block
  when the caller has not done it and destroyed after it.
* :func:`split_groups`: consecutive ranks in sub-groups of one size (data-parallel
  groups that take different work).
* :func:`objective_group` / :func:`auto_group`: the group an objective built with
  ``distributed="auto"`` reduces over inside a block (a sweep scores whole checkpoints
  on each rank, so there it is ``None``, or the rank's sub-group).
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import os
from collections.abc import Iterator, Mapping
from contextvars import ContextVar
from typing import Any

import torch
import torch.distributed as dist
from torch.distributed import ProcessGroup

__all__ = [
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
]

DEFAULT_TIMEOUT = 300.0
"""Seconds any wait on another rank may last before the job fails naming the rank."""

TIMEOUT_VARIABLE = "FLATNESS_DIST_TIMEOUT"
"""The environment variable that sets the timeout when no argument does."""


class RankError(RuntimeError):
    """Another rank died, hung or could not be reached; the message names the rank."""


def timeout_seconds(value: float | None = None, env: Mapping[str, str] | None = None) -> float:
    """The timeout of waits on other ranks: ``value``, else the environment, else the default.

    Args:
        value: An explicit timeout in seconds (``--timeout``).
        env: Where to read :data:`TIMEOUT_VARIABLE` (default ``os.environ``).

    Returns:
        The timeout in seconds.

    Raises:
        ValueError: If the timeout is not a positive number (naming where it came from).

    Examples:
        >>> timeout_seconds(), timeout_seconds(5), timeout_seconds(env={TIMEOUT_VARIABLE: "7"})
        (300.0, 5.0, 7.0)
    """
    env = os.environ if env is None else env
    where = "the timeout (--timeout)"
    raw: Any = value
    if raw is None and env.get(TIMEOUT_VARIABLE):
        raw, where = env[TIMEOUT_VARIABLE], f"${TIMEOUT_VARIABLE}"
    if raw is None:
        return DEFAULT_TIMEOUT
    try:
        seconds = float(raw)
    except (TypeError, ValueError):
        seconds = float("nan")
    if not seconds > 0.0:
        raise ValueError(f"{where} must be a positive number of seconds, not {raw!r}")
    return seconds


def is_initialized() -> bool:
    """Whether a ``torch.distributed`` process group is initialized in this process.

    Returns:
        True under ``torchrun`` (after ``init_process_group``), False otherwise.
    """
    return bool(dist.is_available() and dist.is_initialized())


@dataclasses.dataclass(frozen=True)
class ProcessGroupInfo:
    """Where this process stands in a process group.

    Attributes:
        rank: This process's rank in the group.
        world_size: The number of processes in the group.
        group: The group (``None``: the default, world group).
        backend: The group's backend (``"gloo"``, ``"nccl"``).
    """

    rank: int
    world_size: int
    group: ProcessGroup | None
    backend: str


def group_info(group: ProcessGroup | None = None) -> ProcessGroupInfo | None:
    """This process's rank and the size of ``group`` (default: the world).

    Returns:
        The :class:`ProcessGroupInfo`, or ``None`` when no process group is initialized.
    """
    if not is_initialized():
        return None
    return ProcessGroupInfo(
        rank=dist.get_rank(group),
        world_size=dist.get_world_size(group),
        group=group,
        backend=str(dist.get_backend(group)),
    )


def backend_for(device: torch.device | str) -> str:
    """The backend for collectives on ``device``: ``nccl`` for CUDA when built, else ``gloo``.

    Returns:
        The backend's name.

    Examples:
        >>> backend_for("cpu")
        'gloo'
    """
    kind = torch.device(device).type
    return "nccl" if kind == "cuda" and dist.is_nccl_available() else "gloo"


@contextlib.contextmanager
def launched_group(
    device: torch.device | str = "cpu",
    *,
    timeout: float | None = None,
    env: Mapping[str, str] | None = None,
) -> Iterator[ProcessGroupInfo | None]:
    """Initialize the process group ``torchrun`` describes, for the duration of a block.

    Nothing is done when a group is already initialized (the caller owns it) or the
    environment names no world of more than one process (``WORLD_SIZE``).

    Args:
        device: The device the ranks compute on (picks the backend).
        timeout: Seconds a collective may wait (:func:`timeout_seconds`).
        env: The environment (default ``os.environ``).

    Yields:
        The world's :class:`ProcessGroupInfo`, or ``None`` in a single process.

    Raises:
        ValueError: If ``WORLD_SIZE`` or ``RANK`` is not a whole number.
    """
    env = os.environ if env is None else env
    if is_initialized():
        yield group_info()
        return
    try:
        world = int(env.get("WORLD_SIZE", "1"))
        rank = int(env.get("RANK", "0"))
    except ValueError as exc:
        message = f"$WORLD_SIZE and $RANK must be whole numbers (torchrun sets them): {exc}"
        raise ValueError(message) from None
    if world <= 1:
        yield None
        return
    seconds = timeout_seconds(timeout, env)
    dist.init_process_group(
        backend_for(device),
        rank=rank,
        world_size=world,
        timeout=datetime.timedelta(seconds=seconds),
    )
    try:
        yield group_info()
    finally:
        dist.destroy_process_group()


def split_groups(size: int, *, timeout: float | None = None) -> ProcessGroup | None:
    """Split the world into consecutive sub-groups of ``size`` ranks; every rank calls it.

    Ranks ``0..size-1`` form the first group, ``size..2*size-1`` the second, and so on.

    Args:
        size: Ranks per group; 1 gives every rank a group of its own (``None``).
        timeout: Seconds a collective in the sub-group may wait.

    Returns:
        This rank's sub-group, or ``None`` when ``size`` is 1 or no group is initialized.

    Raises:
        ValueError: If ``size`` is not a positive divisor of the world size
            (``--group-size``).
    """
    world = dist.get_world_size() if is_initialized() else 1
    if size < 1 or world % size:
        raise ValueError(
            f"--group-size {size} must be a positive divisor of the world size {world} "
            "(ranks are split into groups of equal size)"
        )
    if size == 1 or world == 1:
        return None
    delta = datetime.timedelta(seconds=timeout_seconds(timeout))
    mine, _ = dist.new_subgroups(group_size=size, timeout=delta)
    return mine


_OBJECTIVE_GROUP: ContextVar[tuple[ProcessGroup | None] | None] = ContextVar(
    "flatness_objective_group", default=None
)


@contextlib.contextmanager
def objective_group(group: ProcessGroup | None) -> Iterator[None]:
    """Set the group ``distributed="auto"`` objectives reduce over, for a block.

    A sweep scores whole checkpoints on each rank (``None``: each process alone) or
    one checkpoint on a sub-group of ranks; objectives built inside the block, however
    deep, follow it.

    Args:
        group: The group, or ``None`` for a single process.

    Yields:
        Nothing.
    """
    token = _OBJECTIVE_GROUP.set((group,))
    try:
        yield
    finally:
        _OBJECTIVE_GROUP.reset(token)


def auto_group() -> tuple[bool, ProcessGroup | None]:
    """The group an objective built with ``distributed="auto"`` reduces over.

    Returns:
        ``(True, group)`` when there is one: the group :func:`objective_group` set,
        else the world (``None`` names it) when a group of more than one process is
        initialized; ``(False, None)`` in a single process or inside
        ``objective_group(None)``.
    """
    scoped = _OBJECTIVE_GROUP.get()
    if scoped is not None:
        return (scoped[0] is not None, scoped[0])
    if is_initialized() and dist.get_world_size() > 1:
        return (True, None)
    return (False, None)


def all_reduce_sum(tensor: torch.Tensor, group: ProcessGroup | None = None) -> torch.Tensor:
    """Sum ``tensor`` over the ranks of ``group``, in place (nothing to do without a group).

    float64 is summed in float64; float16 and bfloat16 are summed in float32 (gloo has
    no half-precision sums) and written back.

    Args:
        tensor: This rank's partial sum (overwritten by the total).
        group: The group (default: the world).

    Returns:
        ``tensor``, now holding the sum.
    """
    if not is_initialized() or dist.get_world_size(group) == 1:
        return tensor
    if tensor.dtype in (torch.float16, torch.bfloat16):
        wide = tensor.float()
        dist.all_reduce(wide, op=dist.ReduceOp.SUM, group=group)
        tensor.copy_(wide)
        return tensor
    dist.all_reduce(tensor, op=dist.ReduceOp.SUM, group=group)
    return tensor


def broadcast_object(obj: Any, src: int = 0, group: ProcessGroup | None = None) -> Any:
    """Send a picklable object from rank ``src`` (a global rank) to every rank of ``group``.

    Args:
        obj: The object (only ``src``'s is used).
        src: The sending rank.
        group: The group (default: the world).

    Returns:
        ``src``'s object, on every rank; ``obj`` itself without a group.
    """
    if not is_initialized() or dist.get_world_size(group) == 1:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src, group=group)
    return box[0]
