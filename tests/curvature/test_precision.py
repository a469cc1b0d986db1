"""Low-precision checkpoints are analysed in float32 unless asked otherwise (issue 16 item 4)."""

from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn

from flatness.curvature.hessian import HessianOperator
from flatness.curvature.objective import Objective


def _net(dtype: torch.dtype) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(5, 7), nn.Tanh(), nn.Linear(7, 3)).to(dtype)


def _data() -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(1)
    return torch.randn(12, 5, generator=gen), torch.randint(0, 3, (12,), generator=gen)


@pytest.mark.parametrize("low", [torch.bfloat16, torch.float16])
def test_a_low_precision_model_is_analysed_in_float32_said_and_recorded(low: torch.dtype) -> None:
    net = _net(low)
    with pytest.warns(UserWarning, match="analysing it in float32"):
        obj = Objective(net, _data())
    assert obj.dtype == torch.float32
    assert obj.settings["dtype"] == "float32"
    assert obj.settings["model_dtype"] == str(low).replace("torch.", "")
    reference = Objective(_net(low).float(), _data())
    assert torch.equal(obj.value(), reference.value())
    assert next(net.parameters()).dtype == low  # the model is left as it was


def test_an_explicit_low_precision_dtype_warns_with_the_measured_error() -> None:
    net = _net(torch.float32)
    with pytest.warns(UserWarning, match=r"relative error of \d\.\d\de[-+]\d\d") as caught:
        obj = Objective(net, _data(), dtype=torch.bfloat16)
    assert obj.dtype == torch.bfloat16
    full = float(Objective(net, _data()).value())
    low = float(obj.value())
    assert obj.settings["precision_error"] == pytest.approx(abs(low - full) / abs(full), rel=1e-6)
    assert f"{obj.settings['precision_error']:.2e}" in str(caught[-1].message)
    with HessianOperator(obj, strategy="double_backward") as H:  # it computes, in bfloat16
        assert H.matvec(torch.ones(obj.dim)).dtype == torch.bfloat16


def test_full_precision_models_and_explicit_float_dtypes_say_nothing() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        obj = Objective(_net(torch.float32), _data())
        assert obj.settings["model_dtype"] == "float32" and "precision_error" not in obj.settings
        assert Objective(_net(torch.bfloat16), _data(), dtype=torch.float64).dtype == torch.float64
