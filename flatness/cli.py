"""The ``flatness`` command line: a thin layer over the Python API.

Each subcommand is a pair of functions, ``_add_<name>_parser(subparsers)`` which
declares its arguments and ``_cmd_<name>(args) -> int`` which runs it, registered in
:data:`SUBCOMMANDS`. Everything a subcommand does is reachable from ``import flatness``.

``flatness train`` trains one network (settings from flags) or a whole sweep
(``--sweep sweep.toml``) with :func:`flatness.zoo.train_network` and
:func:`flatness.zoo.train_sweep`. ``flatness score`` scores a manifest's checkpoints
into a results store with :func:`flatness.score`; ``flatness export`` writes the store
as CSV or Parquet with :func:`flatness.export_results`; ``flatness store check`` runs
SQLite's integrity check on a store (:func:`flatness.pipeline.database.check_store`);
``flatness report`` writes a comparison report with
:func:`flatness.report.build_from_store`; ``flatness study``
runs a built-in study (:mod:`flatness.studies`) or one declared in TOML
(:func:`flatness.study.load_study`) with :func:`flatness.study.run_study`; ``flatness
demo`` runs the demo plan of Keskar et al.'s study with default folders
(:func:`flatness.demo.run_study`).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from flatness.study import StudyPlan, StudyResult, StudySpec

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

Subparsers = Any
"""The object ``ArgumentParser.add_subparsers`` returns."""


def parse_key_values(items: Sequence[str] | None, *, option: str) -> dict[str, Any]:
    """Parse ``key=value`` arguments; values are read as TOML, else kept as strings.

    Returns:
        Key → value.

    Raises:
        ValueError: For an item without ``=`` or without a key.

    Examples:
        >>> parse_key_values(["width=64", "bn=true", "shape=[1, 8, 8]", "name=f1"], option="--x")
        {'width': 64, 'bn': True, 'shape': [1, 8, 8], 'name': 'f1'}
    """
    out: dict[str, Any] = {}
    for item in items or ():
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"{option} takes key=value pairs, got {item!r}")
        try:
            value: Any = tomllib.loads(f"v = {raw}")["v"]
        except tomllib.TOMLDecodeError:
            value = raw
        out[key.strip()] = value
    return out


def _batch_size(text: str) -> int | str:
    return text if text.strip().endswith("%") else int(text)


def _add_run_options(p: argparse.ArgumentParser, progress: str = "no progress bars") -> None:
    """``--no-progress`` and ``--threads``, shared by the commands that compute."""
    p.add_argument("--no-progress", action="store_true", help=progress)
    p.add_argument(
        "--threads",
        type=int,
        help="torch intra-op CPU threads for training and scoring (default: one for small "
        "networks and batches, else torch's default; see flatness.threads)",
    )


def _set_threads(args: argparse.Namespace) -> None:
    """Apply ``--threads``: torch's count, fixed for every training and scoring run."""
    if args.threads is not None:
        import torch

        from flatness.threads import fix_threads

        fix_threads(args.threads)
        torch.set_num_threads(args.threads)


# -- flatness train ---------------------------------------------------------------------

_SINGLE_RUN_OPTIONS = (
    "network",
    "net_kw",
    "dataset",
    "data_kw",
    "batch_size",
    "optimizer",
    "lr",
    "momentum",
    "weight_decay",
    "schedule",
    "milestones",
    "factor",
    "epochs",
    "updates",
    "target_accuracy",
    "seed",
    "checkpoint_every",
    "regime",
    "device",
)


