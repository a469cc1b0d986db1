"""The typed options of the curvature front door.

The estimators (:func:`~flatness.curvature.eigenvalues.hessian_eigenvalues`,
:func:`~flatness.curvature.trace.hessian_trace`, ...) take an
:class:`~flatness.curvature.objective.Objective` or an operator first and keyword-only
settings after it. The choices among a few names are :data:`typing.Literal` types, and
how the Hessian of an Objective is multiplied is one frozen dataclass,
:class:`HessianOptions`, passed as ``hessian=``.

Whether an operator may choose its strategies by timing is :attr:`HessianOptions.deterministic`;
left at ``None`` it takes the ambient default, which :func:`deterministic_hessian`
sets (:func:`flatness.score` computes every task inside it).

Before version 0.2 the Hessian options were loose keyword arguments
(``hessian_eigenvalues(obj, strategy="double_backward")``); they still work for one
release and raise a :class:`DeprecationWarning` (:func:`resolve_hessian_options`).
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Literal, TypedDict, get_args

__all__ = [
    "BASIS_DEVICES",
    "STRATEGIES",
    "WHICH",
    "BasisDevice",
    "HessianKeywords",
    "HessianOptions",
    "ProbeDistribution",
    "Strategy",
    "Which",
    "check_basis_device",
    "check_strategy",
    "check_which",
    "deterministic_hessian",
    "resolve_deterministic",
    "resolve_hessian_options",
]

#: How a :class:`~flatness.curvature.hessian.HessianOperator` computes its products.
Strategy = Literal["auto", "retained", "double_backward", "forward_over_reverse"]
#: The strategies other than ``"auto"``.
STRATEGIES: tuple[str, ...] = ("retained", "double_backward", "forward_over_reverse")

#: Where an eigensolver keeps its Lanczos basis: with the operator unless it would crowd
#: an accelerator (``"auto"``), in host memory (``"cpu"``), or with the operator always
#: (see :mod:`flatness.curvature.lanczos_basis`).
BasisDevice = Literal["auto", "cpu", "operator"]
BASIS_DEVICES: tuple[str, ...] = get_args(BasisDevice)

#: The distributions of random probe vectors (trace estimators, spectral density).
ProbeDistribution = Literal["rademacher", "gaussian"]

#: Which end of the spectrum an eigensolver seeks: largest algebraic (the sharpest
#: directions), smallest algebraic (negative curvature) or largest magnitude.
Which = Literal["LA", "SA", "LM"]
WHICH: tuple[str, ...] = get_args(Which)


def check_strategy(strategy: str) -> Strategy:
    """Validate a Hessian ``strategy`` (``"auto"`` or one of :data:`STRATEGIES`).

    Returns:
        ``strategy``, typed as :data:`Strategy`.

    Raises:
        ValueError: For any other value.

    Examples:
        >>> check_strategy("retained")
        'retained'
    """
    if strategy != "auto" and strategy not in STRATEGIES:
        raise ValueError(f"strategy must be 'auto' or one of {STRATEGIES}, got {strategy!r}")
    return strategy  # type: ignore[return-value]


def _one_of(name: str, value: str, choices: tuple[str, ...]) -> str:
    """``value`` if it is one of ``choices``, else a ValueError naming the option."""
    if value not in choices:
        raise ValueError(f"{name} must be one of {choices}, got {value!r}")
    return value


def check_basis_device(basis_device: str) -> BasisDevice:
    """Validate a ``basis_device`` (``"auto"``, ``"cpu"`` or ``"operator"``).

    Returns:
        ``basis_device``, typed as :data:`BasisDevice`.

    Raises:
        ValueError: For any other value.
    """
    return _one_of("basis_device", basis_device, BASIS_DEVICES)  # type: ignore[return-value]


def check_which(which: str) -> Which:
    """Validate a ``which`` argument (``"LA"``, ``"SA"`` or ``"LM"``).

    Returns:
        ``which``, typed as :data:`Which`.

    Raises:
        ValueError: For any other value.
    """
    return _one_of("which", which, WHICH)  # type: ignore[return-value]


@dataclasses.dataclass(frozen=True)
class HessianOptions:
    """How the Hessian of an Objective is multiplied (ignored for other operators).

    The fields are those of :class:`~flatness.curvature.hessian.HessianOperator`; an
    estimator given an Objective builds its operator with them, and refuses them
    (``TypeError``) for an operator the caller built.

    Attributes:
        strategy: ``"auto"`` (retain graphs where they fit, else the faster of the
            other two), ``"retained"``, ``"double_backward"`` or
            ``"forward_over_reverse"``.
        memory_budget: Bytes retained graphs may hold (default: half the free GPU
            memory, or a quarter of the available host memory). An eigensolver's
            Lanczos basis takes its share of it first
            (:func:`~flatness.curvature.lanczos_basis.plan_basis`).
        batched: Force vectorized (``True``) or column-by-column (``False``) block
            products; ``None`` times both on the first block.
        check_determinism: Evaluate the first batch twice and refuse a random
            objective (dropout on, a stochastic loss).
        deterministic: Choose nothing by timing (double backward for batches whose
            graphs are not retained; blocks column by column unless ``batched=True``
            asks for vectorized ones), so identical runs give identical bits.
            ``None`` (default) takes the ambient default of
            :func:`deterministic_hessian` (on while :func:`flatness.score` computes).
        basis_device: Where an eigensolver keeps its Lanczos basis: ``"auto"`` (with
            the operator, or in host memory when it would take more than its share of
            an accelerator's budget), ``"cpu"`` (host memory: the GPU holds only the
            model, its graphs and two vectors) or ``"operator"``. Read by
            :func:`~flatness.curvature.eigenvalues.hessian_eigenvalues`; the operator
            ignores it.

    Raises:
        ValueError: For an unknown ``strategy`` or ``basis_device``.

    Examples:
        >>> options = HessianOptions(strategy="double_backward", batched=False)
        >>> options.strategy, options.memory_budget, options.check_determinism
        ('double_backward', None, True)
    """

    strategy: Strategy = "auto"
    memory_budget: int | None = None
    batched: bool | None = None
    check_determinism: bool = True
    deterministic: bool | None = None
    basis_device: BasisDevice = "auto"

    def __post_init__(self) -> None:
        check_strategy(self.strategy)
        check_basis_device(self.basis_device)


class HessianKeywords(TypedDict, total=False):
    """The deprecated loose keyword arguments, one per :class:`HessianOptions` field."""

    strategy: Strategy
    memory_budget: int | None
    batched: bool | None
    check_determinism: bool
    deterministic: bool | None
    basis_device: BasisDevice


_FIELDS = tuple(f.name for f in dataclasses.fields(HessianOptions))

_DETERMINISTIC: ContextVar[bool] = ContextVar("flatness_deterministic_hessian", default=False)


@contextmanager
def deterministic_hessian(enabled: bool = True) -> Iterator[None]:
    """Within the context, Hessian operators choose nothing by timing unless told.

    Operators whose ``deterministic`` option is ``None`` (the default) take ``enabled``;
    an explicit ``True`` or ``False`` wins. :func:`flatness.score` computes every task
    inside ``deterministic_hessian()``, so a rerun of a sweep gives the same bits
    without the setting entering the store's task keys.

    Args:
        enabled: The default inside the context.

    Yields:
        Nothing; the previous default is restored on exit.

    Examples:
        >>> with deterministic_hessian():
        ...     resolve_deterministic(None), resolve_deterministic(False)
        (True, False)
        >>> resolve_deterministic(None)
        False
    """
    token = _DETERMINISTIC.set(bool(enabled))
    try:
        yield
    finally:
        _DETERMINISTIC.reset(token)


def resolve_deterministic(deterministic: bool | None) -> bool:
    """An operator's ``deterministic`` option with ``None`` read as the ambient default.

    Returns:
        ``deterministic`` itself, or for ``None`` the default of the innermost
        :func:`deterministic_hessian` context (``False`` outside any).
    """
    return _DETERMINISTIC.get() if deterministic is None else bool(deterministic)


def resolve_hessian_options(
    hessian: HessianOptions | None, legacy: Mapping[str, object], *, stacklevel: int = 3
) -> HessianOptions | None:
    """Merge the deprecated loose keywords into one :class:`HessianOptions`.

    Args:
        hessian: The options passed as ``hessian=`` (or ``None``).
        legacy: The loose keyword arguments an estimator received (``strategy=...``).
        stacklevel: Where the warning points (3: the caller of the estimator that
            calls this).

    Returns:
        ``hessian`` when no loose keywords were given, else ``HessianOptions(**legacy)``.

    Raises:
        TypeError: For a keyword that is no Hessian option, for loose keywords
            together with ``hessian=``, or for ``hessian`` that is not a
            :class:`HessianOptions`.

    Warns:
        DeprecationWarning: Whenever loose keywords are used.

    Examples:
        >>> import warnings
        >>> with warnings.catch_warnings():
        ...     warnings.simplefilter("ignore")
        ...     resolve_hessian_options(None, {"strategy": "retained"}).strategy
        'retained'
        >>> resolve_hessian_options(None, {}) is None
        True
    """
    if hessian is not None and not isinstance(hessian, HessianOptions):
        raise TypeError(f"hessian must be a HessianOptions, got {type(hessian).__name__}")
    if not legacy:
        return hessian
    unknown = sorted(set(legacy) - set(_FIELDS))
    if unknown:
        raise TypeError(
            f"unexpected keyword argument(s) {unknown}; the Hessian options are {list(_FIELDS)}"
        )
    if hessian is not None:
        raise TypeError(
            f"Hessian options {sorted(legacy)} given both loosely and as hessian=; "
            "pass only hessian=HessianOptions(...)"
        )
    warnings.warn(
        f"passing Hessian options as keyword arguments ({', '.join(sorted(legacy))}) is "
        "deprecated; pass hessian=flatness.HessianOptions(...) instead",
        DeprecationWarning,
        stacklevel=stacklevel,
    )
    return HessianOptions(**legacy)  # type: ignore[arg-type]
