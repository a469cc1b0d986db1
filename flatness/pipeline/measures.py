"""The measures a manifest can ask for: the built-in ones and those users register.

A manifest's ``[measures]`` table names measures with their settings::

    [measures]
    lambda_max = { k = 5 }
    trace = { method = "hutchpp", budget = 100 }
    keskar = { eps = [1e-3, 5e-4], subspace = [0, 100] }

Each name maps to a :class:`Measure`: the estimator it calls, which settings it
accepts (the estimator's keyword-only arguments, with their defaults) and which
settings may be lists that expand into one task per combination (``eps`` and
``subspace`` above give four tasks). The estimator returns a result honouring the
contract of :mod:`flatness.results`; its :meth:`~flatness.results.Result.records` are
the rows the store keeps (one scalar per *component*: ``"1"`` … ``"k"`` for the top
eigenvalues, ``""`` for a single value) and its
:meth:`~flatness.results.Result.details` the JSON kept beside them. No measure needs a
converter of its own, so a user's measure plugs in the same way
(:func:`register_measure`).

A task's settings are completed with the estimator's defaults before they are
stored, so ``lambda_max = {}`` and ``lambda_max = { k = 1 }`` are the same task.
"""

from __future__ import annotations

import dataclasses
import inspect
import itertools
import json
import math
import numbers
import re
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

from flatness.curvature.objective import Objective
from flatness.factories import import_factory
from flatness.results import Meter, Record, Result, ResultContract, to_plain

__all__ = [
    "BUILT_IN_MEASURES",
    "MEASURES",
    "Measure",
    "MeasureValue",
    "Record",
    "get_measure",
    "register_measure",
    "settings_key",
    "settings_label",
]

EXCLUDED_SETTINGS = ("return_eigenvectors", "grid", "verify", "v0")
"""Keyword arguments of the built-in estimators that a manifest may not set (arrays,
debugging switches)."""

RESERVED_NAMES = frozenset({"parametric_plot"})
"""Names the results store uses for other tasks than measures."""

_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")


@dataclasses.dataclass(frozen=True)
class MeasureValue(Result):
    """The result of a registered measure whose function returned a plain number.

    Attributes:
        value: The number.
        seconds: Wall seconds of the call.
        settings: The keyword arguments it was called with.
        stderr: NaN (a plain number carries no error bar).
        converged: True (a plain number has no accuracy target).
        matvecs: 0 (not counted).
        evaluations: 0 (not counted).
        gradients: 0 (not counted).
        gradient_equivalents: NaN (not counted).
    """

    value: float
    seconds: float
    settings: dict[str, Any] = dataclasses.field(default_factory=dict)
    stderr: float = math.nan
    converged: bool = True
    matvecs: int = 0
    evaluations: int = 0
    gradients: int = 0
    gradient_equivalents: float = math.nan


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
    """

    name: str
    function: str | Callable[..., Any]
    sweep: tuple[str, ...] = ()
    rename: Mapping[str, str] = dataclasses.field(default_factory=dict)
    exclude: tuple[str, ...] = EXCLUDED_SETTINGS
    extra: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    summary: str = ""
    accepts: tuple[str, ...] | None = None

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
            sweep settings' values.

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
        for combo in itertools.product(*axes):
            yield dict(combo)

    def compute(self, objective: Objective, settings: Mapping[str, Any]) -> ResultContract:
        """Call the estimator with one task's settings.

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
        with Meter() as meter:
            result = self.estimator()(objective, **kwargs)
        if isinstance(result, numbers.Real) and not isinstance(result, bool):
            return MeasureValue(float(result), meter.seconds, to_plain(kwargs))
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
        legacy = _legacy_rows(self.name, result)
        if legacy is not None:
            return legacy
        return list(result.records()), dict(result.details())


# Transitional: the rows of built-in results whose classes do not yet implement the
# contract's records()/details() (removed once curvature and sharpness provide them).
def _legacy_rows(name: str, result: Any) -> tuple[list[Record], dict[str, Any]] | None:
    def fin(x: Any) -> float | None:
        return None if x is None or not math.isfinite(float(x)) else float(x)

    own = type(result).records is not Result.records
    if name == "lambda_max" and not hasattr(result, "value"):
        rows = [
            Record(str(i + 1), float(v), fin(r), "residual", bool(c))
            for i, (v, r, c) in enumerate(
                zip(result.eigenvalues, result.residuals, result.converged, strict=True)
            )
        ]
    elif name == "trace" and not hasattr(result, "value"):
        rows = [Record("", result.estimate, fin(result.stderr), "stderr", result.converged)]
    elif name == "density" and not own:
        n = result.dim
        rows = [
            Record("trace", n * result.moments(1), fin(n * result.moments_stderr(1)), "stderr"),
            Record(
                "frobenius2", n * result.moments(2), fin(n * result.moments_stderr(2)), "stderr"
            ),
            Record("ritz_max", float(result.nodes.max())),
            Record("ritz_min", float(result.nodes.min())),
        ]
        keep = ("sigma", "steps", "runs", "dim", "lanczos_steps", "nodes", "weights")
        return rows, {k: to_plain(getattr(result, k)) for k in keep}
    elif name == "noise_scale" and not own:
        rows = [
            Record("", result.b_simple, fin(result.b_simple_stderr), "stderr"),
            Record("trace_cov", result.trace_cov, fin(result.trace_cov_stderr), "stderr"),
            Record("grad_norm_sq", result.grad_norm_sq, fin(result.grad_norm_sq_stderr), "stderr"),
        ]
    else:
        return None
    return rows, result.to_dict(include_arrays=False)