def _add_train_parser(subparsers: Subparsers) -> None:
    from flatness.zoo.config import OPTIMIZERS, SCHEDULES

    p = subparsers.add_parser(
        "train",
        help="train reference networks into checkpoints and a manifest",
        description=(
            "Train one network (settings from the flags below) or a sweep of regimes x "
            "seeds (--sweep FILE). Writes final.pt (and epochNNNN.pt with "
            "--checkpoint-every) plus manifest.toml, ready for `flatness score`."
        ),
    )
    p.add_argument("--sweep", type=Path, help="sweep TOML file (regimes x seeds)")
    p.add_argument("--out", type=Path, help="output directory")
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="sweep: retrain runs whose checkpoint exists with different settings",
    )
    _add_run_options(p, "no progress output")
    run = p.add_argument_group("single run (defaults: flatness.zoo.TrainConfig)")
    run.add_argument("--network", help="f1, c1, tiny_mlp, mlp_bn or package.module:function")
    run.add_argument("--net-kw", nargs="*", metavar="KEY=VALUE", help="network settings")
    run.add_argument("--dataset", help="mnist1d, digits, digits_flat or package.module:function")
    run.add_argument("--data-kw", nargs="*", metavar="KEY=VALUE", help="data set settings")
    run.add_argument("--batch-size", type=_batch_size, help="examples per update, or '10%%'")
    run.add_argument("--optimizer", choices=OPTIMIZERS)
    run.add_argument("--lr", type=float, help="(initial) learning rate")
    run.add_argument("--momentum", type=float, help="SGD momentum")
    run.add_argument("--weight-decay", type=float)
    run.add_argument("--schedule", choices=SCHEDULES)
    run.add_argument("--milestones", type=int, nargs="*", help="epochs where factor applies")
    run.add_argument("--factor", type=float, help="LR divisor / batch-size multiplier")
    run.add_argument("--epochs", type=int, help="epoch cap")
    run.add_argument("--updates", type=int, help="update cap")
    run.add_argument("--target-accuracy", type=float, help="stop at this train accuracy")
    run.add_argument("--seed", type=int)
    run.add_argument("--checkpoint-every", type=int, help="also save every N epochs")
    run.add_argument("--regime", help="label of the run (e.g. SB, LB)")
    run.add_argument("--device", help="cpu, cuda, ...")
    p.set_defaults(handler=_cmd_train)


def _train_config(args: argparse.Namespace) -> Any:
    from flatness.zoo.config import TrainConfig

    settings: dict[str, Any] = {}
    for name in _SINGLE_RUN_OPTIONS:
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


