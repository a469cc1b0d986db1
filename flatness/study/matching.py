"""The equal-updates control: which regime takes whose number of updates.

A regime's settings may hold ``match_updates = "<regime label>"`` (:data:`MATCH_KEY`, not
a :class:`flatness.zoo.TrainConfig` key): that regime is trained, per seed, for exactly
as many updates as the named regime's run of the same seed took. :func:`check_matches`
checks a case's references when the case is built (:mod:`flatness.study.plan`) and
:func:`match_order` gives the order :mod:`flatness.study.training` trains them in. This
module reads plain mappings, so the plan and the training both import it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["MATCH_KEY", "check_matches", "match_order"]

Settings = Mapping[str, Any]
"""A regime's settings (as :data:`flatness.study.plan.Settings`)."""

MATCH_KEY = "match_updates"
"""The regime setting naming the regime whose update counts a run takes, seed by seed."""


def check_matches(
    name: str,
    tables: Sequence[tuple[Mapping[str, Settings], tuple[int, ...]]],
) -> dict[str, str]:
    """Check every ``match_updates`` of a case's regime tables.

    Args:
        name: The case's name (for messages).
        tables: ``(regimes, seeds)`` per table (the regimes, then the sweep).

    Returns:
        Regime label → the label it matches, for the regimes that match one.

    Raises:
        ValueError: For a reference that is not a string or not a regime of the case,
            a cycle, or a seed the referenced regime is not trained with.

    Examples:
        >>> check_matches("c", [({"SB": {}, "LB-U": {"match_updates": "SB"}}, (0, 1))])
        {'LB-U': 'SB'}
    """
    seeds = {label: set(s) for regimes, s in tables for label in regimes}
    matches: dict[str, str] = {}
    for regimes, _ in tables:
        for label, settings in regimes.items():
            if MATCH_KEY not in settings:
                continue
            target = settings[MATCH_KEY]
            if not isinstance(target, str) or target not in seeds:
                raise ValueError(
                    f"case {name!r}: regime {label!r} has {MATCH_KEY} = {target!r}, not one "
                    f"of the case's regimes {sorted(seeds)}"
                )
            missing = sorted(seeds[label] - seeds[target])
            if missing:
                raise ValueError(
                    f"case {name!r}: regime {label!r} matches the updates of {target!r}, "
                    f"which is not trained with seeds {missing}"
                )
            matches[label] = target
    match_order(name, matches)
    return matches


def match_order(name: str, matches: Mapping[str, str]) -> list[str]:
    """The matching regimes in an order that trains every referenced regime first.

    Raises:
        ValueError: For a cycle (a regime that matches itself, directly or not).

    Examples:
        >>> match_order("c", {"C": "B", "B": "A"})
        ['B', 'C']
    """
    order: list[str] = []
    for label in matches:
        chain = [label]
        while chain[-1] in matches and chain[-1] not in order:
            following = matches[chain[-1]]
            if following in chain:
                cycle = " -> ".join([*chain[chain.index(following) :], following])
                raise ValueError(f"case {name!r}: {MATCH_KEY} goes round in a cycle: {cycle}")
            chain.append(following)
        order.extend(c for c in reversed(chain) if c in matches and c not in order)
    return order
