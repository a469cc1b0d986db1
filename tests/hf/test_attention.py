"""Second-order passes through fused attention (issue 16 item 1).

PyTorch's fused attention kernels have no double backward and no forward-mode AD, so
every Hessian product through ``F.scaled_dot_product_attention`` used to fail. The
objective now runs second-order passes with the math kernel: the products equal a
reference computed with the math kernel forced by hand, for both product strategies,
in float32 and float64, for torch's attention modules and tiny Hugging Face models.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

import flatness as fl
from flatness.curvature.attention import SecondOrderError, explain_second_order_failure
from flatness.curvature.hessian import HessianOperator
from flatness.curvature.objective import Objective
from flatness.losses import causal_lm_loss, sequence_classification_loss
from tests.hf.tiny_models import (
    TORCH_MODELS,
    reference_hvp,
    sequence_data,
    tiny_bert,
    tiny_gpt2,
    token_batches,
    torch_model,
)

STRATEGIES = ["double_backward", "forward_over_reverse", "auto"]
TOL = {torch.float32: {"rtol": 1e-4, "atol": 1e-5}, torch.float64: {"rtol": 1e-9, "atol": 1e-11}}


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("kind", sorted(TORCH_MODELS))
def test_torch_attention_products_equal_the_math_kernel_by_hand(
    kind: str, dtype: torch.dtype
) -> None:
    net = torch_model(kind, dtype)
    X, y = sequence_data(dtype)
    obj = Objective(net, (X, y), batch_size=4)
    v = torch.randn(obj.dim, generator=torch.Generator().manual_seed(3), dtype=dtype)
    expected = reference_hvp(
        net,
        lambda: (
            (4 * F.cross_entropy(net(X[:4]), y[:4]) + 2 * F.cross_entropy(net(X[4:]), y[4:])) / 6
        ),
        v,
    )
    for strategy in STRATEGIES:
        with HessianOperator(obj, strategy=strategy) as H:  # type: ignore[arg-type]
            torch.testing.assert_close(H.matvec(v), expected, **TOL[dtype])
            torch.testing.assert_close(
                H.matmat(torch.stack([v, 2 * v], 1))[:, 1], 2 * expected, **TOL[dtype]
            )
            assert H.numerics.get("attention") == "math"
    torch.testing.assert_close(obj.hvp(v), expected, **TOL[dtype])


def test_top_eigenvalue_of_an_encoder_equals_the_dense_math_kernel_hessian() -> None:
    net = torch_model("encoder", torch.float64)
    X, y = sequence_data(torch.float64)
    obj = Objective(net, (X, y))
    eye = torch.eye(obj.dim, dtype=torch.float64)
    dense = torch.stack([reference_hvp(net, lambda: F.cross_entropy(net(X), y), e) for e in eye])
    res = fl.hessian_eigenvalues(obj, k=1, tol=1e-8, seed=0)
    assert res.converged
    assert res.eigenvalues[0] == pytest.approx(float(torch.linalg.eigvalsh(dense)[-1]), rel=1e-7)
    assert res.choices["attention"] == "math"


def test_first_order_work_keeps_the_fused_kernels() -> None:
    """The value runs as the model runs by itself (eval fast path), not through math."""
    net = torch_model("encoder", torch.float32)
    X, y = sequence_data(torch.float32)
    with torch.no_grad():
        plain = F.cross_entropy(net(X), y)
    assert torch.equal(Objective(net, (X, y)).value(), plain)


def test_models_without_sdpa_record_no_attention_kernel() -> None:
    net = torch_model("mha", torch.float64)
    net.need_weights = True  # type: ignore[assignment]  # MHA then computes attention by hand
    obj = Objective(net, sequence_data(torch.float64))
    with HessianOperator(obj, strategy="double_backward") as H:
        H.matvec(torch.ones(obj.dim, dtype=torch.float64))
        assert "attention" not in H.numerics
    mlp = nn.Sequential(nn.Flatten(), nn.Linear(20, 3)).double()
    assert Objective(mlp, sequence_data(torch.float64)).attention is None


# ------------------------------------------------------------------ Hugging Face
transformers = pytest.importorskip("transformers")


def _hf_reference(model: nn.Module, loss_fn, batches) -> Tensor:  # type: ignore[no-untyped-def]
    weights = (
        [float(causal_lm_loss.weight(b)) for b in batches]
        if loss_fn is causal_lm_loss
        else [float(b["input_ids"].shape[0]) for b in batches]
    )
    total = sum(weights)

    def loss() -> Tensor:
        return sum(  # type: ignore[return-value]
            w / total * loss_fn(lambda **kw: model(**kw), b)
            for w, b in zip(weights, batches, strict=True)
        )

    return loss  # type: ignore[return-value]


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
@pytest.mark.parametrize("which", ["gpt2", "bert"])
def test_hugging_face_products_equal_the_math_kernel_by_hand(which: str, attn: str) -> None:
    if which == "gpt2":
        model, loss_fn, batches = tiny_gpt2(attn), causal_lm_loss, token_batches()
    else:
        model, loss_fn = tiny_bert(attn), sequence_classification_loss
        batches = token_batches(classes=3)
    obj = Objective(model, batches, loss_fn=None, batch_loss=loss_fn)
    v = torch.randn(obj.dim, generator=torch.Generator().manual_seed(4))
    expected = reference_hvp(model, _hf_reference(model, loss_fn, batches), v)
    for strategy in ("double_backward", "forward_over_reverse"):
        with HessianOperator(obj, strategy=strategy) as H:
            torch.testing.assert_close(H.matvec(v), expected, rtol=1e-4, atol=1e-5)
            assert H.numerics.get("attention") == ("math" if attn == "sdpa" else None)


def test_gpt2_top_eigenvalue_and_trace_run_with_sdpa() -> None:
    obj = Objective(tiny_gpt2("sdpa"), token_batches(), loss_fn=None, batch_loss=causal_lm_loss)
    eig = fl.hessian_eigenvalues(obj, k=1, tol=1e-3, seed=0)
    assert eig.converged and eig.choices["attention"] == "math"
    trace = fl.hessian_trace(obj, method="hutchpp", budget=12, seed=0)
    assert torch.isfinite(torch.tensor(trace.estimate))


# ------------------------------------------------------------ what cannot work
class FusedByName(nn.Module):
    """Calls the host's flash kernel by its ATen name: no routing can reach it."""

    def __init__(self) -> None:
        super().__init__()
        self.qkv = nn.Linear(4, 12)
        self.head = nn.Linear(4, 3)

    def forward(self, x: Tensor) -> Tensor:
        q, k, v = self.qkv(x).unsqueeze(1).chunk(3, dim=-1)
        out = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu(q, k, v)[0]
        return self.head(out.squeeze(1).mean(1))


@pytest.mark.parametrize(
    ("strategy", "words"),
    [
        ("double_backward", ["double backward", "_scaled_dot_product_flash_attention_for_cpu"]),
        ("forward_over_reverse", ["forward-mode AD", 'strategy="double_backward"']),
    ],
)
def test_a_fused_kernel_called_by_name_fails_with_one_clear_error(
    strategy: str, words: list[str]
) -> None:
    torch.manual_seed(0)
    obj = Objective(FusedByName().eval(), sequence_data(torch.float32))
    with HessianOperator(obj, strategy=strategy) as H:  # type: ignore[arg-type]
        with pytest.raises(SecondOrderError) as info:
            H.matvec(torch.ones(obj.dim))
    message = str(info.value)
    for word in [*words, "eager", "scaled_dot_product_attention"]:
        assert word in message


def test_other_errors_pass_unchanged() -> None:
    assert explain_second_order_failure(RuntimeError("shape mismatch"), strategy="auto") is None
