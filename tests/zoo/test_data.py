"""Built-in data sets: offline generation, sizes, caching, user factories."""

from __future__ import annotations

import random
import socket
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from flatness.zoo import Dataset, load_dataset
from flatness.zoo import data as data_module


def _forbid_network(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("network access attempted")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)


def test_generators_make_no_network_access(monkeypatch: pytest.MonkeyPatch) -> None:
    _forbid_network(monkeypatch)
    one_d = load_dataset("mnist1d", n_train=50, n_test=20, seed=3, cache=False)
    assert one_d.n_train == 50
    images = load_dataset("digits")
    assert images.n_train + images.n_test == 1797


def test_mnist1d_sizes_and_types() -> None:
    data = load_dataset("mnist1d", n_train=123, n_test=45, seed=1)
    assert (data.n_train, data.n_test) == (123, 45)
    assert data.input_shape == (40,) and data.num_classes == 10
    assert data.train[0].dtype == torch.float32 and data.train[1].dtype == torch.int64
    assert data.settings == {"n_train": 123, "n_test": 45, "seed": 1}
    assert set(data.train[1].tolist()) == set(range(10))


def test_mnist1d_is_seeded_and_leaves_global_rngs_alone() -> None:
    np_state, py_state = np.random.get_state(), random.getstate()  # noqa: NPY002
    a = load_dataset("mnist1d", n_train=40, n_test=10, seed=5, cache=False)
    after_np = np.random.get_state()  # noqa: NPY002
    assert after_np[0] == np_state[0] and np.array_equal(after_np[1], np_state[1])
    assert random.getstate() == py_state
    b = load_dataset("mnist1d", n_train=40, n_test=10, seed=5, cache=False)
    c = load_dataset("mnist1d", n_train=40, n_test=10, seed=6, cache=False)
    assert torch.equal(a.train[0], b.train[0])
    assert not torch.equal(a.train[0], c.train[0])


def test_mnist1d_cache_is_keyed_by_settings(
    monkeypatch: pytest.MonkeyPatch, private_cache: Path
) -> None:
    first = load_dataset("mnist1d", n_train=30, n_test=10, seed=11)
    files = sorted((private_cache / "datasets").glob("mnist1d-*.npz"))
    path = data_module.cache_path("mnist1d", first.settings)
    assert path in files
    assert not list((private_cache / "datasets").glob("*.tmp"))

    def no_generation(*args: object) -> None:
        raise AssertionError("the cache was not used")

    monkeypatch.setattr(data_module, "_generate_mnist1d", no_generation)
    again = load_dataset("mnist1d", n_train=30, n_test=10, seed=11)
    assert torch.equal(first.train[0], again.train[0])
    with pytest.raises(AssertionError, match="cache was not used"):
        load_dataset("mnist1d", n_train=30, n_test=10, seed=12)


def test_digits_images_flat_and_stratified() -> None:
    images = load_dataset("digits", seed=0)
    flat = load_dataset("digits_flat", seed=0)
    assert images.input_shape == (1, 8, 8) and flat.input_shape == (64,)
    assert torch.equal(images.train[0].reshape(images.n_train, -1), flat.train[0])
    assert float(images.train[0].max()) <= 1.0
    train_share = torch.bincount(images.train[1]) / images.n_train
    test_share = torch.bincount(images.test[1]) / images.n_test
    assert torch.allclose(train_share, test_share, atol=0.01)
    other = load_dataset("digits", seed=1)
    assert not torch.equal(images.train[1], other.train[1])


def test_unknown_name_lists_the_built_in_ones() -> None:
    with pytest.raises(KeyError, match="mnist1d"):
        load_dataset("cifar10")


@pytest.fixture
def user_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    (tmp_path / "userdata_zoo.py").write_text(
        textwrap.dedent(
            """
            import numpy as np

            def pairs(n=20):
                x = np.zeros((n, 3), dtype=np.float64)
                y = np.arange(n) % 4
                return (x, y), (x[:5], y[:5])

            def as_mapping():
                return {"train": (np.zeros((4, 2)), np.arange(4)),
                        "test": (np.zeros((2, 2)), np.arange(2))}

            def wrong():
                return np.zeros(3)

            def bad_labels():
                return (np.zeros((4, 2)), np.zeros(4)), (np.zeros((2, 2)), np.zeros(2))

            def mismatched():
                return (np.zeros((4, 2)), np.arange(3)), (np.zeros((2, 2)), np.arange(2))
            """
        )
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    return "userdata_zoo"


def test_user_factory(user_module: str) -> None:
    data = load_dataset(f"{user_module}:pairs", n=12)
    assert isinstance(data, Dataset)
    assert (data.n_train, data.n_test, data.num_classes) == (12, 5, 4)
    assert data.input_shape == (3,) and data.train[0].dtype == torch.float32
    assert data.settings == {"n": 12} and data.name == f"{user_module}:pairs"
    assert load_dataset(f"{user_module}:as_mapping").n_test == 2


@pytest.mark.parametrize(
    ("function", "error", "match"),
    [
        ("wrong", TypeError, "returned a ndarray"),
        ("bad_labels", TypeError, "labels must be integers"),
        ("mismatched", ValueError, "train split"),
        ("missing", AttributeError, "no attribute 'missing'"),
    ],
)
def test_user_factory_errors_name_the_string(
    user_module: str, function: str, error: type[Exception], match: str
) -> None:
    spec = f"{user_module}:{function}"
    with pytest.raises(error, match=match) as info:
        load_dataset(spec)
    assert spec in str(info.value)


def test_user_factory_missing_module() -> None:
    with pytest.raises(ImportError, match="no_such_module_zoo:make"):
        load_dataset("no_such_module_zoo:make")


def test_map_style_datasets_are_read_into_tensors() -> None:
    from flatness.zoo.data import coerce_dataset

    class Images(torch.utils.data.Dataset):  # what torchvision's folders look like
        def __init__(self, n: int) -> None:
            self.n = n

        def __len__(self) -> int:
            return self.n

        def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
            return torch.full((1, 4, 4), float(i)), i % 3

    ds = coerce_dataset((Images(9), Images(4)), name="pkg:images", settings={})
    assert ds.train[0].shape == (9, 1, 4, 4) and ds.test[0].shape == (4, 1, 4, 4)
    assert ds.train[1].tolist() == [0, 1, 2] * 3
    assert ds.num_classes == 3 and ds.input_shape == (1, 4, 4)
    with pytest.raises(ValueError, match="empty"):
        coerce_dataset((Images(0), Images(4)), name="pkg:images", settings={})
