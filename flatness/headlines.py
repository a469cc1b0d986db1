"""Each measure's headline value per checkpoint, under a readable label.

A results frame (:func:`flatness.load_results`) holds one row per checkpoint × measure
× settings × component. Its *headline* view keeps one number per checkpoint and
column, a column being a measure scored with one set of settings:

- the headline of a measure is its single value (component ``""``), else its first
  component (``"1"``: the largest eigenvalue of ``lambda_max``; ``"trace"``: the
  SLQ trace), else the first component by number;
- its label names the measure readably and the settings that tell its columns apart:
  ``ε-sharpness (full, ε=1e-3)``, ``adaptive sharpness (ρ=0.05)``, ``λ_max``; a
  measure flatness does not know (a registered one) keeps its own name.

The table ``flatness score`` prints (:func:`flatness.pipeline.summary_table`) and every
report's score tables and ``scores.csv`` are made from these two functions
(:func:`scores_frame`, :func:`wide_scores`), so they name and order columns alike.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

__all__ = [
    "DISPLAY_NAMES",
    "NOT_SHARPNESS",
    "RESERVED_LABELS",
    "Column",
    "format_setting",
    "measure_label",
    "scores_frame",
    "wide_scores",
]

DISPLAY_NAMES: dict[str, str] = {
    "lambda_max": "λ_max",
    "trace": "trace",
    "density": "spectral density",
    "keskar": "ε-sharpness",
    "adaptive_sharpness": "adaptive sharpness",
    "average_sharpness": "average sharpness",
    "pacbayes": "PAC-Bayes 1/σ²",
    "noise_scale": "noise scale B_simple",
    "gradient_norm": "gradient norm",
    "weight_norm": "weight norm",
}
"""How a measure is called in a report (others keep their own name)."""

NOT_SHARPNESS = frozenset({"noise_scale", "gradient_norm", "weight_norm"})
"""Measures that are scored and correlated but are not a sharpness (higher is not sharper)."""

FIGURES = frozenset({"density"})
"""Measures shown as figures, not as a headline number."""

RUN_COLUMNS = ("regime", "batch_size", "lr", "seed", "epoch", "path")
"""A checkpoint's run metadata in a results frame."""
ACCURACY_COLUMNS = ("train_loss", "train_accuracy", "test_loss", "test_accuracy")
"""A checkpoint's evaluated loss and accuracy in a results frame."""

RESERVED_LABELS = frozenset(
    {"checkpoint", "generalization_gap", "test accuracy", "generalization gap", "status"}
    | set(RUN_COLUMNS)
    | set(ACCURACY_COLUMNS)
)
"""Names a measure column may not take (they name run columns); such a measure's label
gets `` (measure)`` appended."""

_SYMBOLS = {"eps": "ε", "rho": "ρ", "sigma": "σ"}
_HEADLINE_COMPONENTS = ("", "1", "trace")


@dataclass(frozen=True)
class Column:
    """One scalar measure column of a score table.

    Attributes:
        label: The readable name, e.g. ``ε-sharpness (subspace 100, ε=5e-4)``.
        measure: The store's measure name (``keskar``).
        settings: The settings it was scored with.
        sharpness: Whether higher means sharper (False for the noise scale).
    """

    label: str
    measure: str
    settings: Mapping[str, Any]
    sharpness: bool

    @property
    def eps(self) -> float | None:
        """Keskar's ε, for ``keskar`` columns."""
        value = self.settings.get("eps")
        return float(value) if isinstance(value, int | float) else None

    @property
    def subspace(self) -> int:
        """The random subspace's dimension of a ``keskar`` column (0 = full space)."""
        value = self.settings.get("subspace", self.settings.get("subspace_dim")) or 0
        return int(value)


def format_setting(value: Any) -> str:
    """A setting's value as a label shows it.

    Returns:
        Small and large floats in short scientific notation (``1e-3``), other floats
        with ``%g``, anything else as ``str``.

    Examples:
        >>> format_setting(0.001), format_setting(5e-4), format_setting(0.05), format_setting(True)
        ('1e-3', '5e-4', '0.05', 'True')
    """
    if isinstance(value, float):
        if value != 0 and (abs(value) < 0.01 or abs(value) >= 1e5):
            mantissa, exponent = f"{value:.6e}".split("e")
            mantissa = mantissa.rstrip("0").rstrip(".")
            return f"{mantissa}e{int(exponent)}"
        return f"{value:g}"
    return str(value)


