"""A PyTorch Lightning callback that runs a :class:`~flatness.tracking.tracker.Tracker`.

Lightning is an optional extra (``pip install 'flatness[lightning]'``); this module
imports it and says how to install it when it is missing. The callback is a thin
wrapper: at the start of training (step 0, before any update) and after every
training batch it calls :meth:`Tracker.update` with the
trainer's step (optimizer updates so far), the fractional epoch, the learning rate and
momentum of the first optimizer's first parameter group, the optimizer's name, the
batch's size and its loss; at the end of every epoch it calls it again with
``epoch_end=True`` (the ``every="epoch"`` cadence), and at the end of training once
more with ``force=True`` when ``final`` is set.

Examples:
    >>> import torch, flatness as fl
    >>> from flatness.tracking.lightning import FlatnessCallback
    >>> X, y = torch.randn(32, 4), torch.randint(0, 3, (32,))
    >>> callback = FlatnessCallback(fl.Tracker((X, y), every="epoch"))
    >>> callback.tracker.cadence.every
    'epoch'
"""

from __future__ import annotations

from typing import Any

from torch import Tensor

from flatness.curvature.batches import batch_size_of
from flatness.tracking.tracker import Tracker

try:
    from lightning.pytorch import Callback, LightningModule, Trainer
except ImportError:  # pragma: no cover - depends on what is installed
    try:
        from pytorch_lightning import (  # type: ignore[assignment]
            Callback,
            LightningModule,
            Trainer,
        )
    except ImportError as exc:
        raise ImportError(
            "flatness.tracking.lightning needs PyTorch Lightning: pip install "
            "'flatness[lightning]' (or pip install lightning); the plain-PyTorch "
            "fl.Tracker needs nothing more"
        ) from exc

__all__ = ["FlatnessCallback", "optimizer_fields"]


def optimizer_fields(trainer: Trainer) -> dict[str, Any]:
    """The learning rate, momentum and optimizer name of the trainer's first optimizer.

    Returns:
        ``{"lr": ..., "momentum": ..., "optimizer": ...}`` from the first parameter
        group (momentum: SGD's ``momentum``, else the first of Adam's ``betas``, else
        0); ``{}`` when the trainer has no optimizer.
    """
    if not trainer.optimizers:
        return {}
    optimizer = trainer.optimizers[0]
    group = optimizer.param_groups[0]
    betas = group.get("betas")
    momentum = group.get("momentum", betas[0] if betas else 0.0)
    return {
        "lr": float(group["lr"]),
        "momentum": float(momentum),
        "optimizer": type(optimizer).__name__.lower(),
    }


def _loss(outputs: Any) -> Tensor | float | None:
    if isinstance(outputs, Tensor):
        return outputs.detach()
    if isinstance(outputs, dict) and isinstance(outputs.get("loss"), Tensor):
        return outputs["loss"].detach()
    return None


class FlatnessCallback(Callback):  # type: ignore[misc]
    """Track sharpness during a Lightning fit with a :class:`Tracker`.

    Args:
        tracker: The tracker (its data, measures, cadence and store); its ``loss_fn``
            is applied to the LightningModule's ``forward`` output.
        final: Also measure once at the end of training, whatever the cadence.
        **extra: Fields copied into every record (``regime="SB"``, ``seed=0``, ...).
    """

    def __init__(self, tracker: Tracker, *, final: bool = True, **extra: Any) -> None:
        super().__init__()
        self.tracker = tracker
        self.final = final
        self.extra = extra
        self._batch_size: int | None = None
        self._epoch = 0.0

    def _update(
        self,
        trainer: Trainer,
        module: LightningModule,
        *,
        epoch: float,
        loss: Tensor | float | None = None,
        epoch_end: bool = False,
        force: bool = False,
    ) -> None:
        self.tracker.update(
            module,
            step=int(trainer.global_step),
            epoch=epoch,
            batch_size=self._batch_size,
            epoch_end=epoch_end,
            loss=loss,
            force=force,
            **optimizer_fields(trainer),
            **self.extra,
        )

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Call the tracker before the first update (the cadences measure step 0)."""
        self._update(trainer, pl_module, epoch=float(trainer.current_epoch))

    def on_train_batch_end(
        self,
        trainer: Trainer,
        pl_module: LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
    ) -> None:
        """Call the tracker after each training batch (it measures when due)."""
        self._batch_size = batch_size_of(batch)
        batches = trainer.num_training_batches
        fraction = (batch_idx + 1) / batches if isinstance(batches, int) and batches else 0.0
        self._epoch = trainer.current_epoch + fraction
        self._update(trainer, pl_module, epoch=self._epoch, loss=_loss(outputs))

    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Call the tracker at the end of each epoch (``every="epoch"`` measures here)."""
        self._update(trainer, pl_module, epoch=trainer.current_epoch + 1.0, epoch_end=True)

    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Measure once more at the end of training (``final=True``)."""
        if self.final:
            last = self.tracker.records[-1]["step"] if self.tracker.records else None
            if last != trainer.global_step:
                self._update(trainer, pl_module, epoch=self._epoch, force=True)
