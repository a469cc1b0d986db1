"""Run a function on W gloo processes on CPU and collect what each rank returns.

``run_ranks(fn, world, *args)`` spawns ``world`` processes that join one gloo group
(rendezvous through a file in a temporary folder), call ``fn(rank, world, *args)``
with one intra-op thread, and save its return value; the parent waits with a timeout,
kills what is left and returns the values in rank order, or raises with the ranks'
errors. ``fn`` must be importable at module level (the processes are spawned).
"""

from __future__ import annotations

import datetime
import os
import tempfile
import traceback
from collections.abc import Callable
from typing import Any

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

TIMEOUT = 240.0
"""Seconds the whole run may take before its processes are killed (a loaded CI host)."""


def _entry(
    rank: int, world: int, fn: Callable[..., Any], folder: str, args: tuple[Any, ...]
) -> None:
    torch.set_num_threads(1)
    try:
        dist.init_process_group(
            "gloo",
            init_method=f"file://{folder}/rendezvous",
            rank=rank,
            world_size=world,
            timeout=datetime.timedelta(seconds=120),
        )
        try:
            out: Any = ("ok", fn(rank, world, *args))
        finally:
            dist.destroy_process_group()
    except BaseException as err:  # reported to the parent, which raises
        out = ("error", f"{type(err).__name__}: {err}\n{traceback.format_exc()}")
    torch.save(out, os.path.join(folder, f"rank{rank}.pt"))


def run_ranks(
    fn: Callable[..., Any], world: int, *args: Any, timeout: float = TIMEOUT
) -> list[Any]:
    """Call ``fn(rank, world, *args)`` on ``world`` gloo ranks.

    Returns:
        The ranks' return values, in rank order.

    Raises:
        RankFailure: If a rank raised (its error in the message and ``.errors``).
        TimeoutError: If the ranks did not finish within ``timeout``.
    """
    with tempfile.TemporaryDirectory() as folder:
        ctx = mp.start_processes(
            _entry, args=(world, fn, folder, args), nprocs=world, join=False, start_method="spawn"
        )
        try:
            deadline = datetime.datetime.now() + datetime.timedelta(seconds=timeout)
            while not ctx.join(timeout=1.0):
                if datetime.datetime.now() > deadline:
                    raise TimeoutError(f"{world} ranks did not finish within {timeout} s")
        finally:
            for p in ctx.processes:
                if p.is_alive():
                    p.kill()
                    p.join(5)
        results = [
            torch.load(os.path.join(folder, f"rank{r}.pt"), weights_only=False)
            for r in range(world)
        ]
    errors = {r: v for r, (kind, v) in enumerate(results) if kind == "error"}
    if errors:
        raise RankFailure(errors)
    return [v for _, v in results]


class RankFailure(RuntimeError):
    """One or more ranks raised; ``errors`` maps each rank to its message."""

    def __init__(self, errors: dict[int, str]) -> None:
        self.errors = errors
        super().__init__("\n".join(f"rank {r}: {e}" for r, e in errors.items()))
