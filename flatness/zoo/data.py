"""Built-in data sets, generated or shipped offline, and user data factories.

Nothing here touches the network. Two data sets are built in:

* ``"mnist1d"`` — MNIST-1D (Greydanus 2020, "Scaling down deep learning"), generated
  procedurally by the :mod:`mnist1d` package's own generator (never its download
  function) and cached on disk as ``.npz`` keyed by a hash of the settings.
* ``"digits"`` — scikit-learn's 8×8 handwritten digits (shipped with scikit-learn) as
  1-channel images ``(1, 8, 8)``; ``"digits_flat"`` is the same split flattened to 64
  features.

A user's own data comes through a factory named ``"package.module:function"``; see
:func:`load_dataset`. The :class:`~flatness.dataset.Dataset` container and
:func:`~flatness.dataset.coerce_dataset` live in the neutral :mod:`flatness.dataset`
(the scoring pipeline needs them too) and stay importable from here.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import random
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from flatness.atomic import atomic_path
from flatness.dataset import Dataset, coerce_dataset
from flatness.zoo.factories import import_factory, is_factory_spec

CACHE_ENV = "FLATNESS_CACHE"
"""Environment variable naming the cache directory (default ``~/.cache/flatness``)."""

_CACHE_FORMAT = 1
"""Bumped whenever the layout of cached files changes, so stale files are not reused."""


DatasetFactory = Callable[..., Dataset]

_REGISTRY: dict[str, DatasetFactory] = {}


def register_dataset(name: str) -> Callable[[DatasetFactory], DatasetFactory]:
    """Register a data set builder under ``name`` (a decorator).

    Args:
        name: The string :func:`load_dataset` will accept.

    Returns:
        A decorator that registers and returns the builder unchanged.
    """

    def decorator(fn: DatasetFactory) -> DatasetFactory:
        if name in _REGISTRY and _REGISTRY[name] is not fn:
            raise ValueError(f"a data set named {name!r} is already registered")
        _REGISTRY[name] = fn
        return fn

    return decorator


def dataset_names() -> list[str]:
    """Names of the registered data sets, sorted.

    Examples:
        >>> dataset_names()
        ['digits', 'digits_flat', 'mnist1d']
    """
    return sorted(_REGISTRY)


def load_dataset(spec: str, **kwargs: Any) -> Dataset:
    """Build a data set from a registered name or a ``"package.module:function"`` factory.

    A factory is called with ``**kwargs`` and may return a :class:`Dataset`, a pair
    ``((X_train, y_train), (X_test, y_test))`` or a mapping with ``"train"`` and
    ``"test"`` pairs; arrays and tensors are both accepted.

    Args:
        spec: A registered name (see :func:`dataset_names`) or a factory string.
        **kwargs: Settings passed to the builder.

    Returns:
        The data set.

    Raises:
        KeyError: If ``spec`` is neither registered nor a factory string.
        TypeError: If a factory returns something that is not a data set.

    Examples:
        >>> data = load_dataset("digits")
        >>> data.input_shape, data.num_classes, data.n_train + data.n_test
        ((1, 8, 8), 10, 1797)
    """
    if is_factory_spec(spec):
        factory = import_factory(spec, kind="data factory")
        return coerce_dataset(factory(**kwargs), name=spec, settings=kwargs)
    if spec not in _REGISTRY:
        raise KeyError(
            f"unknown data set {spec!r}; built-in ones are {dataset_names()}, "
            "or name a factory as 'package.module:function'"
        )
    return _REGISTRY[spec](**kwargs)


def cache_dir() -> Path:
    """The directory where generated data sets are cached.

    ``$FLATNESS_CACHE`` if set, else ``$XDG_CACHE_HOME/flatness``, else
    ``~/.cache/flatness``.
    """
    env = os.environ.get(CACHE_ENV)
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "flatness"


def cache_path(generator: str, settings: Mapping[str, Any]) -> Path:
    """The cache file for a generator and its settings (a hash of both).

    Examples:
        >>> a = cache_path("mnist1d", {"n_train": 10, "seed": 0})
        >>> a == cache_path("mnist1d", {"seed": 0, "n_train": 10})
        True
        >>> a == cache_path("mnist1d", {"n_train": 10, "seed": 1})
        False
    """
    key = json.dumps(
        {"generator": generator, "format": _CACHE_FORMAT, "settings": dict(settings)},
        sort_keys=True,
    )
    digest = hashlib.sha256(key.encode()).hexdigest()[:20]
    return cache_dir() / "datasets" / f"{generator}-{digest}.npz"


def _write_npz_atomic(path: Path, arrays: Mapping[str, np.ndarray]) -> None:
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        np.savez(handle, **arrays)  # type: ignore[arg-type]


def _read_npz(path: Path, keys: tuple[str, ...]) -> dict[str, np.ndarray] | None:
    try:
        with np.load(path, allow_pickle=False) as npz:
            return {k: npz[k] for k in keys}
    except (OSError, ValueError, KeyError):
        return None


def _generate_mnist1d(n_total: int, seed: int, shuffle_seq: bool) -> tuple[np.ndarray, np.ndarray]:
    from mnist1d.data import get_dataset_args, make_dataset

    args = get_dataset_args()
    args.num_samples = n_total
    args.seed = seed
    args.shuffle_seq = shuffle_seq
    # make_dataset seeds and draws from the global numpy and random generators:
    # leave them as we found them.
    np_state, py_state = np.random.get_state(), random.getstate()  # noqa: NPY002
    try:
        raw = make_dataset(args)
    finally:
        np.random.set_state(np_state)  # noqa: NPY002
        random.setstate(py_state)
    x = np.concatenate([raw["x"], raw["x_test"]]).astype(np.float32)
    y = np.concatenate([raw["y"], raw["y_test"]]).astype(np.int64)
    return x, y


@register_dataset("mnist1d")
def mnist1d(
    n_train: int = 4000,
    n_test: int = 1000,
    seed: int = 42,
    shuffle_seq: bool = False,
    cache: bool = True,
) -> Dataset:
    """MNIST-1D (Greydanus 2020), generated offline and cached.

    The generator makes ``num_samples`` signals of length 40 (a multiple of 10, one
    tenth per class, shuffled) and normalizes them jointly; the first ``n_train`` are
    the training set and the next ``n_test`` the test set. With the defaults this is
    the split that ``mnist1d``'s generator makes with its own default arguments
    (5000 signals, seed 42, 4000 for training and 1000 for testing).

    Args:
        n_train: Number of training examples.
        n_test: Number of test examples.
        seed: Seed of the generator.
        shuffle_seq: Permute the 40 positions (the "shuffled" variant of the paper).
        cache: Read and write the on-disk cache (see :func:`cache_dir`).

    Returns:
        The data set, inputs of shape ``(40,)``, 10 classes.
    """
    if n_train < 1 or n_test < 0:
        raise ValueError(f"mnist1d needs n_train >= 1 and n_test >= 0, got {n_train}, {n_test}")
    settings: dict[str, Any] = {"n_train": int(n_train), "n_test": int(n_test), "seed": int(seed)}
    if shuffle_seq:
        settings["shuffle_seq"] = True
    n_total = 10 * math.ceil((n_train + n_test) / 10)
    path = cache_path("mnist1d", settings)
    arrays = _read_npz(path, ("x", "y")) if cache else None
    if arrays is None:
        x, y = _generate_mnist1d(n_total, int(seed), bool(shuffle_seq))
        x, y = x[: n_train + n_test], y[: n_train + n_test]
        if cache:
            _write_npz_atomic(path, {"x": x, "y": y})
    else:
        x, y = arrays["x"], arrays["y"]
    xt, yt = torch.from_numpy(np.ascontiguousarray(x)), torch.from_numpy(np.ascontiguousarray(y))
    return Dataset(
        name="mnist1d",
        train=(xt[:n_train], yt[:n_train]),
        test=(xt[n_train:], yt[n_train:]),
        num_classes=10,
        input_shape=(int(x.shape[1]),),
        settings=settings,
    )


def _digits_split(test_size: float, seed: int) -> tuple[np.ndarray, ...]:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    bunch = load_digits()
    images = (bunch.images / 16.0).astype(np.float32)[:, None, :, :]
    labels = bunch.target.astype(np.int64)
    return tuple(
        train_test_split(images, labels, test_size=test_size, random_state=seed, stratify=labels)
    )


@register_dataset("digits")
def digits(test_size: float = 0.2, seed: int = 0, flatten: bool = False) -> Dataset:
    """scikit-learn's 8×8 digits with a seeded, stratified train/test split.

    Pixel intensities are scaled from ``0..16`` to ``[0, 1]``.

    Args:
        test_size: Fraction of the 1797 images held out for testing.
        seed: Seed of the split.
        flatten: Give 64 features instead of ``(1, 8, 8)`` images.

    Returns:
        The data set, 10 classes.
    """
    x_tr, x_te, y_tr, y_te = _digits_split(float(test_size), int(seed))
    if flatten:
        x_tr, x_te = x_tr.reshape(len(x_tr), -1), x_te.reshape(len(x_te), -1)
    settings: dict[str, Any] = {"test_size": float(test_size), "seed": int(seed)}
    if flatten:
        settings["flatten"] = True
    return Dataset(
        name="digits",
        train=(torch.from_numpy(x_tr), torch.from_numpy(y_tr)),
        test=(torch.from_numpy(x_te), torch.from_numpy(y_te)),
        num_classes=10,
        input_shape=tuple(int(s) for s in x_tr.shape[1:]),
        settings=settings,
    )


@register_dataset("digits_flat")
def digits_flat(test_size: float = 0.2, seed: int = 0) -> Dataset:
    """scikit-learn's digits flattened to 64 features (see :func:`digits`)."""
    data = digits(test_size=test_size, seed=seed, flatten=True)
    settings = {k: v for k, v in data.settings.items() if k != "flatten"}
    return Dataset(
        name="digits_flat",
        train=data.train,
        test=data.test,
        num_classes=data.num_classes,
        input_shape=data.input_shape,
        settings=settings,
    )
