"""One call of each tool the benchmarks compare, timed and counted the same way.

Every function here runs one user-level call — flatness, PyHessian 0.1 (Yao et al.
2020), curvlinops 3.0.1 (Dangel et al.) with scipy's ``eigsh`` (ARPACK: Lehoucq,
Sorensen & Yang 1998), or the plain-Lanczos floor — on a model and one ``(inputs,
targets)`` pair with the cross-entropy loss, and returns a :class:`Run`: wall seconds
(construction included: PyHessian's constructor, curvlinops' operator, flatness's
Objective and operator), Hessian-vector products, the values, or the failure's first
line. A tool that fails is a result, not an exception.

The plain-Lanczos floor itself is :func:`lanczos_floor.plain_lanczos_products`;
:func:`eigsh_floor` is ARPACK on the same operator from the same start vector
(:func:`start_vector`, the one flatness draws for the seed).
"""

from __future__ import annotations

import copy
import dataclasses
import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

import flatness as fl
from flatness.curvature.hessian import HessianOperator

__all__ = [
    "ProductCounter",
    "Run",
    "attempt",
    "decode_runs",
    "encode_runs",
    "curvlinops_top_k",
    "eigsh_floor",
    "evaluation_copy",
    "first_line",
    "flatness_objective",
    "flatness_top_k",
    "gradient_seconds",
    "product_seconds",
    "pyhessian_product_seconds",
    "pyhessian_top_k",
    "pyhessian_trace",
    "start_vector",
    "with_math_attention",
]


@dataclass
class Run:
    """One call of one tool: wall seconds, products, values, or the failure.

    Attributes:
        seconds: Wall time of the call (construction included); ``nan`` on failure.
        products: Hessian-vector products spent (``None`` when not counted).
        values: The eigenvalues (or the trace samples' mean as one value).
        error: ``"ErrorType: first line"`` when the call failed, else ``None``.
        extra: Anything else the report shows (certified residuals, probes, ...).
    """

    seconds: float = float("nan")
    products: int | None = None
    values: list[float] = field(default_factory=list)
    error: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """Whether the call succeeded."""
        return self.error is None


