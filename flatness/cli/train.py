"""``flatness train``: one network from flags, or a sweep from a TOML file.

Runs :func:`flatness.zoo.train_network` or :func:`flatness.zoo.train_sweep`; both write
checkpoints and a ``manifest.toml`` ready for ``flatness score``. With ``--track`` (one
run) or a ``[track]`` table (a sweep) a :class:`flatness.Tracker` measures each run
while it trains (:mod:`flatness.tracking.training`).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any

from flatness.cli.common import Subcommand, add_run_options, parse_key_values, set_threads

if TYPE_CHECKING:
    from flatness.zoo.config import TrainConfig

SINGLE_RUN_OPTIONS = (
    "network",
    "net_kw",
    "dataset",
    "data_kw",
    "batch_size",
    "optimizer",
    "lr",
    "momentum",
    "nesterov",
    "weight_decay",
    "schedule",
    "milestones",
    "milestone_fractions",
    "factor",
    "max_batch_fraction",
    "warmup_epochs",
    "reference_batch_size",
    "history_fit",
    "epochs",
    "updates",
    "target_accuracy",
    "seed",
    "checkpoint_every",
    "regime",
    "device",
)
"""The flags of a single run (a sweep takes them from its file instead)."""


def _batch_size(text: str) -> int | str:
    return text if text.strip().endswith("%") else int(text)


def _arguments(p: argparse.ArgumentParser) -> None:
    from flatness.zoo.config import HISTORY_FITS, OPTIMIZERS, SCHEDULES

    p.add_argument("--sweep", type=Path, help="sweep TOML file (regimes x seeds)")
    p.add_argument("--out", type=Path, help="output directory")
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="sweep: retrain runs whose checkpoint exists with different settings",
    )
    add_run_options(p, "no progress output")
    run = p.add_argument_group("single run (defaults: flatness.zoo.TrainConfig)")
    run.add_argument("--network", help="f1, c1, tiny_mlp, mlp_bn or package.module:function")
    run.add_argument("--net-kw", nargs="*", metavar="KEY=VALUE", help="network settings")
    run.add_argument("--dataset", help="mnist1d, digits, digits_flat or package.module:function")
    run.add_argument("--data-kw", nargs="*", metavar="KEY=VALUE", help="data set settings")
    run.add_argument("--batch-size", type=_batch_size, help="examples per update, or '10%%'")
    run.add_argument("--optimizer", choices=OPTIMIZERS)
    run.add_argument("--lr", type=float, help="(initial) learning rate")
    run.add_argument("--momentum", type=float, help="SGD momentum")
    run.add_argument(
        "--nesterov", action="store_true", default=None, help="Nesterov momentum (SGD)"
    )
    run.add_argument("--weight-decay", type=float)
    run.add_argument("--schedule", choices=SCHEDULES)
    run.add_argument("--milestones", type=int, nargs="*", help="epochs where factor applies")
    run.add_argument(
        "--milestone-fractions", type=float, nargs="*", help="milestones as fractions of --epochs"
    )
    run.add_argument("--factor", type=float, help="LR divisor / batch-size multiplier")
    run.add_argument(
        "--max-batch-fraction", type=float, help="cap of a growing batch (fraction of the data)"
    )
    run.add_argument("--warmup-epochs", type=float, help="linear_scaling: warm-up epochs")
    run.add_argument(
        "--reference-batch-size", type=int, help="linear_scaling: the batch size lr is tuned for"
    )
    run.add_argument(
        "--history-fit", choices=HISTORY_FITS, help="the history's train loss/accuracy"
    )
    run.add_argument("--epochs", type=int, help="epoch cap")
    run.add_argument("--updates", type=int, help="update cap")
    run.add_argument("--target-accuracy", type=float, help="stop at this train accuracy")
    run.add_argument("--seed", type=int)
    run.add_argument("--checkpoint-every", type=int, help="also save every N epochs")
    run.add_argument("--regime", help="label of the run (e.g. SB, LB)")
    run.add_argument("--device", help="cpu, cuda, ...")
    run.add_argument(
        "--track",
        nargs="*",
        metavar="KEY=VALUE",
        help="measure sharpness while training, with [track] settings (e.g. "
        "measures=lambda_max,trace every=100 examples=1000 store=results.sqlite); "
        "a sweep takes its [track] table from the file",
    )


def train_config(args: argparse.Namespace) -> TrainConfig:
    """The single run's settings from the flags given (the others keep their defaults).

    Args:
        args: The parsed arguments.

    Returns:
        The training configuration.

    Raises:
        ValueError: For a malformed ``--net-kw``/``--data-kw`` item or invalid settings.
    """
    from flatness.zoo.config import TrainConfig

    settings: dict[str, Any] = {}
    for name in SINGLE_RUN_OPTIONS:
        value = getattr(args, name)
        if value is None:
            continue
        if name == "net_kw":
            settings["network_kwargs"] = parse_key_values(value, option="--net-kw")
        elif name == "data_kw":
            settings["dataset_kwargs"] = parse_key_values(value, option="--data-kw")
        elif name == "updates":
            settings["max_updates"] = value
        else:
            settings[name] = value
    return TrainConfig.from_dict(settings)


def _train_sweep(args: argparse.Namespace) -> int:
    from flatness.tracking.training import train_tracked_sweep

    given = [f"--{n.replace('_', '-')}" for n in SINGLE_RUN_OPTIONS if getattr(args, n)]
    given += ["--track"] if args.track is not None else []
    if given:
        raise ValueError(f"--sweep takes run settings from the file; drop {', '.join(given)}")
    swept = train_tracked_sweep(
        args.sweep, args.out, overwrite=args.overwrite, progress=not args.no_progress
    )
    for r in swept.runs:
        m = r.meta
        print(
            f"{r.status:8s} {r.path}  {m['regime']} seed {m['seed']}  epoch {m['epoch']}  "
            f"train acc {m['train_accuracy']:.4f}  test acc {m['test_accuracy']:.4f}"
        )
    print(f"wrote {swept.manifest}")
    return 0


def _show_epoch(record: dict[str, Any]) -> None:
    print(
        f"epoch {record['epoch']:4d}  updates {record['updates']:7d}  lr {record['lr']:.3g}  "
        f"batch {record['batch_size']}  loss {record['train_loss']:.4f}  "
        f"acc {record['train_accuracy']:.4f}  test acc {record['test_accuracy']:.4f}",
        flush=True,
    )


def run_train(args: argparse.Namespace) -> int:
    """Run ``flatness train``: print each run's accuracies and the files written.

    Args:
        args: The parsed arguments.

    Returns:
        The exit status (0).

    Raises:
        ValueError: For run flags beside ``--sweep``, a missing ``--out`` or bad settings.
    """
    from flatness.zoo.train import train_network

    set_threads(args)
    if args.sweep is not None:
        return _train_sweep(args)
    if args.out is None:
        raise ValueError("give --out DIR (where to write the checkpoints)")
    config = train_config(args)
    show = None if args.no_progress else _show_epoch
    if args.track is not None:
        from flatness.tracking.training import track_settings, train_tracked

        track = track_settings(parse_key_values(args.track, option="--track"))
        result = train_tracked(config, args.out, track, on_epoch=show)
    else:
        result = train_network(config, args.out, on_epoch=show)
    m = result.meta
    target = ""
    if config.target_accuracy is not None:
        target = "  target reached" if m["reached_target"] else "  target NOT reached"
    print(
        f"train acc {m['train_accuracy']:.4f}  test acc {m['test_accuracy']:.4f}  "
        f"epoch {m['epoch']}  updates {m['updates']}{target}"
    )
    for path in result.checkpoints:
        print(f"wrote {path}")
    print(f"wrote {result.manifest}")
    return 0


COMMAND = Subcommand(
    name="train",
    help="train reference networks into checkpoints and a manifest",
    description=(
        "Train one network (settings from the flags below) or a sweep of regimes x "
        "seeds (--sweep FILE). Writes final.pt (and epochNNNN.pt with "
        "--checkpoint-every) plus manifest.toml, ready for `flatness score`."
    ),
    arguments=_arguments,
    run=run_train,
)
"""``flatness train``, as :mod:`flatness.cli.main` adds it to the parser."""
