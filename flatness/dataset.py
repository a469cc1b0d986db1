"""The data a manifest or a training run works on: a train/test split as tensors.

:class:`Dataset` holds the split with its number of classes, input shape and the
settings that reproduce it; :func:`coerce_dataset` turns what a user's data factory
returns (a :class:`Dataset`, pairs of arrays or tensors, or map-style data sets of
``(x, y)`` items) into one. The built-in data sets are in :mod:`flatness.zoo.data`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor

__all__ = ["Dataset", "coerce_dataset"]


@dataclass(frozen=True, eq=False)
class Dataset:
    """A train/test split of a classification data set, as tensors.

    Attributes:
        name: The registry name or the factory string that produced it.
        train: ``(X, y)`` training inputs (float32, first dimension = examples) and
            integer labels (int64).
        test: ``(X, y)`` test inputs and labels.
        num_classes: Number of classes; labels lie in ``[0, num_classes)``.
        input_shape: Shape of one input, without the batch dimension.
        settings: The keyword arguments that reproduce the data set (plain types).
    """

    name: str
    train: tuple[Tensor, Tensor]
    test: tuple[Tensor, Tensor]
    num_classes: int
    input_shape: tuple[int, ...]
    settings: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for split, (x, y) in (("train", self.train), ("test", self.test)):
            if x.ndim < 2 or y.ndim != 1 or x.shape[0] != y.shape[0]:
                raise ValueError(
                    f"data set {self.name!r}: {split} split must be X of shape (N, ...) and "
                    f"y of shape (N,), got {tuple(x.shape)} and {tuple(y.shape)}"
                )
            if tuple(x.shape[1:]) != tuple(self.input_shape):
                raise ValueError(
                    f"data set {self.name!r}: {split} inputs have shape {tuple(x.shape[1:])}, "
                    f"expected {tuple(self.input_shape)}"
                )
            if y.is_floating_point() or y.is_complex():
                raise ValueError(f"data set {self.name!r}: {split} labels must be integers")
            if y.numel() and (int(y.min()) < 0 or int(y.max()) >= self.num_classes):
                raise ValueError(
                    f"data set {self.name!r}: {split} labels must lie in [0, {self.num_classes})"
                )

    @property
    def n_train(self) -> int:
        """Number of training examples."""
        return int(self.train[0].shape[0])

    @property
    def n_test(self) -> int:
        """Number of test examples."""
        return int(self.test[0].shape[0])

    def __repr__(self) -> str:
        return (
            f"Dataset(name={self.name!r}, n_train={self.n_train}, n_test={self.n_test}, "
            f"input_shape={self.input_shape}, num_classes={self.num_classes}, "
            f"settings={self.settings!r})"
        )


def _stack_map_style(value: torch.utils.data.Dataset, name: str, split: str) -> tuple[Any, Any]:
    """Read a map-style (torchvision-style) data set of ``(x, y)`` items into two tensors."""
    size = len(value)  # type: ignore[arg-type]
    if size == 0:
        raise ValueError(f"data factory {name!r}: the {split} data set is empty")
    items = [value[i] for i in range(size)]
    if not all(isinstance(it, tuple | list) and len(it) == 2 for it in items[:1]):
        raise TypeError(f"data factory {name!r}: {split} items must be (x, y) pairs")
    xs = torch.stack([torch.as_tensor(np.asarray(x)) for x, _ in items])
    ys = torch.as_tensor([int(y) for _, y in items])
    return xs, ys


def _as_pair(value: Any, name: str, split: str) -> tuple[Tensor, Tensor]:
    if isinstance(value, torch.utils.data.Dataset) and hasattr(value, "__len__"):
        value = _stack_map_style(value, name, split)
    if not isinstance(value, tuple | list) or len(value) != 2:
        raise TypeError(f"data factory {name!r}: the {split} split must be a pair (X, y)")
    x = torch.as_tensor(np.asarray(value[0]) if not isinstance(value[0], Tensor) else value[0])
    y = torch.as_tensor(np.asarray(value[1]) if not isinstance(value[1], Tensor) else value[1])
    if not x.is_complex():
        x = x.to(torch.float32)
    if y.is_floating_point() or y.is_complex():
        raise TypeError(f"data factory {name!r}: {split} labels must be integers, got {y.dtype}")
    return x, y.to(torch.int64)


def coerce_dataset(value: Any, *, name: str, settings: Mapping[str, Any]) -> Dataset:
    """Turn what a data factory returned into a :class:`Dataset`.

    Args:
        value: A :class:`Dataset`, ``((X, y), (X_test, y_test))`` or
            ``{"train": (X, y), "test": (X_test, y_test)}``; each split may also be a
            map-style (torchvision-style) data set of ``(x, y)`` items already on disk,
            which is read into tensors once.
        name: The factory string (for error messages and :attr:`Dataset.name`).
        settings: The keyword arguments the factory was called with.

    Returns:
        The data set.

    Raises:
        TypeError: If ``value`` has none of the accepted forms.
        ValueError: If the shapes or labels are inconsistent.
    """
    if isinstance(value, Dataset):
        return value
    if isinstance(value, Mapping) and "train" in value and "test" in value:
        value = (value["train"], value["test"])
    if not isinstance(value, tuple | list) or len(value) != 2:
        raise TypeError(
            f"data factory {name!r} returned a {type(value).__name__}; expected a "
            "flatness.Dataset or ((X_train, y_train), (X_test, y_test))"
        )
    train = _as_pair(value[0], name, "train")
    test = _as_pair(value[1], name, "test")
    if train[0].ndim < 2:
        raise ValueError(
            f"data factory {name!r}: X_train must have shape (N, ...), got {tuple(train[0].shape)}"
        )
    labels = torch.cat([train[1], test[1]])
    num_classes = int(labels.max()) + 1 if labels.numel() else 0
    return Dataset(
        name=name,
        train=train,
        test=test,
        num_classes=num_classes,
        input_shape=tuple(int(s) for s in train[0].shape[1:]),
        settings=dict(settings),
    )
