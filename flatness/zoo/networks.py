"""Reference networks: Keskar et al. (ICLR 2017, Table 1) at small scale.

* ``"f1"`` — the F1 fully connected network: ``depth`` hidden layers of ``width`` units,
  each ``Linear → BatchNorm1d → ReLU``, then a linear classifier (defaults 5 × 512).
* ``"c1"`` — the C1 shallow convolutional network: two blocks of 64 filters of size 5
  (``Conv → BatchNorm → ReLU → MaxPool(3, stride 2)``), then dense layers of 384 and
  192 units (``Linear → BatchNorm1d → ReLU → Dropout(0.5)``), then the classifier. It is
  1-D for inputs of shape ``(L,)`` or ``(C, L)`` (MNIST-1D) and 2-D for ``(C, H, W)``
  (digits); convolutions are "same"-padded and pools halve the length (rounding up),
  so it fits inputs as small as 8 × 8.
* ``"tiny_mlp"`` — a few thousand parameters (40-32-32-10 on MNIST-1D, no BatchNorm by
  default) so an exact dense Hessian is cheap; for tests.
* ``"mlp_bn"`` — the 40-256-256-256-10 BatchNorm MLP used by the benchmarks.

Every network is built by :func:`build_network` from a seed, in a forked RNG so the
caller's random state is untouched: the same seed gives the same weights.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import torch
from torch import Tensor, nn

from flatness.zoo.factories import import_factory, is_factory_spec

NetworkBuilder = Callable[..., nn.Module]

_REGISTRY: dict[str, NetworkBuilder] = {}


def dense_block(
    in_features: int, units: int, *, batchnorm: bool, dropout: float
) -> list[nn.Module]:
    """Linear → (BatchNorm1d) → ReLU → (Dropout): one hidden layer of the reference nets."""
    layers: list[nn.Module] = [nn.Linear(in_features, units)]
    if batchnorm:
        layers.append(nn.BatchNorm1d(units))
    layers.append(nn.ReLU())
    if dropout > 0:
        layers.append(nn.Dropout(dropout))
    return layers


class MLP(nn.Module):
    """A fully connected ReLU network, optionally with BatchNorm after each hidden layer.

    Inputs of any shape ``(N, *input_shape)`` are flattened first.

    Args:
        in_features: Number of input features (the product of the input shape).
        num_classes: Number of outputs.
        width: Units per hidden layer.
        depth: Number of hidden layers.
        batchnorm: Put ``BatchNorm1d`` between each hidden ``Linear`` and its ReLU.
        dropout: Dropout probability after each hidden ReLU (0 for none).

    Examples:
        >>> MLP(40, 10, width=32, depth=2)(torch.zeros(3, 40)).shape
        torch.Size([3, 10])
    """

    def __init__(
        self,
        in_features: int,
        num_classes: int,
        *,
        width: int = 512,
        depth: int = 5,
        batchnorm: bool = True,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Flatten()]
        features = in_features
        for _ in range(depth):
            layers += dense_block(features, width, batchnorm=batchnorm, dropout=dropout)
            features = width
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(features, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        """Class scores (logits) of shape ``(N, num_classes)``."""
        return self.head(self.body(x))  # type: ignore[no-any-return]


class ConvNet(nn.Module):
    """A shallow convolutional network in the style of Keskar et al.'s C1.

    Args:
        input_shape: ``(L,)`` or ``(C, L)`` for 1-D signals, ``(C, H, W)`` for images.
        num_classes: Number of outputs.
        channels: Filters per convolution.
        kernel_size: Convolution size (odd; padded to keep the spatial size).
        blocks: Number of convolution blocks.
        hidden: Units of the dense layers after the convolutions.
        dropout: Dropout probability after each dense layer.
        batchnorm: Use BatchNorm after every convolution and dense layer.

    Examples:
        >>> ConvNet((40,), 10)(torch.zeros(2, 40)).shape
        torch.Size([2, 10])
        >>> ConvNet((1, 8, 8), 10)(torch.zeros(2, 1, 8, 8)).shape
        torch.Size([2, 10])
    """

    def __init__(
        self,
        input_shape: Sequence[int],
        num_classes: int,
        *,
        channels: int = 64,
        kernel_size: int = 5,
        blocks: int = 2,
        hidden: Sequence[int] = (384, 192),
        dropout: float = 0.5,
        batchnorm: bool = True,
    ) -> None:
        super().__init__()
        shape = tuple(int(s) for s in input_shape)
        if len(shape) not in (1, 2, 3):
            raise ValueError(
                f"ConvNet takes inputs of shape (L,), (C, L) or (C, H, W), got {shape}"
            )
        if kernel_size % 2 != 1:
            raise ValueError(f"kernel_size must be odd, got {kernel_size}")
        self.add_channel = len(shape) == 1
        if self.add_channel:
            shape = (1, *shape)
        two_d = len(shape) == 3
        conv = nn.Conv2d if two_d else nn.Conv1d
        norm = nn.BatchNorm2d if two_d else nn.BatchNorm1d
        pool = nn.MaxPool2d if two_d else nn.MaxPool1d
        layers: list[nn.Module] = []
        in_channels, spatial = shape[0], list(shape[1:])
        for _ in range(blocks):
            layers.append(conv(in_channels, channels, kernel_size, padding=kernel_size // 2))
            if batchnorm:
                layers.append(norm(channels))
            layers += [nn.ReLU(), pool(3, stride=2, padding=1)]
            in_channels = channels
            spatial = [(s - 1) // 2 + 1 for s in spatial]
        self.features = nn.Sequential(*layers)
        dense: list[nn.Module] = [nn.Flatten()]
        features = channels * math.prod(spatial)
        for units in hidden:
            dense += dense_block(features, units, batchnorm=batchnorm, dropout=dropout)
            features = units
        dense.append(nn.Linear(features, num_classes))
        self.classifier = nn.Sequential(*dense)

    def forward(self, x: Tensor) -> Tensor:
        """Class scores (logits) of shape ``(N, num_classes)``."""
        if self.add_channel:
            x = x.unsqueeze(1)
        return self.classifier(self.features(x))  # type: ignore[no-any-return]


def register_network(name: str) -> Callable[[NetworkBuilder], NetworkBuilder]:
    """Register a network builder under ``name`` (a decorator).

    The builder is called as ``builder(input_shape=..., num_classes=..., **kwargs)``.
    """

    def decorator(fn: NetworkBuilder) -> NetworkBuilder:
        if name in _REGISTRY and _REGISTRY[name] is not fn:
            raise ValueError(f"a network named {name!r} is already registered")
        _REGISTRY[name] = fn
        return fn

    return decorator


def network_names() -> list[str]:
    """Names of the registered networks, sorted.

    Examples:
        >>> network_names()
        ['c1', 'f1', 'mlp_bn', 'tiny_mlp']
    """
    return sorted(_REGISTRY)


@register_network("f1")
def f1(*, input_shape: Sequence[int], num_classes: int, width: int = 512, depth: int = 5) -> MLP:
    """Keskar et al.'s F1: ``depth`` × (Linear → BatchNorm1d → ReLU) of ``width``."""
    return MLP(math.prod(input_shape), num_classes, width=width, depth=depth, batchnorm=True)


