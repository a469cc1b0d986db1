"""Studies: plans of cases, run resumably through training, scoring and reporting.

A study is data, not code in the library's core. Its cases (network × data × regimes ×
seeds × training protocol × measures × parametric-plot pair) are declared in Python
(:class:`Case`, :class:`StudyPlan`, :class:`StudySpec`; the built-in studies live in
:mod:`flatness.studies`) or in a TOML file (:func:`load_study`). The runner takes every
case through training, scoring and its report, into folders the caller names, and writes
an overview of the cases:

- :mod:`~flatness.study.plan` -- cases, plans and studies (and :func:`describe`);
- :mod:`~flatness.study.runner` -- :func:`run_case` and :func:`run_study`;
- :mod:`~flatness.study.matching` -- the equal-updates control (``match_updates``);
- :mod:`~flatness.study.training` -- training a case: the equal-updates control
  (``match_updates``) and tracking (``track``);
- :mod:`~flatness.study.loading` -- a study declared in TOML;
- :mod:`~flatness.study.overview` -- the overview page of a plan's cases, with the
  plan's answers (:attr:`StudyPlan.answer`, a
  :data:`~flatness.report.overview_case.AnswerFn`).

Examples:
    >>> from flatness.studies import get_study
    >>> plan = get_study("keskar2017").plan("demo")
    >>> [case.name for case in plan.cases]
    ['f1-mnist1d']
"""

from flatness.study.loading import TOML_PLAN, load_study, study_from_dict
from flatness.study.overview import write_study_overview
from flatness.study.plan import Case, StudyPlan, StudySpec, describe
from flatness.study.runner import CaseResult, StudyResult, fingerprint, run_case, run_study

__all__ = [
    # declaring a study
    "Case",
    "StudyPlan",
    "StudySpec",
    "describe",
    "TOML_PLAN",
    "load_study",
    "study_from_dict",
    # running it
    "CaseResult",
    "StudyResult",
    "fingerprint",
    "run_case",
    "run_study",
    "write_study_overview",
]
