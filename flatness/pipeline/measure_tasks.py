"""One measure: the settings it accepts, the tasks they expand into, one task's rows.

A :class:`Measure` wraps an estimator (a function taking the objective first and its
settings as keyword-only arguments). Its settings are the estimator's keyword-only
arguments with their defaults (:meth:`Measure.defaults`); a manifest's settings are
completed with them and expanded over the *sweep* settings given as lists
(:meth:`Measure.tasks`), and each task is keyed in the store by its settings' canonical
JSON (:func:`settings_key`). A task is computed by calling the estimator
(:meth:`Measure.compute`); its result's :meth:`~flatness.results.Result.records` are the
store's rows and its :meth:`~flatness.results.Result.details` the JSON beside them
(:meth:`Measure.run`). The measures a manifest may name are in
:mod:`flatness.pipeline.measures`.
"""

from __future__ import annotations

import dataclasses
import inspect
import itertools
import json
import math
import numbers
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from flatness.curvature.objective import Objective
from flatness.curvature.options import deterministic_hessian
from flatness.factories import import_factory
from flatness.results import (
    Meter,
    Record,
    Result,
    ResultContract,
    gradient_equivalents,
    to_plain,
)

__all__ = ["EXCLUDED_SETTINGS", "Measure", "MeasureValue", "settings_key"]

EXCLUDED_SETTINGS = ("return_eigenvectors", "grid", "verify", "v0")
"""Keyword arguments of the built-in estimators that a manifest may not set (arrays,
debugging switches)."""


@dataclasses.dataclass(frozen=True)
class MeasureValue(Result):
    """A registered measure's value, with an optional error bar: the contract made short.

    A measure's function may return one (``MeasureValue(mean, stderr=se)``) or a plain
    number, which the pipeline wraps in one. When scored, its ``seconds`` and
    ``settings`` are filled in from the call if left at their defaults.

    Attributes:
        value: The number.
        stderr: Its standard error (NaN: none).
        converged: Whether it met its own accuracy target (True: no such notion).
        seconds: Wall seconds of the call (NaN: not measured).
        settings: The keyword arguments it was called with.
        matvecs: Hessian-vector products spent (0: none counted).
        evaluations: Loss evaluations spent (0: none counted).
        gradients: Gradient evaluations spent (0: none counted).
        gradient_equivalents: The cost in full gradients; left NaN, it is worked out from
            the counts (:func:`~flatness.results.gradient_equivalents`), and stays NaN
            when nothing was counted.

    Examples:
        >>> MeasureValue(0.5, stderr=0.1).records()
        [Record(component='', value=0.5, error=0.1, error_kind='stderr', converged=True)]
    """

    value: float
    stderr: float = math.nan
    converged: bool = True
    seconds: float = math.nan
    settings: dict[str, Any] = dataclasses.field(default_factory=dict)
    matvecs: int = 0
    evaluations: int = 0
    gradients: int = 0
    gradient_equivalents: float = math.nan

    def __post_init__(self) -> None:
        counted = (self.matvecs, self.evaluations, self.gradients)
        if math.isnan(self.gradient_equivalents) and any(counted):
            cost = gradient_equivalents(
                matvecs=self.matvecs, evaluations=self.evaluations, gradients=self.gradients
            )
            object.__setattr__(self, "gradient_equivalents", cost)


