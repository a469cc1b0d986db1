"""The memory that retained gradient graphs hold, and how much they may hold.

:class:`~flatness.curvature.hessian.HessianOperator` keeps each batch's gradient graph
while the graphs fit in a budget (:func:`default_memory_budget`); it sizes a graph on
the host by the storages autograd saves while building it (:class:`SavedBytes`).
"""

from __future__ import annotations

import os

import torch
from torch import Tensor

__all__ = ["SavedBytes", "default_memory_budget"]


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
