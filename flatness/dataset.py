"""The data a manifest or a training run works on: a train and a test split.

A data factory (``[data] factory = "mymodule:load"`` in a manifest) is called with the
manifest's ``kwargs`` and returns the two splits, as ``(train, test)``, as
``{"train": train, "test": test}`` or as a ready :class:`Dataset`. Each split is one of:

1. ``(inputs, targets)``: tensors or arrays with the examples along the first
   dimension. Integer and boolean tensors keep their dtype (token ids stay ``int64``);
   floating inputs are stored as ``float32``; targets keep their dtype (integer labels
   become ``int64``, floating regression targets stay floating). Integer labels of
   shape ``(N,)`` make a classification data set (``num_classes`` is known and the
   accuracy is reported).
2. a dict of tensors with a common first dimension, such as ``{"input_ids": ...,
   "attention_mask": ..., "labels": ...}``: its batches are dicts of the same keys,
   the model is called as ``model(**batch)`` and the manifest names a loss that reads
   them (``[scoring] loss = "causal_lm"``, for example).
3. a list of batches (each a tuple or a dict of tensors), used as given: they are not
   re-split by ``[scoring] batch_size`` and no subset of them is drawn (``examples``
   stays unset or ``"all"``). A list of exactly two tensors is read as ``[X, y]``
   (form 1).
4. a map-style data set (a :class:`torch.utils.data.Dataset` with ``__len__``, or any
   object with ``__len__`` and ``__getitem__`` by position) whose items are ``(x, y)``
   pairs (torchvision style) or dicts (Hugging Face style, e.g.
   ``datasets.Dataset.with_format("torch")``): it is read once and stacked into form
   1 or 2. Dict items must have one shape per key (pad them to one length), and
   columns that are not numbers (the text a tokenizer read) are dropped.

Whatever the form, only floating-point tensors follow the scoring precision
(``[scoring] dtype``, ``--dtype``); nothing else is cast. Form 1 becomes a
:class:`Dataset` (what ``flatness train`` needs), forms 2 and 3 a :class:`BatchData`;
:func:`coerce_data` turns what a factory returned into one of the two and
:func:`coerce_dataset` insists on a :class:`Dataset`. The built-in data sets are in
:mod:`flatness.zoo.data`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, TypeAlias

import numpy as np
import torch
from torch import Tensor

__all__ = [
    "BatchData",
    "DataSplit",
    "Dataset",
    "ScoringData",
    "coerce_data",
    "coerce_dataset",
    "objective_data",
    "split_examples",
]

DataSplit: TypeAlias = tuple[Tensor, Tensor] | dict[str, Tensor] | list[Any]
"""One split: an ``(inputs, targets)`` pair, a dict of tensors or a list of batches."""


@dataclass(frozen=True, eq=False)
class Dataset:
    """A train/test split whose examples are ``(inputs, targets)`` tensor pairs.

    Attributes:
        name: The registry name or the factory string that produced it.
        train: ``(X, y)`` training inputs (first dimension = examples) and targets.
        test: ``(X, y)`` test inputs and targets.
        num_classes: Number of classes when the targets are integer class labels of
            shape ``(N,)`` (they lie in ``[0, num_classes)``); 0 for other targets
            (token sequences, regression values).
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
            if x.ndim < 2 or y.ndim < 1 or x.shape[0] != y.shape[0]:
                raise ValueError(
                    f"data set {self.name!r}: {split} split must be X of shape (N, ...) and "
                    f"y of shape (N, ...), got {tuple(x.shape)} and {tuple(y.shape)}"
                )
            if tuple(x.shape[1:]) != tuple(self.input_shape):
                raise ValueError(
                    f"data set {self.name!r}: {split} inputs have shape {tuple(x.shape[1:])}, "
                    f"expected {tuple(self.input_shape)}"
                )
            if self.num_classes <= 0:
                continue
            if not _class_labels(y):
                raise ValueError(
                    f"data set {self.name!r}: {split} labels must be integers of shape (N,)"
                )
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


@dataclass(frozen=True, eq=False)
class BatchData:
    """A train/test split whose examples are dicts of tensors or fixed batches.

    What a data factory returns for models that take keyword inputs (Hugging Face
    models: ``model(**batch)``) or batches of their own making (see the module doc).

    Attributes:
        name: The factory string that produced it.
        train: A dict of tensors with one first dimension (the examples), or a list
            of batches.
        test: The same for the test split (may hold no example).
        settings: The keyword arguments that reproduce the data set (plain types).
    """

    name: str
    train: dict[str, Tensor] | list[Any]
    test: dict[str, Tensor] | list[Any]
    settings: dict[str, Any] = field(default_factory=dict)
    num_classes: int = 0

    def __post_init__(self) -> None:
        for split, value in (("train", self.train), ("test", self.test)):
            if isinstance(value, dict):
                _check_columns(value, f"data set {self.name!r}: {split} split")
            elif not isinstance(value, list):
                raise TypeError(
                    f"data set {self.name!r}: the {split} split must be a dict of tensors or "
                    f"a list of batches, got {type(value).__name__}"
                )
        if split_examples(self.train) == 0:
            raise ValueError(f"data set {self.name!r}: the train split holds no example")

    @property
    def n_train(self) -> int:
        """Number of training examples."""
        return split_examples(self.train)

    @property
    def n_test(self) -> int:
        """Number of test examples."""
        return split_examples(self.test)

    def __repr__(self) -> str:
        kind = "dict" if isinstance(self.train, dict) else "batches"
        return (
            f"BatchData(name={self.name!r}, {kind}, n_train={self.n_train}, "
            f"n_test={self.n_test}, settings={self.settings!r})"
        )