@dataclasses.dataclass(frozen=True)
class Measure:
    """How the pipeline runs one named measure.

    Attributes:
        name: The manifest's name for it.
        function: The estimator, or ``"module:function"`` naming it. It takes the
            objective first and its settings as keyword-only arguments, and returns a
            :class:`~flatness.results.Result` (or a plain number, kept as a
            :class:`MeasureValue`).
        sweep: Settings that may be lists; each combination is its own task.
        rename: Manifest setting name -> estimator keyword (``subspace`` ->
            ``subspace_dim``), with ``0`` meaning ``None`` for renamed settings.
        exclude: Estimator keywords a manifest may not set.
        accepts: The estimator keywords a manifest may set, when not all of its
            keyword-only arguments (less ``exclude``) may. The built-in measures list
            theirs, so a keyword added to an estimator later does not enter the
            settings that key the store's tasks.
        extra: Settings accepted besides the estimator's named keywords (passed through
            its ``**kwargs``), with their defaults.
        summary: One line for ``--help`` and error messages.
        groups: Whether the measure is also taken per parameter group when
            ``[scoring] groups`` asks (its estimator reads the objective's Hessian,
            which an objective over a group's parameters restricts to that block).
        canonical: A function (or ``"module:function"``) that rewrites a task's
            complete settings into those its store key keeps, leaving out settings that
            change nothing for that task; a setting added to a measure later leaves the
            tasks that do not use it under the keys they had (``keskar``'s ``draws``).
            ``None``: every setting is kept.
    """

    name: str
    function: str | Callable[..., Any]
    sweep: tuple[str, ...] = ()
    rename: Mapping[str, str] = dataclasses.field(default_factory=dict)
    exclude: tuple[str, ...] = EXCLUDED_SETTINGS
    extra: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    summary: str = ""
    accepts: tuple[str, ...] | None = None
    groups: bool = False
    canonical: str | Callable[[dict[str, Any]], dict[str, Any]] | None = None

    def estimator(self) -> Callable[..., Any]:
        """The estimator function.

        Returns:
            ``function``, imported first when it is a ``"module:function"`` string.

        Raises:
            ImportError, AttributeError, TypeError: If the string names no callable.
        """
        if callable(self.function):
            return self.function
        return import_factory(self.function, kind=f"measure {self.name!r}")

    def _settings(self) -> list[inspect.Parameter]:
        params = list(inspect.signature(self.estimator()).parameters.values())[1:]
        keywords = [p for p in params if p.kind is inspect.Parameter.KEYWORD_ONLY]
        if self.accepts is None:
            return [p for p in keywords if p.name not in self.exclude]
        missing = sorted(set(self.accepts) - {p.name for p in keywords})
        if missing:
            raise TypeError(f"measure {self.name!r}: its estimator has no keyword-only {missing}")
        return [p for p in keywords if p.name in self.accepts]

    def required(self) -> list[str]:
        """Settings without a default (``rho``, ``sigma``): a manifest must give them.

        Returns:
            The estimator's keyword-only arguments without a default.
        """
        return [p.name for p in self._settings() if p.default is inspect.Parameter.empty]

    def defaults(self) -> dict[str, Any]:
        """The settings this measure accepts, with their defaults (``None`` if required).

        Returns:
            Manifest setting name -> default (plain Python, as the store keeps it).
        """
        inverse = {v: k for k, v in self.rename.items()}
        out: dict[str, Any] = {}
        for p in self._settings():
            default = None if p.default is inspect.Parameter.empty else p.default
            if p.name in inverse and default is None:
                default = 0
            out[inverse.get(p.name, p.name)] = to_plain(default)
        out.update(self.extra)
        return out

    def tasks(self, settings: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
        """Complete ``settings`` with the defaults and expand the sweep settings.

        Args:
            settings: The manifest's settings for this measure.

        Returns:
            An iterator over the tasks' complete settings, one per combination of the
            sweep settings' values (rewritten by :attr:`canonical` when it is set).

        Raises:
            KeyError: For a setting the measure does not accept (the message lists them).
            TypeError: For a list given to a setting that cannot sweep.
        """
        defaults = self.defaults()
        unknown = sorted(set(settings) - set(defaults))
        if unknown:
            raise KeyError(
                f"measure {self.name!r} has no setting {', '.join(map(repr, unknown))}; "
                f"its settings are {sorted(defaults)}"
            )
        missing = [k for k in self.required() if k not in settings]
        if missing:
            raise KeyError(
                f"measure {self.name!r} needs {', '.join(missing)} (no default: the right "
                f"scale depends on the model), e.g. {self.name} = {{ {missing[0]} = 0.05 }}"
            )
        full = {**defaults, **settings}
        axes: list[list[Any]] = []
        for key in sorted(full):
            value = full[key]
            if isinstance(value, list) and key in self.sweep:
                if not value:
                    raise TypeError(f"measure {self.name!r}: {key} is an empty list")
                axes.append([(key, v) for v in value])
            elif isinstance(value, list) and not isinstance(defaults.get(key), list):
                raise TypeError(
                    f"measure {self.name!r}: {key} = {value!r} is a list, but only "
                    f"{list(self.sweep) or 'none of its settings'} may list several values"
                )
            else:
                axes.append([(key, value)])
        canonical = (
            import_factory(self.canonical, kind=f"measure {self.name!r} canonical")
            if isinstance(self.canonical, str)
            else self.canonical
        )
        for combo in itertools.product(*axes):
            yield dict(combo) if canonical is None else canonical(dict(combo))

    def compute(self, objective: Objective, settings: Mapping[str, Any]) -> ResultContract:
        """Call the estimator with one task's settings.

        The Hessian operators built meanwhile choose nothing by timing unless a
        measure asks otherwise (:func:`~flatness.curvature.options.deterministic_hessian`),
        so a task computed twice gives the same bits; the results record the choices,
        and the task's settings (its store key) do not change.

        Args:
            objective: The objective to measure.
            settings: One task's complete settings (see :meth:`tasks`).

        Returns:
            The estimator's result; a plain number becomes a :class:`MeasureValue`.

        Raises:
            TypeError: If the estimator returns neither a result nor a number.
        """
        kwargs = dict(settings)
        for manifest_key, keyword in self.rename.items():
            if manifest_key in kwargs:
                value = kwargs.pop(manifest_key)
                kwargs[keyword] = None if value in (0, None) else value
        with Meter() as meter, deterministic_hessian():
            result = self.estimator()(objective, **kwargs)
        if isinstance(result, numbers.Real) and not isinstance(result, bool):
            result = MeasureValue(float(result))
        if isinstance(result, MeasureValue):
            return dataclasses.replace(
                result,
                seconds=meter.seconds if math.isnan(result.seconds) else result.seconds,
                settings=result.settings or to_plain(kwargs),
            )
        if isinstance(result, Result) or (
            callable(getattr(result, "records", None))
            and callable(getattr(result, "details", None))
        ):
            return result  # type: ignore[no-any-return]
        raise TypeError(
            f"measure {self.name!r} returned a {type(result).__name__}; a measure returns a "
            "flatness.results.Result (or a plain number)"
        )

    def run(
        self, objective: Objective, settings: Mapping[str, Any]
    ) -> tuple[list[Record], dict[str, Any]]:
        """Compute one task and turn its result into the store's rows and details.

        Args:
            objective: The objective to measure.
            settings: One task's complete settings (see :meth:`tasks`).

        Returns:
            ``(records, details)``: the result's :meth:`~flatness.results.Result.records`
            and :meth:`~flatness.results.Result.details`.

        Raises:
            TypeError: If the estimator returns neither a result nor a number.
        """
        result = self.compute(objective, settings)
        return list(result.records()), dict(result.details())


def settings_key(settings: Mapping[str, Any]) -> str:
    """The canonical text of a task's settings (sorted keys, plain JSON).

    Returns:
        The JSON text the store keys the task by.

    Examples:
        >>> settings_key({"k": 1, "eps": 1e-3})
        '{"eps": 0.001, "k": 1}'
    """
    return json.dumps(to_plain(dict(settings)), sort_keys=True)
