"""A training checkpoint: the weights and plain-typed metadata, written atomically.

A checkpoint is ``torch.save({"state_dict": ..., "meta": {...}})`` with plain-typed
metadata that loads with ``torch.load(weights_only=True)``, written atomically (a
temporary file moved into place, removed on failure); a full disk is reported as one
:class:`~flatness.atomic.DiskFullError` naming the file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from flatness.atomic import atomic_path

__all__ = ["META_FORMAT", "plain_meta", "save_checkpoint"]

META_FORMAT = "flatness.train/1"
"""The ``meta["format"]`` of checkpoints that :func:`flatness.zoo.train_network` writes."""


def plain_meta(value: Any) -> Any:
    """Copy metadata as exact plain types, which ``torch.load(weights_only=True)`` accepts.

    Subclasses (``torch.__version__``'s ``TorchVersion``, ``numpy.float64``) become their
    plain base type; tuples become lists.

    Raises:
        TypeError: For anything else (``None`` included).

    Examples:
        >>> plain_meta({"v": torch.__version__, "xs": (np.float64(0.5), True)})["xs"]
        [0.5, True]
    """
    if isinstance(value, dict):
        return {str(k): plain_meta(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain_meta(v) for v in value]
    for kind in (bool, int, float, str):
        if isinstance(value, kind):
            return kind(value)
    if isinstance(value, np.generic):
        return plain_meta(value.item())
    raise TypeError(f"checkpoint metadata must be plain types, got {type(value).__name__}")


def save_checkpoint(path: Path, model: nn.Module, meta: dict[str, Any]) -> Path:
    """Write a checkpoint atomically.

    torch writes through a Python file object, so a full disk raises ``OSError``
    (which :func:`~flatness.atomic.atomic_path` reports as a
    :class:`~flatness.atomic.DiskFullError` naming the file) instead of torch's
    ``unexpected pos`` error; the archive's inner folder is then ``archive``, not the
    random temporary name, so equal runs write equal bytes.

    Args:
        path: The checkpoint file.
        model: Whose ``state_dict`` to save (copied to the CPU).
        meta: The metadata (converted by :func:`plain_meta`).

    Returns:
        ``path``.

    Raises:
        flatness.atomic.DiskFullError: If the disk is full.
        TypeError: If the metadata holds something other than plain types.
    """
    state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        torch.save({"state_dict": state, "meta": plain_meta(meta)}, handle)
    return path