ScoringData: TypeAlias = Dataset | BatchData
"""What a manifest's data becomes: pairs (:class:`Dataset`) or dicts and batches."""


def _class_labels(y: Tensor) -> bool:
    return y.ndim == 1 and not (y.is_floating_point() or y.is_complex() or y.dtype == torch.bool)


def _check_columns(columns: Mapping[str, Tensor], where: str) -> None:
    sizes = {}
    for key, value in columns.items():
        if not isinstance(value, Tensor) or value.ndim == 0:
            raise TypeError(
                f"{where}: {key!r} must be a tensor with the examples along its first "
                f"dimension, got {type(value).__name__}"
            )
        sizes[key] = int(value.shape[0])
    if not sizes:
        raise ValueError(f"{where}: the dict holds no tensor")
    if len(set(sizes.values())) > 1:
        raise ValueError(f"{where}: the tensors disagree on the number of examples: {sizes}")


def split_examples(split: DataSplit) -> int:
    """The number of examples in a split.

    Returns:
        The first dimension of its tensors, summed over the batches of a list.

    Examples:
        >>> split_examples({"input_ids": torch.zeros(3, 5, dtype=torch.long)})
        3
        >>> pair = (torch.zeros(2, 1), torch.zeros(2))
        >>> split_examples([pair, pair])
        4
    """
    from flatness.curvature.batches import batch_size_of

    if isinstance(split, dict):
        return int(next(iter(split.values())).shape[0])
    if isinstance(split, list):
        return sum(batch_size_of(b) for b in split)
    return int(split[0].shape[0])


def objective_data(split: DataSplit, batch_size: int) -> tuple[Tensor, Tensor] | list[Any]:
    """A split as an :class:`~flatness.curvature.objective.Objective` takes it.

    Args:
        split: An ``(inputs, targets)`` pair, a dict of tensors or a list of batches.
        batch_size: Examples per batch for a dict (the objective splits a pair itself).

    Returns:
        The pair or the list as they are; a dict of tensors cut into a list of dict
        batches of ``batch_size`` examples.

    Examples:
        >>> ids = torch.arange(10).reshape(5, 2)
        >>> [b["input_ids"].shape[0] for b in objective_data({"input_ids": ids}, 2)]
        [2, 2, 1]
    """
    if not isinstance(split, dict):
        return split
    n = split_examples(split)
    return [{k: v[i : i + batch_size] for k, v in split.items()} for i in range(0, n, batch_size)]


def _tensor(value: Any) -> Tensor:
    return value if isinstance(value, Tensor) else torch.as_tensor(np.asarray(value))


def _numeric(value: Any) -> bool:
    if isinstance(value, Tensor):
        return True
    try:
        return np.asarray(value).dtype.kind in "biuf"
    except (TypeError, ValueError):
        return False


def _stack_items(value: Any, name: str, split: str) -> tuple[Tensor, Tensor] | dict[str, Tensor]:
    """Read a map-style data set of ``(x, y)`` or dict items into tensors."""
    size = len(value)
    if size == 0:
        raise ValueError(f"data factory {name!r}: the {split} data set is empty")
    items = [value[i] for i in range(size)]
    first = items[0]
    if isinstance(first, Mapping):
        keys = [k for k, v in first.items() if _numeric(v)]
        if not keys:
            raise TypeError(f"data factory {name!r}: {split} items hold no numeric column")
        out = {}
        for key in keys:
            parts = [_tensor(it[key]) for it in items]
            shapes = {tuple(p.shape) for p in parts}
            if len(shapes) > 1:
                raise ValueError(
                    f"data factory {name!r}: {split} items have different shapes for "
                    f"{key!r} ({', '.join(map(str, sorted(shapes)[:3]))}): pad them to one "
                    "length (a tokenizer's padding='max_length') or return a list of batches"
                )
            out[str(key)] = torch.stack(parts)
        return out
    if not (isinstance(first, tuple | list) and len(first) == 2):
        raise TypeError(
            f"data factory {name!r}: {split} items must be (x, y) pairs or dicts of tensors, "
            f"got {type(first).__name__}"
        )
    xs = torch.stack([_tensor(x) for x, _ in items])
    ys = torch.stack([_tensor(y) for _, y in items])
    return xs, ys


