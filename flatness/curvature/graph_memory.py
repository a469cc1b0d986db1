"""The memory that retained gradient graphs hold, and how much they may hold.

:class:`~flatness.curvature.hessian.HessianOperator` keeps each batch's gradient graph
while the graphs fit in a budget (:func:`default_memory_budget`), see
:func:`retain_graphs`; it sizes a graph on the host by the storages autograd saves
while building it (:class:`SavedBytes`), on a GPU by the memory allocated. Where the
batches may be merged (:mod:`flatness.curvature.batch_merge`) and one graph of all the
data fits, that one graph is kept instead.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from flatness.curvature.batch_merge import merged_batch
from flatness.curvature.batches import DeviceBatches
from flatness.curvature.objective import Objective

__all__ = [
    "HOST_MERGE_LIMIT",
    "Graph",
    "RetainedGraphs",
    "SavedBytes",
    "default_memory_budget",
    "retain_graphs",
]

#: On the host, batches are merged only while the merged graph stays below this many
#: bytes. A small graph's product is dominated by a fixed overhead per pass (Python,
#: autograd dispatch), which merging pays once: 1.45× faster products for a 2.7k
#: parameter MLP on 4000 examples (5 MiB merged). A large one's is arithmetic, where one
#: pass gains nothing and its larger working set leaves the caches: on the 145k
#: parameter BatchNorm MLP (49 MiB merged) one batch was no faster than four. On a GPU,
#: where every pass launches kernels, batches are merged whenever the graph fits.
HOST_MERGE_LIMIT = 16 * 2**20

#: A batch's first-order graph: the parameter leaves and the gradients built on them.
Graph = tuple[list[Tensor], list[Tensor | None]]


def default_memory_budget(device: torch.device) -> int:
    """Bytes that retained graphs may hold by default.

    Returns:
        Half the free GPU memory on CUDA; on the host, a quarter of the available
        memory (an eighth of the physical memory where that cannot be read).
    """
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free * 0.5)
    try:
        with open("/proc/meminfo") as fh:
            info = dict(line.split(":", 1) for line in fh)
        return int(info["MemAvailable"].strip().split()[0]) * 1024 // 4
    except (OSError, KeyError, ValueError):
        pages = os.sysconf("SC_PHYS_PAGES") if hasattr(os, "sysconf") else 2**20
        return int(pages * 4096) // 8


class SavedBytes:
    """Counts the bytes of distinct storages saved for backward inside its context.

    The pack hook returns a *detached* alias of each saved tensor, never the tensor
    itself: a saved output that holds itself (tensor → ``grad_fn`` → saved tensor →
    the same tensor) is a reference cycle through C++ that Python's collector cannot
    see, so every graph built under the hook would stay in memory for good (issue 17
    item 1). Autograd restores the saved tensor's history on unpacking, so the
    products, double backward included, are unchanged; only integers are kept here.
    """

    def __init__(self) -> None:
        self.storages: dict[int, int] = {}
        self._ctx = torch.autograd.graph.saved_tensors_hooks(self._pack, lambda t: t)

    def _pack(self, t: Tensor) -> Tensor:
        try:
            storage = t.untyped_storage()
            self.storages[storage.data_ptr()] = storage.nbytes()
        except (RuntimeError, NotImplementedError):
            self.storages[id(t)] = t.numel() * t.element_size()
        return t.detach()

    def __enter__(self) -> SavedBytes:
        self._ctx.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self._ctx.__exit__(*exc)

    @property
    def nbytes(self) -> int:
        """The bytes of the distinct storages counted so far."""
        return sum(self.storages.values())


@dataclass
class RetainedGraphs:
    """The gradient graphs an operator keeps, and the batches they belong to.

    Attributes:
        graphs: One graph per batch of :attr:`batches`, ``None`` where not kept.
        batches: The batches products run over: the objective's, or one merged batch.
        weights: Their weights in the mean.
        nbytes: The bytes the kept graphs hold.
        merged: Whether the objective's batches were merged into one.
    """

    graphs: list[Graph | None]
    batches: Sequence[Any]
    weights: tuple[float, ...]
    nbytes: int
    merged: bool


def _measured(build: Callable[[Any], Graph], batch: Any, device: torch.device) -> tuple[Graph, int]:
    cuda = device.type == "cuda"
    before = torch.cuda.memory_allocated(device) if cuda else 0
    with SavedBytes() as counter:
        graph = build(batch)
    after = torch.cuda.memory_allocated(device) if cuda else 0
    return graph, after - before if cuda else counter.nbytes


def retain_graphs(
    objective: Objective, build: Callable[[Any], Graph], budget: int, *, merge: bool = False
) -> RetainedGraphs:
    """Build and keep each batch's gradient graph until the next would not fit ``budget``.

    With ``merge`` (the caller has checked that merging is exact,
    :func:`~flatness.curvature.batch_merge.merge_refusal`), the first batch's graph
    size, scaled to all the examples, estimates the graph of all the data; where that
    fits (on the host, also below :data:`HOST_MERGE_LIMIT`), the batches are merged into
    one and its graph kept instead (measured again, and given up for the batches where
    it turns out not to fit).

    Args:
        objective: The objective whose batches are used.
        build: Builds a batch's graph.
        budget: The bytes the graphs may hold.
        merge: Whether the batches may be merged into one.

    Returns:
        The :class:`RetainedGraphs`.
    """
    batches: Sequence[Any] = objective.batches
    graphs: list[Graph | None] = []
    used, full = 0, False
    for i, batch in enumerate(batches):
        graph = None
        if not full:
            graph, size = _measured(build, batch, objective.device)
            if i == 0 and merge and len(batches) > 1:
                estimate = size * sum(objective.batch_sizes) / objective.batch_sizes[0]
                limit = budget if objective.device.type != "cpu" else min(budget, HOST_MERGE_LIMIT)
                if estimate <= limit:
                    graph = None  # freed before the merged graph is built
                    host = getattr(batches, "host", batches)
                    whole = DeviceBatches([merged_batch(host)], objective.device)
                    merged, size_m = _measured(build, whole[0], objective.device)
                    if size_m <= budget:  # weighs this rank's share of the examples
                        share = objective.local_examples / objective.num_examples
                        return RetainedGraphs([merged], whole, (share,), size_m, True)
                    del merged
                    graph, size = _measured(build, batch, objective.device)
            full = used + size > budget
            if full:
                graph = None  # the rest are multiplied without retaining
            else:
                used += size
        graphs.append(graph)
    return RetainedGraphs(graphs, batches, tuple(objective.weights), used, False)
