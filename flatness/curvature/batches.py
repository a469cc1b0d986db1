"""The data an objective is taken over: batches, their sizes and their device.

An :class:`~flatness.curvature.objective.Objective` holds its data as a fixed list of
batches: an ``(inputs, targets)`` tensor pair split by a batch size, a list of
batches, or a DataLoader read once. A batch is whatever the data yields (a tensor,
a tuple, a list or a dict of tensors); these helpers find its number of examples and
move it to a device and dtype, so that batches that are not ``(x, y)`` (dicts, the
inputs of Hugging Face models) work too.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

import torch
from torch import Tensor

__all__ = ["Batch", "batch_size_of", "map_tensors", "move_batch", "shuffles", "split_batches"]

Batch = Any
"""One batch as the data yields it: ``(x, y)`` for the default loss, anything for a hook."""


def _first_tensor(batch: Batch) -> Tensor | None:
    if isinstance(batch, Tensor):
        return batch
    if isinstance(batch, Mapping):
        batch = list(batch.values())
    if isinstance(batch, list | tuple):
        for item in batch:
            t = _first_tensor(item)
            if t is not None:
                return t
    return None


def batch_size_of(batch: Batch) -> int:
    """The number of examples in a batch.

    Returns:
        The leading size of its first tensor.

    Raises:
        ValueError: If the batch holds no tensor with a batch dimension.
    """
    t = _first_tensor(batch)
    if t is None or t.ndim == 0:
        raise ValueError(
            "cannot tell the number of examples in a batch: it holds no tensor with a "
            "batch dimension; pass batches as (x, y) tensors or tuples/dicts of tensors"
        )
    return int(t.shape[0])


def move_batch(batch: Batch, device: torch.device, dtype: torch.dtype | None) -> Batch:
    """Move a batch (tensor, tuple, list or dict) to ``device``, float tensors to ``dtype``.

    Returns:
        A batch of the same structure; other objects are returned unchanged.
    """

    def move(t: Tensor) -> Tensor:
        if dtype is not None and t.is_floating_point():
            return t.to(device=device, dtype=dtype)
        return t.to(device=device)

    return map_tensors(move, batch)


def map_tensors(fn: Callable[[Tensor], Tensor], batch: Batch) -> Batch:
    """Apply ``fn`` to every tensor of a batch, keeping its structure.

    Args:
        fn: The function applied to each tensor.
        batch: A tensor, or a (nested) tuple, list or mapping of tensors and other
            objects.

    Returns:
        A batch of the same structure with ``fn(t)`` in place of every tensor ``t``;
        other objects are kept as they are.

    Examples:
        >>> map_tensors(lambda t: 2 * t, {"x": torch.ones(2), "n": 3})
        {'x': tensor([2., 2.]), 'n': 3}
    """
    if isinstance(batch, Tensor):
        return fn(batch)
    if isinstance(batch, Mapping):
        return {k: map_tensors(fn, v) for k, v in batch.items()}
    if isinstance(batch, tuple | list):
        return type(batch)(map_tensors(fn, v) for v in batch)
    return batch


def shuffles(data: Any) -> bool:
    """Whether ``data`` is a DataLoader that draws its examples in a random order.

    Returns:
        ``True`` for a loader whose sampler is not sequential.
    """
    sampler = getattr(data, "sampler", None)
    return isinstance(data, torch.utils.data.DataLoader) and not isinstance(
        sampler, torch.utils.data.SequentialSampler
    )


def split_batches(data: Any, batch_size: int) -> list[Batch]:
    """The batches of ``data``: a tensor pair split by ``batch_size``, a list, or a loader.

    Returns:
        The batches as a list (a loader is iterated once).

    Raises:
        ValueError: If inputs and targets disagree on the number of examples.
        TypeError: If ``data`` is none of the three.
    """
    if isinstance(data, tuple) and len(data) == 2 and all(isinstance(t, Tensor) for t in data):
        x, y = data
        if x.shape[0] != y.shape[0]:
            raise ValueError(
                f"inputs and targets disagree on the number of examples: "
                f"{x.shape[0]} vs {y.shape[0]}"
            )
        return [
            (x[i : i + batch_size], y[i : i + batch_size]) for i in range(0, len(x), batch_size)
        ]
    if isinstance(data, torch.utils.data.DataLoader | Iterable) and not isinstance(data, Tensor):
        return list(data)
    raise TypeError(
        "data must be an (inputs, targets) tensor pair, a list of batches or a DataLoader, "
        f"got {type(data).__name__}"
    )
