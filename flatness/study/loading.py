"""A study declared in a TOML file: its cases, their shared settings and its questions.

The format (every key of a case is a field of :class:`~flatness.study.plan.Case`)::

    name = "lr-scaling"                       # the study's (and its plan's) name
    title = "SB vs LB on digits, Adam"        # the overview's title
    questions = ["Is LB sharper than SB in every seed?"]   # optional

    [defaults]                                # optional: shared by every case
    seeds = [0, 1, 2]
    examples = 500
    measures = { lambda_max = { k = 2 }, keskar = { eps = [1e-3] } }
    train = { optimizer = "adam", lr = 1e-3, epochs = 20, target_accuracy = 0.98 }

    [[cases]]
    name = "f1-digits"
    title = "F1-style network on digits: SB vs LB"
    reference = "F1"                          # Keskar et al.'s values beside ours
    pair_seed = 0                             # parametric plot between SB and LB of seed 0
    train = { network = "f1", network_kwargs = { width = 64, depth = 2 }, dataset = "digits_flat" }
    regimes = { SB = { batch_size = "0.5%" }, LB = { batch_size = "10%" } }
    sweep = { B40 = { batch_size = 40 } }     # optional, with sweep_seeds
    sweep_seeds = [0]
    pair_seeds = [0, 1, 2]                    # a parametric plot per listed seed
    notes = ["Three seeds: the smallest paired p is 0.25."]   # "Design and its limits"
    sections = ["summary", "accuracy", "sb-vs-lb", "training"] # default: every section
    track = { measures = ["lambda_max"], every = "epoch" }     # tracked while training

    [[cases]]                                 # the equal-updates control
    name = "f1-digits-updates"
    title = "LB given as many updates as SB"
    train = { network = "f1", network_kwargs = { width = 64, depth = 2 }, dataset = "digits_flat" }
    regimes = { SB = { batch_size = "0.5%" }, LB-U = { batch_size = "10%", match_updates = "SB" } }

A case's ``train`` table is merged key by key over ``[defaults] train``; every other
key of the case replaces the default. :func:`load_study` returns a
:class:`~flatness.study.plan.StudySpec` with one plan, :data:`TOML_PLAN`.
"""

from __future__ import annotations

import dataclasses
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from flatness.study.plan import Case, StudyPlan, StudySpec

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

__all__ = ["TOML_PLAN", "load_study", "study_from_dict"]

TOML_PLAN = "main"
"""The name of the one plan a TOML study holds."""

_CASE_FIELDS = {f.name for f in dataclasses.fields(Case)}
_TUPLES = ("seeds", "sweep_seeds", "pair", "pair_seeds", "notes", "sections")


def _case(entry: Mapping[str, Any], defaults: Mapping[str, Any], where: str) -> Case:
    unknown = sorted(set(entry) - _CASE_FIELDS)
    if unknown:
        raise ValueError(f"{where}: unknown keys {unknown}; a case takes {sorted(_CASE_FIELDS)}")
    fields: dict[str, Any] = {**defaults, **entry}
    fields["train"] = {**defaults.get("train", {}), **entry.get("train", {})}
    for key in _TUPLES:
        if key in fields:
            fields[key] = tuple(fields[key])
    missing = sorted({"name", "title", "regimes", "seeds"} - set(fields))
    if missing:
        raise ValueError(f"{where}: missing {missing} (in the case or in [defaults])")
    return Case(**fields)


def study_from_dict(doc: Mapping[str, Any], *, source: str = "study") -> StudySpec:
    """A study from a parsed TOML document (see the module docstring).

    Args:
        doc: The document, as :func:`tomllib.loads` returns it.
        source: Where it came from, for error messages.

    Returns:
        The study, with one plan named :data:`TOML_PLAN`.

    Raises:
        ValueError: For unknown or missing keys, no cases, or a case that
            :class:`~flatness.study.plan.Case` rejects.
    """
    unknown = sorted(set(doc) - {"name", "title", "questions", "citation", "defaults", "cases"})
    if unknown:
        raise ValueError(f"{source}: unknown top-level keys {unknown}")
    for key in ("name", "title"):
        if not isinstance(doc.get(key), str) or not doc[key]:
            raise ValueError(f"{source}: give the study's {key} (a string)")
    defaults = doc.get("defaults", {})
    unknown = sorted(set(defaults) - _CASE_FIELDS)
    if unknown:
        raise ValueError(f"{source}: [defaults] has unknown keys {unknown}")
    entries = doc.get("cases", [])
    if not entries:
        raise ValueError(f"{source}: declare at least one [[cases]] table")
    cases = tuple(
        _case(entry, defaults, f"{source}: case {i + 1}") for i, entry in enumerate(entries)
    )
    plan = StudyPlan(name=doc["name"], title=doc["title"], cases=cases)
    return StudySpec(
        name=doc["name"],
        title=doc["title"],
        plans={TOML_PLAN: plan},
        default_plan=TOML_PLAN,
        questions=tuple(doc.get("questions", ())),
        citation=str(doc.get("citation", "")),
    )


def load_study(path: str | os.PathLike[str]) -> StudySpec:
    """Read a study declared in a TOML file (see the module docstring).

    Args:
        path: The TOML file.

    Returns:
        The study, with one plan named :data:`TOML_PLAN`.

    Raises:
        FileNotFoundError: If there is no such file.
        ValueError: For a file that is not valid TOML or not a valid study.

    Examples:
        >>> import tempfile, pathlib
        >>> path = pathlib.Path(tempfile.mkdtemp()) / "study.toml"
        >>> _ = path.write_text('''
        ... name = "mini"
        ... title = "A miniature"
        ... [defaults]
        ... seeds = [0, 1]
        ... [[cases]]
        ... name = "tiny"
        ... title = "tiny MLP"
        ... train = { network = "tiny_mlp", dataset = "digits_flat", epochs = 2 }
        ... regimes = { SB = { batch_size = 16 }, LB = { batch_size = 256 } }
        ... ''')
        >>> study = load_study(path)
        >>> study.plan().cases[0].seeds, list(study.plans)
        ((0, 1), ['main'])
    """
    file = Path(path)
    try:
        doc = tomllib.loads(file.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"{file}: not valid TOML ({exc})") from exc
    return study_from_dict(doc, source=str(file))
