"""The benchmarks' model zoo: networks people train today, built by hand, with their data.

No torchvision (its CPU build breaks torch imports here) and no downloads: every
network is built from code or from a ``transformers`` config, every data set is random
and seeded.

* :func:`resnet18` — ResNet-18 for 32×32 inputs (He et al. 2016, "Deep Residual
  Learning for Image Recognition", CVPR; the CIFAR variant: a 3×3 stem and no max
  pooling), 11.2 M parameters with 10 classes;
* :class:`TransformerClassifier` — ``nn.TransformerEncoder`` with default settings
  (Vaswani et al. 2017) over token embeddings, mean-pooled, and a linear head;
* :func:`tiny_gpt2` — a Hugging Face ``GPT2LMHeadModel`` (Radford et al. 2019) built from
  a small config, wrapped by :class:`NextTokenLogits` so that ``(tokens, next tokens)``
  pairs and :func:`torch.nn.functional.cross_entropy` give the token-mean causal-LM loss;
* :class:`LSTMClassifier` — an LSTM (Hochreiter & Schmidhuber 1997) over token
  embeddings, classified from the last hidden state;
* the MLPs of :mod:`flatness.zoo` (the BatchNorm MLP and a 3.4k-parameter MLP).

:data:`CASES` names each benchmark model with its data (:class:`ModelCase`), at a CPU
size and a quick size for smoke tests. Both ``benchmark_curvature.py`` and
``benchmark_zoo.py`` use them, and so does ``gpu_check.py``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from flatness.zoo import build_network
from flatness.zoo.networks import seeded

__all__ = [
    "CASES",
    "BasicBlock",
    "LSTMClassifier",
    "ModelCase",
    "NextTokenLogits",
    "ResNet",
    "TransformerClassifier",
    "case",
    "fit",
    "mnist1d",
    "prepare",
    "random_images",
    "random_tokens",
    "resnet18",
    "tiny_gpt2",
]


# ------------------------------------------------------------------------ ResNet-18
class BasicBlock(nn.Module):
    """Two 3×3 convolutions with BatchNorm and a residual connection (He et al. 2016)."""

    def __init__(self, in_channels: int, channels: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, channels, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_channels != channels:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, channels, 1, stride, bias=False), nn.BatchNorm2d(channels)
            )

    def forward(self, x: Tensor) -> Tensor:
        """The block's output, of shape ``(N, channels, H / stride, W / stride)``."""
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class ResNet(nn.Module):
    """A ResNet for 32×32 images: a 3×3 stem, four stages of basic blocks, a linear head.

    Args:
        blocks: Basic blocks per stage (``(2, 2, 2, 2)`` is ResNet-18).
        num_classes: Number of outputs.
        width: Channels of the first stage (doubled at each later stage).
        in_channels: Channels of the input images.
    """

    def __init__(
        self,
        blocks: tuple[int, ...] = (2, 2, 2, 2),
        *,
        num_classes: int = 10,
        width: int = 64,
        in_channels: int = 3,
    ) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, width, 3, 1, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU()
        )
        stages: list[nn.Module] = []
        channels = width
        for i, n in enumerate(blocks):
            out = width * 2**i
            for j in range(n):
                stages.append(BasicBlock(channels, out, 2 if i > 0 and j == 0 else 1))
                channels = out
        self.stages = nn.Sequential(*stages)
        self.head = nn.Linear(channels, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        """Class scores (logits) of shape ``(N, num_classes)``."""
        h = self.stages(self.stem(x))
        return self.head(torch.flatten(F.adaptive_avg_pool2d(h, 1), 1))  # type: ignore[no-any-return]


def resnet18(*, num_classes: int = 10, width: int = 64, seed: int = 0) -> ResNet:
    """ResNet-18 for 32×32 images (11 173 962 parameters at width 64, 10 classes).

    Returns:
        The network, initialised from ``seed``, in evaluation mode.
    """
    with seeded(seed):
        return ResNet((2, 2, 2, 2), num_classes=num_classes, width=width).eval()


# ----------------------------------------------------------------------- sequences
class TransformerClassifier(nn.Module):
    """``nn.TransformerEncoder`` (default layer settings) over token embeddings.

    Args:
        vocab: Vocabulary size.
        d_model: Embedding width.
        nhead: Attention heads.
        layers: Encoder layers.
        num_classes: Number of outputs.
        max_len: Longest sequence (learned position embeddings).
    """

    def __init__(
        self,
        *,
        vocab: int = 256,
        d_model: int = 64,
        nhead: int = 4,
        layers: int = 2,
        num_classes: int = 10,
        max_len: int = 64,
    ) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, d_model)
        self.position = nn.Parameter(torch.randn(max_len, d_model) * 0.02)
        layer = nn.TransformerEncoderLayer(
            d_model, nhead, dim_feedforward=4 * d_model, batch_first=True
        )
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.head = nn.Linear(d_model, num_classes)

    def forward(self, tokens: Tensor) -> Tensor:
        """Class scores (logits) of shape ``(N, num_classes)`` for ``(N, T)`` tokens."""
        h = self.embed(tokens) + self.position[: tokens.shape[1]]
        return self.head(self.encoder(h).mean(dim=1))  # type: ignore[no-any-return]


