"""Train one reference network on one data set and write checkpoints with metadata.

The protocols of the two papers the toolkit reproduces are both available:

* Keskar et al. (ICLR 2017): Adam, a constant learning rate, small (SB) versus large
  (LB, 10% of the training set) batches, trained until the training accuracy reaches
  a target (98%) or an epoch cap.
* Smith et al. (ICLR 2018, "Don't decay the learning rate, increase the batch size"):
  SGD with momentum and a ``"step"`` schedule (divide the learning rate by ``factor``
  at each milestone epoch) or the equivalent ``"batch_increase"`` schedule (multiply
  the batch size by ``factor`` instead; once it would exceed its cap,
  ``max_batch_fraction`` of the training set, the remainder of the factor decays the
  learning rate). :mod:`flatness.zoo.schedules` has these and the others
  (``"constant_noise"``, ``"linear_scaling"`` with warm-up).

Every epoch appends a record to ``meta["history"]`` (:data:`HISTORY_FIELDS`): the
update and example counts, learning rate, batch size and momentum, the training
loss and accuracy, and the test loss and accuracy. ``on_step`` sees every update
(a :class:`flatness.Tracker` plugs in there).

Updates use full batches only (the last partial batch of an epoch is dropped), so
every update sees exactly ``batch_size`` examples. Training is deterministic for a
seed: the initialisation, the shuffling (a seeded :class:`torch.Generator`) and
dropout (a forked, seeded global generator) are all seeded; on accelerators
:func:`torch.use_deterministic_algorithms` is on while training (CPU kernels are
deterministic already).

Checkpoints are written by :mod:`flatness.zoo.checkpoint`. Training runs on the
intra-op thread count of :func:`flatness.threads.threads_for` (one thread for small
networks and batches) unless ``threads`` says otherwise.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from flatness.dataset import Dataset
from flatness.evaluation import evaluate
from flatness.results import Meter
from flatness.threads import intra_op_threads, threads_for
from flatness.versions import package_versions
from flatness.zoo.checkpoint import META_FORMAT, plain_meta, save_checkpoint
from flatness.zoo.config import TrainConfig, resolve_batch_size, scheduled
from flatness.zoo.data import load_dataset
from flatness.zoo.factories import is_factory_spec
from flatness.zoo.manifests import MANIFEST_NAME, run_name, write_manifest
from flatness.zoo.networks import build_network, load_network_factory, seeded

BUILD_NETWORK = "flatness.zoo.networks:build_network"

StepHook = Callable[[nn.Module, dict[str, Any]], None]
"""``on_step(model, fields)``: called at step 0 and after every update (see
:func:`train_network`)."""

HISTORY_FIELDS = {
    "epoch": "epochs done",
    "updates": "updates so far",
    "examples_seen": "training examples the updates have seen",
    "lr": "learning rate at the epoch's first update (a warm-up raises it within the epoch)",
    "batch_size": "examples per update in the epoch",
    "lr_over_batch": "lr / batch_size",
    "momentum": "SGD's momentum, or Adam's first beta",
    "optimizer": "'sgd', 'sgd_nesterov' or 'adam'",
    "train_loss": "training loss as fit_on says",
    "train_accuracy": "training accuracy as fit_on says",
    "fit_on": "'epoch_average' (running mean over the epoch's updates, train mode) or "
    "'full_train' (a pass over the training set in eval mode after the epoch)",
    "test_loss": "test loss, a pass over the test set in eval mode after the epoch",
    "test_accuracy": "test accuracy, likewise",
    "running_loss": "mean loss of the epoch's updates (train mode, before each update)",
    "running_accuracy": "accuracy of the epoch's updates, likewise",
    "nonfinite": "1 when the epoch's running loss was NaN or infinite",
    "seconds": "wall seconds since training started",
}
"""The fields of each per-epoch record in ``meta["history"]``, with their meaning."""


@dataclass(frozen=True, eq=False)
class TrainResult:
    """What :func:`train_network` returns.

    Attributes:
        model: The trained network (in eval mode).
        meta: The metadata written with the final checkpoint.
        checkpoint: The final checkpoint, or ``None`` when nothing was written.
        checkpoints: Every checkpoint written, periodic ones first.
        manifest: The manifest written next to the checkpoints, if any.
    """

    model: nn.Module
    meta: dict[str, Any]
    checkpoint: Path | None = None
    checkpoints: tuple[Path, ...] = ()
    manifest: Path | None = None

    def to_dict(self) -> dict[str, Any]:
        """The metadata plus the paths written, as plain types."""
        out = dict(self.meta)
        out["checkpoint"] = None if self.checkpoint is None else str(self.checkpoint)
        out["manifest"] = None if self.manifest is None else str(self.manifest)
        return out

    def __repr__(self) -> str:
        m = self.meta
        return (
            f"TrainResult(regime={m.get('regime', '')!r}, batch_size={m['batch_size']}, "
            f"epoch={m['epoch']}, updates={m['updates']}, "
            f"train_accuracy={m['train_accuracy']:.4f}, test_accuracy={m['test_accuracy']:.4f}, "
            f"reached_target={m['reached_target']}, checkpoint={self.checkpoint})"
        )


@contextmanager
def _deterministic(device: torch.device) -> Iterator[None]:
    """Deterministic kernels while training on an accelerator.

    CPU kernels used here are deterministic already, and switching the flag imports
    ``torch._inductor`` (seconds), so the flag is left alone on CPU.
    """
    if device.type == "cpu":
        yield
        return
    previous = torch.are_deterministic_algorithms_enabled()
    previous_warn = torch.is_deterministic_algorithms_warn_only_enabled()
    torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(previous, warn_only=previous_warn)


def _model_spec(config: TrainConfig, data: Dataset) -> dict[str, Any]:
    if is_factory_spec(config.network):
        return {"factory": config.network, "kwargs": dict(config.network_kwargs)}
    kwargs = {
        "name": config.network,
        **config.network_kwargs,
        "input_shape": list(data.input_shape),
        "num_classes": int(data.num_classes),
    }
    return {"factory": BUILD_NETWORK, "kwargs": kwargs}


def _data_spec(config: TrainConfig, data: Dataset) -> dict[str, Any]:
    if is_factory_spec(config.dataset):
        return {"factory": config.dataset, "kwargs": dict(config.dataset_kwargs)}
    return {"name": config.dataset, "kwargs": dict(data.settings)}


def _build_model(config: TrainConfig, data: Dataset) -> nn.Module:
    if is_factory_spec(config.network):
        with seeded(config.seed):
            model = load_network_factory(config.network)(**config.network_kwargs)
        if not isinstance(model, nn.Module):
            raise TypeError(
                f"model factory {config.network!r} returned a {type(model).__name__}, "
                "not a torch.nn.Module"
            )
        return model
    return build_network(
        config.network,
        input_shape=data.input_shape,
        num_classes=data.num_classes,
        seed=config.seed,
        **config.network_kwargs,
    )


def _make_optimizer(config: TrainConfig, model: nn.Module) -> torch.optim.Optimizer:
    params = list(model.parameters())
    if config.optimizer == "adam":
        return torch.optim.Adam(params, lr=config.lr, weight_decay=config.weight_decay)
    return torch.optim.SGD(
        params,
        lr=config.lr,
        momentum=config.momentum,
        weight_decay=config.weight_decay,
        nesterov=config.nesterov,
    )


def _set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr


def _target_reached(config: TrainConfig, record: dict[str, Any]) -> str | None:
    """Which target an epoch's full-training-set fit reached, if any.

    ``"target_accuracy"`` when the training accuracy is at least ``target_accuracy``,
    else ``"target_loss"`` when the training loss is at most ``target_loss``, else
    ``None`` (with both reached in one epoch, the accuracy is named).
    """
    if config.target_accuracy is not None and record["train_accuracy"] >= config.target_accuracy:
        return "target_accuracy"
    if config.target_loss is not None and record["train_loss"] <= config.target_loss:
        return "target_loss"
    return None


def optimizer_momentum(optimizer: torch.optim.Optimizer) -> float:
    """The momentum an optimizer applies: SGD's ``momentum``, Adam's first ``beta``.

    Examples:
        >>> w = [nn.Parameter(torch.zeros(1))]
        >>> optimizer_momentum(torch.optim.SGD(w, lr=0.1, momentum=0.5))
        0.5
        >>> optimizer_momentum(torch.optim.Adam(w))
        0.9
    """
    group = optimizer.param_groups[0]
    if "momentum" in group:
        return float(group["momentum"])
    return float(group.get("betas", (0.0,))[0])


def train_network(
    config: TrainConfig,
    out_dir: str | os.PathLike[str] | None = None,
    *,
    data: Dataset | None = None,
    manifest: bool = True,
    on_epoch: Callable[[dict[str, Any]], None] | None = None,
    on_step: StepHook | None = None,
    threads: int | None = None,
) -> TrainResult:
    """Train a network as ``config`` says and write its checkpoints.

    Args:
        config: The run's settings.
        out_dir: Where to write ``final.pt``, the periodic ``epochNNNN.pt`` checkpoints
            and ``manifest.toml``; ``None`` writes nothing.
        data: The data set, if already loaded (otherwise built from the config).
        manifest: Write ``manifest.toml`` next to the final checkpoint.
        on_epoch: Called after every epoch with that epoch's history record (see
            :data:`HISTORY_FIELDS`).
        on_step: Called with the initial model (step 0, epoch 0.0) and after every
            update with the model and the update's fields
            (``step`` and ``updates``: updates so far, ``epoch``: epochs done as a float,
            ``lr``, ``batch_size``, ``momentum``, ``optimizer`` (``"sgd_nesterov"`` for
            Nesterov momentum), ``examples_seen``,
            ``epoch_end``: the epoch's last update, ``regime``, ``schedule``, ``seed``),
            the keywords of :meth:`flatness.Tracker.update`; it must leave the model,
            its mode and the random state as they were.
        threads: Intra-op threads while training (default: the rule of
            :func:`flatness.threads.threads_for`, one thread for small networks and
            batches); torch's setting is restored afterwards.

    Returns:
        The trained model, its metadata and the paths written.

    Examples:
        >>> cfg = TrainConfig(network="tiny_mlp", dataset="digits_flat", batch_size=128,
        ...                   epochs=None, max_updates=3)
        >>> meta = train_network(cfg).meta
        >>> meta["updates"], meta["batch_size"], sorted(meta["model"])
        (3, 128, ['factory', 'kwargs'])
    """
    clock = Meter()
    data = data if data is not None else load_dataset(config.dataset, **config.dataset_kwargs)
    device = torch.device(config.device)
    x_train, y_train = (t.to(device) for t in data.train)
    x_test, y_test = (t.to(device) for t in data.test)
    n_train = data.n_train
    base_batch = resolve_batch_size(config.batch_size, n_train)
    out = None if out_dir is None else Path(out_dir)

    meta: dict[str, Any] = {
        "format": META_FORMAT,
        "regime": config.regime_label(n_train),
        "model": _model_spec(config, data),
        "data": _data_spec(config, data),
        "network": config.network,
        "dataset": config.dataset,
        "n_train": n_train,
        "n_test": data.n_test,
        "batch_size": base_batch,
        "optimizer": config.optimizer,
        "lr": float(config.lr),
        "schedule": config.schedule,
        "seed": int(config.seed),
        "config": config.to_dict(),
        "versions": package_versions(),
    }
    meta["run"] = run_name(meta)
    history: list[dict[str, Any]] = []
    written: list[Path] = []
    epoch = updates = examples = 0
    reached = False
    lr, batch = float(config.lr), base_batch
    fit_on = "epoch_average"
    targeted = config.target_accuracy is not None or config.target_loss is not None
    if config.history_fit == "full_train" or targeted:
        fit_on = "full_train"
    stop_reason = "epochs"
    identity = {"regime": meta["regime"], "schedule": config.schedule, "seed": int(config.seed)}
    # Nesterov's stability threshold is not heavy-ball's (2 + 2β)/η: name it apart
    optimizer_name = "sgd_nesterov" if config.nesterov else config.optimizer

    def snapshot() -> dict[str, Any]:
        train_loss, train_acc = evaluate(model, x_train, y_train)
        test_loss, test_acc = evaluate(model, x_test, y_test)
        return plain_meta(
            {
                **meta,
                "epoch": epoch,
                "updates": updates,
                "final_lr": lr,
                "final_batch_size": batch,
                "train_loss": train_loss,
                "train_accuracy": train_acc,
                "test_loss": test_loss,
                "test_accuracy": test_acc,
                "reached_target": reached,
                "seconds": clock.seconds,
                "history": [dict(h) for h in history],
            }
        )

    with seeded(config.seed), _deterministic(device), ExitStack() as stack:
        model = _build_model(config, data).to(device)
        stack.enter_context(intra_op_threads(threads_for(model, base_batch, threads=threads)))
        optimizer = _make_optimizer(config, model)
        shuffle = torch.Generator().manual_seed(config.seed)
        momentum = optimizer_momentum(optimizer)
        step_fields = {"momentum": momentum, "optimizer": optimizer_name, **identity}
        if on_step is not None:  # the initial model, step 0
            lr0, batch0 = scheduled(config, 0, base_batch, n_train)
            on_step(model, {"step": 0, "epoch": 0.0, "lr": lr0, "batch_size": batch0,
                            "epoch_end": False, "updates": 0, "examples_seen": 0,
                            **step_fields})  # fmt: skip
        while (config.epochs is None or epoch < config.epochs) and (
            config.max_updates is None or updates < config.max_updates
        ):
            lr, batch = scheduled(config, epoch, base_batch, n_train)
            _set_lr(optimizer, lr)
            model.train()
            order = torch.randperm(n_train, generator=shuffle).to(device)
            loss_sum = torch.zeros((), device=device)
            correct = torch.zeros((), dtype=torch.int64, device=device)
            seen = 0
            per_epoch = n_train // batch
            for j, start in enumerate(range(0, per_epoch * batch, batch)):
                if config.max_updates is not None and updates >= config.max_updates:
                    break
                step_lr = lr
                if epoch < config.warmup_epochs:  # Goyal et al.: every update of a warm-up
                    step_lr = scheduled(config, epoch + j / per_epoch, base_batch, n_train)[0]
                    _set_lr(optimizer, step_lr)
                idx = order[start : start + batch]
                output = model(x_train[idx])
                loss = F.cross_entropy(output, y_train[idx])
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                updates += 1
                examples += batch
                loss_sum += loss.detach() * batch
                correct += (output.argmax(dim=1) == y_train[idx]).sum()
                seen += batch
                if on_step is not None:
                    last = j == per_epoch - 1 or updates == config.max_updates
                    on_step(model, {"step": updates, "epoch": epoch + (j + 1) / per_epoch,
                                    "lr": step_lr, "batch_size": batch, "epoch_end": last,
                                    "updates": updates, "examples_seen": examples,
                                    **step_fields})  # fmt: skip
            epoch += 1
            running = float(loss_sum) / max(seen, 1), int(correct) / max(seen, 1)
            fit = running
            if fit_on == "full_train":
                fit = evaluate(model, x_train, y_train)
            test_fit = evaluate(model, x_test, y_test)
            record: dict[str, Any] = {
                "epoch": epoch,
                "updates": updates,
                "examples_seen": examples,
                "lr": lr,
                "batch_size": batch,
                "lr_over_batch": lr / batch,
                "momentum": momentum,
                "optimizer": optimizer_name,
                "train_loss": fit[0],
                "train_accuracy": fit[1],
                "fit_on": fit_on,
                "test_loss": test_fit[0],
                "test_accuracy": test_fit[1],
                "running_loss": running[0],
                "running_accuracy": running[1],
                "nonfinite": int(not math.isfinite(running[0])),
                "seconds": clock.seconds,
            }
            target = _target_reached(config, record)
            if target is not None:
                reached, stop_reason = True, target
            history.append(record)
            if on_epoch is not None:
                on_epoch(record)
            if reached:
                break
            if out is not None and config.checkpoint_every and epoch % config.checkpoint_every == 0:
                written.append(save_checkpoint(out / f"epoch{epoch:04d}.pt", model, snapshot()))
        model.eval()
        final_meta = snapshot()
        if not reached and config.max_updates is not None and updates >= config.max_updates:
            stop_reason = "max_updates"
        final_meta["stop_reason"] = stop_reason
        if not all(math.isfinite(final_meta[k]) for k in ("train_loss", "test_loss")):
            final_meta["diverged"] = True

    checkpoint = manifest_path = None
    if out is not None:
        checkpoint = save_checkpoint(out / "final.pt", model, final_meta)
        written.append(checkpoint)
        if manifest:
            manifest_path = write_manifest(out / MANIFEST_NAME, [(checkpoint, final_meta)])
    return TrainResult(
        model=model,
        meta=final_meta,
        checkpoint=checkpoint,
        checkpoints=tuple(written),
        manifest=manifest_path,
    )
