"""Parameter groups a manifest scores one by one: per-layer and per-block Hessians.

``[scoring] groups`` (``--groups`` on the command line) asks for the measures that
take a parameter group (:attr:`~flatness.pipeline.measure_tasks.Measure.groups`: the
top eigenvalues, the trace, the spectral density) to be computed, besides on the whole
network, on the Hessian block of each group: the second derivatives with respect to
the group's parameters, the others held fixed (``Objective(params=...)``).

A group is named by a parameter's name or a module prefix (``"features.0"``,
``"classifier"``), or ``groups = "blocks"`` takes each top-level child module that has
trainable parameters. Each group's result is stored under its own task key (the
measure's settings with ``"group"`` added), so the whole-network tasks keep their keys.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

__all__ = ["BLOCKS", "GroupError", "parameter_groups"]

BLOCKS = "blocks"
"""``groups = "blocks"``: each top-level child module with trainable parameters."""


class GroupError(ValueError):
    """A parameter group matches nothing; the message lists the names there are."""


def _trainable(module: nn.Module) -> bool:
    return any(p.requires_grad for p in module.parameters())


def _known_names(model: nn.Module) -> list[str]:
    """Module names that hold trainable parameters, then the parameters' own names."""
    modules = [n for n, m in model.named_modules() if n and _trainable(m)]
    params = [n for n, p in model.named_parameters() if p.requires_grad]
    return modules + [p for p in params if p not in modules]


def parameter_groups(model: nn.Module, groups: str | Sequence[str] | None) -> tuple[str, ...]:
    """The groups ``[scoring] groups`` names, checked against the model.

    Args:
        model: The network (a freshly built one: only its names are read).
        groups: ``"blocks"``, a list of parameter names or module prefixes, or ``None``.

    Returns:
        The group names, in the order given (for ``"blocks"``: the model's top-level
        children with trainable parameters); empty for ``None``.

    Raises:
        GroupError: If a name matches no trainable parameter, or the model has no
            top-level child with parameters; the message names ``[scoring] groups`` and
            lists the names there are.

    Examples:
        >>> net = nn.Sequential(nn.Linear(2, 3), nn.ReLU(), nn.Linear(3, 1))
        >>> parameter_groups(net, "blocks")
        ('0', '2')
        >>> parameter_groups(net, ["2.weight", "0"])
        ('2.weight', '0')
    """
    if groups is None:
        return ()
    if isinstance(groups, str) and groups == BLOCKS:
        blocks = tuple(n for n, child in model.named_children() if _trainable(child))
        if not blocks:
            raise GroupError(
                f'[scoring] groups = "{BLOCKS}": {type(model).__name__} has no top-level '
                "child module with trainable parameters; name the groups instead "
                f"(known names: {_shown(_known_names(model))})"
            )
        return blocks
    names = [groups] if isinstance(groups, str) else list(groups)
    params = [n for n, p in model.named_parameters() if p.requires_grad]
    for name in names:
        if not any(p == name or p.startswith(name + ".") for p in params):
            raise GroupError(
                f"[scoring] groups: {name!r} matches no trainable parameter or module of "
                f"{type(model).__name__}; known names: {_shown(_known_names(model))} "
                f'(or groups = "{BLOCKS}")'
            )
    if len(set(names)) != len(names):
        raise GroupError(f"[scoring] groups: a name is given twice in {names}")
    return tuple(names)


def _shown(names: list[str], limit: int = 20) -> str:
    more = f" ... ({len(names)} in all)" if len(names) > limit else ""
    return ", ".join(names[:limit]) + more
