"""The loss a manifest names, and the objective keywords it becomes.

``[scoring]`` names the loss the measures are taken of in one of two keys:

``loss = "cross_entropy"``
    a built-in name (:data:`BUILT_IN_LOSSES`), or ``"module:function"`` naming a
    ``loss_fn(output, target)`` that returns the mean loss of a batch of
    ``(inputs, targets)`` pairs (``"torch.nn.functional:smooth_l1_loss"``).
``batch_loss = "mylosses:lm_loss"``
    a ``batch_loss(model_fn, batch)`` that calls the model itself and returns the mean
    loss of any batch (dicts of tensors, Hugging Face inputs): the form of
    :class:`~flatness.curvature.objective.Objective`'s ``batch_loss``.

The key tells the two signatures apart; a manifest gives at most one of them (neither:
``cross_entropy``). Built-in names:

- ``cross_entropy``: :func:`torch.nn.functional.cross_entropy` on ``(x, y)`` batches
  with integer class labels (the default; the accuracy is reported too);
- ``mse``: :func:`torch.nn.functional.mse_loss` (targets shaped like the outputs);
- ``causal_lm``: :func:`flatness.losses.causal_lm_loss`, next-token cross-entropy of a
  language model, averaged over the tokens that enter it;
- ``sequence_classification``: :func:`flatness.losses.sequence_classification_loss`,
  cross-entropy of a classifier's logits against the batch's ``labels``.

A module named by a manifest is imported with the manifest's folder searched first,
like its factories (:mod:`flatness.factories`).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Mapping
from typing import Any

import torch.nn.functional as F

from flatness.curvature.objective import BatchLossFn, LossFn
from flatness.factories import import_factory, is_factory_spec, refuse_standard_library

__all__ = [
    "BUILT_IN_LOSSES",
    "LOSS_KEYS",
    "ScoringLoss",
    "loss_setting_error",
    "resolve_loss",
]

LOSS_KEYS = ("loss", "batch_loss")
"""The ``[scoring]`` keys that name the loss, one per signature."""

BUILT_IN_LOSSES: dict[str, tuple[str, str]] = {
    "cross_entropy": ("loss", "torch.nn.functional:cross_entropy"),
    "mse": ("loss", "torch.nn.functional:mse_loss"),
    "causal_lm": ("batch_loss", "flatness.losses:causal_lm_loss"),
    "sequence_classification": ("batch_loss", "flatness.losses:sequence_classification_loss"),
}
"""Built-in name -> (its signature's key, the function it names)."""


@dataclasses.dataclass(frozen=True)
class ScoringLoss:
    """The loss of a manifest, resolved to a function.

    Attributes:
        name: What the manifest gave (a built-in name or ``"module:function"``).
        key: ``"loss"`` (a ``loss_fn(output, target)``) or ``"batch_loss"`` (a
            ``batch_loss(model_fn, batch)``).
        function: The function.
    """

    name: str
    key: str
    function: Callable[..., Any]

    @property
    def loss_fn(self) -> LossFn | None:
        """The ``loss_fn(output, target)``, or ``None`` for a batch loss."""
        return self.function if self.key == "loss" else None

    @property
    def batch_loss(self) -> BatchLossFn | None:
        """The ``batch_loss(model_fn, batch)``, or ``None`` for an output loss."""
        return self.function if self.key == "batch_loss" else None

    @property
    def classification(self) -> bool:
        """Whether the accuracy means something: the loss is cross-entropy on labels."""
        return self.function is F.cross_entropy

    def objective_kwargs(self) -> dict[str, Any]:
        """The keywords of :class:`~flatness.curvature.objective.Objective` it sets.

        Returns:
            ``{"loss_fn": ..., "batch_loss": ...}`` (one of them ``None``).
        """
        return {"loss_fn": self.loss_fn, "batch_loss": self.batch_loss}


def _named(scoring: Mapping[str, Any]) -> tuple[str, str]:
    """The key that names the loss and the name it gives (``cross_entropy`` if none)."""
    given = [k for k in LOSS_KEYS if scoring.get(k) is not None]
    if len(given) > 1:
        raise ValueError(
            "give one of loss = (a loss_fn(output, target)) and batch_loss = (a "
            "batch_loss(model_fn, batch)), not both"
        )
    key = given[0] if given else "loss"
    value = scoring.get(key)
    if value is not None and not (isinstance(value, str) and value):
        raise ValueError(f'must be a string such as "cross_entropy", got {value!r}')
    return key, str(value or "cross_entropy")


def _spec(key: str, name: str) -> tuple[str, str]:
    """The signature's key and the ``"module:function"`` a loss setting stands for."""
    if key == "loss" and name in BUILT_IN_LOSSES:
        return BUILT_IN_LOSSES[name]
    if is_factory_spec(name):
        refuse_standard_library(name, kind=f"[scoring] {key}")
        return key, name
    if key == "loss":
        raise ValueError(
            f"unknown loss {name!r}: give a built-in loss ({', '.join(BUILT_IN_LOSSES)}) or "
            'a loss_fn(output, target) as "module:function"'
        )
    raise ValueError(f'give a batch_loss(model_fn, batch) as "module:function", not {name!r}')


def loss_setting_error(scoring: Mapping[str, Any]) -> tuple[str, str] | None:
    """What is wrong with the loss ``[scoring]`` names, found without importing anything.

    Args:
        scoring: The ``[scoring]`` table.

    Returns:
        ``None`` when the setting is well formed, else ``(key, message)``: the key it
        is wrong in (``"loss"`` or ``"batch_loss"``) and why.

    Examples:
        >>> loss_setting_error({"loss": "causal_lm"}) is None
        True
        >>> loss_setting_error({"loss": "l2"})[0]
        'loss'
    """
    key = "batch_loss" if scoring.get("batch_loss") is not None else "loss"
    try:
        _spec(*_named(scoring))
    except (ValueError, ImportError) as exc:
        return key, str(exc)
    return None


def resolve_loss(
    scoring: Mapping[str, Any], *, folder: str | os.PathLike[str] | None = None
) -> ScoringLoss:
    """The loss ``[scoring] loss`` or ``batch_loss`` names, imported.

    Args:
        scoring: The ``[scoring]`` table.
        folder: Searched first for a ``"module:function"`` (the manifest's folder).

    Returns:
        The loss.

    Raises:
        ValueError: If both keys are given, or the name is neither built in nor a
            ``"module:function"``; the message names the setting and the remedy.
        ImportError: If the module cannot be imported or is in the standard library.
        AttributeError, TypeError: If it has no such function or names no callable.

    Examples:
        >>> resolve_loss({}).name, resolve_loss({"loss": "mse"}).loss_fn.__name__
        ('cross_entropy', 'mse_loss')
    """
    key, name = _named(scoring)
    try:
        key, spec = _spec(key, name)
    except ValueError as exc:
        raise ValueError(f"[scoring] {key} = {name!r}: {exc}") from None
    function = import_factory(spec, kind=f"[scoring] {key}", folder=folder)
    return ScoringLoss(name=name, key=key, function=function)