class LSTMClassifier(nn.Module):
    """An LSTM over token embeddings, classified from its last hidden state.

    Args:
        vocab: Vocabulary size.
        embed: Embedding width.
        hidden: LSTM hidden units.
        num_classes: Number of outputs.
    """

    def __init__(
        self, *, vocab: int = 256, embed: int = 32, hidden: int = 64, num_classes: int = 10
    ) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, embed)
        self.lstm = nn.LSTM(embed, hidden, batch_first=True)
        self.head = nn.Linear(hidden, num_classes)

    def forward(self, tokens: Tensor) -> Tensor:
        """Class scores (logits) of shape ``(N, num_classes)`` for ``(N, T)`` tokens."""
        _, (h, _) = self.lstm(self.embed(tokens))
        return self.head(h[-1])  # type: ignore[no-any-return]


class NextTokenLogits(nn.Module):
    """A causal language model seen as a classifier of the next token at each position.

    ``forward(tokens)`` returns the logits of positions ``0 … T−2`` as ``(N, V, T−1)``, so
    that ``F.cross_entropy(out, tokens[:, 1:])`` is the token-mean causal-LM loss (all
    sequences have the same length, so the example mean is the token mean). This is the
    form PyHessian can take (``criterion(model(x), y)``); Hugging Face's own
    ``labels=`` loss gives the same value.

    Args:
        lm: A model whose output has ``.logits`` of shape ``(N, T, V)``.
    """

    def __init__(self, lm: nn.Module) -> None:
        super().__init__()
        self.lm = lm

    def forward(self, tokens: Tensor) -> Tensor:
        """Logits of shape ``(N, V, T - 1)``."""
        logits = self.lm(input_ids=tokens).logits
        return logits[:, :-1].transpose(1, 2)  # type: ignore[no-any-return]


def tiny_gpt2(
    *,
    vocab: int = 256,
    n_embd: int = 64,
    n_layer: int = 2,
    n_head: int = 2,
    n_positions: int = 64,
    attn_implementation: str = "sdpa",
    seed: int = 0,
) -> NextTokenLogits:
    """A small ``GPT2LMHeadModel`` from a config (no download), as next-token logits.

    Returns:
        :class:`NextTokenLogits` around the model, initialised from ``seed``, in
        evaluation mode (dropout off).
    """
    from transformers import GPT2Config, GPT2LMHeadModel

    config = GPT2Config(
        vocab_size=vocab,
        n_embd=n_embd,
        n_layer=n_layer,
        n_head=n_head,
        n_positions=n_positions,
        bos_token_id=0,
        eos_token_id=0,
    )
    config._attn_implementation = attn_implementation
    with seeded(seed):
        return NextTokenLogits(GPT2LMHeadModel(config)).eval()


# ---------------------------------------------------------------------------- data
def random_images(
    n: int, *, size: int = 32, channels: int = 3, classes: int = 10, seed: int = 0
) -> tuple[Tensor, Tensor]:
    """``n`` standard-normal images and uniform labels, seeded.

    Returns:
        ``(images (n, channels, size, size), labels (n,))``.
    """
    g = torch.Generator().manual_seed(seed)
    return (
        torch.randn(n, channels, size, size, generator=g),
        torch.randint(0, classes, (n,), generator=g),
    )


def random_tokens(
    n: int, *, length: int = 32, vocab: int = 256, classes: int | None = 10, seed: int = 0
) -> tuple[Tensor, Tensor]:
    """``n`` sequences of uniform random tokens with class labels or next tokens.

    Args:
        n: Number of sequences.
        length: Tokens per sequence.
        vocab: Vocabulary size.
        classes: Number of classes of the labels; ``None`` for language modelling, where
            the targets are the next tokens ``tokens[:, 1:]``.
        seed: The seed.

    Returns:
        ``(tokens (n, length), labels (n,))`` or ``(tokens, tokens[:, 1:])``.
    """
    g = torch.Generator().manual_seed(seed)
    tokens = torch.randint(0, vocab, (n, length), generator=g)
    if classes is None:
        return tokens, tokens[:, 1:].clone()
    return tokens, torch.randint(0, classes, (n,), generator=g)


def mnist1d(n: int, *, seed: int = 0) -> tuple[Tensor, Tensor]:
    """The first ``n`` MNIST-1D training examples (generated offline by flatness.zoo).

    Returns:
        ``(signals (n, 40), labels (n,))``.
    """
    from flatness.zoo import load_dataset

    X, y = load_dataset("mnist1d", n_train=n, n_test=1000, seed=seed).train
    return X, y


