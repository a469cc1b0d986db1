"""The loss of one batch: ``(x, y)`` pairs, dict batches, Hugging Face outputs, token means.

Every measure takes the mean loss of a batch the same way (the
:class:`~flatness.curvature.objective.Objective`, the parametric plots through
:func:`flatness.evaluation.mean_loss_and_accuracy`, every sharpness measure through
the Objective). Either a ``batch_loss(model_fn, batch)`` hook computes it, or
:func:`default_batch_loss` applies ``loss_fn(output, target)``:

- an ``(inputs, targets)`` batch: ``loss_fn(model(inputs), targets)``;
- a dict batch (the inputs of a Hugging Face model): ``model(**inputs)`` with the
  batch's ``labels`` as the targets, or, with ``loss_fn=None``, the model called with
  the whole batch and its own ``.loss`` (Hugging Face models compute it from
  ``labels``);
- a model output that is not a tensor (a Hugging Face ``ModelOutput``, a dict, any
  object with ``.logits``) contributes its logits (:func:`model_logits`).

Language-model losses are means over tokens, not examples. A loss hook may declare the
weight of a batch with a ``weight(batch) -> int`` method (:class:`WeightedBatchLoss`):
the Objective then weights each batch mean by it, so that :math:`f(\\theta)` is the
mean over every token of the data set whatever the batching. :data:`causal_lm_loss`
(next-token prediction: shifted, ``ignore_index=-100``, padding left out through the
attention mask) declares its tokens; :data:`sequence_classification_loss` is a mean
over examples, the Objective's default weighting.

This module imports nothing from the rest of the package, so every layer may use it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol, runtime_checkable

import torch  # noqa: F401  (doctests)
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "BatchLossFn",
    "CausalLMLoss",
    "LossFn",
    "SequenceClassificationLoss",
    "WeightedBatchLoss",
    "batch_weight",
    "causal_lm_loss",
    "default_batch_loss",
    "describe_batch",
    "model_logits",
    "sequence_classification_loss",
]

LossFn = Callable[[Tensor, Tensor], Tensor]
"""``loss_fn(output, target) -> mean loss`` (e.g. :func:`torch.nn.functional.cross_entropy`)."""

BatchLossFn = Callable[[Callable[..., Any], Any], Tensor]
"""``batch_loss(model_fn, batch) -> mean loss over the batch`` for batches that are not
``(x, y)``; ``model_fn`` calls the model with the parameters being evaluated."""


@runtime_checkable
class WeightedBatchLoss(Protocol):
    """A batch loss that says how much each batch weighs in the mean over the data.

    ``weight(batch)`` counts what the batch mean is taken over (the tokens that enter a
    language model's loss), so that batch means weighted by it give the mean over the
    whole data set.
    """

    def __call__(self, model_fn: Callable[..., Any], batch: Any) -> Tensor: ...

    def weight(self, batch: Any) -> int: ...


def describe_batch(batch: Any) -> str:
    """A short description of a batch for error messages: its kind, keys and tensor shapes.

    Returns:
        For example ``"a dict with keys ['input_ids'] (input_ids: int64 (2, 6))"``.

    Examples:
        >>> describe_batch({"input_ids": torch.zeros(2, 6, dtype=torch.long)})
        "a dict with keys ['input_ids'] (input_ids: int64 (2, 6))"
        >>> describe_batch((torch.zeros(3), 1))
        'a tuple of 2 items (float32 (3,), int)'
    """

    def item(v: Any) -> str:
        if isinstance(v, Tensor):
            return f"{str(v.dtype).replace('torch.', '')} {tuple(v.shape)}"
        return type(v).__name__

    if isinstance(batch, Mapping):
        parts = ", ".join(f"{k}: {item(v)}" for k, v in batch.items())
        return f"a dict with keys {list(batch)} ({parts})"
    if isinstance(batch, tuple | list):
        parts = ", ".join(item(v) for v in batch)
        return f"a {type(batch).__name__} of {len(batch)} items ({parts})"
    return f"a {item(batch)}" if isinstance(batch, Tensor) else f"a {type(batch).__name__}"


def model_logits(output: Any) -> Tensor:
    """The scores in a model's output: the tensor itself, or its ``logits``.

    Returns:
        ``output`` when it is a tensor, else ``output.logits`` or ``output["logits"]``
        (Hugging Face ``ModelOutput`` objects have both).

    Raises:
        TypeError: If the output holds no logits tensor.
    """
    if isinstance(output, Tensor):
        return output
    logits = getattr(output, "logits", None)
    if logits is None and isinstance(output, Mapping):
        logits = output.get("logits")
    if isinstance(logits, Tensor):
        return logits
    raise TypeError(
        f"the model returned a {type(output).__name__}, not a tensor of scores, and it has "
        "no .logits: return a tensor (or a Hugging Face ModelOutput / dict with 'logits'), "
        "or compute the loss yourself with batch_loss=fn(model_fn, batch)"
    )


def _inputs(batch: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in batch.items() if k != "labels"}


def _check_not_per_token(logits: Tensor, labels: Tensor, loss_fn: LossFn) -> None:
    if (
        loss_fn is F.cross_entropy
        and logits.ndim == 3
        and tuple(labels.shape) == tuple(logits.shape[:2])
    ):
        raise ValueError(
            f"the model returns one score vector per token (logits {tuple(logits.shape)}, "
            f"labels {tuple(labels.shape)}): a language model, whose loss loss_fn="
            "F.cross_entropy cannot take. Use batch_loss=flatness.causal_lm_loss (the "
            "next-token loss, a mean over tokens) or loss_fn=None (the model's own .loss)"
        )


def default_batch_loss(model_fn: Callable[..., Any], batch: Any, loss_fn: LossFn | None) -> Tensor:
    """The mean loss of a batch without a hook (the rules in the module doc).

    Args:
        model_fn: Calls the model.
        batch: ``(inputs, targets)`` or a dict of model inputs.
        loss_fn: ``loss_fn(output, target)``, or ``None`` for the model's own ``.loss``
            (dict batches).

    Returns:
        What the loss returns (the caller checks that it is a scalar).

    Raises:
        ValueError: For a batch of another form (its keys and types are named), a dict
            batch without ``labels`` for ``loss_fn``, an output without ``.loss`` for
            ``loss_fn=None``, or per-token logits with ``F.cross_entropy``.
    """
    if isinstance(batch, Mapping):
        if loss_fn is None:
            out = model_fn(**batch)
            loss = getattr(out, "loss", None)
            if loss is None and isinstance(out, Mapping):
                loss = out.get("loss")
            if not isinstance(loss, Tensor):
                raise ValueError(
                    f"loss_fn=None asks for the model's own .loss, but for {describe_batch(batch)} "
                    f"the model returned a {type(out).__name__} without one: Hugging Face models "
                    "compute it when the batch holds 'labels'; or pass batch_loss="
                    "flatness.causal_lm_loss / flatness.sequence_classification_loss"
                )
            return loss
        if "labels" not in batch:
            raise ValueError(
                f"loss_fn(output, target) needs the targets, but the batch is "
                f"{describe_batch(batch)} with no 'labels': give (inputs, targets) pairs or "
                "dicts with 'labels', or pass batch_loss=flatness.causal_lm_loss (language "
                "models) or your own batch_loss(model_fn, batch)"
            )
        logits = model_logits(model_fn(**_inputs(batch)))
        _check_not_per_token(logits, batch["labels"], loss_fn)
        return loss_fn(logits, batch["labels"])
    if isinstance(batch, tuple | list) and len(batch) == 2:
        if loss_fn is None:
            raise ValueError(
                "loss_fn=None (the model's own .loss) needs dict batches holding 'labels'; "
                f"the batch is {describe_batch(batch)}: give a loss_fn(output, target)"
            )
        x, y = batch
        logits = model_logits(model_fn(x))
        if isinstance(y, Tensor):
            _check_not_per_token(logits, y, loss_fn)
        return loss_fn(logits, y)
    raise ValueError(
        f"the default loss takes (inputs, targets) pairs or dicts of model inputs with "
        f"'labels', but the batch is {describe_batch(batch)}: yield (x, y) batches, dicts, "
        "or pass batch_loss=fn(model_fn, batch) that understands this form"
    )


def batch_weight(batch_loss: Any, batch: Any) -> int | None:
    """The weight a loss hook declares for a batch (see :class:`WeightedBatchLoss`).

    Returns:
        ``batch_loss.weight(batch)``, or ``None`` when the hook declares none (the
        batch then weighs its number of examples).
    """
    weight = getattr(batch_loss, "weight", None)
    return int(weight(batch)) if callable(weight) else None


def _token_batch(batch: Any, what: str) -> Mapping[str, Any]:
    if isinstance(batch, Tensor) and batch.ndim == 2 and not batch.is_floating_point():
        return {"input_ids": batch}
    if isinstance(batch, Mapping) and isinstance(batch.get("input_ids"), Tensor):
        return batch
    raise TypeError(
        f"{what} takes a (batch, sequence) tensor of token ids or a dict with 'input_ids' "
        "(and optionally 'attention_mask', 'labels'), as a Hugging Face tokenizer "
        f"returns; the batch is {describe_batch(batch)}"
    )


@dataclass(frozen=True)
class CausalLMLoss:
    """Next-token cross-entropy, the mean over the tokens that enter the loss.

    The logits at position :math:`t` predict the label at :math:`t + 1` (the shift
    Hugging Face's causal language models apply). The labels are the batch's
    ``labels``, or its ``input_ids``; positions whose ``attention_mask`` is 0 (padding)
    and labels equal to ``ignore_index`` are left out. :meth:`weight` counts the tokens
    that remain, so an :class:`~flatness.curvature.objective.Objective` over several
    batches is the token mean over all of them.

    Args:
        ignore_index: The label that marks a position left out of the loss.

    Examples:
        >>> ids = torch.tensor([[5, 6, 7, 0]])
        >>> batch = {"input_ids": ids, "attention_mask": torch.tensor([[1, 1, 1, 0]])}
        >>> causal_lm_loss.weight(batch)  # 6->7 and 5->6; the pad is left out
        2
    """

    ignore_index: int = -100
    weight_unit: ClassVar[str] = "tokens"

    def targets(self, batch: Any) -> Tensor:
        """The label of every predicted position, ``(batch, sequence - 1)``.

        Returns:
            The labels shifted by one, ``ignore_index`` where left out.

        Raises:
            TypeError: For a batch that is neither token ids nor a dict with
                ``input_ids``.
        """
        tokens = _token_batch(batch, "causal_lm_loss")
        given = tokens.get("labels")
        labels: Tensor = (tokens["input_ids"] if given is None else given).clone()
        mask = tokens.get("attention_mask")
        if isinstance(mask, Tensor):
            labels = labels.masked_fill(mask == 0, self.ignore_index)
        return labels[:, 1:]

    def __call__(self, model_fn: Callable[..., Any], batch: Any) -> Tensor:
        """The token-mean next-token loss of ``batch``.

        Returns:
            A 0-d tensor.

        Raises:
            TypeError: As :meth:`targets`, or for an output without logits.
        """
        tokens = _token_batch(batch, "causal_lm_loss")
        logits = model_logits(model_fn(**_inputs(tokens)))
        targets = self.targets(tokens)
        scores = logits[:, :-1]
        return F.cross_entropy(
            scores.reshape(-1, scores.shape[-1]),
            targets.reshape(-1).to(logits.device),
            ignore_index=self.ignore_index,
        )

    def weight(self, batch: Any) -> int:
        """The number of tokens of ``batch`` that enter the loss.

        Returns:
            The count of shifted labels that are not ``ignore_index``.
        """
        return int((self.targets(batch) != self.ignore_index).sum())


@dataclass(frozen=True)
class SequenceClassificationLoss:
    """The loss of a sequence classifier, as Hugging Face's ``problem_type`` picks it.

    The batch is a dict of model inputs with ``labels``: integer labels give
    cross-entropy (single-label classification), float labels with one output give the
    mean squared error (regression), float labels with several outputs binary
    cross-entropy with logits (multi-label). A mean over examples (no ``weight``).

    Examples:
        >>> net = torch.nn.Linear(4, 3)
        >>> batch = {"input": torch.randn(5, 4), "labels": torch.randint(0, 3, (5,))}
        >>> loss = sequence_classification_loss(lambda **kw: net(kw["input"]), batch)
        >>> bool(torch.isclose(loss, F.cross_entropy(net(batch["input"]), batch["labels"])))
        True
    """

    def __call__(self, model_fn: Callable[..., Any], batch: Any) -> Tensor:
        """The mean loss of ``batch``.

        Returns:
            A 0-d tensor.

        Raises:
            TypeError: For a batch that is not a dict with ``labels``, or an output
                without logits.
        """
        if not (isinstance(batch, Mapping) and isinstance(batch.get("labels"), Tensor)):
            raise TypeError(
                "sequence_classification_loss takes a dict of model inputs with 'labels' "
                f"(a tokenizer's output plus the labels); the batch is {describe_batch(batch)}"
            )
        logits = model_logits(model_fn(**_inputs(batch)))
        labels = batch["labels"].to(logits.device)
        if not labels.is_floating_point():
            return F.cross_entropy(logits, labels)
        if logits.shape[-1] == 1:
            return F.mse_loss(logits.squeeze(-1), labels.to(logits.dtype))
        return F.binary_cross_entropy_with_logits(logits, labels.to(logits.dtype))


causal_lm_loss = CausalLMLoss()
"""Next-token loss of a causal language model, a token mean (see :class:`CausalLMLoss`)."""

sequence_classification_loss = SequenceClassificationLoss()
"""Loss of a sequence classifier (see :class:`SequenceClassificationLoss`)."""
