"""Keskar et al.'s experiment, end to end: train SB and LB networks, score them, report.

This is what ``flatness demo`` runs. A :class:`StudyPlan` is a list of :class:`Case`
objects, one network on one data set each; :func:`run_study` takes every case through
the whole pipeline and then writes an overview page:

1. **train** the case's regimes × seeds with :func:`flatness.zoo.train_sweep`
   (LB = 10% of the training set, SB twenty times smaller, Adam, until 98% training
   accuracy: Keskar et al.'s protocol), plus an optional batch-size sweep with its own
   seeds, all into ``<runs>/<case>/``, with one manifest listing every run and the
   parametric plot between the SB and LB runs of one seed (same initialization);
2. **score** every checkpoint with :func:`flatness.score` into
   ``<runs>/<case>/results.sqlite``;
3. **report** with :func:`flatness.report.build_from_store` into ``<out>/<case>/``,
   with the paper's Tables 2-4 beside ours;
4. **overview** ``<out>/report.html`` and ``<out>/report.md``: for every case, whether
   LB is sharper than SB in every seed by every measure, the test-accuracy gap with the
   seeds' spread, and how each measure ranks the checkpoints by test accuracy
   (Kendall's τ with a bootstrap interval, over all checkpoints and within each batch
   size).

Reruns reuse what exists: finished runs are not retrained (same settings), stored
scores are not recomputed, and a case's report is rebuilt only when its store (or the
report code) changed.

Two plans are built in: :data:`DEMO` (one case, three seeds, the cheaper measures:
about a minute and a half on a 2-core CPU) and :data:`FULL` (the study of ``analyses/keskar/``:
F1- and C1-style networks on MNIST-1D with five seeds, a six-size batch sweep with
three seeds, F1 on scikit-learn's digits, and every measure).

Reference:
    N. S. Keskar, D. Mudigere, J. Nocedal, M. Smelyanskiy and P. T. P. Tang (2017).
    On large-batch training for deep learning: Generalization gap and sharp minima.
    ICLR 2017 (arXiv:1609.04836).
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import time
from collections.abc import Callable, Mapping
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flatness.results import Result

__all__ = [
    "DEMO",
    "FULL",
    "Case",
    "CaseResult",
    "StudyPlan",
    "StudyResult",
    "run_case",
    "run_study",
]

KESKAR_PROTOCOL: dict[str, Any] = {
    "optimizer": "adam",
    "lr": 1e-3,
    "epochs": 100,
    "target_accuracy": 0.98,
}
"""Adam at its default step, until 98% training accuracy (an epoch cap of 100)."""

SB_LB: dict[str, dict[str, Any]] = {"SB": {"batch_size": "0.5%"}, "LB": {"batch_size": "10%"}}
"""LB = 10% of the training set, SB twenty times smaller (Keskar et al. §2.2)."""

F1_SMALL: dict[str, Any] = {"width": 256, "depth": 3}
"""The F1-style network at the built-in data's scale: 3 × (Linear 256, BatchNorm, ReLU)."""

C1_SMALL: dict[str, Any] = {"channels": 32, "hidden": [192, 96]}
"""The C1-style network at the built-in data's scale: 2 × (Conv 32×5, BatchNorm, ReLU,
max-pool), then dense 192 and 96 with BatchNorm, ReLU and dropout 0.5."""

ALL_MEASURES: dict[str, Any] = {
    "lambda_max": {"k": 5},
    "trace": {"method": "hutchpp", "budget": 100},
    "density": {"steps": 60, "runs": 5},
    "keskar": {"eps": [1e-3, 5e-4], "subspace": [0, 100]},
    "adaptive_sharpness": {"rho": 0.05},
    "average_sharpness": {"sigma": 0.01},
    "noise_scale": {},
}
"""Every measure the study scores (what issue #7 asks for)."""

DEMO_MEASURES: dict[str, Any] = {
    "lambda_max": {"k": 5},
    "trace": {"method": "hutchpp", "budget": 100},
    "keskar": {"eps": [1e-3, 5e-4], "subspace": [0, 100]},
    "adaptive_sharpness": {"rho": 0.05},
}
"""The demo's cheaper set: no spectral density, average sharpness or noise scale."""


