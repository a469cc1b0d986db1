"""The overview of a study's cases: what was run, what it cost, and the cases side by side.

:func:`write_study_overview` turns a plan and its cases' results into the overview page
of :func:`flatness.report.overview.write_overview`: an introduction (what each case
trains and scores, the compute behind the results, runs that missed their target, cases
left out, the regenerating command), then the plan's answers
(:attr:`~flatness.study.plan.StudyPlan.answer`, by default Keskar et al.'s questions case
by case) over every case whose store holds measurements.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from flatness.report.overview import Overview, OverviewCase, write_overview
from flatness.study.outcome import CaseResult, has_measurements
from flatness.study.plan import StudyPlan, describe

__all__ = ["write_study_overview"]


def _cost(results: Sequence[CaseResult]) -> str:
    """The compute behind a study's results (the same on every rerun)."""
    return (
        f"Compute behind these results: {sum(r.train_seconds for r in results):.0f} s of "
        f"training (summed over runs) and {sum(r.score_seconds for r in results):.0f} s of "
        "measures (summed over tasks; parametric plots and evaluation not included), "
        f"for {sum(r.trained + r.reused_runs for r in results)} networks."
    )


def write_study_overview(
    plan: StudyPlan,
    results: Sequence[CaseResult],
    out: str | os.PathLike[str],
    *,
    command: str | None = None,
) -> Overview:
    """Write ``<out>/report.html`` and ``report.md`` over the plan's cases.

    Args:
        plan: The plan that was run.
        results: Its cases' results (:func:`flatness.study.run_case`), in the plan's order.
        out: The overview's folder (the cases' reports are its subfolders).
        command: The command that regenerates the study (named in the introduction).

    Returns:
        The overview's pages and its answers.

    Raises:
        ValueError: When ``results`` does not hold one result per case of the plan.
    """
    if len(results) != len(plan.cases):
        raise ValueError(f"{len(results)} results for the {len(plan.cases)} cases of the plan")
    intro = [describe(case) for case in plan.cases]
    intro.append(_cost(results))
    for result in results:
        if result.missed_target:
            intro.append(
                f"{result.name}: {len(result.missed_target)} runs stopped at their cap "
                f"short of their training target: {', '.join(result.missed_target)}."
            )
    pairs = list(zip(plan.cases, results, strict=True))
    shown = [(case, result) for case, result in pairs if has_measurements(result.store)]
    for case, result in pairs:
        if (case, result) not in shown:
            intro.append(
                f"{case.name}: left out, its store holds no measurement ({len(result.failures)} "
                "failures; see the command's output)."
            )
    if command:
        intro.append(f"Regenerate with `{command}`; reruns reuse checkpoints and stored scores.")
    cases = [
        OverviewCase(
            case.name,
            case.title,
            result.store,
            result.report,
            case.reference,
            frozenset(result.checkpoints),
        )
        for case, result in shown
    ]
    return write_overview(Path(out), cases, title=plan.title, intro=intro, answer=plan.answer)