def settings_key(settings: Mapping[str, Any]) -> str:
    """The canonical text of a task's settings (sorted keys, plain JSON).

    Returns:
        The JSON text the store keys the task by.

    Examples:
        >>> settings_key({"k": 1, "eps": 1e-3})
        '{"eps": 0.001, "k": 1}'
    """
    return json.dumps(to_plain(dict(settings)), sort_keys=True)


def settings_label(measure: str, settings: Mapping[str, Any], shown: tuple[str, ...] = ()) -> str:
    """Deprecated: use :func:`flatness.headlines.measure_label`.

    Returns:
        The readable label of ``measure`` scored with ``settings``, naming the
        settings in ``shown`` (the label reports and ``flatness score`` show).
    """
    from flatness.headlines import measure_label

    warnings.warn(
        "flatness.pipeline.measures.settings_label is deprecated; use "
        "flatness.headlines.measure_label (the label reports show)",
        DeprecationWarning,
        stacklevel=2,
    )
    return measure_label(measure, settings, shown)


BUILT_IN: tuple[Measure, ...] = (
    Measure(
        "lambda_max",
        "flatness.curvature.eigenvalues:hessian_eigenvalues",
        summary="top-k Hessian eigenvalues by Lanczos, with residuals",
        accepts=("k", "which", "tol", "max_matvecs", "basis_size", "seed", "multiplicity_check"),
    ),
    Measure(
        "trace",
        "flatness.curvature.trace:hessian_trace",
        summary="Hessian trace (Hutch++, Hutchinson or exact), with its standard error",
        accepts=("method", "budget", "target_stderr", "seed"),
    ),
    Measure(
        "density",
        "flatness.curvature.density:spectral_density",
        summary="Hessian spectral density by stochastic Lanczos quadrature",
        accepts=("steps", "runs", "seed", "distribution"),
    ),
    Measure(
        "keskar",
        "flatness.sharpness.keskar:keskar_sharpness",
        sweep=("eps", "subspace"),
        rename={"subspace": "subspace_dim"},
        summary="Keskar et al.'s epsilon-sharpness in full space (subspace=0) or a subspace",
        accepts=("eps", "subspace_dim", "solver", "maxiter", "start", "seed"),
    ),
    Measure(
        "adaptive_sharpness",
        "flatness.sharpness.adaptive:adaptive_sharpness",
        sweep=("rho", "p", "adaptive", "m"),
        summary="worst-case (adaptive) sharpness in an l2 or l-inf ball",
        accepts=("rho", "p", "adaptive", "eta", "steps", "step_size", "m", "seed"),
    ),
    Measure(
        "average_sharpness",
        "flatness.sharpness.average:average_sharpness",
        sweep=("sigma", "adaptive"),
        summary="expected loss increase under Gaussian perturbations",
        accepts=("sigma", "samples", "adaptive", "eta", "seed"),
    ),
    Measure(
        "pacbayes",
        "flatness.sharpness.jiang2019pacbayes:pacbayes_flatness",
        sweep=("magnitude_aware", "criterion", "threshold"),
        summary="PAC-Bayes flatness 1/sigma^2 (Jiang et al. 2019)",
        accepts=(
            "magnitude_aware",
            "criterion",
            "threshold",
            "samples",
            "sigma_bounds",
            "rtol",
            "max_iterations",
            "epsilon",
            "seed",
        ),
    ),
    Measure(
        "noise_scale",
        "flatness.sharpness.noise_scale:gradient_noise_scale",
        summary="gradient noise scale B_simple (McCandlish et al. 2018)",
        accepts=("method", "chunk_size", "groups", "vectorize", "seed"),
    ),
)
"""The measures flatness ships."""

BUILT_IN_MEASURES: frozenset[str] = frozenset(m.name for m in BUILT_IN)
"""The names of the built-in measures (a registered measure may not take one)."""

