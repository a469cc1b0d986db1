"""How many intra-op threads torch uses while training and scoring.

torch parallelizes each kernel over ``torch.get_num_threads()`` OpenMP threads (by
default one per core). A small network's kernels last microseconds, so a second thread
gains little on an idle machine, and on a busy one every parallel region waits for the
thread whose core is taken: with other work on the two cores, a 64 × 64 product took
24 ms with two threads and 25 µs with one, and ``flatness demo`` went from 77 s to more
than half an hour. ``analyses/benchmark_threads.py`` measures it on the built-in
networks.

The rule (:func:`threads_for`): one thread when the work of a step, the model's
parameter count times the examples of a batch (:func:`work_size`), is at most
:data:`SMALL_WORK`, which every built-in network meets at the demo's and the scoring
default's batch sizes; otherwise torch's own setting is left as it is. A count given
explicitly (``threads=`` of :func:`flatness.zoo.train_network` and
:func:`flatness.score`, or ``--threads`` on the command line through
:func:`fix_threads`) always wins.

:func:`intra_op_threads` applies a count for the duration of a block and restores the
previous setting afterwards.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch
from torch import nn

__all__ = [
    "SMALL_WORK",
    "fix_threads",
    "fixed_threads",
    "intra_op_threads",
    "threads_for",
    "threads_for_model",
    "work_size",
]

SMALL_WORK = 2e9
"""Work (parameters × batch size) up to which a step runs on one intra-op thread.

Every built-in network is below it at the studies' batch sizes and the scoring
default (batches of 1024): the largest, Keskar et al.'s F1 (5 × 512, 1.08 million
parameters), scores at 1.1e9."""

_fixed: int | None = None


def _check_count(n: int) -> int:
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"the number of threads must be a positive integer, got {n!r}")
    return n


def fix_threads(n: int | None) -> None:
    """Fix the intra-op thread count of every later training and scoring in this process.

    This is what ``--threads N`` does; an explicit ``threads=`` argument still wins.

    Args:
        n: The count, or ``None`` to return to the rule of :func:`threads_for`.

    Raises:
        ValueError: If ``n`` is not a positive integer or ``None``.
    """
    global _fixed
    _fixed = None if n is None else _check_count(n)


def fixed_threads() -> int | None:
    """The count :func:`fix_threads` fixed, if any.

    Returns:
        The count, or ``None`` when the rule decides.
    """
    return _fixed


def work_size(model: nn.Module, batch_size: int) -> float:
    """The work of one step: the model's parameter count times the batch size.

    Returns:
        ``parameters × batch_size``, about half the multiply-adds of a dense network's
        forward pass.

    Examples:
        >>> work_size(nn.Linear(3, 2), 10)
        80.0
    """
    return float(sum(p.numel() for p in model.parameters()) * batch_size)


def threads_for(
    model: nn.Module | None, batch_size: int, *, threads: int | None = None
) -> int | None:
    """The intra-op thread count for training or scoring ``model`` on batches of a size.

    Args:
        model: The network (``None`` when it is not known: only an explicit or fixed
            count applies).
        batch_size: Examples per step (training) or per forward pass (scoring).
        threads: An explicit count, which wins over everything.

    Returns:
        ``threads`` if given, else the count :func:`fix_threads` fixed, else 1 when
        :func:`work_size` is at most :data:`SMALL_WORK`, else ``None`` (leave torch's
        setting).

    Raises:
        ValueError: If ``threads`` is not a positive integer or ``None``.

    Examples:
        >>> threads_for(nn.Linear(40, 10), 20)
        1
        >>> threads_for(nn.Linear(40, 10), 20, threads=4)
        4
    """
    if threads is not None:
        return _check_count(threads)
    if _fixed is not None:
        return _fixed
    if model is None:
        return None
    return 1 if work_size(model, batch_size) <= SMALL_WORK else None


def threads_for_model(
    build: Callable[[], nn.Module], batch_size: int, *, threads: int | None = None
) -> int | None:
    """:func:`threads_for` for a model that is built only if the rule needs it.

    The model is built with torch's random state saved and restored, so the caller's
    random numbers do not change. A model that fails to build leaves torch's setting
    (``None``): the error is the caller's to report where it builds the model itself.

    Args:
        build: Builds the model (a manifest's factory, for example).
        batch_size: Examples per forward pass.
        threads: An explicit count, which wins over everything.

    Returns:
        The count, or ``None`` to leave torch's setting.

    Raises:
        ValueError: If ``threads`` is not a positive integer or ``None``.

    Examples:
        >>> threads_for_model(lambda: nn.Linear(40, 10), 1024)
        1
    """
    if threads is not None or _fixed is not None:
        return threads_for(None, batch_size, threads=threads)
    try:
        with torch.random.fork_rng(devices=[]):
            model = build()
    except Exception:
        return None
    return threads_for(model, batch_size)


@contextmanager
def intra_op_threads(n: int | None) -> Iterator[int]:
    """Run a block with ``torch.set_num_threads(n)``, restoring the previous count after.

    Args:
        n: The count, or ``None`` to leave the setting alone.

    Yields:
        The count in effect inside the block.

    Raises:
        ValueError: If ``n`` is not a positive integer or ``None``.

    Examples:
        >>> before = torch.get_num_threads()
        >>> with intra_op_threads(1) as n:
        ...     n, torch.get_num_threads()
        (1, 1)
        >>> torch.get_num_threads() == before
        True
    """
    previous = torch.get_num_threads()
    if n is None:
        yield previous
        return
    torch.set_num_threads(_check_count(n))
    try:
        yield n
    finally:
        torch.set_num_threads(previous)
