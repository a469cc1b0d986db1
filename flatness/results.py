"""The result contract every estimator honours, and the cost meter they share.

Every estimator in flatness returns a frozen dataclass deriving from :class:`Result`
and exposing the same core fields, under the same names (fields or properties):

``value``
    The headline: a float, or a tuple of floats for a top-k spectrum.
``stderr``
    Its error bar, with ``value``'s shape: a standard error for stochastic estimates,
    the residual bound ``||A v - lambda v||`` for eigenvalues (:attr:`Result.error_kind`
    says which); NaN where none exists.
``converged``
    Whether the estimate met its own accuracy target (a tuple for a top-k spectrum);
    ``True`` for estimates that have no such notion.
``matvecs``, ``evaluations``, ``gradients``
    The cost: Hessian-vector products, loss evaluations and gradient evaluations
    spent, as the estimator counts its own calls. Zero where none were. For the
    curvature estimators, PAC-Bayes and average sharpness and the landscapes an
    evaluation is a forward pass over the evaluation data without a gradient; some
    sharpness results keep the counts they always had: Keskar's ε-sharpness and
    adaptive sharpness count every loss evaluation, those with a gradient included,
    adaptive sharpness and the noise scale count over chunks or single examples, and
    the interpolation counts passes over the training and the test set alike.
``gradient_equivalents``
    The cost as a nominal number of full gradients over the evaluation data, the one
    cost comparable across estimators: :func:`gradient_equivalents` of the counts where
    they mean the above, each estimator's own conversion where they do not (see its
    docs). NaN where no such number exists: a plain matrix rather than a model, or the
    interpolation's passes over two data sets of different sizes.
``seconds``
    Wall time of the estimate. The determinism check (two forward passes) and, for an
    Objective's Hessian, building its operator (the retained graphs) come before the
    clock starts and are not in it.
``settings``
    The keyword arguments that reproduce the result with its estimator.

and the methods :meth:`Result.to_dict` (plain Python for pandas, with every name
above),
:meth:`Result.records` (the rows the results store keeps) and :meth:`Result.details`
(what the store keeps beside them). :class:`ResultContract`
states the same as a typing protocol; ``tests/test_result_contract.py`` walks every
public estimator and checks it.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Sequence
from typing import Any, ClassVar, Literal, Protocol, runtime_checkable

import numpy as np
import torch

ErrorKind = Literal["stderr", "residual"]

#: Nominal costs, in full gradients over the same data, that
#: :func:`gradient_equivalents` charges: a forward pass (loss only) is a third of a
#: gradient, a Hessian-vector product two (Pearlmutter 1994: one extra forward and
#: backward pass through the gradient's graph).
COST_FORWARD = 1.0 / 3.0
COST_GRADIENT = 1.0
COST_HVP = 2.0


def gradient_equivalents(*, matvecs: int = 0, evaluations: int = 0, gradients: int = 0) -> float:
    """The nominal cost of a computation in full gradients.

    Args:
        matvecs: Hessian-vector products spent.
        evaluations: Loss evaluations without a gradient.
        gradients: Gradient evaluations (each includes its loss).

    Returns:
        ``COST_HVP * matvecs + COST_FORWARD * evaluations + COST_GRADIENT * gradients``.

    Examples:
        >>> gradient_equivalents(matvecs=10, gradients=1)
        21.0
    """
    return COST_HVP * matvecs + COST_FORWARD * evaluations + COST_GRADIENT * gradients


def to_plain(value: Any) -> Any:
    """Convert tensors, arrays and nested containers to plain Python objects.

    Returns:
        ``value`` with tensors and arrays turned into (nested) lists or scalars, dtypes
        and devices into strings, dataclasses and mappings into dicts.

    Examples:
        >>> to_plain({"a": torch.tensor([1.0, 2.0]), "b": (np.float64(3.0),)})
        {'a': [1.0, 2.0], 'b': [3.0]}
    """
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu()
        return value.item() if value.ndim == 0 else value.tolist()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, torch.dtype | torch.device):
        return str(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {str(k): to_plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_plain(v) for v in value]
    return value


def finite_or_none(x: Any) -> float | None:
    """``float(x)`` when it is finite, else ``None`` (how the store keeps a missing bar).

    Examples:
        >>> finite_or_none(1), finite_or_none(float("nan")), finite_or_none(None)
        (1.0, None, None)
    """
    if x is None:
        return None
    x = float(x)
    return x if math.isfinite(x) else None


@dataclasses.dataclass(frozen=True)
class Record:
    """One scalar a result contributes to the results store.

    Attributes:
        component: Which scalar of the result (``""`` for the headline of a single
            value, ``"1"`` … ``"k"`` for the top eigenvalues, a name such as
            ``"trace_cov"`` for secondary quantities).
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


