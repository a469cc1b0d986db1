"""Hugging Face models as first-class citizens (issue 16 item 2): outputs, dict batches,
token-mean language-model losses, the exact trace refused, the same loss everywhere."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import Tensor

import flatness as fl
from flatness.curvature.objective import Objective
from flatness.evaluation import mean_loss_and_accuracy
from flatness.losses import causal_lm_loss, sequence_classification_loss
from tests.hf.tiny_models import tiny_bert, tiny_gpt2, token_batches

pytest.importorskip("transformers")


def _token_mean_by_hand(model: torch.nn.Module, batches: list[dict[str, Tensor]]) -> Tensor:
    """The model's next-token loss summed over every real token, over their count."""
    total, count = torch.zeros(()), 0
    with torch.no_grad():
        for b in batches:
            logits = model(input_ids=b["input_ids"], attention_mask=b["attention_mask"]).logits
            for row in range(b["input_ids"].shape[0]):
                n = int(b["attention_mask"][row].sum())  # right padding: the first n are real
                scores, labels = logits[row, : n - 1], b["input_ids"][row, 1:n]
                total = total + F.cross_entropy(scores, labels, reduction="sum")
                count += n - 1
    return total / count


def test_causal_lm_objective_is_the_token_mean_over_all_batches() -> None:
    model, batches = tiny_gpt2(), token_batches()
    obj = Objective(model, batches, loss_fn=None, batch_loss=causal_lm_loss)
    assert obj.batch_weights == (2 * 5, 3 * 3 - 2)  # padding left out
    assert obj.settings["weighted_by"] == "tokens"
    torch.testing.assert_close(obj.value(), _token_mean_by_hand(model, batches))


def test_causal_lm_value_gradient_and_hvp_are_independent_of_the_batching() -> None:
    model, batches = tiny_gpt2(), token_batches()
    singles = []  # the same sequences, one per batch, without padding
    for b in batches:
        for row in range(b["input_ids"].shape[0]):
            n = int(b["attention_mask"][row].sum())
            ids = b["input_ids"][row : row + 1, :n]
            singles.append({"input_ids": ids, "attention_mask": torch.ones_like(ids)})
    padded = Objective(model, batches, loss_fn=None, batch_loss=causal_lm_loss)
    single = Objective(model, singles, loss_fn=None, batch_loss=causal_lm_loss)
    v = torch.randn(padded.dim, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(padded.value(), single.value(), rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(padded.gradient(), single.gradient(), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(padded.hvp(v), single.hvp(v), rtol=1e-4, atol=1e-5)


def test_token_ids_alone_are_a_causal_lm_batch_and_labels_are_respected() -> None:
    model = tiny_gpt2()
    ids = token_batches()[0]["input_ids"]
    labels = ids.clone()
    labels[:, :3] = -100  # only the last tokens count
    plain = Objective(model, [ids], loss_fn=None, batch_loss=causal_lm_loss)
    masked = Objective(
        model, [{"input_ids": ids, "labels": labels}], None, batch_loss=causal_lm_loss
    )
    assert plain.batch_weights == (10,) and masked.batch_weights == (2 * 3,)
    with torch.no_grad():
        own = model(input_ids=ids, labels=labels).loss  # Hugging Face's own shifted loss
    torch.testing.assert_close(masked.value(), own)


def test_model_outputs_and_dict_batches_with_the_default_loss() -> None:
    model = tiny_bert()
    batches = token_batches(classes=3)
    with torch.no_grad():
        outs = [model(**b) for b in batches]  # the model's own loss from its labels
    n = [b["input_ids"].shape[0] for b in batches]
    own = sum(k / sum(n) * o.loss for k, o in zip(n, outs, strict=True))
    by_logits = Objective(model, batches)  # F.cross_entropy of .logits and 'labels'
    by_model = Objective(model, batches, loss_fn=None)  # the model's .loss
    by_helper = Objective(model, batches, None, batch_loss=sequence_classification_loss)
    for obj in (by_logits, by_model, by_helper):
        torch.testing.assert_close(obj.value(), own)
    pairs = [(b["input_ids"], b["labels"]) for b in batches]  # ModelOutput from a pair batch
    torch.testing.assert_close(Objective(model, pairs).value(), own)
    loss, acc = mean_loss_and_accuracy(model, batches, F.cross_entropy)
    expected_acc = sum(
        int((o.logits.argmax(-1) == b["labels"]).sum()) for o, b in zip(outs, batches, strict=True)
    )
    torch.testing.assert_close(loss, own)
    assert acc == expected_acc / sum(n)


def test_language_model_with_the_classification_default_says_what_to_use() -> None:
    batches = [{**b, "labels": b["input_ids"]} for b in token_batches()]
    with pytest.raises(ValueError, match="causal_lm_loss"):
        Objective(tiny_gpt2(), batches).value()


def test_exact_trace_is_refused_with_the_reason() -> None:
    lm = Objective(tiny_gpt2(), token_batches(), loss_fn=None, batch_loss=causal_lm_loss)
    with pytest.raises(
        ValueError, match=r"exact trace cannot be taken.*CausalLMLoss.*tokens.*hutchpp"
    ):
        fl.hessian_trace(lm, method="exact")
    cls = Objective(tiny_bert(), token_batches(classes=3))
    with pytest.raises(ValueError, match=r"not \(inputs, class labels\) pairs.*input_ids"):
        fl.exact_hessian_trace(cls, check=False)


def test_keskar_sharpness_and_a_parametric_curve_take_the_same_loss() -> None:
    batches = token_batches()
    start, end = tiny_gpt2(), tiny_gpt2()
    with torch.no_grad():
        for p in end.parameters():
            p.add_(0.05 * torch.randn_like(p))
    obj = Objective(start, batches, loss_fn=None, batch_loss=causal_lm_loss)
    sharp = fl.keskar_sharpness(obj, eps=1e-3, maxiter=2, seed=0)
    assert np.isfinite(sharp.value) and sharp.value >= 0
    curve = fl.parametric_plot(
        start, end, train=batches, alphas=[0.0, 0.5, 1.0], loss_fn=None, batch_loss=causal_lm_loss
    )
    assert curve.train_loss[0] == pytest.approx(float(obj.value()), rel=1e-6)
    end_value = Objective(end, batches, loss_fn=None, batch_loss=causal_lm_loss).value()
    assert curve.train_loss[2] == pytest.approx(float(end_value), rel=1e-6)
    assert curve.train_accuracy is None  # per-token scores are not class scores


@pytest.mark.parametrize(
    ("num_labels", "problem", "labels"),
    [
        (1, "regression", lambda n: torch.randn(n)),
        (3, "multi_label_classification", lambda n: torch.randint(0, 2, (n, 3)).float()),
        (3, "single_label_classification", lambda n: torch.randint(0, 3, (n,))),
    ],
)
def test_sequence_classification_loss_is_the_models_own_for_each_problem_type(
    num_labels: int, problem: str, labels
) -> None:  # type: ignore[no-untyped-def]
    from transformers import BertConfig, BertForSequenceClassification

    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=23,
        hidden_size=8,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=16,
        max_position_embeddings=16,
        num_labels=num_labels,
        problem_type=problem,
    )
    model = BertForSequenceClassification(config).eval()
    batch = {**token_batches()[0], "labels": labels(2)}
    with torch.no_grad():
        own = model(**batch).loss
        ours = sequence_classification_loss(lambda **kw: model(**kw), batch)
    torch.testing.assert_close(ours, own)
