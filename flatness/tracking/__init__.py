"""Sharpness during training: a tracker for any training loop, and its integrations.

Research code builds a :class:`Tracker` once and calls :meth:`Tracker.update` in its
loop; the tracker measures at a cadence (:mod:`~flatness.tracking.cadence`), cheaply
(:mod:`~flatness.tracking.measures`: warm-started eigenvalues, common random probes),
without disturbing the loop (:mod:`~flatness.tracking.loop_state`), and writes one
record per measured step (:mod:`~flatness.tracking.records`) to memory and to the
results store's ``tracks`` table (:func:`flatness.load_tracks`). The PyTorch Lightning
callback (:mod:`flatness.tracking.lightning`, imported on first use: Lightning is an
optional extra) and ``flatness train``'s ``[track]`` table
(:mod:`flatness.tracking.training`) wrap the same tracker.

Examples:
    >>> import torch, flatness as fl
    >>> net = torch.nn.Linear(3, 2)
    >>> X, y = torch.randn(32, 3), torch.randint(0, 2, (32,))
    >>> with fl.Tracker((X, y), every=10) as tracker:
    ...     rec = tracker.update(net, step=0, lr=0.1, batch_size=32)
    >>> rec["lambda_max_converged"], rec["stability_threshold"]
    (1, 20.0)
"""

from flatness.tracking.cadence import DEFAULT_EVERY, Cadence, log_spaced_after
from flatness.tracking.loop_state import loop_state_kept
from flatness.tracking.measures import TRACKED_MEASURES, tracked_measures
from flatness.tracking.records import hyperparameter_fields, measure_fields, stability_threshold
from flatness.tracking.tracker import Tracker

__all__ = [
    "DEFAULT_EVERY",
    "TRACKED_MEASURES",
    "Cadence",
    "FlatnessCallback",
    "Tracker",
    "hyperparameter_fields",
    "log_spaced_after",
    "loop_state_kept",
    "measure_fields",
    "stability_threshold",
    "tracked_measures",
]


def __getattr__(name: str) -> object:
    # The Lightning callback imports Lightning, an optional extra: only when asked for.
    if name == "FlatnessCallback":
        from flatness.tracking.lightning import FlatnessCallback

        return FlatnessCallback
    raise AttributeError(f"module 'flatness.tracking' has no attribute {name!r}")