#: The names of the contract's fields (the module doc), in that order.
CONTRACT_NAMES: tuple[str, ...] = (
    "value",
    "stderr",
    "converged",
    "matvecs",
    "evaluations",
    "gradients",
    "gradient_equivalents",
    "seconds",
    "settings",
)


@runtime_checkable
class ResultContract(Protocol):
    """The fields and methods every estimator result exposes (see the module doc)."""

    @property
    def value(self) -> float | tuple[float, ...]: ...

    @property
    def stderr(self) -> float | tuple[float, ...]: ...

    @property
    def converged(self) -> bool | tuple[bool, ...]: ...

    @property
    def matvecs(self) -> int: ...

    @property
    def evaluations(self) -> int: ...

    @property
    def gradients(self) -> int: ...

    @property
    def gradient_equivalents(self) -> float: ...

    @property
    def seconds(self) -> float: ...

    @property
    def settings(self) -> dict[str, Any]: ...

    def to_dict(self, *, include_arrays: bool = True) -> dict[str, Any]: ...

    def details(self) -> dict[str, Any]: ...

    def records(self) -> list[Record]: ...


@dataclasses.dataclass(frozen=True)
class PlainData:
    """A frozen dataclass that converts to plain Python: the base of summaries that are
    not estimates (a score summary, a report, a correlation, a mean ± std)."""

    def _fields(self, *, include_arrays: bool) -> dict[str, Any]:
        """``{field name: plain value}``, without the ``repr=False`` fields unless asked."""
        return {
            f.name: to_plain(getattr(self, f.name))
            for f in dataclasses.fields(self)
            if include_arrays or f.repr
        }

    def to_dict(self, *, include_arrays: bool = True) -> dict[str, Any]:
        """Return the fields as plain Python values.

        Args:
            include_arrays: When false, fields declared with ``repr=False`` are left out.

        Returns:
            ``{field name: plain value}``.
        """
        return self._fields(include_arrays=include_arrays)


@dataclasses.dataclass(frozen=True)
class Result(PlainData):
    """Base class of every estimator's result.

    Subclasses provide the contract's fields (as dataclass fields or properties; see
    the module doc). The base supplies :meth:`to_dict` and a :meth:`records` that
    turns ``value``/``stderr``/``converged`` into rows: one row for a scalar headline
    (component ``""``), one per entry for a tuple (components ``"1"`` … ``"k"``).
    Results with secondary quantities override :meth:`records`.
    """

    #: What ``stderr`` is, for the store: a standard error or a residual bound.
    error_kind: ClassVar[ErrorKind] = "stderr"

    #: Whether every row names :attr:`error_kind`, even one without an error bar (the
    #: rows of eigenvalues and traces always have); otherwise only rows with one do.
    error_kind_on_every_row: ClassVar[bool] = False

    def to_dict(self, *, include_arrays: bool = True) -> dict[str, Any]:
        """Return the fields, and an estimator's contract names, as plain Python values.

        An estimator's result (one that honours :class:`ResultContract`) also holds the
        contract's names that it keeps as properties (``value`` of an
        :class:`~flatness.curvature.eigen_result.EigenResult`, ``settings`` of a
        sharpness result, ...), so every estimator's dictionary has ``value``,
        ``stderr``, ``converged``, the cost, ``seconds`` and ``settings``.

        Args:
            include_arrays: When false, fields declared with ``repr=False`` (large arrays
                such as eigenvectors) and ``settings`` are left out.

        Returns:
            ``{name: plain value}`` for every dataclass field and, for an estimator's
            result, every name of :data:`CONTRACT_NAMES`.
        """
        out = self._fields(include_arrays=include_arrays)
        if isinstance(self, ResultContract):
            for name in CONTRACT_NAMES:
                if name not in out and (include_arrays or name != "settings"):
                    out[name] = to_plain(getattr(self, name))
        return out

    def details(self) -> dict[str, Any]:
        """What the results store keeps beside the rows (the ``details`` JSON).

        Returns:
            The dataclass fields as plain values, without the large arrays (``repr=False``
            fields, ``settings`` among them); results whose arrays belong in the store (a
            spectral density's nodes and weights) override this.
        """
        return self._fields(include_arrays=False)

    def records(self) -> list[Record]:
        """The rows this result contributes to the results store.

        Returns:
            One :class:`Record` per scalar of ``value``, with its error bar (``None``
            where it is NaN), its error kind (``None`` without an error bar unless
            :attr:`error_kind_on_every_row`) and convergence flag.

        Raises:
            AttributeError: If the subclass does not provide ``value``.
        """
        value: Any = getattr(self, "value")  # noqa: B009 - provided by the subclass
        stderr: Any = getattr(self, "stderr", math.nan)
        converged: Any = getattr(self, "converged", None)

        def row(component: str, v: Any, e: Any, c: Any) -> Record:
            error = finite_or_none(e)
            kind = self.error_kind if error is not None or self.error_kind_on_every_row else None
            return Record(component, float(v), error, kind, None if c is None else bool(c))

        if isinstance(value, Sequence | np.ndarray) and not isinstance(value, str):
            n = len(value)
            errors = list(stderr) if isinstance(stderr, Sequence | np.ndarray) else [stderr] * n
            flags = (
                list(converged) if isinstance(converged, Sequence | np.ndarray) else [converged] * n
            )
            return [
                row(str(i + 1), v, e, c)
                for i, (v, e, c) in enumerate(zip(value, errors, flags, strict=True))
            ]
        return [row("", value, stderr, converged)]