@dataclass(frozen=True)
class Case:
    """One network on one data set, trained in several regimes and seeds.

    Attributes:
        name: Folder name of its runs and its report (``"f1-mnist1d"``).
        title: The report's title.
        train: Training settings shared by every run (network, data set, optimizer, ...;
            :class:`flatness.zoo.TrainConfig` keys).
        regimes: Regime label → settings overriding ``train`` (the SB/LB pair).
        seeds: Seeds of ``regimes``.
        sweep: Further regimes (a batch-size sweep between SB and LB).
        sweep_seeds: Seeds of ``sweep``.
        reference: Keskar et al.'s network shown beside ours (``"F1"``, ``"C1"``).
        pair_seed: Seed whose SB and LB runs get the parametric plot (``None``: none).
        pair_bn: BatchNorm statistics along the plot: ``"recompute"`` (on the training
            data at every α, the default: extrapolating stored statistics beyond the
            ends can drive a variance below zero, which is clamped, and the loss
            explodes for that reason alone) or ``"interpolate"``.
        examples: Training examples the measures are computed on (a fixed, seeded
            subset; ``None`` for all).
        measures: The manifest's ``[measures]`` table.
    """

    name: str
    title: str
    train: Mapping[str, Any]
    regimes: Mapping[str, Mapping[str, Any]] = field(default_factory=lambda: dict(SB_LB))
    seeds: tuple[int, ...] = (0, 1, 2, 3, 4)
    sweep: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    sweep_seeds: tuple[int, ...] = ()
    reference: str | None = None
    pair_seed: int | None = 0
    pair_bn: str = "recompute"
    examples: int | None = 1000
    measures: Mapping[str, Any] = field(default_factory=lambda: dict(ALL_MEASURES))

    def __post_init__(self) -> None:
        if not self.name or os.sep in self.name or self.name.startswith("."):
            raise ValueError(f"case name {self.name!r} must be a plain folder name")
        if self.sweep and not self.sweep_seeds:
            raise ValueError(f"case {self.name!r}: a batch-size sweep needs sweep_seeds")
        if not self.seeds:
            raise ValueError(f"case {self.name!r}: give at least one seed")
        # Runs go to <regime in lower case>/seed<k>: labels must differ in more than case.
        labels = [label.lower() for label in [*self.regimes, *self.sweep]]
        clash = sorted({label for label in labels if labels.count(label) > 1})
        if clash:
            raise ValueError(
                f"case {self.name!r}: regime labels {clash} occur twice in regimes and sweep "
                "(ignoring case; each label is a folder name)"
            )
        if self.pair_seed is not None:
            if not {"SB", "LB"} <= set(self.regimes):
                raise ValueError(f"case {self.name!r}: the parametric plot needs SB and LB regimes")
            if self.pair_seed not in self.seeds:
                raise ValueError(
                    f"case {self.name!r}: pair_seed {self.pair_seed} is not among the seeds "
                    f"{list(self.seeds)}; choose a trained seed or pair_seed=None"
                )
        if self.pair_bn not in ("recompute", "interpolate"):
            raise ValueError(
                f"case {self.name!r}: pair_bn must be 'recompute' or 'interpolate', "
                f"got {self.pair_bn!r}"
            )

    @property
    def runs_count(self) -> int:
        """How many networks the case trains."""
        return len(self.regimes) * len(self.seeds) + len(self.sweep) * len(self.sweep_seeds)


@dataclass(frozen=True)
class StudyPlan:
    """Cases run one after another, and the title of their overview page."""

    name: str
    title: str
    cases: tuple[Case, ...]
    runs: str
    out: str

    def __post_init__(self) -> None:
        names = [case.name for case in self.cases]
        if not names or len(set(names)) != len(names):
            raise ValueError(f"a study needs cases with distinct names, got {names}")


def _f1(dataset: str, **data: Any) -> dict[str, Any]:
    return {
        **KESKAR_PROTOCOL,
        "network": "f1",
        "network_kwargs": dict(F1_SMALL),
        "dataset": dataset,
        "dataset_kwargs": data,
    }


