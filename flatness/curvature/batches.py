"""The data an objective is taken over: batches, their sizes and their device.

An :class:`~flatness.curvature.objective.Objective` holds its data as a fixed list of
batches: an ``(inputs, targets)`` tensor pair split by a batch size, a list of
batches, or a DataLoader read once. A batch is whatever the data yields (a tensor,
a tuple, a list or a dict of tensors); these helpers find its number of examples and
move it to a device and dtype, so that batches that are not ``(x, y)`` (dicts, the
inputs of Hugging Face models) work too.

Batches stream: the objective keeps them where the data put them (cast to its dtype
there, pinned in host memory when the device is a GPU) and :class:`DeviceBatches`
moves each one to the device when it is used, so device memory holds the batch at
work, not the whole data set.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, overload

import torch
from torch import Tensor

from flatness.losses import batch_weight

__all__ = [
    "Batch",
    "DeviceBatches",
    "batch_size_of",
    "map_tensors",
    "move_batch",
    "require_fixed_order",
    "shuffles",
    "split_batches",
    "weigh_batches",
    "WeighedBatches",
]

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


def move_batch(
    batch: Batch,
    device: torch.device | None,
    dtype: torch.dtype | None,
    *,
    non_blocking: bool = False,
) -> Batch:
    """Move a batch (tensor, tuple, list or dict) to ``device``, float tensors to ``dtype``.

    Args:
        batch: The batch.
        device: Where to (``None``: where each tensor is).
        dtype: The dtype of floating tensors (``None``: unchanged).
        non_blocking: Copy asynchronously (effective from pinned host memory to a GPU).

    Returns:
        A batch of the same structure (tensors already in place are returned as they
        are); other objects are returned unchanged.
    """

    def move(t: Tensor) -> Tensor:
        if dtype is not None and t.is_floating_point():
            return t.to(device=device, dtype=dtype, non_blocking=non_blocking)
        return t.to(device=device, non_blocking=non_blocking)

    return map_tensors(move, batch)


def _pinned(t: Tensor) -> Tensor:
    return t.pin_memory() if t.device.type == "cpu" and not t.is_pinned() else t


class DeviceBatches(Sequence[Batch]):
    """Batches kept where they are and moved to a device one at a time, when used.

    Indexing or iterating yields each batch on ``device`` (a no-op for tensors already
    there); the stored batches are :attr:`host`. For a CUDA device the host tensors
    are pinned and copied with ``non_blocking=True``, so the copy overlaps work already
    queued.

    Args:
        batches: The batches (already cast to the wanted dtype).
        device: Where the batches are used.

    Examples:
        >>> batches = DeviceBatches([(torch.ones(2, 3), torch.zeros(2))], torch.device("cpu"))
        >>> len(batches), batches[0][0].shape
        (1, torch.Size([2, 3]))
        >>> batches[0][0] is batches.host[0][0]  # already on the device: not copied
        True
    """

    def __init__(self, batches: Iterable[Batch], device: torch.device) -> None:
        self.device = device
        self.non_blocking = device.type == "cuda"
        self.host: tuple[Batch, ...] = tuple(
            map_tensors(_pinned, b) if self.non_blocking else b for b in batches
        )

    def __len__(self) -> int:
        return len(self.host)

    @overload
    def __getitem__(self, index: int) -> Batch: ...

    @overload
    def __getitem__(self, index: slice) -> list[Batch]: ...

    def __getitem__(self, index: int | slice) -> Batch | list[Batch]:
        if isinstance(index, slice):
            return [self._move(b) for b in self.host[index]]
        return self._move(self.host[index])

    def __iter__(self) -> Iterator[Batch]:
        return (self._move(b) for b in self.host)

    def _move(self, batch: Batch) -> Batch:
        return move_batch(batch, self.device, None, non_blocking=self.non_blocking)

    def __repr__(self) -> str:
        return f"DeviceBatches({len(self)} batches, device={self.device})"


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


def require_fixed_order(data: Any, train_mode: bool) -> None:
    """Refuse a shuffling loader in training mode, where the batches' make-up matters.

    Raises:
        ValueError: For ``train_mode=True`` with a loader that shuffles.
    """
    if train_mode and shuffles(data):
        raise ValueError(
            "train_mode=True with a shuffling DataLoader: in training mode BatchNorm "
            "normalizes with each batch's statistics, so the loss depends on which "
            "examples share a batch and a shuffled loader makes it random. Pass a "
            "loader with shuffle=False, a fixed list of batches, or use eval mode."
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


@dataclass(frozen=True)
class WeighedBatches:
    """Non-empty batches cast to a dtype, with their sizes and weights."""

    batches: tuple[Batch, ...]
    sizes: tuple[int, ...]
    """Examples per batch."""
    weights: tuple[int, ...]
    """What each batch mean is taken over: its examples, or the loss's declared weight."""
    unit: str
    """``"examples"``, or the loss's ``weight_unit`` (``"tokens"``)."""


def weigh_batches(batches: Sequence[Batch], dtype: torch.dtype, batch_loss: Any) -> WeighedBatches:
    """Cast batches to ``dtype`` where they are and weigh them for the mean over the data.

    A batch weighs its number of examples, or what ``batch_loss.weight(batch)``
    declares (:func:`~flatness.losses.batch_weight`: the tokens of a language model's
    loss). Batches without examples or of weight 0 are dropped.

    Args:
        batches: The batches as the data gave them.
        dtype: The dtype of floating tensors.
        batch_loss: The loss hook, or ``None``.

    Returns:
        The kept batches, their sizes, weights and the unit of the weights.

    Raises:
        ValueError: If no batch is left (an empty data set, or no token enters the loss).
    """
    cast = [move_batch(b, None, dtype) for b in batches]
    sizes = [batch_size_of(b) for b in cast]
    declared = [
        batch_weight(batch_loss, b) if s > 0 else 0 for b, s in zip(cast, sizes, strict=True)
    ]
    kept = [
        (b, s, s if c is None else c)
        for b, s, c in zip(cast, sizes, declared, strict=True)
        if s > 0 and c != 0
    ]
    if not kept:
        raise ValueError(
            "the data set is empty: the objective needs at least one example "
            "(check the data factory or the number of examples requested)"
            + ("; no batch has a token that enters the loss" if any(sizes) else "")
        )
    unit = (
        "examples"
        if all(c is None for c in declared)
        else str(getattr(batch_loss, "weight_unit", "weight"))
    )
    return WeighedBatches(
        batches=tuple(b for b, _, _ in kept),
        sizes=tuple(s for _, s, _ in kept),
        weights=tuple(c for _, _, c in kept),
        unit=unit,
    )
