"""The built-in studies, the study package's independence from paths, and the old names."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest

import flatness.study
from flatness.studies import STUDIES, get_study, keskar2017
from flatness.studies import demo as demo_study
from flatness.study import Case, StudyPlan, StudySpec


def test_keskar2017_declares_its_demo_and_full_plans_and_questions() -> None:
    study = get_study("keskar2017")
    assert study is STUDIES["keskar2017"] is keskar2017.STUDY
    assert study.plan() is keskar2017.DEMO and study.plan("full") is keskar2017.FULL
    assert len(study.questions) == 4 and "arXiv:1609.04836" in study.citation
    assert study.plan("ci") is keskar2017.CI
    assert [c.name for c in keskar2017.FULL.cases] == ["f1-mnist1d", "f1-digits", "c1-mnist1d"]


def test_unknown_study_and_plan_are_refused_naming_the_choices() -> None:
    with pytest.raises(
        ValueError, match=r"choose one of \['demo', 'hoffer2017', 'keskar2017', 'smith2018'"
    ):
        get_study("nosuch2099")
    with pytest.raises(ValueError, match=r"choose one of \['ci', 'demo', 'full'\]"):
        keskar2017.STUDY.plan("huge")
    with pytest.raises(ValueError, match="default plan"):
        StudySpec("s", "t", plans={"a": keskar2017.DEMO}, default_plan="b")


def test_a_generic_case_has_no_keskar_defaults() -> None:
    case = Case("c", "c", train={}, regimes={"A": {}, "B": {}}, seeds=(0,))
    assert case.pair_seed is None and dict(case.measures) == {} and case.runs_count == 2
    with pytest.raises(ValueError, match="needs the regimes A and B"):
        Case("c", "c", train={}, regimes={"A": {}}, seeds=(0,), pair_seed=0, pair=("A", "B"))
    with pytest.raises(ValueError, match="distinct names"):
        StudyPlan("p", "p", cases=())


def test_the_study_package_names_no_repository_folder() -> None:
    """Output folders come from the caller: no runs/ or reports/ path in flatness.study."""
    package = Path(flatness.study.__file__).parent
    for source in package.glob("*.py"):
        text = source.read_text(encoding="utf-8")
        assert '"runs/' not in text and '"reports/' not in text, source.name


def test_old_demo_names_still_work_with_a_deprecation_warning() -> None:
    from flatness import demo

    with pytest.warns(DeprecationWarning, match="flatness.studies.keskar2017.KeskarCase"):
        old_case = demo.Case
    assert old_case is keskar2017.KeskarCase
    with pytest.warns(DeprecationWarning, match="flatness.study.run_case"):
        assert demo.run_case is flatness.study.run_case
    with pytest.warns(DeprecationWarning, match="pass runs= and out="):
        plan = demo.StudyPlan("p", "p", cases=keskar2017.DEMO.cases, runs="r", out="o")
    assert demo._folders(plan) == ("r", "o")
    assert demo._folders(demo.FULL) == ("runs/keskar", "reports/keskar-mnist1d")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert demo.DEMO is demo_study.DEMO  # the command's own names do not warn
    with pytest.raises(AttributeError):
        demo.nothing  # noqa: B018


def test_the_built_in_studies_are_registered() -> None:
    from flatness.studies import hoffer2017, smith2018, smithle2018

    assert get_study("smith2018") is smith2018.STUDY
    assert get_study("hoffer2017") is hoffer2017.STUDY
    assert get_study("smithle2018") is smithle2018.STUDY
    assert get_study("demo") is demo_study.STUDY
