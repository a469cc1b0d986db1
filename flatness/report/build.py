"""Build a comparison report: tables, figures and a generated summary, as HTML and Markdown.

:func:`build` takes a tidy results frame (:func:`flatness.load_results`, or a
research project's own frame) and writes, into one folder,

- ``report.html`` -- one self-contained page (figures inlined, no network needed);
- ``report.md`` -- the same report in Markdown, with the figures in ``figures/*.png``;
- ``data/*.csv`` -- every checkpoint's scores and the numbers behind each table.

and lists them in ``.flatness-report.json``: a rebuild of the folder removes the files of
the earlier report that it does not write again, and no other file
(:mod:`~flatness.report.outputs`). Every file is written atomically (a temporary sibling
moved into place), so a failed build leaves no partial file.

It reads DataFrames only; :func:`flatness.report.build_from_store`
(:mod:`~flatness.report.from_store`, what ``flatness report`` runs) reads a results store
and calls it. Each section of the page has its builder in
:mod:`~flatness.report.sections`.

What a report contains, following Keskar et al. (ICLR 2017): provenance; Table 2
(accuracies per regime); Tables 3 and 4 (ε-sharpness in full space and in a random
subspace); every other measure per regime; the top-k Hessian eigenvalues per regime;
SB vs LB with a Mann–Whitney test; measures vs batch size; measures vs test accuracy
and generalization gap with Kendall's τ and Spearman's ρ and bootstrap intervals; the
parametric plot of each stored pair; the spectral densities; learning curves and the
measures' trajectories during training, when the store holds tracks. A section whose
data is missing is replaced by a note saying what to score to get it.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from flatness.atomic import write_text_atomic
from flatness.report.analysis import analyze
from flatness.report.curves import pairs, summarize
from flatness.report.layers import without_groups
from flatness.report.outputs import Report, list_own_files, read_manifest
from flatness.report.provenance import report_title
from flatness.report.render import Bullets, Section, to_html, to_markdown
from flatness.report.sections import SECTIONS, SectionContext

__all__ = ["DESIGN_ANCHOR", "Report", "build", "check_sections", "section_key", "section_keys"]

DESIGN_ANCHOR = "design"
"""The anchor of the "Design and its limits" section a report with design notes gets."""


def section_key(builder: Callable[[SectionContext], Section | None]) -> str:
    """The key a standard section is chosen by: its builder's name, ``_`` as ``-``.

    Examples:
        >>> from flatness.report.sections import sb_vs_lb_section
        >>> section_key(sb_vs_lb_section)
        'sb-vs-lb'
    """
    return builder.__name__.removesuffix("_section").replace("_", "-")


def section_keys() -> tuple[str, ...]:
    """The keys of the standard sections, in display order (the page anchors, too).

    Examples:
        >>> section_keys()[:3]
        ('summary', 'provenance', 'accuracy')
    """
    return tuple(section_key(builder) for builder in SECTIONS)


def check_sections(keys: Sequence[str] | None) -> None:
    """Check section keys (``None`` is all sections).

    Raises:
        ValueError: For a key that is not a standard section's.
    """
    unknown = sorted(set(keys or ()) - set(section_keys()))
    if unknown:
        raise ValueError(f"unknown report sections {unknown}; known are {list(section_keys())}")


def _chosen(ctx: SectionContext, keys: Sequence[str] | None, notes: Sequence[str]) -> list[Section]:
    """The standard sections ``keys`` lists (all for ``None``), the design notes after the
    summary (first without it)."""
    wanted = SECTIONS if keys is None else [b for b in SECTIONS if section_key(b) in keys]
    sections = [s for s in (builder(ctx) for builder in wanted) if s is not None]
    if notes:
        design = Section("Design and its limits", DESIGN_ANCHOR, [Bullets(tuple(notes))])
        at = 1 if sections and sections[0].anchor == "summary" else 0
        sections.insert(at, design)
    return sections


def build(
    df: pd.DataFrame,
    out: str | os.PathLike[str] = "reports/report",
    *,
    title: str | None = None,
    curves: pd.DataFrame | None = None,
    failed: pd.DataFrame | None = None,
    tracks: pd.DataFrame | None = None,
    info: Mapping[str, Any] | None = None,
    reference: str | None = None,
    sb: str | None = None,
    lb: str | None = None,
    n_boot: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
    command: str | None = None,
    root: str | os.PathLike[str] | None = None,
    sections: Sequence[str] | None = None,
    notes: Sequence[str] = (),
) -> Report:
    """Write a comparison report of the checkpoints in ``df`` into ``out``.

    Args:
        df: One row per checkpoint × measure (× settings × component):
            :func:`flatness.load_results`'s frame (with ``details=True`` for the spectral
            densities and versions) or a frame of your own with at least ``measure``,
            ``value`` and ``regime`` or ``batch_size``; ``test_accuracy``,
            ``train_accuracy``, ``seed``, ``settings`` and ``component`` are used when
            present.
        out: The report's folder (created). The files an earlier report listed in it
            (:mod:`~flatness.report.outputs`) and not written again are removed;
            other files in it are left alone.
        title: The page's title (default: from the data set and network).
        curves: Parametric plots, as :func:`flatness.load_curves` returns them.
        failed: Checkpoints that could not be scored (``path`` and ``error`` columns;
            rows with ``kind == "measure"`` are measures that failed on a checkpoint
            that was otherwise scored).
        tracks: Records taken during training, as :func:`flatness.load_tracks` returns
            them (tracker measurements and per-epoch histories): with any, the report
            gets a "Training" section (:mod:`~flatness.report.learning`).
        info: The store's info (:func:`flatness.pipeline.store.load_info`), for the
            manifest's data, network and scoring settings.
        reference: A network of Keskar et al. (``"F1"``, ``"C1"``, ...) whose published
            values are shown beside the SB and LB rows; ``None`` for none.
        sb: The small-batch regime (default ``"SB"``, else the smallest batch size).
        lb: The large-batch regime (default ``"LB"``, else the largest batch size).
        n_boot: Bootstrap resamples for the correlations' intervals.
        confidence: The intervals' level.
        seed: The bootstrap's seed (the report is reproducible).
        command: The command that regenerates the report, printed in its provenance.
        root: Show checkpoint paths relative to this folder.
        sections: The standard sections to show, by :func:`section_key` (``"summary"``,
            ``"accuracy"``, ``"sb-vs-lb"``, ...); the others are left out without a
            word. ``None`` shows all.
        notes: Design notes (one sentence or paragraph each), shown as "Design and its
            limits" right after the summary.

    Returns:
        A :class:`Report` with the files written and the summary sentences.

    Raises:
        flatness.report.ReportInputError: For a frame a report cannot be made of (empty,
            or lacking ``measure``/``value``/``regime``), naming what is missing.
        ValueError: For an unknown ``reference`` network or section key.

    Examples:
        >>> import pandas as pd, tempfile
        >>> df = pd.DataFrame({
        ...     "regime": ["SB", "SB", "LB", "LB"], "seed": [0, 1, 0, 1],
        ...     "batch_size": [32, 32, 512, 512], "test_accuracy": [0.9, 0.91, 0.87, 0.88],
        ...     "train_accuracy": [0.99, 0.97, 0.95, 0.96], "measure": "lambda_max",
        ...     "value": [10.0, 12.0, 40.0, 45.0]})
        >>> report = build(df, tempfile.mkdtemp(), n_boot=200)
        >>> report.html.name, [p.name for p in report.figures]
        ('report.html', ['batch-size.png', 'vs-test-accuracy.png', 'vs-generalization-gap.png'])
        >>> report.summary[2].split(":")[0]
        'LB sharper than SB in 2/2 seeds by λ_max'
    """
    started = time.perf_counter()
    if reference is not None:
        from flatness.report.reference import keskar_reference

        keskar_reference(reference)  # fail before any work on an unknown network
    check_sections(sections)
    # rows taken per parameter group belong to the per-layer section alone: the other
    # sections compare whole networks
    study = analyze(
        without_groups(df), sb=sb, lb=lb, n_boot=n_boot, confidence=confidence, seed=seed
    )
    base = Path(out)
    base.mkdir(parents=True, exist_ok=True)
    earlier = read_manifest(base)
    root_path = Path(root) if root is not None else None
    found = pairs(curves, root_path)
    ctx = SectionContext(
        df=df,
        study=study,
        out=base,
        pairs=found,
        summaries=[summarize(pair) for pair in found],
        reference=reference,
        info=info,
        failed=failed,
        tracks=tracks,
        command=command,
        root=root_path,
    )
    heading = title or report_title(df, info)
    markdown = base / "report.md"
    html_page = base / "report.html"
    finished = False
    try:
        shown = _chosen(ctx, sections, notes)
        write_text_atomic(markdown, to_markdown(heading, shown))
        write_text_atomic(html_page, to_html(heading, shown, base))
        finished = True
    finally:
        list_own_files(base, earlier, [*ctx.figures, *ctx.data], finished)
    return Report(
        out=base,
        html=html_page,
        markdown=markdown,
        figures=tuple(ctx.figures),
        data=tuple(ctx.data),
        summary=tuple(ctx.summary),
        notes=tuple(ctx.notes),
        seconds=time.perf_counter() - started,
    )


def __getattr__(name: str) -> Any:
    """``build_from_store`` and ``default_out`` moved to :mod:`flatness.report.from_store`."""
    if name in ("build_from_store", "default_out"):
        import warnings

        from flatness.report import from_store

        warnings.warn(
            f"flatness.report.build.{name} moved: import it from flatness.report",
            DeprecationWarning,
            stacklevel=2,
        )
        return getattr(from_store, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
