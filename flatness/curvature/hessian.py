"""Hessian-vector products over the full data set, behind one operator.

:class:`HessianOperator` multiplies the Hessian of an
:class:`~flatness.curvature.objective.Objective` with flat vectors (``matvec``) and
blocks of vectors (``matmat``), Pearlmutter's (1994) trick without forming the matrix.
Three strategies compute the same product:

``"retained"``
    The first-order gradient graph of each batch is built once
    (``create_graph=True``) and kept; every product is then one extra backward pass
    through it. Fastest per product, but the graphs hold memory, so batches are
    retained only while their measured size fits in ``memory_budget``; batches that
    do not fit fall back to the next strategy.
``"double_backward"``
    Forward, gradient with ``create_graph=True`` and the second backward, per batch and
    product. No memory held between products.
``"forward_over_reverse"``
    :func:`torch.func.jvp` of :func:`torch.func.grad`, vmapped over the columns of a
    block, so k products share one traced program.

``strategy="auto"`` retains graphs where they fit and, for the batches that do not,
times one product of each of the other two strategies and keeps the faster. Blocks
are computed column by column or vectorized, whichever a timed first block shows to
be faster. The choices and timings are kept in :attr:`HessianOperator.choices`.

Where the batches are ``(inputs, targets)`` tensors with a plain ``loss_fn`` in eval
mode, merging them into one batch changes the function not at all (the objective is
the mean of per-example losses) and the products only by rounding, but pays a
product's fixed overhead once instead of once per batch: ``"auto"`` and
``"retained"`` then keep one graph of all the data where it fits the budget (on the
host, where it is small enough for the overhead to matter;
:mod:`flatness.curvature.batch_merge`, :func:`~flatness.curvature.graph_memory.retain_graphs`;
``numerics["merged"]``). Merging changes the last bits and depends on the memory free,
so a ``deterministic`` operator does not merge.

The strategies agree to rounding, not to the last bit, so choices made by timing make
two identical runs differ in their last bits. ``deterministic=True`` makes no choice
by timing: batches that are not retained use double backward (whose products equal
the retained graphs' bit for bit on the host) and blocks are multiplied column by
column (each column equals :meth:`HessianOperator.matvec` of it). The choices that
change the numerics are :attr:`HessianOperator.numerics`, which the estimators keep
in their results' ``choices``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor

from flatness.curvature.attention import second_order_errors
from flatness.curvature.batch_merge import merge_refusal
from flatness.curvature.graph_memory import Graph, default_memory_budget, retain_graphs
from flatness.curvature.linear_operator import to_scipy
from flatness.curvature.objective import Objective, second_derivative
from flatness.curvature.options import (
    STRATEGIES,
    HessianOptions,
    Strategy,
    check_strategy,
    resolve_deterministic,
)
from flatness.results import Meter

if TYPE_CHECKING:
    from scipy.sparse.linalg import LinearOperator

__all__ = ["STRATEGIES", "HessianOperator", "Strategy", "default_memory_budget"]


class HessianOperator:
    """The Hessian of an objective as a symmetric linear operator on flat vectors.

    Args:
        objective: The loss whose Hessian at ``objective.theta0`` is wanted.
        strategy: ``"auto"`` (default) or one of ``"retained"``,
            ``"double_backward"``, ``"forward_over_reverse"`` (see the module docs).
            ``"retained"`` still falls back to double backward for batches whose
            graphs exceed the budget.
        memory_budget: Bytes retained graphs may hold (default:
            :func:`default_memory_budget`).
        batched: ``None`` (time it on the first block), or force vectorized (``True``)
            or column-by-column (``False``) block products.
        check_determinism: Evaluate the first batch twice first and refuse a random
            objective (dropout on, a stochastic loss).
        deterministic: Make no choice by timing, so identical runs give identical bits
            (see the module docs); ``None`` takes the ambient default
            (:func:`~flatness.curvature.options.deterministic_hessian`, on while
            :func:`flatness.score` computes, else off).

    The operator counts its products in :attr:`matvecs`. Close it (or use it as a
    context manager) to free the retained graphs.

    Raises:
        ValueError: For an unknown ``strategy``.

    Examples:
        >>> from torch import nn
        >>> net = nn.Sequential(nn.Linear(3, 5), nn.ReLU(), nn.Linear(5, 2))
        >>> obj = Objective(net, (torch.randn(8, 3), torch.randint(0, 2, (8,))))
        >>> with HessianOperator(obj) as H:
        ...     v = torch.randn(H.dim)
        ...     bool(torch.allclose(H.matvec(v), obj.hvp(v), atol=1e-6))
        True
    """

    def __init__(
        self,
        objective: Objective,
        *,
        strategy: Strategy = "auto",
        memory_budget: int | None = None,
        batched: bool | None = None,
        check_determinism: bool = True,
        deterministic: bool | None = None,
    ) -> None:
        check_strategy(strategy)
        self.objective = objective
        self.strategy = strategy
        self.memory_budget = (
            int(memory_budget)
            if memory_budget is not None
            else default_memory_budget(objective.device)
        )
        self.deterministic = resolve_deterministic(deterministic)
        self._batched = False if batched is None and self.deterministic else batched
        self._matvecs = 0
        self._graphs: list[Graph | None] = []
        self._batches: Sequence[Any] = objective.batches
        self._weights: tuple[float, ...] = tuple(objective.weights)
        self._merged = False
        self._fallback: str | None = (
            strategy if strategy in ("double_backward", "forward_over_reverse") else None
        )
        self.choices: dict[str, Any] = {"strategy": strategy, "deterministic": self.deterministic}
        self._closed = False
        self._for_fns: dict[int, Callable[..., Any]] = {}
        if check_determinism:
            objective.check_determinism()
        if strategy in ("auto", "retained"):
            refusal = merge_refusal(objective)
            merge = refusal is None and not self.deterministic
            self.choices["merge"] = refusal or ("allowed" if merge else "deterministic")
            self._retain_graphs(merge)
        else:
            self._graphs = [None] * len(objective.batches)

    @classmethod
    def from_options(cls, objective: Objective, options: HessianOptions | None) -> HessianOperator:
        """The operator of ``objective`` built with ``options`` (defaults for ``None``).

        Returns:
            ``HessianOperator(objective, strategy=..., memory_budget=..., batched=...,
            check_determinism=..., deterministic=...)`` with the fields of ``options``.
        """
        o = options if options is not None else HessianOptions()
        return cls(
            objective,
            strategy=o.strategy,
            memory_budget=o.memory_budget,
            batched=o.batched,
            check_determinism=o.check_determinism,
            deterministic=o.deterministic,
        )

    # ------------------------------------------------------------ properties
    @property
    def dim(self) -> int:
        return self.objective.dim

    @property
    def device(self) -> torch.device:
        return self.objective.device

    @property
    def dtype(self) -> torch.dtype:
        return self.objective.dtype

    @property
    def matvecs(self) -> int:
        return self._matvecs

    @property
    def retained_batches(self) -> int:
        """How many of the objective's batches keep their gradient graph between products."""
        if self._merged and self._graphs[0] is not None:
            return len(self.objective.batches)
        return sum(g is not None for g in self._graphs)

    @property
    def numerics(self) -> dict[str, Any]:
        """The choices made so far that change the products' last bits.

        ``strategy`` and ``deterministic`` as asked; ``retained_batches`` of
        ``batches``; ``merged``, whether the batches were merged into one (module
        docs); ``fallback``, the strategy of the batches not retained (``None``
        while none was needed); ``batched``, whether blocks are multiplied vectorized
        (``None`` while no block was multiplied); ``threads``, torch's intra-op
        threads during the last product (``None`` before any), which change the
        bits of the host's reductions; ``attention``, present only when the model
        calls scaled-dot-product attention: ``"math"``, the kernel its second-order
        passes use (:mod:`flatness.curvature.attention`). The estimators keep this in
        their results' ``choices``.
        """
        return {
            "strategy": self.strategy,
            "deterministic": self.deterministic,
            "retained_batches": int(self.choices.get("retained_batches", 0)),
            "batches": len(self.objective.batches),
            "merged": self._merged,
            "fallback": self._fallback,
            "batched": self._batched,
            "threads": self.choices.get("threads"),
            **({"attention": self.objective.attention} if self.objective.attention else {}),
        }

    # -------------------------------------------------------------- building
    def _build_graph(self, batch: Any) -> tuple[list[Tensor], list[Tensor | None]]:
        leaves = self.objective.leaves()
        params = list(leaves.values())
        loss = self.objective.batch_mean_loss(leaves, batch, second_order=True)
        grads = torch.autograd.grad(loss, params, create_graph=True, allow_unused=True)
        return params, list(grads)

    def _retain_graphs(self, merge: bool) -> None:
        """Keep the batches' gradient graphs while they fit (one merged graph if allowed)."""
        kept = retain_graphs(self.objective, self._build_graph, self.memory_budget, merge=merge)
        self._graphs, self._batches, self._weights = kept.graphs, kept.batches, kept.weights
        self._merged = kept.merged
        self.choices["retained_bytes"] = kept.nbytes
        self.choices["retained_batches"] = self.retained_batches
        if any(g is None for g in self._graphs) and self._fallback is None:
            self._fallback = "double_backward" if self.strategy == "retained" else None

    # ---------------------------------------------------------- the products
    def _split(self, V: Tensor) -> list[Tensor]:
        """(k, dim) → per-parameter (k, *shape) views."""
        return list(self.objective.unflatten(V).values())

    def _retained_block(self, graph: Graph, V: Tensor, batched: bool) -> Tensor:
        params, grads = graph
        if batched:
            parts = second_derivative(
                grads, params, self._split(V), retain_graph=True, batched=True
            )
            return torch.cat([p.reshape(V.shape[0], -1) for p in parts], dim=1)
        rows = []
        for v in V:
            parts = second_derivative(grads, params, self._split(v), retain_graph=True)
            rows.append(torch.cat([p.reshape(-1) for p in parts]))
        return torch.stack(rows)

    def _double_backward_block(self, batch: Any, V: Tensor, batched: bool) -> Tensor:
        params, grads = self._build_graph(batch)
        if batched:
            parts = second_derivative(grads, params, self._split(V), batched=True)
            return torch.cat([p.reshape(V.shape[0], -1) for p in parts], dim=1)
        rows = []
        for i, v in enumerate(V):
            parts = second_derivative(
                grads, params, self._split(v), retain_graph=i < V.shape[0] - 1
            )
            rows.append(torch.cat([p.reshape(-1) for p in parts]))
        return torch.stack(rows)

    def _forward_over_reverse_block(self, index: int, V: Tensor, batched: bool) -> Tensor:
        fn = self._for_fns.get(index)
        if fn is None:
            obj = self.objective

            def grad_fn(theta: Tensor) -> Tensor:
                batch = self._batches[index]  # moved to the device now, not held between calls
                g: Tensor = torch.func.grad(
                    lambda t: obj.batch_mean_loss(t, batch, second_order=True)
                )(theta)
                return g

            def hvp(v: Tensor) -> Tensor:
                tangent: Tensor = torch.func.jvp(grad_fn, (obj.theta0,), (v,))[1]
                return tangent

            fn = self._for_fns[index] = hvp
        with second_order_errors("forward_over_reverse"):
            if batched:
                block: Tensor = torch.func.vmap(fn)(V)
                return block
            return torch.stack([fn(v) for v in V])

    def _batch_block(self, index: int, V: Tensor, batched: bool, method: str) -> Tensor:
        graph = self._graphs[index]
        if graph is not None:
            return self._retained_block(graph, V, batched)
        if method == "forward_over_reverse":
            return self._forward_over_reverse_block(index, V, batched)
        return self._double_backward_block(self._batches[index], V, batched)

    def _choose_fallback(self, V: Tensor) -> str:
        """Time one product of each non-retaining strategy on the first unretained batch."""
        index = next(i for i, g in enumerate(self._graphs) if g is None)
        timings = {}
        for method in ("double_backward", "forward_over_reverse"):
            try:
                with Meter() as clock:
                    self._batch_block(index, V[:1], False, method)
                    self._sync()
                timings[method] = clock.seconds
            except RuntimeError as err:  # an op without forward-mode AD support
                timings[method] = float("inf")
                self.choices[f"{method}_error"] = str(err).splitlines()[0]
        self.choices["fallback_timings_s"] = timings
        return min(timings, key=timings.__getitem__)

    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def _block(self, V: Tensor, batched: bool) -> Tensor:
        if self._fallback is None and any(g is None for g in self._graphs):
            self._fallback = "double_backward" if self.deterministic else self._choose_fallback(V)
        self.choices["fallback"] = self._fallback
        self.choices["threads"] = torch.get_num_threads()
        out = torch.zeros_like(V)
        for i, w in enumerate(self._weights):
            out.add_(self._batch_block(i, V, batched, self._fallback or "double_backward"), alpha=w)
        return self.objective.reduce(out)

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError("this HessianOperator was closed; build a new one")

    def matvec(self, v: Tensor) -> Tensor:
        """Multiply one vector.

        Returns:
            :math:`H v` for a flat vector ``v`` of shape ``(dim,)`` (detached).

        Raises:
            ValueError: If ``v`` has another shape.
            RuntimeError: If the operator was closed.
        """
        self._check_open()
        v = v.to(device=self.device, dtype=self.dtype)
        if v.shape != (self.dim,):
            raise ValueError(f"expected a vector of shape ({self.dim},), got {tuple(v.shape)}")
        out = self._block(v.unsqueeze(0), batched=False)[0]
        self._matvecs += 1
        return out.detach()

    def matmat(self, V: Tensor) -> Tensor:
        """Multiply a block of vectors (counted as ``k`` products).

        Returns:
            :math:`H V` for a block ``V`` of shape ``(dim, k)`` (detached).

        Raises:
            ValueError: If ``V`` has another shape.
            RuntimeError: If the operator was closed.
        """
        self._check_open()
        V = V.to(device=self.device, dtype=self.dtype)
        if V.ndim != 2 or V.shape[0] != self.dim:
            raise ValueError(f"expected a block of shape ({self.dim}, k), got {tuple(V.shape)}")
        k = int(V.shape[1])
        rows = V.T.contiguous()
        if k == 1 or self._batched is False:
            out = self._block(rows, batched=False)
        elif self._batched is True:
            out = self._block(rows, batched=True)
        else:
            out = self._calibrate_batched(rows)
        self._matvecs += k
        return out.T.detach()

    def _calibrate_batched(self, rows: Tensor) -> Tensor:
        """First block: half column by column, half vectorized; keep the faster."""
        k = rows.shape[0]
        half = k // 2
        self._sync()
        with Meter() as clock:
            first = self._block(rows[:half], batched=False)
            self._sync()
        sequential = clock.seconds / half
        try:
            with Meter() as clock:
                second = self._block(rows[half:], batched=True)
                self._sync()
            vectorized = clock.seconds / (k - half)
        except RuntimeError as err:  # an op that vmap cannot batch
            self.choices["batched_error"] = str(err).splitlines()[0]
            second = self._block(rows[half:], batched=False)
            vectorized = float("inf")
        self._batched = vectorized < sequential
        self.choices["batched"] = self._batched
        self.choices["per_vector_s"] = {"sequential": sequential, "vectorized": vectorized}
        return torch.cat([first, second])

    # ---------------------------------------------------------------- views
    def to_scipy(self) -> LinearOperator:
        """A SciPy view of the operator.

        Returns:
            A :class:`scipy.sparse.linalg.LinearOperator` (float64 NumPy in and out),
            see :func:`~flatness.curvature.linear_operator.to_scipy`.
        """
        return to_scipy(self)

    def to_dense(self, *, block: int = 64) -> Tensor:
        """The full Hessian by ``dim`` products, ``block`` columns at a time.

        For small models and tests only.

        Returns:
            The ``(dim, dim)`` matrix on the operator's device and dtype.
        """
        eye = torch.eye(self.dim, device=self.device, dtype=self.dtype)
        return torch.cat(
            [self.matmat(eye[:, i : i + block]) for i in range(0, self.dim, block)], dim=1
        )

    def close(self) -> None:
        """Free the retained graphs; the operator cannot multiply afterwards."""
        self._graphs = [None] * len(self._graphs)
        self._for_fns.clear()
        self._closed = True

    def __enter__(self) -> HessianOperator:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return (
            f"HessianOperator(dim={self.dim}, strategy={self.strategy!r}, "
            f"retained={self.retained_batches}/{len(self._graphs)}, "
            f"matvecs={self.matvecs}, device={self.device}, "
            f"dtype={str(self.dtype).replace('torch.', '')})"
        )


def hessian_matrix(objective: Objective) -> np.ndarray:
    """The dense Hessian of ``objective`` (reference use, small networks).

    Returns:
        The ``(dim, dim)`` matrix as a NumPy array.
    """
    with HessianOperator(objective, check_determinism=False) as H:
        return H.to_dense().detach().cpu().numpy()