def _cmd_train(args: argparse.Namespace) -> int:

    from flatness.zoo.sweep import train_sweep
    from flatness.zoo.train import train_network

    _set_threads(args)
    if args.sweep is not None:
        given = [f"--{n.replace('_', '-')}" for n in _SINGLE_RUN_OPTIONS if getattr(args, n)]
        if given:
            raise ValueError(f"--sweep takes run settings from the file; drop {', '.join(given)}")
        swept = train_sweep(
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
    if args.out is None:
        raise ValueError("give --out DIR (where to write the checkpoints)")
    config = _train_config(args)

    def show(record: dict[str, Any]) -> None:
        acc = record.get("train_accuracy", record["running_accuracy"])
        print(
            f"epoch {record['epoch']:4d}  updates {record['updates']:7d}  lr {record['lr']:.3g}  "
            f"batch {record['batch_size']}  loss {record['running_loss']:.4f}  acc {acc:.4f}",
            flush=True,
        )

    result = train_network(config, args.out, on_epoch=None if args.no_progress else show)
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


# -- flatness score ---------------------------------------------------------------------


def _add_score_parser(subparsers: Subparsers) -> None:
    from flatness.pipeline.measures import MEASURES

    p = subparsers.add_parser(
        "score",
        help="score the checkpoints a manifest names into a results store",
        description=(
            "Score every checkpoint named by MANIFEST (TOML) with its measures into an "
            "SQLite results store. Reruns skip what is stored; a checkpoint that cannot be "
            "scored is reported and recorded, and the others are scored. Exit status 0 only "
            "when everything was scored. A manifest is code, like a Python script: the "
            "factories and plugins it names are imported and run (factories from the Python "
            "standard library are refused), so score only manifests you trust; the code "
            "it runs is shown before the sweep starts. Measures: "
            + "; ".join(f"{n}: {m.summary}" for n, m in MEASURES.items())
        ),
    )
    p.add_argument("manifest", type=Path, help="the manifest (TOML)")
    p.add_argument("--store", type=Path, help="results store (default: results.sqlite beside it)")
    p.add_argument("--measures", nargs="+", metavar="NAME", help="score only these measures")
    p.add_argument("--device", help="override [scoring] device (cpu, cuda, cuda:1, ...)")
    p.add_argument("--dtype", choices=("float32", "float64"), help="override [scoring] dtype")
    p.add_argument("--examples", type=int, help="override [scoring] examples")
    p.add_argument(
        "--trust-pickle",
        action="store_true",
        help="allow checkpoints that need full unpickling (can run code: trusted files only)",
    )
    p.add_argument(
        "--stale-after",
        type=float,
        default=600.0,
        metavar="SECONDS",
        help="take over another process's task after this long without its heartbeat (600)",
    )
    _add_run_options(p)
    p.set_defaults(handler=_cmd_score)


def _cmd_score(args: argparse.Namespace) -> int:
    import pandas as pd

    from flatness.pipeline.scoring import score, summary_table

    _set_threads(args)
    measures = [m for item in args.measures or () for m in item.split(",") if m]
    summary = score(
        args.manifest,
        store=args.store,
        measures=measures or None,
        device=args.device,
        dtype=args.dtype,
        examples=args.examples,
        trust_pickle=args.trust_pickle,
        progress=not args.no_progress,
        log=lambda line: print(line, file=sys.stderr, flush=True),
        echo=lambda line: print(line, file=sys.stderr, flush=True),
        stale_after=args.stale_after,
    )
    with pd.option_context("display.width", 160, "display.max_columns", 30):
        table = summary_table(summary.store, root=args.manifest.parent)
        print(table.to_string(index=False, float_format="{:.4g}".format))
    print(
        f"{summary.checkpoints} checkpoints: {summary.computed} tasks computed, "
        f"{summary.reused} already stored, {summary.by_others} by another process, "
        f"{summary.failed} failed, {summary.pending} pending ({summary.seconds:.1f} s); "
        f"store {summary.store}"
    )
    return 0 if summary.ok else 1


# -- flatness export --------------------------------------------------------------------


def _add_export_parser(subparsers: Subparsers) -> None:
    p = subparsers.add_parser(
        "export",
        help="write a results store as a tidy CSV or Parquet table",
        description="One row per checkpoint x measure component, with the run metadata.",
    )
    p.add_argument("store", type=Path, help="the results store (SQLite)")
    p.add_argument("out", type=Path, help="output file: .csv or .parquet")
    p.set_defaults(handler=_cmd_export)


def _cmd_export(args: argparse.Namespace) -> int:
    from flatness.pipeline.store import export_results, load_results

    path = export_results(args.store, args.out)
    print(f"wrote {path} ({len(load_results(args.store))} rows)")
    return 0


# -- flatness store ---------------------------------------------------------------------


def _add_store_parser(subparsers: Subparsers) -> None:
    p = subparsers.add_parser(
        "store",
        help="look after a results store (check: SQLite's integrity check)",
        description=(
            "flatness store check STORE runs PRAGMA integrity_check on a results store "
            "(read-only; also where the store's folder cannot be written) and lists what "
            "is damaged. Exit status 0 when the store is sound."
        ),
    )
    p.add_argument("action", choices=("check",), help="what to do")
    p.add_argument("store", type=Path, help="the results store (SQLite)")
    p.set_defaults(handler=_cmd_store)


def _cmd_store(args: argparse.Namespace) -> int:
    from flatness.pipeline.database import check_store

    problems = check_store(args.store)
    for line in problems:
        print(f"{args.store}: {line}")
    if problems:
        print(
            f"{args.store} is damaged: restore it from a backup, or score into a new store "
            "(flatness score MANIFEST --store NEW.sqlite); reruns recompute what is lost",
            file=sys.stderr,
        )
        return 1
    print(f"{args.store}: ok (PRAGMA integrity_check)")
    return 0


# -- flatness report --------------------------------------------------------------------


def _add_report_parser(subparsers: Subparsers) -> None:
    p = subparsers.add_parser(
        "report",
        help="write an HTML + Markdown report relating sharpness to test accuracy",
        description=(
            "Keskar et al.'s tables (accuracy, epsilon-sharpness per regime), SB vs LB tests, "
            "sharpness vs batch size and vs test accuracy with rank correlations, parametric "
            "plots and spectral densities, from a results store. Writes report.html (self-"
            "contained), report.md with figures/*.png, and data/*.csv."
        ),
    )
    p.add_argument("store", type=Path, help="the results store (SQLite) that `score` wrote")
    p.add_argument(
        "--out",
        type=Path,
        help="report folder (default: reports/<name of the store's folder>)",
    )
    p.add_argument("--title", help="the report's title")
    p.add_argument(
        "--reference",
        metavar="NETWORK",
        help="show Keskar et al.'s published values of this network (F1, F2, C1-C4)",
    )
    p.add_argument("--sb", help="the small-batch regime (default: SB, else the smallest batch)")
    p.add_argument("--lb", help="the large-batch regime (default: LB, else the largest batch)")
    p.add_argument("--bootstrap", type=int, default=2000, help="bootstrap resamples (2000)")
    p.add_argument("--confidence", type=float, default=0.95, help="interval level (0.95)")
    p.add_argument("--seed", type=int, default=0, help="the bootstrap's seed (0)")
    p.set_defaults(handler=_cmd_report)


def _cmd_report(args: argparse.Namespace) -> int:
    import shlex

    from flatness.report.from_store import build_from_store, default_out

    out = args.out if args.out is not None else default_out(args.store)
    command = ["flatness", "report", str(args.store), "--out", str(out)]
    for flag in ("title", "reference", "sb", "lb"):
        if getattr(args, flag) is not None:
            command += [f"--{flag}", str(getattr(args, flag))]
    for flag, default in (("bootstrap", 2000), ("confidence", 0.95), ("seed", 0)):
        if getattr(args, flag) != default:
            command += [f"--{flag}", str(getattr(args, flag))]
    report = build_from_store(
        args.store,
        out,
        title=args.title,
        reference=args.reference,
        sb=args.sb,
        lb=args.lb,
        n_boot=args.bootstrap,
        confidence=args.confidence,
        seed=args.seed,
        command=shlex.join(command),
    )
    for note in report.notes:
        print(f"left out  {note}")
    print(f"wrote {report.html}")
    print(f"wrote {report.markdown} ({len(report.figures)} figures, {len(report.data)} CSV files)")
    return 0


# -- flatness demo ----------------------------------------------------------------------


def _add_demo_parser(subparsers: Subparsers) -> None:
    p = subparsers.add_parser(
        "demo",
        help="Keskar et al.'s SB-vs-LB study on built-in data: train, score, report",
        description=(
            "Train small- and large-batch networks on MNIST-1D (generated offline), score "
            "their minima and write a report relating sharpness to test accuracy, with "
            "Keskar et al.'s published values beside ours. The default is a reduced study "
            "(one network, 3 seeds, 4 measures); --full runs the whole study of "
            "analyses/keskar/. Reruns reuse checkpoints and stored scores."
        ),
    )
    p.add_argument(
        "--full", action="store_true", help="the whole study (about 25 minutes on 2 CPU cores)"
    )
    p.add_argument("--runs", type=Path, help="checkpoints and stores (runs/demo or runs/keskar)")
    p.add_argument("--out", type=Path, help="reports (reports/demo or reports/keskar-mnist1d)")
    _add_run_options(p)
    p.set_defaults(handler=_cmd_demo)


def _cmd_demo(args: argparse.Namespace) -> int:

    from flatness import demo

    _set_threads(args)
    plan = demo.FULL if args.full else demo.DEMO
    command = ["flatness", "demo"] + (["--full"] if args.full else [])
    for flag in ("runs", "out"):
        if getattr(args, flag) is not None:
            command += [f"--{flag}", str(getattr(args, flag))]
    print(f"flatness demo: {plan.title}", flush=True)
    return _run_plan(demo.run_study, plan, args, command)


# -- flatness study ---------------------------------------------------------------------


def _add_study_parser(subparsers: Subparsers) -> None:
    p = subparsers.add_parser(
        "study",
        help="run a built-in study or one declared in TOML: train, score, report",
        description=(
            "Run every case of a study's plan: train its regimes x seeds, score the "
            "checkpoints, write each case's report and an overview. NAME_OR_TOML is a "
            "built-in study (see --list) or a TOML file declaring one (see README). Reruns "
            "reuse checkpoints and stored scores."
        ),
    )
    p.add_argument("study", nargs="?", metavar="NAME_OR_TOML", help="the study")
    p.add_argument("--list", action="store_true", help="list the built-in studies and exit")
    p.add_argument("--plan", help="the study's plan (default: its default plan)")
    p.add_argument("--runs", type=Path, help="folder of checkpoints and results stores")
    p.add_argument("--out", type=Path, help="folder of the reports")
    _add_run_options(p)
    p.set_defaults(handler=_cmd_study)


def _resolve_study(name_or_toml: str) -> StudySpec:
    """A built-in study by name, else the study a TOML file declares."""
    from flatness.studies import STUDIES, get_study
    from flatness.study import load_study

    if name_or_toml in STUDIES:
        return get_study(name_or_toml)
    path = Path(name_or_toml)
    if path.suffix == ".toml" or path.is_file():
        return load_study(path)
    return get_study(name_or_toml)  # raises, naming the built-in studies


def _cmd_study(args: argparse.Namespace) -> int:

    from flatness.studies import STUDIES
    from flatness.study import run_study

    if args.list:
        for spec in STUDIES.values():
            print(f"{spec.name}: {spec.title}")
            print(f"  plans: {', '.join(spec.plans)} (default {spec.default_plan})")
            for question in spec.questions:
                print(f"  - {question}")
        return 0
    if args.study is None:
        raise ValueError("name a study (NAME_OR_TOML) or give --list")
    if args.runs is None or args.out is None:
        raise ValueError("give --runs DIR and --out DIR (where checkpoints and reports go)")
    _set_threads(args)
    spec = _resolve_study(args.study)
    key = spec.default_plan if args.plan is None else args.plan
    plan = spec.plan(key)
    command = ["flatness", "study", args.study]
    if args.plan is not None:
        command += ["--plan", args.plan]
    command += ["--runs", str(args.runs), "--out", str(args.out)]
    print(f"flatness study {spec.name}, plan {key}: {plan.title}", flush=True)
    return _run_plan(run_study, plan, args, command)


def _run_plan(
    runner: Callable[..., StudyResult],
    plan: StudyPlan,
    args: argparse.Namespace,
    command: list[str],
) -> int:
    """Run a plan with ``runner``, print its cases' reports and failures; the exit status."""
    import shlex

    try:
        result = runner(
            plan,
            runs=args.runs,
            out=args.out,
            progress=not args.no_progress,
            echo=lambda line: print(line, flush=True),
            command=shlex.join(command),
        )
    except KeyboardInterrupt:
        print(
            f"\ninterrupted: finished runs and stored scores are kept; `{shlex.join(command)}` "
            "goes on from there",
            file=sys.stderr,
        )
        return 130
    for case in result.cases:
        for failure in case.failures:
            print(f"FAILED  {failure}")
        shown = case.report if case.report.is_file() else "no report (nothing was stored)"
        print(f"{case.name}: {shown}")
    print(f"report: {result.html} ({result.seconds:.0f} s)")
    return 0 if result.ok else 1


# -- the command ------------------------------------------------------------------------

SUBCOMMANDS: tuple[Callable[[Subparsers], None], ...] = (
    _add_train_parser,
    _add_score_parser,
    _add_export_parser,
    _add_store_parser,
    _add_report_parser,
    _add_demo_parser,
    _add_study_parser,
)
"""Parser builders, one per subcommand; each sets ``handler`` to its ``_cmd_*`` function."""


def build_parser() -> argparse.ArgumentParser:
    """The ``flatness`` argument parser with every registered subcommand.

    Returns:
        The parser.
    """
    parser = argparse.ArgumentParser(
        prog="flatness", description="Sharpness and minima analysis for PyTorch."
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for add_parser in SUBCOMMANDS:
        add_parser(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``flatness`` command line.

    Args:
        argv: Arguments without the program name (default: ``sys.argv[1:]``).

    Returns:
        The exit status: 0 on success, 1 on an error in the inputs, 2 on a usage error,
        130 when interrupted (Ctrl-C).
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    handler = getattr(args, "handler", None)
    if handler is None:
        parser.print_help(sys.stderr)
        return 2
    try:
        return int(handler(args))
    except KeyboardInterrupt:
        print(
            f"flatness {args.command}: interrupted; everything that finished is saved, "
            "and running the same command again resumes",
            file=sys.stderr,
        )
        return 130
    except (ValueError, KeyError, TypeError, ImportError, AttributeError, OSError) as exc:
        message = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        print(f"flatness {args.command}: error: {message}", file=sys.stderr)
        return 1
