"""The published values of Keskar et al. (ICLR 2017), Tables 2, 3 and 4.

The package ships them as ``flatness/data/keskar2017.csv``: mean and standard deviation
over five runs of the training and test accuracy (%, Table 2) and of ε-sharpness
(Metric 2.1, ×100, 10 L-BFGS-B iterations) in full space (Table 3) and in a random
100-dimensional subspace (Table 4), for SB (256 examples) and LB (10% of the training
set) runs of the networks F1, F2, C1–C4. A report can show them beside its own
numbers so readers compare the shape (who is sharper, by how much), not the scale:
the paper's networks and data sets are larger than the built-in ones.

Reference:
    N. S. Keskar, D. Mudigere, J. Nocedal, M. Smelyanskiy and P. T. P. Tang (2017).
    On large-batch training for deep learning: Generalization gap and sharp minima.
    ICLR 2017 (arXiv:1609.04836v2), Tables 2-4.
"""

from __future__ import annotations

import io
from functools import lru_cache
from importlib import resources

import pandas as pd

DASH = "—"
"""What a table shows where there is no value."""

__all__ = ["KESKAR_NETWORKS", "keskar_reference", "keskar_value", "paper_text"]

KESKAR_NETWORKS = ("F1", "F2", "C1", "C2", "C3", "C4")
"""The paper's networks (F1: MNIST, F2: TIMIT, C1/C2: CIFAR-10, C3/C4: CIFAR-100)."""


@lru_cache(maxsize=1)
def _table() -> pd.DataFrame:
    text = resources.files("flatness").joinpath("data/keskar2017.csv").read_text("utf-8")
    return pd.read_csv(io.StringIO(text), comment="#", dtype={"eps": str})


def keskar_reference(network: str | None = None) -> pd.DataFrame:
    """The paper's Tables 2-4 as a tidy frame.

    Args:
        network: One of :data:`KESKAR_NETWORKS` (case-insensitive), or ``None`` for all.

    Returns:
        Columns ``network``, ``dataset``, ``table`` (2, 3 or 4), ``quantity``
        (``train_accuracy``, ``test_accuracy`` in %, or ``sharpness``), ``eps`` (float,
        NaN for accuracies), ``regime`` (SB/LB), ``mean`` and ``std``.

    Raises:
        ValueError: For a network the paper does not have.

    Examples:
        >>> ref = keskar_reference("F1")
        >>> row = ref[(ref.table == 3) & (ref.eps == 1e-3) & (ref.regime == "LB")]
        >>> float(row["mean"].iloc[0]), float(row["std"].iloc[0])
        (205.14, 69.52)
    """
    table = _table().copy()
    table["eps"] = pd.to_numeric(table["eps"])
    if network is None:
        return table
    name = network.upper()
    if name not in KESKAR_NETWORKS:
        raise ValueError(
            f"reference={network!r}: Keskar et al. report the networks {list(KESKAR_NETWORKS)}"
        )
    return table[table["network"] == name].reset_index(drop=True)


def keskar_value(
    network: str | None,
    table: int,
    regime: str | None,
    *,
    quantity: str | None = None,
    eps: float | None = None,
) -> tuple[float, float] | None:
    """One published value of Keskar et al.: its mean and standard deviation.

    Args:
        network: The paper's network (:data:`KESKAR_NETWORKS`), or ``None``.
        table: The paper's table: 2 (accuracies), 3 (ε-sharpness in full space) or 4
            (in a 100-dimensional subspace).
        regime: ``"SB"`` or ``"LB"`` (``None``: no value).
        quantity: ``"train_accuracy"``, ``"test_accuracy"`` or ``"sharpness"`` (``None``:
            any).
        eps: The ε of a sharpness value (``None``: any).

    Returns:
        ``(mean, std)`` as printed in the paper, or ``None`` when ``network`` or
        ``regime`` is ``None`` or the paper has no such value.

    Raises:
        ValueError: For a network the paper does not have.

    Examples:
        >>> keskar_value("F1", 3, "LB", eps=1e-3), keskar_value("F1", 3, "LB", eps=0.1)
        ((205.14, 69.52), None)
    """
    if network is None or regime is None:
        return None
    ref = keskar_reference(network)
    rows = ref[(ref["table"] == table) & (ref["regime"] == regime)]
    if quantity is not None:
        rows = rows[rows["quantity"] == quantity]
    if eps is not None:
        rows = rows[(rows["eps"] - eps).abs() <= 1e-12 * max(1.0, abs(eps))]
    if rows.empty:
        return None
    return float(rows["mean"].iloc[0]), float(rows["std"].iloc[0])


def paper_text(value: tuple[float, float] | None) -> str:
    """A published value as the paper prints it, ``mean ± std``, or a dash.

    Returns:
        ``"205.14 ± 69.52"``, or ``"—"`` for ``None``.
    """
    return DASH if value is None else f"{value[0]:.2f} ± {value[1]:.2f}"