# ------------------------------------------------------------------------ training
def fit(model: nn.Module, X: Tensor, y: Tensor, *, steps: int, lr: float = 0.05) -> nn.Module:
    """A few full-batch SGD steps (momentum 0.9), then BatchNorm statistics recomputed.

    At a random initialisation the Hessian's most negative eigenvalue can be as large in
    magnitude as the largest, so power iteration (PyHessian) may not settle in its 100
    iterations and answers another eigenvalue; after a few steps λ_max dominates, as in
    the trained networks these tools are used on. The running statistics are then
    recomputed as exact averages over ``X`` (momentum ``None``), so evaluation mode
    matches the trained state (no stale statistics, see issue 16).

    Returns:
        ``model``, trained in place, in evaluation mode.
    """
    if steps > 0:
        model.train()
        opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
        with seeded(0):  # dropout draws
            for _ in range(steps):
                opt.zero_grad()
                F.cross_entropy(model(X), y).backward()
                opt.step()
        norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
        for m in norms:
            m.reset_running_stats()
            m.momentum = None  # a cumulative average: exact over the passes below
        if norms:
            with torch.no_grad():
                model(X)
    return model.eval()


def prepare(name: str, n: int, *, quick: bool) -> tuple[nn.Module, Tensor, Tensor]:
    """A case's model fitted to its data as :attr:`ModelCase.steps` says, and the data.

    Returns:
        ``(model in evaluation mode, inputs, targets)``.
    """
    spec = case(name)
    model, (X, y) = spec.build(quick), spec.data(n)
    return fit(model, X, y, steps=spec.steps // 4 if quick else spec.steps), X, y


# --------------------------------------------------------------------------- cases
@dataclass(frozen=True)
class ModelCase:
    """One benchmark model: how to build it and its data, at a CPU size and a quick one.

    Attributes:
        name: The label in reports.
        build: ``build(quick) -> model`` in evaluation mode (quick: a narrower one).
        data: ``data(n) -> (inputs, targets)`` of ``n`` examples for ``F.cross_entropy``.
        n: Examples at the CPU size.
        n_quick: Examples at the quick size.
        about: One line for the report: architecture and data.
        steps: Full-batch SGD steps :func:`prepare` takes before the analysis (a quarter
            at the quick size; the MLPs are trained by the benchmarks themselves).
    """

    name: str
    build: Callable[[bool], nn.Module]
    data: Callable[[int], tuple[Tensor, Tensor]]
    n: int
    n_quick: int
    about: str
    steps: int = 0


def _mlp(name: str, width: int, quick_width: int) -> Callable[[bool], nn.Module]:
    def build(quick: bool) -> nn.Module:
        w = quick_width if quick else width
        return build_network(name, input_shape=[40], num_classes=10, seed=0, width=w).eval()

    return build


CASES: dict[str, ModelCase] = {
    case.name: case
    for case in (
        ModelCase(
            "MLP 3.4k",
            _mlp("tiny_mlp", 38, 8),
            mnist1d,
            4000,
            500,
            "40-38-38-10 ReLU MLP (3,430 parameters), MNIST-1D",
        ),
        ModelCase(
            "BN MLP",
            _mlp("mlp_bn", 256, 32),
            mnist1d,
            4000,
            500,
            "F1-style 40-256-256-256-10 MLP with BatchNorm (146,186 parameters), MNIST-1D",
        ),
        ModelCase(
            "ResNet-18",
            lambda quick: resnet18(width=8 if quick else 64),
            random_images,
            256,
            16,
            "ResNet-18 for 32×32 inputs (11.2 M parameters), random 32×32 images, 10 classes",
            20,
        ),
        ModelCase(
            "Transformer",
            lambda quick: _seeded_eval(lambda: TransformerClassifier(d_model=16 if quick else 64)),
            lambda n: random_tokens(n, length=32),
            256,
            16,
            "nn.TransformerEncoder, 2 layers, d_model 64, 4 heads (default settings), "
            "random sequences of 32 tokens, 10 classes",
            20,
        ),
        ModelCase(
            "GPT-2 (tiny)",
            lambda quick: tiny_gpt2(n_embd=16 if quick else 64),
            lambda n: random_tokens(n, length=32, classes=None),
            128,
            8,
            "Hugging Face GPT2LMHeadModel from a config (2 layers, 64 wide, 2 heads, "
            "SDPA attention), random sequences of 32 tokens, next-token loss",
            20,
        ),
        ModelCase(
            "LSTM",
            lambda quick: _seeded_eval(lambda: LSTMClassifier(hidden=16 if quick else 64)),
            lambda n: random_tokens(n, length=32),
            256,
            16,
            "LSTM classifier (embedding 32, 64 hidden units), random sequences of 32 "
            "tokens, 10 classes",
            20,
        ),
    )
}


def _seeded_eval(make: Callable[[], nn.Module], seed: int = 0) -> nn.Module:
    with seeded(seed):
        return make().eval()


def case(name: str) -> ModelCase:
    """The benchmark model called ``name``.

    Returns:
        Its :class:`ModelCase`.

    Raises:
        KeyError: For an unknown name, listing the known ones.
    """
    if name not in CASES:
        raise KeyError(f"unknown benchmark model {name!r}; known: {sorted(CASES)}")
    return CASES[name]
