"""The four training protocols of the fixed-epochs-vs-fixed-updates study, as regime labels.

A case of :mod:`flatness.studies.hoffer2017` trains one optimizer at three batch sizes
(roles ``SB``, ``MB``, ``LB``) under four protocols (:data:`PROTOCOLS`):

- ``E``: the same number of epochs (Wilson & Martinez 2003: small batches win);
- ``U``: the same number of updates as SB's E run (Hoffer et al. 2017: "train longer");
- ``C``: until a training-loss threshold (convergence), with a cap;
- ``L``: the same epochs with the learning rate scaled with the batch size (Goyal et al.
  2017's linear rule with warm-up for SGD, √B for Adam).

Each (protocol, role) is one regime label; runs that are the same network are trained
once: SB's E run *is* SB's U run (E0 epochs of SB are the U budget) and SB's L run (a
scale factor of one), so the label ``SB`` serves E, U and L. :func:`regime_label` names a
cell and :func:`cells_of` reads a label back, so the plan and the answers agree on them.

References:
    D. R. Wilson and T. R. Martinez (2003). The general inefficiency of batch training
    for gradient descent learning. Neural Networks 16(10).

    E. Hoffer, I. Hubara and D. Soudry (2017). Train longer, generalize better: closing
    the generalization gap in large batch training of neural networks. NeurIPS 2017.

    P. Goyal et al. (2017). Accurate, large minibatch SGD: Training ImageNet in 1 hour.
    arXiv:1706.02677.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

__all__ = ["PROTOCOLS", "ROLES", "SHARED", "cells_of", "protocol_regimes", "regime_label"]

PROTOCOLS: dict[str, str] = {
    "E": "equal epochs",
    "U": "equal updates",
    "C": "until convergence",
    "L": "learning rate scaled with B",
}
"""Protocol letter → what it holds equal, in the order the answers go through them."""

ROLES: tuple[str, ...] = ("SB", "MB", "LB")
"""The batch-size roles: small, middle and large."""

SHARED: dict[str, tuple[str, ...]] = {"SB": ("E", "U", "L")}
"""Roles whose E run is also their run in other protocols (the same network)."""


def regime_label(protocol: str, role: str) -> str:
    """The regime label of a protocol's role: E's are the bare role, others prefixed.

    Args:
        protocol: One of :data:`PROTOCOLS`.
        role: One of :data:`ROLES`.

    Returns:
        The label (``"LB"``, ``"U-LB"``, ...); a role that :data:`SHARED` gives to the
        protocol is its E label.

    Raises:
        ValueError: For an unknown protocol or role.

    Examples:
        >>> regime_label("E", "LB"), regime_label("U", "LB"), regime_label("U", "SB")
        ('LB', 'U-LB', 'SB')
    """
    if protocol not in PROTOCOLS or role not in ROLES:
        raise ValueError(f"no cell {protocol!r} × {role!r}; protocols {list(PROTOCOLS)}, "
                         f"roles {list(ROLES)}")  # fmt: skip
    if protocol == "E" or protocol in SHARED.get(role, ()):
        return role
    return f"{protocol}-{role}"


def cells_of(label: str) -> tuple[tuple[str, str], ...]:
    """The (protocol, role) cells a regime label stands for.

    Args:
        label: A regime label of :func:`regime_label`.

    Returns:
        Its cells, in :data:`PROTOCOLS` order; none for a label of another study.

    Examples:
        >>> cells_of("SB"), cells_of("C-MB"), cells_of("B64")
        ((('E', 'SB'), ('U', 'SB'), ('L', 'SB')), (('C', 'MB'),), ())
    """
    if label in ROLES:
        shared = SHARED.get(label, ())
        return tuple((p, label) for p in PROTOCOLS if p == "E" or p in shared)
    protocol, _, role = label.partition("-")
    if protocol in PROTOCOLS and protocol != "E" and role in ROLES:
        if protocol in SHARED.get(role, ()):
            return ()
        return ((protocol, role),)
    return ()


def protocol_regimes(
    optimizer: Mapping[str, Any],
    batch_sizes: Mapping[str, int],
    *,
    n_train: int,
    epochs: int,
    target_loss: float,
    c_epochs: int,
    warmup_epochs: float,
    roles: tuple[str, ...] = ("SB", "MB", "LB"),
) -> dict[str, dict[str, Any]]:
    """The regimes of one optimizer under the four protocols.

    Args:
        optimizer: ``optimizer`` and ``lr`` (the rate for SB), with ``momentum`` for SGD.
        batch_sizes: Role → batch size in examples (``SB`` among them).
        n_train: Training examples (U's budget is ``epochs × ⌊n_train / B_SB⌋`` updates).
        epochs: E's and L's epochs.
        target_loss: C's training-loss threshold.
        c_epochs: C's epoch cap.
        warmup_epochs: L's linear warm-up for SGD.
        roles: The roles trained (``SB`` and ``LB`` at least).

    Returns:
        Regime label (:func:`~flatness.studies.hoffer2017_protocols.regime_label`) →
        settings overriding the case's training settings; cells that are another
        cell's network (SB under U and L) appear once.

    Examples:
        >>> adam = {"optimizer": "adam", "lr": 1e-3}
        >>> r = protocol_regimes(adam, {"SB": 10, "LB": 100}, n_train=500, epochs=2,
        ...                      target_loss=0.5, c_epochs=10, warmup_epochs=1.0,
        ...                      roles=("SB", "LB"))
        >>> r["U-LB"], round(r["L-LB"]["lr"], 6)
        ({'batch_size': 100, 'epochs': None, 'max_updates': 100}, 0.003162)
    """
    small = batch_sizes["SB"]
    updates = epochs * (n_train // small)
    sgd = optimizer["optimizer"] == "sgd"
    cells: dict[str, dict[str, Any]] = {}
    for protocol in PROTOCOLS:
        for role in roles:
            label = regime_label(protocol, role)
            if label in cells:
                continue
            batch = batch_sizes[role]
            cell: dict[str, Any] = {"batch_size": batch, "epochs": epochs}
            if protocol == "U":
                cell.update(epochs=None, max_updates=updates)
            elif protocol == "C":
                cell.update(epochs=c_epochs, target_loss=target_loss)
            elif protocol == "L" and sgd:
                cell.update(schedule="linear_scaling", reference_batch_size=small,
                            warmup_epochs=warmup_epochs)  # fmt: skip
            elif protocol == "L":
                cell["lr"] = float(optimizer["lr"]) * math.sqrt(batch / small)
            cells[label] = cell
    return cells
