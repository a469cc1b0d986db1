"""Moved: the loss/accuracy evaluation now lives in :mod:`flatness.evaluation`.

This module re-exports :func:`~flatness.evaluation.mean_loss_and_accuracy` and
:func:`~flatness.evaluation.xy_pair` so that the old import path keeps working.
"""

from flatness.evaluation import mean_loss_and_accuracy, xy_pair

__all__ = ["mean_loss_and_accuracy", "xy_pair"]
