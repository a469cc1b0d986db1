"""The common base of every result that an estimator returns.

Every estimator in flatness returns a frozen dataclass deriving from :class:`Result`.
Results carry their own evidence (products spent, seconds, convergence flags and
error bars) and convert to plain Python for pandas and the results store.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np
import torch


def to_plain(value: Any) -> Any:
    """Convert tensors, arrays and nested containers to plain Python objects.

    Examples:
        >>> to_plain({"a": torch.tensor([1.0, 2.0]), "b": (np.float64(3.0),)})
        {'a': [1.0, 2.0], 'b': [3.0]}
    """
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu()
        return value.item() if value.ndim == 0 else value.tolist()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, torch.dtype | torch.device):
        return str(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {str(k): to_plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_plain(v) for v in value]
    return value


@dataclasses.dataclass(frozen=True)
class Result:
    """Base class of all result dataclasses: adds :meth:`to_dict`."""

    def to_dict(self, *, include_arrays: bool = True) -> dict[str, Any]:
        """Return the fields as plain Python values.

        Args:
            include_arrays: When false, fields declared with ``repr=False`` (large arrays
                such as eigenvectors) are left out.
        """
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            if not include_arrays and not f.repr:
                continue
            out[f.name] = to_plain(getattr(self, f.name))
        return out


def format_float(x: float, digits: int = 6) -> str:
    """Format a float compactly for ``repr`` (``nan`` stays readable)."""
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "nan"
    return f"{x:.{digits}g}"
