"""Comparison reports that relate sharpness to test accuracy, as Keskar et al. did.

``flatness.report.build(df, out)`` turns a tidy results frame into a folder holding a
self-contained HTML page, a Markdown version with PNG figures and the numbers as CSV;
``flatness.report.build_from_store(store)`` (the ``flatness report`` command) reads a
results store first (:mod:`~flatness.report.from_store`, the one module that opens a
store; the overview of several cases reads their frames through it); the rest of the
package reads DataFrames. The modules follow the flow
of the data:

- :mod:`~flatness.report.frames` -- the tidy frame to runs and per-measure scores;
- :mod:`~flatness.report.stats`, :mod:`~flatness.report.correlation`,
  :mod:`~flatness.report.bootstrap` -- mean ± std, the Mann–Whitney test, rank
  correlations with bootstrap intervals;
- :mod:`~flatness.report.paired` -- paired tests over seeds with the smallest attainable
  p, Holm's correction, the binomial noise floor, the within-regime τ test's power;
  :mod:`~flatness.report.variance_shares` -- variance a grouping of grid cells explains;
- :mod:`~flatness.report.analysis` -- everything a report states, computed once;
- :mod:`~flatness.report.tables`, :mod:`~flatness.report.comparisons` -- Keskar's
  tables per regime; SB vs LB, trends and correlations;
- :mod:`~flatness.report.figures`, :mod:`~flatness.report.summary`,
  :mod:`~flatness.report.curves`, :mod:`~flatness.report.parametric` -- seaborn figures,
  generated text, parametric plots (over seeds); :mod:`~flatness.report.figure_style`
  (one colour and axis rule) and :mod:`~flatness.report.study_figures` (the studies'
  overview figures);
- :mod:`~flatness.report.provenance` -- data, network, settings, versions, dates;
- :mod:`~flatness.report.sections` -- one builder per section of the page;
- :mod:`~flatness.report.build`, :mod:`~flatness.report.from_store` -- the report of a
  frame, and of a results store;
- :mod:`~flatness.report.render` -- Markdown and HTML;
- :mod:`~flatness.report.reference` -- the paper's published Tables 2-4;
- :mod:`~flatness.report.overview`, :mod:`~flatness.report.overview_tables`,
  :mod:`~flatness.report.answers`, :mod:`~flatness.report.overview_case` (``StudyAnswer``),
  :mod:`~flatness.report.case_runs` -- one page over several cases' reports.
"""

from flatness.report.analysis import Comparison, Study, analyze
from flatness.report.build import Report, build
from flatness.report.correlation import Correlation, rank_correlation, within_kendall
from flatness.report.frames import ReportInputError
from flatness.report.from_store import build_from_store, default_out
from flatness.report.reference import KESKAR_NETWORKS, keskar_reference
from flatness.report.stats import (
    MeanStd,
    RankTest,
    format_mean_std,
    mean_std,
    paired_wins,
    rank_test,
)
from flatness.report.training import build_training

__all__ = [
    # building reports
    "Report",
    "ReportInputError",
    "build",
    "build_from_store",
    "build_training",
    "default_out",
    # the numbers behind them
    "Comparison",
    "Study",
    "analyze",
    # statistics
    "Correlation",
    "MeanStd",
    "RankTest",
    "format_mean_std",
    "mean_std",
    "paired_wins",
    "rank_correlation",
    "rank_test",
    "within_kendall",
    # the paper's values
    "KESKAR_NETWORKS",
    "keskar_reference",
]
