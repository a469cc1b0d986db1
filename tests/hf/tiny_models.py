"""Tiny attention models for the second-order tests (CPU, seconds), and a hand-made reference.

The reference Hessian-vector product is written here from scratch: the model's
parameters themselves, the math attention kernel forced by hand with
:func:`torch.nn.attention.sdpa_kernel`, and two :func:`torch.autograd.grad` calls, as
the issue's "with the math attention backend forced by hand, everything works".
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.attention import SDPBackend, sdpa_kernel

VOCAB, SEQ = 23, 6


class SdpaBlock(nn.Module):
    """One attention head written with F.scaled_dot_product_attention, then a classifier."""

    def __init__(self, dim: int = 4, classes: int = 3) -> None:
        super().__init__()
        self.qkv = nn.Linear(dim, 3 * dim)
        self.out = nn.Linear(dim, classes)

    def forward(self, x: Tensor) -> Tensor:
        q, k, v = self.qkv(x).unsqueeze(1).chunk(3, dim=-1)
        h = F.scaled_dot_product_attention(q, k, v, is_causal=True).squeeze(1)
        return self.out(h.mean(1))


class MhaClassifier(nn.Module):
    """nn.MultiheadAttention without attention weights (its SDPA path), then a classifier."""

    def __init__(self, dim: int = 4, need_weights: bool = False) -> None:
        super().__init__()
        self.attn = nn.MultiheadAttention(dim, 2, batch_first=True)
        self.head = nn.Linear(dim, 3)
        self.need_weights = need_weights

    def forward(self, x: Tensor) -> Tensor:
        h, _ = self.attn(x, x, x, need_weights=self.need_weights)
        return self.head(h.mean(1))


class EncoderClassifier(nn.Module):
    """nn.TransformerEncoder with default settings (dropout 0.1, eval fast path)."""

    def __init__(self, dim: int = 4) -> None:
        super().__init__()
        layer = nn.TransformerEncoderLayer(dim, 2, dim_feedforward=8, batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, num_layers=1)
        self.head = nn.Linear(dim, 3)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.encoder(x).mean(1))


class DecoderClassifier(nn.Module):
    """nn.TransformerDecoder attending to its own input as memory."""

    def __init__(self, dim: int = 4) -> None:
        super().__init__()
        layer = nn.TransformerDecoderLayer(dim, 2, dim_feedforward=8, batch_first=True)
        self.decoder = nn.TransformerDecoder(layer, num_layers=1)
        self.head = nn.Linear(dim, 3)

    def forward(self, x: Tensor) -> Tensor:
        mask = nn.Transformer.generate_square_subsequent_mask(x.shape[1], dtype=x.dtype)
        return self.head(self.decoder(x, x, tgt_mask=mask).mean(1))


TORCH_MODELS: dict[str, Callable[[], nn.Module]] = {
    "sdpa": SdpaBlock,
    "mha": MhaClassifier,
    "encoder": EncoderClassifier,
    "decoder": DecoderClassifier,
}


def torch_model(kind: str, dtype: torch.dtype) -> nn.Module:
    torch.manual_seed(0)
    return TORCH_MODELS[kind]().to(dtype).eval()


def sequence_data(dtype: torch.dtype, n: int = 6) -> tuple[Tensor, Tensor]:
    gen = torch.Generator().manual_seed(1)
    return torch.randn(n, 5, 4, generator=gen, dtype=dtype), torch.randint(
        0, 3, (n,), generator=gen
    )


def tiny_gpt2(attn: str = "sdpa") -> nn.Module:
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    config = GPT2Config(
        vocab_size=VOCAB,
        n_positions=16,
        n_embd=8,
        n_layer=1,
        n_head=2,
        bos_token_id=0,
        eos_token_id=0,
        attn_implementation=attn,
    )
    return GPT2LMHeadModel(config).eval()


def tiny_bert(attn: str = "sdpa") -> nn.Module:
    from transformers import BertConfig, BertForSequenceClassification

    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=VOCAB,
        hidden_size=8,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=16,
        max_position_embeddings=16,
        num_labels=3,
        attn_implementation=attn,
    )
    return BertForSequenceClassification(config).eval()


def token_batches(labels: bool = False, classes: int | None = None) -> list[dict[str, Tensor]]:
    """Two padded batches of different lengths (the second right-padded)."""
    gen = torch.Generator().manual_seed(2)
    a = torch.randint(1, VOCAB, (2, SEQ), generator=gen)
    b = torch.randint(1, VOCAB, (3, SEQ - 2), generator=gen)
    mask_b = torch.ones_like(b)
    mask_b[0, -2:] = 0
    batches = [
        {"input_ids": a, "attention_mask": torch.ones_like(a)},
        {"input_ids": b, "attention_mask": mask_b},
    ]
    if classes is not None:
        for batch in batches:
            n = batch["input_ids"].shape[0]
            batch["labels"] = torch.randint(0, classes, (n,), generator=gen)
    return batches


def reference_hvp(model: nn.Module, loss: Callable[[], Tensor], v: Tensor) -> Tensor:
    """H v of ``loss()`` by double backward through the model's own parameters, math kernel."""
    params = [p for p in model.parameters() if p.requires_grad]
    parts = torch.split(v, [p.numel() for p in params])
    with sdpa_kernel([SDPBackend.MATH]):
        grads = torch.autograd.grad(loss(), params, create_graph=True)
        hv = torch.autograd.grad(
            grads,
            params,
            grad_outputs=[q.reshape(p.shape) for q, p in zip(parts, params, strict=True)],
            allow_unused=True,
        )
    return torch.cat(
        [
            (torch.zeros_like(p) if h is None else h).reshape(-1)
            for h, p in zip(hv, params, strict=True)
        ]
    )


def weighted(losses: list[tuple[float, Callable[[], Tensor]]]) -> Callable[[], Tensor]:
    def total() -> Tensor:
        out: Any = 0
        for w, fn in losses:
            out = out + w * fn()
        return out  # type: ignore[no-any-return]

    return total