MEASURES: dict[str, Measure] = {m.name: m for m in BUILT_IN}
"""The measures a manifest may name, by name: the built-in ones, then the registered."""


def get_measure(name: str) -> Measure:
    """The measure called ``name``.

    Returns:
        The built-in or registered :class:`Measure`.

    Raises:
        KeyError: If there is none (the message lists the known ones).
    """
    try:
        return MEASURES[name]
    except KeyError:
        raise KeyError(f"unknown measure {name!r}; known measures are {sorted(MEASURES)}") from None


def register_measure(
    name: str,
    function: str | Callable[..., Any],
    *,
    sweep: Sequence[str] = (),
    rename: Mapping[str, str] | None = None,
    summary: str = "",
) -> Measure:
    """Make a measure of your own available to manifests, :func:`flatness.score` and reports.

    ``function`` is called as ``function(objective, **settings)``: the
    :class:`~flatness.curvature.objective.Objective` first, then its settings, declared
    as keyword-only arguments (their defaults are the manifest's defaults; one without
    a default must be given; one called ``seed`` defaults to ``[scoring] seed``). It
    returns a :class:`~flatness.results.Result` subclass that honours the contract of
    :mod:`flatness.results` (its ``records()`` become the store's rows), or, for
    convenience, a plain number (stored as a single value without an error bar, as a
    :class:`MeasureValue`).

    Registering a name again replaces the earlier registration (a re-run notebook cell,
    a plugin imported twice). For ``flatness score`` (a new process), name the module
    that registers the measure in the manifest's ``[scoring] plugins``.

    Args:
        name: The name manifests, the store and reports use (letters, digits and
            underscores, starting with a letter).
        function: The function, or ``"module:function"`` naming it.
        sweep: Settings that may be lists in a manifest (one task per value).
        rename: Manifest setting name -> keyword of ``function``, where they differ.
        summary: One line for ``flatness score --help``.

    Returns:
        The registered :class:`Measure`.

    Raises:
        ValueError: If ``name`` is malformed, is a built-in measure's or a reserved
            name, or ``sweep``/``rename`` name settings ``function`` does not take.
        TypeError: If ``function`` is not callable, does not take the objective as its
            first positional argument, or has a default that is not plain data.

    Examples:
        >>> def weight_norm(objective, *, p: float = 2.0) -> float:
        ...     return float(objective.theta0.norm(p))
        >>> measure = register_measure("weight_norm_doc", weight_norm, summary="the p-norm")
        >>> get_measure("weight_norm_doc").defaults()
        {'p': 2.0}
        >>> _ = MEASURES.pop("weight_norm_doc")
    """
    if not isinstance(name, str) or not _NAME.match(name):
        raise ValueError(
            f"measure name {name!r}: use letters, digits and underscores, starting with a letter"
        )
    if name in BUILT_IN_MEASURES or name in RESERVED_NAMES:
        raise ValueError(f"{name!r} is a built-in measure's name; choose another")
    measure = Measure(
        name,
        function,
        sweep=tuple(sweep),
        rename=dict(rename or {}),
        exclude=(),
        summary=summary,
    )
    fn = measure.estimator()
    params = list(inspect.signature(fn).parameters.values())
    if not params or params[0].kind not in (
        inspect.Parameter.POSITIONAL_ONLY,
        inspect.Parameter.POSITIONAL_OR_KEYWORD,
    ):
        raise TypeError(
            f"measure {name!r}: the function must take the objective as its first "
            "positional argument and its settings as keyword-only arguments"
        )
    extra_positional = [
        p.name
        for p in params[1:]
        if p.kind in (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
        and p.default is inspect.Parameter.empty
    ]
    if extra_positional:
        raise TypeError(
            f"measure {name!r}: {', '.join(extra_positional)} must be keyword-only settings "
            "(write them after a bare *: def f(objective, *, setting=...))"
        )
    keywords = {p.name for p in params if p.kind is inspect.Parameter.KEYWORD_ONLY}
    unknown = sorted(set(measure.rename.values()) - keywords)
    if unknown:
        raise ValueError(f"measure {name!r}: rename names unknown keyword(s) {unknown}")
    defaults = measure.defaults()
    unknown = sorted(set(measure.sweep) - set(defaults))
    if unknown:
        raise ValueError(
            f"measure {name!r}: sweep names {unknown}, which are not among its settings "
            f"{sorted(defaults)}"
        )
    try:
        json.dumps(defaults)
    except (TypeError, ValueError) as exc:
        raise TypeError(
            f"measure {name!r}: the settings' defaults must be plain data (numbers, strings, "
            f"booleans, lists, None) that a manifest can give: {exc}"
        ) from None
    MEASURES[name] = measure
    return measure
