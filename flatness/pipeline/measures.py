"""The measures a manifest can ask for, and how each becomes rows of the results store.

A manifest's ``[measures]`` table names measures with their settings::

    [measures]
    lambda_max = { k = 5 }
    trace = { method = "hutchpp", budget = 100 }
    keskar = { eps = [1e-3, 5e-4], subspace = [0, 100] }

Each name maps to a :class:`Measure`: the estimator it calls, which settings it
accepts (the estimator's keyword arguments, with their defaults), which settings may
be lists that expand into one task per combination (``eps`` and ``subspace`` above
give four tasks), and how its result becomes :class:`Record` rows: one scalar per
*component* (``"1"`` … ``"k"`` for the top eigenvalues, ``""`` for a single value)
with its error bar.

A task's settings are completed with the estimator's defaults before they are
stored, so ``lambda_max = {}`` and ``lambda_max = { k = 1 }`` are the same task.
"""

from __future__ import annotations

import dataclasses
import inspect
import itertools
import json
import math
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from flatness.results import to_plain
from flatness.zoo.factories import import_factory


@dataclasses.dataclass(frozen=True)
class Record:
    """One scalar a measure produced, ready for the store.

    Attributes:
        component: Which scalar of the result (``""`` for a single value, ``"1"`` for
            the largest eigenvalue, ...).
        value: The value.
        error: Its error bar (``None`` when there is none).
        error_kind: What ``error`` is: ``"stderr"`` or ``"residual"``.
        converged: Whether the estimate met its own accuracy target (``None`` when the
            estimator has no such notion).
    """

    component: str
    value: float
    error: float | None = None
    error_kind: str | None = None
    converged: bool | None = None


def _finite_or_none(x: Any) -> float | None:
    if x is None:
        return None
    x = float(x)
    return x if math.isfinite(x) else None


def _eigen_records(result: Any) -> list[Record]:
    return [
        Record(str(i + 1), float(v), _finite_or_none(r), "residual", bool(c))
        for i, (v, r, c) in enumerate(
            zip(result.eigenvalues, result.residuals, result.converged, strict=True)
        )
    ]


def _trace_records(result: Any) -> list[Record]:
    return [Record("", result.estimate, _finite_or_none(result.stderr), "stderr", result.converged)]


def _density_records(result: Any) -> list[Record]:
    n = result.dim
    return [
        Record(
            "trace", n * result.moments(1), _finite_or_none(n * result.moments_stderr(1)), "stderr"
        ),
        Record(
            "frobenius2",
            n * result.moments(2),
            _finite_or_none(n * result.moments_stderr(2)),
            "stderr",
        ),
        Record("ritz_max", float(result.nodes.max())),
        Record("ritz_min", float(result.nodes.min())),
    ]


def _scalar_records(result: Any) -> list[Record]:
    """For results with a ``value`` and, optionally, ``stderr`` and ``converged``."""
    stderr = _finite_or_none(getattr(result, "stderr", None))
    converged = getattr(result, "converged", None)
    return [
        Record(
            "",
            float(result.value),
            stderr,
            "stderr" if stderr is not None else None,
            None if converged is None else bool(converged),
        )
    ]


def _noise_records(result: Any) -> list[Record]:
    return [
        Record("", result.b_simple, _finite_or_none(result.b_simple_stderr), "stderr"),
        Record("trace_cov", result.trace_cov, _finite_or_none(result.trace_cov_stderr), "stderr"),
        Record(
            "grad_norm_sq",
            result.grad_norm_sq,
            _finite_or_none(result.grad_norm_sq_stderr),
            "stderr",
        ),
    ]


def _density_details(result: Any) -> dict[str, Any]:
    keep = ("sigma", "steps", "runs", "dim", "lanczos_steps", "nodes", "weights")
    return {k: to_plain(getattr(result, k)) for k in keep}


