"""The result of an interpolation between two checkpoints (Keskar's parametric plot).

:func:`~flatness.sharpness.interpolation.interpolate_checkpoints` evaluates the loss and
accuracy along a path; :class:`InterpolationResult` holds the curves, honours the result
contract (its ``value`` is the loss barrier of the training loss; Frankle et al. 2020,
Entezari et al. 2022) and turns into a tidy frame for plots and the store.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from flatness.results import format_float
from flatness.sharpness.contract import (
    ForwardPassesOnly,
    NoConvergenceTest,
    NoErrorBar,
    SharpnessResult,
)
from flatness.sharpness.paths import BatchNormMode, InterpolationPath

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["InterpolationResult"]


@dataclass(frozen=True, eq=False)
class InterpolationResult(ForwardPassesOnly, NoConvergenceTest, NoErrorBar, SharpnessResult):
    """Loss and accuracy along a path between two checkpoints.

    Besides the fields below it has the result contract's names: ``value`` (the loss
    barrier of the training loss, see :mod:`flatness.sharpness.interpolation`), ``stderr`` (NaN),
    ``converged`` (``True``), ``gradients`` and ``matvecs`` (0),
    ``gradient_equivalents`` (NaN: the passes run over two data sets of different
    sizes) and ``settings``.

    Attributes:
        alphas: The path coordinates :math:`\\alpha` (0 is the start, 1 the end).
        train_loss: Mean training loss at each :math:`\\alpha`.
        train_accuracy: Training accuracy at each :math:`\\alpha` (``None`` when the
            targets are not integer class labels).
        test_loss: Mean test loss at each :math:`\\alpha` (``None`` without a test set).
        test_accuracy: Test accuracy at each :math:`\\alpha` (``None`` without a test set
            or class labels).
        path: ``"linear"`` or ``"curvilinear"``.
        bn: ``"interpolate"`` or ``"recompute"``: how running statistics were set.
        seconds: Wall-clock seconds.
        evaluations: Full passes over a data set: one per :math:`\\alpha` and split, plus
            one over the training data per :math:`\\alpha` when statistics are recomputed.
        clamped_alphas: The :math:`\\alpha` at which an interpolated running variance was
            negative (possible when extrapolating) and was clamped to zero.
        num_train: Training examples evaluated.
        num_test: Test examples evaluated (0 without a test set).
        device: Where the points were evaluated.
        dtype: The floating dtype of the evaluation.
        batch_size: Examples per forward pass.
    """

    alphas: np.ndarray = field(repr=False)
    train_loss: np.ndarray = field(repr=False)
    train_accuracy: np.ndarray | None = field(repr=False)
    test_loss: np.ndarray | None = field(repr=False)
    test_accuracy: np.ndarray | None = field(repr=False)
    path: InterpolationPath
    bn: BatchNormMode
    seconds: float
    evaluations: int
    clamped_alphas: tuple[float, ...] = ()
    num_train: int = 0
    num_test: int = 0
    device: str = "cpu"
    dtype: str = "float32"
    batch_size: int = 1024

    @property
    def value(self) -> float:
        """The loss barrier of the training loss between the endpoints (see the module doc).

        NaN when :math:`\\alpha = 0` or :math:`\\alpha = 1` was not evaluated.
        """
        alphas = np.asarray(self.alphas, dtype=np.float64)
        tol = 1e-12
        ends = [np.flatnonzero(np.abs(alphas - a) <= tol) for a in (0.0, 1.0)]
        if any(e.size == 0 for e in ends):
            return math.nan
        loss0, loss1 = (float(self.train_loss[e[0]]) for e in ends)
        inside = (alphas >= -tol) & (alphas <= 1.0 + tol)
        line = (1.0 - alphas[inside]) * loss0 + alphas[inside] * loss1
        return float(np.nanmax(self.train_loss[inside] - line))

    @property
    def gradient_equivalents(self) -> float:
        """NaN: ``evaluations`` counts passes over the training and the test set alike."""
        return math.nan

    @property
    def settings(self) -> dict[str, Any]:
        """The keyword arguments that reproduce this result with :func:`interpolate_checkpoints`.

        The checkpoints, the data and ``loss_fn`` are the call's inputs, not settings.
        """
        return {
            "alphas": [float(a) for a in self.alphas],
            "path": self.path,
            "bn": self.bn,
            "batch_size": self.batch_size,
            "device": self.device,
            "dtype": getattr(torch, self.dtype),
        }

    def to_frame(self) -> pd.DataFrame:
        """A tidy :class:`pandas.DataFrame` with columns ``alpha, split, metric, value``.

        Returns:
            One row per :math:`\\alpha`, split (``"train"``/``"test"``) and metric
            (``"loss"``/``"accuracy"``); missing series are left out.
        """
        import pandas as pd

        series = {
            ("train", "loss"): self.train_loss,
            ("train", "accuracy"): self.train_accuracy,
            ("test", "loss"): self.test_loss,
            ("test", "accuracy"): self.test_accuracy,
        }
        rows = [
            {"alpha": float(a), "split": split, "metric": metric, "value": float(v)}
            for (split, metric), values in series.items()
            if values is not None
            for a, v in zip(self.alphas, values, strict=True)
        ]
        return pd.DataFrame(rows, columns=["alpha", "split", "metric", "value"])

    def __repr__(self) -> str:
        parts = [
            f"path={self.path!r}",
            f"bn={self.bn!r}",
            f"points={len(self.alphas)}",
            f"alpha=[{format_float(float(self.alphas.min()))}, "
            f"{format_float(float(self.alphas.max()))}]",
            f"train_loss=[{format_float(float(np.nanmin(self.train_loss)))}, "
            f"{format_float(float(np.nanmax(self.train_loss)))}]",
        ]
        if self.test_loss is not None:
            parts.append(
                f"test_loss=[{format_float(float(np.nanmin(self.test_loss)))}, "
                f"{format_float(float(np.nanmax(self.test_loss)))}]"
            )
        if self.clamped_alphas:
            parts.append(f"clamped={len(self.clamped_alphas)}")
        parts += [f"evaluations={self.evaluations}", f"seconds={format_float(self.seconds, 3)}"]
        return f"InterpolationResult({', '.join(parts)})"
