"""The report's note on BatchNorm statistics: which checkpoints had stale ones.

:func:`flatness.score` compares each BatchNorm network's eval-mode loss on the first
scoring batch with its training-mode loss (:func:`flatness.batchnorm.batchnorm_check`)
and keeps both in the run's metadata (``meta["batchnorm"]``), recomputed or not. This
section lists the checkpoints whose statistics looked stale, or were recomputed, so a
reader knows which numbers were taken of a network the running statistics did not
describe.
"""

from __future__ import annotations

import json
import math
from typing import Any

import pandas as pd

from flatness.report.curves import display_path
from flatness.report.layers import SectionInputs
from flatness.report.render import Paragraph, Section
from flatness.report.tables import Table

__all__ = ["batchnorm_notes", "batchnorm_section"]


def batchnorm_notes(df: pd.DataFrame) -> pd.DataFrame:
    """The BatchNorm check of every checkpoint whose metadata holds one.

    Args:
        df: The results frame with its ``meta`` column (``load_results(details=True)``).

    Returns:
        One row per checkpoint: ``checkpoint`` (its ``path`` when the frame has one),
        ``regime``, ``eval_loss``,
        ``train_mode_loss``, ``stale``, ``recomputed`` (before recomputing, the losses
        of the stale model are in ``eval_loss_before``); empty without such metadata.

    Examples:
        >>> meta = json.dumps({"batchnorm": {"eval_loss": 9.0, "train_mode_loss": 1.0,
        ...                                  "stale": True, "recomputed": False}})
        >>> frame = pd.DataFrame({"checkpoint": ["a"], "regime": ["SB"], "meta": [meta]})
        >>> batchnorm_notes(frame)[["checkpoint", "stale"]].values.tolist()
        [['a', True]]
    """
    columns = ["checkpoint", "regime", "eval_loss", "train_mode_loss", "stale", "recomputed",
               "eval_loss_before"]  # fmt: skip
    rows = []
    if "meta" in df.columns:
        for (checkpoint, regime), part in df.groupby(["checkpoint", "regime"], sort=False):
            note = _note(part["meta"].iloc[0])
            if "path" in part.columns and isinstance(part["path"].iloc[0], str):
                checkpoint = part["path"].iloc[0]
            if note is None:
                continue
            before = note.get("before") or {}
            rows.append(
                {
                    "checkpoint": checkpoint,
                    "regime": regime,
                    "eval_loss": float(note.get("eval_loss", math.nan)),
                    "train_mode_loss": float(note.get("train_mode_loss", math.nan)),
                    "stale": bool(note.get("stale")),
                    "recomputed": bool(note.get("recomputed")),
                    "eval_loss_before": float(before.get("eval_loss", math.nan)),
                }
            )
    return pd.DataFrame(rows, columns=columns)


def _note(meta: Any) -> dict[str, Any] | None:
    if isinstance(meta, str) and meta:
        try:
            meta = json.loads(meta)
        except json.JSONDecodeError:
            return None
    note = meta.get("batchnorm") if isinstance(meta, dict) else None
    return note if isinstance(note, dict) else None


def batchnorm_section(ctx: SectionInputs) -> Section | None:
    """The BatchNorm note, or ``None`` when no checkpoint had stale or recomputed statistics.

    Args:
        ctx: The report's :class:`~flatness.report.sections.SectionContext`.

    Returns:
        The section: a sentence and the table of the checkpoints concerned.
    """
    notes = batchnorm_notes(ctx.df)
    shown = notes[notes["stale"] | notes["recomputed"]]
    if shown.empty:
        return None
    stale = int((shown["stale"] & ~shown["recomputed"]).sum())
    recomputed = int(shown["recomputed"].sum())
    text = []
    if stale:
        text.append(
            f"{stale} checkpoint(s) had stale BatchNorm statistics: their eval-mode loss was "
            "more than twice (and 0.5 nats above) the loss with each batch's own statistics, "
            "and their measures are taken of that eval-mode network. Rescore them with "
            "recompute_batchnorm = true in [scoring] (flatness score --recompute-batchnorm)."
        )
    if recomputed:
        text.append(
            f"{recomputed} checkpoint(s) were scored with BatchNorm statistics recomputed on "
            "the scoring data."
        )
    section = Section("BatchNorm statistics", "batchnorm", [Paragraph(" ".join(text))])
    cells = pd.DataFrame(
        {
            "checkpoint": [display_path(p, ctx.root) for p in shown["checkpoint"]],
            "regime": shown["regime"],
            "eval-mode loss": [f"{v:.4g}" for v in shown["eval_loss"]],
            "train-mode loss": [f"{v:.4g}" for v in shown["train_mode_loss"]],
            "stale": ["yes" if s else "no" for s in shown["stale"]],
            "recomputed": ["yes" if r else "no" for r in shown["recomputed"]],
        }
    )
    ctx.table(
        section,
        Table("batchnorm", "BatchNorm check on the first scoring batch", cells, values=shown),
    )
    return section
