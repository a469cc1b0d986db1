"""The empirical loss that every curvature and sharpness measure is taken of.

An :class:`Objective` is the mean loss of a model over a fixed, deterministic set of
examples, seen as a function of a flat parameter vector :math:`\\theta`:

.. math::

    f(\\theta) = \\frac{1}{N} \\sum_{b} n_b \\, \\bar\\ell_b(\\theta),

where :math:`\\bar\\ell_b` is the mean loss of batch :math:`b` with :math:`n_b`
examples. Weighting each batch by its size makes the value, gradient and
Hessian-vector products independent of how the examples are batched (loss-landscape
summed batch means without this weighting and so scaled its eigenvalues).

The model is called functionally with :func:`torch.func.functional_call`: algorithms
never mutate it, and its parameters, buffers and training mode are left as found.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call

from flatness.curvature.batches import (
    Batch,
    batch_size_of,
    move_batch,
    shuffles,
    split_batches,
)

__all__ = [
    "Batch",
    "BatchLossFn",
    "LossFn",
    "Objective",
    "ParamSelector",
    "ParameterBlock",
    "batch_size_of",
    "move_batch",
    "second_derivative",
    "split_batches",
]

LossFn = Callable[[Tensor, Tensor], Tensor]
"""``loss_fn(output, target) -> mean loss`` (e.g. :func:`torch.nn.functional.cross_entropy`)."""

BatchLossFn = Callable[[Callable[..., Any], Batch], Tensor]
"""``batch_loss(model_fn, batch) -> mean loss over the batch`` for batches that are not
``(x, y)``; ``model_fn`` calls the model with the parameters being evaluated."""

ParamSelector = str | Sequence[str] | Callable[[str, nn.Parameter], bool] | None


@dataclass(frozen=True)
class ParameterBlock:
    """Where one selected parameter lives in the flat vector."""

    name: str
    shape: tuple[int, ...]
    offset: int
    numel: int


def _select_names(model: nn.Module, params: ParamSelector) -> list[str]:
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    if params is None:
        names = [n for n, _ in named]
    elif callable(params) and not isinstance(params, str):
        names = [n for n, p in named if params(n, p)]
    else:
        wanted = [params] if isinstance(params, str) else list(params)
        all_names = {n for n, _ in named}
        names = []
        for w in wanted:
            hits = [n for n, _ in named if n == w or n.startswith(w + ".") or w == ""]
            if not hits:
                raise ValueError(
                    f"parameter selector {w!r} matches no trainable parameter or module; "
                    f"known parameters: {sorted(all_names)[:12]}"
                    + (" ..." if len(all_names) > 12 else "")
                )
            names.extend(h for h in hits if h not in names)
        order = {n: i for i, (n, _) in enumerate(named)}
        names.sort(key=order.__getitem__)
    if not names:
        raise ValueError("the objective has no parameters to differentiate: none selected")
    return names


def _zeros_for_none(grads: Sequence[Tensor | None], like: Mapping[str, Tensor]) -> list[Tensor]:
    return [
        torch.zeros_like(t) if g is None else g for g, t in zip(grads, like.values(), strict=True)
    ]


def second_derivative(
    grads: Sequence[Tensor | None],
    params: Sequence[Tensor],
    v_parts: Sequence[Tensor],
    *,
    retain_graph: bool = False,
    batched: bool = False,
) -> list[Tensor]:
    """Differentiate ``<grads, v>`` with respect to ``params`` (the second backward).

    Gradients that are ``None`` or constant (a parameter the loss ignores, or a
    gradient that no longer depends on the parameters) contribute zero, as they do to
    the Hessian. With ``batched=True`` each ``v_parts[i]`` has a leading dimension of
    k vectors and the products are vectorized with ``is_grads_batched``.

    Returns:
        One tensor per parameter (with the leading dimension k when batched).
    """
    live = [g for g in grads if g is not None and g.requires_grad]
    parts = [v for g, v in zip(grads, v_parts, strict=True) if g is not None and g.requires_grad]
    lead = tuple(v_parts[0].shape[:1]) if batched else ()
    res: Sequence[Tensor | None] = (
        torch.autograd.grad(
            live,
            params,
            grad_outputs=parts,
            retain_graph=retain_graph,
            allow_unused=True,
            is_grads_batched=batched,
        )
        if live
        else [None] * len(params)
    )
    return [
        torch.zeros(*lead, *p.shape, dtype=p.dtype, device=p.device) if r is None else r
        for p, r in zip(params, res, strict=True)
    ]


class Objective:
    """The mean loss of a model over a fixed data set, as a function of flat parameters.

    Args:
        model: The network. It is never modified: it is evaluated with
            :func:`torch.func.functional_call` on copies of the parameters.
        data: An ``(inputs, targets)`` tensor pair (split into batches of
            ``batch_size``), a list of batches, or a DataLoader (iterated once; its
            batches are kept, so a shuffling loader is read in one fixed order, which
            does not change the mean in eval mode; in training mode it is refused).
        loss_fn: ``loss_fn(output, target)`` returning the *mean* loss of a batch.
        batch_loss: Instead of ``loss_fn``, a hook ``batch_loss(model_fn, batch)``
            returning the mean loss of a batch, for batches that are not ``(x, y)``
            (dicts, HuggingFace-style outputs). ``model_fn(*args, **kwargs)`` calls the
            model with the parameters being evaluated.
        params: Which parameters are the variables: all trainable ones (``None``), a
            name or module prefix (``"layers.2"``), a list of those, or a predicate
            ``(name, parameter) -> bool``. The others are held fixed; this is how
            per-layer Hessians are taken.
        train_mode: Evaluate the model in training mode (BatchNorm batch statistics,
            dropout on). Off by default; the choice is recorded in :attr:`settings`.
        batch_size: Batch size used to split a tensor pair (ignored for batches).
        device: Where to evaluate (default: the model's device).
        dtype: Floating dtype for parameters, buffers and float inputs (default: the
            model's). ``torch.float64`` gives reference-quality results.

    Raises:
        ValueError: For a non-positive ``batch_size``, neither ``loss_fn`` nor
            ``batch_loss``, a parameter selector that matches nothing, training
            mode with a shuffling loader, an empty data set, or parameters holding
            NaN or Inf.
        TypeError: For data of another kind (see :func:`split_batches`).

    Examples:
        >>> net = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2))
        >>> X, y = torch.randn(10, 3), torch.randint(0, 2, (10,))
        >>> obj = Objective(net, (X, y), batch_size=4)
        >>> obj.dim, obj.num_examples, len(obj.batches)
        (26, 10, 3)
        >>> bool(torch.isclose(obj.value(), F.cross_entropy(net(X), y)))
        True
    """

    def __init__(
        self,
        model: nn.Module,
        data: Any,
        loss_fn: LossFn | None = F.cross_entropy,
        *,
        batch_loss: BatchLossFn | None = None,
        params: ParamSelector = None,
        train_mode: bool = False,
        batch_size: int = 1024,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        self.model = model
        self.loss_fn = loss_fn
        self.batch_loss = batch_loss
        if batch_loss is None and loss_fn is None:
            raise ValueError("give a loss_fn(output, target) or a batch_loss(model_fn, batch)")
        self.train_mode = bool(train_mode)
        self._determinism: tuple[float, float] | None = None
        first = next(iter(model.parameters()), None)
        self.device = torch.device(
            device if device is not None else (first.device if first is not None else "cpu")
        )
        self.dtype = (
            dtype
            if dtype is not None
            else (first.dtype if first is not None else torch.get_default_dtype())
        )

        names = _select_names(model, params)
        all_params = dict(model.named_parameters())
        self.param_names: tuple[str, ...] = tuple(names)
        self._fixed: dict[str, Tensor] = {
            n: self._cast(p) for n, p in all_params.items() if n not in set(names)
        }
        self._buffers: dict[str, Tensor] = {n: self._cast(b) for n, b in model.named_buffers()}
        blocks, offset = [], 0
        for n in names:
            p = all_params[n]
            blocks.append(ParameterBlock(n, tuple(p.shape), offset, p.numel()))
            offset += p.numel()
        self.blocks: tuple[ParameterBlock, ...] = tuple(blocks)
        self.dim = offset
        self.theta0: Tensor = torch.cat([self._cast(all_params[n]).reshape(-1) for n in names])

        if self.train_mode and shuffles(data):
            raise ValueError(
                "train_mode=True with a shuffling DataLoader: in training mode BatchNorm "
                "normalizes with each batch's statistics, so the loss depends on which "
                "examples share a batch and a shuffled loader makes it random. Pass a "
                "loader with shuffle=False, a fixed list of batches, or use eval mode."
            )
        batches = split_batches(data, batch_size)
        moved = [move_batch(b, self.device, self.dtype) for b in batches]
        sizes = [batch_size_of(b) for b in moved]
        kept = [(b, s) for b, s in zip(moved, sizes, strict=True) if s > 0]
        if not kept:
            raise ValueError(
                "the data set is empty: the objective needs at least one example "
                "(check the data factory or the number of examples requested)"
            )
        self.batches: list[Batch] = [b for b, _ in kept]
        self.batch_sizes: tuple[int, ...] = tuple(s for _, s in kept)
        self.num_examples = sum(self.batch_sizes)
        self.weights: tuple[float, ...] = tuple(s / self.num_examples for s in self.batch_sizes)
        if not torch.isfinite(self.theta0).all():
            bad = [
                b.name
                for b in self.blocks
                if not torch.isfinite(self.theta0[b.offset : b.offset + b.numel]).all()
            ]
            raise ValueError(f"the parameters hold NaN or Inf values (in {', '.join(bad)})")

    # ------------------------------------------------------------------ helpers
    def _cast(self, t: Tensor) -> Tensor:
        t = t.detach()
        if t.is_floating_point():
            return t.to(device=self.device, dtype=self.dtype)
        return t.to(device=self.device)

    @property
    def settings(self) -> dict[str, Any]:
        """What defines this objective, for the record kept with every result."""
        return {
            "num_examples": self.num_examples,
            "num_batches": len(self.batches),
            "num_params": self.dim,
            "params": "all"
            if len(self.param_names) == len([p for p in self.model.parameters() if p.requires_grad])
            else list(self.param_names),
            "train_mode": self.train_mode,
            "device": str(self.device),
            "dtype": str(self.dtype).replace("torch.", ""),
        }

    def unflatten(self, theta: Tensor) -> dict[str, Tensor]:
        """Split a flat vector into named views shaped like the selected parameters.

        The split is one differentiable :func:`torch.split`, whose backward is a single
        concatenation, so gradients flow back to ``theta`` cheaply.

        Returns:
            ``{parameter name: view}`` (with ``theta``'s leading dimensions).

        Raises:
            ValueError: If ``theta``'s last dimension is not ``dim``.
        """
        if theta.shape[-1] != self.dim:
            raise ValueError(f"expected a vector of length {self.dim}, got {tuple(theta.shape)}")
        parts = torch.split(theta, [b.numel for b in self.blocks], dim=-1)
        lead = tuple(theta.shape[:-1])
        return {b.name: t.reshape(*lead, *b.shape) for b, t in zip(self.blocks, parts, strict=True)}

    def flatten(self, tensors: Mapping[str, Tensor] | Sequence[Tensor]) -> Tensor:
        """Concatenate per-parameter tensors (by name or in order) into a flat vector.

        Returns:
            A vector of length ``dim``.
        """
        if isinstance(tensors, Mapping):
            tensors = [tensors[b.name] for b in self.blocks]
        return torch.cat([t.reshape(-1) for t in tensors])

    def state(self, theta: Tensor | Mapping[str, Tensor] | None = None) -> dict[str, Tensor]:
        """All tensors for :func:`functional_call`: the variables, then the fixed rest.

        Args:
            theta: A flat vector, or the variables by name (default: θ₀).

        In training mode the buffers are cloned so that BatchNorm's running-statistics
        update cannot reach the model.

        Returns:
            ``{name: tensor}`` for every parameter and buffer of the model.
        """
        theta = self.theta0 if theta is None else theta
        variables = dict(theta) if isinstance(theta, Mapping) else self.unflatten(theta)
        buffers = (
            {n: b.clone() for n, b in self._buffers.items()} if self.train_mode else self._buffers
        )
        return {**self._fixed, **buffers, **variables}

    def leaves(self, theta: Tensor | None = None) -> dict[str, Tensor]:
        """Fresh leaf tensors for the variables, one per parameter.

        Returns:
            ``{parameter name: leaf}`` with ``requires_grad=True``, cloned from ``theta``
            (default: θ₀).
        """
        theta = (self.theta0 if theta is None else theta).detach()
        return {n: t.clone().requires_grad_(True) for n, t in self.unflatten(theta).items()}

    def model_fn(self, theta: Tensor | Mapping[str, Tensor] | None = None) -> Callable[..., Any]:
        """The model as a function of its parameters.

        Returns:
            A callable that runs the model with parameters ``theta`` (default: θ₀), in
            the objective's training or evaluation mode.
        """
        tensors = self.state(theta)
        model = self.model

        def call(*args: Any, **kwargs: Any) -> Any:
            was_training = model.training
            model.train(self.train_mode)
            try:
                return functional_call(model, tensors, args, kwargs)
            finally:
                model.train(was_training)

        return call

    def batch_mean_loss(self, theta: Tensor | Mapping[str, Tensor], batch: Batch) -> Tensor:
        """Mean loss of one batch at ``theta``.

        Returns:
            A 0-d tensor, differentiable in ``theta``.
        """
        fn = self.model_fn(theta)
        if self.batch_loss is not None:
            return self.batch_loss(fn, batch)
        x, y = batch
        assert self.loss_fn is not None
        return self.loss_fn(fn(x), y)

    # ------------------------------------------------------------- evaluations
    def value(self, theta: Tensor | None = None) -> Tensor:
        """The mean loss over all examples.

        Returns:
            :math:`f(\\theta)` as a 0-d tensor (default θ₀).
        """
        theta = self.theta0 if theta is None else theta
        with torch.no_grad():
            total = torch.zeros((), device=self.device, dtype=self.dtype)
            for w, b in zip(self.weights, self.batches, strict=True):
                total = total + w * self.batch_mean_loss(theta, b)
        return total

    def value_and_gradient(self, theta: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """The mean loss and its gradient.

        Returns:
            :math:`f(\\theta)` (0-d) and :math:`\\nabla f(\\theta)` as a flat vector.
        """
        total = torch.zeros((), device=self.device, dtype=self.dtype)
        grad = torch.zeros(self.dim, device=self.device, dtype=self.dtype)
        for w, b in zip(self.weights, self.batches, strict=True):
            leaves = self.leaves(theta)
            loss = self.batch_mean_loss(leaves, b)
            grads = torch.autograd.grad(loss, list(leaves.values()), allow_unused=True)
            grad.add_(self.flatten(_zeros_for_none(grads, leaves)), alpha=w)
            total = total + w * loss.detach()
        return total, grad

    def gradient(self, theta: Tensor | None = None) -> Tensor:
        """The gradient of the mean loss.

        Returns:
            :math:`\\nabla f(\\theta)` as a flat vector.
        """
        return self.value_and_gradient(theta)[1]

    def hvp(self, v: Tensor, theta: Tensor | None = None) -> Tensor:
        """One Hessian-vector product :math:`\\nabla^2 f(\\theta) v` by double backward.

        For many products use :class:`~flatness.curvature.hessian.HessianOperator`,
        which picks the fastest strategy and reuses work between products.

        Returns:
            The product as a flat vector.
        """
        out = torch.zeros(self.dim, device=self.device, dtype=self.dtype)
        v_parts = list(self.unflatten(v.to(device=self.device, dtype=self.dtype)).values())
        for w, b in zip(self.weights, self.batches, strict=True):
            leaves = self.leaves(theta)
            params = list(leaves.values())
            grads = torch.autograd.grad(
                self.batch_mean_loss(leaves, b), params, create_graph=True, allow_unused=True
            )
            out.add_(self.flatten(second_derivative(grads, params, v_parts)), alpha=w)
        return out

    def check_determinism(self, *, rtol: float | None = None) -> None:
        """Evaluate the first batch twice and raise if the two losses differ.

        A loss that changes between two evaluations at the same parameters (dropout
        left on, a model with random layers) makes every curvature estimate and every
        sharpness measure built on loss differences meaningless, so it is refused with
        the likely causes named (the sharpness measures call this too, through
        :func:`~flatness.sharpness.checks.require_deterministic`).

        θ₀ and the batches are fixed at construction, so the two losses are computed
        once per objective: a check that passed is remembered (as the two losses), and
        later calls, whatever their ``rtol``, are answered from them without running
        the model again.

        Args:
            rtol: Relative (and absolute) tolerance between the two losses (default
                ``1e-10`` in float64, else ``1e-5``).

        Raises:
            FloatingPointError: If the loss is NaN or infinite.
            RuntimeError: If the two evaluations disagree.
        """
        rtol = rtol if rtol is not None else (1e-10 if self.dtype == torch.float64 else 1e-5)
        if self._determinism is None:
            with torch.no_grad():
                first = self.batch_mean_loss(self.theta0, self.batches[0])
                second = self.batch_mean_loss(self.theta0, self.batches[0])
            if not torch.isfinite(first):
                raise FloatingPointError(
                    f"the loss is {first.item()} at the given parameters: check the weights "
                    "and the data for NaN/Inf or overflow"
                )
            pair = (first.item(), second.item())
        else:
            pair = self._determinism
        a, b = pair
        if not math.isclose(a, b, rel_tol=rtol, abs_tol=rtol):
            raise RuntimeError(
                "the objective is not deterministic: two evaluations of the same batch at the "
                f"same parameters gave {a:.10g} and {b:.10g}. Likely causes: "
                "dropout or another random layer active (train_mode=True), or a stochastic "
                "loss. Curvature and sharpness measures need a fixed function: use "
                "train_mode=False (the default)."
            )
        self._determinism = pair

    def __repr__(self) -> str:
        return (
            f"Objective({type(self.model).__name__}, params={self.dim}, "
            f"examples={self.num_examples}, batches={len(self.batches)}, "
            f"train_mode={self.train_mode}, device={self.device}, "
            f"dtype={str(self.dtype).replace('torch.', '')})"
        )