class Meter:
    """Cost bookkeeping for one estimator call: wall time and products spent.

    Use it as a context manager around the work; read :attr:`seconds` and
    :attr:`matvecs` afterwards (or during the work, for the running totals).
    Loss and gradient evaluations that the estimator performs itself are counted with
    :meth:`count`.

    Args:
        op: The operator whose products to count (anything with a ``matvecs``
            counter); ``None`` counts none.

    Examples:
        >>> from flatness.curvature.operator import DenseOperator
        >>> A = DenseOperator(torch.eye(3, dtype=torch.float64))
        >>> with Meter(A) as meter:
        ...     _ = A.matvec(torch.ones(3, dtype=torch.float64))
        ...     meter.count(evaluations=2)
        >>> meter.matvecs, meter.evaluations, meter.seconds >= 0
        (1, 2, True)
    """

    def __init__(self, op: Any = None) -> None:
        self._op = op
        self._t0 = time.perf_counter()
        self._t1: float | None = None
        self._m0 = int(op.matvecs) if op is not None else 0
        self._m1: int | None = None
        self.evaluations = 0
        self.gradients = 0

    def __enter__(self) -> Meter:
        self._t0 = time.perf_counter()
        self._t1 = None
        self._m0 = int(self._op.matvecs) if self._op is not None else 0
        self._m1 = None
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        """Freeze the totals (the context manager does this on exit)."""
        if self._t1 is None:
            self._t1 = time.perf_counter()
            self._m1 = int(self._op.matvecs) if self._op is not None else 0

    def count(self, *, evaluations: int = 0, gradients: int = 0) -> None:
        """Add loss or gradient evaluations performed outside the operator."""
        self.evaluations += int(evaluations)
        self.gradients += int(gradients)

    @property
    def seconds(self) -> float:
        """Wall seconds since the meter started (until it stopped)."""
        end = self._t1 if self._t1 is not None else time.perf_counter()
        return end - self._t0

    @property
    def matvecs(self) -> int:
        """Products the operator performed since the meter started (until it stopped)."""
        if self._op is None:
            return 0
        end = self._m1 if self._m1 is not None else int(self._op.matvecs)
        return end - self._m0

    @property
    def gradient_equivalents(self) -> float:
        """The nominal cost so far, in full gradients (:func:`gradient_equivalents`)."""
        return gradient_equivalents(
            matvecs=self.matvecs, evaluations=self.evaluations, gradients=self.gradients
        )


def format_float(x: float, digits: int = 6) -> str:
    """Format a float compactly for ``repr`` (``nan`` stays readable).

    Returns:
        ``x`` with ``digits`` significant digits, or ``"nan"``.
    """
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "nan"
    return f"{x:.{digits}g}"
