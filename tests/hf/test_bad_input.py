"""Bad input gets one clear error naming the setting (issue 16, "Bad input")."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from flatness.curvature.objective import Objective
from flatness.losses import causal_lm_loss, sequence_classification_loss
from tests.conftest import make_data, make_net


def test_a_loss_that_is_not_a_scalar_is_named() -> None:
    def per_example(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(out, y, reduction="none")

    obj = Objective(make_net("mlp"), make_data(n=6), loss_fn=per_example)
    with pytest.raises(ValueError, match=r"per_example\) returned \(6,\).*0-d tensor.*mean"):
        obj.value()


@pytest.mark.parametrize(
    ("batch", "loss", "error", "words"),
    [
        ((torch.zeros(2, 8), torch.zeros(2), torch.zeros(2)), None, ValueError, "tuple of 3 items"),
        ({"x": torch.zeros(2, 8)}, None, ValueError, r"keys \['x'\].*no 'labels'"),
        (torch.zeros(2, 8), causal_lm_loss, TypeError, r"token ids.*float32 \(2, 8\)"),
        ((torch.zeros(2, 8), torch.zeros(2)), sequence_classification_loss, TypeError, "tuple"),
    ],
)
def test_a_batch_the_loss_cannot_take_names_its_form(
    batch: object, loss: object, error: type[Exception], words: str
) -> None:
    with pytest.raises(error, match=words):  # at construction (token counts) or first use
        Objective(
            make_net("mlp").float(),
            [batch],
            loss_fn=F.cross_entropy,
            batch_loss=loss,  # type: ignore[arg-type]
        ).value()


def test_an_output_without_logits_is_named() -> None:
    class Pair(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lin = nn.Linear(8, 3)

        def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            return self.lin(x), x

    obj = Objective(Pair(), (torch.randn(4, 8), torch.randint(0, 3, (4,))))
    with pytest.raises(TypeError, match=r"returned a tuple.*no \.logits"):
        obj.value()


def test_a_parameter_group_that_matches_nothing_lists_the_names() -> None:
    with pytest.raises(ValueError, match=r"'layers\.9' matches no trainable.*known parameters"):
        Objective(make_net("mlp"), make_data(), params="layers.9")