DEMO = StudyPlan(
    name="demo",
    title="flatness demo: SB vs LB minima of an F1-style network on MNIST-1D",
    cases=(
        Case(
            name="f1-mnist1d",
            title="F1-style network on MNIST-1D: SB vs LB (demo, 3 seeds)",
            train=_f1("mnist1d"),
            seeds=(0, 1, 2),
            reference="F1",
            measures=DEMO_MEASURES,
        ),
    ),
    runs="runs/demo",
    out="reports/demo",
)
"""The reduced study ``flatness demo`` runs: 6 networks, 4 measures (7 scalar columns)."""

FULL = StudyPlan(
    name="keskar-mnist1d",
    title="Keskar et al. (2017) on built-in data: are large-batch minima sharper?",
    cases=(
        Case(
            name="f1-mnist1d",
            title="F1-style network on MNIST-1D: SB vs LB and a batch-size sweep",
            train=_f1("mnist1d"),
            sweep={f"B{b}": {"batch_size": b} for b in (40, 80, 160, 240)},
            sweep_seeds=(0, 1, 2),
            reference="F1",
        ),
        Case(
            name="c1-mnist1d",
            title="C1-style network on MNIST-1D: SB vs LB",
            train={
                **KESKAR_PROTOCOL,
                "network": "c1",
                "network_kwargs": dict(C1_SMALL),
                "dataset": "mnist1d",
            },
            reference="C1",
        ),
        Case(
            name="f1-digits",
            title="F1-style network on scikit-learn's digits: SB vs LB",
            train=_f1("digits_flat"),
            reference="F1",
            examples=None,
        ),
    ),
    runs="runs/keskar",
    out="reports/keskar-mnist1d",
)
"""The whole study (``flatness demo --full``, ``analyses/keskar/run.py``)."""


@dataclass(frozen=True)
class CaseResult(Result):
    """What :func:`run_case` did for one case.

    Attributes:
        name: The case's name.
        manifest: The manifest written.
        store: The results store.
        report: The case's HTML report.
        trained: Networks trained by this call.
        reused_runs: Networks found already trained.
        computed: Measure tasks computed by this call.
        reused_scores: Tasks found in the store.
        failures: Checkpoints or tasks that failed (one line each).
        missed_target: Runs that hit their epoch cap below the target training accuracy
            (path and accuracy); they are scored and reported all the same.
        checkpoints: SHA-256 digests of the case's checkpoints: its reports show only
            these, even when the store holds runs an earlier plan listed.
        report_rebuilt: Whether the report was written (False: the store had not changed).
        train_seconds: Training time of every run, summed (from the checkpoints' metadata,
            so reused runs count too).
        score_seconds: Measure time of every stored task, summed.
        seconds: Wall-clock seconds (``train``, ``score``, ``report``).
    """

    name: str
    manifest: Path
    store: Path
    report: Path
    trained: int
    reused_runs: int
    computed: int
    reused_scores: int
    failures: tuple[str, ...]
    missed_target: tuple[str, ...]
    checkpoints: tuple[str, ...]
    report_rebuilt: bool
    train_seconds: float
    score_seconds: float
    seconds: Mapping[str, float]


@dataclass(frozen=True)
class StudyResult(Result):
    """What :func:`run_study` did: one :class:`CaseResult` per case, and the overview
    (its pages and its answers, one sentence per case)."""

    cases: tuple[CaseResult, ...]
    html: Path
    markdown: Path
    answers: tuple[str, ...]
    seconds: float

    @property
    def ok(self) -> bool:
        """True when every checkpoint and measure was scored."""
        return not any(case.failures for case in self.cases)


def _write_manifest(case: Case, out: Path, runs: list[Any]) -> Path:
    from flatness.zoo.files import write_text_atomic
    from flatness.zoo.manifests import MANIFEST_NAME, write_manifest

    scoring: dict[str, Any] = {"seed": 0}
    if case.examples is not None:
        scoring["examples"] = case.examples
    path = write_manifest(
        out / MANIFEST_NAME,
        [(run.path, run.meta) for run in runs],
        scoring=scoring,
        measures=dict(case.measures),
    )
    if case.pair_seed is not None:
        seed = case.pair_seed
        text = path.read_text(encoding="utf-8")
        text += (
            f'\n[[pairs]]\nsb = "sb/seed{seed}/final.pt"\nlb = "lb/seed{seed}/final.pt"\n'
            f'label = "seed {seed} (same initialization)"\nbn = "{case.pair_bn}"\n'
        )
        write_text_atomic(path, text)
    return path


