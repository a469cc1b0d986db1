"""The study runner: every case of a plan is trained, scored and reported, resumably.

For each :class:`~flatness.study.plan.Case` of a :class:`~flatness.study.plan.StudyPlan`,
:func:`run_case`

1. **trains** the case's regimes × seeds (and its sweep) with
   :func:`flatness.zoo.train_sweep` into ``<runs>/<case>/``, and writes one manifest
   listing every run and the parametric plot between the pair's regimes of one seed;
2. **scores** every checkpoint with :func:`flatness.score` into
   ``<runs>/<case>/results.sqlite`` (one store per case);
3. **reports** with :func:`flatness.report.build_from_store` into ``<out>/<case>/``.

:func:`run_study` then writes the overview of the cases (:mod:`flatness.study.overview`).
Reruns reuse what exists: finished runs are not retrained (same settings), stored scores
are not recomputed, and a case's report is rebuilt only when its :func:`fingerprint`
(the store's contents, the report's options and the report code) changed. The folders
``runs`` and ``out`` are the caller's: the library writes nowhere else.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from flatness.atomic import write_text_atomic
from flatness.study.outcome import CaseResult, StudyResult, has_measurements
from flatness.study.overview import write_study_overview
from flatness.study.plan import Case, StudyPlan

if TYPE_CHECKING:
    from flatness.zoo.sweep import SweepRun

__all__ = [
    "CaseResult",
    "StudyResult",
    "fingerprint",
    "has_measurements",
    "run_case",
    "run_study",
]

Echo = Callable[[str], None]
"""Called with one line per step (``print`` by default)."""


def _write_manifest(case: Case, folder: Path, runs: Sequence[SweepRun]) -> Path:
    """The case's manifest: every run, its scoring settings, measures and pair."""
    from flatness.zoo.files import dumps_toml
    from flatness.zoo.manifests import MANIFEST_NAME, write_manifest

    scoring: dict[str, Any] = {"seed": 0}
    if case.examples is not None:
        scoring["examples"] = case.examples
    path = write_manifest(
        folder / MANIFEST_NAME,
        [(run.path, run.meta) for run in runs],
        scoring=scoring,
        measures=dict(case.measures),
    )
    if case.plot_seeds:
        small, large = (regime.lower() for regime in case.pair)
        pairs = [
            {
                "sb": f"{small}/seed{seed}/final.pt",
                "lb": f"{large}/seed{seed}/final.pt",
                "label": f"seed {seed} (same initialization)",
                "bn": case.pair_bn,
            }
            for seed in case.plot_seeds
        ]
        text = path.read_text(encoding="utf-8") + "\n" + dumps_toml({"pairs": pairs})
        write_text_atomic(path, text)
    return path


def fingerprint(store: str | os.PathLike[str], options: Mapping[str, Any]) -> str:
    """A digest of everything a report is built from.

    Args:
        store: The results store.
        options: The report's options (title, reference, command, checkpoints, ...).

    Returns:
        The SHA-256 hex digest of the stored scores, runs, parametric plots, tasks,
        records taken during training (tracks and histories) and scored manifest, of
        ``options`` and of the report package's source code (a changed report builder
        rebuilds the report).
    """
    import flatness.report
    from flatness.pipeline.readers import load_tracks
    from flatness.pipeline.store import ResultsStore, load_curves, load_info

    digest = hashlib.sha256(json.dumps(dict(options), sort_keys=True, default=str).encode())
    with ResultsStore(store) as db:
        frames = [
            db.measurements()[["checkpoint", "measure", "settings", "component", "value"]],
            db.runs()[["checkpoint", "path", "status", "error", "train_accuracy", "test_accuracy"]],
            db.tasks()[["checkpoint", "measure", "settings", "status", "error"]],
        ]
    curves = load_curves(store)
    frames.append(curves[["sb", "lb", "settings", "split", "metric", "alpha", "value"]])
    for frame in frames:
        ordered = frame.sort_values(list(frame.columns)).reset_index(drop=True)
        digest.update(ordered.to_csv(index=False).encode())
    tracks = load_tracks(store)  # one record per (run, source, step); fields vary by record
    tracks = tracks[sorted(tracks.columns)].sort_values(["run", "source", "step"])
    digest.update(tracks.to_csv(index=False).encode())
    # Of the store's info, the report reads the manifest scored; the rest is bookkeeping
    # (such as which process holds the objective) that changes on every run.
    manifest = load_info(store).get("manifest")
    digest.update(json.dumps(manifest, sort_keys=True, default=str).encode())
    for source in sorted(Path(flatness.report.__file__).parent.rglob("*.py")):
        digest.update(source.read_bytes())
    return digest.hexdigest()


def _train(case: Case, folder: Path, progress: bool, echo: Echo) -> list[SweepRun]:
    """Train every run of the case (finished runs with the same settings are reused)."""
    from flatness.study.training import train_case

    echo(f"  train: {case.runs_count} networks in {folder}")
    return train_case(case, folder, progress=progress)


