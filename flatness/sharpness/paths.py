r"""Points on a path between two checkpoints, for :mod:`flatness.sharpness.interpolation`.

A point of the path is a combination :math:`c_0(\alpha)\, x_0 + c_1(\alpha)\, x_1` of
the floating-point entries of two state dicts (:func:`path_coefficients`: the straight
line of Keskar et al.'s parametric plot, or their Appendix D's curvilinear path). This
module holds what such a point needs: the coefficients, the state dicts of models or
checkpoints and the check that they fit one architecture, the data as
``(inputs, targets)`` batches, and the BatchNorm running statistics recomputed at the
point (cumulative averages over the training batches, as after a weight average in
stochastic weight averaging: :func:`flatness.batchnorm.recompute_running_statistics`,
kept here under its former name ``recompute_statistics``).

References:
    N. S. Keskar, D. Mudigere, J. Nocedal, M. Smelyanskiy and P. T. P. Tang (2017). On
    large-batch training for deep learning: Generalization gap and sharp minima. ICLR.

    P. Izmailov, D. Podoprikhin, T. Garipov, D. Vetrov and A. G. Wilson (2018).
    Averaging weights leads to wider optima and better generalization. UAI.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Literal, TypeAlias, get_args

import torch
from torch import Tensor, nn

from flatness.batchnorm import norm_layers
from flatness.batchnorm import recompute_running_statistics as recompute_statistics
from flatness.curvature.objective import Batch, batch_size_of, move_batch, split_batches
from flatness.evaluation import xy_pair

__all__ = [
    "BN_MODES",
    "PATHS",
    "BatchNormMode",
    "Checkpoint",
    "Data",
    "InterpolationPath",
    "check_compatible",
    "norm_layers",
    "path_coefficients",
    "prepared_batches",
    "recompute_statistics",
    "state_of",
]

InterpolationPath: TypeAlias = Literal["linear", "curvilinear"]
"""The paths :func:`~flatness.sharpness.interpolate_checkpoints` can follow."""

BatchNormMode: TypeAlias = Literal["interpolate", "recompute"]
"""How :func:`~flatness.sharpness.interpolate_checkpoints` sets BatchNorm running statistics
at each point."""

PATHS: tuple[InterpolationPath, ...] = get_args(InterpolationPath)
BN_MODES: tuple[BatchNormMode, ...] = get_args(BatchNormMode)

Checkpoint: TypeAlias = nn.Module | Mapping[str, Tensor]
"""A point of the path: a model, or a state dict of tensors."""

Data: TypeAlias = tuple[Tensor, Tensor] | Iterable[Batch]
"""An ``(inputs, targets)`` pair of tensors, or ``(inputs, targets)`` batches (a list or
a data loader)."""


def path_coefficients(alpha: float, path: InterpolationPath) -> tuple[float, float]:
    r"""The weights :math:`(c_0, c_1)` of the start and end points at :math:`\alpha`.

    ``"linear"``: :math:`(1 - \alpha, \alpha)`; ``"curvilinear"``:
    :math:`(\cos\frac{\pi\alpha}{2}, \sin\frac{\pi\alpha}{2})`, exact (0 or ±1) at
    integer :math:`\alpha` so that the endpoints are reproduced bit for bit.

    Returns:
        ``(c_0, c_1)``.

    Raises:
        ValueError: For an unknown ``path``.

    Examples:
        >>> path_coefficients(0.25, "linear")
        (0.75, 0.25)
        >>> path_coefficients(1.0, "curvilinear")
        (0.0, 1.0)
    """
    if path == "linear":
        return 1.0 - alpha, alpha
    if path == "curvilinear":
        if float(alpha).is_integer():
            return ((1.0, 0.0), (0.0, 1.0), (-1.0, 0.0), (0.0, -1.0))[int(alpha) % 4]
        angle = math.pi * alpha / 2.0
        return math.cos(angle), math.sin(angle)
    raise ValueError(f"unknown path {path!r}; expected one of {PATHS}")


def state_of(checkpoint: Checkpoint, name: str) -> dict[str, Tensor]:
    """The state dict of a model or a state dict, detached.

    Args:
        checkpoint: A model or a state dict of tensors.
        name: How to name it in errors.

    Returns:
        ``{key: tensor}``.

    Raises:
        ValueError: For a mapping with entries that are not tensors.
        TypeError: For anything else than a model or a mapping.
    """
    if isinstance(checkpoint, nn.Module):
        return {k: v.detach() for k, v in checkpoint.state_dict().items()}
    if isinstance(checkpoint, Mapping):
        bad = [k for k, v in checkpoint.items() if not isinstance(v, Tensor)]
        if bad:
            raise ValueError(
                f"{name} must be a model or a state dict of tensors; entries {bad[:5]} "
                "are not tensors (unwrap {'state_dict': ...} checkpoints first)"
            )
        return {str(k): v.detach() for k, v in checkpoint.items()}
    raise TypeError(f"{name} must be an nn.Module or a state dict, got {type(checkpoint).__name__}")


def check_compatible(states: Sequence[tuple[str, Mapping[str, Tensor]]]) -> None:
    """Check that named state dicts share their keys and shapes with the first.

    Raises:
        ValueError: Naming the keys or shapes that differ.
    """
    (ref_name, ref), *others = states
    for name, other in others:
        missing = sorted(set(ref) - set(other))
        extra = sorted(set(other) - set(ref))
        if missing or extra:
            raise ValueError(
                f"{name} and {ref_name} have different architectures: keys only in "
                f"{ref_name}: {missing[:8]}{' ...' if len(missing) > 8 else ''}; keys only in "
                f"{name}: {extra[:8]}{' ...' if len(extra) > 8 else ''}"
            )
        shapes = [
            f"{k}: {tuple(ref[k].shape)} vs {tuple(other[k].shape)}"
            for k in ref
            if tuple(ref[k].shape) != tuple(other[k].shape)
        ]
        if shapes:
            raise ValueError(
                f"{name} and {ref_name} have different parameter shapes ({ref_name} vs "
                f"{name}): {'; '.join(shapes[:8])}"
            )


def prepared_batches(
    data: Data, batch_size: int, device: torch.device, dtype: torch.dtype, what: str
) -> list[Batch]:
    """The data as non-empty ``(inputs, targets)`` batches on ``device`` in ``dtype``.

    Returns:
        The batches (tensor pairs are split into batches of ``batch_size``).

    Raises:
        ValueError: If the data holds no examples or a batch is not a pair.
    """
    batches = [move_batch(b, device, dtype) for b in split_batches(data, batch_size)]
    batches = [b for b in batches if batch_size_of(b) > 0]
    if not batches:
        raise ValueError(f"{what} holds no examples")
    for b in batches:
        xy_pair(b, what)
    return batches