@register_network("c1")
def c1(*, input_shape: Sequence[int], num_classes: int, **kwargs: Any) -> ConvNet:
    """Keskar et al.'s C1, scaled: see :class:`ConvNet` for the keyword arguments."""
    return ConvNet(input_shape, num_classes, **kwargs)


@register_network("tiny_mlp")
def tiny_mlp(
    *,
    input_shape: Sequence[int],
    num_classes: int,
    width: int = 32,
    depth: int = 2,
    batchnorm: bool = False,
) -> MLP:
    """A tiny MLP (2 698 parameters on MNIST-1D) for exact dense Hessians in tests."""
    return MLP(math.prod(input_shape), num_classes, width=width, depth=depth, batchnorm=batchnorm)


@register_network("mlp_bn")
def mlp_bn(
    *, input_shape: Sequence[int], num_classes: int, width: int = 256, depth: int = 3
) -> MLP:
    """The benchmarks' BatchNorm MLP (40-256-256-256-10 on MNIST-1D)."""
    return MLP(math.prod(input_shape), num_classes, width=width, depth=depth, batchnorm=True)


@contextmanager
def seeded(seed: int) -> Iterator[None]:
    """Run a block with torch's CPU generator seeded, restoring its state afterwards.

    Examples:
        >>> with seeded(0):
        ...     a = torch.rand(2)
        >>> with seeded(0):
        ...     b = torch.rand(2)
        >>> bool((a == b).all())
        True
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


def build_network(
    name: str,
    *,
    input_shape: Sequence[int],
    num_classes: int,
    seed: int = 0,
    **kwargs: Any,
) -> nn.Module:
    """Build a registered network with weights initialised from ``seed``.

    This is the model factory that manifests name as
    ``"flatness.zoo.networks:build_network"``.

    Args:
        name: A registered name (see :func:`network_names`).
        input_shape: Shape of one input without the batch dimension.
        num_classes: Number of outputs.
        seed: Seed of the initialisation; the caller's RNG state is left untouched.
        **kwargs: Settings of the network (e.g. ``width``, ``depth``).

    Returns:
        The network, in training mode.

    Raises:
        KeyError: If ``name`` is not registered.

    Examples:
        >>> net = build_network("tiny_mlp", input_shape=[40], num_classes=10)
        >>> sum(p.numel() for p in net.parameters())
        2698
    """
    if name not in _REGISTRY:
        raise KeyError(f"unknown network {name!r}; built-in ones are {network_names()}")
    with seeded(seed):
        return _REGISTRY[name](
            input_shape=tuple(int(s) for s in input_shape), num_classes=int(num_classes), **kwargs
        )


def load_network_factory(spec: str) -> Callable[..., nn.Module]:
    """The model factory for a registered name or a ``"package.module:function"`` string.

    For a registered name the factory is :func:`build_network` with the name bound;
    for a string the user's function is imported (see
    :func:`flatness.zoo.factories.import_factory`).

    Examples:
        >>> factory = load_network_factory("f1")
        >>> factory(input_shape=[40], num_classes=10, width=8, depth=1)(torch.zeros(2, 40)).shape
        torch.Size([2, 10])
    """
    if is_factory_spec(spec):
        return import_factory(spec, kind="model factory")
    if spec not in _REGISTRY:
        raise KeyError(
            f"unknown network {spec!r}; built-in ones are {network_names()}, "
            "or name a factory as 'package.module:function'"
        )
    return functools.partial(build_network, spec)