def encode_runs(obj: Any) -> Any:
    """``obj`` with every :class:`Run` as a tagged dict and numpy scalars as floats (JSON).

    Returns:
        A structure :func:`json.dumps` takes; :func:`decode_runs` reverses it.
    """
    if isinstance(obj, Run):
        return {"__run__": encode_runs(dataclasses.asdict(obj))}
    if isinstance(obj, dict):
        return {str(k): encode_runs(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [encode_runs(v) for v in obj]
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, float) and math.isnan(obj):
        return None
    return obj


def decode_runs(obj: Any) -> Any:
    """The inverse of :func:`encode_runs` (a missing ``seconds`` reads as NaN).

    Returns:
        The structure with its :class:`Run` objects back.
    """
    if isinstance(obj, dict):
        if "__run__" in obj:
            fields = dict(obj["__run__"])
            if fields.get("seconds") is None:
                fields["seconds"] = float("nan")
            return Run(**fields)
        return {k: decode_runs(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [decode_runs(v) for v in obj]
    return obj


def first_line(err: BaseException) -> str:
    """``"ErrorType: the message's first line"`` (at most 160 characters)."""
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {(text[0] if text else '')[:160]}"


def attempt(call: Callable[[], Run]) -> Run:
    """Run ``call``, timing it; a failure becomes a :class:`Run` with its error.

    Returns:
        The call's :class:`Run` with ``seconds`` set to its wall time.
    """
    start = time.perf_counter()
    try:
        run = call()
    except Exception as err:  # a tool's failure is a result
        return Run(error=first_line(err))
    run.seconds = time.perf_counter() - start
    return run


# --------------------------------------------------------------------------- flatness
def flatness_objective(model: nn.Module, X: Tensor, y: Tensor) -> fl.Objective:
    """The objective a user builds: cross-entropy over ``(X, y)``, default batches."""
    return fl.Objective(model, (X, y))


def flatness_top_k(model: nn.Module, X: Tensor, y: Tensor, k: int, *, tol: float = 1e-4) -> Run:
    """flatness's certified top-``k`` (Objective and operator built inside the call).

    Returns:
        The :class:`Run`; ``extra`` holds the worst certified relative residual, the
        converged flag and the operator's choices.
    """

    def call() -> Run:
        res = fl.hessian_eigenvalues(flatness_objective(model, X, y), k=k, tol=tol, seed=0)
        worst = max(r / abs(e) for r, e in zip(res.residuals, res.eigenvalues, strict=True))
        return Run(
            products=res.matvecs,
            values=list(res.eigenvalues),
            extra={
                "certified": worst,
                "converged": res.all_converged,
                "multiplicity_checked": res.multiplicity_checked,
                "choices": res.choices,
            },
        )

    return attempt(call)


def start_vector(dim: int, seed: int = 0) -> Tensor:
    """The random start flatness draws for ``seed`` (float64 normal on the CPU).

    Returns:
        A float64 vector of length ``dim``.
    """
    return torch.randn(dim, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def eigsh_floor(op: Any, k: int, *, tol: float = 1e-4, seed: int = 0) -> tuple[int, list[float]]:
    """Products scipy's ``eigsh`` (ARPACK, default ``ncv``) needs for top-``k`` from the same start.

    Returns:
        ``(products, top-k eigenvalues)``.
    """
    from scipy.sparse.linalg import LinearOperator, eigsh

    count = [0]

    def matvec(v: np.ndarray) -> np.ndarray:
        count[0] += 1
        t = torch.as_tensor(np.asarray(v).reshape(-1), dtype=op.dtype, device=op.device)
        return op.matvec(t).double().cpu().numpy()

    A = LinearOperator((op.dim, op.dim), matvec=matvec, dtype=np.float64)
    vals = eigsh(
        A,
        k=k,
        which="LA",
        tol=tol,
        v0=start_vector(op.dim, seed).numpy(),
        return_eigenvectors=False,
    )
    return count[0], sorted((float(v) for v in vals), reverse=True)


def gradient_seconds(obj: fl.Objective, repeats: int) -> float:
    """Median seconds of one full-data gradient (after one warm-up)."""
    obj.gradient()
    return _median(lambda: obj.gradient(), repeats)


def product_seconds(H: HessianOperator, repeats: int) -> float:
    """Median seconds of one product of an operator (after one warm-up)."""
    v = torch.randn(H.dim, dtype=H.dtype)
    H.matvec(v)
    return _median(lambda: H.matvec(v), repeats)


def _median(fn: Callable[[], Any], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


# -------------------------------------------------------------------------- PyHessian
class ProductCounter:
    """Counts PyHessian's Hessian-vector products by wrapping its module functions."""

    def __init__(self) -> None:
        import pyhessian  # noqa: F401 - its package attribute `hessian` is the class

        ph: Any = sys.modules["pyhessian.hessian"]
        self.module = ph
        self.count = 0
        self._orig_hvp = ph.hessian_vector_product
        self._orig_data = ph.hessian.dataloader_hv_product

    def __enter__(self) -> ProductCounter:
        counter = self

        def hvp(*args: Any, **kwargs: Any) -> Any:
            counter.count += 1
            return counter._orig_hvp(*args, **kwargs)

        def data_hvp(obj: Any, v: Any) -> Any:
            counter.count += 1
            return counter._orig_data(obj, v)

        self.module.hessian_vector_product = hvp
        self.module.hessian.dataloader_hv_product = data_hvp
        return self

    def __exit__(self, *exc: object) -> None:
        self.module.hessian_vector_product = self._orig_hvp
        self.module.hessian.dataloader_hv_product = self._orig_data


def _pyhessian(model: nn.Module, X: Tensor, y: Tensor) -> Any:
    from pyhessian import hessian

    return hessian(model, nn.CrossEntropyLoss(), data=(X, y), cuda=False)


def pyhessian_top_k(model: nn.Module, X: Tensor, y: Tensor, k: int) -> Run:
    """PyHessian's ``eigenvalues(top_n=k)`` (power iteration, its default tolerance 1e-3).

    The constructor (the full-data gradient graph) is part of the call.

    Returns:
        The :class:`Run`.
    """

    def call() -> Run:
        with ProductCounter() as counter:
            vals, _ = _pyhessian(model, X, y).eigenvalues(top_n=k)
        return Run(products=counter.count, values=sorted((float(v) for v in vals), reverse=True))

    return attempt(call)


def pyhessian_trace(model: nn.Module, X: Tensor, y: Tensor) -> Run:
    """PyHessian's ``trace()`` (Hutchinson, stops at a 1e-3 relative change of the mean).

    Returns:
        The :class:`Run`, with the mean of the samples as its value.
    """

    def call() -> Run:
        with ProductCounter() as counter:
            samples = _pyhessian(model, X, y).trace()
        return Run(
            products=counter.count, values=[float(np.mean(samples))], extra={"probes": len(samples)}
        )

    return attempt(call)


def pyhessian_product_seconds(model: nn.Module, X: Tensor, y: Tensor, repeats: int) -> float:
    """Median seconds of one PyHessian retained-graph product on the full data."""
    h = _pyhessian(model, X, y)
    ph = sys.modules["pyhessian.hessian"]
    v = [torch.randn_like(p) for p in h.params]
    ph.hessian_vector_product(h.gradsH, h.params, v)
    return _median(lambda: ph.hessian_vector_product(h.gradsH, h.params, v), repeats)


# ------------------------------------------------------------------------- curvlinops
def curvlinops_top_k(model: nn.Module, X: Tensor, y: Tensor, k: int, *, tol: float = 1e-4) -> Run:
    """curvlinops' ``HessianLinearOperator`` (one full-data batch) with scipy ``eigsh``.

    ``check_deterministic=False`` (its check costs extra passes; flatness's own check is
    one batch evaluated twice); ``eigsh`` with ``which="LA"``, ``tol`` and the start
    vector flatness draws.

    Returns:
        The :class:`Run`.
    """

    def call() -> Run:
        from curvlinops import HessianLinearOperator
        from scipy.sparse.linalg import LinearOperator, eigsh

        params = [p for p in model.parameters() if p.requires_grad]
        H = HessianLinearOperator(
            model, nn.CrossEntropyLoss(), params, [(X, y)], check_deterministic=False
        ).to_scipy()
        count = [0]

        def matvec(v: np.ndarray) -> np.ndarray:
            count[0] += 1
            return np.asarray(H @ np.asarray(v, dtype=np.float32).reshape(-1))

        A = LinearOperator(H.shape, matvec=matvec, dtype=np.float32)
        v0 = start_vector(H.shape[0]).numpy().astype(np.float32)
        vals = eigsh(A, k=k, which="LA", tol=tol, v0=v0, return_eigenvectors=False)
        return Run(products=count[0], values=sorted((float(v) for v in vals), reverse=True))

    return attempt(call)


def with_math_attention(call: Callable[..., Run]) -> Callable[..., Run]:
    """``call`` run with PyTorch's math attention kernel forced by hand.

    The fused scaled-dot-product kernels have no double backward and no forward AD, so a
    peer's Hessian products through attention fail; inside
    ``torch.nn.attention.sdpa_kernel([SDPBackend.MATH])`` they work (what a user of a
    peer has to know and do).

    Returns:
        The wrapped call.
    """
    from torch.nn.attention import SDPBackend, sdpa_kernel

    def wrapped(*args: Any, **kwargs: Any) -> Run:
        with sdpa_kernel([SDPBackend.MATH]):
            return call(*args, **kwargs)

    return wrapped


def evaluation_copy(model: nn.Module) -> nn.Module:
    """A copy of ``model`` in evaluation mode (the peers may change a model's mode)."""
    return copy.deepcopy(model).eval()
