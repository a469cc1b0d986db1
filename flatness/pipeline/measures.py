"""The measures a manifest can ask for: the built-in ones and those users register.

A manifest's ``[measures]`` table names measures with their settings::

    [measures]
    lambda_max = { k = 5 }
    trace = { method = "hutchpp", budget = 100 }
    keskar = { eps = [1e-3, 5e-4], subspace = [0, 100] }
    gradient_norm = {}
    weight_norm = {}

Each name maps to a :class:`~flatness.pipeline.measure_tasks.Measure`
(:mod:`flatness.pipeline.measure_tasks`): the estimator it calls, which settings it
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

import inspect
import json
import re
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from flatness.pipeline.measure_tasks import EXCLUDED_SETTINGS, Measure, MeasureValue, settings_key
from flatness.results import Record

__all__ = [
    "BUILT_IN_MEASURES",
    "EXCLUDED_SETTINGS",
    "MEASURES",
    "Measure",
    "MeasureValue",
    "Record",
    "get_measure",
    "register_measure",
    "settings_key",
    "settings_label",
]

RESERVED_NAMES = frozenset({"parametric_plot"})
"""Names the results store uses for other tasks than measures."""

_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")


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
        groups=True,
    ),
    Measure(
        "trace",
        "flatness.curvature.trace:hessian_trace",
        summary="Hessian trace (Hutch++, Hutchinson or exact), with its standard error",
        accepts=("method", "budget", "target_stderr", "seed"),
        groups=True,
    ),
    Measure(
        "density",
        "flatness.curvature.density:spectral_density",
        summary="Hessian spectral density by stochastic Lanczos quadrature",
        accepts=("steps", "runs", "seed", "distribution"),
        groups=True,
    ),
    Measure(
        "keskar",
        "flatness.sharpness.keskar_draws:keskar_measure",
        sweep=("eps", "subspace"),
        rename={"subspace": "subspace_dim"},
        summary="Keskar et al.'s epsilon-sharpness in full space (subspace=0) or a subspace "
        "(draws > 1: the mean over that many random subspaces, each draw a component)",
        accepts=("eps", "subspace_dim", "solver", "maxiter", "start", "seed", "draws"),
        canonical="flatness.sharpness.keskar_draws:keskar_task_key",
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
    Measure(
        "gradient_norm",
        "flatness.sharpness.norms:gradient_norm",
        summary="2-norm (and inf-norm) of the mean loss's gradient over the scoring examples",
        accepts=(),
        groups=True,
    ),
    Measure(
        "weight_norm",
        "flatness.sharpness.norms:weight_norm",
        summary="2-norm of the parameters, and of the weights without normalization layers/biases",
        accepts=(),
        groups=True,
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
    groups: bool = False,
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
        groups: Also take the measure per parameter group when ``[scoring] groups``
            asks (the function is then called with an objective over the group's
            parameters).

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
        groups=groups,
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
