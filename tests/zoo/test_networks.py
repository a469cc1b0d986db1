"""Reference networks: output shapes, sizes, seeded construction, factories."""

from __future__ import annotations

import pytest
import torch

from flatness.zoo import ConvNet, build_network, load_network_factory, network_names


def _count(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize(
    ("name", "input_shape", "kwargs"),
    [
        ("f1", (40,), {"width": 16, "depth": 3}),
        ("f1", (1, 8, 8), {"width": 16, "depth": 2}),
        ("c1", (40,), {}),
        ("c1", (1, 8, 8), {}),
        ("c1", (2, 40), {"channels": 8, "hidden": [16]}),
        ("tiny_mlp", (40,), {}),
        ("mlp_bn", (64,), {}),
    ],
)
def test_output_shapes_in_train_and_eval_mode(
    name: str, input_shape: tuple[int, ...], kwargs: dict[str, object]
) -> None:
    model = build_network(name, input_shape=input_shape, num_classes=7, **kwargs)
    x = torch.randn(4, *input_shape)
    assert model(x).shape == (4, 7)
    model.eval()
    assert model(x[:1]).shape == (1, 7)


def test_sizes_match_the_descriptions() -> None:
    f1 = build_network("f1", input_shape=[40], num_classes=10)
    linears = [m for m in f1.modules() if isinstance(m, torch.nn.Linear)]
    assert [m.out_features for m in linears] == [512] * 5 + [10]
    assert sum(isinstance(m, torch.nn.BatchNorm1d) for m in f1.modules()) == 5
    tiny = build_network("tiny_mlp", input_shape=[40], num_classes=10)
    assert _count(tiny) == 40 * 32 + 32 + 32 * 32 + 32 + 32 * 10 + 10
    mlp = build_network("mlp_bn", input_shape=[40], num_classes=10)
    widths = [m.out_features for m in mlp.modules() if isinstance(m, torch.nn.Linear)]
    assert widths == [256, 256, 256, 10]
    c1 = build_network("c1", input_shape=[40], num_classes=10)
    assert isinstance(c1, ConvNet)
    convs = [m for m in c1.modules() if isinstance(m, torch.nn.Conv1d)]
    assert [(m.out_channels, m.kernel_size) for m in convs] == [(64, (5,))] * 2
    dense = [m.out_features for m in c1.modules() if isinstance(m, torch.nn.Linear)]
    assert dense == [384, 192, 10]
    c1_2d = build_network("c1", input_shape=[1, 8, 8], num_classes=10)
    assert sum(isinstance(m, torch.nn.Conv2d) for m in c1_2d.modules()) == 2


def test_same_seed_same_weights_and_caller_rng_untouched() -> None:
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    a = build_network("c1", input_shape=[40], num_classes=10, seed=4, channels=4, hidden=[8])
    assert torch.equal(torch.rand(3), expected)
    b = build_network("c1", input_shape=[40], num_classes=10, seed=4, channels=4, hidden=[8])
    c = build_network("c1", input_shape=[40], num_classes=10, seed=5, channels=4, hidden=[8])
    for (name, pa), pb in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        assert torch.equal(pa, pb), name
    assert not torch.equal(a.state_dict()["features.0.weight"], c.state_dict()["features.0.weight"])


def test_factories_by_name_and_string() -> None:
    assert network_names() == ["c1", "f1", "mlp_bn", "tiny_mlp"]
    by_name = load_network_factory("tiny_mlp")(input_shape=[40], num_classes=10)
    by_string = load_network_factory("flatness.zoo.networks:build_network")(
        name="tiny_mlp", input_shape=[40], num_classes=10
    )
    for pa, pb in zip(by_name.parameters(), by_string.parameters(), strict=True):
        assert torch.equal(pa, pb)
    with pytest.raises(KeyError, match="tiny_mlp"):
        load_network_factory("resnet50")
    with pytest.raises(AttributeError, match=r"flatness\.zoo\.networks:nope"):
        load_network_factory("flatness.zoo.networks:nope")
    with pytest.raises(ImportError, match=r"nowhere_zoo\.models:make"):
        load_network_factory("nowhere_zoo.models:make")
