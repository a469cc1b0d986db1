"""The built-in studies, one module each, registered by name.

Each module only declares its plans and the questions its overview answers (a
:class:`~flatness.study.plan.StudySpec`); :mod:`flatness.study` runs them. Run one with
``flatness study NAME --out DIR --runs DIR`` or :func:`flatness.study.run_study`.

- ``keskar2017`` (:mod:`~flatness.studies.keskar2017`) -- Keskar et al. (ICLR 2017):
  are large-batch minima sharper?
- ``smith2018`` (:mod:`~flatness.studies.smith2018`) -- Smith et al. (ICLR 2018): is
  increasing the batch size the same as decaying the learning rate?
- ``hoffer2017`` (:mod:`~flatness.studies.hoffer2017`) -- Hoffer et al. (NeurIPS 2017):
  fixed epochs, fixed updates or convergence: does the large-batch gap survive?
- ``smithle2018`` (:mod:`~flatness.studies.smithle2018`) -- Smith & Le (ICLR 2018):
  is it the batch size or the noise scale g ≈ εN/B?
- ``demo`` (:mod:`~flatness.studies.demo`) -- what ``flatness demo`` runs: a Smith and
  a Keskar case, one question answered from each.

Examples:
    >>> sorted(STUDIES)
    ['demo', 'hoffer2017', 'keskar2017', 'smith2018', 'smithle2018']
    >>> get_study("keskar2017").plan("full").name
    'keskar-mnist1d'
"""

from __future__ import annotations

from flatness.studies import demo, hoffer2017, keskar2017, smith2018, smithle2018
from flatness.study.plan import StudySpec

__all__ = ["STUDIES", "get_study"]

STUDIES: dict[str, StudySpec] = {
    study.name: study
    for study in (
        keskar2017.STUDY,
        smith2018.STUDY,
        hoffer2017.STUDY,
        smithle2018.STUDY,
        demo.STUDY,
    )
}
"""Built-in study name → study."""


def get_study(name: str) -> StudySpec:
    """A built-in study by name.

    Args:
        name: Its name (``"keskar2017"``).

    Returns:
        The study.

    Raises:
        ValueError: For a name no built-in study has (the message lists them).
    """
    try:
        return STUDIES[name]
    except KeyError:
        raise ValueError(
            f"no built-in study {name!r}; choose one of {sorted(STUDIES)} or give a TOML file"
        ) from None
