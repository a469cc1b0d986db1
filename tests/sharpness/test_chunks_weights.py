"""m-sharpness chunks weigh their parts as the objective weighs its batches.

A loss that declares batch weights (the tokens of a language model's loss) makes the
objective's mean a token mean; a chunk's mean must be one too, so the chunks of all
the examples (``m = N``) give exactly ``obj.value()``.
"""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch import nn

from flatness.curvature.objective import Objective
from flatness.sharpness import adaptive_sharpness
from flatness.sharpness.perturbations import chunk_value, example_chunks


class MaskedMean:
    """A per-token squared error averaged over the tokens the mask keeps."""

    weight_unit = "tokens"

    def __call__(self, model_fn: Any, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        out = model_fn(batch["x"]).squeeze(-1)  # (n, tokens)
        mask = batch["mask"]
        return ((out - batch["y"]) ** 2 * mask).sum() / mask.sum()

    def weight(self, batch: dict[str, torch.Tensor]) -> int:
        return int(batch["mask"].sum())


def _objective() -> Objective:
    torch.manual_seed(0)
    n, tokens = 7, 5
    mask = torch.zeros(n, tokens)
    for i in range(n):
        mask[i, : 1 + (3 * i) % tokens] = 1.0  # 1 to 5 tokens per example
    data = [
        {"x": torch.randn(n, tokens, 2)[s], "y": torch.randn(n, tokens)[s], "mask": mask[s]}
        for s in (slice(0, 3), slice(3, 7))
    ]
    net = nn.Linear(2, 1).double()
    return Objective(net, data, batch_loss=MaskedMean(), dtype=torch.float64)


def test_one_chunk_of_all_examples_is_the_token_mean() -> None:
    obj = _objective()
    assert obj.weighted_by == "tokens"
    (chunk,) = example_chunks(obj, obj.num_examples)
    assert float(chunk_value(obj, obj.theta0, chunk)) == pytest.approx(
        float(obj.value()), rel=1e-12
    )
    res = adaptive_sharpness(obj, rho=0.01, steps=1, m=obj.num_examples)
    assert res.loss == pytest.approx(float(obj.value()), rel=1e-12)


def test_chunk_weights_are_token_shares() -> None:
    obj = _objective()
    chunks = example_chunks(obj, 2)  # cut through the first batch of 3
    for chunk in chunks:
        assert sum(w for w, _ in chunk) == pytest.approx(1.0)
    first_tokens = [int(b["mask"].sum()) for _, b in chunks[1]]
    weights = [w for w, _ in chunks[1]]
    assert weights == pytest.approx([t / sum(first_tokens) for t in first_tokens])


def test_noise_scale_batches_weigh_tokens() -> None:
    from flatness.sharpness import gradient_noise_scale

    obj = _objective()
    res = gradient_noise_scale(obj, method="batches", groups=2)
    g = obj.gradient()
    assert res.grad_norm_sq_biased == pytest.approx(float(g @ g), rel=1e-10)
