"""The floating dtype an objective is analysed in: float32 for low-precision checkpoints.

Models are more and more stored and trained in bfloat16 or float16. Their 8 (bfloat16)
or 11 (float16) significant bits are too few for curvature: a Hessian-vector product is
a difference of gradients, Lanczos needs orthogonality to many digits, and loss
differences of ε-sharpness vanish below the rounding of the loss itself. An objective
over such a model therefore computes in float32 unless a dtype is asked for: it says
so once (a :class:`UserWarning`) and records the model's own dtype in its settings.
An explicit lower-precision dtype is honoured with a warning that states how far the
loss on the first batch lies from float32 (:func:`precision_warning`).
"""

from __future__ import annotations

import math
import warnings

import torch
from torch import nn

__all__ = ["LOW_PRECISION", "analysis_dtype", "model_dtype", "precision_warning"]

LOW_PRECISION: frozenset[torch.dtype] = frozenset({torch.float16, torch.bfloat16})
"""Floating dtypes analysed in float32 unless asked for explicitly."""


def _name(dtype: torch.dtype | None) -> str:
    return str(dtype).replace("torch.", "")


def model_dtype(model: nn.Module) -> torch.dtype | None:
    """The dtype of the model's first floating parameter (or buffer).

    Returns:
        The dtype, or ``None`` for a model without floating tensors.
    """
    for t in (*model.parameters(), *model.buffers()):
        if t.is_floating_point():
            return t.dtype
    return None


def analysis_dtype(stored: torch.dtype | None, asked: torch.dtype | None) -> torch.dtype:
    """The dtype to compute in, given the model's and the one asked for.

    Args:
        stored: The model's dtype (:func:`model_dtype`).
        asked: The ``dtype`` argument (``None``: choose).

    Returns:
        ``asked`` when given; float32 for a float16/bfloat16 model (with a
        :class:`UserWarning` saying so); else the model's dtype (or torch's default).
    """
    if asked is not None:
        return asked
    if stored in LOW_PRECISION:
        warnings.warn(
            f"the model's parameters are {_name(stored)}: analysing it in float32 (Hessian "
            "products and loss differences need more than their significant bits); the "
            "model's dtype is recorded as settings['model_dtype']. Pass dtype="
            f"torch.{_name(stored)} to compute in it anyway (with a measured accuracy warning)",
            UserWarning,
            stacklevel=3,
        )
        return torch.float32
    return stored if stored is not None else torch.get_default_dtype()


def precision_warning(dtype: torch.dtype, low: float, reference: float) -> float:
    """Warn that ``dtype`` was asked for, stating the loss's error against float32.

    Args:
        dtype: The lower-precision dtype in use.
        low: The loss of the first batch computed in ``dtype``.
        reference: The same loss computed in float32.

    Returns:
        The relative error ``|low - reference| / |reference|``.
    """
    rel = abs(low - reference) / abs(reference) if reference != 0 else abs(low - reference)
    rel = rel if math.isfinite(rel) else math.inf
    warnings.warn(
        f"computing in {_name(dtype)} as asked (dtype=torch.{_name(dtype)}): the loss of the "
        f"first batch is {low:.6g} against {reference:.6g} in float32, a relative error of "
        f"{rel:.2e}; curvature and sharpness estimates carry errors of at least this order. "
        "Leave dtype unset (float32) for reference-quality numbers",
        UserWarning,
        stacklevel=3,
    )
    return rel