def _missed_target(runs: Sequence[SweepRun], folder: Path) -> tuple[str, ...]:
    """Runs with a target (accuracy or loss) that stopped short of it: path (accuracy)."""

    def targeted(meta: Mapping[str, Any]) -> bool:
        config = meta.get("config", {})
        return any(config.get(key) is not None for key in ("target_accuracy", "target_loss"))

    return tuple(
        f"{run.path.relative_to(folder).as_posix()} ({100 * run.meta['train_accuracy']:.1f}%, "
        f"loss {run.meta['train_loss']:.3g})"
        for run in runs
        if run.meta.get("reached_target") is False and targeted(run.meta)
    )


def _compute_seconds(store: Path) -> float:
    from flatness.pipeline.store import ResultsStore

    with ResultsStore(store) as db:
        return db.compute_seconds()


def _report(
    case: Case,
    store: Path,
    folder: Path,
    report_dir: Path,
    checkpoints: tuple[str, ...],
    command: str | None,
    echo: Echo,
) -> tuple[Path, bool]:
    """Rebuild the case's report when its fingerprint changed; its path and whether."""
    from flatness.report import build_from_store

    options: dict[str, Any] = {"reference": case.reference, "title": case.title, "command": command}
    if case.sections is not None:
        options["sections"] = list(case.sections)
    if case.notes:
        options["notes"] = list(case.notes)
    stamp = report_dir / "data" / "source.sha256"
    html = report_dir / "report.html"
    if not has_measurements(store):
        echo(f"  report: left out, {store} holds no measurement (see the failures above)")
        return html, False
    digest = fingerprint(store, {**options, "checkpoints": checkpoints})
    current = (
        html.is_file()
        and (report_dir / "report.md").is_file()
        and stamp.is_file()
        and stamp.read_text(encoding="utf-8").strip() == digest
    )
    if current:
        echo(f"  report: {report_dir} is up to date")
        return html, False
    echo(f"  report: {report_dir}")
    report = build_from_store(store, report_dir, root=folder, checkpoints=checkpoints, **options)
    write_text_atomic(stamp, digest + "\n")
    return report.html, True


def run_case(
    case: Case,
    runs: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    progress: bool = True,
    echo: Echo = print,
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

    Raises:
        ValueError: When the case's store holds scores of another objective (the
            case's examples or data changed; :func:`flatness.score` names the change).
    """
    from flatness.pipeline.checkpoints import file_sha256
    from flatness.pipeline.scoring import score

    folder = Path(runs) / case.name
    seconds: dict[str, float] = {}

    started = time.perf_counter()
    trained_runs = _train(case, folder, progress, echo)
    trained = sum(run.status == "trained" for run in trained_runs)
    missed = _missed_target(trained_runs, folder)
    if missed:
        echo(
            f"  warning: {len(missed)} runs stopped below the target accuracy: {', '.join(missed)}"
        )
    manifest = _write_manifest(case, folder, trained_runs)
    checkpoints = tuple(sorted({file_sha256(run.path) for run in trained_runs}))
    seconds["train"] = time.perf_counter() - started

    started = time.perf_counter()
    echo(f"  score: {manifest}")
    summary = score(manifest, progress=progress)
    seconds["score"] = time.perf_counter() - started

    started = time.perf_counter()
    store = Path(summary.store)
    html, rebuilt = _report(case, store, folder, Path(out) / case.name, checkpoints, command, echo)
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
        failures=summary.failures,
        missed_target=missed,
        checkpoints=checkpoints,
        report_rebuilt=rebuilt,
        train_seconds=sum(float(run.meta.get("seconds", 0.0)) for run in trained_runs),
        score_seconds=_compute_seconds(store),
        seconds=seconds,
    )


def run_study(
    plan: StudyPlan,
    *,
    runs: str | os.PathLike[str],
    out: str | os.PathLike[str],
    progress: bool = True,
    echo: Echo = print,
    command: str | None = None,
) -> StudyResult:
    """Run every case of a plan, then write the overview of the cases.

    Args:
        plan: The plan (a built-in study's, :func:`flatness.studies.get_study`, or one
            read from TOML, :func:`flatness.study.load_study`).
        runs: Where checkpoints and stores go (``<runs>/<case>/``).
        out: Where the reports go: the overview in ``out``, each case in ``<out>/<case>/``.
        progress: Show progress bars on stderr.
        echo: Called with one line per step.
        command: The command that regenerates the reports (shown in them).

    Returns:
        Every case's result, the overview's paths and its answers.

    Raises:
        ValueError: As :func:`run_case` does.
    """
    started = time.perf_counter()
    runs_dir, out_dir = Path(runs), Path(out)
    results = []
    for i, case in enumerate(plan.cases, 1):
        echo(f"[{i}/{len(plan.cases)}] {case.title}")
        results.append(
            run_case(case, runs_dir, out_dir, progress=progress, echo=echo, command=command)
        )
    echo(_invocation(results, time.perf_counter() - started))
    echo(f"overview: {out_dir / 'report.html'}")
    overview = write_study_overview(plan, results, out_dir, command=command)
    for answer in overview.answers:
        echo(f"- {answer}")
    return StudyResult(
        cases=tuple(results),
        html=overview.html,
        markdown=overview.markdown,
        answers=overview.answers,
        seconds=time.perf_counter() - started,
    )


def _invocation(results: Sequence[CaseResult], elapsed: float) -> str:
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