def _fingerprint(store: Path, options: Mapping[str, Any]) -> str:
    """A digest of everything a report is built from: scores, curves, failures, options
    and the report package's source."""
    digest = hashlib.sha256(json.dumps(dict(options), sort_keys=True, default=str).encode())
    with closing(sqlite3.connect(f"file:{store}?mode=ro", uri=True)) as con:
        for query in (
            "SELECT checkpoint, measure, settings, component, value FROM measurements "
            "ORDER BY checkpoint, measure, settings, component",
            "SELECT checkpoint, path, status, error, train_accuracy, test_accuracy FROM runs "
            "ORDER BY checkpoint",
            "SELECT sb, lb, settings, count(*), sum(value) FROM curves "
            "GROUP BY sb, lb, settings ORDER BY sb, lb, settings",
            "SELECT checkpoint, measure, settings, status, error FROM tasks "
            "ORDER BY checkpoint, measure, settings",
            "SELECT key, value FROM info ORDER BY key",
        ):
            for row in con.execute(query):
                digest.update(repr(row).encode())
    # The report's own code: a changed report builder rebuilds the report.
    for source in sorted(Path(__file__).with_name("report").glob("*.py")):
        digest.update(source.read_bytes())
    return digest.hexdigest()


def run_case(
    case: Case,
    runs: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    progress: bool = True,
    echo: Callable[[str], None] = print,
    command: str | None = None,
) -> CaseResult:
    """Train, score and report one case (see the module docstring).

    Args:
        case: The case.
        runs: Folder of the case's checkpoints and store (``<runs>/<case.name>``).
        out: Folder of the case's report (``<out>/<case.name>``).
        progress: Show progress bars on stderr.
        echo: Called with one line per step.
        command: The command that regenerates the report (shown in it).

    Returns:
        What was trained, scored and written.
    """
    from flatness.pipeline.checkpoints import file_sha256
    from flatness.pipeline.scoring import score
    from flatness.report import build_from_store
    from flatness.zoo.sweep import SweepSpec, train_sweep

    folder = Path(runs) / case.name
    report_dir = Path(out) / case.name
    seconds: dict[str, float] = {}

    started = time.perf_counter()
    echo(f"  train: {case.runs_count} networks in {folder}")
    specs = [
        SweepSpec(
            train=dict(case.train),
            regimes={k: dict(v) for k, v in case.regimes.items()},
            seeds=case.seeds,
        )
    ]
    if case.sweep:
        specs.append(
            SweepSpec(
                train=dict(case.train),
                regimes={k: dict(v) for k, v in case.sweep.items()},
                seeds=case.sweep_seeds,
            )
        )
    trained_runs = [
        run for spec in specs for run in train_sweep(spec, folder, progress=progress).runs
    ]
    trained = sum(run.status == "trained" for run in trained_runs)
    missed = tuple(
        f"{run.path.relative_to(folder).as_posix()} ({100 * run.meta['train_accuracy']:.1f}%)"
        for run in trained_runs
        if run.meta.get("reached_target") is False
    )
    if missed:
        echo(
            f"  warning: {len(missed)} runs stopped below the target accuracy: {', '.join(missed)}"
        )
    manifest = _write_manifest(case, folder, trained_runs)
    checkpoints = tuple(sorted({file_sha256(run.path) for run in trained_runs}))
    seconds["train"] = time.perf_counter() - started

    started = time.perf_counter()
    echo(f"  score: {manifest}")
    failures: list[str] = []
    summary = score(manifest, progress=progress, log=failures.append)
    seconds["score"] = time.perf_counter() - started

    started = time.perf_counter()
    store = Path(summary.store)
    options = {"reference": case.reference, "title": case.title, "command": command}
    stamp = report_dir / "data" / "source.sha256"
    fingerprint = _fingerprint(store, {**options, "checkpoints": checkpoints})
    html = report_dir / "report.html"
    rebuilt = not (
        html.is_file()
        and (report_dir / "report.md").is_file()
        and stamp.is_file()
        and stamp.read_text(encoding="utf-8").strip() == fingerprint
    )
    if not _has_measurements(store):
        rebuilt = False
        echo(f"  report: left out, {store} holds no measurement (see the failures above)")
    elif rebuilt:
        echo(f"  report: {report_dir}")
        report = build_from_store(
            store, report_dir, root=folder, checkpoints=checkpoints, **options
        )
        html = report.html
        stamp.write_text(fingerprint + "\n", encoding="utf-8")
    else:
        echo(f"  report: {report_dir} is up to date")
    seconds["report"] = time.perf_counter() - started
    return CaseResult(
        name=case.name,
        manifest=manifest,
        store=store,
        report=html,
        trained=trained,
        reused_runs=len(trained_runs) - trained,
        computed=summary.computed,
        reused_scores=summary.reused,
        failures=tuple(summary.failures) or tuple(failures),
        missed_target=missed,
        checkpoints=checkpoints,
        report_rebuilt=rebuilt,
        train_seconds=sum(float(run.meta.get("seconds", 0.0)) for run in trained_runs),
        score_seconds=_compute_seconds(store),
        seconds=seconds,
    )


