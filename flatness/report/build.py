"""Build a comparison report: tables, figures and a generated summary, as HTML and Markdown.

:func:`build` takes a tidy results frame (:func:`flatness.load_results`, or a
research project's own frame) and writes, into one folder,

- ``report.html`` -- one self-contained page (figures inlined, no network needed);
- ``report.md`` -- the same report in Markdown, with the figures in ``figures/*.png``;
- ``data/*.csv`` -- every checkpoint's scores and the numbers behind each table.

:func:`build_from_store` reads a results store (the measurements with their details,
the parametric plots, failed checkpoints and the manifest's settings) and calls
:func:`build`; ``flatness report`` is a thin layer over it.

What a report contains, following Keskar et al. (ICLR 2017): provenance; Table 2
(accuracies per regime); Tables 3 and 4 (ε-sharpness in full space and in a random
subspace); every other measure per regime; the top-k Hessian eigenvalues per regime;
SB vs LB with a Mann–Whitney test; measures vs batch size; measures vs test accuracy
and generalization gap with Kendall's τ and Spearman's ρ and bootstrap intervals; the
parametric plot of each stored pair; the spectral densities. A section whose data is
missing is replaced by a note saying what to score to get it.
"""

from __future__ import annotations

import os
import re
import shlex
import time
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from flatness.report import figures as figs
from flatness.report.analysis import TARGETS, analyze
from flatness.report.curves import Pair, curve_sentence, curve_table, display_path, pairs, summarize
from flatness.report.frames import density_curves, normalize
from flatness.report.provenance import provenance_table, report_title
from flatness.report.render import (
    Bullets,
    FigureBlock,
    Links,
    Paragraph,
    Section,
    TableBlock,
    to_html,
    to_markdown,
)
from flatness.report.stats import format_p_value
from flatness.report.summary import summary_sentences
from flatness.report.tables import (
    Table,
    accuracy_table,
    comparison_table,
    correlation_table,
    eigenvalues_table,
    keskar_tables,
    measures_table,
    scores_table,
)
from flatness.results import Result

__all__ = ["Report", "build", "build_from_store", "default_out"]

FIGURE_PATTERNS = (
    "batch-size*.png", "noise*.png", "vs-*.png", "parametric-*.png", "density.png",
)  # fmt: skip
"""The figures a report writes; a rebuild removes earlier ones (and no other file)."""
DATA_NAMES = ("scores", "measures", "eigenvalues", "sb-vs-lb", "trend", "parametric")


@dataclass(frozen=True)
class Report(Result):
    """What :func:`build` wrote.

    Attributes:
        out: The report's folder.
        html: The self-contained HTML page.
        markdown: The Markdown version (figures beside it in ``figures/``).
        figures: The PNG files.
        data: The CSV files (``scores.csv`` and one per table).
        summary: The generated summary sentences.
        notes: The sections left out and why.
        seconds: Wall-clock seconds to build it.
    """

    out: Path
    html: Path
    markdown: Path
    figures: tuple[Path, ...]
    data: tuple[Path, ...]
    summary: tuple[str, ...]
    notes: tuple[str, ...]
    seconds: float

    def __repr__(self) -> str:
        return (
            f"Report(html={str(self.html)!r}, figures={len(self.figures)}, "
            f"sections left out={len(self.notes)}, seconds={self.seconds:.1f})"
        )


def _write_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "figure"


def _pair_figures(found: list[Pair], fig_dir: Path) -> tuple[list[FigureBlock], list[Path]]:
    blocks: list[FigureBlock] = []
    written: list[Path] = []
    for index, pair in enumerate(found):
        extra = ""
        if pair.settings:
            extra = (
                f" Path: {pair.settings.get('curve', 'linear')}; BatchNorm statistics, if the "
                f"network has any: {pair.settings.get('bn', '?')}."
            )
        title = f"{pair.label}: {pair.sb_path} (α=0) → {pair.lb_path} (α=1)"
        fig = figs.parametric_figure(pair.frame, title=title)
        path = figs.save(fig, fig_dir / f"parametric-{index + 1}-{_slug(pair.label)}.png")
        written.append(path)
        blocks.append(
            FigureBlock(
                f"figures/{path.name}",
                f"Parametric plot, {title}: cross-entropy loss (blue, left axis) and accuracy "
                f"(red, right axis) on the training (solid) and test (dashed) sets.{extra}",
            )
        )
    return blocks, written


