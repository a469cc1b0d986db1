"""What a study is: cases (network × data × regimes × seeds × protocol × measures × pair),
gathered in plans, with the questions the study's overview answers.

A :class:`Case` is one network on one data set, trained in several regimes and seeds
with one training protocol and scored with one set of measures; it gets one results
store and one report. A :class:`StudyPlan` runs cases one after another and writes an
overview of them; a :class:`StudySpec` names a study, its plans (a cheap demonstration,
the full study, ...) and its questions. These are data: the runner
(:mod:`flatness.study.runner`) takes them through training, scoring and reporting, and
the caller decides where the files go.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from flatness.study.matching import MATCH_KEY, check_matches

if TYPE_CHECKING:
    from flatness.report.overview_case import AnswerFn

__all__ = ["Case", "StudyPlan", "StudySpec", "describe"]

Settings = Mapping[str, Any]
"""Keyword settings, as a TOML table holds them (training settings, measure settings)."""


@dataclass(frozen=True)
class Case:
    """One network on one data set, trained in several regimes and seeds.

    Attributes:
        name: Folder name of its runs and its report (``"f1-mnist1d"``).
        title: The report's title.
        train: Training settings shared by every run (network, data set, optimizer, ...;
            :class:`flatness.zoo.TrainConfig` keys): the training protocol.
        regimes: Regime label → settings overriding ``train`` (``{"SB": {"batch_size":
            32}, "LB": {"batch_size": 512}}``); ``match_updates = "SB"`` trains a regime,
            seed by seed, for as many updates as SB's run took
            (:mod:`flatness.study.training`).
        seeds: Seeds of ``regimes``.
        sweep: Further regimes (a batch-size sweep between the pair's regimes).
        sweep_seeds: Seeds of ``sweep``.
        reference: Keskar et al.'s network shown beside ours (``"F1"``, ``"C1"``), or
            ``None``.
        pair_seed: Seed whose runs of the two ``pair`` regimes get the parametric plot
            (same initialization); ``None`` for no plot.
        pair: The regimes the parametric plot joins, from α = 0 to α = 1 (the report's
            small-batch and large-batch roles).
        pair_bn: BatchNorm statistics along the plot: ``"recompute"`` (on the training
            data at every α, the default: extrapolating stored statistics beyond the
            ends can drive a variance below zero, which is clamped, and the loss
            explodes for that reason alone) or ``"interpolate"``.
        examples: Training examples the measures are computed on (a fixed, seeded
            subset; ``None`` for all).
        measures: The manifest's ``[measures]`` table (empty: the default measures).
        track: A ``[track]`` table (:mod:`flatness.tracking.training`: ``measures``,
            ``every``, ``examples``, ``seed``, ``test``, ...): every run trains under a
            tracker whose records go to the case's store (run ``"<regime>/seed<k>"``,
            :func:`flatness.load_tracks`); ``None`` tracks nothing.
        pair_seeds: Seeds whose pair of runs each get a parametric plot (with
            ``pair_seed``, that seed too).
        notes: Design notes the case report prints under "Design and its limits".
        sections: The standard report sections the case report shows
            (:func:`flatness.report.build.section_keys`: ``"summary"``, ``"accuracy"``,
            ``"sb-vs-lb"``, ...; the others are left out silently); ``None`` shows all.

    Raises:
        ValueError: On construction, for a name that is not a plain folder name, a sweep
            without seeds, no seeds, regime labels that share a folder, a parametric
            plot whose regimes or seed are not trained, an unknown ``pair_bn``, or a
            ``match_updates`` naming no regime of the case, a cycle or an untrained seed.
    """

    name: str
    title: str
    train: Settings
    regimes: Mapping[str, Settings]
    seeds: tuple[int, ...]
    sweep: Mapping[str, Settings] = field(default_factory=dict)
    sweep_seeds: tuple[int, ...] = ()
    reference: str | None = None
    pair_seed: int | None = None
    pair: tuple[str, str] = ("SB", "LB")
    pair_bn: str = "recompute"
    examples: int | None = 1000
    measures: Settings = field(default_factory=dict)
    track: Settings | None = None
    pair_seeds: tuple[int, ...] = ()
    notes: tuple[str, ...] = ()
    sections: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "pair_seeds", tuple(int(s) for s in self.pair_seeds))
        object.__setattr__(self, "notes", tuple(self.notes))
        if self.sections is not None:
            object.__setattr__(self, "sections", tuple(self.sections))
        if not self.name or os.sep in self.name or self.name.startswith("."):
            raise ValueError(f"case {self.name!r}: the name must be a plain folder name")
        if self.sweep and not self.sweep_seeds:
            raise ValueError(f"case {self.name!r}: a batch-size sweep needs sweep_seeds")
        if not self.seeds:
            raise ValueError(f"case {self.name!r}: give at least one seed")
        # Runs go to <regime in lower case>/seed<k>: labels must differ in more than case.
        labels = [label.lower() for label in [*self.regimes, *self.sweep]]
        clash = sorted({label for label in labels if labels.count(label) > 1})
        if clash:
            raise ValueError(
                f"case {self.name!r}: regime labels {clash} occur twice in regimes and sweep "
                "(ignoring case; each label is a folder name)"
            )
        if self.plot_seeds:
            if not set(self.pair) <= set(self.regimes):
                raise ValueError(
                    f"case {self.name!r}: the parametric plot needs the regimes "
                    f"{' and '.join(self.pair)}"
                )
            if self.pair_seed is not None and self.pair_seed not in self.seeds:
                raise ValueError(
                    f"case {self.name!r}: pair_seed {self.pair_seed} is not among the seeds "
                    f"{list(self.seeds)}; choose a trained seed or pair_seed=None"
                )
            untrained = [seed for seed in self.pair_seeds if seed not in self.seeds]
            if untrained:
                raise ValueError(
                    f"case {self.name!r}: pair_seeds {untrained} are not among the seeds "
                    f"{list(self.seeds)}; choose trained seeds"
                )
        self._check_report()
        check_matches(self.name, [(self.regimes, self.seeds), (self.sweep, self.sweep_seeds)])
        if self.pair_bn not in ("recompute", "interpolate"):
            raise ValueError(
                f"case {self.name!r}: pair_bn must be 'recompute' or 'interpolate', "
                f"got {self.pair_bn!r}"
            )

    def _check_report(self) -> None:
        """Check ``track`` and ``sections`` (before anything is trained)."""
        if self.track is not None:
            from flatness.tracking.training import track_settings

            if "store" in self.track:
                raise ValueError(
                    f"case {self.name!r}: [track] store is the case's own results store; "
                    "leave it out"
                )
            track_settings(self.track)
        if self.sections is not None:
            from flatness.report.build import check_sections

            try:
                check_sections(self.sections)
            except ValueError as exc:
                raise ValueError(f"case {self.name!r}: {exc}") from None

    @property
    def plot_seeds(self) -> tuple[int, ...]:
        """The seeds with a parametric plot: ``pair_seed`` then ``pair_seeds``, once each."""
        seeds = ([] if self.pair_seed is None else [self.pair_seed]) + list(self.pair_seeds)
        return tuple(dict.fromkeys(seeds))

    @property
    def runs_count(self) -> int:
        """How many networks the case trains."""
        return len(self.regimes) * len(self.seeds) + len(self.sweep) * len(self.sweep_seeds)


@dataclass(frozen=True)
class StudyPlan:
    """Cases run one after another, and the title of their overview page.

    Attributes:
        name: Short name of the plan (``"demo"``).
        title: The overview's title.
        cases: The cases, in order; their names are distinct.
        answer: The study's answers over its cases
            (:data:`flatness.report.overview_case.AnswerFn`: called with the cases
            that have measurements and the overview's folder, it returns a
            :class:`~flatness.report.overview_case.StudyAnswer`); ``None``: Keskar et
            al.'s questions case by case (:func:`flatness.report.overview.keskar_answer`).

    Raises:
        ValueError: On construction, without cases or with two cases of one name.
    """

    name: str
    title: str
    cases: tuple[Case, ...]
    answer: AnswerFn | None = None

    def __post_init__(self) -> None:
        names = [case.name for case in self.cases]
        if not names or len(set(names)) != len(names):
            raise ValueError(f"a study needs cases with distinct names, got {names}")


@dataclass(frozen=True)
class StudySpec:
    """A study: its plans and the questions its overview answers.

    Attributes:
        name: The name it is run by (``flatness study keskar2017``).
        title: One line saying what it asks.
        plans: Plan name → plan (``"demo"``, ``"full"``, ...).
        default_plan: The plan run when none is named.
        questions: The questions the overview answers, one sentence each.
        citation: The paper the study reproduces, if any.

    Raises:
        ValueError: On construction, without plans or with a default plan it lacks.
    """

    name: str
    title: str
    plans: Mapping[str, StudyPlan]
    default_plan: str
    questions: tuple[str, ...] = ()
    citation: str = ""

    def __post_init__(self) -> None:
        if self.default_plan not in self.plans:
            raise ValueError(
                f"study {self.name!r}: default plan {self.default_plan!r} is not among its "
                f"plans {sorted(self.plans)}"
            )

    def plan(self, name: str | None = None) -> StudyPlan:
        """One of the study's plans.

        Args:
            name: The plan's name (default: :attr:`default_plan`).

        Returns:
            The plan.

        Raises:
            ValueError: For a name the study has no plan of.
        """
        key = self.default_plan if name is None else name
        if key not in self.plans:
            raise ValueError(
                f"study {self.name!r} has no plan {key!r}; choose one of {sorted(self.plans)}"
            )
        return self.plans[key]


def describe(case: Case) -> str:
    """One sentence saying what a case trains and scores.

    Returns:
        The network, data set, regimes and seeds, protocol, measures and examples.

    Examples:
        >>> case = Case("mlp", "t", {"network": "tiny_mlp", "dataset": "digits_flat",
        ...     "epochs": 5}, {"SB": {"batch_size": 16}, "LB": {"batch_size": 256}}, (0, 1))
        >>> print(describe(case))  # doctest: +NORMALIZE_WHITESPACE
        mlp: tiny_mlp on digits_flat; SB (batch 16), LB (batch 256) × seeds 0, 1; adam,
        lr 0.001 (at most 5 epochs); measures the default measures on 1000 training
        examples.
    """
    from flatness.zoo.config import TrainConfig

    base = TrainConfig.from_dict(dict(case.train))
    kwargs = ", ".join(f"{k}={v}" for k, v in base.network_kwargs.items())
    network = base.network + (f" ({kwargs})" if kwargs else "")
    tables = [case.regimes, *([case.sweep] if case.sweep else [])]
    overridden = {k for table in tables for v in table.values() for k in v}

    def regimes(table: Mapping[str, Settings], seeds: tuple[int, ...]) -> str:
        parts = []
        for label, overrides in table.items():
            batch = overrides.get("batch_size", base.batch_size)
            shown = {k: v for k, v in overrides.items() if k not in ("batch_size", MATCH_KEY)}
            others = [f"{k} {v:g}" if isinstance(v, float) else f"{k} {v}"
                      for k, v in shown.items()]  # fmt: skip
            if MATCH_KEY in overrides:
                others.append(f"as many updates as {overrides[MATCH_KEY]}")
            parts.append(f"{label} ({', '.join([f'batch {batch}', *others])})")
        return f"{', '.join(parts)} × seeds {', '.join(map(str, seeds))}"

    text = f"{case.name}: {network} on {base.dataset}; " + regimes(case.regimes, case.seeds)
    if case.sweep:
        text += "; batch-size sweep " + regimes(case.sweep, case.sweep_seeds)
    text += f"; {base.optimizer}"
    if "lr" not in overridden:
        text += f", lr {base.lr:g}"
    targets = []
    if base.target_accuracy:
        targets.append(f"{100 * base.target_accuracy:g}% training accuracy")
    if base.target_loss is not None:
        targets.append(f"training loss {base.target_loss:g}")
    if targets:
        text += f", until {' or '.join(targets)}"
    caps = []
    if base.epochs is not None:
        caps.append(f"{base.epochs} epochs")
    if base.max_updates is not None:
        caps.append(f"{base.max_updates} updates")
    text += f" (at most {' and '.join(caps)})"
    examples = "all" if case.examples is None else str(case.examples)
    measures = ", ".join(case.measures) or "the default measures"
    return text + f"; measures {measures} on {examples} training examples."