def run_study(
    plan: StudyPlan = DEMO,
    *,
    runs: str | os.PathLike[str] | None = None,
    out: str | os.PathLike[str] | None = None,
    progress: bool = True,
    echo: Callable[[str], None] = print,
    command: str | None = None,
) -> StudyResult:
    """Run every case of a plan, then write the overview (``flatness demo``).

    Args:
        plan: :data:`DEMO`, :data:`FULL` or a plan of your own.
        runs: Where checkpoints and stores go (default ``plan.runs``, relative to the
            current directory).
        out: Where the reports go (default ``plan.out``).
        progress: Show progress bars on stderr.
        echo: Called with one line per step.
        command: The command that regenerates the reports (shown in them).

    Returns:
        Every case's result and the overview's paths.
    """
    from flatness.report.overview import OverviewCase, write_overview

    started = time.perf_counter()
    runs_dir = Path(runs if runs is not None else plan.runs)
    out_dir = Path(out if out is not None else plan.out)
    results = []
    for i, case in enumerate(plan.cases, 1):
        echo(f"[{i}/{len(plan.cases)}] {case.title}")
        results.append(
            run_case(case, runs_dir, out_dir, progress=progress, echo=echo, command=command)
        )
    elapsed = time.perf_counter() - started
    echo(_invocation(results, elapsed))
    echo(f"overview: {out_dir / 'report.html'}")
    intro = [describe(case) for case in plan.cases]
    intro.append(_cost(results))
    for result in results:
        if result.missed_target:
            intro.append(
                f"{result.name}: {len(result.missed_target)} runs stopped at the epoch cap "
                f"below the target training accuracy: {', '.join(result.missed_target)}."
            )
    shown = [
        (case, result)
        for case, result in zip(plan.cases, results, strict=True)
        if _has_measurements(result.store)
    ]
    for case, result in zip(plan.cases, results, strict=True):
        if (case, result) not in shown:
            intro.append(
                f"{case.name}: left out, its store holds no measurement ({len(result.failures)} "
                "failures; see the command's output)."
            )
    if command:
        intro.append(f"Regenerate with `{command}`; reruns reuse checkpoints and stored scores.")
    overview = write_overview(
        out_dir,
        [
            OverviewCase(
                case.name,
                case.title,
                result.store,
                result.report,
                case.reference,
                frozenset(result.checkpoints),
            )
            for case, result in shown
        ],
        title=plan.title,
        intro=intro,
    )
    for answer in overview.answers:
        echo(f"- {answer}")
    return StudyResult(
        cases=tuple(results),
        html=overview.html,
        markdown=overview.markdown,
        answers=overview.answers,
        seconds=time.perf_counter() - started,
    )