@dataclasses.dataclass(frozen=True)
class Measure:
    """How the pipeline runs one named measure.

    Attributes:
        name: The manifest's name for it.
        function: ``"module:function"`` of the estimator; it takes the objective first.
        records: Turns the estimator's result into rows.
        sweep: Settings that may be lists; each combination is its own task.
        rename: Manifest setting name -> estimator keyword (``subspace`` ->
            ``subspace_dim``), with ``0`` meaning ``None`` for renamed settings.
        exclude: Estimator keywords a manifest may not set.
        extra: Settings accepted besides the estimator's named keywords (passed through
            its ``**kwargs``), with their defaults.
        details: Extracts what the store keeps beside the rows (default: the result's
            fields without large arrays).
        summary: One line for ``--help`` and error messages.
    """

    name: str
    function: str
    records: Callable[[Any], list[Record]]
    sweep: tuple[str, ...] = ()
    rename: Mapping[str, str] = dataclasses.field(default_factory=dict)
    exclude: tuple[str, ...] = ("return_eigenvectors", "grid", "verify")
    extra: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    details: Callable[[Any], dict[str, Any]] | None = None
    summary: str = ""

    def estimator(self) -> Callable[..., Any]:
        return import_factory(self.function, kind=f"measure {self.name!r}")

    def required(self) -> list[str]:
        """Settings without a default (``rho``, ``sigma``): a manifest must give them."""
        params = list(inspect.signature(self.estimator()).parameters.values())[1:]
        return [
            p.name
            for p in params
            if p.kind is inspect.Parameter.KEYWORD_ONLY and p.default is inspect.Parameter.empty
        ]

    def defaults(self) -> dict[str, Any]:
        """The settings this measure accepts, with their defaults (``None`` if required)."""
        inverse = {v: k for k, v in self.rename.items()}
        out: dict[str, Any] = {}
        params = list(inspect.signature(self.estimator()).parameters.values())[1:]
        for p in params:
            if p.kind is not inspect.Parameter.KEYWORD_ONLY or p.name in self.exclude:
                continue
            default = None if p.default is inspect.Parameter.empty else p.default
            if p.name in inverse and default is None:
                default = 0
            out[inverse.get(p.name, p.name)] = to_plain(default)
        out.update(self.extra)
        return out

    def tasks(self, settings: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
        """Complete ``settings`` with the defaults and expand the sweep settings.

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

    def run(
        self, objective: Any, settings: Mapping[str, Any]
    ) -> tuple[list[Record], dict[str, Any]]:
        """Call the estimator with one task's settings; return rows and details."""
        kwargs = dict(settings)
        for manifest_key, keyword in self.rename.items():
            if manifest_key in kwargs:
                value = kwargs.pop(manifest_key)
                kwargs[keyword] = None if value in (0, None) else value
        result = self.estimator()(objective, **kwargs)
        details = self.details(result) if self.details else result.to_dict(include_arrays=False)
        return self.records(result), details


def settings_key(settings: Mapping[str, Any]) -> str:
    """The canonical text of a task's settings (sorted keys, plain JSON).

    Examples:
        >>> settings_key({"k": 1, "eps": 1e-3})
        '{"eps": 0.001, "k": 1}'
    """
    return json.dumps(to_plain(dict(settings)), sort_keys=True)


def settings_label(measure: str, settings: Mapping[str, Any], shown: tuple[str, ...] = ()) -> str:
    """A short human label such as ``keskar(eps=0.001, subspace=100)``.

    Examples:
        >>> settings_label("keskar", {"eps": 1e-3, "subspace": 0, "seed": 0}, ("eps", "subspace"))
        'keskar(eps=0.001, subspace=0)'
    """
    inner = ", ".join(
        f"{k}={settings[k]:g}" if isinstance(settings[k], float) else f"{k}={settings[k]}"
        for k in shown
        if k in settings
    )
    return f"{measure}({inner})" if inner else measure


MEASURES: dict[str, Measure] = {
    m.name: m
    for m in (
        Measure(
            "lambda_max",
            "flatness.curvature.eigenvalues:hessian_eigenvalues",
            _eigen_records,
            summary="top-k Hessian eigenvalues by Lanczos, with residuals",
        ),
        Measure(
            "trace",
            "flatness.curvature.trace:hessian_trace",
            _trace_records,
            summary="Hessian trace (Hutch++, Hutchinson or exact), with its standard error",
        ),
        Measure(
            "density",
            "flatness.curvature.density:spectral_density",
            _density_records,
            exclude=("grid", "grid_size", "sigma"),
            details=_density_details,
            summary="Hessian spectral density by stochastic Lanczos quadrature",
        ),
        Measure(
            "keskar",
            "flatness.sharpness.keskar:keskar_sharpness",
            _scalar_records,
            sweep=("eps", "subspace"),
            rename={"subspace": "subspace_dim"},
            summary="Keskar et al.'s epsilon-sharpness in full space (subspace=0) or a subspace",
        ),
        Measure(
            "adaptive_sharpness",
            "flatness.sharpness.adaptive:adaptive_sharpness",
            _scalar_records,
            sweep=("rho", "p", "adaptive", "m"),
            summary="worst-case (adaptive) sharpness in an l2 or l-inf ball",
        ),
        Measure(
            "average_sharpness",
            "flatness.sharpness.average:average_sharpness",
            _scalar_records,
            sweep=("sigma", "adaptive"),
            summary="expected loss increase under Gaussian perturbations",
        ),
        Measure(
            "pacbayes",
            "flatness.sharpness.jiang2019pacbayes:pacbayes_flatness",
            _scalar_records,
            sweep=("magnitude_aware", "criterion", "threshold"),
            summary="PAC-Bayes flatness 1/sigma^2 (Jiang et al. 2019)",
        ),
        Measure(
            "noise_scale",
            "flatness.sharpness.noise_scale:gradient_noise_scale",
            _noise_records,
            summary="gradient noise scale B_simple (McCandlish et al. 2018)",
        ),
    )
}
"""The measures a manifest may name, by name."""


def get_measure(name: str) -> Measure:
    """The measure called ``name``; :class:`KeyError` lists the known ones."""
    try:
        return MEASURES[name]
    except KeyError:
        raise KeyError(f"unknown measure {name!r}; known measures are {sorted(MEASURES)}") from None
