"""Batches stay where they are and move to the device when used (issue 16 item 5)."""

from __future__ import annotations

import pytest
import torch

from flatness.curvature.batches import DeviceBatches
from flatness.curvature.objective import Objective
from tests.conftest import make_data, make_net


def test_batches_are_kept_as_given_not_copied_at_construction() -> None:
    net = make_net("mlp")
    X, y = make_data(n=12)
    batches = [(X[:5], y[:5]), (X[5:], y[5:])]
    obj = Objective(net, batches)
    assert isinstance(obj.batches, DeviceBatches)
    for kept, given in zip(obj.batches.host, batches, strict=True):
        assert kept[0] is given[0] and kept[1] is given[1]


def test_a_cast_happens_on_the_host_and_values_are_unchanged() -> None:
    net = make_net("mlp").float()
    X, y = make_data(n=12)  # float64 inputs for a float32 objective
    obj = Objective(net, (X, y), batch_size=5)
    assert all(b[0].dtype == torch.float32 and b[0].device.type == "cpu" for b in obj.batches.host)
    with torch.no_grad():
        expected = torch.nn.functional.cross_entropy(net(X.float()), y)
    torch.testing.assert_close(obj.value(), expected)
    assert len(obj.batches) == 3 and obj.batches[1:][0][0].shape == (5, 8)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_on_cuda_batches_wait_pinned_on_the_host_and_arrive_one_at_a_time() -> None:
    net = make_net("mlp")
    X, y = make_data(n=12)
    obj = Objective(net, (X, y), batch_size=5, device="cuda")
    assert all(b[0].is_pinned() and b[0].device.type == "cpu" for b in obj.batches.host)
    assert obj.batches[0][0].device.type == "cuda"
    expected = Objective(net, (X, y), batch_size=5).value()
    torch.testing.assert_close(obj.value().cpu(), expected)