def describe(case: Case) -> str:
    """One sentence saying what a case trains and scores.

    Examples:
        >>> print(describe(DEMO.cases[0]))  # doctest: +NORMALIZE_WHITESPACE
        f1-mnist1d: f1 (width=256, depth=3) on mnist1d; SB (batch 0.5%), LB (batch 10%)
        × seeds 0, 1, 2; adam, lr 0.001, until 98% training accuracy (at most 100
        epochs); measures lambda_max, trace, keskar, adaptive_sharpness on 1000 training
        examples.
    """
    from flatness.zoo.config import TrainConfig

    base = TrainConfig.from_dict(dict(case.train))
    kwargs = ", ".join(f"{k}={v}" for k, v in base.network_kwargs.items())
    network = base.network + (f" ({kwargs})" if kwargs else "")
    tables = [case.regimes, *([case.sweep] if case.sweep else [])]
    overridden = {k for table in tables for v in table.values() for k in v}

    def regimes(table: Mapping[str, Mapping[str, Any]], seeds: tuple[int, ...]) -> str:
        parts = []
        for label, overrides in table.items():
            batch = overrides.get("batch_size", base.batch_size)
            others = [f"{k} {v:g}" if isinstance(v, float) else f"{k} {v}"
                      for k, v in overrides.items() if k != "batch_size"]  # fmt: skip
            parts.append(f"{label} ({', '.join([f'batch {batch}', *others])})")
        return f"{', '.join(parts)} × seeds {', '.join(map(str, seeds))}"

    text = f"{case.name}: {network} on {base.dataset}; " + regimes(case.regimes, case.seeds)
    if case.sweep:
        text += "; batch-size sweep " + regimes(case.sweep, case.sweep_seeds)
    text += f"; {base.optimizer}"
    if "lr" not in overridden:
        text += f", lr {base.lr:g}"
    if base.target_accuracy:
        text += f", until {100 * base.target_accuracy:g}% training accuracy"
    caps = []
    if base.epochs is not None:
        caps.append(f"{base.epochs} epochs")
    if base.max_updates is not None:
        caps.append(f"{base.max_updates} updates")
    text += f" (at most {' and '.join(caps)})"
    examples = "all" if case.examples is None else str(case.examples)
    measures = ", ".join(case.measures) or "the default measures"
    return text + f"; measures {measures} on {examples} training examples."


def _has_measurements(store: Path) -> bool:
    from flatness.pipeline.store import ResultsStore

    with ResultsStore(store) as db:
        return db.has_measurements()


def _compute_seconds(store: Path) -> float:
    """Seconds of measure computation stored (each task once, not once per component)."""
    with closing(sqlite3.connect(f"file:{store}?mode=ro", uri=True)) as con:
        (total,) = con.execute(
            "SELECT sum(s) FROM (SELECT max(seconds) AS s FROM measurements "
            "GROUP BY checkpoint, measure, settings)"
        ).fetchone()
    return float(total or 0.0)


def _cost(results: list[CaseResult]) -> str:
    """The compute behind a study's results (the same on every rerun)."""
    return (
        f"Compute behind these results: {sum(r.train_seconds for r in results):.0f} s of "
        f"training (summed over runs) and {sum(r.score_seconds for r in results):.0f} s of "
        "measures (summed over tasks; parametric plots and evaluation not included), "
        f"for {sum(r.trained + r.reused_runs for r in results)} networks."
    )


def _invocation(results: list[CaseResult], elapsed: float) -> str:
    """What this call did and how long it took."""
    steps = {
        step: sum(r.seconds.get(step, 0.0) for r in results)
        for step in ("train", "score", "report")
    }
    return (
        f"took {elapsed:.0f} s (training {steps['train']:.0f} s, scoring "
        f"{steps['score']:.0f} s, reports {steps['report']:.0f} s): "
        f"{sum(r.trained for r in results)} networks trained and "
        f"{sum(r.reused_runs for r in results)} reused, "
        f"{sum(r.computed for r in results)} tasks (measures and parametric plots) computed "
        f"and {sum(r.reused_scores for r in results)} reused"
    )
