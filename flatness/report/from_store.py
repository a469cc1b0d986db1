"""A report of a results store: the edge where the report meets the store.

:func:`build_from_store` (what ``flatness report`` runs) loads from a results store the
measurements with their details (spectral densities, versions), the parametric plots,
the checkpoints and measures that failed, the records taken during training (tracks)
and the manifest's settings, and passes them as DataFrames to
:func:`flatness.report.build`, which reads DataFrames only; :func:`load_frame` is the
results frame the overview of several stores reads. Nothing else in the report opens a
store.
"""

from __future__ import annotations

import os
import shlex
from collections.abc import Collection
from pathlib import Path
from typing import Any

import pandas as pd

from flatness.report.build import Report, build

__all__ = ["build_from_store", "default_out", "load_frame"]


def load_frame(
    store: str | os.PathLike[str],
    *,
    checkpoints: Collection[str] | None = None,
    details: bool = False,
) -> pd.DataFrame:
    """A store's tidy results frame, optionally only some of its checkpoints.

    Args:
        store: The results store.
        checkpoints: Keep only these checkpoints (SHA-256 digests); ``None`` for all.
        details: Keep each measurement's details (spectral densities, versions).

    Returns:
        :func:`flatness.load_results`'s frame, filtered.

    Raises:
        FileNotFoundError: If there is no store at ``store``.
    """
    from flatness.pipeline.store import load_results

    df = load_results(store, details=details)
    if checkpoints is not None:
        df = df[df["checkpoint"].isin(set(checkpoints))]
    return df


def default_out(store: str | os.PathLike[str]) -> Path:
    """Where a store's report goes by default: ``reports/<name of the store's folder>``.

    Returns:
        The folder (relative to the current directory).

    Examples:
        >>> default_out("runs/keskar/results.sqlite").as_posix()
        'reports/keskar'
    """
    folder = Path(store).resolve().parent.name or Path(store).stem
    return Path("reports") / folder


def build_from_store(
    store: str | os.PathLike[str],
    out: str | os.PathLike[str] | None = None,
    *,
    checkpoints: Collection[str] | None = None,
    **options: Any,
) -> Report:
    """Build the report of a results store (what ``flatness report`` runs).

    Reads the measurements with their details (spectral densities, versions), the
    parametric plots, the checkpoints that failed, the records taken during training
    (tracks and histories, all of them whatever ``checkpoints`` says) and the manifest's
    settings, and passes them to :func:`build`.

    Args:
        store: The results store (``results.sqlite``).
        out: The report's folder (default: :func:`default_out`, ``reports/<the store's
            folder name>`` under the current directory).
        checkpoints: Report only these checkpoints (SHA-256 digests, the store's
            ``checkpoint`` column), e.g. those of the current manifest when the store
            also holds runs it no longer lists; ``None`` for all.
        **options: Passed to :func:`build` (``title``, ``reference``, ``sb``, ``lb``,
            ``n_boot``, ``confidence``, ``seed``, ``command``).

    Returns:
        The :class:`~flatness.report.build.Report` written.

    Raises:
        FileNotFoundError: If there is no store at ``store``.
        flatness.report.ReportInputError: If the store holds no measurement and no
            records taken during training yet (with such records and no measurement,
            the report shows training alone:
            :func:`~flatness.report.training.build_training`).
    """
    from flatness.pipeline.readers import load_tracks
    from flatness.pipeline.store import load_curves, load_failed_tasks, load_info, load_runs

    path = Path(store)
    df = load_frame(path, checkpoints=checkpoints, details=True)
    runs = load_runs(path)
    curves = load_curves(path)
    if checkpoints is not None:
        keep = set(checkpoints)
        runs = runs[runs["checkpoint"].isin(keep)]
        curves = curves[curves["sb"].isin(keep) & curves["lb"].isin(keep)]
    tracks = load_tracks(path)
    target = Path(out) if out is not None else default_out(path)
    command = "flatness report " + shlex.join([str(path), "--out", str(target)])
    if df.empty:
        if not tracks.empty:
            from flatness.report.training import build_training

            return build_training(
                tracks, target, title=options.get("title"), command=options.get("command", command)
            )
        from flatness.report.frames import ReportInputError

        raise ReportInputError(
            f"{path}: the store holds no measurement yet; run `flatness score` first"
        )
    df = df.merge(runs[["checkpoint", "examples"]], on="checkpoint", how="left")
    failed = runs.loc[runs["status"] != "ok", ["path", "error"]].assign(kind="checkpoint")
    tasks = load_failed_tasks(path)
    tasks = tasks[tasks["checkpoint"].isin(runs.loc[runs["status"] == "ok", "checkpoint"])]
    if not tasks.empty:
        failed = pd.concat(
            [
                failed,
                pd.DataFrame(
                    {
                        "path": tasks["path"],
                        "error": [
                            f"{m} {st}: {e}"
                            for m, st, e in zip(
                                tasks["measure"], tasks["settings"], tasks["error"], strict=True
                            )
                        ],
                        "kind": "measure",
                    }
                ),
            ],
            ignore_index=True,
        )
    options.setdefault("root", path.resolve().parent)
    options.setdefault("command", command)
    return build(
        df,
        target,
        curves=curves,
        failed=failed,
        tracks=tracks,
        info=load_info(path),
        **options,
    )
