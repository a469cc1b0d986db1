"""Where a report's numbers come from: data set, network, settings, versions, dates.

:func:`provenance_table` reads the store's record of the manifest (``info``) when there
is one, else the checkpoints' own metadata (``meta``, written by ``flatness train``),
and the measurements' settings, devices, dtypes and package versions.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from typing import Any

import pandas as pd

from flatness.report.analysis import Study
from flatness.report.tables import Table
from flatness.versions import REPORT_PACKAGES, installed_versions

__all__ = ["REPORT_PACKAGES", "provenance_table", "report_title", "report_versions"]


def report_versions() -> dict[str, str]:
    """The installed versions of :data:`~flatness.versions.REPORT_PACKAGES` and Python.

    Returns:
        ``{"python": ..., package: version}`` (see :func:`flatness.versions.installed_versions`).
    """
    return installed_versions(REPORT_PACKAGES)


def _unique_json(df: pd.DataFrame, column: str) -> list[Any]:
    if column not in df.columns:
        return []
    seen: dict[str, Any] = {}
    for text in df[column].dropna().unique():
        try:
            value = json.loads(text) if isinstance(text, str) else text
        except json.JSONDecodeError:
            value = text
        seen[json.dumps(value, sort_keys=True, default=str)] = value
    return list(seen.values())


def _describe(spec: Any) -> str:
    if isinstance(spec, Mapping):
        name = spec.get("name") or spec.get("factory") or "?"
        kwargs = spec.get("kwargs") or {}
        inner = ", ".join(f"{k}={json.dumps(v)}" for k, v in sorted(kwargs.items()))
        return f"{name}({inner})" if inner else str(name)
    return str(spec)


def _join(values: Sequence[Any]) -> str:
    return "; ".join(str(v) for v in values) if len(values) else "not recorded"


def provenance_table(
    df: pd.DataFrame,
    study: Study,
    *,
    info: Mapping[str, Any] | None,
    failed: pd.DataFrame | None,
    command: str | None,
) -> Table:
    """Where the numbers come from: data, networks, measures, examples, device, versions.

    Args:
        df: The normalized results frame.
        study: The analysed study (its runs and columns).
        info: The store's ``info`` table (the manifest scored), if any.
        failed: The checkpoints and measures that could not be scored, if any.
        command: The command that regenerates the report, if known.

    Returns:
        The ``provenance`` table (item, value).
    """
    manifest = (info or {}).get("manifest") or {}
    metas = _unique_json(df, "meta")
    data = [manifest["data"]] if manifest.get("data") else [m["data"] for m in metas if "data" in m]
    model = [manifest["model"]] if manifest.get("model") else []
    model = model or [m["model"] for m in metas if "model" in m]
    rows: list[tuple[str, str]] = [
        ("data set", _join(sorted({_describe(d) for d in data}))),
        ("network", _join(sorted({_describe(m) for m in model}))),
    ]
    kinds = (
        pd.Series(dtype=object)
        if failed is None
        else failed.get("kind", pd.Series(["checkpoint"] * len(failed)))
    )
    n_failed = int((kinds == "checkpoint").sum())
    n_tasks = int((kinds == "measure").sum())
    rows.append(
        (
            "checkpoints",
            f"{len(study.runs)} scored"
            + (f", {n_failed} could not be scored" if n_failed else "")
            + (f", {n_tasks} measure(s) failed on scored checkpoints" if n_tasks else "")
            + (" (see below)" if n_failed or n_tasks else ""),
        )
    )
    if "examples" in df.columns and df["examples"].notna().any():
        counts = sorted({int(v) for v in df["examples"].dropna()})
        rows.append(("examples per checkpoint", ", ".join(map(str, counts))))
    elif manifest.get("scoring", {}).get("examples") is not None:
        rows.append(("examples per checkpoint", str(manifest["scoring"]["examples"])))
    for column in study.columns:
        rows.append((f"measure: {column.label}", json.dumps(dict(column.settings), sort_keys=True)))
    if "density" in set(df["measure"]):
        density = df.loc[df["measure"] == "density", "settings"].iloc[0]
        rows.append(("measure: spectral density", str(density)))
    for name in ("device", "dtype"):
        if name in df.columns and df[name].notna().any():
            rows.append((name, ", ".join(sorted(map(str, df[name].dropna().unique())))))
    scored = _unique_json(df, "versions")
    if scored:
        rows.append(("scored with", _join([_describe_versions(v) for v in scored])))
    rows.append(("report built with", _describe_versions(report_versions())))
    if "created" in df.columns and df["created"].notna().any():
        created = df["created"].dropna().astype(str)
        rows.append(("scored on", f"{created.min()[:10]} to {created.max()[:10]}"))
    rows.append(("report date", datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")))
    rows.append(("regenerate with", command or "flatness.report.build(df, ...) from Python"))
    frame = pd.DataFrame(rows, columns=["item", "value"])
    return Table("provenance", "Provenance", frame)


def _describe_versions(versions: Any) -> str:
    if isinstance(versions, Mapping):
        return ", ".join(f"{k} {v}" for k, v in sorted(versions.items()))
    return str(versions)


def report_title(df: pd.DataFrame, info: Mapping[str, Any] | None) -> str:
    """The report's title.

    Returns:
        ``Sharpness report: <network> on <data set>`` (as much of it as is recorded).
    """
    manifest = (info or {}).get("manifest") or {}
    metas = _unique_json(df, "meta")
    data = manifest.get("data", {}).get("name") or next(
        (m.get("dataset") for m in metas if m.get("dataset")), None
    )
    kwargs = manifest.get("model", {}).get("kwargs") or {}
    network = kwargs.get("name") or next(
        (m.get("network") for m in metas if m.get("network")), None
    )
    parts = [str(p) for p in (network, data) if p]
    return "Sharpness report" + (f": {' on '.join(parts)}" if parts else "")