def build(
    df: pd.DataFrame,
    out: str | os.PathLike[str] = "reports/report",
    *,
    title: str | None = None,
    curves: pd.DataFrame | None = None,
    failed: pd.DataFrame | None = None,
    info: Mapping[str, Any] | None = None,
    reference: str | None = None,
    sb: str | None = None,
    lb: str | None = None,
    n_boot: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
    command: str | None = None,
    root: str | os.PathLike[str] | None = None,
) -> Report:
    """Write a comparison report of the checkpoints in ``df`` into ``out``.

    Args:
        df: One row per checkpoint × measure (× settings × component):
            :func:`flatness.load_results`'s frame (with ``details=True`` for the spectral
            densities and versions) or a frame of your own with at least ``measure``,
            ``value`` and ``regime`` or ``batch_size``; ``test_accuracy``,
            ``train_accuracy``, ``seed``, ``settings`` and ``component`` are used when
            present.
        out: The report's folder (created; files of an earlier report are replaced).
        title: The page's title (default: from the data set and network).
        curves: Parametric plots, as :func:`flatness.load_curves` returns them.
        failed: Checkpoints that could not be scored (``path`` and ``error`` columns;
            rows with ``kind == "measure"`` are measures that failed on a checkpoint
            that was otherwise scored).
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

    Returns:
        A :class:`Report` with the files written and the summary sentences.

    Raises:
        flatness.report.ReportInputError: For a frame a report cannot be made of (empty,
            or lacking ``measure``/``value``/``regime``), naming what is missing.
        ValueError: For an unknown ``reference`` network.

    Examples:
        >>> import pandas as pd, tempfile
        >>> df = pd.DataFrame({
        ...     "regime": ["SB", "SB", "LB", "LB"], "seed": [0, 1, 0, 1],
        ...     "batch_size": [32, 32, 512, 512], "test_accuracy": [0.9, 0.91, 0.87, 0.88],
        ...     "train_accuracy": [0.99] * 4, "measure": "lambda_max",
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
    study = analyze(df, sb=sb, lb=lb, n_boot=n_boot, confidence=confidence, seed=seed)
    base = Path(out)
    fig_dir = base / "figures"
    data_dir = base / "data"
    base.mkdir(parents=True, exist_ok=True)
    for pattern in FIGURE_PATTERNS:
        for stale in fig_dir.glob(pattern):
            stale.unlink()
    for stale in data_dir.glob("*.csv"):
        if stale.stem in DATA_NAMES or stale.stem.startswith(("table", "correlation-")):
            stale.unlink()
    root_path = Path(root) if root is not None else None
    written: list[Path] = []
    notes: list[str] = []
    sections: list[Section] = []

    def figure(fig: Any, name: str, caption: str) -> FigureBlock:
        path = figs.save(fig, fig_dir / f"{name}.png")
        written.append(path)
        return FigureBlock(f"figures/{path.name}", caption)

    def left_out(section: Section, text: str) -> None:
        notes.append(f"{section.title}: {text}")
        section.blocks.append(Paragraph(f"Left out: {text}"))

    found = pairs(curves, root_path)
    summaries = [summarize(pair) for pair in found]
    summary = summary_sentences(study) + [s for s in map(curve_sentence, summaries) if s]
    sections.append(Section("Summary", "summary", [Bullets(tuple(summary))]))

    prov = provenance_table(df, study, info=info, failed=failed, command=command)
    provenance = Section("Provenance", "provenance", [TableBlock(prov)])
    if failed is not None and not failed.empty:
        lines = []
        for path, error in zip(failed["path"], failed["error"], strict=True):
            shown = display_path(path, root_path)
            lines.append(f"{shown}: {str(error).replace(str(path), shown)}")
        provenance.blocks.append(Bullets(tuple(lines)))
    sections.append(provenance)

    tables: list[Table] = []
    accuracy = Section("Accuracy (Table 2)", "accuracy")
    if study.has_accuracy:
        table = accuracy_table(study, reference)
        tables.append(table)
        accuracy.blocks.append(TableBlock(table))
        if study.single_seed:
            accuracy.blocks.append(Paragraph("One run per regime: no standard deviation (±)."))
    else:
        left_out(accuracy, "the frame has no test_accuracy column (or only missing values).")
    sections.append(accuracy)

    sharp = Section("Sharpness per regime (Tables 3 and 4)", "sharpness")
    keskar = keskar_tables(study, reference)
    tables += keskar
    sharp.blocks += [TableBlock(t) for t in keskar]
    if not keskar:
        left_out(
            sharp,
            "no Keskar ε-sharpness in the results; score it with "
            "keskar = {eps = [1e-3, 5e-4], subspace = [0, 100]} in the manifest's [measures].",
        )
    other = measures_table(study)
    if other is not None:
        tables.append(other)
        sharp.blocks.append(TableBlock(other))
    top = eigenvalues_table(normalize(df), study)
    if top is not None:
        tables.append(top)
        sharp.blocks.append(TableBlock(top))
    elif not study.columns:
        left_out(sharp, "no scalar measure in the results.")
    sections.append(sharp)

    versus = Section("SB vs LB", "sb-vs-lb")
    comparison = comparison_table(study)
    if comparison is not None:
        tables.append(comparison)
        versus.blocks.append(TableBlock(comparison))
    else:
        left_out(versus, study.sb_lb_note or "no two regimes to compare.")
    sections.append(versus)

    batch = Section("Sharpness vs batch size and η/B", "batch-size")
    n_pages = figs.pages(study)

    def part(page: int) -> tuple[str, str]:
        if n_pages == 1:
            return "", ""
        return (f"-{page + 1}" if page else ""), f" (part {page + 1} of {n_pages})"

    def trend_figures(by: str, name: str, caption: str) -> bool:
        drawn = False
        for page in range(n_pages):
            fig = figs.trend_figure(study, by, page)
            if fig is None:
                continue
            drawn = True
            suffix, part_of = part(page)
            batch.blocks.append(figure(fig, f"{name}{suffix}", f"{caption}{part_of}."))
        return drawn

    if not trend_figures(
        "batch_size",
        "batch-size",
        "Each measure against the batch size: one point per checkpoint (coloured by "
        "regime), the line joins the means per batch size",
    ):
        left_out(batch, "fewer than two distinct batch sizes in the results.")
    rates = study.learning_rates
    noise_drawn = len(rates) >= 2 and trend_figures(
        "lr_over_batch",
        "noise",
        "Each measure against η/B, the learning rate over the batch size (the scale of "
        "SGD noise, Smith et al. 2018): runs with equal η/B should match if only the "
        "noise matters",
    )
    if not noise_drawn and len(rates) == 1 and study.batch_trend:
        batch.blocks.append(
            Paragraph(
                f"Every run has learning rate η = {rates[0]:g}, so η/B is proportional to "
                "1/B and adds nothing to the batch-size view."
            )
        )
    trend, trend_values = [], []
    for label in [*TARGETS.values(), *(c.label for c in study.columns)]:
        row = {"quantity": label}
        for by, trends, head in (
            ("batch_size", study.batch_trend, "τ with batch size [CI]"),
            ("lr_over_batch", study.noise_trend, "τ with η/B [CI]"),
        ):
            if label in trends:
                tau = trends[label]
                row[head] = tau.text()
                row[f"p ({head.split(' [')[0]})"] = format_p_value(tau.p_value)
                trend_values.append(
                    {
                        "quantity": label,
                        "versus": by,
                        "tau": tau.estimate,
                        "low": tau.low,
                        "high": tau.high,
                        "p_value": tau.p_value,
                        "n": tau.n,
                    }
                )
        if len(row) > 1:
            trend.append(row)
    if trend:
        table = Table(
            "trend",
            "Kendall τ of the accuracy and each measure with batch size"
            + (" and with η/B" if study.noise_trend else "")
            + " [bootstrap CI]",
            pd.DataFrame(trend).fillna("—"),
            (),
            pd.DataFrame(trend_values),
        )
        tables.append(table)
        batch.blocks.append(TableBlock(table))
    sections.append(batch)

    corr = Section("Sharpness vs test accuracy and generalization gap", "correlation")
    for target, name in (("test_accuracy", "test accuracy"), ("generalization_gap", "gap")):
        table_or_none = correlation_table(study, target)
        if table_or_none is None:
            left_out(corr, f"no {name} values or no measures to correlate with it.")
            continue
        tables.append(table_or_none)
        corr.blocks.append(TableBlock(table_or_none))
        for page in range(n_pages):
            fig = figs.correlation_figure(study, target, page)
            if fig is None:
                continue
            suffix, caption = part(page)
            corr.blocks.append(
                figure(
                    fig,
                    f"vs-{target.replace('_', '-')}{suffix}",
                    f"Each measure (x) against the {name} (y, %), one point per checkpoint; "
                    f"titles give Kendall's τ and Spearman's ρ with bootstrap intervals"
                    f"{caption}.",
                )
            )
    sections.append(corr)

    parametric = Section("Parametric plots (Keskar et al., Figure 3)", "parametric")
    blocks, paths = _pair_figures(found, fig_dir)
    written += paths
    parametric.blocks += blocks
    if found:
        parametric.blocks.append(TableBlock(curve_table(summaries)))
    else:
        left_out(
            parametric,
            "no SB/LB pair was interpolated; name one in the manifest "
            '([[pairs]] sb = "...", lb = "...") and score again.',
        )
    sections.append(parametric)

    spectrum = Section("Hessian spectral density", "density")
    fig = figs.density_figure(study, density_curves(df))
    if fig is not None:
        spectrum.blocks.append(
            figure(
                fig,
                "density",
                "Stochastic Lanczos quadrature estimates of the Hessian's eigenvalue density "
                "(log scale), coloured by regime: a thin line per checkpoint, a thick line "
                "for each regime's mean.",
            )
        )
    else:
        left_out(
            spectrum,
            "no spectral density in the results; score density = {} (from Python, load "
            "the results with load_results(store, details=True) to keep its quadrature).",
        )
    sections.append(spectrum)

    data_dir.mkdir(parents=True, exist_ok=True)
    data = [data_dir / "scores.csv"]
    scores = scores_table(study)
    scores["path"] = [display_path(p, root_path) for p in scores["path"]]
    scores.to_csv(data[0], index=False)
    for table in tables:
        if table.values is not None:
            path = data_dir / f"{table.key}.csv"
            table.values.to_csv(path, index=False)
            data.append(path)
    files = Section(
        "Data",
        "data",
        [
            Paragraph("The numbers behind the tables, as CSV files beside this report:"),
            Links(tuple((f"data/{p.name}", f"data/{p.name}") for p in data)),
        ],
    )
    sections.append(files)

    heading = title or report_title(df, info)
    markdown = base / "report.md"
    html_page = base / "report.html"
    _write_text(markdown, to_markdown(heading, sections))
    _write_text(html_page, to_html(heading, sections, base))
    return Report(
        out=base,
        html=html_page,
        markdown=markdown,
        figures=tuple(written),
        data=tuple(data),
        summary=tuple(summary),
        notes=tuple(notes),
        seconds=time.perf_counter() - started,
    )


def default_out(store: str | os.PathLike[str]) -> Path:
    """Where a store's report goes by default: ``reports/<name of the store's folder>``.

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
    parametric plots, the checkpoints that failed and the manifest's settings, and
    passes them to :func:`build`.

    Args:
        store: The results store (``results.sqlite``).
        out: The report's folder (default: :func:`default_out`, ``reports/<the store's
            folder name>`` under the current directory).
        checkpoints: Report only these checkpoints (SHA-256 digests, the store's
            ``checkpoint`` column), e.g. those of the current manifest when the store
            also holds runs it no longer lists; ``None`` for all.
        **options: Passed to :func:`build` (``title``, ``reference``, ``sb``, ``lb``,
            ``n_boot``, ``confidence``, ``seed``, ``command``).

    Raises:
        FileNotFoundError: If there is no store at ``store``.
        flatness.report.ReportInputError: If the store holds no measurement yet.
    """
    from flatness.pipeline.store import (
        load_curves,
        load_failed_tasks,
        load_info,
        load_results,
        load_runs,
    )

    path = Path(store)
    df = load_results(path, details=True)
    runs = load_runs(path)
    curves = load_curves(path)
    if checkpoints is not None:
        keep = set(checkpoints)
        df = df[df["checkpoint"].isin(keep)]
        runs = runs[runs["checkpoint"].isin(keep)]
        curves = curves[curves["sb"].isin(keep) & curves["lb"].isin(keep)]
    if df.empty:
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
    target = Path(out) if out is not None else default_out(path)
    options.setdefault("root", path.resolve().parent)
    options.setdefault(
        "command",
        "flatness report " + shlex.join([str(path), "--out", str(target)]),
    )
    return build(
        df,
        target,
        curves=curves,
        failed=failed,
        info=load_info(path),
        **options,
    )