def _map_style(value: Any) -> bool:
    """A torch map-style data set, or anything indexable by position that is not a plain
    container (a Hugging Face ``datasets.Dataset``, which is not a torch one)."""
    if isinstance(value, Tensor | np.ndarray | Mapping | tuple | list | str | bytes):
        return False
    return hasattr(value, "__len__") and hasattr(value, "__getitem__")


def _as_split(value: Any, name: str, split: str) -> DataSplit:
    if _map_style(value):
        value = _stack_items(value, name, split)
    if isinstance(value, Mapping):
        columns = {str(k): _tensor(v) for k, v in value.items()}
        _check_columns(columns, f"data factory {name!r}: {split} split")
        return columns
    if isinstance(value, list) and not (len(value) == 2 and not _is_batch(value[0])):
        return value
    if not isinstance(value, tuple | list) or len(value) != 2:
        raise TypeError(
            f"data factory {name!r}: the {split} split must be a pair (X, y), a dict of "
            "tensors, a list of batches or a map-style data set"
        )
    x, y = _tensor(value[0]), _tensor(value[1])
    if x.is_floating_point():
        x = x.to(torch.float32)
    if _class_labels(y):
        y = y.to(torch.int64)
    return x, y


def _is_batch(item: Any) -> bool:
    return isinstance(item, Mapping) or (
        isinstance(item, tuple | list) and any(isinstance(t, Tensor) for t in item)
    )


def coerce_data(value: Any, *, name: str, settings: Mapping[str, Any]) -> ScoringData:
    """Turn what a data factory returned into a :class:`Dataset` or a :class:`BatchData`.

    Args:
        value: A :class:`Dataset` or :class:`BatchData`, ``(train, test)`` or
            ``{"train": train, "test": test}``, each split in one of the forms of the
            module doc.
        name: The factory string (for error messages and the data set's name).
        settings: The keyword arguments the factory was called with.

    Returns:
        A :class:`Dataset` when both splits are ``(inputs, targets)`` pairs, else a
        :class:`BatchData`.

    Raises:
        TypeError: If ``value`` has none of the accepted forms.
        ValueError: If the shapes or labels are inconsistent.

    Examples:
        >>> ids = torch.randint(0, 50, (6, 8))
        >>> data = coerce_data(({"input_ids": ids}, {"input_ids": ids[:2]}), name="lm",
        ...                    settings={})
        >>> data.n_train, data.train["input_ids"].dtype
        (6, torch.int64)
    """
    if isinstance(value, Dataset | BatchData):
        return value
    if isinstance(value, Mapping) and "train" in value and "test" in value:
        value = (value["train"], value["test"])
    if not isinstance(value, tuple | list) or len(value) != 2:
        raise TypeError(
            f"data factory {name!r} returned a {type(value).__name__}; expected a "
            "flatness.Dataset or (train, test) splits, each (X, y), a dict of tensors, a "
            "list of batches or a map-style data set"
        )
    train = _as_split(value[0], name, "train")
    test = _as_split(value[1], name, "test")
    if not (isinstance(train, tuple) and isinstance(test, tuple)):
        if isinstance(train, tuple) or isinstance(test, tuple):
            raise TypeError(
                f"data factory {name!r}: give both splits in one form ((X, y) pairs, dicts "
                "of tensors or lists of batches)"
            )
        return BatchData(name=name, train=train, test=test, settings=dict(settings))
    if train[0].ndim < 2:
        raise ValueError(
            f"data factory {name!r}: X_train must have shape (N, ...), got {tuple(train[0].shape)}"
        )
    labels = [y for _, y in (train, test)]
    classes = all(_class_labels(y) for y in labels)
    every = torch.cat(labels) if classes else torch.zeros(0)
    return Dataset(
        name=name,
        train=train,
        test=test,
        num_classes=int(every.max()) + 1 if classes and every.numel() else 0,
        input_shape=tuple(int(s) for s in train[0].shape[1:]),
        settings=dict(settings),
    )


def coerce_dataset(value: Any, *, name: str, settings: Mapping[str, Any]) -> Dataset:
    """Turn what a data factory returned into a :class:`Dataset` of ``(X, y)`` pairs.

    What training needs (integer class labels); scoring takes the other forms too
    (:func:`coerce_data`).

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
        TypeError: If ``value`` has none of the accepted forms, its splits are dicts or
            lists of batches, or its targets are not integer class labels.
        ValueError: If the shapes or labels are inconsistent.
    """
    data = coerce_data(value, name=name, settings=settings)
    if not isinstance(data, Dataset):
        raise TypeError(
            f"data factory {name!r}: this needs (X, y) pairs for both splits; dicts of "
            "tensors and lists of batches can be scored (flatness score), not trained on"
        )
    for split, (_, y) in (("train", data.train), ("test", data.test)):
        if not _class_labels(y):
            raise TypeError(
                f"data factory {name!r}: {split} labels must be integers of shape (N,) "
                f"(class labels) to train on, got {y.dtype} of shape {tuple(y.shape)}"
            )
    return data
