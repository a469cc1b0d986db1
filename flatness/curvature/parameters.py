"""Which parameters an objective differentiates, and where they sit in the flat vector.

The variables of an :class:`~flatness.curvature.objective.Objective` are all trainable
parameters, or a selection (a name, a module prefix, a list of those, or a predicate):
per-layer Hessians are taken this way. The selected tensors are laid end to end in one
flat vector; a :class:`ParameterBlock` says where each lives.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

__all__ = [
    "ParamSelector",
    "ParameterBlock",
    "flatten",
    "parameter_blocks",
    "require_finite",
    "select_parameter_names",
    "unflatten",
]

ParamSelector = str | Sequence[str] | Callable[[str, nn.Parameter], bool] | None


@dataclass(frozen=True)
class ParameterBlock:
    """Where one selected parameter lives in the flat vector."""

    name: str
    shape: tuple[int, ...]
    offset: int
    numel: int


def select_parameter_names(model: nn.Module, params: ParamSelector) -> list[str]:
    """The names of the selected trainable parameters, in the model's order.

    Args:
        model: The network.
        params: ``None`` (all trainable parameters), a parameter name or module prefix,
            a list of those, or a predicate ``(name, parameter) -> bool``.

    Returns:
        The selected names.

    Raises:
        ValueError: If a name or prefix matches no trainable parameter (the known
            names are listed), or nothing is selected.
    """
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    if params is None:
        names = [n for n, _ in named]
    elif callable(params) and not isinstance(params, str):
        names = [n for n, p in named if params(n, p)]
    else:
        wanted = [params] if isinstance(params, str) else list(params)
        all_names = {n for n, _ in named}
        names = []
        for w in wanted:
            hits = [n for n, _ in named if n == w or n.startswith(w + ".") or w == ""]
            if not hits:
                raise ValueError(
                    f"parameter selector {w!r} matches no trainable parameter or module; "
                    f"known parameters: {sorted(all_names)[:12]}"
                    + (" ..." if len(all_names) > 12 else "")
                )
            names.extend(h for h in hits if h not in names)
        order = {n: i for i, (n, _) in enumerate(named)}
        names.sort(key=order.__getitem__)
    if not names:
        raise ValueError("the objective has no parameters to differentiate: none selected")
    return names


def unflatten(blocks: Sequence[ParameterBlock], theta: Tensor) -> dict[str, Tensor]:
    """Split a flat vector into named views shaped like the parameters of ``blocks``.

    The split is one differentiable :func:`torch.split`, whose backward is a single
    concatenation, so gradients flow back to ``theta`` cheaply.

    Returns:
        ``{parameter name: view}`` (with ``theta``'s leading dimensions).

    Raises:
        ValueError: If ``theta``'s last dimension is not the blocks' total size.
    """
    dim = sum(b.numel for b in blocks)
    if theta.shape[-1] != dim:
        raise ValueError(f"expected a vector of length {dim}, got {tuple(theta.shape)}")
    parts = torch.split(theta, [b.numel for b in blocks], dim=-1)
    lead = tuple(theta.shape[:-1])
    return {b.name: t.reshape(*lead, *b.shape) for b, t in zip(blocks, parts, strict=True)}


def flatten(
    blocks: Sequence[ParameterBlock], tensors: Mapping[str, Tensor] | Sequence[Tensor]
) -> Tensor:
    """Concatenate per-parameter tensors (by name or in the blocks' order) into a vector.

    Returns:
        A vector of the blocks' total size.
    """
    if isinstance(tensors, Mapping):
        tensors = [tensors[b.name] for b in blocks]
    return torch.cat([t.reshape(-1) for t in tensors])


def parameter_blocks(model: nn.Module, names: Sequence[str]) -> tuple[ParameterBlock, ...]:
    """Lay the named parameters end to end in one flat vector.

    Returns:
        One :class:`ParameterBlock` per name, in order, with consecutive offsets.
    """
    params = dict(model.named_parameters())
    blocks, offset = [], 0
    for n in names:
        p = params[n]
        blocks.append(ParameterBlock(n, tuple(p.shape), offset, p.numel()))
        offset += p.numel()
    return tuple(blocks)


def require_finite(blocks: Sequence[ParameterBlock], theta: Tensor) -> None:
    """Refuse parameters that hold NaN or Inf, naming them.

    Raises:
        ValueError: If some block of ``theta`` is not finite.
    """
    if not torch.isfinite(theta).all():
        bad = [
            b.name for b in blocks if not torch.isfinite(theta[b.offset : b.offset + b.numel]).all()
        ]
        raise ValueError(f"the parameters hold NaN or Inf values (in {', '.join(bad)})")