def measure_label(measure: str, settings: Mapping[str, Any], varied: Sequence[str] = ()) -> str:
    """The readable label of a measure scored with ``settings``.

    Keskar's ε-sharpness always names its space and ε (they are the paper's table
    axes); other measures name the settings in ``varied`` (those that differ between
    the measure's columns).

    Args:
        measure: The store's measure name.
        settings: The settings it was scored with.
        varied: The settings to name.

    Returns:
        The label, e.g. ``adaptive sharpness (ρ=0.05)``.

    Examples:
        >>> measure_label("keskar", {"eps": 1e-3, "subspace": 100})
        'ε-sharpness (subspace 100, ε=1e-3)'
        >>> measure_label("adaptive_sharpness", {"rho": 0.05, "p": 2}, ("rho",))
        'adaptive sharpness (ρ=0.05)'
        >>> measure_label("my_measure", {"width": 3}, ("width",))
        'my_measure (width=3)'
    """
    name = DISPLAY_NAMES.get(measure, measure)
    parts = []
    if measure == "keskar":
        dim = int(settings.get("subspace", settings.get("subspace_dim")) or 0)
        parts.append(f"subspace {dim}" if dim else "full")
        if "eps" in settings:
            parts.append(f"ε={format_setting(settings['eps'])}")
        varied = tuple(k for k in varied if k not in ("eps", "subspace", "subspace_dim"))
    for key in varied:
        if key in settings:
            parts.append(f"{_SYMBOLS.get(key, key)}={format_setting(settings[key])}")
    return f"{name} ({', '.join(parts)})" if parts else name


def _headline(group: pd.DataFrame) -> pd.DataFrame:
    components = set(group["component"])
    for name in _HEADLINE_COMPONENTS:
        if name in components:
            return group[group["component"] == name]

    def order(name: str) -> tuple[int, float, str]:
        try:
            return (0, float(name), name)
        except ValueError:
            return (1, 0.0, name)

    first = min(components, key=order)
    return group[group["component"] == first]


def scores_frame(df: pd.DataFrame) -> tuple[pd.DataFrame, list[Column]]:
    """The headline value of every scalar measure per checkpoint.

    Args:
        df: A results frame with ``checkpoint``, ``measure``, ``settings`` (canonical
            JSON text, as the store keeps it), ``component`` and ``value`` columns.

    Returns:
        ``(scores, columns)``: ``scores`` has one row per checkpoint × column with the
        frame's columns and ``label`` (non-finite values become NaN, counted by the
        report); ``columns`` lists the :class:`Column` objects in display order
        (Keskar's ε-sharpness first: full space, then subspaces, ε descending; then the
        built-in measures; then others by label).
    """
    scalar = df[~df["measure"].isin(FIGURES)]
    if scalar.empty:
        return pd.DataFrame(columns=["checkpoint", "label", "value"]), []
    parts = []
    columns: list[Column] = []
    for measure, rows in scalar.groupby("measure", sort=True):
        parsed = {key: json.loads(key) for key in rows["settings"].unique()}
        keys = sorted({k for d in parsed.values() for k in d})
        varied = tuple(
            k
            for k in keys
            if len({json.dumps(d.get(k), sort_keys=True) for d in parsed.values()}) > 1
        )
        for key, group in rows.groupby("settings", sort=True):
            settings = parsed[str(key)]
            label = measure_label(str(measure), settings, varied)
            if label in RESERVED_LABELS:
                label = f"{label} (measure)"
            columns.append(Column(label, str(measure), settings, measure not in NOT_SHARPNESS))
            head = _headline(group).drop_duplicates("checkpoint").copy()
            head["label"] = label
            parts.append(head)
    scores = pd.concat(parts, ignore_index=True)
    scores["value"] = scores["value"].where(np.isfinite(scores["value"].astype(float)))
    columns.sort(key=_column_order)
    return scores, columns


def _column_order(column: Column) -> tuple[Any, ...]:
    rank = list(DISPLAY_NAMES).index(column.measure) if column.measure in DISPLAY_NAMES else 99
    if column.measure == "keskar":
        rank = -1
    return (rank, column.subspace, -(column.eps or 0.0), column.label)


def wide_scores(
    scores: pd.DataFrame, columns: Sequence[Column], checkpoints: pd.Series | Sequence[str]
) -> pd.DataFrame:
    """``scores`` as one row per checkpoint and one column per label.

    Args:
        scores: The first frame :func:`scores_frame` returns.
        columns: The columns it returns (their order is kept).
        checkpoints: The checkpoints, in the order of the rows.

    Returns:
        A frame indexed by checkpoint; a measure that is missing or non-finite for a
        checkpoint is NaN.
    """
    labels = [c.label for c in columns]
    if scores.empty:
        return pd.DataFrame(np.nan, index=pd.Index(list(checkpoints)), columns=labels)
    wide = scores.pivot_table(
        index="checkpoint", columns="label", values="value", aggfunc="first", dropna=False
    )
    return wide.reindex(index=list(checkpoints), columns=labels)
